"""Fulfilment: turning an approved request into the person's data, or its deletion,
across every registered source.

State lives in the database, never only in the broker:
- `begin` creates one SourceRun per source (with the request locked; running it
  twice adds nothing) and dispatches a task per run that is not finished;
- `execute_run` claims its run with a conditional UPDATE (so two deliveries of the
  same task cannot both work), asks the source's connector, and records the outcome;
- `check` looks at all runs of the request and takes the next step of the machine:
  wait on manual sources, flag for attention, or say that the results can be built;
- the worker that finishes a run checks (and builds the results) in the same task,
  so a request whose sources answer at once goes from approval to results ready in
  two broker trips (begin_fulfilment, run_source); a run finished elsewhere (an HTTP
  callback, a manual owner's upload) queues the check;
- the reconciler (services/reconciler.py) re-dispatches runs nobody is working on.
"""

import datetime
import logging
import traceback

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from requests_app.models import (
    Actor,
    DataSource,
    Package,
    PrivacyRequest,
    SourceRun,
    State,
    ThirdParty,
)
from requests_app.services.audit.events import record_event
from requests_app.services.requests.lifecycle import TransitionRefused, apply_transition
from requests_app.services.queue import enqueue_on_commit
from requests_app.services.fulfilment import packages, third_parties
from requests_app.sources.base import IdentityData, SourceError, TransientSourceError
from requests_app.sources.records import RecordSink, run_dir
from requests_app.sources.registry import connector_for

log = logging.getLogger(__name__)
Action, RunState = SourceRun.Action, SourceRun.State

# The tasks this module asks for, by name (fulfilment/tasks.py imports this module).
BEGIN = "requests_app.services.fulfilment.tasks.begin_fulfilment"
RUN_SOURCE = "requests_app.services.fulfilment.tasks.run_source"
CHECK = "requests_app.services.fulfilment.tasks.check_fulfilment"
NOTIFY_OWNER = "requests_app.services.notices.tasks.notify_source_owner"

# Which kinds of source take part in each action.
KINDS = {
    Action.GATHER: {"sql", "http", "manual"},
    Action.PLAN_ERASURE: {"sql", "http", "manual"},
    Action.ERASE: {"sql", "http", "manual"},
    Action.CORRECT: {"http", "manual"},
    Action.OPT_OUT: {"http", "manual"},
}


def stale_after() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.SOURCE_RUN_STALE_SECONDS)


def action_for(request: PrivacyRequest) -> str | None:
    """The work fulfilment does now for this request (None: nothing to ask sources)."""
    code = request.request_type
    if request.type_rules.is_deletion:
        return Action.ERASE if request.erasure_approved_at else Action.PLAN_ERASURE
    if code in ("access", "portability"):
        return Action.GATHER
    if code == "correction":
        return Action.CORRECT
    if request.type_rules.is_opt_out:
        return Action.OPT_OUT
    return None  # know (categories): answered from the registry alone


def _sources_for(action: str, request: PrivacyRequest):
    """The sources an action asks. An erasure asks exactly the sources whose dry run
    was approved, never one enabled since (it had no dry run)."""
    if action == Action.ERASE:
        return DataSource.objects.filter(runs__request=request, runs__action=Action.PLAN_ERASURE,
                                         runs__state=RunState.DONE).distinct()
    sources = DataSource.objects.filter(enabled=True, kind__in=KINDS[action])
    if action == Action.OPT_OUT and request.purposes.exists():
        # Only the sources the withdrawn purposes govern.
        sources = sources.filter(purposes_governed__in=request.purposes.all()).distinct()
    return sources


def _start_afresh(request: PrivacyRequest) -> None:
    """A request approved again (after a rejected dry run, or a granted appeal) is
    fulfilled again: earlier runs and packages of the same work are reset, so
    that nobody reviews or releases results of the previous round. (`has_runs` and
    `has_packages`, read with the lock by begin(), spare a first approval both
    statements.)"""
    if getattr(request, "has_runs", True):
        request.source_runs.filter(action__in=[Action.GATHER, Action.PLAN_ERASURE]).update(
            state=RunState.PENDING, result={}, records_found=None, last_error="",
            finished_at=None)
    if getattr(request, "has_packages", True):
        for package in request.packages.filter(purged_at=None):
            packages.discard(package)


def begin(request_id: int) -> bool:
    """After approval (or a retry): move to fulfilling and dispatch the runs. True
    when there is nothing to wait for (no sources, or all done already): the caller
    checks at once. Else each run checks when it finishes."""
    with transaction.atomic(durable=True):
        # Whether it has runs or live packages yet, read with the lock (one round
        # trip): a first approval, the usual case, then needs neither looked at.
        request = PrivacyRequest.objects.locked().annotate(
            has_runs=Exists(SourceRun.objects.filter(request=OuterRef("pk"))),
            has_packages=Exists(Package.objects.filter(request=OuterRef("pk"), purged_at=None)),
        ).get(pk=request_id)
        if request.state == State.APPROVED:
            apply_transition(request, "start_fulfilment", actor=Actor.system())
            _start_afresh(request)
        elif request.state == State.WAITING_MANUAL:
            apply_transition(request, "resume_fulfilment", actor=Actor.system())
        elif request.state != State.FULFILLING:
            return False
        action = action_for(request)
        to_dispatch = _runs_to_dispatch(request, action) if action else []
        for run in to_dispatch:
            enqueue_on_commit(RUN_SOURCE, run.pk)
        if action == Action.OPT_OUT:
            third_parties.tell(request, ThirdParty.objects.filter(
                purposes__in=request.purposes.all()).distinct())
    return not to_dispatch


def _runs_to_dispatch(request: PrivacyRequest, action: str) -> list[SourceRun]:
    """One run per source of the action (created when missing: running it twice adds
    nothing), and of those the pending ones, marked dispatched now. Runs are created
    only here, with the request locked, so a plain INSERT (no get_or_create and its
    savepoint) cannot race another; the unique constraint still stands guard. New
    runs are born dispatched; only pending runs from before are updated."""
    now = timezone.now()
    existing = ({r.source_id: r for r in request.source_runs.filter(action=action)}
                if getattr(request, "has_runs", True) else {})
    to_dispatch, earlier = [], []
    for source in _sources_for(action, request):
        run = existing.get(source.pk)
        if run is None:
            to_dispatch.append(SourceRun.objects.create(
                request=request, source=source, action=action, dispatched_at=now))
        elif run.state == RunState.PENDING:
            to_dispatch.append(run)
            earlier.append(run.pk)
    if earlier:
        SourceRun.objects.filter(pk__in=earlier).update(dispatched_at=now)
    return to_dispatch


def claim(run_id: int, *, waiting: bool = False) -> int | None:
    """Take a run for this worker and return its attempt number (None: not ours).

    A worker takes a pending run, or a running one whose worker has gone quiet (it
    died); a callback or a manual owner takes a waiting one (a callback also a
    running one: the service may answer before its worker has recorded "waiting").
    Every later write names the attempt and is ignored once another has taken over.
    """
    run = _claim(run_id, waiting=waiting)
    return None if run is None else run.attempts


def _claim(run_id: int, *, waiting: bool = False) -> SourceRun | None:
    """claim(), returning the claimed run with its source, request, identity and
    evidence (the work needs them all: no second fetch)."""
    now = timezone.now()
    with transaction.atomic():
        run = (SourceRun.objects.select_for_update(of=("self",))
               .select_related("source", "request__identity", "request__evidence")
               .filter(pk=run_id).first())
        if run is None:
            return None
        if waiting:
            ours = run.state == RunState.WAITING or (
                run.state == RunState.RUNNING and run.source.kind == "http")
        else:
            ours = run.state == RunState.PENDING or (
                run.state == RunState.RUNNING and run.heartbeat_at < now - stale_after())
            ours = ours and run.request.state == State.FULFILLING
        if not ours:
            return None
        run.state = RunState.RUNNING
        run.attempts += 1
        run.heartbeat_at = now
        run.started_at = run.started_at or now
        run.save(update_fields=["state", "attempts", "heartbeat_at", "started_at"])
        return run


def heartbeat(run_id: int, attempt: int) -> None:
    SourceRun.objects.filter(pk=run_id, attempts=attempt, state=RunState.RUNNING).update(
        heartbeat_at=timezone.now())


def execute_run(run_id: int, *, final_attempt: bool = True) -> str:
    """Do the run's work if it can be claimed. Returns "skipped" (not ours), "done",
    "retry" (a transient error, retries left) or "failed". The caller (the worker)
    checks the request after "done" or "failed": nothing is queued for it here."""
    return execute(run_id, final_attempt=final_attempt)[0]


def execute(run_id: int, *, final_attempt: bool = True) -> tuple[str, int | None]:
    """execute_run(), and the id of the run's request (None when skipped), which
    the worker checks next."""
    run = _claim(run_id)
    if run is None:
        return "skipped", None
    return _outcome(run, final_attempt), run.request_id


def _outcome(run: SourceRun, final_attempt: bool) -> str:
    run_id, attempt = run.pk, run.attempts
    try:
        _work(run)
        return "done"
    except TransientSourceError as exc:
        note_error(run_id, str(exc), final=final_attempt, attempt=attempt, queue_check=False)
        return "failed" if final_attempt else "retry"
    except SourceError as exc:
        note_error(run_id, str(exc), final=True, attempt=attempt, queue_check=False)
        return "failed"
    except Exception as exc:
        # Messages of unexpected errors (a database's DETAIL, say) may hold personal
        # values: log where it happened, not what it said.
        log.error("run %s failed with %s at\n%s", run_id, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        note_error(run_id, f"internal error ({type(exc).__name__})", final=True,
                   attempt=attempt, queue_check=False)
        return "failed"


def _work(run: SourceRun) -> None:
    """The run's work, on the run as claimed (its attempt is run.attempts)."""
    run_id, attempt = run.pk, run.attempts
    identity = IdentityData.of(run.request.identity)
    connector = connector_for(run.source)
    if run.action == Action.GATHER:
        with RecordSink(run, attempt, on_progress=lambda: heartbeat(run_id, attempt)) as sink:
            outcome = connector.gather(run, identity, sink)
        result = {**outcome.result, "collections": sink.collections}
    elif run.action == Action.PLAN_ERASURE:
        outcome = connector.plan_erasure(run, identity)
        result = outcome.result
    elif run.action == Action.ERASE:
        plan = SourceRun.objects.filter(request=run.request, source=run.source,
                                        action=Action.PLAN_ERASURE).first()
        def on_batch(progress):
            if not SourceRun.objects.filter(
                pk=run_id, attempts=attempt, state=RunState.RUNNING
            ).update(result={**run.result, "progress": progress},
                     heartbeat_at=timezone.now()):
                raise SourceError(f"{run.source.name}: erasure taken over by another attempt")

        outcome = connector.erase(run, identity, plan.result if plan else {}, on_batch=on_batch)
        result = outcome.result
        if not outcome.waiting:
            remaining = connector.remaining(run, identity)
            if remaining:
                raise SourceError(f"{run.source.name}: {remaining} deletable records remain "
                                  "after erasure (re-scan)")
            result["remaining"] = 0
    else:
        outcome = connector.apply_change(run, identity, change_of(run.request))
        result = outcome.result
    finish_run(run.pk, outcome.records, result, waiting=outcome.waiting, attempt=attempt,
               queue_check=False, claimed=run)


def change_of(request: PrivacyRequest) -> dict:
    if request.type_rules.is_opt_out:
        return {"opt_out": request.request_type}
    return {"correction": request.details}


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
        notify_owner = waiting and run.source.kind == "manual"
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
               queue_check: bool = True) -> None:
    """A failed attempt. `final`: the last retry is spent; the run fails and staff see
    why (and, with `queue_check`, the request's check is queued)."""
    with transaction.atomic():
        run = SourceRun.objects.select_for_update(of=("self",)).select_related("source", "request").get(
            pk=run_id)
        if run.state != RunState.RUNNING or run.attempts != attempt:
            return  # another attempt has taken the run over
        run.last_error = error
        if final:
            run.state = RunState.FAILED
            run.finished_at = timezone.now()
            record_event(f"source.{run.action}.failed", actor=Actor.system(),
                         request=run.request, reason=error,
                         data={"source": run.source.name, "attempts": run.attempts})
            if queue_check:
                enqueue_on_commit(CHECK, run.request_id)
        else:
            run.state = RunState.PENDING  # the retry will claim it again
            run.dispatched_at = timezone.now()  # the reconciler leaves it to the retry
        run.save()


def check(request_id: int) -> bool:
    """Take the machine's next step from the runs' states. True when every run is
    done: the caller builds the results."""
    with transaction.atomic(durable=True):
        request = PrivacyRequest.objects.locked().get(pk=request_id)
        if request.state not in (State.FULFILLING, State.WAITING_MANUAL):
            return False
        action = action_for(request)
        runs = list(request.source_runs.filter(action=action).select_related("source"))
        if action and _sources_for(action, request).exclude(
                pk__in=[r.source_id for r in runs]).exists():
            # A source has no run yet (the step that creates them was lost with a
            # worker): create and dispatch them first.
            enqueue_on_commit(BEGIN, request.pk)
            return False
        states = {r.state for r in runs}
        if states & {RunState.PENDING, RunState.RUNNING}:
            # Others still work: a failure is flagged once they have settled (flagging
            # now would leave their runs unclaimed until the reconciler found them).
            return False
        if RunState.FAILED in states:
            failed = [r for r in runs if r.state == RunState.FAILED]
            reason = "; ".join(f"{r.source.name}: {r.last_error}" for r in failed)[:500]
            apply_transition(request, "flag_for_attention", actor=Actor.system(), reason=reason)
        elif RunState.WAITING in states:
            if request.state == State.FULFILLING:
                apply_transition(request, "wait_on_manual_source", actor=Actor.system())
        else:
            return True
    return False


def all_done(request: PrivacyRequest) -> bool:
    """Every source of the current action has a run, and every run is done. Checked
    again where results are built: a late duplicate of an earlier phase's task must
    not finish a later phase (a deletion whose erasure has only just been approved)."""
    if request.state not in (State.FULFILLING, State.WAITING_MANUAL):
        return False
    action = action_for(request)
    if not action:
        return True
    runs = SourceRun.objects.filter(request=request.pk, action=action)
    unfinished = runs.exclude(state=RunState.DONE)
    without_run = _sources_for(action, request).exclude(pk__in=runs.values("source_id"))
    # Both questions in one round trip.
    return not PrivacyRequest.objects.filter(pk=request.pk).filter(
        Exists(unfinished) | Exists(without_run)).exists()


def results_built(request_id: int) -> None:
    """The package (or the dry-run summary) is ready: staff review it next."""
    with transaction.atomic(durable=True):
        request = PrivacyRequest.objects.locked().get(pk=request_id)
        if all_done(request):
            apply_transition(request, "mark_results_ready", actor=Actor.system())
            if request.type_rules.is_opt_out:
                # Every source confirmed: honoured. (Third parties confirm on
                # their own time; their notices are tracked apart.)
                apply_transition(request, "confirm_opt_out", actor=Actor.system())


def do_retry_source(run_id: int, *, actor: Actor) -> SourceRun:
    """Staff: run one failed source again, leaving the others as they are."""
    with transaction.atomic(durable=True):
        run = SourceRun.objects.select_for_update(of=("self",)).select_related("request", "source").get(
            pk=run_id)
        if run.state != RunState.FAILED:
            raise TransitionRefused("Only a failed source can be retried.")
        request = PrivacyRequest.objects.locked().get(pk=run.request_id)
        if request.state == State.NEEDS_ATTENTION:
            apply_transition(request, "retry_fulfilment", actor=actor)
        elif request.state != State.FULFILLING:
            raise TransitionRefused("The request is not being fulfilled.")
        run.state = RunState.PENDING
        run.last_error = ""
        run.dispatched_at = timezone.now()
        if run.action == Action.ERASE:
            # Look again: rows may have been added since the key list was taken
            # (the re-scan that failed found them).
            run.result = {}
            (run_dir(run) / "erase-keys.json.enc").unlink(missing_ok=True)
        run.save()
        record_event("source.retried", actor=actor, request=request,
                     data={"source": run.source.name, "action": run.action})
        enqueue_on_commit(RUN_SOURCE, run.pk)
    return run


def stuck_runs():
    """Runs nobody is working on: dispatched long ago and never claimed, or claimed
    by a worker that stopped sending heartbeats."""
    cutoff = timezone.now() - stale_after()
    return SourceRun.objects.filter(request__state=State.FULFILLING).filter(
        Q(state=RunState.PENDING, dispatched_at__lt=cutoff)
        | Q(state=RunState.PENDING, dispatched_at=None)
        | Q(state=RunState.RUNNING, heartbeat_at__lt=cutoff)
    )


def silent_http_runs():
    cutoff = timezone.now() - datetime.timedelta(hours=settings.HTTP_REPLY_TIMEOUT_HOURS)
    return SourceRun.objects.filter(state=RunState.WAITING, source__kind="http",
                                    heartbeat_at__lt=cutoff)


def fail_silent_run(run_id: int) -> None:
    """An HTTP source promised a reply (202) and none came: the run fails, so staff
    see it and can retry it."""
    attempt = claim(run_id, waiting=True)
    if attempt is not None:
        note_error(run_id, f"no reply within {settings.HTTP_REPLY_TIMEOUT_HOURS} hours "
                           "of a 202 answer", final=True, attempt=attempt)
