"""Celery tasks: thin wrappers that take ids, re-fetch, and call a service.

Tasks never log personal data: only references, ids and outcomes.
"""

import datetime
import logging
import random
import smtplib
import threading

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from requests_app import packages
from requests_app.models import Actor, OutgoingEmail, PrivacyRequest, SourceRun, State
from requests_app.rules import OPT_OUT_TYPES
from requests_app.services import fulfilment, notices, staff_emails
from requests_app.services.lifecycle import TransitionRefused, do_transition

log = logging.getLogger(__name__)


_EMAIL_ERRORS = (smtplib.SMTPException, OSError)


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    """Each worker process, once started, reflects the SQL sources and connects in a
    thread of its own (a slow source must not hold up the process: Celery kills a
    pool process whose start takes more than a few seconds)."""
    def warm_up():
        try:
            fulfilment.warm_up_worker()
        finally:
            connections.close_all()  # this thread's own connection to the portal database

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()


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
    """Verified: into review. An opt-out needs no review and is approved at once."""
    _system_step(request_id, "start_review")
    request = PrivacyRequest.objects.only("request_type", "state").get(pk=request_id)
    if request.type_rules.is_opt_out and request.state == State.IN_REVIEW:
        _system_step(request_id, "approve_opt_out")


@shared_task
def begin_fulfilment(request_id: int) -> None:
    fulfilment.begin(request_id)


def _backoff(retries: int) -> float:
    """Exponential backoff with full jitter: up to 10 s, 20 s, 40 s ... capped at 5 min."""
    return random.uniform(1, min(300, 10 * 2**retries))


@shared_task(bind=True, max_retries=5)
def run_source(self, run_id: int) -> None:
    final = self.request.retries >= self.max_retries
    if fulfilment.execute_run(run_id, final_attempt=final) == "retry":
        raise self.retry(countdown=_backoff(self.request.retries))


@shared_task
def check_fulfilment(request_id: int) -> None:
    fulfilment.check(request_id)


@shared_task
def build_results(request_id: int) -> None:
    request = PrivacyRequest.objects.select_related("identity").get(pk=request_id)
    if not fulfilment.all_done(request):
        return
    if request.type_rules.is_deletion and request.erasure_approved_at:
        with transaction.atomic():
            fulfilment.after_erasure(request)
    packages.build(request)
    fulfilment.results_built(request_id)
    packages.discard_run_files(request)


@shared_task(autoretry_for=_EMAIL_ERRORS, retry_backoff=30, retry_backoff_max=600,
             retry_jitter=True, max_retries=12)
def notify_source_owner(run_id: int, reminder: bool = False) -> None:
    staff_emails.notify_source_owner(run_id, reminder=reminder)


@shared_task(autoretry_for=_EMAIL_ERRORS, retry_backoff=30, retry_backoff_max=600,
             retry_jitter=True, max_retries=12)
def send_third_party_notice(notice_id: int) -> None:
    staff_emails.send_third_party_notice(notice_id)


@shared_task
def remind_source_owners() -> int:
    """Periodic: remind owners of manual tasks that have waited too long."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.MANUAL_REMINDER_DAYS)
    runs = SourceRun.objects.filter(state=SourceRun.State.WAITING, source__kind="manual").filter(
        Q(reminded_at__lt=cutoff) | Q(reminded_at=None, heartbeat_at__lt=cutoff))
    count = 0
    for run_id in runs.values_list("pk", flat=True):
        notify_source_owner.delay(run_id, reminder=True)
        count += 1
    return count


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



@shared_task
def reconcile() -> dict:
    """Periodic: find work the database says is due but no task is doing (the
    broker lost a message, a worker died, the broker was down when a step
    committed) and send it again. Every task is idempotent, so a duplicate is
    harmless."""
    stale = timezone.now() - datetime.timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
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
    # Opt-outs left in review (their approval step was lost).
    for request_id in PrivacyRequest.objects.filter(
        state=State.IN_REVIEW, updated_at__lte=stale, request_type__in=OPT_OUT_TYPES
    ).values_list("pk", flat=True):
        begin_review.delay(request_id)
        counts["reviews"] += 1
    counts["runs"] = 0
    for run_id in fulfilment.stuck_runs().values_list("pk", flat=True):
        SourceRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
        run_source.delay(run_id)
        counts["runs"] += 1
    # HTTP sources that answered 202 and never called back.
    counts["timeouts"] = 0
    for run_id in fulfilment.silent_http_runs().values_list("pk", flat=True):
        fulfilment.fail_silent_run(run_id)
        counts["timeouts"] += 1
    # Requests whose runs are all settled but which did not move on (a lost check).
    counts["checks"] = 0
    for request_id in PrivacyRequest.objects.filter(
        state__in=[State.FULFILLING, State.WAITING_MANUAL], updated_at__lte=stale
    ).exclude(source_runs__state__in=[SourceRun.State.PENDING, SourceRun.State.RUNNING]
              ).values_list("pk", flat=True):
        check_fulfilment.delay(request_id)
        counts["checks"] += 1
    if any(counts.values()):
        log.info("reconcile: re-sent %s", counts)
    return counts


@shared_task
def note_audit_chain_head() -> str:
    """Daily: verify the chain and record its head (and whether it is intact)."""
    from requests_app.services.audit_chain import record_chain_head

    event = record_chain_head()
    if not event.data["intact"]:
        log.error("audit trail broken at event %s", event.data["broken_at"])
    return event.data["head"]


@shared_task
def purge_expired_identities() -> int:
    """Daily: retention (see audit/retention.py)."""
    from requests_app.audit.retention import purge_all

    return purge_all()


@shared_task
def scan_disclosures() -> dict:
    """Periodic: read new rows of the sources' disclosure tables (services/disclosures.py)."""
    from requests_app.services import disclosures

    return disclosures.scan_all()


@shared_task
def check_identity(request_id: int) -> str:
    """Email confirmed: match the data points given against the sources."""
    from requests_app.services import portal

    return portal.do_check_identity(request_id)


@shared_task
def purge_expired_packages() -> int:
    """Periodic: packages whose download link expired are deleted (the row stays);
    old one-time codes and the permission files of ended requests go."""
    from requests_app.services import codes, portal

    codes.purge_old()
    portal.purge_verification_files()
    return portal.purge_expired_packages()
