"""Composite keys and tables whose map declares no key (issue 13, defect 1). The
map comes from a Fides dataset whose `order_items` and `visits` mark no
primary key: the importer must not take their first field (`order_id`,
`email`: not unique) as the key; the database's own keys are read instead, and
said so. A table with no key anywhere is refused when the map is checked."""

import pytest
import sqlalchemy as sa
from django.core.management import call_command

from requests_app.sources.sql.connector import SqlConnector

md = sa.MetaData()
sa.Table("customers", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("email", sa.String(100)))
sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False))
sa.Table("products", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(100)))
sa.Table("order_items", md,
         sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True),
         sa.Column("line", sa.Integer, primary_key=True),
         sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id")),
         sa.Column("note", sa.String(100)))
sa.Table("visits", md, sa.Column("email", sa.String(100)),
         sa.Column("visit_no", sa.Integer, nullable=False),
         sa.Column("page", sa.String(100)), sa.UniqueConstraint("visit_no"))

ROWS = {
    "customers": [{"id": 1, "email": "pat@example.com"}, {"id": 2, "email": "sam@example.com"}],
    "orders": [{"id": 100, "customer_id": 1}, {"id": 101, "customer_id": 2}],
    "products": [{"id": 7, "name": "Kettle"}, {"id": 8, "name": "Teapot"},
                 {"id": 9, "name": "Mug"}],
    "order_items": [{"order_id": 100, "line": 1, "product_id": 7, "note": "gift wrap"},
                    {"order_id": 100, "line": 2, "product_id": 8, "note": "for mum"},
                    {"order_id": 101, "line": 1, "product_id": 9, "note": "sam's"}],
    "visits": [{"email": "pat@example.com", "visit_no": 1, "page": "/a"},
               {"email": "pat@example.com", "visit_no": 2, "page": "/b"},
               {"email": "sam@example.com", "visit_no": 3, "page": "/c"}],
}

FIDES = """
dataset:
  - fides_key: keys_shop
    collections:
      - name: customers
        fields:
          - name: id
            data_categories: [user.unique_id]
            fides_meta: {primary_key: true}
          - name: email
            data_categories: [user.contact.email]
            fides_meta: {identity: email}
      - name: orders
        fields:
          - name: id
            data_categories: [system.operations]
            fides_meta: {primary_key: true}
          - name: customer_id
            data_categories: [system.operations]
            fides_meta:
              references: [{dataset: keys_shop, field: customers.id, direction: from}]
      - name: products
        fields:
          - name: id
            fides_meta: {primary_key: true}
          - name: name
            data_categories: [system.operations]
      - name: order_items
        fields:
          - name: order_id
            data_categories: [system.operations]
            fides_meta:
              references: [{dataset: keys_shop, field: orders.id, direction: from}]
          - name: line
          - name: product_id
            fides_meta:
              references: [{dataset: keys_shop, field: products.id, direction: to}]
          - name: note
            data_categories: [user.content.private]
      - name: visits
        fields:
          - name: email
            data_categories: [user.contact.email]
            fides_meta: {identity: email}
          - name: visit_no
          - name: page
            data_categories: [user.behavior.browsing_history]
"""


@pytest.fixture
def dataset_map(tmp_path, capsys):
    path = tmp_path / "fides.yml"
    path.write_text(FIDES)
    call_command("import_fides_dataset", str(path))
    return capsys.readouterr().out


def test_no_key_is_guessed_the_databases_own_keys_are_read(company, dataset_map):
    assert "primary_key: order_id" not in dataset_map
    assert "primary_key: email" not in dataset_map
    shop = company(md, ROWS)
    assert SqlConnector(shop.source(dataset_map)).check() == []
    outcome, rows = shop.gather(dataset_map, email="pat@example.com")
    # Both of Pat's items (same order_id) and both visits (same email) are there,
    # and so is the product reached only through the second item.
    assert rows == {
        "customers": [{"id": 1, "email": "pat@example.com"}],
        "orders": [{}],  # no personal column: the row is counted, nothing shown
        "order_items": [{"note": "for mum"}, {"note": "gift wrap"}],
        "products": [{"name": "Kettle"}, {"name": "Teapot"}],
        "visits": [{"email": "pat@example.com", "page": "/a"},
                   {"email": "pat@example.com", "page": "/b"}],
    }
    tables = outcome.result["tables"]
    assert (tables["orders"], tables["order_items"], tables["products"]) == (1, 2, 2)
    assert outcome.result["keys_read_from_database"] == {"order_items": ["order_id", "line"],
                                                         "visits": ["visit_no"]}

    plan = shop.plan(dataset_map, email="pat@example.com")
    # The dry run's counts are the database's own (its statements run, then roll
    # back): orders has no personal column to change, so no row of it changes.
    assert {n: (t["rows"], t["action"]) for n, t in plan.result["tables"].items()} == {
        "customers": (1, "update"), "products": (2, "update"),
        "order_items": (2, "update"), "visits": (2, "update")}
    _outcome, left = shop.erase(dataset_map, email="pat@example.com")
    assert left == 0
    after = shop.state()
    assert after["order_items"] == [
        {"order_id": 100, "line": 1, "product_id": 7, "note": None},
        {"order_id": 100, "line": 2, "product_id": 8, "note": None},
        ROWS["order_items"][2]]
    assert after["visits"] == [ROWS["visits"][2],
                               {"email": None, "visit_no": 1, "page": None},
                               {"email": None, "visit_no": 2, "page": None}]
    # Kept links are kept; everyone else's rows are as they were.
    assert after["customers"] == [{"id": 1, "email": None}, ROWS["customers"][1]]
    # The imported map nulls every categorised column that is not a key or a link
    # (products.name too: the map is to be reviewed); Sam's rows stay as they were.
    assert after["products"] == [{"id": 7, "name": None}, {"id": 8, "name": None},
                                 ROWS["products"][2]]
    assert set(shop.changed()) == {"customers", "order_items", "products", "visits"}


def test_a_table_with_no_key_anywhere_is_refused_naming_source_table_and_what_is_missing(
        company):
    bare = sa.MetaData()
    sa.Table("people", bare, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("email", sa.String(100)))
    sa.Table("notes", bare, sa.Column("person_id", sa.Integer), sa.Column("text", sa.String(100)))
    shop = company(bare, {})
    problems = SqlConnector(shop.source("""
tables:
  people: {identity: {email: email}, columns: {email: user.contact.email}}
  notes:
    references: [{column: person_id, to: people.id}]
    columns: {text: user.content.private}
""")).check()
    assert problems == ["line 4: source `Company`: table `notes`: the map declares no "
                        "`primary_key` and the database has no primary key or unique "
                        "constraint on NOT NULL columns: declare the columns that name one row"]
