import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from privacyportal.celery import app as celery_app
from requests_app.models import Actor, PrivacyRequest
from requests_app.roles import sync_roles
from requests_app.services.requests.filing import NewRequest, do_receive_request

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    """Under `make test` the suite must run on the real services, never quietly on
    SQLite or an in-memory broker."""
    if os.environ.get("PP_TEST_SERVICES") == "1":
        from django.conf import settings

        engine = settings.DATABASES["default"]["ENGINE"]
        broker = settings.CELERY_BROKER_URL
        if "postgresql" not in engine or not broker.startswith("redis://"):
            pytest.exit(f"make test needs PostgreSQL and Redis, got {engine} and {broker}", 2)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_cache():
    """Rate-limit counters live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


def committed():
    """Run the on-commit side effects registered inside the block when it ends, as
    a real commit would (tests run inside a transaction that is rolled back)."""
    return TestCase.captureOnCommitCallbacks(execute=True)


@pytest.fixture(autouse=True)
def eager_celery():
    """Unit tests run tasks in-process when their transaction commits (arguments
    still go through JSON, see enqueue_on_commit). Integration tests switch this
    off and use the real worker."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


# --- people ------------------------------------------------------------------------
# Three personas, as in healthchecks: one who may, one who may partly, one who may not.


def _staff(username: str, role: str | None) -> User:
    user = User.objects.create_user(username, f"{username}@staff.example", "x" * 16, is_staff=True)
    if role:
        if not Group.objects.filter(name=role).exists():
            sync_roles()  # a transactional test before this one flushed the tables
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(db):
    """Privacy Manager."""
    return _staff("alice", "Privacy Manager")


@pytest.fixture
def bob(db):
    """Privacy Analyst."""
    return _staff("bob", "Privacy Analyst")


@pytest.fixture
def charlie(db):
    """Auditor."""
    return _staff("charlie", "Auditor")


@pytest.fixture
def dave(db):
    """Source Owner (no role permissions: sees the tasks of the sources they own)."""
    return _staff("dave", "Source Owner")


def totp_device(user):
    """The user's confirmed TOTP device (created on first use)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)


def totp_code(device) -> str:
    """The code an authenticator app would show now for this device."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def staff_login(client, user):
    """Log a persona in as the login page would: a session verified by their TOTP
    device (django-otp keeps the device's id in the session)."""
    from django_otp import DEVICE_ID_SESSION_KEY

    device = totp_device(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


# --- requests ----------------------------------------------------------------------


def file_request(
    *,
    request_type="access",
    jurisdiction="VA",
    received_at=None,
    state=None,
    email="pat.doe@example.com",
    **extra,
) -> PrivacyRequest:
    """File a request through the real use case, then (for tests that start in the
    middle of the lifecycle) put it in `state` directly in the database."""
    with committed():
        request = do_receive_request(
            NewRequest(
                request_type=request_type,
                jurisdiction=jurisdiction,
                channel="web",
                name="Pat Doe",
                email=email,
                received_at=received_at,
                **extra,
            ),
            actor=Actor.consumer(),
        )
    if state is not None:
        answered = state in ANSWERED_STATES
        PrivacyRequest.objects.filter(pk=request.pk).update(
            state=state, responded_at=timezone.now() if answered else None)
        request.refresh_from_db()
    return request


# States in which the consumer has had an answer (a denial or the results).
ANSWERED_STATES = {"denied", "completed", "closed", "under_appeal", "appeal_denied"}


@pytest.fixture
def days_ago():
    def _days_ago(n: int) -> datetime.datetime:
        return timezone.now() - datetime.timedelta(days=n)

    return _days_ago


# --- a real Celery worker ----------------------------------------------------------


def test_database_url() -> str:
    settings_dict = connection.settings_dict
    if "postgresql" not in settings_dict["ENGINE"]:
        pytest.fail("integration tests need PostgreSQL: run them with `make test`")
    return (f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:"
            f"{settings_dict['PORT']}/{settings_dict['NAME']}")


@contextlib.contextmanager
def scratch_database(prefix: str):
    """A database of its own on the test PostgreSQL server (a source's "company
    database"), dropped afterwards even if connections still hold it; yields its DSN."""
    import psycopg

    from requests_app.sources.sql import driver

    s = connection.settings_dict
    server = f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}"
    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        driver._engine.cache_clear()  # its pooled connections hold the database open
        driver._REFLECTED.clear()  # the next test's database has this one's name
        driver._LOOKUPS.clear()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_worker(name: str, extra_env: dict | None = None, concurrency: int = 1):
    """A real worker process on the test broker and the test database, in its own
    process group (so that it and its pool can be killed together)."""
    log_path = Path(os.environ.get("TEST_TMP", "/tmp")) / f"worker-{name}-{os.getpid()}.log"
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DATABASE_CONN_MAX_AGE": "0",
           **(extra_env or {})}
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "privacyportal", "worker", "--pool=prefork",
         f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle",
         "--without-gossip", "--hostname", f"{name}-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    process.log_path = log_path
    process.log_file = log
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            pytest.fail(f"the Celery worker exited: {log_path.read_text()[-2000:]}")
        if "ready." in log_path.read_text():
            return process
        time.sleep(0.2)
    stop_process_group(process)
    pytest.fail("the Celery worker did not start within 60 s")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    process = start_worker("test")
    try:
        yield process
    finally:
        stop_process_group(process)


def stop_process_group(process, timeout=20, sig=signal.SIGTERM):
    """Stop a process started with start_new_session=True, and all its children."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)  # pool children left behind
    except ProcessLookupError:
        pass
    if getattr(process, "log_file", None):
        process.log_file.close()


@pytest.fixture
def real_worker(transactional_db, celery_worker):
    """Use in a `django_db(transaction=True)` test: tasks go to Redis and the worker.

    Torn down before the test database is flushed (it depends on
    transactional_db): it waits until the worker has nothing running or queued,
    so that the flush's TRUNCATE never meets a task of this test still reading
    the tables (PostgreSQL would break that deadlock by failing the flush)."""
    celery_app.conf.task_always_eager = False
    yield celery_worker
    wait_until_worker_idle()


def wait_until_worker_idle(timeout=60.0):
    """Until the queue is empty and no worker runs, holds or schedules a task
    (each follow-up a task enqueues is waited for too)."""
    deadline = time.monotonic() + timeout
    quiet_rounds = 0
    while time.monotonic() < deadline:
        with celery_app.connection_for_write() as conn:
            queued = conn.default_channel.client.llen(celery_app.conf.task_default_queue)
        inspect = celery_app.control.inspect(timeout=1.0)
        busy = queued
        for reply in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            busy += sum(len(tasks) for tasks in (reply or {}).values())
        quiet_rounds = quiet_rounds + 1 if not busy else 0
        if quiet_rounds >= 2:  # twice in a row: nothing was in flight between looks
            return
        time.sleep(0.2)
    raise AssertionError(f"the Celery worker was still busy after {timeout} s")


def wait_for(predicate, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


# --- a real browser ----------------------------------------------------------------
# Debian's chromium driven by Playwright; `make test` installs it when missing.
# Never `playwright install`.

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run the suite with `make test`, which installs it")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM
    # calls are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server):
    """A fresh browser tab (own cookies) on the live server; `page.goto("/")` works."""
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ (look at them)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
