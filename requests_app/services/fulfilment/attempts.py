"""One attempt at a source run: claimed, fenced, and finished or failed.

Three places work on a run: the worker (runs.execute_run), the endpoint where an
HTTP source answers later (api/callbacks.py) and the page where a manual source's
owner answers (manual.py). Each does it through `attempt()`:

    with attempt(run_id, waiting=True) as work:    # raises NotOurs: not ours to take
        ...                                         # the connector's work
        work.finish(records, result)                # or an error fails the run

- `claim` takes the run with one conditional UPDATE naming the state and attempt it
  read (a callback's or an owner's under a row lock) and counts the attempt
  (`attempts`, which only ever grows): two deliveries of the same task cannot both
  work on it;
- every later write names the attempt (`attempts` = its number, state running), so
  a worker that was taken over (it went quiet, another claimed the run) writes
  nothing more: its finish is ignored, its progress refused (`Attempt.save_progress`);
- whatever the work raises settles the run: a transient error with retries left
  puts it back for the task's retry, any other error fails it with words for staff
  (an unexpected error's own message may hold personal values: only its type is
  shown, and the log says where, not what);
- while the work runs, a pulse beats the attempt's heart every third of
  SOURCE_RUN_STALE_SECONDS, whatever the work is doing (a dry run's long reads, a
  re-scan, a slow service): only an attempt whose worker died goes quiet and may
  be taken over.
"""

import datetime
import logging
import traceback
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone

from requests_app.models import Actor, SourceRun, State
from requests_app.rules import withheld_under
from requests_app.services.audit.events import record_event
from requests_app.services.fulfilment import breaker
from requests_app.services.fulfilment.pulse import Pulse
from requests_app.services.queue import enqueue_on_commit
from requests_app.sources.base import SourceError, TransientSourceError
from requests_app.sources.records import RecordSink
from requests_app.sources.registry import connector_class

log = logging.getLogger(__name__)
RunState = SourceRun.State

CHECK = "requests_app.services.fulfilment.tasks.check_fulfilment"
NOTIFY_OWNER = "requests_app.services.notices.tasks.notify_source_owner"


def stale_after() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.SOURCE_RUN_STALE_SECONDS)


class NotOurs(Exception):
    """The run is not this caller's to take now: another attempt holds it, or it is
    in no state to be taken (done, failed, no longer waiting)."""


class SourceBusy(NotOurs):
    """The run's source already has SOURCE_MAX_CONCURRENT_RUNS runs at work: the run
    stays pending (sent again shortly by the worker), so that a source that hangs
    holds at most that many of the workers and the other sources' runs go on."""


BUSY = "busy"  # what _claim returns for a run whose source is busy


def _others_at_work(now) -> Subquery:
    """How many other runs of the run's source are at work (for SourceBusy)."""
    return Subquery(SourceRun.objects.filter(
        source_id=OuterRef("source_id"), state=RunState.RUNNING,
        heartbeat_at__gte=now - stale_after()).exclude(pk=OuterRef("pk"))
        .order_by().values("source_id").annotate(n=Count("pk")).values("n")[:1])


def claim(run_id: int, *, waiting: bool = False) -> int | None:
    """Take a run for this worker and return its attempt number (None: not ours).

    A worker takes a pending run, or a running one whose worker has gone quiet (it
    died); a callback or a manual owner takes a waiting one (a callback also a
    running one: the service may answer before its worker has recorded "waiting").
    Every later write names the attempt and is ignored once another has taken over.
    A worker's claim starts a new attempt: its duration counts from now. A callback
    or an owner continues the attempt that left the run waiting.
    """
    run = _claim(run_id, waiting=waiting)
    return None if run is None or run is BUSY else run.attempts


def _claim(run_id: int, *, waiting: bool = False) -> SourceRun | str | None:
    """claim(), returning the claimed run with its source, request, identity and
    evidence (the work needs them all: no second fetch), or BUSY (SourceBusy)."""
    if waiting:
        return _claim_waiting(run_id)
    now = timezone.now()
    query = SourceRun.objects.select_related("source", "request__identity",
                                             "request__evidence").filter(pk=run_id)
    limit = settings.SOURCE_MAX_CONCURRENT_RUNS
    if limit:
        query = query.annotate(others_at_work=_others_at_work(now))
    run = query.first()
    if run is None or run.request.state != State.FULFILLING or not (
            run.state == RunState.PENDING or (
                run.state == RunState.RUNNING and run.heartbeat_at < now - stale_after())):
        return None
    # Nobody has taken it since it was read (`attempts` only grows), and a running
    # one is still quiet: the database re-checks this on the row's latest version.
    unchanged = SourceRun.objects.filter(pk=run_id, state=run.state, attempts=run.attempts)
    if run.state == RunState.RUNNING:
        unchanged = unchanged.filter(heartbeat_at__lt=now - stale_after())
    if limit and (run.others_at_work or 0) >= limit:
        # Pending again (a quiet worker's run too), sent again by the worker; the
        # reconciler leaves it alone meanwhile (dispatched now).
        unchanged.update(state=RunState.PENDING, dispatched_at=now)
        return BUSY
    if not unchanged.update(
            state=RunState.RUNNING, attempts=run.attempts + 1, heartbeat_at=now,
            started_at=now, finished_at=None):
        return None
    run.state, run.attempts, run.heartbeat_at = RunState.RUNNING, run.attempts + 1, now
    run.started_at, run.finished_at = now, None
    return run


def _claim_waiting(run_id: int) -> SourceRun | None:
    """A callback or an owner continuing a waiting run (the attempt it left)."""
    now = timezone.now()
    with transaction.atomic():
        run = (SourceRun.objects.select_for_update(of=("self",))
               .select_related("source", "request__identity", "request__evidence")
               .filter(pk=run_id).first())
        if run is None or not (run.state == RunState.WAITING or (
                run.state == RunState.RUNNING
                and connector_class(run.source.kind).replies_later)):
            return None
        run.state = RunState.RUNNING
        run.attempts += 1
        run.heartbeat_at = now
        if run.started_at is None:
            run.started_at, run.finished_at = now, None
        run.save(update_fields=["state", "attempts", "heartbeat_at", "started_at",
                                "finished_at"])
        return run


def heartbeat(run_id: int, attempt: int) -> bool:
    """Beat the attempt's heart; False when the run is no longer this attempt's."""
    return bool(SourceRun.objects.filter(
        pk=run_id, attempts=attempt, state=RunState.RUNNING).update(heartbeat_at=timezone.now()))


def finish_run(run_id: int, records, result: dict, *, attempt: int,
               waiting: bool = False, queue_check: bool = True,
               claimed: SourceRun | None = None) -> bool:
    """Record a run's outcome and (with `queue_check`) queue the request's check of
    its next step. False when the run was taken over by another attempt (then this
    outcome is not recorded). `claimed`: the run as the worker claimed it (with its
    source and request), which spares fetching it again."""
    now = timezone.now()
    outcome = {"result": result, "records_found": records, "last_error": "",
               "heartbeat_at": now}
    if waiting:
        outcome["state"] = RunState.WAITING
    else:
        outcome.update(state=RunState.DONE, finished_at=now)
    with transaction.atomic():
        # The attempt's fence and the write in one statement, which locks the row
        # until commit: recorded only if this attempt still holds the run.
        if not SourceRun.objects.filter(pk=run_id, state=RunState.RUNNING,
                                        attempts=attempt).update(**outcome):
            return False
        run = claimed if claimed is not None else (
            SourceRun.objects.select_related("source", "request").get(pk=run_id))
        notify_owner = waiting and connector_class(run.source.kind).needs_owner
        record_event(
            f"source.{run.action}." + ("waiting" if waiting else "done"),
            actor=Actor.system(), request=run.request,
            data={"source": run.source.name, "records": records,
                  "tables": _counts(result)},
        )
        if notify_owner:
            enqueue_on_commit(NOTIFY_OWNER, run.pk)
        if queue_check:
            enqueue_on_commit(CHECK, run.request_id)
    return True


def _counts(result: dict) -> dict:
    """Names and counts only, for the audit trail."""
    tables = result.get("tables") or result.get("collections") or {}
    return {k: (v.get("count", v.get("rows")) if isinstance(v, dict) else v)
            for k, v in tables.items()}


def note_error(run_id: int, error: str, *, final: bool, attempt: int,
               queue_check: bool = True, parked: bool = False) -> None:
    """A failed attempt. `final`: the last retry is spent; the run fails and staff see
    why (and, with `queue_check`, the request's check is queued). `parked`: it fails
    because its source is unhealthy (breaker.py), and is retried when it is healthy."""
    with transaction.atomic():
        run = SourceRun.objects.select_for_update(of=("self",)).select_related(
            "source", "request").get(pk=run_id)
        if run.state != RunState.RUNNING or run.attempts != attempt:
            return  # another attempt has taken the run over
        run.last_error = error
        if final or parked:
            run.state = RunState.FAILED
            run.parked = parked
            run.finished_at = timezone.now()
            record_event(f"source.{run.action}.failed", actor=Actor.system(),
                         request=run.request, reason=error,
                         data={"source": run.source.name, "attempts": run.attempts,
                               **({"parked": True} if parked else {})})
            if queue_check:
                enqueue_on_commit(CHECK, run.request_id)
        else:
            run.state = RunState.PENDING  # the retry will claim it again
            run.dispatched_at = timezone.now()  # the reconciler leaves it to the retry
        run.save()


class Attempt:
    """A claimed attempt: `number` names it in every write. `outcome` once settled:
    "done", "waiting", "retry" (put back for the task's retry) or "failed" (with
    `error`, the exception that failed it, when one did)."""

    def __init__(self, run: SourceRun, *, final: bool, queue_check: bool):
        self.run, self.run_id, self.number = run, run.pk, run.attempts
        self.final, self.queue_check = final, queue_check
        self.outcome = ""
        self.error: Exception | None = None

    def heartbeat(self) -> bool:
        return heartbeat(self.run_id, self.number)

    def sink(self, *, beating: bool = False) -> RecordSink:
        """Where this attempt writes gathered records: the values of the categories
        the request's jurisdiction holds back replaced (rules.withheld_under), each
        collection saying which and why. `beating`: a heartbeat as records come."""
        return RecordSink(self.run, self.number,
                          on_progress=self.heartbeat if beating else None,
                          withheld=withheld_under(self.run.request.jurisdiction))

    def save_progress(self, result: dict) -> None:
        """Record how far the work got (the run's result) and beat the heart; raises
        SourceError when another attempt has taken the run over: stop writing."""
        if not SourceRun.objects.filter(
                pk=self.run_id, attempts=self.number, state=RunState.RUNNING
        ).update(result=result, heartbeat_at=timezone.now()):
            raise SourceError("taken over by another attempt")

    def finish(self, records, result: dict, *, waiting: bool = False) -> bool:
        """The outcome (see finish_run); False when another attempt took over."""
        self.outcome = "waiting" if waiting else "done"
        finished = finish_run(self.run_id, records, result, attempt=self.number,
                              waiting=waiting, queue_check=self.queue_check, claimed=self.run)
        breaker.note_success(self.run.source)  # it answered, whoever records the answer
        return finished

    def fail(self, error: str, *, final: bool = True, parked: bool = False) -> None:
        note_error(self.run_id, error, final=final, attempt=self.number,
                   queue_check=self.queue_check, parked=parked)
        self.outcome = "failed" if final or parked else "retry"


@contextmanager
def attempt(run_id: int, *, waiting: bool = False, final: bool = True,
            queue_check: bool = True):
    """Claim the run (NotOurs when it is not ours to take; `waiting`: as a callback
    or an owner continuing a waiting run), give the work an Attempt, and settle the
    run whatever the work does. Errors are recorded on the run, not raised: a
    TransientSourceError is retried while `final` is False; any other error fails
    the run. `queue_check`: queue the request's check once the run is settled (the
    worker checks at once itself)."""
    run = _claim(run_id, waiting=waiting)
    if run is None:
        raise NotOurs(run_id)
    if run is BUSY:
        raise SourceBusy(run_id)
    work = Attempt(run, final=final, queue_check=queue_check)
    pulse = Pulse(work.heartbeat, f"run-{work.run_id}")
    pulse.start()
    try:
        yield work
    except breaker.SourceParked as exc:
        work.error = exc
        work.fail(str(exc), parked=True)
    except TransientSourceError as exc:
        # A timeout, a refused connection, a 5xx: counted against the source, which
        # is marked unhealthy after a few in a row (then the run is parked at once).
        work.error = exc
        parking = breaker.note_failure(work.run.source_id, str(exc))
        if parking:
            work.fail(f"{exc}. {parking}", parked=True)
        else:
            work.fail(str(exc), final=final)
    except SourceError as exc:
        work.error = exc
        work.fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the run must not stay claimed
        # Messages of unexpected errors (a database's DETAIL, say) may hold personal
        # values: log where it happened, not what it said.
        log.error("run %s failed with %s at\n%s", run_id, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        work.error = exc
        work.fail(f"internal error ({type(exc).__name__})")
    else:
        if not work.outcome:
            work.fail("internal error (the work recorded no outcome)")
    finally:
        pulse.stop()
