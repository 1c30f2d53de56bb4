"""Rows of other people one hop away, and a shared row (issue 13, defect 0: the
breach). Pat's messages to Sam and from Kim are reached through Pat's own row,
but their other reference names another customer: they are never shown as Pat's,
never erased for Pat, never counted; they are withheld and counted apart. The
address Pat and Sam both shipped to is shown to each and never erased for Pat."""

import sqlalchemy as sa

from requests_app.sources.sql.actions import keyed_hash, mask

md = sa.MetaData()
sa.Table("customers", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("email", sa.String(100)), sa.Column("name", sa.String(100)))
sa.Table("addresses", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("street", sa.String(100)))
sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
         sa.Column("address_id", sa.Integer, sa.ForeignKey("addresses.id")),
         sa.Column("total", sa.Integer))
sa.Table("messages", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("sender_id", sa.Integer, sa.ForeignKey("customers.id")),
         sa.Column("recipient_id", sa.Integer, sa.ForeignKey("customers.id")),
         sa.Column("body", sa.String(100)))

ROWS = {
    "customers": [{"id": 1, "email": "pat@example.com", "name": "Pat Doe"},
                  {"id": 2, "email": "sam@example.com", "name": "Sam Roe"},
                  {"id": 3, "email": "kim@example.com", "name": "Kim Poe"}],
    "addresses": [{"id": 10, "street": "1 Main St"}, {"id": 11, "street": "2 Side St"},
                  {"id": 12, "street": "3 Far St"}],
    "orders": [{"id": 100, "customer_id": 1, "address_id": 10, "total": 25},
               {"id": 101, "customer_id": 1, "address_id": 11, "total": 10},
               {"id": 102, "customer_id": 2, "address_id": 11, "total": 5},
               {"id": 103, "customer_id": 2, "address_id": 12, "total": 7}],
    "messages": [{"id": 500, "sender_id": 1, "recipient_id": None, "body": "note to self"},
                 {"id": 501, "sender_id": 1, "recipient_id": 2, "body": "hi Sam"},
                 {"id": 502, "sender_id": 3, "recipient_id": 1, "body": "hi Pat"},
                 {"id": 503, "sender_id": 2, "recipient_id": 3, "body": "hi Kim"}],
}

MAP = """
name: one_hop
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
      - {column: address_id, to: addresses.id}
    columns: {total: user.financial}
    erase: retain
    legal_basis: "Invoices kept seven years"
  addresses:
    primary_key: id
    columns: {street: user.contact.address.street}
    erase: delete
  messages:
    primary_key: id
    references:
      - {column: sender_id, to: customers.id}
      - {column: recipient_id, to: customers.id}
    columns: {body: user.content.private}
    erase: delete
"""


def test_rows_tied_to_other_people_are_never_shown_erased_or_counted(company):
    shop = company(md, ROWS)
    outcome, rows = shop.gather(MAP, email="pat@example.com")
    assert rows == {
        "customers": [{"email": "pat@example.com", "name": "Pat Doe"}],
        "orders": [{"total": 10}, {"total": 25}],
        "addresses": [{"street": "1 Main St"}, {"street": "2 Side St"}],
        "messages": [{"body": "note to self"}],
    }
    assert outcome.result["tables"] == {"customers": 1, "orders": 2, "addresses": 2,
                                        "messages": 1}
    assert outcome.records == 6
    assert outcome.result["withheld_linked_to_others"] == {"messages": 2}

    sam_outcome, sam = shop.gather(MAP, email="sam@example.com")
    assert sam["addresses"] == [{"street": "2 Side St"}, {"street": "3 Far St"}]
    assert "messages" not in sam  # 501, 503 both name someone else too

    plan = shop.plan(MAP, email="pat@example.com")
    assert plan.result["tables"] == {
        "customers": {"rows": 1, "action": "update",
                      "columns": {"email": "hash", "name": "mask"}},
        "orders": {"rows": 2, "action": "retain", "legal_basis": "Invoices kept seven years",
                   "cleared_references": ["address_id"]},
        "addresses": {"rows": 1, "action": "delete", "kept_shared": 1,
                      "shared_with": ["orders"]},
        "messages": {"rows": 1, "action": "delete"},
    }
    assert shop.changed() == {}  # the dry run changed nothing

    _outcome, left = shop.erase(MAP, email="pat@example.com")
    assert left == 0
    after = shop.state()
    assert after["customers"][0] == {"id": 1, "email": keyed_hash("pat@example.com", 100),
                                     "name": mask("Pat Doe")}
    assert after["customers"][1:] == ROWS["customers"][1:]
    assert after["addresses"] == [{"id": 11, "street": "2 Side St"},
                                  {"id": 12, "street": "3 Far St"}]
    assert after["orders"] == [
        {"id": 100, "customer_id": 1, "address_id": None, "total": 25},
        {"id": 101, "customer_id": 1, "address_id": None, "total": 10},
        *ROWS["orders"][2:]]
    assert after["messages"] == ROWS["messages"][1:]  # only Pat's note to self is gone
    # The re-scan finds nothing of Pat's left, and Sam still finds all of his.
    _, again = shop.gather(MAP, email="pat@example.com")
    assert again == {}
    assert shop.gather(MAP, email="sam@example.com")[1] == sam
