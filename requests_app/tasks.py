"""Celery tasks: thin wrappers that take ids, re-fetch, and call a service.

Tasks never log personal data: only references, ids and outcomes.
"""

import datetime
import logging
import smtplib

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from requests_app.models import Actor, OutgoingEmail, PrivacyRequest, State
from requests_app.services import notices
from requests_app.services.lifecycle import TransitionRefused, do_transition

log = logging.getLogger(__name__)

_EMAIL_ERRORS = (smtplib.SMTPException, OSError)


@shared_task(
    autoretry_for=_EMAIL_ERRORS, retry_backoff=30, retry_backoff_max=600,
    retry_jitter=True, max_retries=12,
)
def send_email(email_id: int) -> None:
    notices.send_email(email_id)


def _system_step(request_id: int, name: str) -> None:
    """Take a system step; a request that has moved on meanwhile (cancelled, say) is
    left as it is, so running the task twice changes nothing more."""
    try:
        do_transition(request_id, name, actor=Actor.system())
    except TransitionRefused as exc:
        log.info("request %s: %s skipped: %s", request_id, name, exc)


@shared_task
def begin_review(request_id: int) -> None:
    _system_step(request_id, "start_review")


@shared_task
def begin_fulfilment(request_id: int) -> None:
    _system_step(request_id, "start_fulfilment")


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


# How long work may sit unstarted before the reconciler sends it again.
STALE_AFTER = datetime.timedelta(minutes=5)


@shared_task
def reconcile() -> dict:
    """Periodic: find work the database says is due but no task is doing (the
    broker lost a message, a worker died, the broker was down when a step
    committed) and send it again. Every task is idempotent, so a duplicate is
    harmless."""
    stale = timezone.now() - STALE_AFTER
    counts = {"emails": 0, "reviews": 0, "fulfilments": 0}
    for email_id in OutgoingEmail.objects.filter(sent_at=None, created_at__lte=stale).values_list(
        "pk", flat=True
    ):
        send_email.delay(email_id)
        counts["emails"] += 1
    follow_ups = [(State.VERIFIED, begin_review, "reviews"),
                  (State.APPROVED, begin_fulfilment, "fulfilments")]
    for state, task, key in follow_ups:
        for request_id in PrivacyRequest.objects.filter(
            state=state, updated_at__lte=stale
        ).values_list("pk", flat=True):
            task.delay(request_id)
            counts[key] += 1
    if any(counts.values()):
        log.info("reconcile: re-sent %s", counts)
    return counts
