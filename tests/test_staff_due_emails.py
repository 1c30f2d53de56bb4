"""Staff see what is coming due (issue 15, item 3): a daily digest to assignees
(their requests) and managers (all) of open requests due within
STAFF_DIGEST_BUSINESS_DAYS business days or overdue, an email to the assignee when
someone assigns them a request, both through the outbox and both turned off per
person on the staff settings page."""

import datetime

import pytest
import time_machine
from django.core import mail

from requests_app.models import OutgoingEmail, PrivacyRequest, StaffEmailSettings, State
from requests_app.services.notices import tasks as notice_tasks
from requests_app.services.requests.desk import do_assign, do_claim
from tests.conftest import committed, file_request, staff_login

pytestmark = pytest.mark.django_db

# Wed 25 Nov 2026. Three California business days: Fri 27 (the day after
# Thanksgiving is a California-only holiday: a business day), Mon 30, Tue 1 Dec.
TODAY = datetime.date(2026, 11, 25)


@pytest.fixture
def on_the_25th():
    with time_machine.travel(datetime.datetime(2026, 11, 25, 15, tzinfo=datetime.UTC),
                             tick=False):
        yield


def due(on: datetime.date, assignee=None, state=State.IN_REVIEW, email="pat@example.com"):
    request = file_request(jurisdiction="CA", state=state, email=email)
    PrivacyRequest.objects.filter(pk=request.pk).update(due_on=on, assignee=assignee)
    request.refresh_from_db()
    return request


def digests() -> dict[str, str]:
    with committed():
        notice_tasks.send_staff_digests()
    return {m.to[0]: m.body for m in mail.outbox if "Privacy requests:" in m.subject}


def test_the_daily_digest_lists_an_assignees_requests_due_within_3_business_days_and_overdue(
        on_the_25th, alice, bob):
    overdue = due(TODAY - datetime.timedelta(days=2), bob, email="a@example.com")
    soon = due(datetime.date(2026, 12, 1), bob, email="b@example.com")
    later = due(datetime.date(2026, 12, 2), bob, email="c@example.com")
    others = due(TODAY, alice, email="d@example.com")
    sent = digests()
    mine = sent["bob@staff.example"]
    assert overdue.reference in mine and "2 days overdue" in mine
    assert soon.reference in mine and "in 6 days" in mine
    assert later.reference not in mine and others.reference not in mine
    assert f"/staff/requests/{soon.reference}/" in mine and "/staff/settings/" in mine
    # Staff emails carry references and links, never the person's data.
    assert "a@example.com" not in mine and "Pat Doe" not in mine


def test_a_manager_gets_every_request_due_soon_or_overdue_with_who_holds_it(
        on_the_25th, alice, bob):
    held = due(TODAY - datetime.timedelta(days=1), bob, email="a@example.com")
    nobodys = due(TODAY, email="b@example.com")
    later = due(datetime.date(2026, 12, 2), email="c@example.com")
    theirs = digests()["alice@staff.example"]
    assert f"{held.reference}: " in theirs and "assigned to bob" in theirs
    assert nobodys.reference in theirs and "assigned to nobody" in theirs
    assert later.reference not in theirs
    assert "Overdue (1)" in theirs and "Due soon (1)" in theirs


def test_closed_requests_are_not_in_the_digest_and_nobody_gets_an_empty_one(on_the_25th, alice, bob):
    due(TODAY - datetime.timedelta(days=5), bob, state=State.COMPLETED)
    assert digests() == {}
    assert not OutgoingEmail.objects.filter(notice="digest").exists()


def test_the_digest_goes_through_the_outbox_once_a_day(alice, bob):
    with time_machine.travel(datetime.datetime(2026, 11, 25, 15, tzinfo=datetime.UTC)):
        request = due(TODAY, bob)
        assert set(digests()) == {"alice@staff.example", "bob@staff.example"}
        mail.outbox.clear()
        assert digests() == {}  # started again the same day: nothing more
    email = OutgoingEmail.objects.filter(notice="digest", to="bob@staff.example").get()
    assert email.request is None and email.sent_at is not None
    assert request.reference in email.body_text
    with time_machine.travel(datetime.datetime(2026, 11, 26, 15, tzinfo=datetime.UTC)):
        assert "bob@staff.example" in digests()  # the next day, again


def test_a_staff_member_who_turned_the_digest_off_gets_none(on_the_25th, client, alice, bob):
    due(TODAY, bob)
    staff_login(client, bob)
    response = client.post("/staff/settings/", {"on_assignment": "on"})
    assert response.status_code == 302
    settings_row = StaffEmailSettings.objects.get(user=bob)
    assert not settings_row.daily_digest and settings_row.on_assignment
    assert set(digests()) == {"alice@staff.example"}


def test_assigning_a_request_emails_the_assignee(alice, bob):
    request = file_request(jurisdiction="CA", state=State.IN_REVIEW)
    with committed():
        do_assign([request.pk], bob, by=alice)
    [message] = [m for m in mail.outbox if m.to == ["bob@staff.example"]]
    assert message.subject.startswith(f"Assigned to you: {request.reference}")
    assert "alice assigned a privacy request to you" in message.body
    assert f"/staff/requests/{request.reference}/" in message.body
    assert "pat.doe@example.com" not in message.body
    assert OutgoingEmail.objects.get(notice="assigned").request is None


def test_claiming_a_request_oneself_sends_no_email(bob):
    request = file_request(jurisdiction="CA", state=State.IN_REVIEW)
    with committed():
        do_claim(request.pk, by=bob)
    assert not OutgoingEmail.objects.filter(notice="assigned").exists()


def test_the_assignment_email_can_be_turned_off(client, alice, bob):
    staff_login(client, bob)
    client.post("/staff/settings/", {"daily_digest": "on"})
    request = file_request(jurisdiction="CA", state=State.IN_REVIEW)
    with committed():
        do_assign([request.pk], bob, by=alice)
    assert not [m for m in mail.outbox if m.to == ["bob@staff.example"]]
    assert StaffEmailSettings.objects.get(user=bob).daily_digest


def test_the_settings_page_is_reachable_from_the_staff_workspace(client, bob):
    staff_login(client, bob)
    assert 'href="/staff/settings/"' in client.get("/staff/queue/").content.decode()
    page = client.get("/staff/settings/").content.decode()
    # Both emails are on until turned off.
    assert page.count("checked") == 2 and "bob@staff.example" in page


def test_the_settings_page_needs_a_staff_login(client):
    response = client.get("/staff/settings/")
    assert response.status_code == 302 and "/staff/login/" in response.url


def test_the_beat_schedule_sends_the_digest_daily():
    from privacyportal.celery import app

    entry = app.conf.beat_schedule["send-staff-digests"]
    assert entry["task"] == "requests_app.services.notices.tasks.send_staff_digests"
