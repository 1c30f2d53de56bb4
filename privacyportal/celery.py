"""The Celery application. Tasks live beside the use cases they run, in each
domain's tasks.py under requests_app/services/ (and the reconciler); they take ids,
re-fetch their objects and call a use case. No state lives only in the broker."""

import logging
import os
import random
import time
from pathlib import Path

import celery
import kombu.exceptions
import redis.exceptions
from celery.exceptions import Retry
from celery.schedules import crontab
from celery.signals import before_task_publish
from django.conf import settings
from django.db import utils as db_errors
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacyportal.settings")

log = logging.getLogger(__name__)

# What a task raises when the database or the broker went away under it: not a
# failure of the work, which is sent again after a backoff instead.
OUTAGE_ERRORS = (db_errors.OperationalError, db_errors.InterfaceError,
                 redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                 kombu.exceptions.OperationalError)
# Backoff: 1 s doubling to 10 s (with jitter), for up to this many tries (~15 min).
OUTAGE_RETRIES = 100
OUTAGE_BACKOFF_MAX = 10.0
OUTAGE_HEADER = "outage_tries"
# Every message says when it was sent (/healthz reports each queue's oldest).
SENT_AT_HEADER = "sent_at"


class Task(celery.Task):
    """Every task of the portal: one that fails because the database or the broker
    cannot be reached is sent again after a backoff (and the message taken as
    retried, not done), counted apart from the task's own retries (a source run's
    attempts are its own). Eager runs (tests) raise as they are."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except OUTAGE_ERRORS as exc:
            request = self.request
            tries = int(getattr(request, OUTAGE_HEADER, None) or 0)
            if request.is_eager or request.called_directly or tries >= OUTAGE_RETRIES:
                raise
            delay = random.uniform(0.5, 1.0) * min(OUTAGE_BACKOFF_MAX, 2.0 ** tries)
            log.warning("%s: %s, sent again in %.1f s (try %s)", self.name,
                        type(exc).__name__, delay, tries + 1)
            # The same message again (its id, queue and own retries), later.
            self.signature_from_request(request, args, kwargs, countdown=delay,
                                        headers={OUTAGE_HEADER: tries + 1}).apply_async()
            raise Retry(exc=exc, when=delay) from exc


@before_task_publish.connect
def _stamp_sent_at(headers=None, **_kwargs) -> None:
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


app = celery.Celery("privacyportal", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")

# Three queues, each served by workers of its own in production and under `make run`
# (docs/deployment.md), so that a source that hangs holds only the workers of
# "sources": the emails and the steps of the machine go on. A worker started
# without -Q serves all three (the tests' worker, the embedded defaults).
STEPS, EMAILS, SOURCES = "steps", "emails", "sources"
QUEUES = (STEPS, EMAILS, SOURCES)
ROUTES = {
    # Every email the portal sends (the outbox), owners' and third parties' notices.
    "requests_app.services.notices.tasks.*": {"queue": EMAILS},
    # Everything that calls a source or builds from what sources gave.
    "requests_app.services.fulfilment.tasks.*": {"queue": SOURCES},
}
app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue=STEPS,
    task_routes=ROUTES,
    task_serializer="json",
    accept_content=["json"],
    # A task is acknowledged only once it has finished, and given back to the
    # queue if its worker dies: a killed worker loses no work.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    # A worker keeps trying to reach a broker that went away, however long it takes.
    broker_connection_max_retries=None,
    # A send rides out a blip (three quick tries, under a second in all), no more: a
    # longer outage is the outbox's and the reconciler's (services/queue.py).
    task_publish_retry=True,
    task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.2,
                               "interval_max": 0.5},
    worker_hijack_root_logger=False,
    beat_schedule={
        "expire-unverified-requests": {
            "task": "requests_app.services.requests.tasks.expire_unverified_requests",
            "schedule": crontab(minute=17),
        },
        "close-quiet-requests": {
            "task": "requests_app.services.requests.tasks.close_quiet_requests",
            "schedule": crontab(hour=3, minute=10),
        },
        "reconcile": {
            "task": "requests_app.services.reconciler.reconcile",
            "schedule": 60.0,
        },
        # Signed checkpoints of the audit chain's head, outside the database.
        "write-audit-checkpoint": {
            "task": "requests_app.services.audit.tasks.write_audit_checkpoint",
            "schedule": settings.AUDIT_CHECKPOINT_MINUTES * 60.0,
        },
        "note-audit-chain-head": {
            "task": "requests_app.services.audit.tasks.note_audit_chain_head",
            "schedule": crontab(hour=0, minute=5),
        },
        "purge-expired-identities": {
            "task": "requests_app.services.retention.tasks.purge_expired_identities",
            "schedule": crontab(hour=2, minute=30),
        },
        "scan-disclosures": {
            "task": "requests_app.services.consent.tasks.scan_disclosures",
            "schedule": 15 * 60.0,
        },
        "purge-expired-packages": {
            "task": "requests_app.services.retention.tasks.purge_expired_packages",
            "schedule": crontab(minute=41),
        },
        "probe-unhealthy-sources": {
            "task": "requests_app.services.fulfilment.tasks.probe_unhealthy_sources",
            "schedule": 15.0,  # each source waits SOURCE_PROBE_SECONDS (or more) between probes
        },
        "sweep-orphan-package-files": {
            "task": "requests_app.services.retention.tasks.sweep_orphan_package_files",
            "schedule": crontab(minute=47),
        },
        "send-staff-digests": {
            "task": "requests_app.services.notices.tasks.send_staff_digests",
            "schedule": crontab(hour=7, minute=0),
        },
        "remind-source-owners": {
            "task": "requests_app.services.notices.tasks.remind_source_owners",
            "schedule": crontab(hour=8, minute=0),
        },
    },
)
# The domains whose tasks.py a worker imports, and the reconciler.
DOMAINS = ["audit", "consent", "fulfilment", "notices", "requests", "retention", "verification"]
app.autodiscover_tasks([f"requests_app.services.{domain}" for domain in DOMAINS])
# The reconciler, and the workers' heartbeat (services/health.py, started by a signal).
app.conf.include = ["requests_app.services.reconciler", "requests_app.services.health"]


def ensure_broker_folders() -> None:
    """kombu's filesystem transport expects its folders to exist."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
