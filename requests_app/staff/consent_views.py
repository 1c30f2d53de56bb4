"""Staff pages of the consent side: disclosures that went against a person's
choice, and the panels the request desk and dashboard include (a person's consent
history, the violation count)."""

from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import render

from requests_app.models import Disclosure, ThirdPartyNotice
from requests_app.services.consent import ledger as consent
from requests_app.staff.access import staff_required

VIEW_CONSENT = "requests_app.view_consentrecord"


def consent_history_panel(user, privacy_request) -> dict:
    """Context for templates/staff/_consent_history.html (the request desk)."""
    if not user.has_perm(VIEW_CONSENT) or not hasattr(privacy_request, "identity"):
        return {"consent_history": None}
    return {"consent_history": consent.history(privacy_request.identity)}


def violations_panel() -> dict:
    """Context for templates/staff/_violations.html (the dashboard): disclosures
    against a person's choice, and third-party notices (deletions, opt-outs) not
    yet answered: never sent (no contact address) or sent and unconfirmed."""
    by_purpose = list(Disclosure.objects.filter(violated_purpose__isnull=False)
                      .values("violated_purpose__name").annotate(n=Count("id"))
                      .order_by("-n"))
    waiting = (ThirdPartyNotice.objects.filter(state__in=["pending", "sent"])
               .values("state").annotate(n=Count("id")))
    return {"violations_by_purpose": by_purpose,
            "violations_total": sum(row["n"] for row in by_purpose),
            "notices_waiting": {row["state"]: row["n"] for row in waiting}}


@staff_required("requests_app.view_privacyrequest")
def violations(request):
    rows = (Disclosure.objects.filter(violated_purpose__isnull=False)
            .select_related("violated_purpose", "source", "third_party")
            .order_by("-disclosed_at", "-id"))
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    return render(request, "staff/violations.html", {"page": page, **violations_panel()})
