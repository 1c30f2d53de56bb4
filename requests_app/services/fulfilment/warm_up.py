"""What a worker process does once when it starts, so that its first task does not
pay for it (fulfilment/tasks.py starts it on Celery's worker_process_init)."""

import logging

from privacyportal.celery import app
from requests_app.models import DataSource
from requests_app.sources.registry import connector_for

log = logging.getLogger(__name__)


def warm_up_worker() -> None:
    """Each enabled SQL source's tables reflected and its connections opened, the
    broker connected. A source that cannot be reached is only logged (by id and
    error type): its runs will meet the error and retry as ever."""
    try:
        for source in DataSource.objects.filter(enabled=True, kind=DataSource.Kind.SQL):
            try:
                connector_for(source).warm_up()
            except Exception as exc:  # noqa: BLE001 - a start-up nicety, never fatal
                log.warning("warm-up: source %s not reached (%s)", source.pk,
                            type(exc).__name__)
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        log.warning("warm-up stopped (%s)", type(exc).__name__)
