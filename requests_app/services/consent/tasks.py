"""The consent domain's periodic task: reading the sources' disclosure logs."""

from celery import shared_task

from requests_app.services.consent import disclosures


@shared_task
def scan_disclosures() -> dict:
    """Periodic: read new rows of the sources' disclosure tables (disclosures.py)."""
    return disclosures.scan_all()
