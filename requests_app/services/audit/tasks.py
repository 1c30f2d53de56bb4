"""The audit trail's periodic task."""

import logging

from celery import shared_task

from requests_app.services.audit.chain import record_chain_head

log = logging.getLogger(__name__)


@shared_task
def note_audit_chain_head() -> str:
    """Daily: verify the chain and record its head (and whether it is intact)."""
    event = record_chain_head()
    if not event.data["intact"]:
        log.error("audit trail broken at event %s", event.data["broken_at"])
    return event.data["head"]
