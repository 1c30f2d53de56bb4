"""Identity types of the office's own (a loyalty id): the types the enabled sources'
maps look people up by are offered on staff intake and, where PORTAL_IDENTITY_TYPES
allows, on the portal form; stored on the request's Identity, they reach the
connectors (IdentityData.of), a SQL source finds the person by them, an HTTP
source is sent them (tests/test_http_source.py), a manual source's owner sees them
on the task page, and a request that came by post with a card number and no email
is verified by staff and answered without a single email."""

import datetime

import pytest
import sqlalchemy as sa
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from requests_app.models import Actor, DataSource, OutgoingEmail, Package, PrivacyRequest, State
from requests_app.models.privacy_request import TransitionInputError
from requests_app.services.requests.filing import NewRequest, do_receive_request
from requests_app.services.requests.lifecycle import do_transition
from requests_app.services.requests.tasks import expire_unverified_requests
from requests_app.sources.base import IdentityData
from requests_app.sources.datamap import DatasetMapError, identity_label, parse
from requests_app.sources.sql.connector import SqlConnector
from tests.conftest import PAT, approved, committed, staff_login

pytestmark = pytest.mark.django_db

LOYALTY_MAP = """
name: loyalty
identity_types: {loyalty_id: Loyalty card number}
tables:
  members:
    primary_key: id
    identity: {email: email, loyalty_id: card_no}
    columns: {email: user.contact.email, card_no: user.unique_id}
  stamps:
    primary_key: id
    references: [{column: member_id, to: members.id, direction: from}]
    columns: {store: user.behavior.purchase_history}
"""


@pytest.fixture
def loyalty(tmp_path, monkeypatch):
    """A loyalty database where Lee signed up with an old address: only the card
    number finds them."""
    url = f"sqlite:///{tmp_path / 'loyalty.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE members (id INTEGER PRIMARY KEY, email TEXT, "
                             "card_no TEXT)")
        conn.exec_driver_sql("CREATE TABLE stamps (id INTEGER PRIMARY KEY, member_id INTEGER "
                             "NOT NULL REFERENCES members(id), store TEXT)")
        conn.exec_driver_sql("INSERT INTO members VALUES (1, 'lee.old@example.net', 'LC-7731'),"
                             " (2, 'sam@example.com', 'LC-1000')")
        conn.exec_driver_sql("INSERT INTO stamps VALUES (10, 1, 'Austin'), (11, 2, 'Reno')")
    engine.dispose()
    monkeypatch.setenv("LOYALTY_DSN", url)
    return DataSource.objects.create(name="Loyalty", kind="sql", connection_env="LOYALTY_DSN",
                                     dataset_map=LOYALTY_MAP)


class Sink:
    def __init__(self):
        self.rows = []

    def write(self, collection, record, categories):
        self.rows.append((collection, record))


def intake_form(**extra):
    received = timezone.localtime() - datetime.timedelta(days=2)
    form = {"channel": "post", "received_at": received.strftime("%Y-%m-%dT%H:%M"),
            "request_type": "access", "jurisdiction": "CA", "filed_by": "self",
            "name": "Lee Letter", "email": "lee@example.com", "details": "My data, please.",
            "original": SimpleUploadedFile("letter.pdf", b"%PDF-1.4 the letter",
                                           content_type="application/pdf")}
    form.update(extra)
    return form


def test_a_loyalty_id_filed_at_intake_finds_the_person_in_a_sql_source(
        client, bob, loyalty, settings, tmp_path, source_run):
    settings.MEDIA_ROOT = tmp_path
    staff_login(client, bob)
    page = client.get("/staff/intake/").content.decode()
    assert "Loyalty card number" in page and 'name="identity__loyalty_id"' in page
    with committed():
        response = client.post("/staff/intake/", intake_form(identity__loyalty_id=" LC-7731 "))
    assert response.status_code == 302
    request = PrivacyRequest.objects.get(identity__email="lee@example.com")
    assert request.identity.extra == {"loyalty_id": "LC-7731"}
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "<dt>loyalty_id</dt><dd>LC-7731</dd>" in desk
    identity = IdentityData.of(request.identity)
    assert identity.lookup_values() == {"email": "lee@example.com", "loyalty_id": "LC-7731"}
    sink = Sink()
    outcome = SqlConnector(loyalty).gather(source_run(), identity, sink)
    assert sorted(sink.rows, key=str) == [
        ("members", {"card_no": "LC-7731", "email": "lee.old@example.net"}),
        ("stamps", {"store": "Austin"})]
    assert outcome.records == 2
    # The email alone finds nobody there: the card number did it.
    assert SqlConnector(loyalty).gather(source_run(), IdentityData(email="lee@example.com"),
                                        Sink()).records == 0


def test_intake_refuses_an_overlong_identifier_in_words(client, bob, loyalty):
    staff_login(client, bob)
    response = client.post("/staff/intake/", intake_form(identity__loyalty_id="x" * 201))
    assert response.status_code == 400
    assert b"at most 200 characters" in response.content
    assert not PrivacyRequest.objects.exists()


def test_disabled_sources_and_maps_without_own_types_offer_none(client, bob, loyalty):
    assert DataSource.identity_types() == {"loyalty_id": "Loyalty card number"}
    loyalty.enabled = False
    loyalty.save()
    assert DataSource.identity_types() == {}
    staff_login(client, bob)
    assert b"identity__" not in client.get("/staff/intake/").content


def test_the_portal_asks_for_the_types_the_office_allows(client, loyalty, settings):
    settings.PORTAL_IDENTITY_TYPES = []
    assert b"Loyalty card number" not in client.get("/request/").content
    settings.PORTAL_IDENTITY_TYPES = ["loyalty_id", "device_id"]  # device_id: no source
    page = client.get("/request/").content.decode()
    assert "Loyalty card number (optional)" in page and "identity__device_id" not in page
    with committed():
        response = client.post("/request/", {
            "rights": ["access"], "residence": "VA", "name": "Lee Letter",
            "email": "lee@example.com", "filed_by": "self", "declaration": "on",
            "identity__loyalty_id": "LC-7731"})
    assert response.status_code == 302, response.content.decode()[:2000]
    request = PrivacyRequest.objects.get(identity__email="lee@example.com")
    assert IdentityData.of(request.identity).extra == (("loyalty_id", "LC-7731"),)


def test_a_map_labels_its_own_types_or_they_are_named_from_the_name():
    assert identity_label("loyalty_id") == "Loyalty ID"
    assert identity_label("device_uuid") == "Device UUID"
    assert parse(LOYALTY_MAP).identity_types() == {"loyalty_id": "Loyalty card number"}
    unlabelled = LOYALTY_MAP.replace("identity_types: {loyalty_id: Loyalty card number}\n", "")
    assert parse(unlabelled).identity_types() == {"loyalty_id": "Loyalty ID"}
    with pytest.raises(DatasetMapError, match="line 3: `identity_types` maps an identity type"):
        parse(LOYALTY_MAP.replace("{loyalty_id: Loyalty card number}", "[loyalty_id]"))


def test_a_manual_owner_sees_every_identifier_the_request_gives(client, alice, bob, loyalty):
    DataSource.objects.create(name="Paper archive", kind="manual", owner=bob,
                              categories=["user.contact.address"])
    request = approved("access", alice, phone="+1 555 0100", postal_address="1 Main St",
                       extra={"loyalty_id": "LC-7731"})
    assert request.state == State.WAITING_MANUAL
    run = request.source_runs.get(source__kind="manual")
    staff_login(client, bob)
    page = client.get(f"/staff/tasks/{run.token}/").content.decode()
    for label, value in [("Email", PAT), ("Phone", "+1 555 0100"),
                         ("Postal address", "1 Main St"),
                         ("Loyalty card number", "LC-7731")]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in page


def test_a_request_with_nothing_to_find_the_person_by_is_refused_in_words(client, bob,
                                                                         loyalty):
    with pytest.raises(TransitionInputError, match="Give an email address or another"):
        do_receive_request(NewRequest(request_type="access", jurisdiction="CA",
                                      channel="post", name="Lee Letter", email=""),
                           actor=Actor.system())
    staff_login(client, bob)
    response = client.post("/staff/intake/", intake_form(email=""))
    assert response.status_code == 400
    assert "Give an email address or another identifier" in response.content.decode()
    assert not PrivacyRequest.objects.exists()


def test_a_letter_with_only_a_card_number_is_verified_by_staff_and_answered_by_post(
        client, alice, bob, loyalty, settings, tmp_path):
    """A letter gives a loyalty card number, a postal address and no email: the
    request is entered, nothing is emailed (each notice is a letter to post,
    tests/test_letters.py), it waits for staff to verify the identity (it never
    expires unseen), and once verified and approved the card number finds the
    person's data for the package."""
    settings.MEDIA_ROOT = tmp_path
    staff_login(client, bob)
    page = client.get("/staff/intake/").content.decode()
    assert "leave it empty and give the postal address" in page
    with committed():
        response = client.post("/staff/intake/", intake_form(
            email="", identity__loyalty_id="LC-7731", postal_address="1 Main St"))
    assert response.status_code == 302, response.content.decode()[:2000]
    request = PrivacyRequest.objects.get(identity__extra__loyalty_id="LC-7731")
    assert request.state == State.PENDING_VERIFICATION and request.identity.email == ""
    assert not OutgoingEmail.objects.filter(channel="email").exists()
    assert request.audit_events.filter(action="notice.letter_queued",
                                       data__notice="received").exists()
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-testid="no-email"' in desk and "Mark identity verified" in desk
    PrivacyRequest.objects.filter(pk=request.pk).update(
        received_at=timezone.now() - datetime.timedelta(days=40))
    assert expire_unverified_requests() == 0  # no address to confirm: staff verify it
    with committed():
        do_transition(request.pk, "verify_manually", actor=Actor.staff(bob),
                      methods=["document", "declaration"], evidence=True,
                      points=["name", "account_number", "postal_address"],
                      level="reasonably_high")
    request.refresh_from_db()
    assert request.state == State.IN_REVIEW
    with committed():
        do_transition(request.pk, "approve", actor=Actor.staff(alice))
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    run = request.source_runs.get(source=loyalty)
    assert run.result["tables"] == {"members": 1, "stamps": 1}
    assert Package.objects.filter(request=request).exists()  # staff send it by post
    with committed():
        do_transition(request.pk, "release", actor=Actor.staff(alice))
    assert not OutgoingEmail.objects.filter(channel="email").exists()
    assert set(request.audit_events.filter(action="notice.letter_queued")
               .values_list("data__notice", flat=True)) == {"received", "completed"}
