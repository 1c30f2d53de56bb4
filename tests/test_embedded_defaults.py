"""`make run` with nothing configured: SQLite and kombu's filesystem broker, with a
real worker process that picks up what the web side enqueued."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FILE_A_REQUEST = """
import django; django.setup()
from requests_app.models import Actor
from requests_app.services.requests.filing import NewRequest, do_receive_request
r = do_receive_request(NewRequest(request_type="deletion", jurisdiction="CA", channel="web",
                                  name="Sam Roe", email="sam@example.com"), actor=Actor.consumer())
print(r.pk)
"""

ACKNOWLEDGED = """
import django; django.setup()
from requests_app.models import PrivacyRequest
print(PrivacyRequest.objects.get(pk={pk}).acknowledged_at is not None)
"""


@pytest.mark.integration
def test_a_worker_on_the_filesystem_broker_runs_what_the_web_side_enqueued(tmp_path):
    env = {"PATH": os.environ["PATH"], "DEBUG": "1", "DATA_DIR": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "privacyportal.settings"}

    def python(*args, **kwargs):
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True,
                              capture_output=True, text=True, timeout=120, **kwargs).stdout

    python("manage.py", "migrate", "--noinput", "-v", "0")
    pk = int(python("-c", FILE_A_REQUEST).strip())
    assert list((tmp_path / "broker" / "queue").iterdir()), "the task should wait in the queue"

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "privacyportal", "worker", "--pool=solo",
         "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if python("-c", ACKNOWLEDGED.format(pk=pk)).strip() == "True":
                break
            time.sleep(0.5)
        else:
            pytest.fail("the worker did not send the acknowledgment within 60 s")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    (message,) = list((tmp_path / "mail").iterdir())
    assert "sam@example.com" in message.read_text()
