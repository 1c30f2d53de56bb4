"""The SQL connector against a real database, each test that uses one on every
engine (SQLite, PostgreSQL and MariaDB, the `sql_engine` fixture): traversal, query
counts, erasure, injection-proof matching."""

import pytest
import sqlalchemy as sa
from django.core.exceptions import ValidationError

from requests_app.models import DataSource
from requests_app.rules import withheld_under, withholding_for
from requests_app.sources.base import IdentityData
from requests_app.sources.categories import WITHHELD
from requests_app.sources.datamap import DatasetMapError, parse
from requests_app.sources.fides import from_fides
from requests_app.sources.sql.actions import keyed_hash, mask
from requests_app.sources.sql.connector import SqlConnector
from requests_app.sources.sql.driver import _engine, engine_url


@pytest.fixture
def shop(engine_shop):
    """The test shop on each engine (conftest's engine_shop): (source, engine)."""
    return engine_shop


class Sink:
    def __init__(self):
        self.rows = []

    def write(self, collection, record, categories):
        # As a California request's RecordSink holds values back (sources/records.py).
        held = withheld_under("CA")
        self.rows.append((collection, {k: WITHHELD if withholding_for(held, categories[k])
                                       else v for k, v in record.items()}))


def count_queries(engine):
    statements = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *a: statements.append(statement))
    return statements


@pytest.fixture
def gather(source_run):
    """gather(source, email, **identity): what the connector finds, and the rows."""
    def gather(source, email, **identity):
        sink = Sink()
        outcome = SqlConnector(source).gather(source_run(), IdentityData(email=email, **identity),
                                              sink)
        return outcome, sink.rows
    return gather


def test_gathering_follows_references_both_ways_over_several_hops(shop, gather):
    source, _ = shop
    outcome, rows = gather(source, "pat@example.com")
    tables = sorted({t for t, _ in rows})
    assert tables == ["addresses", "customers", "devices", "events", "orders"]
    # customers -> orders -> addresses (forward), customers <- devices <- events
    # (backward, two hops); each row once.
    assert outcome.result["tables"] == {"customers": 1, "orders": 2, "addresses": 2,
                                        "devices": 1, "events": 2}


def test_a_reference_between_people_is_never_followed(shop, gather):
    """Pat and Sam referred each other (a cycle through customers): finding Pat must
    not find Sam, whose rows erasure would otherwise destroy."""
    source, _ = shop
    _, rows = gather(source, "pat@example.com")
    assert [r["name"] for t, r in rows if t == "customers"] == ["Pat Doe"]
    assert "Sam Roe" not in [r.get("ship_name") for t, r in rows if t == "orders"]


# PostgreSQL and MariaDB send their lookups to the driver itself, past SQLAlchemy's
# events: on MariaDB the server counts them (SQLite's are counted as SQLAlchemy
# sends them).
@pytest.mark.parametrize("sql_engine", ["sqlite", "mariadb"], indirect=True)
def test_one_query_per_table_per_hop(shop, source_run, sql_engine):
    source, engine = shop
    connector = SqlConnector(source)
    connector.warm_up()  # the engine's first connection and reflection: once per process
    statements = count_queries(_engine(engine_url(str(engine.url))))
    selects_before = _server_selects(engine, sql_engine.engine)
    connector.gather(source_run(), IdentityData(email="sam@example.com"), Sink())
    # hop 0: customers; hop 1: orders, devices; hop 2: addresses, events.
    if sql_engine.engine == "mariadb":
        assert _server_selects(engine, "mariadb") - selects_before == 5
        return
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")
               and "sqlite_" not in s]
    assert len(selects) == 5
    not_batched = [s for s in selects if " IN (" not in s]
    assert not not_batched
    assert not any("sam@example.com" in s for s in statements)  # values are bound


def _server_selects(engine, kind: str) -> int | None:
    """SELECTs the MariaDB server has run (every client's: the suite's only one)."""
    if kind != "mariadb":
        return None
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SHOW GLOBAL STATUS LIKE 'Com_select'").one()[1])


def test_identity_values_are_matched_exactly_never_as_patterns(shop, tricky_email, gather):
    source, _ = shop
    outcome, rows = gather(source, tricky_email)
    customers = [r for t, r in rows if t == "customers"]
    assert [c["name"] for c in customers] == ["Ona Brien"]
    outcome, rows = gather(source, "%")
    assert rows == []
    outcome, rows = gather(source, "' OR 1=1 --")
    assert rows == []


def test_never_disclosed_categories_are_withheld(shop, gather):
    source, _ = shop
    _, rows = gather(source, "pat@example.com")
    pat = next(r for t, r in rows if t == "customers" and r["name"] == "Pat Doe")
    assert pat["ssn"] == WITHHELD


def test_erasure_dry_run_changes_nothing_and_says_what_and_why(shop, source_run):
    source, engine = shop
    plan = SqlConnector(source).plan_erasure(source_run(), IdentityData(email="sam@example.com"))
    tables = plan.result["tables"]
    assert tables["orders"]["action"] == "retain"
    assert tables["orders"]["legal_basis"].startswith("Invoices")
    assert tables["addresses"]["action"] == "delete"
    assert tables["orders"]["cleared_references"] == ["address_id"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 3


def test_erasure_deletes_masks_hashes_retains_and_leaves_nothing_to_find(shop, source_run):
    source, engine = shop
    connector, run = SqlConnector(source), source_run()
    identity = IdentityData(email="obrien-zoe@example.com")
    connector.erase(run, identity, {})
    assert connector.remaining(run, identity) == 0
    identity = IdentityData(email="pat@example.com")
    before = connector.remaining(source_run(), identity)
    assert before > 0
    run = source_run()
    connector.erase(run, identity, {})
    with engine.connect() as conn:
        sam = conn.exec_driver_sql("SELECT email, name FROM customers WHERE id = 2").one()
        assert tuple(sam) == ("sam@example.com", "Sam Roe")  # the referral did not spread
        pat = conn.exec_driver_sql("SELECT email, name, phone, ssn, since FROM customers "
                                   "WHERE id = 1").one()
        assert pat.email.startswith("~") and pat.name == "Pxx Dxx"
        assert pat.phone is None and pat.ssn is None and pat.since == "2020-01-01"
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 1  # Sam's
        # Address 10 was Pat's alone and is gone; address 11 is also on Sam's order,
        # so it stays (Sam's data), and only Pat's orders stop pointing at it.
        assert [r[0] for r in conn.exec_driver_sql("SELECT id FROM addresses")] == [11]
        assert conn.exec_driver_sql("SELECT count(*) FROM orders").scalar() == 3  # retained
        assert [r[0] for r in conn.exec_driver_sql(
            "SELECT id FROM orders WHERE address_id IS NOT NULL")] == [102]
    assert connector.remaining(source_run(), identity) == 0


def test_mask_keeps_the_format_and_is_idempotent():
    assert mask("jane.doe@example.com") == "jxxx.dxx@exxxxxx.cxx"
    assert mask("555-012-3456") == "500-000-3000"
    assert mask(mask("Zoë 东京")) == mask("Zoë 东京")
    assert mask(42) is None


def test_keyed_hash_is_stable_fits_and_is_idempotent():
    value = keyed_hash("pat@example.com", 40)
    assert value == keyed_hash("pat@example.com", 40) and len(value) <= 40
    assert keyed_hash(value) == value


@pytest.mark.django_db
def test_a_malformed_map_is_refused_with_line_numbers(shop, shop_map):
    source, _ = shop
    source.dataset_map = shop_map.replace("user.financial\n", "user.money\n")
    with pytest.raises(ValidationError) as info:
        source.full_clean()
    message = str(info.value.message_dict["dataset_map"])
    assert "line 23" in message and "user.money" in message


@pytest.mark.django_db
def test_a_map_naming_a_missing_table_or_column_is_refused(shop, shop_map):
    source, _ = shop
    source.dataset_map = shop_map.replace("  events:", "  evnts:")
    with pytest.raises(ValidationError, match="table `evnts` does not exist"):
        source.full_clean()
    source.dataset_map = shop_map.replace("to: addresses.id", "to: addresses.idx")
    with pytest.raises(ValidationError, match="refers to `addresses.idx`, which does not exist"):
        source.full_clean()
    source.dataset_map = shop_map.replace("ip: user.device.ip_address",
                                          "ipv6: user.device.ip_address")
    with pytest.raises(ValidationError, match="no column `ipv6`"):
        source.full_clean()
    source.dataset_map = shop_map + "    collected_at: seen\n"  # events has no column `seen`
    with pytest.raises(ValidationError, match="no column `seen`"):
        source.full_clean()
    with pytest.raises(DatasetMapError, match="`collected_at` must name the column"):
        parse(shop_map + "    collected_at: [at]\n")
    with pytest.raises(DatasetMapError, match="not for an identity table"):
        parse(shop_map.replace("  customers:\n", "  customers:\n    collected_at: since\n"))


def test_invalid_yaml_is_reported_with_its_line():
    with pytest.raises(DatasetMapError, match="line 3: not valid YAML"):
        parse("tables:\n  customers:\n    primary_key: id: x\n")


def test_a_fides_dataset_is_imported():
    fides = """
dataset:
  - fides_key: postgres_example
    collections:
      - name: customer
        fields:
          - name: id
            fides_meta: {primary_key: true}
          - name: email
            data_categories: [user.contact.email]
            fides_meta: {identity: email}
          - name: name
            data_categories: [user.name]
      - name: address
        fields:
          - name: id
            fides_meta: {primary_key: true}
          - name: customer_id
            fides_meta:
              references:
                - {dataset: postgres_example, field: customer.id, direction: from}
          - name: city
            data_categories: [user.contact.address.city]
"""
    mapped = parse(from_fides(fides))
    assert mapped.tables["customer"].identity == {"email": "email"}
    assert mapped.tables["address"].references[0].to_table == "customer"
    assert mapped.tables["address"].columns["city"].category == "user.contact.address.city"


PEOPLE_MAP = """
tables:
  customers:
    primary_key: id
    identity: {email: email}
    columns: {email: {category: user.contact.email, erase: hash}}
    erase: update
  orders:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
      - {column: address_id, to: addresses.id}
    columns: {total: user.financial}
    erase: retain
    legal_basis: "tax law"
  addresses:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
    columns: {line1: user.contact.address.street}
    erase: delete
"""


def test_a_shared_row_that_belongs_to_someone_else_is_neither_shown_nor_erased(
        sql_engine, monkeypatch, source_run, gather):
    """Pat's order was shipped to Sam's address: it is Sam's data, not Pat's."""
    engine = sa.create_engine(sql_engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql("CREATE TABLE addresses (id INTEGER PRIMARY KEY, "
                             "customer_id INTEGER, line1 TEXT)")
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, "
                             "address_id INTEGER, total REAL)")
        conn.exec_driver_sql("INSERT INTO customers VALUES (1, 'pat@example.com'), "
                             "(2, 'sam@example.com')")
        conn.exec_driver_sql("INSERT INTO addresses VALUES (10, 1, 'Pat St'), (20, 2, 'Sam St')")
        conn.exec_driver_sql("INSERT INTO orders VALUES (100, 1, 20, 9.5)")
    monkeypatch.setenv("PEOPLE_DSN", sql_engine)
    source = DataSource(name="People", kind="sql", connection_env="PEOPLE_DSN",
                        dataset_map=PEOPLE_MAP)
    _, rows = gather(source, "pat@example.com")
    assert [r["line1"] for t, r in rows if t == "addresses"] == ["Pat St"]
    connector, run = SqlConnector(source), source_run()
    connector.erase(run, IdentityData(email="pat@example.com"), {})
    assert connector.remaining(run, IdentityData(email="pat@example.com")) == 0
    with engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql("SELECT line1 FROM addresses")] == ["Sam St"]
    engine.dispose()


def test_the_same_email_erased_twice_in_a_unique_column_does_not_collide(shop, source_run):
    """Pat's account is erased, Pat signs up again with the same email, and is
    erased again: the hashed unique column must not clash with the first row."""
    source, engine = shop
    connector = SqlConnector(source)
    connector.erase(source_run(), IdentityData(email="pat@example.com"), {})
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO customers (id, email, name) "
                             "VALUES (9, 'pat@example.com', 'Pat Again')")
    run = source_run()
    connector.erase(run, IdentityData(email="pat@example.com"), {})
    assert connector.remaining(run, IdentityData(email="pat@example.com")) == 0
    with engine.connect() as conn:
        hashes = [r[0] for r in conn.exec_driver_sql(
            "SELECT email FROM customers WHERE id IN (1, 9)")]
    assert len(set(hashes)) == 2 and all(h.startswith("~") for h in hashes)


def test_leaf_tables_are_deleted_set_based_and_an_interrupted_erasure_resumes(
        shop, monkeypatch, settings, tmp_path, source_run):
    """events (no identity, nobody refers to it, one reference to a unique column) is
    a leaf: erasure deletes it on the server in bounded batches from the cookie
    values, never reading its rows. A worker dying after the first batch leaves the
    rest to the next attempt, which finishes from the same stored plan."""
    from requests_app.sources.sql import erasure

    settings.MEDIA_ROOT = str(tmp_path)
    source, engine = shop
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO events VALUES (72, 'ck-pat', '10.0.0.3'),"
                             "(73, 'ck-pat', '10.0.0.4')")
    connector, run = SqlConnector(source), source_run()
    assert "events" in connector.shape.deletable_leaves(
        connector._run(lambda conn, tables: tables))
    plan = connector.plan_erasure(run, IdentityData(email="pat@example.com"))
    assert plan.result["tables"]["events"]["rows"] == 4
    monkeypatch.setattr(erasure, "LEAF_BATCH", 1)
    monkeypatch.setattr(erasure, "PROGRESS_EVERY", 0)
    recorded = []

    class Killed(Exception):
        pass

    def dies_after_one_batch(progress):
        recorded.append(dict(progress))
        if "events" in progress:
            raise Killed

    identity = IdentityData(email="pat@example.com")
    with pytest.raises(Killed):
        connector.erase(run, identity, {}, on_batch=dies_after_one_batch)
    assert recorded[-1]["events"] == 1
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events "
                                    "WHERE cookie = 'ck-pat'").scalar() == 3
    run.result = {"progress": recorded[-1]}
    outcome = connector.erase(run, identity, {})
    assert outcome.result["tables"]["events"] == 4
    assert connector.remaining(run, identity) == 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM events").scalars().all() == [80]  # Sam's


def test_a_right_to_know_period_keeps_the_rows_collected_in_it(shop, source_run, shop_map):
    """Rows of a table with `collected_at` outside the period asked for are left out
    (its bounds included, a row of no known time kept); the traversal still goes
    through them, and tables without the column are whole."""
    import datetime

    source, engine = shop
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events ADD COLUMN at TEXT")
        conn.exec_driver_sql("UPDATE events SET at = CASE id WHEN 70 THEN '2024-12-31 23:59:59' "
                             "WHEN 71 THEN '2025-06-30 23:59:59' END")
        conn.exec_driver_sql("INSERT INTO events VALUES (72, 'ck-pat', '10.0.0.3', NULL),"
                             "(73, 'ck-pat', '10.0.0.4', '2025-01-01T00:00:00+00:00')")
    source.dataset_map = shop_map + "    collected_at: at\n"
    connector = SqlConnector(source)
    everything = Sink()
    outcome = connector.gather(source_run(), IdentityData(email="pat@example.com"), everything)
    assert outcome.result["tables"]["events"] == 4 and "outside_period" not in outcome.result

    sink = Sink()
    outcome = connector.gather(source_run(datetime.date(2025, 1, 1), datetime.date(2025, 6, 30)),
                               IdentityData(email="pat@example.com"), sink)
    assert sorted(r["ip"] for t, r in sink.rows if t == "events") == [
        "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert outcome.result["tables"] == {"customers": 1, "orders": 2, "addresses": 2,
                                        "devices": 1, "events": 3}
    assert outcome.result["outside_period"] == {"events": 1}
    assert outcome.result["period"] == ["2025-01-01", "2025-06-30"]
    assert outcome.records == 9


def test_a_dated_row_is_judged_by_its_own_date_even_under_an_old_row(shop, source_run, shop_map):
    """A device first seen before the period is left out, but its events of the
    period are shown (each dated table judges its own rows)."""
    import datetime

    source, engine = shop
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE devices ADD COLUMN first_seen TEXT")
        conn.exec_driver_sql("UPDATE devices SET first_seen = '2020-01-01'")
        conn.exec_driver_sql("ALTER TABLE events ADD COLUMN at TEXT")
        conn.exec_driver_sql("UPDATE events SET at = CASE id WHEN 70 THEN '2020-02-01' "
                             "ELSE '2025-02-01' END")
    source.dataset_map = (
        shop_map.replace("  devices:\n", "  devices:\n    collected_at: first_seen\n")
        + "    collected_at: at\n")
    sink = Sink()
    outcome = SqlConnector(source).gather(
        source_run(datetime.date(2025, 1, 1), datetime.date(2025, 12, 31)),
        IdentityData(email="pat@example.com"), sink)
    assert [r["ip"] for t, r in sink.rows if t == "events"] == ["10.0.0.2"]
    assert not [r for t, r in sink.rows if t == "devices"]
    assert outcome.result["outside_period"] == {"devices": 1, "events": 1}


def test_columns_the_map_does_not_name_are_not_needed(shop, shop_map, gather):
    """A lookup reads the mapped columns and the columns references follow (here
    devices.cookie, not listed under `columns`); an unmapped unique column (a
    username) is neither read nor needed."""
    source, engine = shop
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE customers ADD COLUMN username TEXT")
        conn.exec_driver_sql("CREATE UNIQUE INDEX customers_username ON customers (username)")
    source.dataset_map = shop_map.replace("      cookie: user.device.cookie_id\n", "")
    assert "cookie: user.device" not in source.dataset_map
    outcome, rows = gather(source, "pat@example.com")
    assert outcome.result["tables"] == {"customers": 1, "orders": 2, "addresses": 2,
                                        "devices": 1, "events": 2}
    assert all("username" not in r for t, r in rows)


def test_rows_reached_only_through_a_row_outside_the_period_are_left_out(
        shop, source_run, shop_map):
    """An old order is left out with what is reached only through it (the address
    it was shipped to); an address a kept order also reaches stays."""
    import datetime

    source, engine = shop
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE orders ADD COLUMN placed TEXT")
        conn.exec_driver_sql("UPDATE orders SET placed = CASE id WHEN 100 THEN '2020-05-01' "
                             "ELSE '2025-05-01' END")
    source.dataset_map = shop_map.replace("  orders:\n", "  orders:\n    collected_at: placed\n")
    sink = Sink()
    outcome = SqlConnector(source).gather(
        source_run(datetime.date(2025, 1, 1), datetime.date(2025, 12, 31)),
        IdentityData(email="pat@example.com"), sink)
    assert sorted((t, r.get("city")) for t, r in sink.rows if t in ("orders", "addresses")) == [
        ("addresses", "Dallas"), ("orders", None)]
    assert outcome.result["outside_period"] == {"orders": 1}
    assert outcome.result["tables"]["orders"] == 1 and outcome.result["tables"]["addresses"] == 1


@pytest.mark.django_db
def test_the_period_is_the_one_the_request_asked_for():
    import datetime

    from django.utils import timezone

    from requests_app.models import PrivacyRequest, SourceRun, VerificationEvidence
    from requests_app.sources.base import collection_period
    from tests.conftest import file_request

    request = file_request(jurisdiction="CA")  # California: a period may apply
    assert collection_period(SourceRun(request=request)) is None  # no evidence
    VerificationEvidence.objects.create(request=request, submission="s")
    request = PrivacyRequest.objects.get(pk=request.pk)
    assert collection_period(SourceRun(request=request)) is None  # no period asked for
    VerificationEvidence.objects.filter(request=request).update(
        period_start=datetime.date(2024, 3, 1), period_end=datetime.date(2025, 2, 28))
    request = PrivacyRequest.objects.get(pk=request.pk)
    assert collection_period(SourceRun(request=request)) == (
        datetime.date(2024, 3, 1), datetime.date(2025, 2, 28))
    VerificationEvidence.objects.filter(request=request).update(period_end=None)
    request = PrivacyRequest.objects.get(pk=request.pk)  # no last day: up to the receipt
    assert collection_period(SourceRun(request=request)) == (
        datetime.date(2024, 3, 1), timezone.localdate(request.received_at))


def test_collection_times_are_read_in_the_portals_time_zone(settings):
    import datetime
    import zoneinfo

    from requests_app.sources.base import in_period, period_bounds

    settings.TIME_ZONE = "America/New_York"
    year = (datetime.date(2025, 1, 1), datetime.date(2025, 12, 31))
    utc = datetime.timezone.utc
    assert not in_period(datetime.datetime(2025, 1, 1, 3, tzinfo=utc), year)  # Dec 31 there
    assert in_period(datetime.datetime(2026, 1, 1, 3, tzinfo=utc), year)  # still Dec 31
    assert not in_period("2025-01-01T03:00:00+00:00", year)
    assert in_period("2025-01-01 03:00:00", year)  # no zone: a local time as stored
    assert in_period(datetime.date(2025, 12, 31), year)
    assert not in_period(datetime.date(2026, 1, 1), year)
    assert in_period(None, year) and in_period("yesterday", year)  # unknown: kept
    first, after = period_bounds(year, aware=True)
    new_york = zoneinfo.ZoneInfo("America/New_York")
    assert (first, after) == (datetime.datetime(2025, 1, 1, tzinfo=new_york),
                              datetime.datetime(2026, 1, 1, tzinfo=new_york))
    assert period_bounds(year, aware=False) == (year[0], datetime.date(2026, 1, 1))


def test_a_column_added_while_the_worker_runs_is_seen_and_a_dropped_one_named(
        shop, source_run, shop_map):
    """Tables are reflected once per process: again when the map names a column the
    reflection lacks, or when a column it has is gone; a mapped column that is gone
    is a clear error, not a crash. Columns the map does not name are never read."""
    import datetime

    from requests_app.sources.base import SourceError, TransientSourceError

    source, engine = shop
    pat = IdentityData(email="pat@example.com")
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events ADD COLUMN note TEXT")  # not in the map
    SqlConnector(source).gather(source_run(), pat, Sink())
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events DROP COLUMN note")  # nothing reads it
        conn.exec_driver_sql("ALTER TABLE events ADD COLUMN at TEXT")
        conn.exec_driver_sql("UPDATE events SET at = '2020-01-01' WHERE id = 70")
    source.dataset_map = shop_map + "    collected_at: at\n"
    outcome = SqlConnector(source).gather(
        source_run(datetime.date(2025, 1, 1), datetime.date(2025, 12, 31)), pat, Sink())
    assert outcome.result["outside_period"] == {"events": 1}  # `at` was read
    with engine.begin() as conn:  # dropped while the map still names it
        conn.exec_driver_sql("ALTER TABLE events DROP COLUMN at")
    with pytest.raises(TransientSourceError):  # what was reflected is forgotten...
        SqlConnector(source).gather(source_run(), pat, Sink())
    with pytest.raises(SourceError, match="table `events` has no column `at`"):  # ...and said
        SqlConnector(source).gather(source_run(), pat, Sink())
    source.dataset_map = shop_map
    assert SqlConnector(source).gather(source_run(), pat, Sink()).result["tables"]["events"] == 2


def test_lookups_past_one_batch_are_split_and_streamed_with_the_same_answer(
        shop, monkeypatch, source_run, gather):
    """More values than one IN-list holds and more rows than one fetch reads (BATCH
    of 1 here): the lookups are split into several statements and read on a
    server-side cursor (MariaDB's and PostgreSQL's), and find the same rows; erasure
    works through the same batches."""
    from requests_app.sources.sql import driver

    monkeypatch.setattr(driver, "BATCH", 1)
    source, engine = shop
    outcome, rows = gather(source, "Pat@Example.com")  # and pat@example.com: two values
    assert outcome.result["tables"] == {"customers": 1, "orders": 2, "addresses": 2,
                                        "devices": 1, "events": 2}
    connector, run = SqlConnector(source), source_run()
    identity = IdentityData(email="pat@example.com")
    assert connector.plan_erasure(run, identity).result["tables"]["events"]["rows"] == 2
    connector.erase(run, identity, {})
    assert connector.remaining(run, identity) == 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM events").scalars().all() == [80]  # Sam's
