import contextlib
import copy
import datetime
import io
import os
import secrets
import signal
import subprocess
import sys
import time
import zipfile
from hashlib import sha256
from pathlib import Path

import pytest
import sqlalchemy as sa
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from privacyportal.celery import QUEUES
from privacyportal.celery import app as celery_app
from requests_app.files import iter_decrypted
from requests_app.models import (
    Actor,
    DataSource,
    PrivacyRequest,
    State,
    ThirdParty,
    VerificationEvidence,
)
from requests_app.roles import sync_roles
from requests_app.sources.demo_http import DemoHttpService, seed
from requests_app.services.requests.filing import NewRequest, do_receive_request
from requests_app.services.requests.lifecycle import do_transition

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


def _flush_past_the_truncate_guard():
    """The audit trail and the consent ledger refuse TRUNCATE (a trigger, migration
    0013), and Django empties the database between transactional tests with one.
    The test database's superuser steps past it as any superuser could: with
    session_replication_role = replica, ordinary triggers do not fire (for that
    transaction only)."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    plain = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, **kwargs):
        statements = plain(self, style, tables, **kwargs)
        return ["SET LOCAL session_replication_role = replica", *statements] if statements else []

    DatabaseOperations.sql_flush = sql_flush


_flush_past_the_truncate_guard()


@pytest.fixture
def checkpoint_dir(settings, tmp_path):
    """The audit trail's signed checkpoints go to a directory of this test's own."""
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "audit-checkpoints"
    return settings.AUDIT_CHECKPOINT_DIR


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


# --- packages ----------------------------------------------------------------------


def _unzip(package) -> zipfile.ZipFile:
    data = b"".join(iter_decrypted(f"{settings.MEDIA_ROOT}/{package.path}"))
    assert sha256(data).hexdigest() == package.sha256
    return zipfile.ZipFile(io.BytesIO(data))


@pytest.fixture
def unzip():
    """unzip(package): the package's zip archive, decrypted from MEDIA_ROOT, after
    checking it against the digest recorded for it."""
    return _unzip


# --- consent -----------------------------------------------------------------------


def _make_purpose(slug, basis, opt_out_type="opt_out_sale", gpc=False, text="Notice v1"):
    from requests_app.models import Purpose, PurposeNotice

    purpose = Purpose.objects.create(slug=slug, name=slug.replace("-", " ").title(),
                                     description=f"What {slug} means.", basis=basis,
                                     opt_out_type=opt_out_type, honours_gpc=gpc)
    PurposeNotice.objects.create(purpose=purpose, version=1, text=text)
    return purpose


@pytest.fixture
def make_purpose():
    """make_purpose(slug, basis, opt_out_type=..., gpc=False, text=...): a purpose of
    processing with its first notice."""
    return _make_purpose


def _grant(purpose, email="pat@example.com", when=None):
    from requests_app.models import ConsentRecord
    from requests_app.services.consent import ledger as consent

    with committed():
        return consent.record(consent.person(email), purpose, ConsentRecord.Action.GRANT,
                              method=ConsentRecord.Method.PREFERENCE_PAGE,
                              notice=purpose.current_notice, actor=Actor.consumer(),
                              affirmative_act="ticked yes")


@pytest.fixture
def grant():
    """grant(purpose, email="pat@example.com"): the person's consent, given on the
    preference page to the purpose's current notice."""
    return _grant


# --- the consumer portal -----------------------------------------------------------


def _open_status(client, request) -> str:
    import re

    from requests_app.models import OutgoingEmail

    with committed():
        client.post("/status/", {"reference": request.reference})
    email = OutgoingEmail.objects.filter(notice="status_code",
                                         to=request.identity.email).latest("id")
    code = emailed_code(email)
    with committed():
        response = client.post("/status/code/", {"reference": request.reference, "code": code})
    assert response.status_code == 302, response.content.decode()
    return response.url


def emailed_code(email) -> str:
    """The one-time code the consumer received in `email` (a sent OutgoingEmail).
    The outbox keeps the email with the code replaced, so the code is read from the
    message as it went out (Django's locmem backend in tests)."""
    import re

    from django.core import mail

    from requests_app.services.notices.outbox import HIDDEN

    pattern = re.escape(email.body_text).replace(re.escape(HIDDEN["code"]), r"(\d{6,})")
    for message in reversed(mail.outbox):
        found = message.to == [email.to] and re.fullmatch(pattern, message.body)
        if found:
            return found.group(1)
    raise AssertionError(f"no {email.notice} email with a code was sent to its address")


@pytest.fixture
def open_status():
    """open_status(client, request): open the request's status page as its requester
    does (the reference, then the code emailed to them); returns the page's URL."""
    return _open_status


_PORTAL_SHOP = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT UNIQUE, first_name TEXT,
                        last_name TEXT, phone TEXT, customer_number TEXT);
CREATE TABLE addresses (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                        line1 TEXT, city TEXT, postal_code TEXT);
"""
_PORTAL_SHOP_MAP = """
name: portal_shop
tables:
  customers:
    primary_key: id
    identity: {email: email, phone: phone, account_number: customer_number}
    columns:
      email: user.contact.email
      first_name: user.name.first
      last_name: user.name.last
      phone: user.contact.phone_number
      customer_number: user.unique_id
    erase: delete
  addresses:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
    columns:
      line1: user.contact.address.street
      city: user.contact.address.city
      postal_code: user.contact.address.postal_code
    erase: delete
"""


@pytest.fixture
def portal_shop(tmp_path, monkeypatch):
    """A customer database (SQLite) registered as a source, where Pat Doe is a
    customer: the portal verifies identities against it."""
    path = tmp_path / "shop.sqlite3"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for statement in _PORTAL_SHOP.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        conn.exec_driver_sql("INSERT INTO customers VALUES (1, 'Pat.Doe@example.com', 'Pat', "
                             "'Doe', '(555) 010-0100', 'C-1001')")
        conn.exec_driver_sql("INSERT INTO addresses VALUES (1, 1, '12 Elm Street', 'Austin', "
                             "'73301')")
    monkeypatch.setenv("PORTAL_SHOP_DSN", f"sqlite:///{path}")
    return DataSource.objects.create(name="Shop", kind="sql", connection_env="PORTAL_SHOP_DSN",
                                     dataset_map=_PORTAL_SHOP_MAP)


def portal_form(**overrides) -> dict:
    """What the portal's request form posts for Pat Doe asking for deletion in
    Virginia (a field given as None is left out)."""
    data = {
        "rights": ["deletion"], "residence": "VA", "name": "Pat Doe",
        "email": "pat.doe@example.com", "phone": "", "account_number": "", "postal_address": "",
        "filed_by": "self", "agent_name": "", "agent_email": "", "period_start": "",
        "period_end": "", "corrected_field": "", "correction_wrong": "", "correction_right": "",
        "details": "", "website": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def intake_post(**extra) -> dict:
    """What the staff intake form posts for Lee Letter, a letter received 6 days ago
    asking for a copy in California (a field given as None is left out)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    received = timezone.localtime() - datetime.timedelta(days=6)
    form = {"channel": "post", "received_at": received.strftime("%Y-%m-%dT%H:%M"),
            "request_type": "access", "jurisdiction": "CA", "filed_by": "self",
            "name": "Lee Letter", "email": "lee@example.com",
            "postal_address": "1 Main St", "details": "Please send me my data.",
            "original": SimpleUploadedFile("letter.pdf", b"%PDF-1.4 the letter",
                                           content_type="application/pdf")}
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


# --- the lifecycle -----------------------------------------------------------------

# What each transition needs to be taken.
_TRANSITION_INPUTS = {
    "deny": {"reason_code": "exemption", "detail": "Records kept for a pending legal claim."},
    "appeal": {"text": "I believe the exemption does not apply."},
    "grant_appeal": {"reason": "The legal claim was settled."},
    "deny_appeal": {"reason": "The claim is still pending."},
    "extend": {"notice": "Three of our systems need a manual search."},
    "flag_for_attention": {"reason": "crm: timed out after 5 tries"},
    "reject_erasure_plan": {"reason": "The map misses the loyalty table."},
    "request_information": {"message": "Please send the last four digits of your card."},
    "verify_manually": {"methods": ["document"],
                        "points": ["name", "postal_address", "date_of_birth"],
                        "level": "reasonably_high"},
    "verify_for_categories": {"methods": ["call_back"], "points": ["name", "phone"],
                              "level": "reasonable"},
}


@pytest.fixture
def transition_inputs():
    """What each transition needs to be taken: {name: keyword arguments}."""
    return copy.deepcopy(_TRANSITION_INPUTS)


# Written by hand from the lifecycle the issue describes, not read from the machine,
# so that a source added or dropped by mistake fails here.
_OPEN_STATES = {"pending_verification", "verified", "in_review", "approved", "fulfilling",
        "waiting_manual", "results_ready", "needs_attention"}
_EXPECTED_SOURCES = {
    "verify": {"pending_verification"},
    "verify_manually": {"pending_verification"},
    "verify_for_categories": {"pending_verification"},
    "expire": {"pending_verification"},
    "start_review": {"verified"},
    "approve": {"in_review"},
    "start_fulfilment": {"approved"},
    "wait_on_manual_source": {"fulfilling"},
    "resume_fulfilment": {"waiting_manual"},
    "mark_results_ready": {"fulfilling", "waiting_manual"},
    "flag_for_attention": {"fulfilling", "waiting_manual"},
    "retry_fulfilment": {"needs_attention"},
    "release": {"results_ready"},
    "approve_opt_out": {"in_review"},
    "confirm_opt_out": {"results_ready"},
    "approve_erasure": {"results_ready"},
    "reject_erasure_plan": {"results_ready"},
    "close": {"completed", "denied", "appeal_denied"},
    "close_quietly": {"completed", "denied", "appeal_denied"},
    "deny": {"pending_verification", "verified", "in_review", "needs_attention",
             "results_ready"},
    "cancel": {"pending_verification", "verified", "in_review", "approved"},
    "appeal": {"denied", "completed", "closed"},
    "grant_appeal": {"under_appeal"},
    "deny_appeal": {"under_appeal"},
    "extend": _OPEN_STATES,
    "request_information": {"pending_verification", "verified", "in_review"},
    "merge": {"pending_verification", "verified", "in_review"},
}


@pytest.fixture
def expected_sources():
    """The states each transition may be taken from: {name: {state, ...}}."""
    return copy.deepcopy(_EXPECTED_SOURCES)


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
    from psycopg import sql

    s = connection.settings_dict
    server = f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}"
    name = f"{prefix}_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server}/{name}"
    finally:
        _forget_engines()  # its pooled connections hold the database open
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(drop)


def _forget_engines(*urls: str) -> None:
    """Close the SQL connector's pooled connections to these databases, and forget
    every engine, reflection and compiled lookup the connector has cached (the next
    test's database may have this one's name)."""
    from requests_app.sources.sql import driver

    for url in urls:
        driver._engine(driver.engine_url(url)).dispose()
    driver._engine.cache_clear()
    driver._REFLECTED.clear()
    driver._LOOKUPS.clear()


# --- SQL engines: a fresh database on each engine an SQL source may use ------------

SQL_ENGINES = ("sqlite", "postgresql", "mariadb")


class EngineUrl(str):
    """A database's SQLAlchemy URL (usable as is as a source's DSN, and by
    sa.create_engine) that knows its engine: `.engine` is one of SQL_ENGINES."""

    engine: str

    def __new__(cls, url: str, engine: str):
        self = super().__new__(cls, url)
        self.engine = engine
        return self


def _engine_unavailable(message: str):
    """A missing engine fails the test, with the reason: no engine test passes by
    being skipped (`make test` starts every engine)."""
    pytest.fail(message, pytrace=False)


@contextlib.contextmanager
def mariadb_database(prefix: str = "pp_engine"):
    """A database of its own on the test MariaDB server (TEST_MARIADB_URL, which
    `make test` sets), dropped afterwards (its connections killed first, as
    PostgreSQL's DROP DATABASE ... WITH (FORCE) does); yields its URL."""
    server = os.environ.get("TEST_MARIADB_URL")
    if not server:
        _engine_unavailable("TEST_MARIADB_URL is not set: the MariaDB case needs the MariaDB "
                            "server that `make test` starts (scripts/test.sh)")
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(server, poolclass=sa.pool.NullPool,
                             isolation_level="AUTOCOMMIT")
    # An identifier cannot be a bound parameter: the dialect quotes it as one.
    quoted = admin.dialect.identifier_preparer.quote_identifier(name)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE " + quoted + " CHARACTER SET utf8mb4")
        url = sa.engine.make_url(server).set(database=name).render_as_string(
            hide_password=False)
        try:
            yield url
        finally:
            _forget_engines(url)
            with admin.connect() as conn:
                for (pid,) in conn.execute(sa.text(
                        "SELECT id FROM information_schema.processlist WHERE db = :db "
                        "AND id <> CONNECTION_ID()"), {"db": name}):
                    conn.execute(sa.text("KILL CONNECTION :pid"), {"pid": int(pid)})
                conn.exec_driver_sql("DROP DATABASE IF EXISTS " + quoted)
    finally:
        admin.dispose()


@pytest.fixture(params=SQL_ENGINES)
def sql_engine(request, tmp_path):
    """A fresh, empty database on each SQL engine an SQL source may use: the test
    runs once per engine (ids `sqlite`, `postgresql`, `mariadb`) and gets the
    database's URL, an EngineUrl: a str in SQLAlchemy's form (sqlite:///...,
    postgresql+psycopg://..., mysql+pymysql://...) that a source takes as its DSN
    (set it in the variable its connection_env names) and sa.create_engine takes
    as is, with `.engine` naming the engine (for DDL that differs: MariaDB indexes
    VARCHAR, not TEXT).

    SQLite: a file in the test's tmp_path. PostgreSQL: a database of its own on the
    suite's server (scratch_database). MariaDB: a database of its own on the
    server TEST_MARIADB_URL names (mariadb_database). Each is dropped afterwards,
    and the connector's cached engines, reflections and lookups forgotten. Under
    `make test` a missing server fails the test instead of skipping it.

    To run a test on some engines only:
    `@pytest.mark.parametrize("sql_engine", ["sqlite", "mariadb"], indirect=True)`."""
    engine = request.param
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'engine.sqlite3'}"
        try:
            yield EngineUrl(url, engine)
        finally:
            _forget_engines(url)
    elif engine == "postgresql":
        if "postgresql" not in connection.settings_dict["ENGINE"]:
            _engine_unavailable("the PostgreSQL case needs the suite to run on PostgreSQL "
                                "(`make test`)")
        from requests_app.sources.sql.driver import engine_url

        with scratch_database("pp_engine") as dsn:
            yield EngineUrl(engine_url(dsn), engine)
    elif engine == "mariadb":
        with mariadb_database() as url:
            yield EngineUrl(url, engine)
    else:
        raise ValueError(f"unknown SQL engine {engine!r}: one of {SQL_ENGINES}")


def engine_ddl(ddl: str, engine: str) -> list[str]:
    """CREATE TABLE statements (separated by `;`) for an engine: on MariaDB/MySQL a
    TEXT column cannot be a plain unique key, so `TEXT UNIQUE` becomes
    `VARCHAR(255) UNIQUE` there."""
    if engine == "mariadb":
        ddl = ddl.replace("TEXT UNIQUE", "VARCHAR(255) UNIQUE")
    return [statement for statement in ddl.split(";") if statement.strip()]


def start_worker(name: str, extra_env: dict | None = None, concurrency: int = 1,
                 queues: str = ""):
    """A real worker process on the test broker and the test database, in its own
    process group (so that it and its pool can be killed together). It serves every
    queue (privacyportal/celery.py, QUEUES) unless `queues` names some ("emails",
    "steps,sources"), as production's workers each serve one."""
    log_path = Path(os.environ.get("TEST_TMP", "/tmp")) / f"worker-{name}-{os.getpid()}.log"
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DATABASE_CONN_MAX_AGE": "0",
           **(extra_env or {})}
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "privacyportal", "worker", "--pool=prefork",
         f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle",
         "--without-gossip", "--hostname", f"{name}-{os.getpid()}@%h",
         *(["-Q", queues] if queues else [])],
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
            client = conn.default_channel.client
            queued = sum(client.llen(queue) for queue in QUEUES)
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


# --- the test shop: a company database behind an SQL source ------------------------
# Five tables linked both ways (customers -> orders -> addresses, customers <- devices
# <- events, customers referring customers), used by the SQL connector tests on SQLite
# (`shop`) and PostgreSQL, by fulfilment and by the fault tests.

_SHOP_SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT, phone TEXT,
                        ssn TEXT, referred_by INTEGER REFERENCES customers(id), since TEXT);
CREATE TABLE addresses (id INTEGER PRIMARY KEY, line1 TEXT, city TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                     address_id INTEGER REFERENCES addresses(id), total REAL, ship_name TEXT);
CREATE TABLE devices (id INTEGER PRIMARY KEY, cookie TEXT UNIQUE, customer_id INTEGER);
CREATE TABLE events (id INTEGER PRIMARY KEY, cookie TEXT, ip TEXT);
"""

_SHOP_MAP = """
name: test_shop
tables:
  customers:
    primary_key: id
    identity: {email: email, phone: phone}
    references:
      - {column: referred_by, to: customers.id}
    columns:
      email: {category: user.contact.email, erase: hash}
      name: {category: user.name, erase: mask}
      phone: user.contact.phone_number
      ssn: {category: user.government_id.national_identification_number, erase: null}
      since: {category: user.account, erase: retain}
    erase: update
    legal_basis: "Account opening date kept for fraud prevention"
  orders:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
      - {column: address_id, to: addresses.id}
    columns:
      total: user.financial
      ship_name: user.name
    erase: retain
    legal_basis: "Invoices kept seven years for tax law"
  addresses:
    primary_key: id
    columns:
      line1: user.contact.address.street
      city: user.contact.address.city
    erase: delete
  devices:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
    columns:
      cookie: user.device.cookie_id
    erase: delete
  events:
    primary_key: id
    references:
      - {column: cookie, to: devices.cookie}
    columns:
      ip: user.device.ip_address
    erase: delete
"""

_TRICKY_EMAIL = "o'brien%_zoë.东@example.com"


@pytest.fixture
def shop_schema() -> str:
    """The test shop's CREATE TABLE statements."""
    return _SHOP_SCHEMA


@pytest.fixture
def shop_map() -> str:
    """The test shop's dataset map (YAML)."""
    return _SHOP_MAP


@pytest.fixture
def tricky_email() -> str:
    """An address full of quotes and LIKE wildcards, one customer's in the test shop."""
    return _TRICKY_EMAIL


def _load_shop(engine: sa.Engine, engine_name: str = "sqlite") -> None:
    """The test shop's tables and rows (values bound, never formatted into SQL).
    Customers refer to each other: their references are set once both exist (a
    foreign key is checked row by row on MariaDB)."""
    rows = {
        "customers": [(1, "pat@example.com", "Pat Doe", "555-0100", "123-45-6789", None,
                       "2020-01-01"),
                      (2, "sam@example.com", "Sam Roe", "555-0101", None, None, "2021-01-01"),
                      (3, _TRICKY_EMAIL, "Ona Brien", None, None, None, None),
                      (4, "obrien-zoe@example.com", "Not Her", None, None, None, None)],
        "addresses": [(10, "1 Main St", "Austin"), (11, "2 Side St", "Dallas")],
        "orders": [(100, 1, 10, 25.0, "Pat Doe"), (101, 1, 11, 10.0, "Pat D."),
                   (102, 2, 11, 5.0, "Sam Roe")],
        "devices": [(7, "ck-pat", 1), (8, "ck-sam", 2)],
        "events": [(70, "ck-pat", "10.0.0.1"), (71, "ck-pat", "10.0.0.2"),
                   (80, "ck-sam", "10.0.0.9")],
    }
    with engine.begin() as conn:
        for statement in engine_ddl(_SHOP_SCHEMA, engine_name):
            conn.exec_driver_sql(statement)
        insert_rows(conn, rows)
        conn.execute(sa.text("UPDATE customers SET referred_by = :to WHERE id = :id"),
                     [{"id": 1, "to": 2}, {"id": 2, "to": 1}])


def insert_rows(conn, rows: dict[str, list[tuple]]) -> None:
    """INSERT rows given as tuples in the tables' column order (as reflected), values
    bound and identifiers quoted by SQLAlchemy."""
    for name, values in rows.items():
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        conn.execute(table.insert(), [dict(zip(table.c.keys(), row)) for row in values])


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """The test shop in SQLite: (its DataSource, unsaved, and the engine)."""
    path = tmp_path / "shop.sqlite3"
    engine = sa.create_engine(f"sqlite:///{path}")
    _load_shop(engine)
    monkeypatch.setenv("TEST_SHOP_DSN", f"sqlite:///{path}")
    source = DataSource(name="Shop", kind="sql", connection_env="TEST_SHOP_DSN",
                        dataset_map=_SHOP_MAP)
    return source, engine


@pytest.fixture
def engine_shop(sql_engine, monkeypatch):
    """The test shop on each SQL engine (see sql_engine): (its DataSource, unsaved,
    and an engine of the test's own on the same database)."""
    engine = sa.create_engine(sql_engine)
    try:
        _load_shop(engine, sql_engine.engine)
        monkeypatch.setenv("TEST_SHOP_DSN", sql_engine)
        yield DataSource(name="Shop", kind="sql", connection_env="TEST_SHOP_DSN",
                         dataset_map=_SHOP_MAP), engine
    finally:
        engine.dispose()


class _SourceRunStub:
    """Stands in for a SourceRun where a connector is called directly."""

    pk = 0
    result: dict = {}

    def __init__(self, start=None, end=None):
        self.token = secrets.token_urlsafe(8)
        if start is not None or end is not None:
            # A run of a Right to Know request that asked for a period.
            evidence = type("Evidence", (), {"period_start": start, "period_end": end})
            self.request = type("Request", (), {"evidence": evidence})

    def save(self, **kwargs):
        pass


@pytest.fixture
def source_run():
    """Makes stand-ins for a SourceRun: `source_run()`, or `source_run(start, end)` for
    a Right to Know request that asked for that period."""
    return _SourceRunStub


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


# --- fulfilment across a real SQL source, a real local HTTP service and a manual one ---

PAT = "pat@example.com"


@pytest.fixture
def http_service(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_HTTP_SECRET", "s3cret")
    data = tmp_path / "loyalty.json"
    seed(data, [PAT, "someone@example.com"])
    service = DemoHttpService(data, secret="s3cret")
    port = service.start()
    yield service, f"http://127.0.0.1:{port}/privacy"
    service.stop()


@pytest.fixture
def sources(shop, http_service, alice, bob):
    sql_source, engine = shop
    sql_source.save()
    partner = ThirdParty.objects.create(name="Northwind Resellers", kind="third_party",
                                        contact_email="privacy@northwind.example")
    sql_source.third_parties.add(partner)
    service, url = http_service
    http = DataSource.objects.create(name="Loyalty", kind="http", url=url,
                                     secret_env="DEMO_HTTP_SECRET", verify_tls=False,
                                     timeout_seconds=2)
    manual = DataSource.objects.create(name="Paper archive", kind="manual", owner=bob,
                                       categories=["user.contact.address"],
                                       instructions="Search the cabinet by surname.")
    return {"sql": sql_source, "http": http, "manual": manual, "engine": engine,
            "service": service}


def approved(kind, manager, period=None, **extra):
    """A request filed and approved; `period`: the Right to Know period it asked for."""
    request = file_request(request_type=kind, state=State.IN_REVIEW, email=PAT, **extra)
    if period:
        VerificationEvidence.objects.create(request=request, submission="s",
                                            period_start=period[0], period_end=period[1])
    with committed():
        do_transition(request.pk, "approve", actor=Actor.staff(manager))
    request.refresh_from_db()
    return request


def log_in(page, user):
    """Log a staff user in through the browser (password and TOTP code)."""
    page.goto("/staff/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "x" * 16)
    page.fill("#id_otp_token", totp_code(totp_device(user)))
    page.click("button[type=submit]")


def race(attempt, n=2):
    """Run `attempt` in n threads released together (each on its own database
    connection, closed after); return what each returned or raised."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = attempt()
        except Exception as exc:  # noqa: BLE001 - collected and asserted on by the caller
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def pdf_text(data: bytes) -> str:
    """The text of a PDF (a letter), every page, as pypdf reads it back."""
    from pypdf import PdfReader

    assert data.startswith(b"%PDF-"), data[:20]
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
