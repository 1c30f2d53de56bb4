"""The auditor area: who may see it, what the logs hold, the metrics, retention."""

import csv
import datetime
import hashlib
import io
import json
import zipfile

import pytest
import time_machine
from django.utils import timezone

from requests_app.audit import reports
from requests_app.services.retention.purge import purge_all
from requests_app.models import (
    Actor,
    AuditEvent,
    Identity,
    OutgoingEmail,
    PrivacyRequest,
    State,
)
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import committed, file_request, staff_login

pytestmark = pytest.mark.django_db


def unzip(response):
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    body = archive.read(manifest["file"])
    assert hashlib.sha256(body).hexdigest() == manifest["sha256"]
    assert manifest["bytes"] == len(body)
    return manifest, body.decode()


@pytest.mark.parametrize("persona,status", [("alice", 200), ("bob", 403), ("charlie", 200)])
def test_only_auditors_and_managers_open_the_audit_area(persona, status, client, request):
    staff_login(client, request.getfixturevalue(persona))
    for url in ["/audit/", "/audit/requests/?format=csv", "/audit/events/?format=jsonl",
                "/audit/metrics/2026/"]:
        assert client.get(url).status_code == status, url


def test_anonymous_visitors_are_sent_to_the_login(client):
    assert client.get("/audit/").url.startswith("/staff/login/")


def test_the_request_log_has_one_row_per_request_and_no_identity(client, charlie, alice):
    denied = file_request(state=State.IN_REVIEW, email="pat@example.com")
    do_transition(denied.pk, "deny", actor=Actor.staff(alice), reason_code="unfounded",
                  detail="Fourth identical request this month.")
    file_request(request_type="deletion", email="sam@example.com")
    staff_login(client, charlie)
    manifest, body = unzip(client.get("/audit/requests/?format=csv"))
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 2 and manifest["lines"] == 3
    row = next(r for r in rows if r["reference"] == denied.reference)
    assert row["outcome"] == "denied" and row["denial_reason"] == "unfounded"
    assert row["days_to_respond"] == "0"
    assert list(rows[0]) == reports.REQUEST_LOG_COLUMNS
    for secret in ("pat@example.com", "sam@example.com", "Pat Doe", "Fourth identical"):
        assert secret not in body
    export = AuditEvent.objects.get(action="audit.exported")
    assert export.actor == charlie and export.data["kind"] == "request-log"


def test_the_request_log_is_filtered_by_date_type_and_outcome(client, charlie, days_ago):
    file_request(request_type="access", received_at=days_ago(40))
    file_request(request_type="deletion", received_at=days_ago(3))
    file_request(request_type="deletion", state=State.CANCELLED, received_at=days_ago(3))
    staff_login(client, charlie)
    since = (timezone.localdate() - datetime.timedelta(days=10)).isoformat()
    _, body = unzip(client.get(f"/audit/requests/?format=jsonl&start={since}&type=deletion"))
    assert len(body.splitlines()) == 2
    _, body = unzip(client.get(f"/audit/requests/?format=jsonl&start={since}&outcome=open"))
    assert [json.loads(line)["outcome"] for line in body.splitlines()] == ["open"]


def test_a_bad_filter_gets_a_clear_message_not_an_error(client, charlie):
    staff_login(client, charlie)
    response = client.get("/audit/requests/?format=csv&start=2026-13-45")
    assert response.status_code == 400 and b"Enter a valid date" in response.content
    response = client.get("/audit/requests/?format=csv&start=2026-05-01&end=2026-01-01")
    assert response.status_code == 400 and b"The start date is after the end date" in (
        response.content)
    assert client.get("/audit/requests/?format=xml").status_code == 400


def test_the_event_log_carries_the_chain(client, charlie):
    file_request()
    staff_login(client, charlie)
    _, body = unzip(client.get("/audit/events/?format=jsonl"))
    events = [json.loads(line) for line in body.splitlines()]
    assert "request.received" in {e["action"] for e in events}
    assert all(len(e["hash"]) == 64 for e in events)
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:]))


def make(kind, received, *, responded_after=None, denied=None, cancelled=False):
    """A request received on `received` and answered `responded_after` days later."""
    request = file_request(request_type=kind, jurisdiction="CA", received_at=received)
    fields = {}
    if responded_after is not None:
        responded = received + datetime.timedelta(days=responded_after)
        fields.update(responded_at=responded, closed_at=responded,
                      state=State.DENIED if denied else State.COMPLETED,
                      denial_reason=denied or "")
    if cancelled:
        fields.update(state=State.CANCELLED, closed_at=received)
    PrivacyRequest.objects.filter(pk=request.pk).update(**fields)
    return request


def test_the_metrics_match_a_fixture_computed_by_hand(client, charlie):
    year = 2025
    at = lambda m, d: datetime.datetime(year, m, d, 15, tzinfo=datetime.timezone.utc)  # noqa
    # Deletion: received 4; complied 2 (in 10 and 30 days); denied 1 (unverifiable, in
    # 50 days: late, due after 45); cancelled 1. Median of 10, 30, 50 = 30; mean 30.0;
    # on time 2 of 3.
    make("deletion", at(1, 10), responded_after=10)
    make("deletion", at(2, 1), responded_after=30)
    make("deletion", at(3, 5), responded_after=50, denied="unverifiable")
    make("deletion", at(3, 6), cancelled=True)
    # Access and portability: received 2 (one each); complied 2 in 5 and 8 days:
    # median 6.5, mean 6.5, on time 100%.
    make("access", at(3, 1), responded_after=5)
    make("portability", at(7, 1), responded_after=8)
    # Know: received 1, still open. And one from another year, not counted.
    make("know_categories", at(12, 30))
    make("deletion", datetime.datetime(2024, 12, 31, 12, tzinfo=datetime.timezone.utc),
         responded_after=3)
    report = reports.metrics(year)
    delete = report["groups"]["delete"]
    assert (delete["received"], delete["complied"], delete["denied"]) == (4, 2, 1)
    assert delete["denied_by_reason"]["unverifiable"] == 1
    assert (delete["median_days"], delete["mean_days"], delete["on_time_rate"]) == (
        30, 30.0, round(2 / 3, 3))
    access = report["groups"]["access"]
    assert (access["received"], access["complied"], access["median_days"],
            access["mean_days"], access["on_time_rate"]) == (2, 2, 6.5, 6.5, 1.0)
    know = report["groups"]["know"]
    assert (know["received"], know["complied"], know["median_days"]) == (1, 0, None)
    assert report["received_per_month"] == [1, 1, 3, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    staff_login(client, charlie)
    page = client.get(f"/audit/metrics/{year}/")
    assert page.status_code == 200 and b"Deletion" in page.content
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"/audit/metrics/{year}/?format=csv").content.decode())))
    deletion = next(r for r in rows if r["type"] == "Deletion")
    assert deletion["received"] == "4" and deletion["median_days_to_respond"] == "30"


def test_retention_purges_identity_after_24_months_and_keeps_the_record(alice):
    old = file_request(state=State.IN_REVIEW, email="pat@example.com",
                       details="I bought a red bike")
    with committed():
        do_transition(old.pk, "cancel", actor=Actor.consumer())
    recent = file_request(state=State.CANCELLED, email="sam@example.com")
    # Closed a year after the first one: its 24 months are not over yet.
    PrivacyRequest.objects.filter(pk=recent.pk).update(
        closed_at=timezone.now() + datetime.timedelta(days=365))
    assert OutgoingEmail.objects.filter(request=old).exists()
    with time_machine.travel(timezone.now() + datetime.timedelta(days=365 * 2 - 5)):
        assert purge_all() == 0
    with time_machine.travel(timezone.now() + datetime.timedelta(days=365 * 2 + 5)):
        assert purge_all() == 1
    old.refresh_from_db()
    assert not Identity.objects.filter(request=old).exists()
    assert not OutgoingEmail.objects.filter(request=old).exists()
    assert old.details == "" and old.state == State.CANCELLED and old.received_at
    assert Identity.objects.filter(request=recent).exists()
    event = AuditEvent.objects.get(request=old, action="request.identity_purged")
    assert event.actor_kind == "system"
    assert AuditEvent.objects.filter(request=old, action="request.received").exists()


def test_configuration_changes_are_audited(client, alice, bob):
    from django.contrib.auth.models import Group

    staff_login(client, alice)
    response = client.post("/admin/requests_app/thirdparty/add/", {
        "name": "Contoso Ads", "kind": "third_party", "contact_email": "privacy@contoso.example",
        "categories": "[]"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="config.thirdparty.added")
    assert event.actor == alice and event.data["name"] == "Contoso Ads"
    bob.groups.add(Group.objects.get(name="Auditor"))
    change = AuditEvent.objects.filter(action="config.roles_changed").last()
    assert change.data == {"user": "bob", "change": "add", "roles": ["Auditor"]}


def test_the_event_log_is_the_same_through_the_database_and_through_python():
    """On PostgreSQL the server writes the export (COPY); elsewhere Python does."""
    file_request()
    from_python = list(csv.DictReader(io.StringIO("".join(
        reports.as_csv(reports.event_log(), reports.EVENT_LOG_COLUMNS)))))
    text = b"".join(c if isinstance(c, bytes) else c.encode()
                    for c in reports.event_log_text("csv")).decode()
    from_database = list(csv.DictReader(io.StringIO(text)))
    assert [r["hash"] for r in from_database] == [r["hash"] for r in from_python]
    assert list(from_database[0]) == reports.EVENT_LOG_COLUMNS
    for db_row, py_row in zip(from_database, from_python):
        assert json.loads(db_row["data"]) == json.loads(py_row["data"])
        assert datetime.datetime.fromisoformat(db_row["time"]) == \
            datetime.datetime.fromisoformat(py_row["time"])
    lines = b"".join(c if isinstance(c, bytes) else c.encode()
                     for c in reports.event_log_text("jsonl")).decode().splitlines()
    assert [json.loads(line)["hash"] for line in lines] == [r["hash"] for r in from_python]


def test_a_manifest_lists_only_the_filters_that_applied(client, charlie):
    file_request()
    staff_login(client, charlie)
    manifest, _ = unzip(client.get("/audit/events/?format=csv&type=deletion&start=2020-01-01"))
    assert manifest["filters"] == {"start": "2020-01-01"}
    manifest, _ = unzip(client.get("/audit/requests/?format=csv&type=deletion"))
    assert manifest["filters"] == {"type": "deletion"}
