"""The Fides importer on Fides' own published example datasets (tests/fixtures/fides/,
Apache-2.0, source named in each file): the map it makes (tables, keys, identity
columns, references with their direction, categories and erase actions) and the
exact list of what it reports as not carried over, naming file, collection and
field. Its first map is safe to save and to erase with on a live database."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from django.core.management import CommandError, call_command

from requests_app.models import DataSource
from requests_app.sources.base import IdentityData
from requests_app.sources.datamap import DatasetMapError, parse
from requests_app.sources.fides import import_fides
from requests_app.sources.sql.connector import SqlConnector

FIXTURES = Path(__file__).parent / "fixtures" / "fides"


def imported(name: str):
    return import_fides((FIXTURES / name).read_text(), name)


def summary(map_text: str) -> dict:
    """Each table as (key, identity columns, references, columns, erase)."""
    return {n: (t.key, t.identity_columns,
                tuple((r.column, f"{r.to_table}.{r.to_column}", r.direction)
                      for r in t.references),
                {c.name: (c.category, c.erase) for c in t.columns.values()}, t.erase)
            for n, t in parse(map_text).tables.items()}


N, R, H = "null", "retain", "hash"
PG = "postgres_example_test_dataset.yml, dataset `postgres_example_test_dataset`"
BQ = "bigquery_example_test_dataset.yml, dataset `bigquery_example_test_dataset`"


def test_fides_postgres_example_becomes_a_map_with_its_keys_identities_and_directions():
    """The file uses the old `fidesops_meta` name throughout: read like fides_meta."""
    result = imported("postgres_example_test_dataset.yml")
    tables = summary(result.map_text)
    assert list(tables) == ["address", "customer", "employee", "login", "orders",
                            "order_item", "payment_card", "product", "report",
                            "service_request", "visit"]
    # System data on keys and links is no column at all (never nulled); personal
    # data there is kept, with the reason on the table.
    assert tables["customer"] == (
        ("id",), (("email", "email"),), (("address_id", "address.id", "to"),),
        {"created": ("system.operations", N), "email": ("user.contact.email", N),
         "id": ("user.unique_id", R), "name": ("user.name", N)}, "update")
    assert tables["address"][0] == ("id",) and "id" not in tables["address"][3]
    assert tables["orders"][2:4] == (
        (("customer_id", "customer.id", "from"), ("shipping_address_id", "address.id", "to")),
        {"customer_id": ("user.unique_id", R)})
    # No key declared: none guessed (the database's own is read when saved).
    assert tables["order_item"] == (
        (), (), (("order_id", "orders.id", "from"), ("product_id", "product.id", "to")),
        {"quantity": ("system.operations", N)}, "update")
    assert tables["visit"][:2] == ((), (("email", "email"),))
    # Two email columns, both looked up.
    assert tables["service_request"][1:3] == (
        (("email", "alt_email"), ("email", "email")),
        (("employee_id", "employee.id", "from"),))
    assert tables["payment_card"][3] == {
        "code": ("user.financial", N), "customer_id": ("user.unique_id", R),
        "name": ("user.financial", N), "preferred": ("user", N)}
    assert "legal_basis: 'Imported from Fides: key and link columns" in result.map_text
    assert result.unsupported == [
        f"{PG}, collection `payment_card`, field `ccn`: `user.financial.account_number` is "
        "not a data category of the fideslang taxonomy: not carried over"]
    assert result.map_text.startswith("# Imported from Fides: review before saving.\n"
                                      "# Not carried over (1):\n#   - " + PG)


def test_fides_bigquery_example_maps_read_only_overrides_and_custom_identities():
    result = imported("bigquery_example_test_dataset.yml")
    tables = summary(result.map_text)
    assert "customer_profile" not in tables
    assert tables["customer"] == (
        (), (("email", "email"), ("custom_id", "custom id")),
        (("address_id", "address.id", "to"),),
        {"created": ("system.operations", N), "email": ("user.contact.email", R),
         "custom id": ("user.unique_id", N), "id": ("user.unique_id", R),
         "name": ("user.name", N), "tags": ("user", N)}, "update")
    # Referenced fields are links too, though no key is declared: address.id
    # (system data) leaves the map, so erasure never sets it to NULL.
    assert tables["address"][3] == {
        "city": ("user.contact.address.city", N), "house": ("user.contact.address.street", N),
        "state": ("user.contact.address.state", N),
        "street": ("user.contact.address.street", H),
        "zip": ("user.contact.address.postal_code", N)}
    assert tables["employee"][2:] == (
        (("address_id", "address.id", "from"),),
        {"email": ("user.contact.email", N), "id": ("user.unique_id", R),
         "name": ("user.name", N)}, "delete")
    assert tables["visit_partitioned"][3]["email"] == ("user.contact.email", R)
    assert tables["payment_card"][3]["ccn"] == ("user.financial.bank_account", N)
    assert result.unsupported == [
        f"{BQ}, collection `address`: `erase_after` (bigquery_example_test_dataset.employee): "
        "the engine orders erasure by references and the database's foreign keys; this "
        "order is not kept",
        f"{BQ}, collection `address`, field `street`: masking_strategy_override "
        "`string_rewrite`: replaced by a keyed hash; its configuration (rewrite_value: "
        "REDACTED) is not applied",
        f"{BQ}, collection `customer`: `erase_after` (bigquery_example_test_dataset.address): "
        "the engine orders erasure by references and the database's foreign keys; this "
        "order is not kept",
        f"{BQ}, collection `customer`, field `extra_address_data`: nested fields (city, "
        "house, id, state, street, address_id (a reference)): the map's columns are flat; "
        "not carried over (add `extra_address_data` by hand if it is one column)",
        f"{BQ}, collection `customer`, field `purchase_history`: nested fields (item_id, "
        "price, purchase_date, item_tags): the map's columns are flat; not carried over "
        "(add `purchase_history` by hand if it is one column)",
        f"{BQ}, collection `visit_partitioned`: `partitioning`: the table is read whole, not "
        "partition by partition",
        f"{BQ}, collection `customer_profile`, field `contact_info`: nested fields "
        "(primary_email (identity email), phone_number): the map's columns are flat; not "
        "carried over (add `contact_info` by hand if it is one column)",
        f"{BQ}, collection `customer_profile`: no identity field, and no reference within "
        "the dataset leads to it from a collection that has one: left out"]


def test_a_dataset_reached_only_from_another_dataset_is_refused_in_words():
    with pytest.raises(DatasetMapError) as caught:
        imported("email_dataset.yml")
    assert caught.value.messages == [
        "email_dataset.yml, dataset `email_dataset`: no collection has an identity field of "
        "this dataset: nobody could be found",
        "email_dataset.yml, dataset `email_dataset`, collection `daycare_customer`, field "
        "`customer_id`: reference to `postgres_example_test_dataset.customer.id`, another "
        "dataset: a map is one database; not followed"]


def test_the_command_prints_the_map_and_warns_of_what_it_left_out(capsys):
    call_command("import_fides_dataset", str(FIXTURES / "bigquery_example_test_dataset.yml"))
    out, err = capsys.readouterr()
    assert parse(out).tables["customer"].identity == {"email": "email", "custom_id": "custom id"}
    assert err.splitlines()[0] == "Not carried over into the map (8; listed at its top too):"
    assert f"  - {BQ}, collection `visit_partitioned`: `partitioning`" in err


@pytest.mark.parametrize("text, message", [
    ("x: [", "f.yml is not valid YAML"),
    ("dataset: {}", "f.yml is not a Fides dataset: no `dataset:` list"),
    ("dataset: [{fides_key: a, collections: [{name: t, fields: [{name: e}]}]}]",
     "nobody could be found"),
])
def test_bad_fides_files_are_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "f.yml"
    path.write_text(text)
    with pytest.raises(CommandError, match=message):
        call_command("import_fides_dataset", str(path))
    with pytest.raises(CommandError, match="has no dataset `nope`"):
        call_command("import_fides_dataset", str(FIXTURES / "email_dataset.yml"),
                     dataset="nope")


def test_unknown_keys_other_strategies_and_arrays_are_reported_not_dropped():
    text = """
dataset:
  - fides_key: shop
    fides_meta: {namespace: {database_name: shop, schema: public}}
    collections:
      - name: members
        data_categories: [user]
        fides_meta: {after: [shop.other], skip_processing: false}
        fields:
          - name: id
            fides_meta: {primary_key: true}
          - name: email
            data_categories: [user.contact.email, user.government_id]
            fides_meta: {identity: email}
          - name: card
            data_categories: [user.unique_id]
            fides_meta: {identity: loyalty_id, custom_request_field: tenant_id}
          - name: phones
            fides_meta: {identity: phone_number, data_type: "string[]"}
          - name: note
            data_categories: [user.content.private]
            masking_strategy_override: {strategy: null_rewrite}
            fides_meta: {masking_strategy_override: {strategy: aes_encrypt}}
      - name: skipped
        fides_meta: {skip_processing: true}
        fields: [{name: id}]
"""
    result = import_fides(text, "f.yml")
    table = parse(result.map_text).tables["members"]
    assert table.identity == {"email": "email", "loyalty_id": "card"}
    assert table.columns["email"].category == "user.government_id"
    where = "f.yml, dataset `shop`"
    assert result.unsupported == [
        f"{where}: namespace database_name: shop, schema: public: the map has no database "
        "or schema name; the source's DSN chooses them",
        f"{where}, collection `members`: `after` (shop.other): the engine orders its queries "
        "by references; this order is not kept",
        f"{where}, collection `members`: collection-level data categories (user): not given "
        "to its fields; the map holds categories per column",
        f"{where}, collection `members`, field `email`: several data categories "
        "(user.contact.email, user.government_id): a column holds one, `user.government_id`",
        f"{where}, collection `members`, field `card`: custom_request_field `tenant_id`: "
        "requests carry no such field; not carried over",
        f"{where}, collection `members`, field `phones`: identity `phone_number` on an array "
        "field: lookups compare whole values; not used",
        f"{where}, collection `members`, field `note`: key `masking_strategy_override` is not "
        "one the importer knows: not carried over",
        f"{where}, collection `members`, field `note`: masking_strategy_override "
        "`aes_encrypt` is not one the engine has: the column is set to NULL",
        f"{where}, collection `skipped`: `skip_processing`: left out of the map, as Fides "
        "skips it"]


def _fides_example_schema(engine) -> None:
    """Fides' postgres example schema, trimmed, with NOT NULL keys and links and the
    keys Fides' dataset does not declare (order_item, visit) in the database."""
    md = sa.MetaData()
    sa.Table("address", md, sa.Column("id", sa.Integer, primary_key=True),
             *(sa.Column(c, sa.String(60)) for c in ("city", "house", "state", "street", "zip")))
    sa.Table("customer", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("email", sa.String(60)), sa.Column("name", sa.String(40)),
             sa.Column("created", sa.String(30)),
             sa.Column("address_id", sa.Integer, sa.ForeignKey("address.id"), nullable=False))
    sa.Table("employee", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("email", sa.String(60)), sa.Column("name", sa.String(60)),
             sa.Column("address_id", sa.Integer, sa.ForeignKey("address.id"), nullable=False))
    for name, target in (("login", "customer"), ("payment_card", "customer"),
                         ("orders", "customer")):
        sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("customer_id", sa.Integer, sa.ForeignKey(f"{target}.id"),
                           nullable=False),
                 *{"login": [sa.Column("time", sa.String(30))],
                   "payment_card": [sa.Column("billing_address_id", sa.Integer),
                                    *(sa.Column(c, sa.String(40)) for c in
                                      ("ccn", "code", "name", "preferred"))],
                   "orders": [sa.Column("shipping_address_id", sa.Integer,
                                        sa.ForeignKey("address.id"))]}[name])
    sa.Table("product", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(40)), sa.Column("price", sa.Integer))
    sa.Table("order_item", md,
             sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True),
             sa.Column("product_id", sa.Integer, sa.ForeignKey("product.id"), primary_key=True),
             sa.Column("quantity", sa.Integer))
    sa.Table("report", md, sa.Column("id", sa.Integer, primary_key=True),
             *(sa.Column(c, sa.String(60)) for c in ("email", "name", "month", "year",
                                                      "total_visits")))
    sa.Table("service_request", md, sa.Column("id", sa.Integer, primary_key=True),
             *(sa.Column(c, sa.String(60)) for c in ("email", "alt_email", "opened", "closed")),
             sa.Column("employee_id", sa.Integer, sa.ForeignKey("employee.id"), nullable=False))
    sa.Table("visit", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("email", sa.String(60)), sa.Column("last_visit", sa.String(30)))
    md.create_all(engine)
    rows = {"address": [{"id": 1, "street": "Pat St"}, {"id": 2, "street": "Sam St"}],
            "customer": [{"id": 1, "email": "pat@example.com", "name": "Pat",
                          "address_id": 1},
                         {"id": 2, "email": "sam@example.com", "name": "Sam",
                          "address_id": 2}],
            "employee": [{"id": 5, "email": "eve@example.com", "name": "Eve",
                          "address_id": 2}],
            "orders": [{"id": 10, "customer_id": 1, "shipping_address_id": 1}],
            "product": [{"id": 3, "name": "Kettle", "price": 20}],
            "order_item": [{"order_id": 10, "product_id": 3, "quantity": 2}],
            "service_request": [{"id": 7, "email": "eve@example.com",
                                 "alt_email": "pat@example.com", "employee_id": 5}],
            "visit": [{"id": 1, "email": "pat@example.com", "last_visit": "2024-01-01"}]}
    with engine.begin() as conn:
        for name in md.sorted_tables:
            if rows.get(name.name):
                conn.execute(name.insert(), rows[name.name])


KEYS = {"address": ["id"], "customer": ["id", "address_id"], "employee": ["id", "address_id"],
        "orders": ["id", "customer_id", "shipping_address_id"],
        "order_item": ["order_id", "product_id"], "service_request": ["id", "employee_id"]}


@pytest.mark.parametrize("sql_engine", ["sqlite", "postgresql"], indirect=True)
def test_the_first_map_of_fides_example_saves_and_erases_without_touching_keys(
        sql_engine, monkeypatch, source_run):
    engine = sa.create_engine(sql_engine)
    _fides_example_schema(engine)
    monkeypatch.setenv("FIDES_DSN", sql_engine)
    source = DataSource(name="Fides example", kind="sql", connection_env="FIDES_DSN",
                        dataset_map=imported("postgres_example_test_dataset.yml").map_text)
    connector = SqlConnector(source)
    assert connector.check() == []
    keys_before = _keys(engine)
    pat = IdentityData(email="pat@example.com")
    connector.erase(source_run(), pat, {})
    assert connector.remaining(source_run(), pat) == 0
    assert _keys(engine) == keys_before
    with engine.connect() as conn:
        names = dict(conn.exec_driver_sql("SELECT id, name FROM customer").all())
        visits = conn.exec_driver_sql("SELECT email FROM visit").scalars().all()
    assert names == {1: None, 2: "Sam"}
    assert visits == [None]
    engine.dispose()


def _keys(engine) -> dict:
    md = sa.MetaData()
    with engine.connect() as conn:
        return {name: sorted(conn.execute(sa.select(
                    *(table.c[c] for c in cols))).all())
                for name, cols in KEYS.items()
                for table in [sa.Table(name, md, autoload_with=conn)]}
