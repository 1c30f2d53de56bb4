"""The circuit breaker of sources (services/fulfilment/breaker.py), with a real
local HTTP service that hangs or fails and a real SQLite shop; tasks run eagerly.
The measured starvation test, with real workers on their own queues, is in
tests/faults/test_breaker_faults.py."""

import datetime

import pytest
from django.utils import timezone

from privacyportal.celery import EMAILS, QUEUES, SOURCES, STEPS
from privacyportal.celery import app as celery_app
from requests_app.models import AuditEvent, DataSource, PrivacyRequest, SourceRun, State
from requests_app.services.fulfilment import breaker
from requests_app.services.fulfilment.tasks import probe_unhealthy_sources
from tests.conftest import ROOT, approved, committed, file_request, staff_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_sources(shop, http_service):
    """The SQLite shop, and a loyalty service that answers within 1 s or not at all."""
    sql_source, _engine = shop
    sql_source.save()
    service, url = http_service
    http = DataSource.objects.create(name="Loyalty", kind="http", url=url,
                                     secret_env="DEMO_HTTP_SECRET", verify_tls=False,
                                     timeout_seconds=1)
    return {"sql": sql_source, "http": http, "service": service}


def loyalty_run(request, two_sources) -> SourceRun:
    return request.source_runs.get(source=two_sources["http"])


def test_a_source_that_keeps_timing_out_is_marked_unhealthy_and_its_run_parked(
        two_sources, alice):
    service = two_sources["service"]
    service.set_mode("timeout")
    request = approved("access", alice)
    http = DataSource.objects.get(pk=two_sources["http"].pk)
    assert http.health == "unhealthy" and http.consecutive_failures == 3
    assert "no answer within 1 s" in http.health_reason
    # Three calls (the first and two retries), then parked: not the six a run has.
    assert service.calls == 3
    run = loyalty_run(request, two_sources)
    assert run.state == "failed" and run.parked and run.attempts == 3
    # The desk's words name the source and why.
    assert "Loyalty is marked unhealthy after 3 failed calls in a row" in run.last_error
    assert "no answer within 1 s" in run.last_error
    assert request.state == State.NEEDS_ATTENTION
    assert request.source_runs.get(source=two_sources["sql"]).state == "done"
    assert AuditEvent.objects.filter(action="source.unhealthy",
                                     data__source="Loyalty").count() == 1


def test_runs_of_an_unhealthy_source_are_parked_at_once_without_a_call(two_sources, alice):
    service = two_sources["service"]
    service.set_mode("fail500")
    approved("access", alice)
    calls = service.calls
    service.set_mode("ok")  # it would answer now, but it is not asked
    later = approved("access", alice)
    assert service.calls == calls
    run = loyalty_run(later, two_sources)
    assert run.state == "failed" and run.parked and run.attempts == 1
    assert "Loyalty is marked unhealthy" in run.last_error
    later.refresh_from_db()
    assert later.state == State.NEEDS_ATTENTION
    assert later.source_runs.get(source=two_sources["sql"]).state == "done"
    assert "Loyalty" in AuditEvent.objects.filter(
        request=later, action="request.flag_for_attention").get().reason


def test_tripping_the_breaker_parks_the_runs_waiting_for_a_retry(two_sources, alice):
    """Runs of the source that wait (for a worker, or their retry's backoff) are
    parked when it trips, each request's check queued: none waits out its retries."""
    first = approved("access", alice)  # done: the service answers
    waiting = SourceRun.objects.create(request=first, source=two_sources["http"],
                                       action="plan_erasure")  # another phase: left alone
    second = approved("access", alice)
    pending = loyalty_run(second, two_sources)
    SourceRun.objects.filter(pk=pending.pk).update(state="pending", records_found=None)
    PrivacyRequest.objects.filter(pk=second.pk).update(state=State.FULFILLING)
    DataSource.objects.filter(pk=two_sources["http"].pk).update(consecutive_failures=2)
    with committed():
        parking = breaker.note_failure(two_sources["http"].pk, "Loyalty (gather): HTTP 503")
    assert "marked unhealthy after 3 failed calls" in parking
    pending.refresh_from_db()
    second.refresh_from_db()
    assert pending.state == "failed" and pending.parked
    assert second.state == State.NEEDS_ATTENTION  # its check ran on commit
    waiting.refresh_from_db()
    assert waiting.state == "pending"  # its request is not being fulfilled


def test_a_success_clears_the_count(two_sources, alice):
    DataSource.objects.filter(pk=two_sources["http"].pk).update(consecutive_failures=2)
    approved("access", alice)
    assert DataSource.objects.get(pk=two_sources["http"].pk).consecutive_failures == 0


def trip(two_sources, alice):
    """A request whose Loyalty run is parked; the service then answers again."""
    two_sources["service"].set_mode("fail500")
    request = approved("access", alice)
    assert request.state == State.NEEDS_ATTENTION
    two_sources["service"].set_mode("ok")
    return request


def test_the_probe_leaves_a_silent_source_parked_and_retries_when_it_answers(
        two_sources, alice, settings):
    request, other = trip(two_sources, alice), trip(two_sources, alice)
    http = DataSource.objects.get(pk=two_sources["http"].pk)
    assert http.next_probe_at > timezone.now()
    assert probe_unhealthy_sources.apply().get() == 0  # not due yet: not probed
    two_sources["service"].set_mode("timeout")
    DataSource.objects.filter(pk=http.pk).update(next_probe_at=timezone.now())
    assert probe_unhealthy_sources.apply().get() == 0
    http.refresh_from_db()
    assert http.health == "unhealthy" and http.failed_probes == 1
    # The next probe waits twice SOURCE_PROBE_SECONDS.
    wait = http.next_probe_at - timezone.now()
    assert datetime.timedelta(seconds=50) < wait <= datetime.timedelta(seconds=60)
    two_sources["service"].set_mode("ok")
    DataSource.objects.filter(pk=http.pk).update(next_probe_at=timezone.now())
    calls = two_sources["service"].calls
    with committed():
        # One run is retried, its trial; when it succeeds, the other follows.
        assert probe_unhealthy_sources.apply().get() == 1
    for each in (request, other):
        each.refresh_from_db()
        assert each.state == State.RESULTS_READY
    assert two_sources["service"].calls == calls + 2
    http.refresh_from_db()
    assert http.health == "healthy" and http.consecutive_failures == 0
    assert AuditEvent.objects.filter(action="source.healthy",
                                     reason="it answered a health probe").exists()


def test_a_probe_s_trial_run_that_fails_parks_the_source_again_and_the_others_wait(
        two_sources, alice):
    """A service may answer a HEAD and still fail its real work: one trial call, not
    one call per parked run."""
    parked = [trip(two_sources, alice) for _ in range(3)]
    two_sources["service"].set_mode("fail500")
    DataSource.objects.filter(pk=two_sources["http"].pk).update(
        next_probe_at=timezone.now())
    two_sources["service"].probe_mode = "ok"  # its HEAD answers; its work fails
    calls = two_sources["service"].calls
    with committed():
        assert probe_unhealthy_sources.apply().get() == 1
    http = DataSource.objects.get(pk=two_sources["http"].pk)
    assert two_sources["service"].calls == calls + 1
    assert http.health == "unhealthy" and http.failed_probes == 1
    for request in parked:
        request.refresh_from_db()
        assert request.state == State.NEEDS_ATTENTION


def test_retry_this_source_on_the_desk_tries_an_unhealthy_source_on_trial(
        two_sources, alice, client):
    request = trip(two_sources, alice)
    run = loyalty_run(request, two_sources)
    two_sources["service"].set_mode("fail500")  # still failing: one more failure parks it
    staff_login(client, alice)
    panel = client.get(f"/staff/requests/{request.reference}/progress/").content.decode()
    assert f'data-parked="{run.pk}"' in panel and "Loyalty is marked unhealthy" in panel
    calls = two_sources["service"].calls
    with committed():
        client.post(f"/staff/requests/{request.reference}/sources/{run.pk}/retry/")
    assert two_sources["service"].calls == calls + 1  # one call, not three
    run.refresh_from_db()
    assert run.state == "failed" and run.parked
    two_sources["service"].set_mode("ok")
    with committed():
        client.post(f"/staff/requests/{request.reference}/sources/{run.pk}/retry/")
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    http = DataSource.objects.get(pk=two_sources["http"].pk)
    assert http.health == "healthy" and http.consecutive_failures == 0


def test_a_manager_marks_a_source_healthy_and_its_parked_runs_are_retried(
        two_sources, alice, bob, client):
    requests = [trip(two_sources, alice), trip(two_sources, alice)]
    staff_login(client, alice)
    dashboard = client.get("/staff/").content.decode()
    assert f'data-unhealthy-source="{two_sources["http"].pk}"' in dashboard
    with committed():
        response = client.post("/admin/requests_app/datasource/", {
            "action": "mark_healthy", "_selected_action": [two_sources["http"].pk]})
    assert response.status_code == 302
    for request in requests:
        request.refresh_from_db()
        assert request.state == State.RESULTS_READY
    assert AuditEvent.objects.get(action="source.healthy").actor == alice
    assert 'data-unhealthy-source' not in client.get("/staff/").content.decode()


def test_an_analyst_cannot_mark_a_source_healthy(two_sources, alice, bob, client):
    trip(two_sources, alice)
    staff_login(client, bob)
    response = client.post("/admin/requests_app/datasource/", {
        "action": "mark_healthy", "_selected_action": [two_sources["http"].pk]})
    assert response.status_code == 403
    assert DataSource.objects.get(pk=two_sources["http"].pk).health == "unhealthy"


def test_probes_ask_sql_with_select_1_and_http_with_head(two_sources, monkeypatch):
    from requests_app.sources.registry import connector_for

    assert connector_for(two_sources["sql"]).probe() is True
    monkeypatch.setenv("TEST_SHOP_DSN", "postgres://nobody@127.0.0.1:9/none")
    assert connector_for(two_sources["sql"]).probe() is False
    http, service = two_sources["http"], two_sources["service"]
    assert connector_for(http).probe() is True
    service.set_mode("fail500")
    assert connector_for(http).probe() is False
    service.set_mode("timeout")
    assert connector_for(http).probe() is False  # no answer within its 1 s
    assert service.calls == 0  # a probe is no signed call
    manual = DataSource(name="Archive", kind="manual")
    assert connector_for(manual).probe() is None


@pytest.mark.parametrize("task,queue", [
    ("requests_app.services.notices.tasks.send_email", EMAILS),
    ("requests_app.services.notices.tasks.notify_source_owner", EMAILS),
    ("requests_app.services.fulfilment.tasks.run_source", SOURCES),
    ("requests_app.services.fulfilment.tasks.begin_fulfilment", SOURCES),
    ("requests_app.services.fulfilment.tasks.probe_unhealthy_sources", SOURCES),
    ("requests_app.services.fulfilment.tasks.retry_parked_runs", SOURCES),
    ("requests_app.services.requests.tasks.begin_review", STEPS),
    ("requests_app.services.reconciler.reconcile", STEPS),
])
def test_emails_steps_and_source_calls_go_to_queues_of_their_own(task, queue):
    route = celery_app.amqp.router.route({}, task, (), {})
    assert route["queue"].name == queue


def test_make_run_and_the_deployment_guide_start_a_worker_for_every_queue():
    procfile = (ROOT / "Procfile.dev").read_text()
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    for queue in QUEUES:
        assert f"worker -Q {queue} " in procfile
        assert f"| `{queue}` |" in deployment


def test_a_source_at_its_limit_of_runs_at_work_keeps_the_next_run_pending(
        two_sources, alice, settings):
    """SOURCE_MAX_CONCURRENT_RUNS: a source that hangs holds at most that many
    workers. A run beyond the limit is not called; it stays pending, marked as sent
    now (the worker sends it again: the reconciler leaves it alone), and goes
    ahead once the source has room."""
    from requests_app.services.fulfilment import runs

    settings.SOURCE_MAX_CONCURRENT_RUNS = 1
    first = approved("access", alice)
    SourceRun.objects.filter(pk=loyalty_run(first, two_sources).pk).update(
        state="running", heartbeat_at=timezone.now())  # at work (hanging, say)
    second = file_request(request_type="access", state=State.FULFILLING,
                          email="sam@example.com")
    waiting = SourceRun.objects.create(request=second, source=two_sources["http"],
                                       action="gather")
    calls = two_sources["service"].calls
    assert runs.execute(waiting.pk) == ("busy", None)
    waiting.refresh_from_db()
    assert waiting.state == "pending" and waiting.attempts == 0
    assert waiting.dispatched_at is not None
    assert two_sources["service"].calls == calls  # the source was not called
    settings.SOURCE_MAX_CONCURRENT_RUNS = 2  # room for one more
    assert runs.execute(waiting.pk)[0] == "done"
    assert two_sources["service"].calls == calls + 1


def test_a_quiet_workers_run_of_a_busy_source_goes_back_to_pending(two_sources, alice,
                                                                     settings):
    """A run whose worker went quiet, found while its source is at its limit, is made
    pending again (sent now), so the reconciler does not find it stuck every minute
    and send it again and again."""
    from requests_app.services.fulfilment import runs

    settings.SOURCE_MAX_CONCURRENT_RUNS = 1
    first = approved("access", alice)
    SourceRun.objects.filter(pk=loyalty_run(first, two_sources).pk).update(
        state="running", heartbeat_at=timezone.now())  # at work
    second = file_request(request_type="access", state=State.FULFILLING,
                          email="sam@example.com")
    quiet = SourceRun.objects.create(
        request=second, source=two_sources["http"], action="gather", state="running",
        attempts=1, heartbeat_at=timezone.now() - datetime.timedelta(hours=1))
    assert runs.execute(quiet.pk) == ("busy", None)
    quiet.refresh_from_db()
    assert quiet.state == "pending" and quiet.attempts == 1
    assert quiet.dispatched_at > timezone.now() - datetime.timedelta(minutes=1)
    assert quiet.pk not in set(runs.stuck_runs().values_list("pk", flat=True))
