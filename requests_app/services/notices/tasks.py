"""The notices domain's tasks: sending what the outbox holds, telling source owners
and third parties. Email errors are retried with backoff; the row in the database
is the truth, so a lost message is sent again by the reconciler."""

import datetime
import smtplib

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from requests_app.models import SourceRun
from requests_app.services.notices import outbox, reminders, staff
from requests_app.sources.registry import kinds_that

EMAIL_ERRORS = (smtplib.SMTPException, OSError)
_RETRIES = {"autoretry_for": EMAIL_ERRORS, "retry_backoff": 30, "retry_backoff_max": 600,
            "retry_jitter": True, "max_retries": 12}


@shared_task(**_RETRIES)
def send_email(email_id: int) -> None:
    outbox.send_email(email_id)


@shared_task(**_RETRIES)
def notify_source_owner(run_id: int, reminder: bool = False) -> None:
    staff.notify_source_owner(run_id, reminder=reminder)


@shared_task(**_RETRIES)
def send_third_party_notice(notice_id: int) -> None:
    staff.send_third_party_notice(notice_id)


@shared_task
def remind_source_owners() -> int:
    """Periodic: remind owners of manual tasks that have waited too long."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.MANUAL_REMINDER_DAYS)
    runs = SourceRun.objects.filter(state=SourceRun.State.WAITING,
                                    source__kind__in=kinds_that("needs_owner")).filter(
        Q(reminded_at__lt=cutoff) | Q(reminded_at=None, heartbeat_at__lt=cutoff))
    count = 0
    for run_id in runs.values_list("pk", flat=True):
        notify_source_owner.delay(run_id, reminder=True)
        count += 1
    return count


@shared_task
def send_staff_digests() -> int:
    """Daily: each assignee's and each manager's digest of requests due soon or
    overdue (at most one a day per person: running it twice sends nothing more)."""
    return reminders.send_digests()
