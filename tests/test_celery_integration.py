"""A real Celery worker process, over Redis, changes requests in PostgreSQL."""

import pytest

from requests_app.models import Actor, PrivacyRequest, State
from requests_app.services.lifecycle import do_transition
from requests_app.tasks import expire_unverified_requests
from tests.conftest import file_request, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def state_of(request):
    return PrivacyRequest.objects.get(pk=request.pk).state


def test_approval_is_followed_by_the_worker_starting_fulfilment(real_worker, bob):
    request = file_request(state=State.IN_REVIEW)
    do_transition(request.pk, "approve", actor=Actor.staff(bob))
    # With no source to ask, fulfilment may already have moved on to the results
    # when we look: the worker's step is in the trail either way.
    assert wait_for(lambda: request.audit_events.filter(
        action="request.start_fulfilment", actor_kind="system").exists())
    assert state_of(request) in (State.FULFILLING, State.RESULTS_READY)


def test_the_worker_expires_requests_never_verified(real_worker, days_ago):
    old = file_request(received_at=days_ago(31))
    recent = file_request(received_at=days_ago(2))
    expire_unverified_requests.delay()
    assert wait_for(lambda: state_of(old) == State.EXPIRED)
    assert state_of(recent) == State.PENDING_VERIFICATION
    assert old.audit_events.filter(action="request.expire", actor_kind="system").exists()
