"""A self-reference and a reference cycle (issue 13). customers.referred_by points
at another customer (declared in the map); customers and accounts point at each
other (customers.primary_account_id -> accounts.id, nullable, and accounts.owner_id
-> customers.id, NOT NULL); tickets form parent chains (tickets.parent_id ->
tickets.id). Traversal ends; Pat's referrer (Kim), the customer Pat referred (Sam)
and Jo, whose primary account is Pat's joint account, are other people: none of
their rows is Pat's. Erasure clears Pat's link to Pat's own account before
deleting it, deletes Pat's ticket chain child first (InnoDB checks a
self-reference row by row), keeps the joint account Jo still uses and says so."""

import sqlalchemy as sa

from requests_app.sources.sql.actions import keyed_hash, mask

md = sa.MetaData()
sa.Table("customers", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
         sa.Column("email", sa.String(100)), sa.Column("name", sa.String(100)),
         sa.Column("referred_by", sa.Integer, sa.ForeignKey("customers.id")),
         sa.Column("primary_account_id", sa.Integer,
                   sa.ForeignKey("accounts.id", use_alter=True,
                                 name="customers_primary_account_fk")))
sa.Table("accounts", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
         sa.Column("owner_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
         sa.Column("label", sa.String(100)))
sa.Table("tickets", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
         sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
         sa.Column("parent_id", sa.Integer, sa.ForeignKey("tickets.id")),
         sa.Column("body", sa.String(100)))

UNLINKED = {"referred_by": None, "primary_account_id": None}
ROWS = {
    # Inserted unlinked (the accounts need the customers): LINKS sets the links after.
    "customers": [{"id": 1, "email": "pat@example.com", "name": "Pat Doe"} | UNLINKED,
                  {"id": 2, "email": "sam@example.com", "name": "Sam Roe"} | UNLINKED,
                  {"id": 3, "email": "kim@example.com", "name": "Kim Poe"} | UNLINKED,
                  {"id": 4, "email": "jo@example.com", "name": "Jo Lee"} | UNLINKED],
    "accounts": [{"id": 10, "owner_id": 1, "label": "Pat and Jo joint"},
                 {"id": 11, "owner_id": 2, "label": "Sam current"},
                 {"id": 12, "owner_id": 3, "label": "Kim current"},
                 {"id": 13, "owner_id": 1, "label": "Pat savings"}],
    # Pat's chain 20 <- 21 <- 22; Pat's 24 answers Sam's 23; Jo's 25 stands alone.
    "tickets": [{"id": 20, "customer_id": 1, "parent_id": None, "body": "card lost"},
                {"id": 21, "customer_id": 1, "parent_id": 20, "body": "still lost"},
                {"id": 22, "customer_id": 1, "parent_id": 21, "body": "found it"},
                {"id": 23, "customer_id": 2, "parent_id": None, "body": "Sam asks"},
                {"id": 24, "customer_id": 1, "parent_id": 23, "body": "Pat answers Sam"},
                {"id": 25, "customer_id": 4, "parent_id": None, "body": "Jo asks"}],
}
# Kim referred Pat, Pat referred Sam. Pat's primary account is Pat's own savings
# (13); Jo's is Pat's joint account (10).
LINKS = {1: {"referred_by": 3, "primary_account_id": 13},
         2: {"referred_by": 1, "primary_account_id": 11},
         3: {"referred_by": None, "primary_account_id": 12},
         4: {"referred_by": None, "primary_account_id": 10}}

MAP = """
name: cycle
tables:
  customers:
    primary_key: id
    identity: {email: email}
    references:
      - {column: referred_by, to: customers.id}
      - {column: primary_account_id, to: accounts.id}
    columns:
      email: {category: user.contact.email, erase: hash}
      name: {category: user.name, erase: mask}
    erase: update
    legal_basis: "Referral bonuses paid are kept for the accounts"
  accounts:
    primary_key: id
    references:
      - {column: owner_id, to: customers.id}
    columns: {label: user.financial}
    erase: delete
  tickets:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
      - {column: parent_id, to: tickets.id}
    columns: {body: user.content.private}
    erase: delete
"""


def _company(company):
    shop = company(md, ROWS)
    customers = md.tables["customers"]
    with shop.engine.begin() as conn:
        for customer, links in LINKS.items():
            conn.execute(sa.update(customers).where(customers.c.id == customer).values(links))
    shop.before = shop.state()
    return shop


def _customer(id_):
    row = next(r for r in ROWS["customers"] if r["id"] == id_)
    return row | LINKS[id_]


def test_a_cycle_ends_and_never_reaches_the_referrer_the_referred_or_a_joint_holder(company):
    shop = _company(company)
    outcome, rows = shop.gather(MAP, email="pat@example.com")
    assert rows == {
        "customers": [{"email": "pat@example.com", "name": "Pat Doe"}],
        "accounts": [{"label": "Pat and Jo joint"}, {"label": "Pat savings"}],
        "tickets": [{"body": "Pat answers Sam"}, {"body": "card lost"},
                    {"body": "found it"}, {"body": "still lost"}],
    }
    assert outcome.result["tables"] == {"customers": 1, "accounts": 2, "tickets": 4}
    assert outcome.records == 7
    # Sam's ticket, which Pat's answers, is reached and withheld: it is Sam's.
    assert outcome.result["withheld_linked_to_others"] == {"tickets": 1}
    _, jo = shop.gather(MAP, email="jo@example.com")
    assert jo == {"customers": [{"email": "jo@example.com", "name": "Jo Lee"}],
                  "tickets": [{"body": "Jo asks"}]}


def test_erasure_orders_its_statements_around_the_cycle_and_keeps_what_jo_uses(company):
    shop = _company(company)
    plan = shop.plan(MAP, email="pat@example.com")
    assert plan.result["tables"] == {
        "tickets": {"rows": 4, "action": "delete"},
        "customers": {"rows": 1, "action": "update",
                      "columns": {"email": "hash", "name": "mask"},
                      "legal_basis": "Referral bonuses paid are kept for the accounts",
                      "cleared_references": ["primary_account_id"]},
        "accounts": {"rows": 1, "action": "delete", "kept_shared": 1,
                     "shared_with": ["customers"]},
    }
    assert plan.result["withheld_linked_to_others"] == {"tickets": 1}
    assert shop.changed() == {}  # the dry run's statements were rolled back

    _outcome, left = shop.erase(MAP, email="pat@example.com")
    assert left == 0
    after = shop.state()
    assert after["customers"] == [
        {"id": 1, "email": keyed_hash("pat@example.com", 100), "name": mask("Pat Doe"),
         "referred_by": 3, "primary_account_id": None},
        _customer(2), _customer(3), _customer(4)]
    assert after["accounts"] == ROWS["accounts"][:3]  # Pat's savings (13) gone
    assert after["tickets"] == [r for r in ROWS["tickets"] if r["customer_id"] != 1]
    assert set(shop.changed()) == {"customers", "accounts", "tickets"}
    assert shop.gather(MAP, email="pat@example.com")[1] == {}
    for email in ("sam@example.com", "kim@example.com", "jo@example.com"):
        _, theirs = shop.gather(MAP, email=email)
        assert theirs["customers"][0]["email"] == email
