"""The verification domain's task: matching what a consumer gave against the sources."""

from celery import shared_task

from requests_app.services.verification import portal


@shared_task
def check_identity(request_id: int) -> str:
    """Email confirmed: match the data points given against the sources."""
    return portal.do_check_identity(request_id)
