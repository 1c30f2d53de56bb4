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


def test_a_fresh_web_process_knows_every_task_it_enqueues_by_name():
    """A new web process (gunicorn worker) enqueues a step's follow-up before anything
    else imported requests_app.tasks: the task is found (and registered) all the same."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = ("import django; django.setup()\n"
              "from privacyportal.celery import app\n"
              "from requests_app.services.lifecycle import FOLLOW_UPS, follow_up\n"
              "print(sorted({app.tasks[follow_up(step).name].name for step in FOLLOW_UPS}))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ,
                                 "DJANGO_SETTINGS_MODULE": "privacyportal.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "requests_app.tasks.begin_fulfilment" in result.stdout
