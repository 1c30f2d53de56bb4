"""Lost work is found at once after a sign that it was lost, not after the
reconciler's fixed ages: a send to the broker that failed, a broker that came
back empty, a worker whose heartbeat went quiet. Without such a sign, work that
may just be waiting its turn in the queue is left alone for RECONCILE_AFTER_SECONDS.
(The same with services really stopped: tests/faults.)"""

import datetime

import pytest
from django.test import TestCase
from django.utils import timezone

from privacyportal.celery import app as celery_app
from requests_app.models import Actor, Heartbeat, PrivacyRequest, State
from requests_app.services import health
from requests_app.services.queue import LOST_WORK, note_lost_work
from requests_app.services.reconciler import reconcile
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import approved, committed, file_request

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_other_heartbeats():
    """Only the test's own workers: the suite's real worker, when one runs, beats
    into the same tables (its row is deleted inside the test's transaction)."""
    Heartbeat.objects.all().delete()


@pytest.fixture(autouse=True)
def broker_not_emptied():
    """The broker's mark is in place: Redis did not come back empty since."""
    health.broker_lost_its_data()


def approval_lost(alice) -> PrivacyRequest:
    """A request approved just now whose follow-up message the broker lost."""
    request = file_request(state=State.IN_REVIEW)
    with TestCase.captureOnCommitCallbacks(execute=False):
        do_transition(request.pk, "approve", actor=Actor.staff(alice))
    return request


def test_without_a_sign_of_loss_fresh_work_is_left_to_its_queue(alice):
    approval_lost(alice)
    counts = reconcile()
    assert counts["sweep"] is False and counts["follow_ups"] == 0


def test_after_a_failed_send_everything_pending_is_sent_again_at_once(alice):
    request = approval_lost(alice)
    note_lost_work()
    with committed():
        counts = reconcile()
    assert counts["sweep"] is True and counts["follow_ups"] == 1
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY  # begin_fulfilment ran (no sources)
    assert not Heartbeat.objects.filter(name=LOST_WORK).exists()
    assert reconcile()["sweep"] is False  # the loss was dealt with


def test_a_broker_that_came_back_empty_is_noticed(alice):
    approval_lost(alice)
    with celery_app.connection_for_write() as conn:
        conn.default_channel.client.delete(health.BROKER_MARK)  # as after a restart
    counts = reconcile()
    assert counts["sweep"] is True and counts["follow_ups"] == 1
    assert reconcile()["sweep"] is False


def test_a_worker_whose_heartbeat_went_quiet_has_its_work_sent_again_once(alice, settings):
    settings.WORKER_HEARTBEAT_SECONDS = 10
    approval_lost(alice)
    quiet = timezone.now() - datetime.timedelta(seconds=31)
    Heartbeat.objects.create(name="worker:celery@gone", since=quiet, at=quiet)
    counts = reconcile()
    assert counts["sweep"] is True and counts["follow_ups"] == 1
    assert Heartbeat.objects.get(name="worker:celery@gone").swept
    assert reconcile()["sweep"] is False
    assert health.workers() == {"alive": 0, "dead": 1}  # still reported, for an hour


def test_even_a_sweep_leaves_a_request_waiting_on_its_manual_owner_alone(sources, alice):
    request = approved("access", alice)
    assert request.state == State.WAITING_MANUAL
    note_lost_work()
    counts = reconcile()
    assert counts["sweep"] is True
    assert counts["checks"] == 0 and counts["runs"] == 0 and counts["follow_ups"] == 0


@pytest.fixture
def broker_down():
    celery_app.conf.task_always_eager = False
    original = celery_app.conf.broker_write_url
    forget_producers()  # those pooled on the real broker
    celery_app.conf.broker_write_url = "redis://127.0.0.1:9/0"  # nothing listens on port 9
    yield
    forget_producers()
    celery_app.conf.broker_write_url = original


def forget_producers():
    celery_app.amqp._producer_pool = None
    celery_app._pool = None


def test_a_step_taken_while_the_broker_is_down_commits_and_notes_the_loss(alice, broker_down):
    import time

    requests = [file_request(state=State.IN_REVIEW, email=f"p{n}@example.com")
                for n in range(3)]
    started = time.monotonic()
    with committed():
        for request in requests:
            do_transition(request.pk, "approve", actor=Actor.staff(alice))
    assert time.monotonic() - started < 3  # one wait for the broker, not one per send
    assert set(PrivacyRequest.objects.values_list("state", flat=True)) == {State.APPROVED}
    assert Heartbeat.objects.filter(name=LOST_WORK).exists()
