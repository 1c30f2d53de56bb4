"""The circuit breaker of sources: one source that hangs must not hold every
request (and every worker of the "sources" queue) for its timeouts and retries.

- Every call that fails on a timeout, a refused connection, a 429 or a 5xx (a
  TransientSourceError) counts against its source; a success clears the count.
- After SOURCE_BREAKER_FAILURES in a row the source is marked unhealthy (an audit
  event says why) and its runs are parked at once: the run whose call tripped it,
  the runs waiting for a retry or a worker, and every run claimed later fail with
  words naming the source and why, without a call. The request needs attention as
  soon as its other sources have answered.
- Marked healthy again, the source is on trial: its count stays where it was, so
  one more failure parks it again at once, and one success clears it and retries
  every run still parked. It is marked so when it answers a health probe (a
  periodic task, `probe_unhealthy_sources`: SQL `SELECT 1`, an HTTP `HEAD`; a
  manual source makes no calls), which retries one parked run, its trial (a
  service may answer a HEAD and still hang on real work: the others wait for the
  trial's answer rather than all holding a worker); when staff retry one of its
  runs from a desk ("Retry this source", "Retry fulfilment"); or when a manager
  marks it healthy (the admin's sources list), which retries them all at once.
- Probes of a source that stays unhealthy (or fails its trials) come at
  SOURCE_PROBE_SECONDS, then twice that, and so on up to an hour.
"""

import datetime
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from requests_app.models import Actor, DataSource, SourceRun, State
from requests_app.services.audit.events import record_event
from requests_app.services.queue import enqueue_on_commit
from requests_app.sources.base import SourceError
from requests_app.sources.registry import connector_for

log = logging.getLogger(__name__)
Health = DataSource.Health
CHECK = "requests_app.services.fulfilment.tasks.check_fulfilment"
RETRY_PARKED = "requests_app.services.fulfilment.tasks.retry_parked_runs"
MAX_PROBE_SECONDS = 3600


class SourceParked(SourceError):
    """The run's source is unhealthy: the run fails (parked) without a call."""


def words(source: DataSource) -> str:
    """Why a run of an unhealthy source is parked, for the desk."""
    return (f"{source.name} is marked unhealthy after {source.consecutive_failures} failed "
            f"calls in a row ({source.health_reason or 'no answer'}): its runs are parked "
            "and it is not called until it answers a health probe or staff retry it")


def is_open(source: DataSource) -> bool:
    """The source is unhealthy: its runs are parked, it is not called."""
    return source.health == Health.UNHEALTHY


def refuse_if_open(source: DataSource) -> None:
    """Before a call: raise SourceParked when the source is unhealthy."""
    if is_open(source):
        raise SourceParked(words(source))


def note_failure(source_id: int, error: str) -> str | None:
    """A call to the source failed transiently. Returns the words to park the run
    with when the source is unhealthy (now, or already), else None (the run's own
    retries go on). Tripping the breaker parks the source's waiting runs too."""
    with transaction.atomic():
        source = DataSource.objects.select_for_update().get(pk=source_id)
        if source.health == Health.UNHEALTHY:
            return words(source)
        source.consecutive_failures += 1
        if source.consecutive_failures < settings.SOURCE_BREAKER_FAILURES:
            source.save(update_fields=["consecutive_failures"])
            return None
        _trip(source, error)
    park_waiting_runs(source_id)
    return words(source)


def _trip(source: DataSource, error: str) -> None:
    """Mark the (locked) source unhealthy. A source that fails its trial (marked
    healthy again, then failing at once) waits twice as long for its next probe."""
    now = timezone.now()
    retrial = source.consecutive_failures > settings.SOURCE_BREAKER_FAILURES
    source.failed_probes = source.failed_probes + 1 if retrial else 0
    source.health = Health.UNHEALTHY
    source.unhealthy_since = now
    source.health_reason = error[:300]
    source.next_probe_at = now + _probe_delay(source.failed_probes)
    source.save(update_fields=["health", "consecutive_failures", "unhealthy_since",
                               "health_reason", "next_probe_at", "failed_probes"])
    record_event("source.unhealthy", actor=Actor.system(), reason=source.health_reason,
                 data={"source": source.name, "failures": source.consecutive_failures})
    log.warning("source %s marked unhealthy after %s failed calls", source.pk,
                source.consecutive_failures)


def _probe_delay(failed_probes: int) -> datetime.timedelta:
    seconds = settings.SOURCE_PROBE_SECONDS * 2 ** min(failed_probes, 12)
    return datetime.timedelta(seconds=min(seconds, MAX_PROBE_SECONDS))


def note_success(source: DataSource) -> None:
    """A call answered: the count starts again (nothing to write when it is 0, as
    the run's source was read when it was claimed). A source on trial has passed
    it: the runs still parked are retried. An unhealthy source stays so until a
    probe or staff say otherwise (this answer may be the last of many)."""
    if not source.consecutive_failures:
        return
    cleared = DataSource.objects.filter(pk=source.pk, health=Health.HEALTHY).update(
        consecutive_failures=0, failed_probes=0)
    if cleared and source.consecutive_failures >= settings.SOURCE_BREAKER_FAILURES:
        enqueue_on_commit(RETRY_PARKED, source.pk)


def park_waiting_runs(source_id: int) -> int:
    """The source's runs that wait for a worker or a retry (pending, their request
    being fulfilled) fail now, parked; each request's check is queued. A run a
    worker is claiming this instant is skipped: its claim finds the source open."""
    with transaction.atomic():
        source = DataSource.objects.get(pk=source_id)
        reason = words(source)
        runs = list(SourceRun.objects.select_for_update(of=("self",), skip_locked=True)
                    .select_related("request")
                    .filter(source_id=source_id, state=SourceRun.State.PENDING,
                            request__state=State.FULFILLING))
        for run in runs:
            run.state, run.parked, run.last_error = SourceRun.State.FAILED, True, reason
            run.finished_at = timezone.now()
            run.save(update_fields=["state", "parked", "last_error", "finished_at"])
            record_event(f"source.{run.action}.failed", actor=Actor.system(),
                         request=run.request, reason=reason,
                         data={"source": source.name, "attempts": run.attempts,
                               "parked": True})
            enqueue_on_commit(CHECK, run.request_id)
    return len(runs)


def mark_healthy(source: DataSource, *, actor: Actor, reason: str) -> bool:
    """Inside the caller's transaction: the source may be called again, on trial
    (see the module's docstring). False when it was not unhealthy."""
    if not DataSource.objects.filter(pk=source.pk, health=Health.UNHEALTHY).update(
            health=Health.HEALTHY, next_probe_at=None):
        return False
    record_event("source.healthy", actor=actor, reason=reason,
                 data={"source": source.name, "failures": source.consecutive_failures})
    return True


def parked_runs(source_id: int):
    """The source's parked runs whose request can still take them up again."""
    return SourceRun.objects.filter(
        source_id=source_id, parked=True, state=SourceRun.State.FAILED,
        request__state__in=[State.NEEDS_ATTENTION, State.FULFILLING])


def due_for_probe():
    return DataSource.objects.filter(health=Health.UNHEALTHY, next_probe_at__lte=timezone.now())


def probe(source: DataSource) -> bool:
    """Ask the source whether it answers (Connector.probe). True: it does; a
    failed probe puts the next one off (twice as long each time, up to an hour)."""
    try:
        answered = connector_for(source).probe()
    except SourceError:
        answered = False
    if answered:
        return True
    source.failed_probes += 1
    DataSource.objects.filter(pk=source.pk).update(
        failed_probes=source.failed_probes,
        next_probe_at=timezone.now() + _probe_delay(source.failed_probes))
    return False
