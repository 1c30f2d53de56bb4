"""The audit trail's periodic tasks: signed checkpoints of the chain's head every
few minutes, and the nightly verification whose result, with the day's
checkpoints, goes to the auditors by email."""

import datetime
import logging
import smtplib

from celery import shared_task
from django.utils import timezone

from requests_app.services.audit import mailing
from requests_app.services.audit.chain import record_chain_head, write_checkpoint
from requests_app.services.queue import enqueue

log = logging.getLogger(__name__)


@shared_task
def write_audit_checkpoint() -> int | None:
    """Every AUDIT_CHECKPOINT_MINUTES (beat): sign the chain's head into the day's
    checkpoint file."""
    checkpoint = write_checkpoint()
    return checkpoint.seq if checkpoint else None


@shared_task
def note_audit_chain_head() -> str:
    """Nightly: verify the whole chain against the checkpoints, record the result,
    and email yesterday's checkpoints to the auditors."""
    event = record_chain_head()
    if event.data["intact"]:
        verdict = (f"intact, {event.data['events']} events, "
                   f"{event.data['checkpoints']} checkpoints agree")
    else:
        where = event.data["broken_at"] or "its end"
        verdict = f"BROKEN at event {where}: {event.data['problem']}"
        log.error("audit trail broken at event %s", where)
    yesterday = timezone.now().date() - datetime.timedelta(days=1)
    enqueue("requests_app.services.audit.tasks.email_audit_checkpoints",
            yesterday.isoformat(), verdict)
    return event.data["head"]


@shared_task(autoretry_for=(smtplib.SMTPException, OSError), retry_backoff=60,
             retry_backoff_max=3600, retry_jitter=True, max_retries=12)
def email_audit_checkpoints(day: str, verdict: str) -> int:
    return mailing.email_checkpoints(day, verdict)
