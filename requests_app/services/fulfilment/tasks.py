"""The fulfilment domain's tasks. Thin: they take ids and call runs.py.

The path of an approved request through the broker: `begin_fulfilment` (one per
request) works one source's run itself and dispatches `run_source` for each other
source; the worker that finishes the last run checks the request and builds its
results in the same task. Two trips when every source answers at once (one when
the request has one source). `check_fulfilment` is queued only where a run
finishes outside a worker (an HTTP callback, a manual owner) or by the reconciler.
"""

import random
import threading

from celery import shared_task
from celery.signals import worker_process_init
from django.db import connections, transaction

from requests_app.models import Actor, PrivacyRequest
from requests_app.services.fulfilment import breaker, packages, runs, third_parties
from requests_app.services.fulfilment.warm_up import warm_up_worker


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    """Each worker process, once started, reflects the SQL sources and connects in a
    thread of its own (a slow source must not hold up the process: Celery kills a
    pool process whose start takes more than a few seconds)."""
    def warm_up():
        try:
            warm_up_worker()
        finally:
            connections.close_all()  # this thread's own connection to the portal database

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()


@shared_task
def begin_fulfilment(request_id: int) -> None:
    check_now, here = runs.begin(request_id)
    if here is not None:
        _work(here, retries=0)
    elif check_now:
        check_fulfilment(request_id)


def _backoff(retries: int) -> float:
    """Exponential backoff with full jitter: up to 10 s, 20 s, 40 s ... capped at 5 min."""
    return random.uniform(1, min(300, 10 * 2**retries))


# A run's attempts: the first, then this many retries with backoff.
RUN_RETRIES = 5


@shared_task(bind=True, max_retries=RUN_RETRIES)
def run_source(self, run_id: int, busy: int = 0) -> None:
    _work(run_id, retries=self.request.retries, busy=busy)


def _work(run_id: int, *, retries: int, busy: int = 0) -> None:
    """Work a run (as attempt `retries` + 1) and check the request once it is settled.
    A transient failure with retries left goes to run_source, which takes its next
    attempt after a backoff (whether this one ran in run_source or in the task that
    began the request's fulfilment)."""
    outcome, request_id = runs.execute(run_id, final_attempt=retries >= RUN_RETRIES)
    if outcome == "busy":  # its source's other runs hold the workers it may use
        # Sent again after 1-2 s, growing by half each time it finds the source busy
        # (at most 30 s): `busy` counts them, apart from the run's own retries.
        run_source.apply_async((run_id,), {"busy": busy + 1}, retries=retries,
                               countdown=min(30.0, random.uniform(1, 2) * 1.5 ** busy))
    elif outcome == "retry":
        run_source.apply_async((run_id,), countdown=_backoff(retries), retries=retries + 1)
    elif outcome in ("done", "failed"):
        check_fulfilment(request_id)


@shared_task
def check_fulfilment(request_id: int) -> None:
    if runs.check(request_id):
        build_results(request_id)


@shared_task
def build_results(request_id: int) -> None:
    request = PrivacyRequest.objects.select_related("identity", "evidence").get(pk=request_id)
    if not runs.all_done(request):
        return
    if request.type_rules.is_deletion and request.erasure_approved_at:
        with transaction.atomic():
            third_parties.after_erasure(request)
    try:
        packages.build(request)
    except packages.BuildingElsewhere:
        return  # the worker building the package finishes the request
    runs.results_built(request_id)
    packages.discard_run_files(request)


@shared_task
def probe_unhealthy_sources() -> int:
    """Periodic: probe each unhealthy source that is due (breaker.py); one that
    answers is marked healthy, on trial, and one of its parked runs is retried (the
    rest follow when it succeeds). Returns how many runs were retried."""
    retried = 0
    for source in breaker.due_for_probe():
        if breaker.probe(source):
            # One run first, its trial: the others follow once it has succeeded.
            retried += runs.do_retry_parked(source.pk, actor=Actor.system(), limit=1,
                                            reason="it answered a health probe")
    return retried


@shared_task
def retry_parked_runs(source_id: int) -> int:
    """A source on trial answered: the runs still parked are retried."""
    return runs.do_retry_parked(source_id, actor=Actor.system(),
                                reason="a retried run of it succeeded")
