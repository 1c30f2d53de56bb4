"""The staff workspace: login with TOTP, queue, desk and its steps, intake,
duplicates, dashboard, email templates."""

import datetime
import time

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from requests_app.models import (
    AuditEvent,
    EmailTemplateVersion,
    IntakeRecord,
    OutgoingEmail,
    PrivacyRequest,
    RequestNote,
    State,
)
from requests_app.services.notices import templates as email_templates
from tests.conftest import committed, file_request, staff_login, totp_code, totp_device

pytestmark = pytest.mark.django_db


def desk_url(request):
    return f"/staff/requests/{request.reference}/"


def step(client, request, name, **inputs):
    """Post a step as the desk's form does (with the state and version it showed)."""
    request.refresh_from_db()
    form = {f"{name}-{k}": v for k, v in inputs.items()}
    form.setdefault(f"{name}-expected_state", request.state)
    form.setdefault(f"{name}-version", request.version)
    with committed():
        return client.post(f"{desk_url(request)}step/{name}/", form)


# --- login --------------------------------------------------------------------------


def login(client, user, code, password="x" * 16, next_url=""):
    return client.post("/staff/login/", {"username": user.username, "password": password,
                                         "otp_token": code, "next": next_url})


def test_a_staff_member_logs_in_with_password_and_code(client, alice):
    device = totp_device(alice)
    response = login(client, alice, totp_code(device), next_url="/staff/queue/")
    assert response.status_code == 302 and response["Location"] == "/staff/queue/"
    assert client.get("/staff/queue/").status_code == 200
    assert AuditEvent.objects.filter(action="staff.logged_in", actor=alice).exists()


def test_a_wrong_code_or_password_gets_the_same_message(client, alice):
    device = totp_device(alice)
    wrong_code = login(client, alice, f"{(int(totp_code(device)) + 1) % 10**6:06d}")
    wrong_password = login(client, alice, totp_code(device), password="nope" * 4)
    for response in (wrong_code, wrong_password):
        assert response.status_code == 400
        assert "user name, password or code is wrong" in response.content.decode()
    assert client.get("/staff/queue/").status_code == 302


def test_an_account_without_an_authenticator_cannot_log_in(client, bob):
    response = login(client, bob, "123456")
    assert response.status_code == 400 and b"no authenticator" in response.content


def test_an_offsite_next_is_ignored(client, charlie):
    response = login(client, charlie, totp_code(totp_device(charlie)),
                     next_url="https://evil.example/")
    assert response["Location"] == "/audit/"


def test_repeated_failures_lock_the_login_out(client, alice, settings):
    device = totp_device(alice)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, alice, "000000", password="wrong-password-1")
    response = login(client, alice, totp_code(device))  # right at last: still locked
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert client.get("/staff/queue/").status_code == 302


def test_wrong_codes_count_towards_the_lockout_and_slow_the_device(client, alice, settings):
    device = totp_device(alice)
    login(client, alice, "000000")
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    response = login(client, alice, totp_code(device))  # within the back-off delay
    assert response.status_code == 400 and b"Too many wrong codes" in response.content
    from axes.models import AccessAttempt

    assert AccessAttempt.objects.get(username="alice").failures_since_start == 2


def test_a_session_ends_after_the_idle_time(client, bob, settings):
    staff_login(client, bob)
    assert client.get("/staff/queue/").status_code == 200
    session = client.session
    session["staff_seen"] = int(time.time()) - settings.STAFF_IDLE_MINUTES * 60 - 5
    session.save()
    response = client.get("/staff/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/staff/login/")
    assert client.get("/staff/queue/").status_code == 302


def test_a_session_ends_at_the_latest_after_its_cookie_age(client, bob, settings):
    from django.contrib.sessions.models import Session

    staff_login(client, bob)
    assert client.get("/staff/queue/").status_code == 200
    assert settings.SESSION_COOKIE_AGE <= 8 * 3600
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE
    # Active all along, but the session is older than its age: it is gone.
    Session.objects.filter(session_key=client.session.session_key).update(
        expire_date=timezone.now() - datetime.timedelta(seconds=1))
    response = client.get("/staff/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/staff/login/")


def test_polling_the_progress_does_not_keep_a_session_alive(client, bob, settings):
    request = file_request(state=State.FULFILLING)
    staff_login(client, bob)
    client.get("/staff/queue/")
    session = client.session
    idle = settings.STAFF_IDLE_MINUTES * 60
    session["staff_seen"] = int(time.time()) - idle + 120
    session.save()
    progress = f"{desk_url(request)}progress/"
    assert client.get(progress, HTTP_X_REQUESTED_WITH="fetch").status_code == 200
    session = client.session
    session["staff_seen"] -= 150  # the poll did not count: now past the idle time
    session.save()
    response = client.get(progress, HTTP_X_REQUESTED_WITH="fetch")
    assert response.status_code == 302 and response["Location"].startswith("/staff/login/")


def test_a_lockout_lifts_after_the_cool_off_time(client, alice, settings, time_machine):
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == datetime.timedelta(minutes=15)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    device = totp_device(alice)
    time_machine.move_to(timezone.now(), tick=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, alice, "000000", password="wrong-password-1")
    time_machine.shift(datetime.timedelta(minutes=14))
    # Still locked; a try while locked starts the cool-off again (django-axes).
    assert login(client, alice, totp_code(device)).status_code == 429
    time_machine.shift(datetime.timedelta(minutes=14))
    assert login(client, alice, totp_code(device)).status_code == 429
    time_machine.shift(datetime.timedelta(minutes=16))
    response = login(client, alice, totp_code(device))
    assert response.status_code == 302
    assert client.get("/staff/queue/").status_code == 200


# --- queue --------------------------------------------------------------------------


def test_the_queue_lists_open_requests_by_due_date_with_days_left(client, bob, days_ago):
    late = file_request(received_at=days_ago(50), email="a@example.com")
    soon = file_request(received_at=days_ago(42), email="b@example.com")
    fresh = file_request(received_at=days_ago(1), email="c@example.com")
    file_request(state=State.CLOSED, email="d@example.com")
    staff_login(client, bob)
    page = client.get("/staff/queue/").content.decode()
    order = [page.index(r.reference) for r in (late, soon, fresh)]
    assert order == sorted(order)
    assert page.count('data-reference="') == 3
    assert 'class="overdue" data-testid="days-left"' in page
    assert 'class="soon" data-testid="days-left"' in page
    assert "days overdue" in page


def test_the_queue_filters_and_searches(client, bob, days_ago):
    access = file_request(email="Pat.Doe@Example.com")
    deletion = file_request(request_type="deletion", jurisdiction="CA", email="sam@example.com",
                            state=State.IN_REVIEW)
    overdue = file_request(received_at=days_ago(60), email="old@example.com")
    closed = file_request(state=State.CLOSED, email="gone@example.com")
    staff_login(client, bob)

    def listed(query):
        page = client.get(f"/staff/queue/?{query}").content.decode()
        return {r.reference for r in (access, deletion, overdue, closed) if r.reference in page}

    assert listed("type=deletion") == {deletion.reference}
    assert listed("state=in_review&jurisdiction=CA") == {deletion.reference}
    assert listed("due=overdue") == {overdue.reference}
    assert listed("due=week") == set()
    assert listed("q=pat.doe%40example.COM") == {access.reference}
    compact = closed.reference.replace("-", "").lower()
    assert listed(f"q={compact}") == {closed.reference}  # a search finds closed ones too
    assert listed("state=bogus") == {access.reference, deletion.reference, overdue.reference}


def test_my_requests_claim_and_bulk_assign(client, alice, bob):
    first, second, third = (file_request(email=f"p{i}@example.com") for i in range(3))
    staff_login(client, bob)
    assert client.post(f"/staff/requests/{first.reference}/claim/").status_code == 302
    page = client.get("/staff/queue/?mine=1").content.decode()
    assert first.reference in page and second.reference not in page
    # An analyst cannot take a request someone holds.
    staff_login(client, alice)
    client.post("/staff/queue/assign/", {"ids": [second.pk, third.pk], "assignee": bob.pk})
    assert set(PrivacyRequest.objects.filter(assignee=bob).values_list("pk", flat=True)) == {
        first.pk, second.pk, third.pk}
    client.post(f"/staff/requests/{first.reference}/claim/")
    assert PrivacyRequest.objects.get(pk=first.pk).assignee == alice
    staff_login(client, bob)
    client.post(f"/staff/requests/{first.reference}/claim/")
    assert PrivacyRequest.objects.get(pk=first.pk).assignee == alice
    events = AuditEvent.objects.filter(action="request.assigned")
    assert events.count() == 4 and {e.data["to"] for e in events} == {"alice", "bob"}


def _queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("query", ["", "?state=pending_verification&type=access",
                                   "?q=pat.doe%40example.com", "?mine=1&due=week"])
def test_the_queue_makes_as_many_queries_for_30_rows_as_for_2(
        query, client, alice, bob, django_assert_max_num_queries):
    for _ in range(2):
        file_request()
    staff_login(client, alice)
    client.get("/staff/queue/")  # the session's first save is not the queue's cost
    few = _queries(client, f"/staff/queue/{query}")
    for i in range(28):
        request = file_request()
        PrivacyRequest.objects.filter(pk=request.pk).update(assignee=alice if i % 2 else bob)
    with django_assert_max_num_queries(10):
        client.get(f"/staff/queue/{query}")
    assert _queries(client, f"/staff/queue/{query}") == few


# days left -> (queue colour, in "due this week")
BOUNDARIES = {-1: ("overdue", False), 0: ("soon", True), 5: ("soon", True), 6: ("", True),
              7: ("", True), 8: ("", False)}


def test_colours_and_due_this_week_at_their_boundaries(client, bob):
    today = timezone.localdate()
    rows = {}
    for days in BOUNDARIES:
        request = file_request(email=f"d{days + 1}@example.com")
        PrivacyRequest.objects.filter(pk=request.pk).update(
            due_on=today + datetime.timedelta(days=days), extended_due_on=None)
        rows[days] = request.reference
    # An extension moves the date that counts: due in 30 days, extended to tomorrow+1.
    extended = file_request(email="ext@example.com")
    PrivacyRequest.objects.filter(pk=extended.pk).update(
        due_on=today - datetime.timedelta(days=3), extended_due_on=today + datetime.timedelta(2))
    staff_login(client, bob)
    page = client.get("/staff/queue/").content.decode()
    for days, (colour, _) in BOUNDARIES.items():
        row = page[page.index(f'data-reference="{rows[days]}"'):]
        cell = row[row.index("<td class="):]
        assert cell.startswith(f'<td class="{colour}" data-testid="days-left">'), days
    row = page[page.index(f'data-reference="{extended.reference}"'):]
    assert '<td class="soon" data-testid="days-left">2<' in row
    week = client.get("/staff/queue/?due=week").content.decode()
    listed = {days for days, ref in rows.items() if ref in week}
    assert listed == {days for days, (_, in_week) in BOUNDARIES.items() if in_week}
    assert extended.reference in week
    overdue = client.get("/staff/queue/?due=overdue").content.decode()
    assert rows[-1] in overdue and rows[0] not in overdue and extended.reference not in overdue
    # The dashboard counts the same requests.
    dashboard = client.get("/staff/").content.decode()
    assert f'data-testid="due-week">{len(listed) + 1}<' in dashboard
    assert 'data-testid="overdue">1<' in dashboard


def test_the_queue_pages(client, bob):
    for i in range(27):
        file_request(email=f"p{i}@example.com")
    staff_login(client, bob)
    first = client.get("/staff/queue/").content.decode()
    second = client.get("/staff/queue/?page=2").content.decode()
    assert first.count('data-reference="') == 25 and second.count('data-reference="') == 2
    assert "page=2" in first and "27 requests" in first


# --- the desk -----------------------------------------------------------------------


def test_opening_the_desk_is_audited_and_shows_identity_and_timeline(client, bob):
    request = file_request(phone="+1 555 0100")
    staff_login(client, bob)
    client.post(f"{desk_url(request)}notes/", {"text": "Called, left a message."})
    page = client.get(desk_url(request)).content.decode()
    assert "Pat Doe" in page and "+1 555 0100" in page
    assert "request.received" in page and "Called, left a message." in page
    assert "We received your privacy request" in page  # the email sent, in the timeline
    assert "template default" in page
    event = AuditEvent.objects.filter(action="staff.viewed_identity", request=request).get()
    assert event.actor == bob and event.data == {"page": "request desk"}
    note_event = AuditEvent.objects.get(action="request.note_added")
    assert "Called" not in str(note_event.data)


def test_the_desk_offers_the_steps_of_the_state(client, alice):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, alice)
    page = client.get(desk_url(request)).content.decode()
    for name in ("approve", "deny", "cancel", "extend", "request_information"):
        assert f'data-step="{name}"' in page
    assert 'data-step="release"' not in page
    assert request.complaint_text[:40] in page  # shown with the denial


def test_progress_refreshes_itself_while_fulfilment_runs(client, bob):
    request = file_request(state=State.FULFILLING)
    staff_login(client, bob)
    page = client.get(desk_url(request)).content.decode()
    assert f'data-poll="/staff/requests/{request.reference}/progress/"' in page
    assert "Reload the page" in page
    fragment = client.get(f"{desk_url(request)}progress/").content.decode()
    assert 'id="progress"' in fragment and "<html" not in fragment


def test_a_denial_needs_a_reason_and_sends_the_complaint_text(client, alice):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, alice)
    response = step(client, request, "deny", detail="No reason code given.")
    assert response.status_code == 400 and b"Select a valid choice" not in response.content
    assert b"This field is required" in response.content
    response = step(client, request, "deny", reason_code="exemption", detail="  ")
    assert response.status_code == 400
    assert PrivacyRequest.objects.get(pk=request.pk).state == State.IN_REVIEW
    response = step(client, request, "deny", reason_code="exemption",
                    detail="Kept for a pending legal claim.")
    assert response.status_code == 302
    assert PrivacyRequest.objects.get(pk=request.pk).state == State.DENIED
    email = mail.outbox[-1]
    assert "Kept for a pending legal claim." in email.body
    assert request.complaint_text in email.body


def test_an_extension_after_the_due_date_is_refused(client, alice, days_ago):
    request = file_request(received_at=days_ago(60), state=State.IN_REVIEW)
    staff_login(client, alice)
    response = step(client, request, "extend", notice="We need more time.")
    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("only once, on or before the original due date" in m for m in messages)
    assert PrivacyRequest.objects.get(pk=request.pk).extended_at is None


@pytest.mark.parametrize("days_left,extended", [(0, True), (-1, False)])
def test_an_extension_is_taken_up_to_the_due_date_itself(days_left, extended, client, alice):
    request = file_request(state=State.IN_REVIEW)
    PrivacyRequest.objects.filter(pk=request.pk).update(
        due_on=timezone.localdate() + datetime.timedelta(days=days_left))
    staff_login(client, alice)
    assert step(client, request, "extend", notice="A source is slow.").status_code == 302
    assert (PrivacyRequest.objects.get(pk=request.pk).extended_at is not None) == extended


def test_a_second_extension_is_refused(client, alice):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, alice)
    assert step(client, request, "extend", notice="Three systems to search.").status_code == 302
    first = PrivacyRequest.objects.get(pk=request.pk)
    assert first.extended_due_on is not None
    response = step(client, request, "extend", notice="Again.")
    assert response.status_code == 302
    assert PrivacyRequest.objects.get(pk=request.pk).extension_notice == "Three systems to search."


def test_a_stale_form_is_refused(client, alice, bob):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, alice)
    seen_state, seen_version = request.state, request.version
    # Meanwhile bob asks for more information (same state, new version) ...
    staff_login(client, bob)
    assert step(client, request, "request_information",
                message="Your account number, please.").status_code == 302
    staff_login(client, alice)
    response = step(client, request, "extend", notice="More time.",
                    expected_state=seen_state, version=seen_version)
    assert PrivacyRequest.objects.get(pk=request.pk).extended_at is None
    assert any("changed by someone else" in str(m) for m in response.wsgi_request._messages)
    # ... and then approves it (new state): alice's denial form is out of date.
    staff_login(client, bob)
    step(client, request, "approve")
    staff_login(client, alice)
    response = step(client, request, "deny", reason_code="exemption", detail="x",
                    expected_state=seen_state, version=seen_version)
    assert PrivacyRequest.objects.get(pk=request.pk).state != State.DENIED


def test_a_form_without_its_state_is_refused_not_an_error(client, alice):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, alice)
    response = client.post(f"{desk_url(request)}step/deny/", {"deny-reason_code": "exemption"})
    assert response.status_code == 302
    response = client.post(f"{desk_url(request)}step/no_such_step/", {})
    assert response.status_code == 404


def test_asking_for_more_information_emails_the_consumer_and_keeps_the_state(client, bob):
    request = file_request(state=State.VERIFIED)
    staff_login(client, bob)
    assert step(client, request, "request_information", message="").status_code == 400
    response = step(client, request, "request_information",
                    message="Please send the last four digits of your card.")
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.VERIFIED and request.information_requested_at
    email = OutgoingEmail.objects.get(request=request, notice="more_information")
    assert "last four digits" in email.body_text and email.template_version == "default"
    assert "last four digits" in mail.outbox[-1].body
    event = AuditEvent.objects.get(action="request.request_information")
    assert "digits" not in str(event.data) + event.reason


def test_the_deletion_dry_run_is_approved_or_rejected_on_the_desk(client, alice):
    request = file_request(request_type="deletion", state=State.RESULTS_READY)
    staff_login(client, alice)
    page = client.get(desk_url(request)).content.decode()
    assert 'data-step="approve_erasure"' in page and 'data-step="reject_erasure_plan"' in page
    assert 'data-step="release"' not in page  # nothing deleted yet: nothing to release
    response = step(client, request, "release")
    assert any("Approve the deletion dry run first" in str(m)
               for m in response.wsgi_request._messages)
    assert step(client, request, "reject_erasure_plan", reason="").status_code == 400
    assert step(client, request, "reject_erasure_plan",
                reason="The map misses the loyalty table.").status_code == 302
    assert PrivacyRequest.objects.get(pk=request.pk).state == State.IN_REVIEW


# --- intake -------------------------------------------------------------------------


def intake_form(**extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    received = timezone.localtime() - datetime.timedelta(days=6)
    form = {"channel": "post", "received_at": received.strftime("%Y-%m-%dT%H:%M"),
            "request_type": "access", "jurisdiction": "CA", "filed_by": "self",
            "name": "Lee Letter", "email": "lee@example.com",
            "postal_address": "1 Main St", "details": "Please send me my data.",
            "original": SimpleUploadedFile("letter.pdf", b"%PDF-1.4 the letter",
                                           content_type="application/pdf")}
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


def test_a_letter_entered_days_later_is_due_from_when_it_arrived(client, bob, settings,
                                                                   tmp_path):
    settings.MEDIA_ROOT = tmp_path
    staff_login(client, bob)
    with committed():
        response = client.post("/staff/intake/", intake_form())
    request = PrivacyRequest.objects.get(identity__email="lee@example.com")
    assert response.status_code == 302 and response["Location"] == desk_url(request)
    assert request.channel == "post"
    assert timezone.localdate(request.received_at) == timezone.localdate() - datetime.timedelta(
        days=6)
    from requests_app import deadlines

    assert request.due_on == deadlines.response_due(request.received_at, "CA",
                                                    request.type_rules)
    assert request.acknowledge_by == deadlines.acknowledge_by(request.received_at, "CA")
    intake = IntakeRecord.objects.get(request=request)
    assert intake.entered_by == bob and intake.original_name == "letter.pdf"
    stored = (tmp_path / intake.original_path).read_bytes()
    assert b"the letter" not in stored  # encrypted at rest
    download = client.get(f"{desk_url(request)}original/")
    assert b"".join(download.streaming_content) == b"%PDF-1.4 the letter"
    assert AuditEvent.objects.filter(action="staff.viewed_identity", request=request, actor=bob,
                                     data={"page": "intake original"}).exists()
    event = AuditEvent.objects.get(action="request.entered_by_staff")
    assert event.data["days_after_receipt"] == 6 and "Lee" not in str(event.data)


def test_staff_verify_the_identity_at_intake_with_evidence(client, bob, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    staff_login(client, bob)
    response = client.post("/staff/intake/", intake_form(
        channel="phone", original=None, call_note="Called in at 10:05.",
        verification_method="call_back"))
    assert response.status_code == 400 and b"Describe the evidence" in response.content
    with committed():
        client.post("/staff/intake/", intake_form(
            channel="phone", original=None, call_note="Called in at 10:05.",
            request_type="know_categories", verification_method="call_back",
            verification_points=["name", "phone"], verification_level="reasonable",
            verification_evidence="Called back on the number on the account."))
    request = PrivacyRequest.objects.get(identity__email="lee@example.com")
    assert request.verified_at is not None and request.state == State.IN_REVIEW
    page = client.get(desk_url(request)).content.decode()
    assert "Called back on the number on the account." in page


@pytest.mark.parametrize("change,message", [
    ({"original": None}, b"Attach the email or the scan"),
    ({"channel": "phone", "original": None}, b"Write a note of the call"),
    ({"received_at": "2999-01-01T10:00"}, b"cannot be in the future"),
    ({"received_at": "1926-01-01T10:00"}, b"more than a year ago"),
    ({"received_at": "yesterday"}, b"Enter a valid date"),
    ({"email": "not an email"}, b"Enter a valid email"),
])
def test_intake_says_what_is_missing(change, message, client, bob):
    staff_login(client, bob)
    response = client.post("/staff/intake/", intake_form(**change))
    assert response.status_code == 400 and message in response.content
    assert not PrivacyRequest.objects.exists()


# --- duplicates ---------------------------------------------------------------------


def test_a_second_request_for_the_same_right_is_flagged_and_merged(client, bob):
    original = file_request(email="Pat.Doe@example.com")
    other_right = file_request(request_type="deletion", email="pat.doe@example.com")
    duplicate = file_request(email="pat.doe@EXAMPLE.com")
    assert other_right.duplicate_of is None and duplicate.duplicate_of == original
    assert AuditEvent.objects.filter(action="request.flagged_duplicate",
                                     request=duplicate).exists()
    staff_login(client, bob)
    assert "duplicate?" in client.get("/staff/queue/").content.decode()
    page = client.get(desk_url(duplicate)).content.decode()
    assert original.reference in page and 'data-step="merge"' in page
    assert step(client, duplicate, "merge").status_code == 302
    duplicate.refresh_from_db()
    assert duplicate.state == State.CANCELLED
    email = OutgoingEmail.objects.get(request=duplicate, notice="merged")
    assert original.reference in email.subject
    assert AuditEvent.objects.get(action="request.merge").data == {
        "merged_into": original.reference}
    assert duplicate.reference in client.get(desk_url(original)).content.decode()


def test_a_duplicate_can_be_closed_as_such_by_a_manager(client, alice):
    file_request()
    duplicate = file_request()
    staff_login(client, alice)
    assert step(client, duplicate, "deny", reason_code="duplicate",
                detail="You asked already; see your earlier request.").status_code == 302
    duplicate.refresh_from_db()
    assert duplicate.state == State.DENIED and duplicate.denial_reason == "duplicate"


def test_no_merge_once_the_earlier_request_is_closed(client, bob):
    original = file_request()
    duplicate = file_request()
    PrivacyRequest.objects.filter(pk=original.pk).update(state=State.CLOSED)
    staff_login(client, bob)
    assert 'data-step="merge"' not in client.get(desk_url(duplicate)).content.decode()


# --- dashboard ----------------------------------------------------------------------


def test_the_dashboard_counts_what_is_due(client, bob, days_ago):
    file_request(received_at=days_ago(60))                      # overdue
    file_request(received_at=days_ago(42), email="b@example.com")  # due this week
    file_request(state=State.NEEDS_ATTENTION, email="c@example.com")
    file_request(state=State.CLOSED, email="d@example.com")
    PrivacyRequest.objects.update(acknowledged_at=None, acknowledge_by=timezone.localdate())
    staff_login(client, bob)
    page = client.get("/staff/").content.decode()
    assert 'data-testid="overdue">1<' in page
    assert 'data-testid="due-week">1<' in page
    assert 'data-testid="ack-due">3<' in page
    assert 'data-state="needs_attention">1<' in page
    assert "<svg" in page and "3 open requests" in page


def test_the_chart_has_its_figures_as_text_and_source_failures_are_counted(client, bob,
                                                                         days_ago):
    from requests_app.models import DataSource, SourceRun

    first = file_request(email="a@example.com")
    file_request(email="b@example.com")
    closed = file_request(email="c@example.com", received_at=days_ago(20))
    PrivacyRequest.objects.filter(pk=closed.pk).update(state=State.CLOSED,
                                                       closed_at=timezone.now())
    source = DataSource.objects.create(name="Paper archive", kind="manual")
    SourceRun.objects.create(request=first, source=source,
                             action="gather", state=SourceRun.State.FAILED)
    staff_login(client, bob)
    page = client.get("/staff/").content.decode()
    assert '<svg role="img" aria-label="Bar chart of requests received and closed' in page
    table = page[page.index("<caption"):page.index("</table>", page.index("<caption"))]
    received = table[table.index('<th scope="row">Received</th>'):]
    closed_row = table[table.index('<th scope="row">Closed</th>'):]
    # This week (the last column): two received, one closed.
    assert received.split("</tr>")[0].endswith("<td>2</td>")
    assert closed_row.split("</tr>")[0].endswith("<td>1</td>")
    assert 'data-testid="source-failures">1<' in page


# --- email templates ----------------------------------------------------------------


def test_every_notice_can_be_edited_including_new_ones():
    names = email_templates.notices()
    assert {"received", "denied", "more_information", "merged"} <= set(names)


def test_a_manager_previews_and_saves_a_new_version_that_goes_out(client, alice, bob):
    staff_login(client, alice)
    sources = email_templates.file_sources("extended")
    form = {**sources, "subject": "Update on {{ request.reference }}", "comment": "shorter"}
    preview = client.post("/staff/emails/extended/", {**form, "preview": "1"})
    assert preview.status_code == 200 and b"Update on PP-SAMP-LE00-0000-0000" in preview.content
    assert not EmailTemplateVersion.objects.exists()
    assert client.post("/staff/emails/extended/", {**form, "save": "1"}).status_code == 302
    version = EmailTemplateVersion.objects.get(notice="extended")
    assert version.label == "v1" and version.created_by == alice
    request = file_request(state=State.IN_REVIEW)
    step(client, request, "extend", notice="Three systems to search.")
    email = OutgoingEmail.objects.get(request=request, notice="extended")
    assert email.subject == f"Update on {request.reference}" and email.template_version == "v1"
    # Back to the files: a new version, the old one kept.
    client.post("/staff/emails/extended/default/")
    assert list(EmailTemplateVersion.objects.filter(notice="extended")
                .values_list("number", "use_default")) == [(2, True), (1, False)]
    assert email_templates.current_sources("extended") == sources
    assert AuditEvent.objects.filter(action="config.email_template.changed").count() == 2


@pytest.mark.parametrize("body,message", [
    ("{% include 'emails/received/body.txt' %}", "cannot be used in an email"),
    ("{% load static %}", "only {% load i18n %}"),
    ("{% if %}", "Subject"),
    ("{% endif %}", "Text"),
])
def test_a_bad_template_is_refused_with_a_reason(body, message, client, alice):
    staff_login(client, alice)
    sources = email_templates.file_sources("received")
    part = "subject" if body == "{% if %}" else "body_text"
    response = client.post("/staff/emails/received/", {**sources, part: body, "save": "1"})
    assert response.status_code == 400 and message in response.content.decode()
    assert not EmailTemplateVersion.objects.exists()


def test_an_unknown_email_is_not_found(client, alice):
    staff_login(client, alice)
    assert client.get("/staff/emails/nope/").status_code == 404


# --- retention ----------------------------------------------------------------------


def test_retention_purges_notes_and_intake_evidence(alice, days_ago):
    from requests_app.services.retention.purge import purge
    from requests_app.services.requests.desk import do_add_note

    request = file_request(state=State.CLOSED)
    do_add_note(request, "Spoke to Pat Doe.", by=alice)
    IntakeRecord.objects.create(request=request, entered_by=alice, call_note="Pat called.",
                                verification_method="document",
                                verification_evidence="Passport seen.")
    with committed():
        assert purge(request.pk)
    assert not RequestNote.objects.filter(request=request).exists()
    intake = IntakeRecord.objects.get(request=request)
    assert (intake.call_note, intake.verification_evidence) == ("", "")
    assert intake.purged_at is not None
