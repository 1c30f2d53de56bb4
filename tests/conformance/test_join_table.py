"""A many-to-many join table with a composite key and NOT NULL foreign keys
(ON DELETE RESTRICT and CASCADE): Pat's memberships are Pat's; the group only Pat
belongs to is erased with them, the group Pat shares with Sam is shown to both
and kept; erasure deletes children before parents, so no constraint fires."""

import sqlalchemy as sa

md = sa.MetaData()
sa.Table("customers", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("email", sa.String(100)))
sa.Table("groups", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("title", sa.String(100)))
sa.Table("memberships", md,
         sa.Column("customer_id", sa.Integer,
                   sa.ForeignKey("customers.id", ondelete="RESTRICT"), primary_key=True),
         sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"),
                   primary_key=True),
         sa.Column("nickname", sa.String(100)))

ROWS = {
    "customers": [{"id": 1, "email": "pat@example.com"}, {"id": 2, "email": "sam@example.com"}],
    "groups": [{"id": 10, "title": "Pat's knitting"}, {"id": 11, "title": "Book club"},
               {"id": 12, "title": "Sam's chess"}],
    "memberships": [{"customer_id": 1, "group_id": 10, "nickname": "pd"},
                    {"customer_id": 1, "group_id": 11, "nickname": "patty"},
                    {"customer_id": 2, "group_id": 11, "nickname": "sr"},
                    {"customer_id": 2, "group_id": 12, "nickname": "sam"}],
}

MAP = """
tables:
  customers:
    identity: {email: email}
    columns: {email: user.contact.email}
    erase: delete
  memberships:
    primary_key: [customer_id, group_id]
    references:
      - {column: customer_id, to: customers.id}
      - {column: group_id, to: groups.id}
    columns: {nickname: user.name}
    erase: delete
  groups:
    columns: {title: user.content.public}
    erase: delete
"""


def test_a_join_table_finds_the_persons_groups_and_erases_only_theirs(company):
    club = company(md, ROWS)
    outcome, rows = club.gather(MAP, email="pat@example.com")
    assert rows == {"customers": [{"email": "pat@example.com"}],
                    "memberships": [{"nickname": "patty"}, {"nickname": "pd"}],
                    "groups": [{"title": "Book club"}, {"title": "Pat's knitting"}]}
    assert outcome.result["keys_read_from_database"] == {"customers": ["id"],
                                                         "groups": ["id"]}
    plan = club.plan(MAP, email="pat@example.com")
    assert plan.result["tables"] == {
        "customers": {"rows": 1, "action": "delete"},
        "memberships": {"rows": 2, "action": "delete"},
        "groups": {"rows": 1, "action": "delete", "kept_shared": 1,
                   "shared_with": ["memberships"]}}
    assert club.changed() == {}
    _outcome, left = club.erase(MAP, email="pat@example.com")
    assert left == 0
    assert club.state() == {
        "customers": [ROWS["customers"][1]],
        "groups": ROWS["groups"][1:],
        "memberships": ROWS["memberships"][2:]}
    assert club.gather(MAP, email="pat@example.com")[1] == {}
    _, sam = club.gather(MAP, email="sam@example.com")
    assert sam["groups"] == [{"title": "Book club"}, {"title": "Sam's chess"}]
