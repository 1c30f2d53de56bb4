"""A real Celery worker process, over Redis, changes requests in PostgreSQL."""

import pytest

from requests_app.models import Actor, PrivacyRequest, State
from requests_app.services.requests.lifecycle import do_transition
from requests_app.services.requests.tasks import expire_unverified_requests
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
    """Use cases enqueue tasks by their dotted name: a web process imports no task
    module, and every name enqueued anywhere (the machine's follow-ups, the names in
    the services) is a task a worker process registers."""
    import json
    import os
    import re
    import subprocess
    import sys

    from tests.conftest import ROOT

    named = set()
    for path in (ROOT / "requests_app").rglob("*.py"):
        named |= set(re.findall(r'"(requests_app\.services\.[\w.]+\.tasks\.\w+)"',
                                path.read_text()))
    assert len(named) >= 8
    script = ("import django, json, sys; django.setup()\n"
              "import privacyportal.urls  # what a web process loads\n"
              "web = sorted(m for m in sys.modules if m.startswith('requests_app')"
              " and m.endswith('.tasks'))\n"
              "from privacyportal.celery import app\n"
              "from requests_app.services.reconciler import follow_ups\n"
              "app.loader.import_default_modules()  # what a worker process loads\n"
              "names = set(json.loads(sys.argv[1])) | set(follow_ups().values())\n"
              "print(json.dumps({'web': web, 'missing': sorted(n for n in names"
              " if n not in app.tasks), 'follow_ups': sorted(follow_ups().values())}))\n")
    result = subprocess.run([sys.executable, "-c", script, json.dumps(sorted(named))],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ,
                                 "DJANGO_SETTINGS_MODULE": "privacyportal.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["web"] == []
    assert found["missing"] == []
    assert "requests_app.services.fulfilment.tasks.begin_fulfilment" in found["follow_ups"]
