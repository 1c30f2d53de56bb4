"""The Celery application. Tasks live beside the use cases they run, in each
domain's tasks.py under requests_app/services/ (and the reconciler); they take ids,
re-fetch their objects and call a use case. No state lives only in the broker."""

import os
from pathlib import Path

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacyportal.settings")

app = Celery("privacyportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    # A task is acknowledged only once it has finished, and given back to the
    # queue if its worker dies: a killed worker loses no work.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule={
        "expire-unverified-requests": {
            "task": "requests_app.services.requests.tasks.expire_unverified_requests",
            "schedule": crontab(minute=17),
        },
        "reconcile": {
            "task": "requests_app.services.reconciler.reconcile",
            "schedule": 60.0,
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
        "sweep-orphan-package-files": {
            "task": "requests_app.services.retention.tasks.sweep_orphan_package_files",
            "schedule": crontab(minute=47),
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
app.conf.include = ["requests_app.services.reconciler"]


def ensure_broker_folders() -> None:
    """kombu's filesystem transport expects its folders to exist."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
