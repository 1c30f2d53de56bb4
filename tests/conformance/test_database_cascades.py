"""NOT NULL foreign keys, ON DELETE CASCADE and SET NULL, and tables outside the
map (issue 13), in a legacy CRM. Contacts point (NOT NULL) at companies several
people work for and at addresses; notes go with their contact (ON DELETE
CASCADE); kept invoices point (NOT NULL) at the company; two tables the map does
not describe point in: staff at an address (NOT NULL) and an audit log at
contacts (ON DELETE SET NULL). The dry run says what the database itself will do
(the audit rows it unlinks), keeps the shared company and the address staff use,
says what stays linked, and refuses an erasure whose CASCADE would delete a row
tied to another person (Sam's note about Kim)."""

import pytest
import sqlalchemy as sa

from requests_app.sources.base import SourceError
from requests_app.sources.sql.connector import SqlConnector


def _fk(column, target, name, ondelete=None, nullable=False):
    return (sa.Column(column, sa.Integer, nullable=nullable),
            sa.ForeignKeyConstraint([column], [target], name=name, ondelete=ondelete))


def _id():
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)


md = sa.MetaData()
sa.Table("companies", md, _id(), sa.Column("name", sa.String(100), nullable=False))
sa.Table("addresses", md, _id(), sa.Column("street", sa.String(100), nullable=False))
sa.Table("contacts", md, _id(), sa.Column("email", sa.String(100), nullable=False),
         sa.Column("name", sa.String(100)),
         *_fk("company_id", "companies.id", "contacts_company_fk", "RESTRICT"),
         *_fk("address_id", "addresses.id", "contacts_address_fk", "RESTRICT"))
sa.Table("notes", md, _id(), *_fk("contact_id", "contacts.id", "notes_contact_fk", "CASCADE"),
         *_fk("author_id", "contacts.id", "notes_author_fk", "SET NULL", nullable=True),
         sa.Column("body", sa.String(100)))
sa.Table("invoices", md, _id(),
         *_fk("contact_id", "contacts.id", "invoices_contact_fk", nullable=True),
         *_fk("company_id", "companies.id", "invoices_company_fk"),
         sa.Column("amount", sa.Integer))
# Outside the map:
sa.Table("staff", md, _id(), sa.Column("name", sa.String(100)),
         *_fk("address_id", "addresses.id", "staff_address_fk"))
sa.Table("audit_log", md, _id(),
         *_fk("contact_id", "contacts.id", "audit_contact_fk", "SET NULL", nullable=True),
         sa.Column("action", sa.String(20)))

ROWS = {
    "companies": [{"id": 1, "name": "Acme"}, {"id": 2, "name": "Pat Solo Ltd"}],
    "addresses": [{"id": 10, "street": "1 Office Park"}, {"id": 11, "street": "2 Home Lane"},
                  {"id": 12, "street": "3 Sam St"}, {"id": 13, "street": "4 Kim Rd"}],
    # Pat twice (a legacy CRM's duplicate, in another case); Sam and Kim at Acme too.
    "contacts": [{"id": 1, "email": "pat@example.com", "name": "Pat Doe", "company_id": 1,
                  "address_id": 10},
                 {"id": 2, "email": "PAT@example.com", "name": "P. Doe", "company_id": 2,
                  "address_id": 11},
                 {"id": 3, "email": "sam@example.com", "name": "Sam Roe", "company_id": 1,
                  "address_id": 12},
                 {"id": 4, "email": "kim@example.com", "name": "Kim Poe", "company_id": 1,
                  "address_id": 13}],
    "notes": [{"id": 1, "contact_id": 1, "author_id": None, "body": "renewal call"},
              {"id": 2, "contact_id": 2, "author_id": None, "body": "prefers email"},
              {"id": 3, "contact_id": 3, "author_id": None, "body": "Sam's note"},
              {"id": 4, "contact_id": 4, "author_id": 3, "body": "Sam met Kim"}],
    "invoices": [{"id": 100, "contact_id": 1, "company_id": 1, "amount": 500},
                 {"id": 102, "contact_id": 3, "company_id": 1, "amount": 90}],
    "staff": [{"id": 1, "name": "Reception", "address_id": 10}],
    "audit_log": [{"id": 1, "contact_id": 1, "action": "viewed"},
                  {"id": 2, "contact_id": 3, "action": "viewed"},
                  {"id": 3, "contact_id": 2, "action": "exported"},
                  {"id": 4, "contact_id": 4, "action": "viewed"}],
}

MAP = """
name: legacy_crm
tables:
  contacts:
    primary_key: id
    identity: {email: email}
    references:
      - {column: company_id, to: companies.id}
      - {column: address_id, to: addresses.id}
    columns: {email: user.contact.email, name: user.name}
    erase: delete
  notes:
    primary_key: id
    references:
      - {column: contact_id, to: contacts.id}
      - {column: author_id, to: contacts.id}
    columns: {body: user.content.private}
    erase: delete
  invoices:
    primary_key: id
    references:
      - {column: contact_id, to: contacts.id}
      - {column: company_id, to: companies.id}
    columns: {amount: user.financial}
    erase: retain
    legal_basis: "Invoices kept seven years for tax law"
  companies:
    primary_key: id
    columns: {name: user.workplace}
    erase: delete
  addresses:
    primary_key: id
    columns: {street: user.contact.address.street}
    erase: delete
"""


def test_the_map_is_valid_the_database_unlinks_the_audit_rows_itself(company):
    crm = company(md, ROWS)
    assert SqlConnector(crm.source(MAP)).check() == []


def test_the_dry_run_says_what_the_database_does_what_is_kept_and_what_stays_linked(company):
    crm = company(md, ROWS)
    outcome, rows = crm.gather(MAP, email="pat@example.com")
    assert rows == {
        "contacts": [{"email": "PAT@example.com", "name": "P. Doe"},
                     {"email": "pat@example.com", "name": "Pat Doe"}],
        "notes": [{"body": "prefers email"}, {"body": "renewal call"}],
        "invoices": [{"amount": 500}],
        "companies": [{"name": "Acme"}, {"name": "Pat Solo Ltd"}],
        "addresses": [{"street": "1 Office Park"}, {"street": "2 Home Lane"}],
    }
    assert outcome.records == 9
    assert "withheld_linked_to_others" not in outcome.result

    plan = crm.plan(MAP, email="pat@example.com")
    assert plan.result["tables"] == {
        "notes": {"rows": 2, "action": "delete"},
        "invoices": {"rows": 1, "action": "retain",
                     "legal_basis": "Invoices kept seven years for tax law",
                     "cleared_references": ["contact_id"],
                     "stays_linked": [{"column": "company_id", "to": "companies", "rows": 1,
                                       "reason": "NOT NULL"}]},
        "contacts": {"rows": 2, "action": "delete",
                     "by_the_database": [{"table": "audit_log", "column": "contact_id",
                                          "constraint": "audit_contact_fk",
                                          "on_delete": "SET NULL", "rows": 2}]},
        "companies": {"rows": 1, "action": "delete", "kept_shared": 1,
                      "shared_with": ["contacts", "invoices"]},
        "addresses": {"rows": 1, "action": "delete", "kept_shared": 1,
                      "shared_with": ["staff"]},
    }
    assert crm.changed() == {}

    erased, left = crm.erase(MAP, email="pat@example.com")
    assert left == 0
    assert erased.result["done"]["contacts"]["by_the_database"] == \
        plan.result["tables"]["contacts"]["by_the_database"]
    after = crm.state()
    assert after == {
        "companies": ROWS["companies"][:1],
        "addresses": [ROWS["addresses"][0], *ROWS["addresses"][2:]],
        "contacts": ROWS["contacts"][2:],
        "notes": ROWS["notes"][2:],
        "invoices": [{"id": 100, "contact_id": None, "company_id": 1, "amount": 500},
                     ROWS["invoices"][1]],
        "staff": ROWS["staff"],
        # The database's own doing, as the dry run said: Pat's audit rows unlinked.
        "audit_log": [{"id": 1, "contact_id": None, "action": "viewed"},
                      ROWS["audit_log"][1],
                      {"id": 3, "contact_id": None, "action": "exported"},
                      ROWS["audit_log"][3]],
    }
    assert crm.gather(MAP, email="pat@example.com")[1] == {}
    _, sam = crm.gather(MAP, email="sam@example.com")
    assert sam["invoices"] == [{"amount": 90}] and sam["notes"] == [{"body": "Sam's note"}]


def test_a_cascade_that_would_delete_another_persons_row_is_refused_in_words(company):
    """Sam's note about Kim is tied to Sam too: never erased for Kim. Deleting
    Kim's contact row would make the database delete it (ON DELETE CASCADE), so the
    dry run refuses, naming the table, the constraint and why; nothing changes."""
    crm = company(md, ROWS)
    _, kim = crm.gather(MAP, email="kim@example.com")
    assert "notes" not in kim
    with pytest.raises(SourceError) as raised:
        crm.plan(MAP, email="kim@example.com")
    message = str(raised.value)
    assert "`notes`" in message and "notes_contact_fk" in message and "CASCADE" in message
    assert "other people" in message
    assert "Kim" not in message and "kim@example.com" not in message
    assert crm.changed() == {}
    with pytest.raises(SourceError, match="notes_contact_fk"):
        crm.erase(MAP, email="kim@example.com")
    assert crm.changed() == {}
