"""The Celery application: tasks live in requests_app/tasks.py, take ids, re-fetch
their objects and call a service function. No state lives only in the broker."""

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
            "task": "requests_app.tasks.expire_unverified_requests",
            "schedule": crontab(minute=17),
        },
        "reconcile": {
            "task": "requests_app.tasks.reconcile",
            "schedule": 60.0,
        },
        "note-audit-chain-head": {
            "task": "requests_app.tasks.note_audit_chain_head",
            "schedule": crontab(hour=0, minute=5),
        },
        "purge-expired-identities": {
            "task": "requests_app.tasks.purge_expired_identities",
            "schedule": crontab(hour=2, minute=30),
        },
        "scan-disclosures": {
            "task": "requests_app.tasks.scan_disclosures",
            "schedule": 15 * 60.0,
        },
        "purge-expired-packages": {
            "task": "requests_app.tasks.purge_expired_packages",
            "schedule": crontab(minute=41),
        },
        "remind-source-owners": {
            "task": "requests_app.tasks.remind_source_owners",
            "schedule": crontab(hour=8, minute=0),
        },
    },
)
app.autodiscover_tasks()


def ensure_broker_folders() -> None:
    """kombu's filesystem transport expects its folders to exist."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
