"""Bad input (issue 13): a malformed map, an unknown category, an identity type no
source holds, a database that refuses the connection or the statement. Each is
walked through the paths a user takes (the model's validation, the admin's form,
the Fides importer, a request approved and fulfilled by the worker's tasks, the
desk) against real PostgreSQL and MariaDB: a clear message naming the source and
the place, nothing written, nothing lost, the request in needs-attention with the
words on the desk, and never a 500."""

import contextlib
import os
import secrets

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils.html import escape

from requests_app.models import Actor, DataSource, SourceRun, State
from requests_app.services.requests.lifecycle import do_transition
from requests_app.sources.sql.errors import in_words
from tests.conftest import PAT, _forget_engines, approved, committed, staff_login

pytestmark = pytest.mark.django_db

ENV = "BAD_INPUT_DSN"
SERVERS = ["postgresql", "mariadb"]  # the engines with a server to refuse

MAP = """name: company
identity_types: {loyalty_id: Loyalty card number}
tables:
  customers:
    primary_key: id
    identity: {email: email}
    columns:
      email: {category: user.contact.email, erase: hash}
      name: {category: user.name, erase: mask}
    erase: update
  orders:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
    columns:
      total: user.financial
    erase: delete
"""


def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table("customers", metadata,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("email", sa.String(200)), sa.Column("name", sa.String(100)),
             sa.Column("card_no", sa.String(40)))
    sa.Table("orders", metadata,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
             sa.Column("total", sa.Integer))
    return metadata


ROWS = {"customers": [{"id": 1, "email": PAT, "name": "Pat Doe", "card_no": "L-1"},
                      {"id": 2, "email": "sam@example.com", "name": "Sam Roe",
                       "card_no": "L-2"}],
        "orders": [{"id": 10, "customer_id": 1, "total": 25},
                   {"id": 11, "customer_id": 1, "total": 10},
                   {"id": 20, "customer_id": 2, "total": 5}]}


class Company:
    """A company database on one engine, and the SQL source that maps it."""

    def __init__(self, url, monkeypatch):
        self.url, self.monkeypatch = url, monkeypatch
        self.engine = sa.create_engine(url)
        self.metadata = _metadata()
        self.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for table in self.metadata.sorted_tables:
                conn.execute(table.insert(), ROWS[table.name])
        self.use(url)
        self.before = self.state(*self.metadata.tables)

    def use(self, dsn: str) -> None:
        """Point the source at this DSN (as an administrator would, in the environment)."""
        self.monkeypatch.setenv(ENV, str(dsn))

    def dsn(self, **parts) -> str:
        """The database's URL with some parts changed (port, username, password)."""
        return sa.engine.make_url(self.url).set(**parts).render_as_string(hide_password=False)

    def source(self, dataset_map: str = MAP, save: bool = True) -> DataSource:
        source = DataSource(name="Company", kind="sql", connection_env=ENV,
                            dataset_map=dataset_map)
        if save:
            source.full_clean()
            source.save()
        return source

    def state(self, *names) -> dict:
        """Every row of these tables (default: all), sorted."""
        with self.engine.connect() as conn:
            return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)))
                    for t in self.metadata.sorted_tables if t.name in (names or self.before)}

    def execute(self, statement: str) -> None:
        """Fixed DDL or GRANTs of the test's own, run by the database's owner."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(statement)

    def quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)


@pytest.fixture
def company(sql_engine, monkeypatch, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    made = Company(sql_engine, monkeypatch)
    made.kind = sql_engine.engine
    yield made
    made.engine.dispose()


@contextlib.contextmanager
def limited_user(company: Company, grants: dict[str, str], password: str = ""):
    """A database user of the test's own with only these privileges ({table: "SELECT,
    UPDATE"}); yields its DSN. Dropped afterwards."""
    name = f"pp_limited_{os.getpid()}_{secrets.token_hex(3)}"
    user = company.quote(name) + ("@'127.0.0.1'" if company.kind == "mariadb" else "")
    if company.kind == "mariadb":
        password = password or secrets.token_hex(8)
        company.execute(f"CREATE USER {user} IDENTIFIED BY '{password}'")
    elif password:  # a member of the group the suite's server asks a password of
        company.execute("DO $$ BEGIN CREATE ROLE pp_password_login NOLOGIN; "
                        "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        company.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}' "
                        "IN ROLE pp_password_login")
    else:
        company.execute(f"CREATE ROLE {user} LOGIN")
    for table, privileges in grants.items():
        company.execute(f"GRANT {privileges} ON {company.quote(table)} TO {user}")
    dsn = company.dsn(username=name, password=password or None)
    try:
        yield dsn
    finally:
        _forget_engines(dsn)
        if company.kind == "mariadb":
            company.execute(f"DROP USER {user}")
        else:
            company.execute(f"DROP OWNED BY {user}")
            company.execute(f"DROP ROLE {user}")


def desk_page(client, request) -> str:
    response = client.get(reverse("staff:desk", args=[request.reference]))
    assert response.status_code == 200
    progress = client.get(reverse("staff:progress", args=[request.reference]))
    assert progress.status_code == 200
    return response.content.decode()


def failed_run(request, action="gather") -> SourceRun:
    request.refresh_from_db()
    assert request.state == State.NEEDS_ATTENTION
    run = request.source_runs.get(action=action)
    assert run.state == "failed"
    return run


def assert_clean(message: str, company: Company, *secrets_) -> None:
    """A message for staff: no stack trace, no personal value, nothing of the DSN."""
    url = sa.engine.make_url(company.url)
    assert "Traceback" not in message and "File \"" not in message
    for value in (PAT, "Pat Doe", "sam@example.com", "L-1", str(url.port), url.host,
                  url.database, *secrets_):
        assert value and value not in message, value


# --- a malformed map, refused at save ------------------------------------------------


def refusal(source: DataSource, field: str = "dataset_map") -> list[str]:
    with pytest.raises(ValidationError) as caught:
        source.full_clean()
    return caught.value.message_dict[field]


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
def test_a_map_that_is_not_yaml_is_refused_at_save_with_source_line_and_message(company):
    broken = MAP.replace("name: {category: user.name, erase: mask}",
                         "name: {category: user.name, erase: mask")
    assert refusal(company.source(broken, save=False)) == [
        "line 10: source `Company`: not valid YAML: expected ',' or '}', but got ':' (while "
        "parsing a flow mapping that starts on line 9)"]
    assert not DataSource.objects.exists()  # nothing written


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
@pytest.mark.parametrize("change, message", [
    (("tables:\n  customers:\n", "tables: [customers, orders]\nold:\n  customers:\n"),
     "line 1: source `Company`: the map needs a `tables:` mapping with at least one table"),
    (("    erase: update", "    erase: shred"),
     "line 10: source `Company`: table `customers`: erase must be one of delete, update, "
     "retain, not `shred`"),
    (("    columns:\n      email", "    columns: [email]\n    colour:\n      email"),
     "line 7: source `Company`: table `customers`: `columns` must be a mapping"),
    (("      - {column: customer_id, to: customers.id}", "      - customer_id"),
     "line 13: source `Company`: table `orders`: a reference needs `column` and "
     "`to: table.column`"),
])
def test_a_map_of_the_wrong_shape_is_refused_at_save_with_source_line_and_message(
        company, change, message):
    messages = refusal(company.source(MAP.replace(*change), save=False))
    assert message in messages
    assert not DataSource.objects.exists()


def test_a_map_naming_a_table_or_column_the_database_lacks_is_refused_on_every_engine(
        company):
    ghost = MAP + "  refunds:\n    primary_key: id\n    references:\n" \
                  "      - {column: order_id, to: orders.id}\n"
    assert refusal(company.source(ghost, save=False)) == [
        "line 18: source `Company`: table `refunds` does not exist in the database"]
    renamed = MAP.replace("name: {category", "full_name: {category")
    assert refusal(company.source(renamed, save=False)) == [
        "line 4: source `Company`: table `customers` has no column `full_name`"]
    assert not DataSource.objects.exists()


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
def test_an_unknown_data_category_is_refused_at_save_naming_it(company):
    shoe = MAP.replace("total: user.financial", "total: user.shoe_size")
    assert refusal(company.source(shoe, save=False)) == [
        "line 16: source `Company`: table `orders`: column `total`: `user.shoe_size` is not "
        "a data category of the fideslang taxonomy"]
    source = company.source(save=False)
    source.categories = ["user.contact.email", "user.shoe_size"]
    assert refusal(source, "categories") == [
        "`user.shoe_size` is not a data category of the fideslang taxonomy"]
    assert not DataSource.objects.exists()


def _admin_post(client, dataset_map: str):
    return client.post("/admin/requests_app/datasource/add/", {
        "name": "Company", "kind": "sql", "enabled": "on", "categories": "[]",
        "purposes": "[]", "retention": "", "connection_env": ENV, "dataset_map": dataset_map,
        "url": "", "secret_env": "", "timeout_seconds": "10", "instructions": ""})


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
def test_the_admin_form_refuses_a_malformed_map_with_the_words_and_saves_nothing(
        company, alice, client):
    staff_login(client, alice)  # a Privacy Manager keeps the registry
    for bad, words in [(MAP.replace("erase: mask}", "erase: mask"), "line 10: source "
                        "`Company`: not valid YAML"),
                       (MAP.replace("user.financial", "user.shoe_size"), "`user.shoe_size` "
                        "is not a data category"),
                       (MAP.replace("name: {category", "nom: {category"),
                        "table `customers` has no column `nom`")]:
        response = _admin_post(client, bad)
        assert response.status_code == 200  # the form again, with the words
        assert escape(words) in response.content.decode(), response.content.decode()[-3000:]
    assert not DataSource.objects.exists()
    assert _admin_post(client, MAP).status_code == 302  # the map as it should be
    assert DataSource.objects.get().dataset_map.strip() == MAP.strip()


FIDES = """dataset:
  - fides_key: company
    collections:
      - name: customers
        fields:
          - name: id
            fides_meta: {primary_key: true}
          - name: email
            data_categories: [user.contact.email]
            fides_meta: {identity: email}
          - name: shoe
            data_categories: [user.shoe_size]
"""


def test_the_fides_importer_names_an_unknown_category_and_a_broken_file(tmp_path, capsys):
    path = tmp_path / "company.yml"
    path.write_text(FIDES)
    call_command("import_fides_dataset", str(path))
    out, err = capsys.readouterr()
    assert "shoe" not in out.split("# Not carried over")[-1].split("tables:")[-1]
    assert ("company.yml, dataset `company`, collection `customers`, field `shoe`: "
            "`user.shoe_size` is not a data category of the fideslang taxonomy: not carried "
            "over") in err
    path.write_text(FIDES.replace("[user.contact.email]", "[user.contact.email"))
    with pytest.raises(CommandError, match=r"company.yml is not valid YAML \(line 10\)"):
        call_command("import_fides_dataset", str(path))


# --- an identity type no source holds ------------------------------------------------

LOYALTY_MAP = MAP.replace("identity: {email: email}", "identity: {loyalty_id: card_no}")


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
def test_a_request_giving_only_types_no_source_looks_up_says_so_on_the_desk(
        company, alice, client):
    company.source(LOYALTY_MAP)  # this company looks its customers up by loyalty card
    request = approved("access", alice, phone="555-0100")  # an email and a phone only
    request.refresh_from_db()
    assert request.state == State.NEEDS_ATTENTION  # not "nothing found"
    words = ("No source can look this person up: the request gives an email address and a "
             "phone number, and no source looks people up by any of these. The sources look "
             "people up by a Loyalty card number (loyalty_id) in Company, which the request "
             "does not give.")
    assert request.audit_events.filter(to_state=State.NEEDS_ATTENTION).get().reason == words
    assert not SourceRun.objects.exists()  # nothing asked of a source that cannot answer
    staff_login(client, alice)
    assert escape(words) in desk_page(client, request)
    # "Retry fulfilment" with nothing changed says the same again (a page, not a 500).
    request.refresh_from_db()
    with committed():
        response = client.post(reverse("staff:step", args=[request.reference,
                                                           "retry_fulfilment"]), {
            "retry_fulfilment-expected_state": request.state,
            "retry_fulfilment-version": request.version})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.NEEDS_ATTENTION
    assert escape(words) in desk_page(client, request)
    assert company.state() == company.before


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
def test_a_request_giving_the_type_a_source_looks_up_is_answered(company, alice):
    company.source(LOYALTY_MAP)
    request = approved("access", alice, extra={"loyalty_id": "L-1"})
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    assert request.source_runs.get().result["tables"] == {"customers": 1, "orders": 2}


# --- a database that refuses the connection ------------------------------------------


def retry_source(client, request, run) -> None:
    with committed():
        response = client.post(reverse("staff:retry_source", args=[request.reference, run.pk]))
    assert response.status_code == 302


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_a_database_that_refuses_the_connection_fails_the_run_in_words_and_loses_nothing(
        company, alice, client, caplog):
    company.source()
    company.use(company.dsn(port=1))  # nothing listens there: a wrong port, a server down
    request = approved("access", alice)
    run = failed_run(request)
    assert run.last_error == (
        "Company: cannot connect to the database: the server refused the connection "
        "(nothing listens at the DSN's host and port: the server is down or the port is "
        "wrong)")
    assert run.attempts > 1  # it may pass: retried before failing
    assert_clean(run.last_error, company)
    assert PAT not in caplog.text and company.url not in caplog.text
    staff_login(client, alice)
    page = desk_page(client, request)
    assert page.count(escape(run.last_error)) >= 2  # why it needs attention, and the run
    # The admin's form says the same, and refuses to save the source meanwhile.
    response = client.post(f"/admin/requests_app/datasource/{run.source_id}/change/", {
        "name": "Company", "kind": "sql", "enabled": "on", "categories": "[]",
        "purposes": "[]", "connection_env": ENV, "dataset_map": MAP, "timeout_seconds": "10"})
    assert response.status_code == 200
    assert escape("source `Company`: cannot connect to the database: the server refused "
                  "the connection") in response.content.decode()
    company.use(company.url)  # the server is back
    retry_source(client, request, run)
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY  # nothing lost
    assert request.source_runs.get().result["tables"] == {"customers": 1, "orders": 2}
    assert company.state() == company.before


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_a_login_the_server_refuses_fails_at_once_without_the_password(company, alice,
                                                                       client, caplog):
    company.source()
    with limited_user(company, {"customers": "SELECT", "orders": "SELECT"},
                      password="the-right-one") as dsn:
        company.use(dsn)
        assert approved("access", alice).source_runs.get().state == "done"  # it logs in
        wrong = sa.engine.make_url(dsn).set(password="Wr0ng-Pa55word")
        company.use(wrong.render_as_string(hide_password=False))
        request = approved("access", alice)
    run = failed_run(request)
    assert run.last_error == ("Company: cannot connect to the database: the server refused "
                              "the user name or password (check the DSN's credentials)")
    assert run.attempts == 1  # refused for good: not retried
    assert_clean(run.last_error, company, "Wr0ng-Pa55word", "the-right-one", "pp_limited")
    assert "Wr0ng-Pa55word" not in caplog.text
    staff_login(client, alice)
    assert escape(run.last_error) in desk_page(client, request)
    assert company.state() == company.before


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_a_user_or_database_the_server_does_not_know_is_said_in_words(company, alice):
    company.source()
    company.use(company.dsn(username="nobody_here", password="Wr0ng-Pa55word"))
    unknown_user = failed_run(approved("access", alice))
    company.use(company.dsn(database="no_such_db"))
    unknown_database = failed_run(approved("access", alice))
    if company.kind == "mariadb":  # MariaDB does not say whether the user exists
        assert unknown_user.last_error.endswith("the server refused the user name or "
                                                "password (check the DSN's credentials)")
    else:
        assert unknown_user.last_error == ("Company: cannot connect to the database: the "
                                           "server knows no such user (check the DSN's user "
                                           "name)")
    assert unknown_database.last_error == ("Company: cannot connect to the database: the "
                                           "database the DSN names does not exist on the "
                                           "server")
    for run in (unknown_user, unknown_database):
        assert run.attempts == 1
        assert_clean(run.last_error, company, "nobody_here", "no_such_db", "Wr0ng-Pa55word")


# --- a database that refuses the statement --------------------------------------------


def deletion_planned(alice):
    """A deletion request whose dry run was done: results ready, for approval."""
    request = approved("deletion", alice)
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY, request.source_runs.get().last_error
    return request


# MariaDB shows a user only the tables it holds a privilege on: INSERT keeps `orders`
# visible to it while reading it is denied.
READ_CUSTOMERS_ONLY = {"customers": "SELECT", "orders": "INSERT"}


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_permission_denied_on_a_table_fails_the_run_naming_source_and_table(company, alice,
                                                                           client, caplog):
    company.source()
    with limited_user(company, READ_CUSTOMERS_ONLY) as dsn:
        company.use(dsn)
        request = approved("access", alice)
    run = failed_run(request)
    assert run.last_error == "Company: table `orders`: permission denied"
    assert run.attempts == 1
    assert_clean(run.last_error, company, "pp_limited")
    assert "pp_limited" not in caplog.text and PAT not in caplog.text
    staff_login(client, alice)
    assert escape(run.last_error) in desk_page(client, request)


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_a_dry_run_refused_on_a_table_changes_nothing_and_says_where(company, alice, client):
    company.source()
    grants = {"customers": "SELECT, UPDATE", "orders": "SELECT"}  # no DELETE on orders
    with limited_user(company, grants) as dsn:
        company.use(dsn)
        request = approved("deletion", alice)
    run = failed_run(request, "plan_erasure")
    assert run.last_error == ("Company: delete of `orders` rows failed: table `orders`: "
                              "permission denied; nothing was changed (the dry run was rolled "
                              "back)")
    assert company.state() == company.before
    staff_login(client, alice)
    assert escape(run.last_error) in desk_page(client, request)


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_an_erasure_refused_after_approval_writes_nothing_at_all(company, alice, client):
    """Erasure deletes the orders, then updates the customer: a customers table that
    may no longer be updated must stop it before the orders are gone."""
    company.source()
    grants = {"customers": "SELECT, UPDATE", "orders": "SELECT, DELETE"}
    with limited_user(company, grants) as dsn:
        company.use(dsn)
        request = deletion_planned(alice)
        user = company.quote(sa.engine.make_url(dsn).username) + (
            "@'127.0.0.1'" if company.kind == "mariadb" else "")
        company.execute(f"REVOKE UPDATE ON {company.quote('customers')} FROM {user}")
        with committed():
            do_transition(request.pk, "approve_erasure", actor=Actor.staff(alice))
    run = failed_run(request, "erase")
    assert run.last_error == ("Company: update of `customers` rows refused: table `customers`: "
                              "permission denied; nothing was erased")
    assert company.state() == company.before  # not one order deleted
    staff_login(client, alice)
    assert escape(run.last_error) in desk_page(client, request)


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_a_table_dropped_after_the_map_was_saved_fails_in_words(company, alice, client):
    company.source()
    first = approved("access", alice)  # the worker knows the tables now
    first.refresh_from_db()
    assert first.state == State.RESULTS_READY
    company.execute(f"DROP TABLE {company.quote('orders')}")
    request = approved("access", alice)
    run = failed_run(request)
    assert run.last_error == ("Company: table `orders` does not exist (dropped or renamed "
                              "since the map was saved?), or this user may not see it")
    deletion = approved("deletion", alice)
    assert failed_run(deletion, "plan_erasure").last_error == run.last_error
    assert company.state("customers")["customers"] == company.before["customers"]
    staff_login(client, alice)
    assert escape(run.last_error) in desk_page(client, request)
    assert client.get(reverse("staff:dashboard")).status_code == 200


@pytest.mark.parametrize("sql_engine", SERVERS, indirect=True)
def test_a_column_dropped_after_the_map_was_saved_fails_in_words(company, alice, client):
    company.source()
    column = company.quote("name")
    company.execute(f"ALTER TABLE {company.quote('customers')} DROP COLUMN {column}")
    request = approved("access", alice)
    run = failed_run(request)
    assert run.last_error == ("Company: table `customers` has no column `name` (dropped or "
                              "renamed since the map was saved?)")
    staff_login(client, alice)
    assert escape(run.last_error) in desk_page(client, request)


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
def test_a_dsn_that_is_no_database_url_is_refused_at_save_and_fails_a_run_in_words(
        company, alice, client):
    company.source()
    company.use("postgresql://reader:s3cret-pw@db.internal:notaport/shop")
    words = ("Company: the DSN in BAD_INPUT_DSN is not a database URL this portal can use "
             "(postgresql://, mysql://, sqlite:///...)")
    assert refusal(company.source(save=False)) == [words]
    request = approved("access", alice)
    run = failed_run(request)
    assert run.last_error == words
    assert "s3cret-pw" not in run.last_error and "db.internal" not in run.last_error
    staff_login(client, alice)
    assert escape(words) in desk_page(client, request)


@pytest.mark.parametrize("sql_engine", ["sqlite"], indirect=True)
def test_a_map_broken_outside_the_form_fails_its_runs_in_words(company, alice, client):
    """A map written straight into the database (a migration, a shell) skips the
    form's validation: its runs fail saying what is wrong, and where."""
    DataSource.objects.create(name="Company", kind="sql", connection_env=ENV,
                              dataset_map=MAP.replace("user.financial", "user.shoe_size"))
    request = approved("access", alice)
    run = failed_run(request)
    assert run.last_error == (
        "Company: the dataset map is invalid (line 16: table `orders`: column `total`: "
        "`user.shoe_size` is not a data category of the fideslang taxonomy)")
    staff_login(client, alice)
    assert escape(run.last_error) in desk_page(client, request)
    assert client.get(reverse("staff:intake")).status_code == 200


# --- the words for what the suite's servers cannot be made to do on cue -----------------


@pytest.mark.parametrize("error, words", [
    (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting "
                                        "transaction"),
     "a lock held by another session was waited for longer than the 5 s allowed"),
    (pymysql.err.OperationalError(1969, "Query execution was interrupted "
                                        "(max_statement_time exceeded)"),
     "the statement ran longer than the 5 minutes allowed and was stopped"),
    (pymysql.err.OperationalError(2013, "Lost connection to server during query (timed out)"),
     "cannot connect to the database: the connection to the server failed"),
    (pymysql.err.IntegrityError(1062, "Duplicate entry 'pat@example.com' for key 'email'"),
     "database error (IntegrityError)"),
    (psycopg.OperationalError("consuming input failed: server closed the connection "
                              "unexpectedly"),
     "cannot connect to the database: the connection to the server was lost (the server "
     "stopped or restarted?)"),
    (psycopg.OperationalError('connection failed: connection to server at "10.0.0.5", port '
                              "5432 failed: timeout expired"),
     "cannot connect to the database: the connection timed out (the server did not answer)"),
])
def test_database_errors_are_put_in_words_without_their_values(error, words):
    """Errors of the database libraries themselves (PyMySQL's, psycopg's), as the
    servers raise them when they time out or go away mid-statement."""
    said = in_words(error)
    assert said == words
    assert "pat@example.com" not in said and "10.0.0.5" not in said
