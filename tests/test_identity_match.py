"""Identity data points matched against a SQL source: one parameterised query,
values compared normalised, only the names of the points come back. The SQL
source's tests run on every engine (SQLite, PostgreSQL, MariaDB: `sql_engine`)."""

import logging

import pytest
import sqlalchemy as sa

from requests_app.models import DataSource
from requests_app.sources.base import IdentityData
from requests_app.sources.http import HttpConnector
from requests_app.sources.identity_match import (
    address_matches,
    name_matches,
    normalise_account,
    normalise_phone,
)
from requests_app.sources.manual import ManualConnector
from requests_app.sources.sql.connector import SqlConnector
from tests.conftest import _PORTAL_SHOP, _PORTAL_SHOP_MAP, engine_ddl, insert_rows

TRICKY = "o'brien%_zoë@example.com"


@pytest.fixture
def portal_shop(sql_engine, monkeypatch, db):
    """Conftest's portal shop (Pat Doe a customer, the email stored in mixed case)
    on each engine, registered as a source."""
    engine = sa.create_engine(sql_engine)
    try:
        with engine.begin() as conn:
            for statement in engine_ddl(_PORTAL_SHOP, sql_engine.engine):
                conn.exec_driver_sql(statement)
            insert_rows(conn, {
                "customers": [(1, "Pat.Doe@example.com", "Pat", "Doe", "(555) 010-0100",
                               "C-1001")],
                "addresses": [(1, 1, "12 Elm Street", "Austin", "73301")]})
    finally:
        engine.dispose()
    monkeypatch.setenv("PORTAL_SHOP_DSN", sql_engine)
    return DataSource.objects.create(name="Shop", kind="sql", connection_env="PORTAL_SHOP_DSN",
                                     dataset_map=_PORTAL_SHOP_MAP)


def test_values_are_compared_normalised():
    assert normalise_phone("(555) 010-0100") == normalise_phone("+1 555.010.0100")
    assert normalise_phone("12") == ""
    assert normalise_account(" c-1001 ") == normalise_account("C1001")
    assert name_matches("Dr. Pat  DOE", ["Pat", "Doe"])
    assert not name_matches("Pat Smith", ["Pat", "Doe"])
    assert not name_matches("Pat", [None, None])
    assert address_matches("12 Elm Street, Austin TX 73301", ["12 Elm Street", "73301"])
    assert not address_matches("14 Elm Street, Austin TX 73301", ["12 Elm Street", "73301"])


def test_a_list_of_guesses_is_not_a_name_or_an_address():
    assert name_matches("Pat Anne Doe", ["Pat", "Doe"])
    guesses = "James Mary Pat John Linda Smith Johnson Doe Brown Jones Garcia Miller"
    assert not name_matches(guesses, ["Pat", "Doe"])
    assert address_matches("12 Elm Street, Apt 4B, Springfield, Illinois, United States of "
                           "America 62701", ["12 Elm Street", "62701"])
    streets = " ".join(str(n) for n in range(1, 60)) + " Elm Oak Main Street 73301 62701"
    assert not address_matches(streets, ["12 Elm Street", "73301"])


@pytest.mark.django_db
def test_a_sql_source_confirms_points_in_one_query_and_never_logs_values(portal_shop, caplog):
    connector = SqlConnector(portal_shop)
    statements = []
    engine = connector.engine

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with engine.connect() as conn:
        connector.tables(conn)  # reflection happens once per process
    sa.event.listen(engine, "before_cursor_execute", record)
    caplog.set_level(logging.DEBUG)
    try:
        points = connector.identity_points(IdentityData(
            email="PAT.DOE@example.com", name="Pat Doe", phone="555 010 0100",
            account_number="c1001", postal_address="12 Elm Street, 73301 Austin"))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert points == {"email", "name", "phone", "account_number", "postal_address"}
    assert len(statements) == 1
    placeholder = "?" if engine.dialect.paramstyle == "qmark" else "%("  # values bound
    assert placeholder in statements[0] and "example.com" not in statements[0]
    assert "Pat" not in caplog.text and "555" not in caplog.text


@pytest.mark.django_db
def test_an_unknown_or_tricky_address_finds_nothing(portal_shop):
    connector = SqlConnector(portal_shop)
    assert connector.identity_points(IdentityData(email=TRICKY, name="Pat Doe")) == set()
    assert connector.identity_points(IdentityData(email="%", name="Pat Doe")) == set()


def test_http_and_manual_sources_offer_no_lookup():
    data = IdentityData(email="pat@example.com")
    assert HttpConnector(DataSource(name="h", kind="http")).identity_points(data) is None
    assert ManualConnector(DataSource(name="m", kind="manual")).identity_points(data) is None
