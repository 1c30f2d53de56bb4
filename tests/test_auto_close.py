"""Answered requests close by themselves after a quiet period (issue 15, item 4):
AUTO_CLOSE_QUIET_DAYS with no change, no appeal open and no download link still
live; the system step `close_quietly` is audited and on the consumer's timeline,
and from then retention and the verification purge run."""

import datetime

import pytest
import time_machine
from django.utils import timezone

from requests_app.models import Actor, AuditEvent, Package, PrivacyRequest, State
from requests_app.services.requests import tasks
from requests_app.services.requests.lifecycle import do_transition, may_take
from requests_app.services.retention import verification_data
from tests.conftest import file_request

pytestmark = pytest.mark.django_db

QUIET = 30  # AUTO_CLOSE_QUIET_DAYS's default


@pytest.fixture(autouse=True)
def quiet_period(settings):
    settings.AUTO_CLOSE_QUIET_DAYS = QUIET


def denied(alice, transition_inputs, days_ago, **extra):
    """A Virginia access request denied by staff `days_ago` days ago."""
    with time_machine.travel(timezone.now() - datetime.timedelta(days=days_ago)):
        request = file_request(jurisdiction="VA", state=State.IN_REVIEW, **extra)
        do_transition(request.pk, "deny", actor=Actor.staff(alice), **transition_inputs["deny"])
    request.refresh_from_db()
    return request


def completed(days_ago):
    with time_machine.travel(timezone.now() - datetime.timedelta(days=days_ago)):
        return file_request(jurisdiction="CA", state=State.COMPLETED)


def package_for(request, **fields):
    return Package.objects.create(request=request, kind="access", filename="package.zip",
                                  path="packages/x", content_type="application/zip",
                                  sha256="ab" * 32, **fields)


def test_an_answered_request_closes_by_itself_after_the_quiet_period(
        alice, transition_inputs, client, open_status):
    request = denied(alice, transition_inputs, QUIET + 1, phone="+1 555 0100")
    assert tasks.close_quiet_requests() == 1
    request.refresh_from_db()
    assert request.state == State.CLOSED and request.closed_at is not None
    event = AuditEvent.objects.get(request=request, action="request.close_quietly")
    assert event.actor_kind == "system" and event.actor is None
    assert (event.from_state, event.to_state) == ("denied", "closed")
    assert event.reason == f"quiet for {QUIET} days" and event.data == {"quiet_days": QUIET}
    # The consumer's timeline says it in plain words.
    page = client.get(open_status(client, request)).content.decode()
    assert "We closed your request: it was answered and nothing more was asked of us." in page
    # Closed: the verification purge starts (retention counts from closed_at).
    assert verification_data.purge_verification_points() == 1
    request.identity.refresh_from_db()
    assert request.identity.phone == ""


def test_a_request_answered_within_the_quiet_period_stays_open(alice, transition_inputs):
    request = denied(alice, transition_inputs, QUIET - 1)
    assert tasks.close_quiet_requests() == 0
    request.refresh_from_db()
    assert request.state == State.DENIED and request.closed_at is None


def test_a_request_with_an_appeal_open_does_not_close(alice, transition_inputs):
    request = denied(alice, transition_inputs, QUIET + 10)
    with time_machine.travel(timezone.now() - datetime.timedelta(days=QUIET + 5)):
        do_transition(request.pk, "appeal", actor=Actor.consumer(),
                      **transition_inputs["appeal"])
    assert tasks.close_quiet_requests() == 0
    request.refresh_from_db()
    assert request.state == State.UNDER_APPEAL
    # Nor can the step be taken on it by hand.
    assert may_take(request, "close_quietly", Actor.system()) is None


def test_an_appeal_decided_recently_keeps_the_request_open_until_quiet(
        alice, transition_inputs):
    request = denied(alice, transition_inputs, QUIET + 20)
    with time_machine.travel(timezone.now() - datetime.timedelta(days=QUIET + 10)):
        do_transition(request.pk, "appeal", actor=Actor.consumer(),
                      **transition_inputs["appeal"])
    with time_machine.travel(timezone.now() - datetime.timedelta(days=2)):
        do_transition(request.pk, "deny_appeal", actor=Actor.staff(alice),
                      **transition_inputs["deny_appeal"])
    assert tasks.close_quiet_requests() == 0
    with time_machine.travel(timezone.now() + datetime.timedelta(days=QUIET)):
        assert tasks.close_quiet_requests() == 1
    request.refresh_from_db()
    assert request.state == State.CLOSED


def test_a_request_with_a_download_pending_does_not_close_until_the_link_ends():
    request = completed(QUIET + 1)
    package = package_for(request, released_at=timezone.now(),
                          expires_at=timezone.now() + datetime.timedelta(days=3))
    assert tasks.close_quiet_requests() == 0
    request.refresh_from_db()
    assert request.state == State.COMPLETED
    # Downloaded as often as allowed: nothing is pending any more.
    Package.objects.filter(pk=package.pk).update(download_count=5)
    assert tasks.close_quiet_requests() == 1
    request.refresh_from_db()
    assert request.state == State.CLOSED


def test_an_expired_download_link_does_not_hold_a_request_open():
    request = completed(QUIET + 1)
    package_for(request, expires_at=timezone.now() - datetime.timedelta(days=1))
    assert tasks.close_quiet_requests() == 1
    assert PrivacyRequest.objects.get(pk=request.pk).state == State.CLOSED


def test_closing_quietly_twice_closes_once(alice, transition_inputs):
    request = denied(alice, transition_inputs, QUIET + 1)
    assert tasks.close_quiet_requests() == 1
    assert tasks.close_quiet_requests() == 0
    assert AuditEvent.objects.filter(request=request, action="request.close_quietly").count() == 1


def test_closing_quietly_is_a_system_step_staff_cannot_take(alice, transition_inputs):
    request = denied(alice, transition_inputs, QUIET + 1)
    assert may_take(request, "close_quietly", Actor.staff(alice)) is False
    assert may_take(request, "close_quietly", Actor.system()) is True


def test_the_quiet_period_is_a_setting(settings):
    request = completed(10)
    assert tasks.close_quiet_requests() == 0
    settings.AUTO_CLOSE_QUIET_DAYS = 7
    assert tasks.close_quiet_requests() == 1
    assert PrivacyRequest.objects.get(pk=request.pk).state == State.CLOSED


def test_the_beat_schedule_runs_the_closing_daily():
    from privacyportal.celery import app

    entry = app.conf.beat_schedule["close-quiet-requests"]
    assert entry["task"] == "requests_app.services.requests.tasks.close_quiet_requests"
