"""The requests domain's tasks: system steps of the lifecycle. Thin: they take ids
and call the use cases in lifecycle.py; running one twice changes nothing more."""

import datetime
import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from requests_app.models import Actor, PrivacyRequest, State
from requests_app.services.requests.lifecycle import TransitionRefused, do_transition

log = logging.getLogger(__name__)


def _system_step(request_id: int, name: str) -> None:
    """Take a system step; a request that has moved on meanwhile (cancelled, say) is
    left as it is, so running the task twice changes nothing more."""
    try:
        do_transition(request_id, name, actor=Actor.system())
    except TransitionRefused as exc:
        log.info("request %s: %s skipped: %s", request_id, name, exc)


@shared_task
def begin_review(request_id: int) -> None:
    """Verified: into review. An opt-out needs no review and is approved at once."""
    _system_step(request_id, "start_review")
    request = PrivacyRequest.objects.only("request_type", "state").get(pk=request_id)
    if request.type_rules.is_opt_out and request.state == State.IN_REVIEW:
        _system_step(request_id, "approve_opt_out")


@shared_task
def expire_unverified_requests() -> int:
    """Periodic: requests whose identity was not verified in time expire."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.VERIFICATION_WINDOW_DAYS)
    ids = PrivacyRequest.objects.filter(
        state=State.PENDING_VERIFICATION, received_at__lte=cutoff
    ).values_list("pk", flat=True)
    count = 0
    for request_id in ids:
        try:
            do_transition(request_id, "expire", actor=Actor.system())
            count += 1
        except TransitionRefused as exc:
            log.info("request %s: not expired: %s", request_id, exc)
    return count


ANSWERED = [State.COMPLETED, State.DENIED, State.APPEAL_DENIED]


@shared_task
def close_quiet_requests() -> int:
    """Daily: answered requests quiet for AUTO_CLOSE_QUIET_DAYS close by themselves
    (the step's guard, under the row's lock, has the last word: an appeal or a live
    download link keeps one open). Running it twice closes nothing more."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.AUTO_CLOSE_QUIET_DAYS)
    ids = PrivacyRequest.objects.filter(
        state__in=ANSWERED, updated_at__lte=cutoff).values_list("pk", flat=True)
    count = 0
    for request_id in ids:
        try:
            do_transition(request_id, "close_quietly", actor=Actor.system(),
                          audit_reason=f"quiet for {settings.AUTO_CLOSE_QUIET_DAYS} days")
            count += 1
        except TransitionRefused as exc:
            log.info("request %s: not closed: %s", request_id, exc)
    return count
