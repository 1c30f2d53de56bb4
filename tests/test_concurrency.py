"""Two staff members (or two workers) taking the same step at the same moment:
exactly one wins. Runs on PostgreSQL, each attempt on its own connection."""

import threading

import pytest
from django.db import transaction
from django_fsm import ConcurrentTransition

from requests_app.models import Actor, AuditEvent, PrivacyRequest, State
from requests_app.services.requests.lifecycle import TransitionRefused, do_transition
from tests.conftest import file_request, race

pytestmark = pytest.mark.django_db(transaction=True)  # on PostgreSQL (make test)


def test_two_approvals_at_once_one_wins(alice, bob):
    request = file_request(state=State.IN_REVIEW)
    actors = iter([Actor.staff(alice), Actor.staff(bob)])
    lock = threading.Lock()

    def approve():
        with lock:
            actor = next(actors)
        return do_transition(request.pk, "approve", actor=actor)

    results = race(approve)
    winners = [r for r in results if isinstance(r, PrivacyRequest)]
    losers = [r for r in results if isinstance(r, TransitionRefused)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert AuditEvent.objects.filter(request=request, action="request.approve").count() == 1


def test_two_stale_copies_saved_at_once_one_wins():
    """Below the services: two copies loaded before either saves. The state field
    guards the UPDATE (ConcurrentTransitionMixin), so the second save fails."""
    request = file_request(state=State.IN_REVIEW)
    loaded = threading.Barrier(2)

    def load_then_save(step):
        copy = PrivacyRequest.objects.get(pk=request.pk)
        loaded.wait()
        with transaction.atomic():
            getattr(copy, step)()
            copy.save()
        return copy.state

    steps = iter(["approve", "cancel"])
    lock = threading.Lock()

    def attempt():
        with lock:
            step = next(steps)
        return load_then_save(step)

    results = race(attempt)
    assert sum(isinstance(r, ConcurrentTransition) for r in results) == 1, results
    request.refresh_from_db()
    assert request.state in {State.APPROVED, State.CANCELLED}
    assert request.state in results


def test_requests_are_locked_only_through_locked():
    """A plain FOR UPDATE on a request deadlocks with a transaction that holds the
    audit chain (services/audit.py, lock order): every lock of a request goes
    through PrivacyRequest.objects.locked(), which takes FOR NO KEY UPDATE."""
    import re

    from tests.conftest import ROOT

    plain = re.compile(r"PrivacyRequest\.objects\.(?:[a-z_]+\([^)]*\)\.)*select_for_update")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "requests_app").rglob("*.py")
                 if plain.search(p.read_text())]
    assert offenders == []
    with transaction.atomic():
        sql, _ = PrivacyRequest.objects.locked().filter(pk=0).query.sql_with_params()
    assert sql.endswith("FOR NO KEY UPDATE")


@pytest.mark.parametrize("stale", [False, True], ids=["pending", "stale-running"])
def test_four_workers_claiming_one_run_at_once_one_wins(stale):
    """A run is claimed by one read and one conditional UPDATE (no row lock held in
    between): whether it is pending or its worker went quiet, exactly one of four
    workers claiming it at the same moment gets an attempt, and it is counted once."""
    import datetime

    from django.utils import timezone

    from requests_app.models import DataSource, SourceRun
    from requests_app.services.fulfilment import attempts

    request = file_request(state=State.FULFILLING)
    source = DataSource.objects.create(name="Paper", kind="manual")
    run = SourceRun.objects.create(request=request, source=source, action="gather")
    if stale:
        SourceRun.objects.filter(pk=run.pk).update(
            state="running", attempts=1,
            heartbeat_at=timezone.now() - datetime.timedelta(hours=1))
    for _ in range(5):  # five rounds: a race lost once by chance proves little
        results = race(lambda: attempts.claim(run.pk), n=4)
        winners = [r for r in results if isinstance(r, int)]
        assert len(winners) == 1 and results.count(None) == 3, results
        run.refresh_from_db()
        assert run.state == "running" and run.attempts == winners[0]
        SourceRun.objects.filter(pk=run.pk).update(
            state="running" if stale else "pending",
            heartbeat_at=timezone.now() - datetime.timedelta(hours=1))
