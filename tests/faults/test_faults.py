"""Faults, with real processes: a worker killed with SIGKILL in the middle of
fulfilment. Nothing may be lost, and every deletion is applied once. (Outages of
Redis and PostgreSQL: test_outages.py.)

These run in their own pytest session (scripts/test.sh), with no other worker
running, so that the worker they kill is the one doing the work.
"""

import os
import signal
from collections import Counter
import time

import psycopg
import pytest

from privacyportal.celery import app as celery_app
from requests_app.models import Actor, AuditEvent, DataSource, PrivacyRequest, SourceRun, State
from requests_app.services.requests.lifecycle import do_transition
from requests_app.services.reconciler import reconcile
from tests.conftest import (
    file_request,
    scratch_database,
    start_worker,
    stop_process_group,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CUSTOMERS = 40
EVENTS = 2000  # per customer: enough work per run to kill a worker in the middle
FAST = {"SOURCE_RUN_STALE_SECONDS": "3", "RECONCILE_AFTER_SECONDS": "2"}


@pytest.fixture
def shop_dsn(shop_schema):
    """A customer database of its own on the test PostgreSQL server."""
    with scratch_database("faults_shop") as dsn:
        yield load_shop(dsn, shop_schema)


def load_shop(dsn: str, schema: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema)
        conn.execute("INSERT INTO customers (id, email, name, phone, since) SELECT n, "
                     "'c' || n || '@example.com', 'Customer ' || n, '555-' || n, '2020-01-01' "
                     "FROM generate_series(1, %s) n", (CUSTOMERS,))
        conn.execute("INSERT INTO addresses SELECT n, n || ' Main St', 'Austin' "
                     "FROM generate_series(1, %s) n", (CUSTOMERS,))
        conn.execute("INSERT INTO orders SELECT n * 10 + k, n, n, 10.0 * k, 'Customer ' || n "
                     "FROM generate_series(1, %s) n, generate_series(1, 3) k", (CUSTOMERS,))
        conn.execute("INSERT INTO devices SELECT n, 'ck-' || n, n FROM generate_series(1, %s) n",
                     (CUSTOMERS,))
        conn.execute("INSERT INTO events SELECT n * 10000 + k, 'ck-' || n, '10.0.0.' || (k %% 250) "
                     "FROM generate_series(1, %s) n, generate_series(1, %s) k",
                     (CUSTOMERS, EVENTS))
        conn.execute("CREATE INDEX ON events (cookie)")
        conn.execute("CREATE INDEX ON orders (customer_id)")
        conn.execute("ANALYZE")
    os.environ["FAULTS_SHOP_DSN"] = dsn
    return dsn


@pytest.fixture
def shop_source(shop_dsn, shop_map):
    return DataSource.objects.create(name="Shop", kind="sql", connection_env="FAULTS_SHOP_DSN",
                                     dataset_map=shop_map)


@pytest.fixture
def broker_is_real(settings):
    celery_app.conf.task_always_eager = False
    settings.SOURCE_RUN_STALE_SECONDS = 3
    settings.RECONCILE_AFTER_SECONDS = 2


def shop_count(dsn, table):
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def states(requests):
    return list(PrivacyRequest.objects.filter(pk__in=[r.pk for r in requests])
                .values_list("state", flat=True))


def reconcile_until(predicate, timeout=120):
    """Play beat: run the reconciler every couple of seconds until done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        reconcile()
        time.sleep(2)
    raise AssertionError("work did not complete")


def test_a_worker_killed_mid_fulfilment_loses_nothing_and_deletes_once(
        broker_is_real, shop_source, shop_dsn, alice, recovery_timings):
    requests = [file_request(request_type="deletion", state=State.IN_REVIEW,
                             email=f"c{n}@example.com") for n in range(1, CUSTOMERS + 1)]
    worker = start_worker("planner", FAST)
    try:
        for request in requests:
            do_transition(request.pk, "approve", actor=Actor.staff(alice))
        wait_for(lambda: set(states(requests)) == {State.RESULTS_READY}, timeout=120)
    finally:
        stop_process_group(worker)
    # The erasures are approved with no worker running (their work waits in the
    # broker), so that the doomed worker is killed with most of them still to do.
    for request in requests:
        do_transition(request.pk, "approve_erasure", actor=Actor.staff(alice))
    erase_runs = SourceRun.objects.filter(action="erase")
    worker = start_worker("doomed", FAST)
    try:
        wait_for(lambda: erase_runs.filter(state="done").count() >= 3, timeout=60,
                 interval=0.02)
    finally:
        stop_process_group(worker, sig=signal.SIGKILL)
    # Erase runs are created as each request's fulfilment begins: count the requests
    # whose erasure is not done (their run unfinished, or not begun yet).
    unfinished = CUSTOMERS - erase_runs.filter(state="done").count()
    assert unfinished > 0, "the worker finished before it was killed: make the work longer"

    killed_at = time.monotonic()
    worker = start_worker("survivor", FAST)
    try:
        started = time.monotonic()
        reconcile_until(lambda: set(states(requests)) == {State.RESULTS_READY})
        took = time.monotonic() - started
    finally:
        stop_process_group(worker)
    recovery_timings["worker_kill"] = {
        "requests": CUSTOMERS, "unfinished_at_kill": unfinished,
        "new_worker_start_seconds": round(started - killed_at, 1),
        "return_to_all_done_seconds": round(took, 1),
        "settings": "SOURCE_RUN_STALE_SECONDS=3, RECONCILE_AFTER_SECONDS=2, reconciler every 2 s"}
    summary = Counter(erase_runs.values_list("state", flat=True))
    assert erase_runs.filter(state="done").count() == CUSTOMERS, summary
    # Each deletion applied once: one "done" record per run, nothing left, and the
    # rows of every customer gone exactly (retained orders are kept and unlinked).
    for run in erase_runs:
        assert AuditEvent.objects.filter(request=run.request, action="source.erase.done",
                                         data__source="Shop").count() == 1
        assert run.result["remaining"] == 0
    assert shop_count(shop_dsn, "events") == 0
    assert shop_count(shop_dsn, "addresses") == 0
    assert shop_count(shop_dsn, "orders") == CUSTOMERS * 3
