"""Two email columns and a custom identity in one table, emails stored in mixed
case and padded with spaces (issue 13, defects 2 and 8), and a table with its own
identity column also reached through a declared reference, with a self-reference
(defect 3): the employee's email finds the employee and the service requests
whose employee_id points at them; the manager they point at is not theirs."""

import sqlalchemy as sa

md = sa.MetaData()
sa.Table("members", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("email", sa.String(100)), sa.Column("alt_email", sa.String(100)),
         sa.Column("loyalty_no", sa.String(20)), sa.Column("name", sa.String(100)),
         sa.Column("manager_id", sa.Integer, sa.ForeignKey("members.id")))
sa.Table("service_requests", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("requester_email", sa.String(100)),
         sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id")),
         sa.Column("subject", sa.String(100)))

ROWS = {
    # Bo first: a row's manager must exist before it (PostgreSQL checks at once).
    "members": [
        {"id": 2, "email": "boss@example.com", "alt_email": None, "loyalty_no": "L-2",
         "name": "Bo Ss", "manager_id": None},
        {"id": 1, "email": " Pat@Example.COM ", "alt_email": "pat.work@example.com",
         "loyalty_no": "L-1", "name": "Pat Doe", "manager_id": 2},
        {"id": 3, "email": "sam@example.com", "alt_email": "PAT@example.com ",
         "loyalty_no": None, "name": "Sam Roe", "manager_id": 2}],
    "service_requests": [
        {"id": 900, "requester_email": "guest@example.com", "member_id": 1, "subject": "a"},
        {"id": 901, "requester_email": "  pat.WORK@example.com", "member_id": None,
         "subject": "b"},
        {"id": 902, "requester_email": "guest@example.com", "member_id": 2, "subject": "c"},
        {"id": 903, "requester_email": "x@example.com", "member_id": 3, "subject": "d"}],
}

MAP = """
tables:
  members:
    primary_key: id
    identity: {email: [email, alt_email], loyalty_id: loyalty_no}
    references: [{column: manager_id, to: members.id}]
    columns:
      id: {category: user.unique_id, erase: retain}
      email: user.contact.email
      alt_email: user.contact.email
      loyalty_no: user.unique_id
      name: {category: user.name, erase: mask}
    erase: update
    legal_basis: "Member number kept to answer disputes"
  service_requests:
    primary_key: id
    identity: {email: requester_email}
    references: [{column: member_id, to: members.id}]
    columns:
      requester_email: user.contact.email
      subject: user.content.private
    erase: delete
"""


def test_every_email_column_in_any_case_and_a_custom_identity_find_the_person(company):
    club = company(md, ROWS)
    outcome, rows = club.gather(MAP, email="pat@example.com")
    # Both of Sam's columns are his: Sam's alt_email is Pat's address, so Sam's row
    # is found too (the identity says so); the manager (Bo) is not reached.
    assert [r["id"] for r in rows["members"]] == [1, 3]  # keys are in the package
    assert rows["service_requests"] == [
        {"requester_email": "guest@example.com", "subject": "a"},  # Pat handled it
        {"requester_email": "x@example.com", "subject": "d"}]  # Sam (by alt_email)
    assert outcome.result["identity_types_not_looked_up"] == ["loyalty_id"]

    _, by_alt = club.gather(MAP, email="PAT.work@example.com ")
    assert [r["id"] for r in by_alt["members"]] == [1]
    assert sorted(r["subject"] for r in by_alt["service_requests"]) == ["a", "b"]
    _, by_card = club.gather(MAP, extra={"loyalty_id": "L-2"})
    assert [r["name"] for r in by_card["members"]] == ["Bo Ss"]
    assert [r["subject"] for r in by_card["service_requests"]] == ["c"]


def test_erasure_by_a_padded_mixed_case_address_leaves_nothing_and_nobody_else_changed(
        company):
    club = company(md, ROWS)
    plan = club.plan(MAP, email="pat.work@example.com")
    assert {n: (t["rows"], t["action"]) for n, t in plan.result["tables"].items()} == {
        "members": (1, "update"), "service_requests": (2, "delete")}
    _outcome, left = club.erase(MAP, email="pat.work@example.com")
    assert left == 0
    after = club.state()
    assert after["members"][0] == {"id": 1, "email": None, "alt_email": None,
                                   "loyalty_no": None, "name": "Pxx Dxx", "manager_id": 2}
    assert after["members"][1:] == [ROWS["members"][0], ROWS["members"][2]]  # Bo, Sam
    assert after["service_requests"] == ROWS["service_requests"][2:]
    assert club.gather(MAP, email="pat.work@example.com")[1] == {}
