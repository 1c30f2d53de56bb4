"""Repeat requests: how many requests a person made in the REPEAT_WINDOW_MONTHS up
to a given one, matched by the keyed hash of the email address (Identity.email_hash,
set at filing), so that the desk can show them and a denial as excessive can be
held to the legal number (rules.REPEAT_LIMITS).

Counted: requests received in the window up to and including this one. Not counted:
expired ones and portal requests whose email address is not confirmed yet (anyone
can type an address; only its owner can confirm it), and those flagged as
duplicates of another (the same request sent twice)."""

from dateutil.relativedelta import relativedelta
from django.db.models import Count, Q
from django.utils.translation import gettext as _

from requests_app import rules
from requests_app.models.states import State
from requests_app.models.steps import TransitionInputError


def _in_window(request):
    identity = getattr(request, "identity", None)
    email_hash = identity.email_hash if identity is not None else ""
    if not email_hash:
        return None
    since = request.received_at - relativedelta(months=rules.REPEAT_WINDOW_MONTHS)
    return (type(request).objects
            .filter(identity__email_hash=email_hash, received_at__gt=since,
                    received_at__lte=request.received_at, duplicate_of=None)
            .exclude(state=State.EXPIRED)
            # Filed on the portal: counted once the email address is confirmed.
            .filter(Q(evidence__isnull=True) | Q(evidence__email_confirmed_at__isnull=False)))


def repeat_counts(request) -> dict[str, int]:
    """{request type: count} for the person of `request` ({} without an email)."""
    window = _in_window(request)
    if window is None:
        return {}
    rows = window.values("request_type").annotate(n=Count("id")).order_by("request_type")
    return {row["request_type"]: row["n"] for row in rows}


def repeat_count(request) -> int:
    """Requests counted against this one's legal limit (its own type when none)."""
    return _against_limit(request, repeat_counts(request))


def _against_limit(request, counts: dict[str, int]) -> int:
    limit = rules.repeat_limit(request.jurisdiction, request.request_type)
    types = limit.types if limit is not None else {request.request_type}
    return sum(n for t, n in counts.items() if t in types)


def check_excessive(request) -> None:
    """Refuse a denial as excessive below the legal number of requests."""
    limit = rules.repeat_limit(request.jurisdiction, request.request_type)
    if limit is None:
        return
    count = repeat_count(request)
    if count < limit.at_least:
        raise TransitionInputError(
            _("A request may be refused as excessive only from the %(n)s. request of its "
              "kind in %(months)s months (%(basis)s); this person made %(count)s.")
            % {"n": limit.at_least, "months": rules.REPEAT_WINDOW_MONTHS,
               "basis": limit.basis, "count": count})


def denial_audit(request) -> dict:
    """What a denial's audit event records: the reason code and, for a denial as
    excessive, the count it rests on (and the legal minimum, if any)."""
    data = {"denial_reason": request.denial_reason}
    if request.denial_reason == "unfounded":
        limit = rules.repeat_limit(request.jurisdiction, request.request_type)
        data["repeat_count"] = repeat_count(request)
        data["repeat_window_months"] = rules.REPEAT_WINDOW_MONTHS
        if limit is not None:
            data["repeat_minimum"] = limit.at_least
    return data


def repeats_panel(request) -> dict:
    """What the desk shows: each kind with its count, and the legal limit if any."""
    counts = repeat_counts(request)
    limit = rules.repeat_limit(request.jurisdiction, request.request_type)
    return {
        "months": rules.REPEAT_WINDOW_MONTHS,
        "by_type": [{"code": code, "label": rules.REQUEST_TYPES[code].label
                     if code in rules.REQUEST_TYPES else code, "count": n}
                    for code, n in counts.items()],
        "limit": limit,
        "count": _against_limit(request, counts),
        "may_refuse": limit is not None and _against_limit(request, counts) >= limit.at_least,
    }
