import datetime

import pytest
from django.utils import timezone

from privacyportal.celery import QUEUES, app as celery_app
from requests_app.models import Heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_other_heartbeats():
    """Only the test's own workers: the suite's real worker, when one runs, beats
    into the same tables (its row is deleted inside the test's transaction)."""
    Heartbeat.objects.all().delete()


def beat(name, seconds_ago=0):
    at = timezone.now() - datetime.timedelta(seconds=seconds_ago)
    Heartbeat.objects.create(name=f"worker:{name}", since=at, at=at)


@pytest.fixture
def empty_queue():
    with celery_app.connection_for_write() as conn:
        conn.default_channel.client.delete(*QUEUES)


def test_healthy_when_database_and_broker_answer_and_a_worker_beats(client, empty_queue):
    beat("celery@a")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "database": "ok", "broker": "ok", "workers": {"alive": 1, "dead": 0},
        "queues": {name: {"waiting": 0, "oldest_seconds": None} for name in QUEUES}}


def test_a_worker_whose_heartbeat_went_quiet_is_reported_dead(client, settings, empty_queue):
    settings.WORKER_HEARTBEAT_SECONDS = 10
    beat("celery@a")
    beat("celery@b", seconds_ago=31)  # three beats missed
    body = client.get("/healthz").json()
    assert body["status"] == "degraded: workers"
    assert body["workers"] == {"alive": 1, "dead": 1}


def test_with_no_worker_beating_the_status_says_so(client, empty_queue):
    body = client.get("/healthz").json()
    assert body["status"] == "degraded: workers" and body["workers"] == {"alive": 0, "dead": 0}


@pytest.fixture
def probe_queue():
    """A queue of the test's own (no worker consumes it), the only one reported."""
    from kombu import Queue

    original = celery_app.conf.task_queues
    celery_app.conf.task_queues = [Queue("healthz-probe")]
    with celery_app.connection_for_write() as conn:
        conn.default_channel.client.delete("healthz-probe")
    yield "healthz-probe"
    celery_app.conf.task_queues = original
    with celery_app.connection_for_write() as conn:
        conn.default_channel.client.delete("healthz-probe")


def test_each_queue_reports_its_backlog_and_an_old_one_degrades(client, settings, probe_queue):
    """Messages wait in Redis with the time they were sent."""
    import time

    beat("celery@a")
    celery_app.send_task("requests_app.services.reconciler.reconcile", queue=probe_queue)
    time.sleep(1.1)
    celery_app.send_task("requests_app.services.reconciler.reconcile", queue=probe_queue)
    queue = client.get("/healthz").json()["queues"][probe_queue]
    assert queue["waiting"] == 2 and 1.0 <= queue["oldest_seconds"] < 30
    settings.HEALTHZ_BACKLOG_SECONDS = 1
    assert client.get("/healthz").json()["status"] == "degraded: backlog"


@pytest.fixture
def broker_down():
    original = celery_app.conf.broker_write_url
    celery_app.conf.broker_write_url = "redis://127.0.0.1:9/0"  # nothing listens on port 9
    yield
    celery_app.conf.broker_write_url = original


def test_503_naming_the_broker_when_it_is_unreachable(client, broker_down):
    beat("celery@a")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing: broker", "database": "ok", "broker": "unreachable",
        "workers": {"alive": 1, "dead": 0}, "queues": {}}


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
