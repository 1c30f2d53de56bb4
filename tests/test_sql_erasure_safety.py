"""Erasure never half-done, never blind (issue 13), on a schema the project did not
design: NOT NULL foreign keys, ON DELETE RESTRICT, a table outside the map (stores)
pointing at rows the map deletes, and an address two customers share. Every test
runs on each SQL engine (SQLite, PostgreSQL and MariaDB: the suite's `sql_engine`),
against the real database through the real connector."""

import os

import pytest
import sqlalchemy as sa
from django.core.exceptions import ValidationError

from requests_app.models import DataSource
from requests_app.sources.base import IdentityData, SourceError
from requests_app.sources.sql import erasure
from requests_app.sources.sql.connector import SqlConnector
from requests_app.sources.sql.driver import engine_url

PAT, KIM = "pat@example.com", "kim@example.com"

DEPOT_MAP = """
name: depot
tables:
  customers:
    primary_key: id
    identity: {email: email}
    references:
      - {column: address_id, to: addresses.id}
    columns:
      email: {category: user.contact.email, erase: hash}
      name: {category: user.name, erase: mask}
    erase: update
    legal_basis: "The pseudonymised account stays with the retained orders"
  addresses:
    primary_key: id
    columns:
      line1: user.contact.address.street
      city: user.contact.address.city
    erase: delete
  orders:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
      - {column: ship_to, to: addresses.id}
    columns:
      total: user.financial
    erase: retain
    legal_basis: "Invoices kept seven years for tax law"
  notes:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
    columns:
      body: user.content.private
    erase: delete
"""


def depot_metadata() -> sa.MetaData:
    """customers -> addresses (NOT NULL), orders -> customers (NOT NULL) and ->
    addresses, notes -> customers (NOT NULL), stores -> addresses (NOT NULL, and
    outside the map): every foreign key named and ON DELETE RESTRICT."""
    md = sa.MetaData()

    def key():
        return sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)

    def fk(column, target, name, nullable=False):
        return (sa.Column(column, sa.Integer, nullable=nullable),
                sa.ForeignKeyConstraint([column], [target], name=name, ondelete="RESTRICT"))

    sa.Table("addresses", md, key(), sa.Column("line1", sa.String(100), nullable=False),
             sa.Column("city", sa.String(50)))
    sa.Table("customers", md, key(), sa.Column("email", sa.String(254), nullable=False),
             sa.Column("name", sa.String(100), nullable=False),
             *fk("address_id", "addresses.id", "customers_address_fk"),
             sa.UniqueConstraint("email", name="customers_email_key"))
    sa.Table("orders", md, key(), *fk("customer_id", "customers.id", "orders_customer_fk"),
             *fk("ship_to", "addresses.id", "orders_ship_to_fk", nullable=True),
             sa.Column("total", sa.Numeric(10, 2)))
    sa.Table("notes", md, key(), *fk("customer_id", "customers.id", "notes_customer_fk"),
             sa.Column("body", sa.Text, nullable=False), sa.Column("topic", sa.String(20)))
    sa.Table("stores", md, key(), sa.Column("name", sa.String(100), nullable=False),
             *fk("address_id", "addresses.id", "stores_address_fk"))
    return md


ROWS = {
    "addresses": [(2, "1 Store Plaza", "Austin"), (3, "3 Pat Lane", "Austin"),
                  (4, "4 Sam Road", "Dallas"), (5, "5 Shared Court", "Austin"),
                  (6, "6 Kim Close", "Waco")],
    # Pat and Jo live at the same address (5); Kim alone at 6.
    "customers": [(1, PAT, "Pat Doe", 5), (2, "sam@example.com", "Sam Roe", 4),
                  (3, "jo@example.com", "Jo Doe", 5), (4, KIM, "Kim Lee", 6)],
    # Pat's order 100 went to Pat's own address 3, order 101 to the store (2).
    "orders": [(100, 1, 3, 25), (101, 1, 2, 10), (102, 2, 4, 5), (103, 4, None, 7)],
    "notes": [(1, 1, "Pat called", "x"), (2, 1, "Pat wrote", "x"), (3, 2, "Sam called", "x"),
              (4, 4, "Kim called", "x")],
    "stores": [(1, "Depot Austin", 2)],
}


def load_depot(dsn: str) -> sa.Engine:
    engine = sa.create_engine(engine_url(dsn))
    md = depot_metadata()
    md.create_all(engine)
    with engine.begin() as conn:
        for table in md.sorted_tables:
            names = [c.name for c in table.columns]
            conn.execute(table.insert(), [dict(zip(names, row)) for row in ROWS[table.name]])
    return engine


@pytest.fixture
def depot(sql_engine, tmp_path, settings, monkeypatch):
    """(the depot's DataSource, unsaved; its engine) on each engine (SQLite,
    PostgreSQL, MariaDB: the suite's `sql_engine`)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    engine = load_depot(str(sql_engine))
    monkeypatch.setenv("DEPOT_DSN", str(sql_engine))
    yield DataSource(name="Depot", kind="sql", connection_env="DEPOT_DSN",
                     dataset_map=DEPOT_MAP), engine
    engine.dispose()


def dump(engine) -> dict:
    with engine.connect() as conn:
        return {name: sorted(tuple(r) for r in conn.execute(
                    sa.text(f"SELECT * FROM {name}")))  # constant names: a test's dump
                for name in ROWS}


def ids(engine, table) -> list:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(sa.column("id")).select_from(
            sa.table(table))).scalars())


# --- 1. validation at save, against the live database ------------------------------


def test_the_depot_map_is_valid_although_a_kept_row_points_at_a_shared_row_not_null(depot):
    """customers.address_id is NOT NULL: the pseudonymised row keeps its link to a
    shared address (said in the dry run) instead of the map being refused."""
    source, _ = depot
    assert SqlConnector(source).check() == []


def test_a_key_that_is_not_unique_is_refused_at_save_naming_source_table_and_column(depot):
    source, _ = depot
    source.dataset_map = DEPOT_MAP.replace(
        "  notes:\n    primary_key: id", "  notes:\n    primary_key: topic")
    problems = SqlConnector(source).check()
    assert any("Depot" in p and "`notes`" in p and "`topic`" in p and "not unique" in p
               for p in problems), problems


def test_erase_null_on_a_not_null_column_is_refused_at_save(depot):
    source, _ = depot
    source.dataset_map = DEPOT_MAP.replace("name: {category: user.name, erase: mask}",
                                           "name: {category: user.name, erase: null}")
    problems = SqlConnector(source).check()
    assert any("Depot" in p and "`customers`" in p and "`name`" in p and "NOT NULL" in p
               for p in problems), problems


def test_deleting_rows_a_table_outside_the_map_needs_is_refused_at_save(depot):
    """orders left out of the map, customers deleted: orders_customer_fk would break."""
    source, _ = depot
    start, end = DEPOT_MAP.index("  orders:"), DEPOT_MAP.index("  notes:")
    source.dataset_map = (DEPOT_MAP[:start] + DEPOT_MAP[end:]).replace(
        "erase: update\n    legal_basis: \"The pseudonymised account stays with the "
        "retained orders\"", "erase: delete")
    problems = SqlConnector(source).check()
    assert any("Depot" in p and "`orders`" in p and "`customer_id`" in p
               and "orders_customer_fk" in p for p in problems), problems
    with pytest.raises(ValidationError) as raised:
        source.clean()  # what saving in the admin runs
    assert "orders_customer_fk" in str(raised.value.message_dict["dataset_map"])


def test_a_foreign_key_the_map_does_not_declare_between_kept_and_deleted_rows_is_refused(depot):
    source, _ = depot
    source.dataset_map = DEPOT_MAP.replace("      - {column: ship_to, to: addresses.id}\n", "")
    problems = SqlConnector(source).check()
    assert any("`orders`" in p and "`ship_to`" in p and "orders_ship_to_fk" in p
               for p in problems), problems


# --- shared rows found from the database's own foreign keys; what stays linked ------


def test_a_row_a_table_outside_the_map_points_at_is_shared_and_never_erased(depot, source_run):
    """Pat's order 101 went to the store's address (2): stores, outside the map,
    point at it. The dry run keeps it as shared and says who else uses it; the
    erasure leaves it and the store, and clears only Pat's order's link to it."""
    source, engine = depot
    connector, identity = SqlConnector(source), IdentityData(email=PAT)
    plan = connector.plan_erasure(source_run(), identity).result["tables"]
    assert plan["addresses"]["rows"] == 1  # Pat's own address 3
    assert plan["addresses"]["kept_shared"] == 2  # the store's (2) and Jo's (5)
    assert plan["addresses"]["shared_with"] == ["customers", "stores"]
    run = source_run()
    connector.erase(run, identity, {})
    assert connector.remaining(run, identity) == 0
    assert ids(engine, "addresses") == [2, 4, 5, 6]
    assert ids(engine, "stores") == [1]
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT id, ship_to FROM orders")).all()) == {
            100: None, 101: None, 102: 4, 103: None}


def test_a_pseudonymised_row_that_keeps_pointing_at_a_shared_row_says_so(depot, source_run):
    """customers.address_id is NOT NULL: Pat's pseudonymised row keeps pointing at
    the address Pat shares with Jo. The dry run and the outcome say so."""
    source, engine = depot
    connector, identity = SqlConnector(source), IdentityData(email=PAT)
    plan = connector.plan_erasure(source_run(), identity).result["tables"]
    assert plan["customers"]["stays_linked"] == [
        {"column": "address_id", "to": "addresses", "rows": 1, "reason": "NOT NULL"}]
    assert "address_id" not in plan["customers"].get("cleared_references", [])
    run = source_run()
    outcome = connector.erase(run, identity, {})
    assert outcome.result["done"]["customers"]["stays_linked"] == plan["customers"]["stays_linked"]
    with engine.connect() as conn:
        email, name, address = conn.execute(sa.text(
            "SELECT email, name, address_id FROM customers WHERE id = 1")).one()
    assert email.startswith("~") and name == "Pxx Dxx" and address == 5


# --- 3. a dry run that proves the erasure -------------------------------------------


def test_the_dry_run_executes_the_erasure_and_rolls_it_back_with_exact_counts(depot, source_run):
    source, engine = depot
    before = dump(engine)
    plan = SqlConnector(source).plan_erasure(source_run(), IdentityData(email=PAT))
    tables = plan.result["tables"]
    assert {n: (t["action"], t["rows"]) for n, t in tables.items()} == {
        "notes": ("delete", 2), "orders": ("retain", 2), "addresses": ("delete", 1),
        "customers": ("update", 1)}
    assert plan.result["proven"] is True  # the statements ran, then were rolled back
    assert dump(engine) == before


def test_a_constraint_failure_appears_in_the_dry_run_in_words_and_nothing_changes(
        depot, source_run):
    """Kim's address (6) is Kim's alone, but Kim's kept customer row points at it
    through a NOT NULL column: deleting it breaks customers_address_fk. The dry run
    says so before anyone approves, naming table, column and constraint, and never
    a personal value; the statements before it are rolled back."""
    source, engine = depot
    before = dump(engine)
    with pytest.raises(SourceError) as raised:
        SqlConnector(source).plan_erasure(source_run(), IdentityData(email=KIM))
    message = str(raised.value)
    assert "Depot" in message and "`addresses`" in message
    assert "customers_address_fk" in message and "address_id" in message
    assert "Kim" not in message and KIM not in message and "6 Kim Close" not in message
    assert "IntegrityError)" not in message
    assert dump(engine) == before


# --- 4. the approval bound to the plan ----------------------------------------------


def test_erasure_runs_only_the_plan_it_was_approved_with(depot, source_run):
    source, engine = depot
    connector, identity = SqlConnector(source), IdentityData(email=PAT)
    plan = connector.plan_erasure(source_run(), identity).result
    assert len(plan["digest"]) == 64 and len(plan["map_version"]) == 64
    approved = {**plan, "approved_digest": plan["digest"]}
    # A note added for Pat since the dry run: beyond the plan.
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO notes VALUES (9, 1, 'Pat again', 'x')"))
    before = dump(engine)
    with pytest.raises(SourceError, match="new dry run"):
        connector.erase(source_run(), identity, approved)
    assert dump(engine) == before
    # The map edited since the dry run.
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM notes WHERE id = 9"))
    edited = DataSource(name="Depot", kind="sql", connection_env="DEPOT_DSN",
                        dataset_map=DEPOT_MAP.replace("body: user.content.private",
                                                      "body: user.content"))
    with pytest.raises(SourceError, match="map was edited since the dry run"):
        SqlConnector(edited).erase(source_run(), identity, approved)
    assert dump(engine) == {**before, "notes": [r for r in before["notes"] if r[0] != 9]}
    run = source_run()
    outcome = connector.erase(run, identity, approved)
    assert outcome.result["done"]["notes"] == {"action": "delete", "rows": 2}
    assert connector.remaining(run, identity) == 0


# --- 5. never half-done without saying so -------------------------------------------


def test_a_failed_erasure_says_what_it_applied_in_words_and_resumes_after_a_fix(
        depot, source_run, monkeypatch):
    """A store opens at Pat's address (3) while Pat's erasure runs: deleting it now
    breaks stores_address_fk. The run stops naming table, column and constraint,
    the batches already applied are recorded, and after the fix (the store moves)
    the same run resumes from there and finishes."""
    source, engine = depot
    monkeypatch.setattr(erasure, "PROGRESS_EVERY", 0)
    connector, identity = SqlConnector(source), IdentityData(email=PAT)
    recorded = []

    def a_store_opens(progress):
        recorded.append(dict(progress))
        with engine.begin() as conn:
            if not conn.execute(sa.text("SELECT count(*) FROM stores WHERE id = 2")).scalar():
                conn.execute(sa.text("INSERT INTO stores VALUES (2, 'Depot Lane', 3)"))

    run = source_run()
    with pytest.raises(SourceError) as raised:
        connector.erase(run, identity, {}, on_batch=a_store_opens)
    message = str(raised.value)
    assert "`addresses`" in message and "stores_address_fk" in message
    assert "3 Pat Lane" not in message and PAT not in message
    assert "applied before the failure:" in message
    applied = message.split("applied before the failure:")[1]
    assert "notes delete 2 rows" in applied and "orders clear ship_to 2 rows" in applied
    assert "customers update 1 rows" in applied and "addresses" not in applied
    assert recorded[-1] == {"notes": 2, "orders": 2, "customers": 1}
    assert ids(engine, "notes") == [3, 4]  # those batches were committed
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE stores SET address_id = 2 WHERE id = 2"))
    run.result = {"progress": recorded[-1]}
    outcome = connector.erase(run, identity, {})
    assert outcome.result["done"]["addresses"] == {"action": "delete", "rows": 1}
    assert connector.remaining(run, identity) == 0
    assert ids(engine, "addresses") == [2, 4, 5, 6]


def test_database_errors_in_erasure_never_carry_personal_values(depot, source_run):
    """A map that sets a NOT NULL column to NULL (refused at save; the database may
    change after) fails in the dry run naming table, column and constraint."""
    source, _ = depot
    source.dataset_map = DEPOT_MAP.replace("name: {category: user.name, erase: mask}",
                                           "name: {category: user.name, erase: null}")
    with pytest.raises(SourceError) as raised:
        SqlConnector(source).plan_erasure(source_run(), IdentityData(email=PAT))
    message = str(raised.value)
    assert "`customers`" in message and "name" in message and "NOT NULL" in message
    assert "Pat" not in message and os.environ["DEPOT_DSN"] not in message
