"""References followed only the way their Fides `direction` allows (issue 13). In
Fides, a reference on field A of collection X to Y.b with `direction: to` means
values flow from X.A to Y.b: Y is found from X, never X from Y; with `direction:
from` values flow from Y.b into X.A: X is found from Y, never Y from X; without
one, both ways (Fides' dataset guide, "direction").

A shop declares: customers -> addresses `to` (the address is found from the
customer), orders -> customers `from` (orders found from the customer), order_items
-> orders `from`, order_items -> products `to`; tickets -> customers with no
direction (both ways). Two tables can be reached only against the declared
direction: loyalty -> customers `to` (a loyalty card finds its customer, never the
other way) and customers -> coupons `from` (a coupon finds the customers holding
it, never the other way). Neither is reached, for access or erasure, and the gather
and the dry run say so in words; without the directions both would be."""

import sqlalchemy as sa

from requests_app.sources.sql.actions import keyed_hash, mask

md = sa.MetaData()


def _id(name="id"):
    return sa.Column(name, sa.Integer, primary_key=True, autoincrement=False)


sa.Table("addresses", md, _id(), sa.Column("line1", sa.String(100)))
sa.Table("coupons", md, sa.Column("code", sa.String(20), primary_key=True),
         sa.Column("discount", sa.Integer))
sa.Table("customers", md, _id(), sa.Column("email", sa.String(100)),
         sa.Column("name", sa.String(100)),
         sa.Column("address_id", sa.Integer, sa.ForeignKey("addresses.id")),
         sa.Column("coupon_code", sa.String(20), sa.ForeignKey("coupons.code")))
sa.Table("products", md, _id(), sa.Column("name", sa.String(100)))
sa.Table("orders", md, _id(),
         sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
         sa.Column("note", sa.String(100)))
sa.Table("order_items", md, _id(),
         sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
         sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
         sa.Column("quantity", sa.Integer))
sa.Table("tickets", md, _id(),
         sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
         sa.Column("body", sa.String(100)))
sa.Table("loyalty", md, _id(),
         sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
         sa.Column("points", sa.Integer))

ROWS = {
    "addresses": [{"id": 10, "line1": "1 Main St"}, {"id": 11, "line1": "2 Side St"}],
    "coupons": [{"code": "SPRING", "discount": 10}, {"code": "FALL", "discount": 20}],
    "customers": [
        {"id": 1, "email": "pat@example.com", "name": "Pat Doe", "address_id": 10,
         "coupon_code": "SPRING"},
        {"id": 2, "email": "sam@example.com", "name": "Sam Roe", "address_id": 11,
         "coupon_code": "SPRING"}],
    "products": [{"id": 500, "name": "Kettle"}, {"id": 501, "name": "Teapot"},
                 {"id": 502, "name": "Mug"}],
    "orders": [{"id": 100, "customer_id": 1, "note": "first"},
               {"id": 101, "customer_id": 1, "note": "second"},
               {"id": 102, "customer_id": 2, "note": "sams"}],
    "order_items": [{"id": 1000, "order_id": 100, "product_id": 500, "quantity": 1},
                    {"id": 1001, "order_id": 101, "product_id": 501, "quantity": 2},
                    {"id": 1002, "order_id": 102, "product_id": 501, "quantity": 5}],
    "tickets": [{"id": 300, "customer_id": 1, "body": "where is my kettle"},
                {"id": 301, "customer_id": 2, "body": "sams question"}],
    "loyalty": [{"id": 400, "customer_id": 1, "points": 120},
                {"id": 401, "customer_id": 2, "points": 50}],
}

MAP = """
name: directed
tables:
  customers:
    primary_key: id
    identity: {email: email}
    references:
      - {column: address_id, to: addresses.id, direction: to}
      - {column: coupon_code, to: coupons.code, direction: from}
    columns:
      email: {category: user.contact.email, erase: hash}
      name: {category: user.name, erase: mask}
    erase: update
    legal_basis: "Customer numbers kept for the accounts"
  addresses:
    primary_key: id
    columns: {line1: user.contact.address.street}
    erase: delete
  coupons:
    primary_key: code
    columns: {discount: user.behavior.purchase_history}
    erase: retain
    legal_basis: "Coupons are the shop's, not one person's"
  orders:
    primary_key: id
    references: [{column: customer_id, to: customers.id, direction: from}]
    columns: {note: user.behavior.purchase_history}
    erase: delete
  order_items:
    primary_key: id
    references:
      - {column: order_id, to: orders.id, direction: from}
      - {column: product_id, to: products.id, direction: to}
    columns: {quantity: user.behavior.purchase_history}
    erase: delete
  products:
    primary_key: id
    columns: {name: user.behavior.purchase_history}
    erase: retain
    legal_basis: "The catalogue is the shop's"
  tickets:
    primary_key: id
    references: [{column: customer_id, to: customers.id}]
    columns: {body: user.content.private}
    erase: delete
  loyalty:
    primary_key: id
    references: [{column: customer_id, to: customers.id, direction: to}]
    columns: {points: user.account}
    erase: delete
"""

NOT_REACHED = {
    "coupons": "not reached: the map's references lead to it only against their declared "
               "direction (`customers.coupon_code` refers to `coupons.code` with direction "
               "`from`: `customers` is found from `coupons`, not the other way)",
    "loyalty": "not reached: the map's references lead to it only against their declared "
               "direction (`loyalty.customer_id` refers to `customers.id` with direction "
               "`to`: `customers` is found from `loyalty`, not the other way)",
}

PATS = {
    "customers": [{"email": "pat@example.com", "name": "Pat Doe"}],
    "addresses": [{"line1": "1 Main St"}],
    "orders": [{"note": "first"}, {"note": "second"}],
    "order_items": [{"quantity": 1}, {"quantity": 2}],
    "products": [{"name": "Kettle"}, {"name": "Teapot"}],
    "tickets": [{"body": "where is my kettle"}],
}


def test_access_follows_each_reference_only_the_way_it_is_declared(company):
    shop = company(md, ROWS)
    outcome, rows = shop.gather(MAP, email="pat@example.com")
    assert rows == PATS  # no loyalty points, no coupon
    assert outcome.result["tables"] == {"customers": 1, "addresses": 1, "orders": 2,
                                        "order_items": 2, "products": 2, "tickets": 1}
    assert outcome.records == 9
    assert outcome.result["not_reached_against_direction"] == NOT_REACHED


def test_without_the_directions_both_tables_are_reached(company):
    shop = company(md, ROWS)
    undirected = MAP.replace(", direction: to}", "}").replace(", direction: from}", "}")
    outcome, rows = shop.gather(undirected, email="pat@example.com")
    assert rows == PATS | {"loyalty": [{"points": 120}], "coupons": [{"discount": 10}]}
    assert "not_reached_against_direction" not in outcome.result


def test_erasure_leaves_what_the_declared_directions_do_not_reach_and_says_so(company):
    shop = company(md, ROWS)
    plan = shop.plan(MAP, email="pat@example.com")
    assert plan.result["tables"] == {
        "order_items": {"rows": 2, "action": "delete"},
        "orders": {"rows": 2, "action": "delete"},
        "tickets": {"rows": 1, "action": "delete"},
        "customers": {"rows": 1, "action": "update",
                      "columns": {"email": "hash", "name": "mask"},
                      "legal_basis": "Customer numbers kept for the accounts",
                      "cleared_references": ["address_id"]},
        "addresses": {"rows": 1, "action": "delete"},
        # The Teapot is in Sam's order too: shared, as every retained row is kept.
        "products": {"rows": 1, "action": "retain", "kept_shared": 1,
                     "shared_with": ["order_items"],
                     "legal_basis": "The catalogue is the shop's"},
    }
    assert plan.result["not_reached_against_direction"] == NOT_REACHED
    assert shop.changed() == {}  # the dry run's statements were rolled back

    _outcome, left = shop.erase(MAP, email="pat@example.com")
    assert left == 0
    after = shop.state()
    assert after["customers"] == [
        {"id": 1, "email": keyed_hash("pat@example.com", 100), "name": mask("Pat Doe"),
         "address_id": None, "coupon_code": "SPRING"},
        ROWS["customers"][1]]
    assert after["addresses"] == [ROWS["addresses"][1]]
    assert after["orders"] == [ROWS["orders"][2]]
    assert after["order_items"] == [ROWS["order_items"][2]]
    assert after["tickets"] == [ROWS["tickets"][1]]
    # Not reached, so not erased: Pat's loyalty row stays, as the map declares.
    assert after["loyalty"] == ROWS["loyalty"]
    assert set(shop.changed()) == {"customers", "addresses", "orders", "order_items",
                                   "tickets"}
    assert shop.gather(MAP, email="pat@example.com")[1] == {}
    _, sam = shop.gather(MAP, email="sam@example.com")
    assert sam["orders"] == [{"note": "sams"}] and sam["products"] == [{"name": "Teapot"}]
