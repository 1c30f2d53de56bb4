"""One hanging source must not starve the rest (issue 14, item 3), measured with
real processes: a worker per queue as `make run` starts them (steps, emails, and
sources with three processes), a real local HTTP service that holds every call for
30 s (its source gives up after LOYALTY_TIMEOUT), and a real SQLite shop.

While the loyalty service hangs, acknowledgment emails still leave within 5 s, the
shop's runs finish within one loyalty timeout of their approval (the calls already
in flight when it began to hang are all it can cost them), the breaker parks every
loyalty run after a few calls (the requests need attention with the source named),
later requests lose nothing to it at all, and once the service answers the probe
every parked run is retried to the end.
"""

import time

import pytest
from django.utils import timezone

from privacyportal.celery import app as celery_app
from requests_app.models import (Actor, DataSource, OutgoingEmail, PrivacyRequest,
                                 SourceRun, State)
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import PAT, file_request, start_worker, stop_process_group, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOYALTY_TIMEOUT = 5  # seconds; the service holds each call for 30
PROBE = "requests_app.services.fulfilment.tasks.probe_unhealthy_sources"
WORKER_ENV = {"SOURCE_PROBE_SECONDS": "2"}


@pytest.fixture
def hanging(shop, http_service):
    sql_source, _engine = shop
    sql_source.save()
    service, url = http_service
    DataSource.objects.create(name="Loyalty", kind="http", url=url,
                              secret_env="DEMO_HTTP_SECRET", verify_tls=False,
                              timeout_seconds=LOYALTY_TIMEOUT)
    service.set_mode("timeout")
    celery_app.conf.task_always_eager = False
    return service


@pytest.fixture
def workers(hanging):
    """A worker for each queue, as Procfile.dev starts them."""
    started = [start_worker("steps", WORKER_ENV, queues="steps"),
               start_worker("emails", WORKER_ENV, queues="emails"),
               start_worker("sources", WORKER_ENV, concurrency=3, queues="sources")]
    yield started
    for worker in started:
        stop_process_group(worker)


def approve(count: int, manager) -> dict[int, object]:
    """`count` access requests approved now: {request id: when}."""
    requests = [file_request(request_type="access", state=State.IN_REVIEW, email=PAT)
                for _ in range(count)]
    approved = {}
    for request in requests:
        approved[request.pk] = timezone.now()
        do_transition(request.pk, "approve", actor=Actor.staff(manager))
    return approved


def run_of(request_id: int, source: str) -> SourceRun | None:
    return SourceRun.objects.filter(request_id=request_id, source__name=source).first()


def shop_delays(approved: dict) -> list[float]:
    """Seconds from each request's approval to its shop run's finish."""
    wait_for(lambda: all((r := run_of(pk, "Shop")) and r.state == "done" for pk in approved),
             timeout=60)
    return [(run_of(pk, "Shop").finished_at - at).total_seconds()
            for pk, at in approved.items()]


def in_state(ids, state) -> bool:
    return set(PrivacyRequest.objects.filter(pk__in=ids).values_list("state", flat=True)) \
        == {state}


def test_a_hanging_source_starves_neither_emails_nor_the_other_sources(
        hanging, workers, alice):
    scenario(hanging, alice)


def scenario(service, alice):
    started = time.monotonic()
    first = approve(6, alice)  # their loyalty calls hold all three source workers
    time.sleep(1)
    # While they hang: people file requests, and more are approved.
    filed_from = timezone.now()
    filed = [file_request(request_type="deletion", email=f"new{n}@example.com")
             for n in range(5)]
    during = approve(3, alice)
    emails = OutgoingEmail.objects.filter(request__in=filed, created_at__gte=filed_from)
    wait_for(lambda: emails.exists() and not emails.filter(sent_at=None).exists(), timeout=60)
    email_delays = [(e.sent_at - e.created_at).total_seconds() for e in emails]
    assert len(email_delays) >= len(filed)
    assert max(email_delays) < 5, email_delays

    shop_first, shop_during = shop_delays(first), shop_delays(during)
    assert max(shop_first + shop_during) < LOYALTY_TIMEOUT + 3, (shop_first, shop_during)
    # Parked, not retried for minutes: every request needs attention, the source named.
    ids = [*first, *during]
    wait_for(lambda: in_state(ids, State.NEEDS_ATTENTION), timeout=4 * LOYALTY_TIMEOUT)
    parked_after = time.monotonic() - started
    loyalty = DataSource.objects.get(name="Loyalty")
    assert loyalty.health == "unhealthy"
    calls = service.calls
    assert calls <= 3 + 3, calls  # the calls that tripped it, and those then in flight
    for pk in ids:
        assert "Loyalty is marked unhealthy" in run_of(pk, "Loyalty").last_error

    # Requests approved now lose nothing to it: no call, their shop runs at once.
    after = approve(3, alice)
    assert max(shop_delays(after)) < 2
    wait_for(lambda: in_state(after, State.NEEDS_ATTENTION), timeout=10)
    assert service.calls == calls

    # The service answers again: beat's probe finds it, and every parked run is retried.
    service.set_mode("ok")
    everyone = [*ids, *after]
    deadline = time.monotonic() + 60
    while not in_state(everyone, State.RESULTS_READY):
        assert time.monotonic() < deadline, "the parked runs were not retried"
        celery_app.send_task(PROBE)  # as beat does, every 15 s
        time.sleep(1)
    assert DataSource.objects.get(name="Loyalty").health == "healthy"
    print(f"\nbreaker: emails sent in {max(email_delays):.2f} s at most "
          f"(mean {sum(email_delays) / len(email_delays):.2f}); shop runs done "
          f"{max(shop_first):.2f} s / {max(shop_during):.2f} s after approval "
          f"(before / while the calls hung), all {len(ids)} requests parked "
          f"{parked_after:.1f} s after the first approval, {calls} loyalty calls")
