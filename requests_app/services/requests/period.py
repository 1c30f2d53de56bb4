"""Staff widen the period a Right to Know request covers (typically after an
appeal): an earlier first day, a later last day, or everything held. Recorded on
the request's verification evidence (where the portal's form put the period, and
where every source reads it: sources/base.py requested_period) and in the audit
trail with the reason, in one transaction. Never narrowed: the person asked for at
least this much."""

import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.models import Actor, PrivacyRequest, VerificationEvidence
from requests_app.models.privacy_request import State, TransitionInputError
from requests_app.services.audit.events import record_event
from requests_app.services.requests.lifecycle import TransitionRefused
from requests_app.sources.base import requested_period

WORK = "requests_app.work_request"
# Before fulfilment starts, or while an appeal is decided (a granted appeal is
# fulfilled afresh, with the period as it then stands).
WIDENABLE_STATES = (State.PENDING_VERIFICATION, State.VERIFIED, State.IN_REVIEW,
                    State.UNDER_APPEAL)


def widenable(request: PrivacyRequest) -> bool:
    """Whether the desk offers "Widen the period" for this request now."""
    return request.state in WIDENABLE_STATES and requested_period(request) is not None


def do_widen_period(request_id: int, *, start: datetime.date | None,
                    end: datetime.date | None, reason: str, by) -> tuple:
    """Widen the request's period to [start, end] (start None: everything held,
    whatever its date). Returns the new period (None: everything)."""
    reason = (reason or "").strip()
    if not by.has_perm(WORK):
        raise TransitionRefused(_("You do not have permission for this step."))
    if not reason:
        raise TransitionInputError(_("Say why the period is widened."))
    with transaction.atomic(durable=True):
        request = PrivacyRequest.objects.locked().get(pk=request_id)
        current = requested_period(request)
        if current is None:
            raise TransitionRefused(_("This request already covers all the data held, "
                                      "whatever its date."))
        if request.state not in WIDENABLE_STATES:
            raise TransitionRefused(_("The period can be widened before the request is "
                                      "approved, or while an appeal is decided."))
        new = _checked(current, start, end)
        VerificationEvidence.objects.filter(request=request).update(
            period_start=new[0] if new else None, period_end=new[1] if new else None)
        record_event("request.period_widened", actor=Actor.staff(by), request=request,
                     reason=reason[:500], data={
                         "from": [d.isoformat() for d in current],
                         "to": [d.isoformat() for d in new] if new else "everything held"})
    return new


def _checked(current: tuple, start, end) -> tuple | None:
    """The new period, or a TransitionInputError saying what is wrong with it."""
    if start is None:
        return None
    end = end or current[1]
    if end > timezone.localdate():
        raise TransitionInputError(_("The period cannot end in the future."))
    if start > end:
        raise TransitionInputError(_("The first day must be before the last day."))
    if start > current[0] or end < current[1]:
        raise TransitionInputError(
            _("A period can only be widened: start on %(start)s or earlier and end on "
              "%(end)s or later.") % {"start": current[0].isoformat(),
                                      "end": current[1].isoformat()})
    if (start, end) == tuple(current):
        raise TransitionInputError(_("That is the period already covered."))
    return start, end
