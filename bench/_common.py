"""Shared set-up for the benchmarks: environment, Django, the two databases, the
demo shop source, and small measuring helpers.

Every script runs as `.venv/bin/python bench/<name>.py`. With nothing set, the
environment points at the throwaway services of bench/services.sh (PostgreSQL on
127.0.0.1:55440, Redis on 127.0.0.1:55441); run_all.sh sets the same variables.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_PORT = int(os.environ.get("PG_PORT", "55440"))
REDIS_PORT = int(os.environ.get("REDIS_PORT", "55441"))
SERVER = f"postgresql://postgres@127.0.0.1:{PG_PORT}"
SHOP_DB = "shop_bench"
BIG_SHOP = 1_000_000                   # subjects in shop_bench (benchmarks a, b, c)
PORTAL_DB = "portal_bench"
SHOP_ENV = "SHOP_BENCH_DSN"            # the DataSource's connection_env
SOURCE_NAME = "Bench shop"
MAP_PATH = ROOT / "requests_app" / "demo" / "shop_map.yaml"


def _bench_key(label: str) -> str:
    # Fixed, public keys: benchmark data only. Every process of a run (and the
    # Celery worker) derives the same ones.
    return base64.urlsafe_b64encode(hashlib.sha256(f"pp-bench-{label}".encode()).digest()).decode()


DEFAULTS = {
    "DEBUG": "0",
    "SECRET_KEY": "pp-bench-secret-key-not-for-production-" + _bench_key("secret")[:20],
    "FILE_ENCRYPTION_KEY": _bench_key("files"),
    "AUDIT_CHAIN_KEY": _bench_key("audit-chain"),
    "AUDIT_CHECKPOINT_KEY": _bench_key("audit-checkpoints"),
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    "SECURE_SSL_REDIRECT": "0",
    "SECURE_COOKIES": "0",
    "LOG_LEVEL": "WARNING",
    "DATA_DIR": "/tmp/pp-bench-dev/data",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/{PORTAL_DB}",
    "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
    SHOP_ENV: f"{SERVER}/{SHOP_DB}",
    "DJANGO_SETTINGS_MODULE": "privacyportal.settings",
}
for _k, _v in DEFAULTS.items():
    os.environ.setdefault(_k, _v)

_django_ready = False


def ensure_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(migrate: bool = True) -> None:
    """Create the portal database if needed, migrate it (quietly), django.setup()."""
    global _django_ready
    if _django_ready:
        return
    ensure_database(PORTAL_DB)
    Path(os.environ["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    if migrate:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, check=True)
    import django

    django.setup()
    _django_ready = True


def shop_dsn(db: str | None = None) -> str:
    """The DSN of shop database `db`, or the one SHOP_BENCH_DSN names now."""
    return f"{SERVER}/{db}" if db else os.environ[SHOP_ENV]


def use_shop(db: str) -> str:
    """Point SHOP_BENCH_DSN (the DataSource's connection_env) at database `db`, for
    this process and the processes it starts."""
    os.environ[SHOP_ENV] = shop_dsn(db)
    return os.environ[SHOP_ENV]


def shop_engine(dsn: str | None = None):
    """The connector's own engine (requests_app.sources.sql.driver._engine), shared with it."""
    from requests_app.sources.sql.driver import _engine, engine_url

    return _engine(engine_url(dsn or shop_dsn()))


def shop_subjects(dsn: str | None = None) -> int:
    """Subjects populate() loaded into the shop (kept in a table of ours, bench_meta,
    which populate() does not drop: counting customers would be fooled by the
    subjects the benchmarks add and erase), 0 if none."""
    import psycopg

    with psycopg.connect(dsn or shop_dsn()) as conn:
        if not conn.execute("SELECT to_regclass('public.bench_meta')").fetchone()[0]:
            return 0
        if not conn.execute("SELECT to_regclass('public.customers')").fetchone()[0]:
            return 0
        row = conn.execute("SELECT subjects FROM bench_meta").fetchone()
        return row[0] if row else 0


def ensure_shop(subjects: int, db: str | None = None, force: bool = False) -> dict | None:
    """Load shop database `db` (default: the one SHOP_BENCH_DSN names) with `subjects`
    customers unless it already holds exactly that many, then VACUUM ANALYZE it (as
    autovacuum would, soon after: so that autovacuum does not start in the middle of
    a measurement). Returns the load and vacuum times, or None if nothing was done."""
    import psycopg
    from psycopg import sql
    import sqlalchemy as sa

    from requests_app.demo import shop
    from requests_app.sources.sql import driver

    dsn = shop_dsn(db)
    name = dsn.rsplit("/", 1)[1]
    ensure_database(name)
    if not force and shop_subjects(dsn) == subjects:
        return None
    print(f"loading the demo shop into {name}: {subjects:,} subjects ...", flush=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (subjects integer NOT NULL, "
                     "loaded_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("DELETE FROM bench_meta")
    engine = sa.create_engine(driver.engine_url(dsn))
    started = time.perf_counter()
    try:
        shop.populate(engine, subjects, fast=True)
    finally:
        engine.dispose()
    loaded = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in shop.TABLES)))
        conn.execute("INSERT INTO bench_meta (subjects) VALUES (%s)", (subjects,))
    vacuumed = time.perf_counter() - started - loaded
    print(f"loaded in {loaded:.1f} s, vacuumed in {vacuumed:.1f} s", flush=True)
    # The connector caches reflected tables per process: a reload recreates them.
    driver._REFLECTED.clear()
    driver._engine.cache_clear()
    return {"load_seconds": loaded, "vacuum_seconds": vacuumed}


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def table_rows(tables=None) -> dict[str, int]:
    import psycopg
    from psycopg import sql

    from requests_app.demo import shop

    with psycopg.connect(shop_dsn()) as conn:
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
                .fetchone()[0]
                for t in (tables or shop.TABLES)}


def shop_source(save: bool = True, env: str = SHOP_ENV):
    """The demo shop as a DataSource of the portal (the only enabled source); with
    save=False an unsaved one (enough for a connector), reading its DSN from `env`."""
    from requests_app.models import DataSource

    fields = {"kind": "sql", "connection_env": env, "dataset_map": MAP_PATH.read_text(),
              "enabled": True}
    if not save:
        return DataSource(name=SOURCE_NAME, **fields)
    DataSource.objects.exclude(name=SOURCE_NAME).update(enabled=False)
    source, created = DataSource.objects.get_or_create(name=SOURCE_NAME, defaults=fields)
    if not created:
        for k, v in fields.items():
            setattr(source, k, v)
        source.save()
    return source


def manager():
    """A staff user with the Privacy Manager role (approves requests)."""
    from django.contrib.auth.models import Group, User

    from requests_app.roles import sync_roles

    user = User.objects.filter(username="bench-manager").first()
    if user is None:
        user = User.objects.create_user("bench-manager", "bench-manager@staff.example",
                                        "bench-password-x1", is_staff=True)
    if not Group.objects.filter(name="Privacy Manager").exists():
        sync_roles()
    user.groups.add(Group.objects.get(name="Privacy Manager"))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def file_request(email: str, request_type: str, state: str | None = None,
                 name: str = "Bench Subject"):
    """As tests/conftest.py file_request: the real use case, then the state set
    directly. Tasks run eagerly while filing (the 'received' notice goes to the
    locmem outbox), as in the test suite."""
    from privacyportal.celery import app
    from requests_app.models import Actor, PrivacyRequest
    from requests_app.services.requests.filing import NewRequest, do_receive_request

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        request = do_receive_request(
            NewRequest(request_type=request_type, jurisdiction="VA", channel="web",
                       name=name, email=email),
            actor=Actor.consumer())
    finally:
        app.conf.task_always_eager = eager
    if state is not None:
        PrivacyRequest.objects.filter(pk=request.pk).update(state=state)
        request.refresh_from_db()
    return request


def record_sink(run):
    """A RecordSink for `run` (anything with a .token), whichever of its signatures
    the tree has: RecordSink(run) or RecordSink(run, attempt, on_progress=None)."""
    import inspect

    from requests_app.sources.records import RecordSink

    if "attempt" in inspect.signature(RecordSink).parameters:
        return RecordSink(run, 1)
    return RecordSink(run)


# --- bench subjects -------------------------------------------------------------


def make_subject(email: str, events: int, tag: str) -> dict:
    """A customer with 2 devices and `events` web events (plus marketing preferences).
    Replaces an earlier one with the same email. Returns row counts."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(shop_dsn()) as conn:
        old = conn.execute("SELECT id FROM customers WHERE email = %s", (email,)).fetchone()
        if old:
            cid = old[0]
            conn.execute("DELETE FROM web_events WHERE cookie_id IN "
                         "(SELECT cookie_id FROM devices WHERE customer_id = %s)", (cid,))
            for table in ("devices", "marketing_preferences", "addresses", "support_tickets",
                          "product_reviews", "partner_shares"):
                conn.execute(sql.SQL("DELETE FROM {} WHERE customer_id = %s").format(
                    sql.Identifier(table)), (cid,))
            conn.execute("DELETE FROM customers WHERE id = %s", (cid,))
        cid = conn.execute(
            "INSERT INTO customers (customer_number, email, first_name, last_name, phone, "
            "created_at) VALUES (%s, %s, 'Bench', 'Subject', NULL, now()) RETURNING id",
            ("B-" + hashlib.md5(tag.encode()).hexdigest()[:16], email)).fetchone()[0]
        conn.execute("INSERT INTO marketing_preferences (customer_id, email_opt_in, sms_opt_in, "
                     "updated_at) VALUES (%s, true, false, now())", (cid,))
        cookies = [f"bench-{tag}-cookie-{k}" for k in (1, 2)]
        for cookie in cookies:
            conn.execute("INSERT INTO devices (cookie_id, customer_id, user_agent, first_seen) "
                         "VALUES (%s, %s, 'Mozilla/5.0 (X11; Linux x86_64) Bench/1.0', now())",
                         (cookie, cid))
        per_device = [events // 2, events - events // 2]
        for cookie, n in zip(cookies, per_device):
            conn.execute(
                "INSERT INTO web_events (cookie_id, ip_address, url, occurred_at) "
                "SELECT %s, '203.0.113.' || (g %% 250 + 1), "
                "'https://shop.example.com/products/' || (g %% 250 + 1) || '?ref=bench', "
                "now() - g * interval '1 minute' FROM generate_series(1, %s) g",
                (cookie, n))
    with psycopg.connect(shop_dsn(), autocommit=True) as conn:
        conn.execute("ANALYZE customers, devices, web_events, marketing_preferences")
    return {"customers": 1, "marketing_preferences": 1, "devices": 2, "web_events": events}


# --- measuring ---------------------------------------------------------------------


class TransactionClock:
    """Durations of the connector engine's transactions, split by whether they wrote."""

    def __init__(self, engine):
        import sqlalchemy as sa

        self.engine, self.sa = engine, sa
        self.open: dict[int, tuple[float, bool]] = {}
        self.write: list[float] = []
        self.read: list[float] = []
        self.hooks = {"begin": self._begin, "commit": self._end, "rollback": self._end,
                      "before_cursor_execute": self._statement}
        for name, fn in self.hooks.items():
            sa.event.listen(engine, name, fn)

    def _begin(self, conn):
        self.open[id(conn)] = (time.perf_counter(), False)

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        started, wrote = self.open.get(id(conn), (None, False))
        if started is not None and statement.lstrip()[:6].upper() in ("DELETE", "UPDATE"):
            self.open[id(conn)] = (started, True)

    def _end(self, conn):
        started, wrote = self.open.pop(id(conn), (None, False))
        if started is not None:
            (self.write if wrote else self.read).append(time.perf_counter() - started)

    def close(self):
        for name, fn in self.hooks.items():
            self.sa.event.remove(self.engine, name, fn)


class timed_methods:
    """`with timed_methods(SqlConnector, "gather", "erase") as times:` records how long
    each call of those methods took (times["erase"] == [seconds, ...]), without
    changing what they do: the benchmarks go through the worker's own code path
    (fulfilment.execute_run) and time the connector's part from the outside."""

    def __init__(self, cls, *names):
        self.cls, self.names = cls, names
        self.times: dict[str, list[float]] = {n: [] for n in names}
        self.originals = {}

    def __enter__(self):
        for name in self.names:
            original = self.originals[name] = self.cls.__dict__[name]

            def wrapper(*args, _original=original, _name=name, **kwargs):
                started = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.times[_name].append(time.perf_counter() - started)

            setattr(self.cls, name, wrapper)
        return self.times

    def __exit__(self, *exc):
        for name, original in self.originals.items():
            setattr(self.cls, name, original)


def rss_mb() -> float:
    """Resident set size now (MB), from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak RSS of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (VmHWM) for this process: '5' > clear_refs.
    ru_maxrss is not reset by this, so per-phase peaks are read from VmHWM."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median(values) -> float:
    return statistics.median(values)


def machine() -> dict:
    import psycopg

    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(f"{SERVER}/postgres") as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"nproc": os.cpu_count(), "ram_gib": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "postgresql": pg, "python": platform.python_version(),
            "load_average": load_average(), "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def report(name: str, data: dict) -> None:
    """Print the figures as one JSON line (after the human-readable lines) and keep
    them in $BENCH_RESULTS/<name>.json when that is set (run_all.sh sets it)."""
    out = os.environ.get("BENCH_RESULTS")
    text = json.dumps(data, indent=None, default=str)
    print(f"RESULT {name} {text}", flush=True)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"
