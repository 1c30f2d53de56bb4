"""The consumer portal: explain the rights, file a request with no account,
confirm the email with a code, follow it, cancel, appeal and download.

Nothing here tells whether we hold anything about an address or whether a
reference exists: the answers are the same either way."""

import datetime
import functools
import logging
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from requests_app import deadlines, ratelimit
from requests_app.files import DecryptionError, iter_decrypted
from requests_app.models import (
    Actor,
    AuditEvent,
    Package,
    PrivacyRequest,
    VerificationEvidence,
)
from requests_app.models.privacy_request import State, new_reference
from requests_app.portal import forms as portal_forms
from requests_app.portal import session
from requests_app.rules import REQUEST_TYPES
from requests_app.services.fulfilment import downloads, packages
from requests_app.services.verification import codes, portal
from requests_app.services.audit.events import hash_value
from requests_app.services.requests.lifecycle import (
    TransitionRefused,
    available_transitions,
    do_transition,
)

log = logging.getLogger(__name__)

SESSION_SENT = "portal_sent"
# The form's text fields together, with room for multipart overhead: a body larger
# than this plus the largest permission file is refused before it is read.
FORM_TEXT_MAX_BYTES = 64 * 1024
DOWNLOAD_SALT = "portal.download"

CODE_PROBLEMS = {
    **codes.PROBLEMS,
    codes.Result.WRONG: gettext_lazy("That code is not right for this reference. Check the "
                                     "email and try again."),
}


def _request_for(reference: str) -> PrivacyRequest | None:
    """The request with this reference; None for anything not shaped like one (a
    NUL byte or other junk typed by hand never reaches the database)."""
    if not portal_forms.is_reference(reference):
        return None
    return (PrivacyRequest.objects.select_related("identity", "evidence")
            .filter(reference=reference).first())


def _content_length(request) -> int:
    """The declared body size; a header that is not a number counts as too large."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 1 << 62


@require_http_methods(["GET", "HEAD"])
def home(request):
    return render(request, "portal/home.html", {"request_types": REQUEST_TYPES.values()})


# --- filing ------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def request_form(request):
    if request.method != "POST":
        return render(request, "portal/request_form.html", {"form": portal_forms.RequestForm()})
    limit = settings.AGENT_PERMISSION_MAX_BYTES + FORM_TEXT_MAX_BYTES
    if _content_length(request) > limit:
        return render(request, "portal/too_large.html", status=413)
    form = portal_forms.RequestForm(request.POST, request.FILES)
    email = request.POST.get("email", "")[:254]
    limited = ratelimit.count(request, "form", email=email)
    if limited.ip:
        return ratelimit.too_many(request)
    if not form.is_valid():
        return render(request, "portal/request_form.html", {"form": form}, status=400)
    if limited.email:
        asking = _prove_control(request, form)
        if asking is not None:
            return asking
    data = form.cleaned_data
    if data["website"]:
        # A bot filled in the hidden field: the same answer, nothing filed.
        log.info("portal: honeypot submission dropped")
        jurisdiction = portal_forms.JURISDICTION_OF[data["residence"]]
        request.session[SESSION_SENT] = [
            {"reference": new_reference(), "type": code,
             "due_on": deadlines.response_due(timezone.now(), jurisdiction,
                                              REQUEST_TYPES[code]).isoformat()}
            for code in REQUEST_TYPES if code in data["rights"]]
        return redirect("portal:sent")
    filed = portal.do_file_submission(form.submission())
    request.session[SESSION_SENT] = [
        {"reference": r.reference, "type": r.request_type, "due_on": r.due_on.isoformat()}
        for r in filed]
    return redirect("portal:sent")


def _prove_control(request, form):
    """Over the per-email limit from this source address (someone may be filing
    in another person's name): the request goes in once the sender proves control
    of the address with the code sent to it. None when proved; else the form again,
    asking for the code (a new one is sent when none is typed)."""
    email = form.cleaned_data["email"]
    typed = request.POST.get("filing_code", "")[:32]
    problem = ""
    if typed:
        result = portal.check_filing_code(email, typed)
        if result is codes.Result.OK:
            return None
        problem = CODE_PROBLEMS[result]
    else:
        portal.send_filing_code(email)
    return render(request, "portal/request_form.html",
                  {"form": form, "prove_control": True, "code_problem": problem}, status=429)


@never_cache
@require_http_methods(["GET", "HEAD"])
def sent(request):
    rows = request.session.get(SESSION_SENT)
    if not rows:
        return redirect("portal:request")
    filed = [{"reference": row["reference"],
              "label": portal_forms.RIGHT_LABELS.get(row["type"], row["type"]),
              "opt_out": REQUEST_TYPES[row["type"]].is_opt_out,
              "due_on": datetime.date.fromisoformat(row["due_on"]) if row["due_on"] else None}
             for row in rows if row["type"] in REQUEST_TYPES]
    return render(request, "portal/sent.html", {
        "filed": filed, "any_verification": any(not f["opt_out"] for f in filed)})


# --- confirming the email ------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def verify(request):
    form = _with_reference(portal_forms.CodeForm, request)
    notice = ""
    if request.method == "POST":
        if _codes_limited(request):
            return ratelimit.too_many(request)
        if "resend" in request.POST:
            reference = portal_forms.normalise_reference(request.POST.get("reference", ""))
            found = _request_for(reference)
            if found is not None:
                portal.resend_verification_code(found)
            # The same words whether or not the reference exists or a code went out.
            notice = _("If that reference is ours and still waits for confirmation, a new code "
                       "is on its way (at most one a minute and five a day).")
            form = portal_forms.CodeForm(initial={"reference": reference})
        elif form.is_valid():
            found = _request_for(form.cleaned_data["reference"])
            result = codes.Result.WRONG
            if found is not None:
                result = portal.do_confirm_email(found, form.cleaned_data["code"])
            if result is codes.Result.OK:
                session.open_status(request, *VerificationEvidence.objects.filter(
                    submission=found.evidence.submission).values_list("request__reference",
                                                                      flat=True))
                return redirect("portal:status_detail", reference=found.reference)
            form.add_error("code", CODE_PROBLEMS[result])
    return render(request, "portal/verify.html", {"form": form, "notice": notice},
                  status=400 if form.errors else 200)


def _with_reference(form_class, request):
    """A code or reference form, posted or (GET) with the reference from the link."""
    return form_class(request.POST or None,
                      initial={"reference": request.GET.get("reference", "")[:24]})


def _codes_limited(request) -> bool:
    """Code entry and code requests: limited per client address and per reference."""
    return ratelimit.exceeded(request, "code", email=portal_forms.normalise_reference(
        request.POST.get("reference", "")))


# --- following a request -------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def status(request):
    """Step 1: the reference. A code goes to the request's email address."""
    form = _with_reference(portal_forms.ReferenceForm, request)
    if request.method == "POST":
        if _codes_limited(request):
            return ratelimit.too_many(request)
        if form.is_valid():
            reference = form.cleaned_data["reference"]
            portal.send_status_code(_request_for(reference))
            return redirect(reverse("portal:status_code") + f"?reference={reference}")
    return render(request, "portal/status.html", {"form": form},
                  status=400 if form.errors else 200)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def status_code(request):
    """Step 2: the code from the email opens the request for this browser."""
    form = _with_reference(portal_forms.CodeForm, request)
    if request.method == "POST":
        if _codes_limited(request):
            return ratelimit.too_many(request)
        if form.is_valid():
            reference = form.cleaned_data["reference"]
            result = portal.check_status_code(_request_for(reference),
                                              form.cleaned_data["code"])
            if result is codes.Result.OK:
                session.open_status(request, reference)
                return redirect("portal:status_detail", reference=reference)
            form.add_error("code", CODE_PROBLEMS[result])
    return render(request, "portal/status_code.html", {"form": form},
                  status=400 if form.errors else 200)


# What each audit event means to the consumer (others are not shown): the steps'
# own wording (models/steps.py), and the events that are not steps.
EVENTS = {
    "request.received": gettext_lazy("We received your request."),
    "request.email_confirmed": gettext_lazy("You confirmed your email address."),
    "request.needs_manual_verification": gettext_lazy(
        "We could not confirm your identity from the details given; a member of our staff "
        "is checking by hand and may contact you."),
    "request.treated_as_categories": gettext_lazy(
        "We could not confirm your identity well enough to send specific information, so we "
        "are answering with the categories of information we hold."),
    "package.downloaded": gettext_lazy("Your files were downloaded."),
}


def _timeline_text() -> dict:
    steps = {f"request.{t.name}": t.custom["timeline"]
             for t in PrivacyRequest._meta.get_field("state").get_all_transitions(PrivacyRequest)
             if t.custom.get("timeline")}
    return {**EVENTS, **steps}


# Where a request stands, as the consumer sees it (the staff's finer states merged).
_WORKING = gettext_lazy("We are carrying out your request")
CONSUMER_STATES = {
    State.PENDING_VERIFICATION: gettext_lazy("Waiting for your identity to be confirmed"),
    State.VERIFIED: gettext_lazy("Identity confirmed; waiting for review"),
    State.IN_REVIEW: gettext_lazy("Being reviewed by our privacy office"),
    State.APPROVED: _WORKING,
    State.FULFILLING: _WORKING,
    State.WAITING_MANUAL: _WORKING,
    State.RESULTS_READY: _WORKING,
    State.NEEDS_ATTENTION: _WORKING,
    State.COMPLETED: gettext_lazy("Completed"),
    State.CLOSED: gettext_lazy("Closed"),
    State.DENIED: gettext_lazy("Denied"),
    State.CANCELLED: gettext_lazy("Cancelled"),
    State.EXPIRED: gettext_lazy("Expired: the email address was never confirmed"),
    State.UNDER_APPEAL: gettext_lazy("Your appeal is being decided"),
    State.APPEAL_DENIED: gettext_lazy("Appeal denied"),
}


def _opened(view):
    """A page of one request, for a browser that opened it with a code: the view
    is given the request; any other browser goes to the status page, which asks
    for a code."""
    @functools.wraps(view)
    def wrapped(request, reference):
        reference = portal_forms.normalise_reference(reference)
        found = _request_for(reference) if session.is_open(request, reference) else None
        if found is None:
            return redirect(reverse("portal:status") + f"?reference={reference}")
        return view(request, found)
    return wrapped


@never_cache
@require_http_methods(["GET", "HEAD"])
@_opened
def status_detail(request, privacy_request):
    return render(request, "portal/status_detail.html", _status_context(privacy_request))


def _status_context(privacy_request: PrivacyRequest, appeal_form=None) -> dict:
    texts = _timeline_text()
    events = AuditEvent.objects.filter(request=privacy_request, action__in=list(texts)).order_by("at", "id")
    timeline = [{"at": e.at, "text": texts[e.action]} for e in events]
    steps = available_transitions(privacy_request, Actor.consumer())
    links = []
    for package in downloads.downloadable(privacy_request):
        package = downloads.offer(package)
        links.append({
            "package": package,
            "url": reverse("portal:download", args=[signing.dumps(package.pk,
                                                                  salt=DOWNLOAD_SALT)]),
            "left": max(0, settings.DOWNLOAD_MAX_COUNT - package.download_count),
            "usable": package.download_count < settings.DOWNLOAD_MAX_COUNT
            and package.expires_at is not None,
        })
    evidence = getattr(privacy_request, "evidence", None)
    return {
        "privacy_request": privacy_request,
        "label": privacy_request.type_rules.plain_label,
        "stands": CONSUMER_STATES.get(privacy_request.state, privacy_request.get_state_display()),
        "timeline": timeline,
        "may_cancel": "cancel" in steps,
        "may_appeal": "appeal" in steps,
        "appeal_form": appeal_form or portal_forms.AppealForm(),
        "downloads": links,
        "third_parties": (packages.third_party_lines(privacy_request)
                          if privacy_request.type_rules.is_deletion else []),
        "denied": privacy_request.state == State.DENIED or (
            privacy_request.state in (State.APPEAL_DENIED, State.CLOSED)
            and bool(privacy_request.denial_reason) and privacy_request.appeal_outcome != "granted"),
        "waiting_for_email": privacy_request.state == State.PENDING_VERIFICATION and evidence is not None
        and evidence.email_confirmed_at is None,
        "manual_review": evidence is not None and evidence.manual_review
        and privacy_request.state == State.PENDING_VERIFICATION,
    }


@require_POST
@_opened
def cancel(request, privacy_request):
    """Two steps, with no script needed: the status page's button posts here without
    `confirm` and gets a page that asks; only its "Yes" (confirm=yes) cancels."""
    if request.POST.get("confirm") != "yes":
        if "cancel" in available_transitions(privacy_request, Actor.consumer()):
            return render(request, "portal/cancel_confirm.html", {
                "privacy_request": privacy_request,
                "label": privacy_request.type_rules.plain_label,
                "expected_state": request.POST.get("expected_state", "")})
    try:
        do_transition(privacy_request.pk, "cancel", actor=Actor.consumer(),
                      expected_state=request.POST.get("expected_state", ""))
    except TransitionRefused:
        return render(request, "portal/status_detail.html", {
            **_status_context(privacy_request),
            "problem": _("The request can no longer be cancelled: its fulfilment has started "
                         "or it has already ended.")}, status=409)
    return redirect("portal:status_detail", reference=privacy_request.reference)


@require_POST
@_opened
def appeal(request, privacy_request):
    form = portal_forms.AppealForm(request.POST)
    if not form.is_valid():
        return render(request, "portal/status_detail.html", _status_context(privacy_request, form),
                      status=400)
    try:
        do_transition(privacy_request.pk, "appeal", actor=Actor.consumer(), text=form.cleaned_data["text"])
    except TransitionRefused:
        return render(request, "portal/status_detail.html", {
            **_status_context(privacy_request),
            "problem": _("An appeal is not possible for this request now.")}, status=409)
    return redirect("portal:status_detail", reference=privacy_request.reference)


@require_POST
def sign_out(request):
    session.close_all(request)
    return redirect("portal:home")


# --- downloads -----------------------------------------------------------------------


def _refused(request):
    return render(request, "portal/download_refused.html", {
        "days": settings.DOWNLOAD_LINK_DAYS, "times": settings.DOWNLOAD_MAX_COUNT}, status=410)


@never_cache
@require_http_methods(["GET"])  # a HEAD would count as a download
def download(request, token):
    max_age = settings.DOWNLOAD_LINK_DAYS * 86400
    try:
        package_id = signing.loads(token, salt=DOWNLOAD_SALT, max_age=max_age)
    except signing.BadSignature:
        return _refused(request)
    package = Package.objects.filter(pk=package_id).select_related("request").first()
    if package is None or not session.is_open(request, package.request.reference):
        # The link works in the browser that opened the status page with a fresh code.
        return _refused(request)
    # The file is opened (and its first block decrypted) before the download is
    # counted: a package that cannot be read does not use up one of the downloads.
    if package.purged_at is not None or not package.path:
        return _refused(request)
    path = Path(settings.MEDIA_ROOT) / package.path
    try:
        chunks = iter_decrypted(path)
        first = next(chunks, b"")
    except (DecryptionError, OSError):
        log.error("download: package %s could not be read", package.pk)
        raise Http404 from None
    try:
        package = downloads.do_count_download(package.pk,
                                           hash_value(ratelimit.client_ip(request)))
    except downloads.DownloadRefused:
        chunks.close()
        return _refused(request)

    def body():
        yield first
        yield from chunks

    response = StreamingHttpResponse(body(), content_type=package.content_type)
    response["Content-Disposition"] = f'attachment; filename="{package.filename}"'
    response["Content-Length"] = str(package.size)
    response["Cache-Control"] = "no-store"
    return response
