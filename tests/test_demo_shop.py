"""The demo shop database (requests_app/demo/shop.py) and its dataset map
(shop_map.yaml): the map matches the schema, uses real fideslang categories and
reaches every table; the data has ~20 rows per subject, exact-match hard cases, and
the PostgreSQL server-side path builds the same structure as the Faker path."""

import os
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
import yaml
from fideslang.default_taxonomy import DEFAULT_TAXONOMY

from requests_app.demo import shop
from tests.conftest import scratch_database

MAP_PATH = Path(shop.__file__).with_name("shop_map.yaml")
CATEGORIES = {c.fides_key for c in DEFAULT_TAXONOMY.data_category}
SUBJECTS = 200


def _postgres_url() -> str | None:
    """The maintenance database of the server DATABASE_URL names (under `make test`,
    the database in DATABASE_URL itself is created by pytest-django only later)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    url = url.rsplit("/", 1)[0] + "/postgres"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return None
    return url


PG_URL = _postgres_url()


@pytest.fixture(scope="module")
def shop_map() -> dict:
    return yaml.safe_load(MAP_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sqlite_shop(tmp_path_factory):
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('shop') / 'shop.sqlite3'}")
    emails = shop.populate(engine, SUBJECTS)
    yield engine, emails
    engine.dispose()


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar()
                for t in shop.TABLES}


def _references(shop_map):
    """(table, column, target table, target column) of every reference in the map."""
    for name, spec in shop_map["tables"].items():
        for ref in spec.get("references") or []:
            to_table, to_column = ref["to"].split(".")
            yield name, ref["column"], to_table, to_column


# --- the map ---------------------------------------------------------------------------


def test_map_names_only_existing_tables_and_columns(sqlite_shop, shop_map):
    engine, _ = sqlite_shop
    inspector = sa.inspect(engine)
    existing = {t: {c["name"] for c in inspector.get_columns(t)}
                for t in inspector.get_table_names()}
    assert set(existing) == set(shop.TABLES)
    assert shop_map["name"] == "demo_shop"
    assert "products" not in shop_map["tables"]    # a catalogue: would link all buyers
    for name, spec in shop_map["tables"].items():
        assert name in existing, name
        named = {spec["primary_key"], *(spec.get("identity") or {}).values(),
                 *(spec.get("columns") or {})}
        named |= {ref["column"] for ref in spec.get("references") or []}
        assert named <= existing[name], (name, named - existing[name])
    for _, _, to_table, to_column in _references(shop_map):
        assert to_table in shop_map["tables"] and to_column in existing[to_table]


def test_map_categories_actions_and_legal_bases(shop_map):
    for name, spec in shop_map["tables"].items():
        assert spec["erase"] in ("delete", "update", "retain"), name
        assert spec.get("columns"), f"{name} lists no personal columns"
        actions = set()
        for column, value in spec["columns"].items():
            category = value if isinstance(value, str) else value["category"]
            action = "null" if isinstance(value, str) else value.get("erase", "null")
            assert category in CATEGORIES, (name, column, category)
            assert action in ("null", "mask", "hash", "retain"), (name, column, action)
            actions.add(action)
        if spec["erase"] == "retain" or (spec["erase"] == "update" and "retain" in actions):
            assert len(spec.get("legal_basis", "").strip()) > 20, f"{name} needs a legal basis"
    payments = shop_map["tables"]["payments"]["columns"]
    assert payments["card_token"] == {"category": "user.authorization.credentials",
                                      "erase": "hash"}
    assert payments["card_last4"]["category"] == "user.financial"


def test_map_is_accepted_by_the_sql_connectors_parser():
    from requests_app.sources.datamap import parse

    parsed = parse(MAP_PATH.read_text(encoding="utf-8"))
    assert set(parsed.tables) == set(shop.PERSONAL_TABLES)


def test_every_table_is_reachable_from_an_identity_table(shop_map):
    neighbours = defaultdict(set)
    for table, _, to_table, _ in _references(shop_map):
        neighbours[table].add(to_table)
        neighbours[to_table].add(table)
    todo = [n for n, spec in shop_map["tables"].items() if spec.get("identity")]
    assert todo == ["customers"]
    reached = set()
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(neighbours[name])
    assert reached == set(shop_map["tables"])


def test_references_that_erasure_clears_accept_null(sqlite_shop, shop_map):
    """A kept row pointing at a deleted one (orders -> addresses) has the link set to NULL."""
    engine, _ = sqlite_shop
    inspector = sa.inspect(engine)
    tables = shop_map["tables"]
    cleared = [(t, c) for t, c, to_table, _ in _references(shop_map)
               if tables[to_table]["erase"] == "delete" and tables[t]["erase"] != "delete"]
    assert ("orders", "shipping_address_id") in cleared
    for table, column in cleared:
        info = {c["name"]: c for c in inspector.get_columns(table)}[column]
        assert info["nullable"], f"{table}.{column}"


def test_partner_share_categories_are_fideslang_keys():
    for _, categories, _ in shop.PARTNERS:
        assert set(categories.split(",")) <= CATEGORIES


# --- the data --------------------------------------------------------------------------


def test_about_twenty_rows_per_subject(sqlite_shop):
    engine, emails = sqlite_shop
    counts = _counts(engine)
    assert counts == shop.expected_counts(SUBJECTS)
    assert counts["customers"] == SUBJECTS == len(emails)
    per_subject = sum(counts[t] for t in shop.PERSONAL_TABLES) / SUBJECTS
    assert 15 <= per_subject <= 25, per_subject
    with engine.connect() as conn:
        referred = conn.execute(sa.text(
            "SELECT count(*) FROM customers WHERE referred_by IS NOT NULL")).scalar()
        anonymous = conn.execute(sa.text(
            "SELECT count(*) FROM devices WHERE customer_id IS NULL")).scalar()
        orphans = conn.execute(sa.text(
            "SELECT count(*) FROM web_events e LEFT JOIN devices d ON d.cookie_id = e.cookie_id "
            "WHERE d.id IS NULL")).scalar()
    assert 0.04 * SUBJECTS <= referred <= 0.18 * SUBJECTS
    assert anonymous == SUBJECTS // 10
    assert orphans == 0


def test_schema_has_keys_and_lookup_indexes(sqlite_shop):
    engine, _ = sqlite_shop
    inspector = sa.inspect(engine)
    indexed = {(t, tuple(i["column_names"])) for t in shop.TABLES
               for i in inspector.get_indexes(t)}
    for table, column in (("customers", "email"), ("customers", "phone"),
                          ("customers", "customer_number"), ("devices", "cookie_id"),
                          ("web_events", "cookie_id"), ("orders", "customer_id"),
                          ("chat_messages", "ticket_id"), ("customers", "referred_by")):
        assert (table, (column,)) in indexed, (table, column)
    fks = {(t, tuple(fk["constrained_columns"]), fk["referred_table"])
           for t in shop.TABLES for fk in inspector.get_foreign_keys(t)}
    assert ("customers", ("referred_by",), "customers") in fks
    assert ("web_events", ("cookie_id",), "devices") in fks
    assert ("orders", ("shipping_address_id",), "addresses") in fks


def test_hard_case_emails_exist_exactly_once(sqlite_shop):
    engine, emails = sqlite_shop
    with engine.connect() as conn:
        for email in shop.HARD_CASE_EMAILS + shop.DECOY_EMAILS:
            assert emails.count(email) == 1
            found = conn.execute(sa.select(sa.func.count()).select_from(shop.customers)
                                 .where(shop.customers.c.email == email)).scalar()
            assert found == 1, email
        # The decoys are there to be found by mistake: a LIKE with the raw value
        # matches more than the one person.
        like = conn.execute(sa.select(shop.customers.c.email)
                            .where(shop.customers.c.email.like("o'brien%_test@example.com"))
                            ).scalars().all()
        assert sorted(like) == ["o'brien%_test@example.com", "o'brien.jr.test@example.com"]
    assert "zoë.东@example.com" in shop.HARD_CASE_EMAILS


def test_following_the_map_reaches_only_that_persons_rows(sqlite_shop, shop_map):
    """Walk the references both ways from each hard-case email: every row reached
    belongs to that one customer (referred_by is deliberately not a reference)."""
    engine, _ = sqlite_shop
    metadata = sa.MetaData()
    metadata.reflect(engine, only=list(shop_map["tables"]))
    edges = []
    for table, column, to_table, to_column in _references(shop_map):
        edges += [(table, column, to_table, to_column), (to_table, to_column, table, column)]
    with engine.connect() as conn:
        for email in shop.HARD_CASE_EMAILS:
            person = conn.execute(sa.select(shop.customers.c.id)
                                  .where(shop.customers.c.email == email)).scalar_one()
            seen = defaultdict(set)
            wanted = {("customers", "email"): {email}}
            while wanted:
                found = defaultdict(set)
                for (name, column), values in wanted.items():
                    table = metadata.tables[name]
                    pk = shop_map["tables"][name]["primary_key"]
                    links = {e[1] for e in edges if e[0] == name}
                    cols = [table.c[c] for c in {pk, *links}]
                    for row in conn.execute(sa.select(*cols)
                                            .where(table.c[column].in_(values))).mappings():
                        if row[pk] in seen[name]:
                            continue
                        seen[name].add(row[pk])
                        for link in links:
                            found[(name, link)].add(row[link])
                wanted = defaultdict(set)
                for table, column, to_table, to_column in edges:
                    values = found.get((table, column), set()) - {None}
                    if values:
                        wanted[(to_table, to_column)] |= values
            assert seen["customers"] == {person}, email
            for name in ("addresses", "orders", "devices", "support_tickets"):
                table = metadata.tables[name]
                owners = conn.execute(sa.select(table.c.customer_id).distinct()
                                      .where(table.c.id.in_(seen[name]))).scalars().all()
                assert set(owners) <= {person}, (email, name)
            assert seen["web_events"], "web events are found through devices (two hops)"


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def postgres_engine():
    with scratch_database("demo_shop_test") as dsn:
        url = sa.engine.make_url(dsn).set(drivername="postgresql+psycopg")
        engine = sa.create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.mark.skipif(PG_URL is None, reason="DATABASE_URL is not a reachable PostgreSQL server")
def test_postgres_fast_path(postgres_engine, shop_map):
    subjects = 2_000
    emails = shop.populate(postgres_engine, subjects, fast=True)
    assert len(emails) == shop.SAMPLE and len(set(emails)) == shop.SAMPLE
    assert set(shop.HARD_CASE_EMAILS + shop.DECOY_EMAILS) <= set(emails)
    assert "user2000@example.com" in _all_emails(postgres_engine)
    # The same structure (ids, counts) as the Faker path builds.
    assert _counts(postgres_engine) == shop.expected_counts(subjects)
    inspector = sa.inspect(postgres_engine)
    for name, spec in shop_map["tables"].items():
        columns = {c["name"] for c in inspector.get_columns(name)}
        assert set(spec.get("columns") or {}) <= columns, name
    assert {fk["name"] for fk in inspector.get_foreign_keys("web_events")} == {
        "fk_web_events_cookie_id"}
    assert any(i["unique"] and i["column_names"] == ["email"]
               for i in inspector.get_indexes("customers"))
    with postgres_engine.begin() as conn:
        for email in shop.HARD_CASE_EMAILS + shop.DECOY_EMAILS:
            assert conn.execute(sa.text("SELECT count(*) FROM customers WHERE email = :e"),
                                {"e": email}).scalar() == 1
        # Sequences continue after the loaded ids; statistics were gathered.
        new_id = conn.execute(sa.text(
            "INSERT INTO products (name, price) VALUES ('Gift card', 25) RETURNING id")).scalar()
        assert new_id == shop.PRODUCTS + 1
        estimated = conn.execute(sa.text(
            "SELECT reltuples FROM pg_class WHERE relname = 'customers'")).scalar()
        assert estimated == subjects


def _all_emails(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(shop.customers.c.email)).scalars())
