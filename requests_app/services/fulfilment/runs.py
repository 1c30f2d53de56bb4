"""Fulfilment: turning an approved request into the person's data, or its deletion,
across every registered source.

State lives in the database, never only in the broker:
- `begin` creates one SourceRun per source (with the request locked; running it
  twice adds nothing) and dispatches a task per run that is not finished;
- `execute_run` claims its run with a conditional UPDATE (so two deliveries of the
  same task cannot both work), asks the source's connector, and records the outcome
  (attempts.attempt: the claim, the fence and the outcome, shared with the HTTP
  callback and the manual owner's page);
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
from requests_app.services.requests.lifecycle import (
    TransitionRefused,
    apply_transition,
    lock_as_seen,
)
from requests_app.services.queue import enqueue_on_commit
from requests_app.services.fulfilment import attempts, breaker, packages, third_parties
from requests_app.services.fulfilment.attempts import NotOurs, attempt, stale_after
from requests_app.sources.base import IdentityData, SourceError
from requests_app.sources.records import run_dir
from requests_app.sources.registry import connector_for, kinds_that, unreachable_identity

log = logging.getLogger(__name__)
Action, RunState = SourceRun.Action, SourceRun.State

# The tasks this module asks for, by name (fulfilment/tasks.py imports this module).
BEGIN = "requests_app.services.fulfilment.tasks.begin_fulfilment"
RUN_SOURCE = "requests_app.services.fulfilment.tasks.run_source"
CHECK = attempts.CHECK


def action_for(request: PrivacyRequest) -> str | None:
    """The work fulfilment does now for this request (None: nothing to ask sources)."""
    code = request.request_type
    if request.type_rules.is_deletion:
        return Action.ERASE if request.erasure_approved_at else Action.PLAN_ERASURE
    if code in ("access", "portability", "know_categories"):
        # Categories too: the answer lists what is held about this person, found in
        # the sources that match them (never every category of every source).
        return Action.GATHER
    if code == "correction":
        return Action.CORRECT
    if request.type_rules.is_opt_out:
        return Action.OPT_OUT
    return None


def _sources_for(action: str, request: PrivacyRequest):
    """The sources an action asks. An erasure asks exactly the sources whose dry run
    was approved, never one enabled since (it had no dry run)."""
    if action == Action.ERASE:
        return DataSource.objects.filter(runs__request=request, runs__action=Action.PLAN_ERASURE,
                                         runs__state=RunState.DONE).distinct()
    sources = DataSource.objects.filter(enabled=True, kind__in=kinds_that(action))
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
    if request.has_runs:
        request.source_runs.filter(action__in=[Action.GATHER, Action.PLAN_ERASURE]).update(
            state=RunState.PENDING, result={}, records_found=None, last_error="",
            finished_at=None)
    if request.has_packages:
        for package in request.packages.filter(purged_at=None):
            packages.discard(package)


def begin(request_id: int) -> tuple[bool, int | None]:
    """After approval (or a retry): move to fulfilling and dispatch the runs. Returns
    (check now, the run to work here): with nothing to wait for (no sources, or all
    done already) the caller checks at once; else the caller works one run itself,
    in the same task, and the others are dispatched, each checking when it finishes.
    (A request with one source then goes from approval to results ready in the one
    trip of begin_fulfilment.)"""
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
            # Only here is `has_runs` the runs' state now: a begin delivered twice may
            # have waited for the lock while the first created them.
            fresh = not request.has_runs
        elif request.state == State.WAITING_MANUAL:
            apply_transition(request, "resume_fulfilment", actor=Actor.system())
            fresh = False
        elif request.state == State.FULFILLING:
            fresh = False
        else:
            return False, None
        action = action_for(request)
        sources = list(_sources_for(action, request)) if action else []
        if action in (Action.GATHER, Action.PLAN_ERASURE):
            # Nobody to look up: staff are told why, rather than "nothing found".
            unreachable = unreachable_identity(sources, IdentityData.of(request.identity))
            if unreachable:
                apply_transition(request, "flag_for_attention", actor=Actor.system(),
                                 reason=unreachable[:500])
                return False, None
        to_dispatch = _runs_to_dispatch(request, action, sources, fresh=fresh) if action else []
        here = to_dispatch.pop() if to_dispatch else None
        for run in to_dispatch:
            enqueue_on_commit(RUN_SOURCE, run.pk)
        if action == Action.OPT_OUT:
            third_parties.tell(request, ThirdParty.objects.filter(
                purposes__in=request.purposes.all()).distinct())
    return here is None, here.pk if here else None


def _runs_to_dispatch(request: PrivacyRequest, action: str, sources, *,
                      fresh: bool) -> list[SourceRun]:
    """One run per source of the action (created when missing: running it twice adds
    nothing), and of those the pending ones, marked dispatched now. Runs are created
    only here, with the request locked, so a plain INSERT (no get_or_create and its
    savepoint) cannot race another; the unique constraint still stands guard. New
    runs are born dispatched; only pending runs from before are updated. `fresh`:
    the request has no run yet (nothing to read)."""
    now = timezone.now()
    existing = ({} if fresh else
                {r.source_id: r for r in request.source_runs.filter(action=action)})
    to_dispatch, earlier = [], []
    for source in sources:
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


def execute_run(run_id: int, *, final_attempt: bool = True) -> str:
    """Do the run's work if it can be claimed. Returns "skipped" (not ours), "busy"
    (its source has SOURCE_MAX_CONCURRENT_RUNS runs at work: send it again soon),
    "done", "retry" (a transient error, retries left) or "failed". The caller (the worker)
    checks the request after "done" or "failed": nothing is queued for it here."""
    return execute(run_id, final_attempt=final_attempt)[0]


def execute(run_id: int, *, final_attempt: bool = True) -> tuple[str, int | None]:
    """execute_run(), and the id of the run's request (None when skipped), which
    the worker checks next. "busy": the source has SOURCE_MAX_CONCURRENT_RUNS runs
    at work already; the run stays pending for the worker to send again shortly."""
    try:
        with attempt(run_id, final=final_attempt, queue_check=False) as work:
            _work(work)
    except attempts.SourceBusy:
        return "busy", None
    except NotOurs:
        return "skipped", None
    return ("done" if work.outcome == "waiting" else work.outcome), work.run.request_id


def _work(work: attempts.Attempt) -> None:
    """The run's work, on the run as claimed (with its source, request and identity)."""
    run, run_id = work.run, work.run_id
    breaker.refuse_if_open(run.source)  # an unhealthy source is not called: parked
    identity = IdentityData.of(run.request.identity)
    connector = connector_for(run.source)
    if run.action == Action.GATHER:
        with work.sink(beating=True) as sink:
            outcome = connector.gather(run, identity, sink)
        result = {**outcome.result, "collections": sink.collections}
    elif run.action == Action.PLAN_ERASURE:
        outcome = connector.plan_erasure(run, identity)
        result = outcome.result
    elif run.action == Action.ERASE:
        plan = SourceRun.objects.filter(request=run.request, source=run.source,
                                        action=Action.PLAN_ERASURE).first()
        def on_batch(progress):
            try:
                work.save_progress({**run.result, "progress": progress})
            except SourceError:
                raise SourceError(f"{run.source.name}: erasure taken over by another "
                                  "attempt") from None

        outcome = connector.erase(run, identity, approved_plan(run, plan), on_batch=on_batch)
        result = outcome.result
        if not outcome.waiting:
            remaining = connector.remaining(run, identity)
            if remaining:
                # Rows added since the key list was taken: a retry looks again.
                (run_dir(run) / "erase-keys.json.enc").unlink(missing_ok=True)
                SourceRun.objects.filter(pk=run_id).update(result={})
                raise SourceError(f"{run.source.name}: {remaining} deletable records remain "
                                  "after erasure (re-scan)")
            result["remaining"] = 0
    else:
        outcome = connector.apply_change(run, identity, change_of(run.request))
        result = outcome.result
    work.finish(outcome.records, result, waiting=outcome.waiting)


def approved_plan(run: SourceRun, plan: SourceRun | None) -> dict:
    """The dry run's result as approved: with the digest the approval bound to
    (PrivacyRequest.erasure_plan_digests), which erasure must match. A dry run
    with a digest that the approval did not record is refused."""
    result = dict(plan.result) if plan else {}
    if result.get("digest"):
        approved = run.request.erasure_plan_digests.get(str(run.source_id))
        if not approved:
            raise SourceError(f"{run.source.name}: this dry run was not approved: run a new "
                              "dry run and approve it")
        result["approved_digest"] = approved
    return result


def change_of(request: PrivacyRequest) -> dict:
    if request.type_rules.is_opt_out:
        return {"opt_out": request.request_type}
    return {"correction": request.details}


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
    """Staff: run one failed source again, leaving the others as they are. A run
    parked because its source is unhealthy is tried: the source is marked healthy
    again, on trial (breaker.py: one more failure parks it again)."""
    with transaction.atomic(durable=True):
        request_id = SourceRun.objects.values_list("request_id", flat=True).get(pk=run_id)
        request = PrivacyRequest.objects.locked().get(pk=request_id)  # the request first,
        run = SourceRun.objects.select_for_update(of=("self",)).select_related(  # as below
            "request", "source").get(pk=run_id)
        if run.state != RunState.FAILED:
            raise TransitionRefused("Only a failed source can be retried.")
        if breaker.is_open(run.source):
            breaker.mark_healthy(run.source, actor=actor,
                                 reason=f"{actor.label} retried a run of {run.source.name}")
        # From needs-attention, the step's follow-up (begin_fulfilment) dispatches the
        # run made pending here; a request still being fulfilled needs it sent.
        dispatch = request.state != State.NEEDS_ATTENTION
        if not dispatch:
            apply_transition(request, "retry_fulfilment", actor=actor)
        elif request.state != State.FULFILLING:
            raise TransitionRefused("The request is not being fulfilled.")
        _rerun(run, request, actor, dispatch=dispatch)
    return run


def do_retry_fulfilment(request_id: int, *, actor: Actor, expected_state: str | None = None,
                        expected_version: str | None = None, **inputs) -> PrivacyRequest:
    """Staff's step "Retry fulfilment" (the desk takes it through here, not through
    do_transition): every failed source of the current work runs again, the others
    are left as they are. The runs are put back in the step's own transaction:
    begin_fulfilment, which follows the step, dispatches only pending runs, so a
    failed one left as it was would fail the request again with the same error."""
    with transaction.atomic(durable=True):
        request = lock_as_seen(request_id, expected_state, expected_version)
        apply_transition(request, "retry_fulfilment", actor=actor, **inputs)
        failed = (request.source_runs.select_for_update(of=("self",)).select_related("source")
                  .filter(action=action_for(request), state=RunState.FAILED))
        for run in failed:  # dispatched by the step's follow-up, begin_fulfilment
            if breaker.is_open(run.source):  # staff say so: it is tried again
                breaker.mark_healthy(run.source, actor=actor, reason=(
                    f"{actor.label} retried a run of {run.source.name}"))
            _rerun(run, request, actor, dispatch=False)
    return request


def _rerun(run: SourceRun, request: PrivacyRequest, actor: Actor, *, dispatch: bool) -> None:
    """A failed run (locked) made pending again, audited, and (with `dispatch`) sent:
    one message per retry, so its attempts are counted once."""
    run.state = RunState.PENDING
    run.last_error = ""
    run.parked = False
    run.dispatched_at = timezone.now()
    # An erasure resumes from its progress and key list (kept since the batches
    # applied before the failure); after a failed re-scan both were dropped (_work).
    run.save()
    record_event("source.retried", actor=actor, request=request,
                 data={"source": run.source.name, "action": run.action})
    if dispatch:
        enqueue_on_commit(RUN_SOURCE, run.pk)


def do_retry_parked(source_id: int, *, actor: Actor, reason: str,
                    limit: int | None = None) -> int:
    """The source answers again (a health probe), or a manager says it does: it is
    marked healthy (on trial) and its parked runs (the oldest `limit` of them) are
    retried as "Retry this source" would (each request back to fulfilling).
    Returns how many."""
    with transaction.atomic(durable=True):
        source = DataSource.objects.select_for_update().get(pk=source_id)
        breaker.mark_healthy(source, actor=actor, reason=reason)
    retried = 0
    for run_id in breaker.parked_runs(source_id).order_by("pk").values_list(
            "pk", flat=True)[:limit]:
        try:
            do_retry_source(run_id, actor=actor)
        except TransitionRefused:
            continue  # its request moved on meanwhile (denied, retried by staff)
        retried += 1
    return retried


def stuck_runs(pending_before=None):
    """Runs nobody is working on: dispatched before `pending_before` (when the
    reconciler knows messages were lost) or RECONCILE_AFTER_SECONDS ago and never
    claimed, or claimed by a worker that stopped sending heartbeats (a live attempt
    beats every third of SOURCE_RUN_STALE_SECONDS: attempts.attempt)."""
    now = timezone.now()
    pending_before = pending_before or now - datetime.timedelta(
        seconds=settings.RECONCILE_AFTER_SECONDS)
    cutoff = now - stale_after()
    return SourceRun.objects.filter(request__state=State.FULFILLING).filter(
        Q(state=RunState.PENDING, dispatched_at__lt=pending_before)
        | Q(state=RunState.PENDING, dispatched_at=None)
        | Q(state=RunState.RUNNING, heartbeat_at__lt=cutoff)
    )


def silent_http_runs():
    cutoff = timezone.now() - datetime.timedelta(hours=settings.HTTP_REPLY_TIMEOUT_HOURS)
    return SourceRun.objects.filter(state=RunState.WAITING,
                                    source__kind__in=kinds_that("replies_later"),
                                    heartbeat_at__lt=cutoff)


def fail_silent_run(run_id: int) -> None:
    """An HTTP source promised a reply (202) and none came: the run fails, so staff
    see it and can retry it."""
    try:
        with attempt(run_id, waiting=True) as work:
            work.fail(f"no reply within {settings.HTTP_REPLY_TIMEOUT_HOURS} hours "
                      "of a 202 answer")
    except NotOurs:
        pass
