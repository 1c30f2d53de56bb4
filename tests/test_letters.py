"""People who do not use email (issue 15, item 5): staff enter a request that came
by post or phone with no email address but a postal address; every notice to such a
requester becomes a printable letter (a PDF with the email's text, the reference and
the company's return address) on the "letters to send" page, where staff mark each
posted (audited, with the day); a one-time code is printed in the letter and nowhere
else; the files go out on a medium staff record; and an email address given later
makes the next notices emails."""

import datetime
import logging
import re

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from requests_app.models import (
    Actor,
    AuditEvent,
    Identity,
    OneTimeCode,
    OutgoingEmail,
    Package,
    PrivacyRequest,
    State,
)
from requests_app.models.privacy_request import TransitionInputError
from requests_app.models.repeats import repeat_counts
from requests_app.services.audit.events import hash_value
from requests_app.services.notices import outbox
from requests_app.services.requests.filing import NewRequest, do_receive_request
from requests_app.services.requests.lifecycle import do_transition
from tests.conftest import committed, pdf_text, staff_login

pytestmark = pytest.mark.django_db

ADDRESS = "Lee Letter-Łukasiewicz\n12 Rue des Fleurs\n75001 Paris"
RETURN = "Example Corp, Privacy Office|1 Privacy Way|Springfield, IL 62701"


@pytest.fixture(autouse=True)
def letter_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.LETTER_RETURN_ADDRESS = RETURN


def intake(**extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    received = timezone.localtime() - datetime.timedelta(days=1)
    form = {"channel": "post", "received_at": received.strftime("%Y-%m-%dT%H:%M"),
            "request_type": "access", "jurisdiction": "CA", "filed_by": "self",
            "name": "Lee Letter", "email": "", "postal_address": ADDRESS.split("\n", 1)[1],
            "account_number": "C-1001", "details": "Send me my data by post.",
            "original": SimpleUploadedFile("letter.pdf", b"%PDF-1.4 the letter",
                                           content_type="application/pdf")}
    form.update(extra)
    return form


def entered_by_post(client, user) -> PrivacyRequest:
    staff_login(client, user)
    with committed():
        response = client.post("/staff/intake/", intake())
    assert response.status_code == 302, response.content.decode()[:3000]
    return PrivacyRequest.objects.get(identity__account_number="C-1001")


def open_letter(client, letter) -> str:
    response = client.get(f"/staff/letters/{letter.pk}/pdf/")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    return " ".join(pdf_text(response.content).split())  # line breaks as spaces


def test_intake_without_email_is_refused_without_a_postal_address_and_accepted_with_one(
        client, bob):
    staff_login(client, bob)
    response = client.post("/staff/intake/", intake(postal_address=""))
    assert response.status_code == 400
    assert "Without an email address, give the postal address" in response.content.decode()
    with pytest.raises(TransitionInputError, match="Without an email address, give a postal"):
        do_receive_request(NewRequest(request_type="access", jurisdiction="CA",
                                      channel="phone", name="Lee", email="",
                                      phone="+1 555 0100"), actor=Actor.staff(bob))
    assert not PrivacyRequest.objects.exists()
    request = entered_by_post(client, bob)
    assert request.identity.email == "" and "Rue des Fleurs" in request.identity.postal_address


def test_the_acknowledgment_to_a_requester_without_email_is_a_letter_to_post(client, bob):
    request = entered_by_post(client, bob)
    assert not mail.outbox  # nothing emailed, nothing for a worker to send
    (letter,) = OutgoingEmail.objects.filter(request=request)
    assert (letter.channel, letter.notice, letter.to, letter.sent_at) == (
        "letter", "received", "", None)
    assert request.audit_events.filter(action="notice.letter_queued",
                                       data__letter=letter.pk).exists()
    page = client.get("/staff/letters/").content.decode()
    assert f'data-letter="{letter.pk}"' in page and request.reference in page
    assert "Rue des Fleurs" not in page  # the address only in the letter itself
    assert ("Return address printed on every letter: <strong>Example Corp, Privacy Office, "
            "1 Privacy Way, Springfield, IL 62701</strong>") in page
    text = open_letter(client, letter)
    for line in [*RETURN.split("|"), "Lee Letter", "12 Rue des Fleurs", "75001 Paris",
                 f"Reference: {request.reference}", "We received your request",
                 "will never be held against you"]:  # the email's own text
        assert line in text, line
    assert AuditEvent.objects.filter(action="letter.opened", actor=bob, request=request,
                                     data__letter=letter.pk).count() == 1
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "1 letter to this person waits to be posted." in desk


@pytest.mark.parametrize("notice", ["verification_code", "status_code"])
def test_a_code_by_letter_is_printed_in_the_letter_and_never_logged_or_audited(
        notice, client, bob, caplog):
    caplog.set_level(logging.DEBUG)
    request = entered_by_post(client, bob)
    code = "48213377"
    with committed(), transaction.atomic():
        letter = outbox.queue_notice(request, notice, code=code,
                                     code_url="https://x.example/status/code/")
    assert letter.channel == "letter" and letter.sealed
    assert code not in letter.subject + letter.body_text + letter.body_html
    assert f"Your code: {code}" in open_letter(client, letter)
    with committed():
        client.post(f"/staff/letters/{letter.pk}/posted/",
                    {"posted_on": timezone.localdate().isoformat()})
    letter.refresh_from_db()
    assert letter.sealed == "" and code not in open_letter(client, letter)
    assert all(code not in f"{e.data} {e.reason}" for e in AuditEvent.objects.all())
    assert code not in caplog.text and "Rue des Fleurs" not in caplog.text


def test_the_status_page_code_of_a_requester_without_email_comes_by_letter_and_outlasts_the_post(
        client, bob, caplog):
    caplog.set_level(logging.DEBUG)
    request = entered_by_post(client, bob)
    with committed():
        client.post("/status/", {"reference": request.reference})
    letter = OutgoingEmail.objects.get(request=request, notice="status_code")
    assert letter.channel == "letter" and not mail.outbox
    staff_login(client, bob)
    text = open_letter(client, letter)
    code = re.search(r"Your code: (\d{8})", text).group(1)
    assert "within 21 days" in text and "ignore this letter" in text
    assert OneTimeCode.objects.get().expires_at > timezone.now() + datetime.timedelta(days=20)
    assert code not in caplog.text
    assert all(code not in f"{e.data} {e.reason}" for e in AuditEvent.objects.all())
    client.logout()
    response = client.post("/status/code/", {"reference": request.reference, "code": code})
    assert response.status_code == 302 and request.reference in response["Location"]


def test_marking_a_letter_posted_is_audited_with_its_date_and_takes_it_off_the_page(
        client, bob):
    request = entered_by_post(client, bob)
    letter = OutgoingEmail.objects.get(request=request)
    url = f"/staff/letters/{letter.pk}/posted/"
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)
    page = client.post(url, {"posted_on": tomorrow.isoformat()}, follow=True)
    assert "cannot be in the future" in page.content.decode()
    too_early = timezone.localdate(letter.created_at) - datetime.timedelta(days=1)
    page = client.post(url, {"posted_on": too_early.isoformat()}, follow=True)
    assert "cannot be before the letter was written" in page.content.decode()
    assert client.post(url, {"posted_on": "not a date"}).status_code == 302
    assert not AuditEvent.objects.filter(action="letter.posted").exists()
    today = timezone.localdate()
    with committed():
        response = client.post(url, {"posted_on": today.isoformat()})
    assert response.status_code == 302
    letter.refresh_from_db()
    request.refresh_from_db()
    assert letter.posted_on == today and letter.posted_by == bob and letter.sent_at
    assert request.acknowledged_at == letter.sent_at
    event = AuditEvent.objects.get(action="letter.posted", request=request)
    assert event.actor == bob and event.data == {"letter": letter.pk, "notice": "received",
                                                 "posted_on": today.isoformat()}
    page = client.get("/staff/letters/").content.decode()
    waiting = page.split('data-testid="letters-to-send"')[1].split("</table>")[0]
    posted = page.split('data-testid="letters-posted"')[1].split("</table>")[0]
    assert request.reference not in waiting and request.reference in posted
    again = client.post(url, {"posted_on": today.isoformat()}, follow=True).content.decode()
    assert "marked posted already" in again
    assert AuditEvent.objects.filter(action="letter.posted").count() == 1


def test_the_package_for_a_requester_without_email_is_sent_on_a_medium_staff_record(
        client, alice, bob):
    request = entered_by_post(client, bob)
    with committed():
        do_transition(request.pk, "verify_manually", actor=Actor.staff(bob),
                      methods=["document", "declaration"], evidence=True,
                      points=["name", "account_number", "postal_address"],
                      level="reasonably_high")
    with committed():
        do_transition(request.pk, "approve", actor=Actor.staff(alice))
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY
    with committed():
        do_transition(request.pk, "release", actor=Actor.staff(alice))
    completed = OutgoingEmail.objects.get(request=request, notice="completed")
    assert completed.channel == "letter" and not mail.outbox
    assert "We send you the files prepared for you separately" in completed.body_text
    desk_url = f"/staff/requests/{request.reference}/"
    assert "Record the files as sent" in client.get(desk_url).content.decode()
    sent_url = f"/staff/requests/{request.reference}/package-sent/"
    page = client.post(sent_url, {"medium": "other", "detail": ""}, follow=True)
    assert "Describe how the files were sent." in page.content.decode()
    page = client.post(sent_url, {"medium": "carrier pigeon"}, follow=True)
    assert "Choose how the files were sent." in page.content.decode()
    with committed():
        client.post(sent_url, {"medium": "usb_registered"})
    packages = list(Package.objects.filter(request=request))
    assert packages and all(p.sent_medium == "usb_registered" and p.released_at
                            for p in packages)
    event = AuditEvent.objects.get(action="package.sent_by_hand", request=request)
    assert event.actor == bob and event.data["medium"] == "usb_registered"
    assert sorted(event.data["packages"]) == sorted(p.pk for p in packages)
    desk = client.get(desk_url).content.decode()
    assert "Encrypted USB stick, by registered post" in desk
    assert "Record the files as sent" not in desk
    page = client.post(sent_url, {"medium": "printed_post"}, follow=True)
    assert "There are no files to send" in page.content.decode()


def test_an_email_given_later_makes_the_next_notices_emails_and_counts_repeats(client, bob):
    request = entered_by_post(client, bob)
    assert repeat_counts(request) == {}
    url = f"/staff/requests/{request.reference}/email/"
    page = client.post(url, {"email": "not an address"}, follow=True)
    assert "Enter a valid email address." in page.content.decode()
    with committed():
        client.post(url, {"email": "Lee.Letter@Example.com"})
    identity = Identity.objects.get(request=request)
    assert identity.email == "Lee.Letter@Example.com"
    assert identity.email_hash == hash_value("lee.letter@example.com")
    event = AuditEvent.objects.get(action="request.email_added", request=request)
    assert event.data == {"email": hash_value("lee.letter@example.com")}
    assert "Example.com" not in str(event.data)
    request.refresh_from_db()
    assert repeat_counts(request) == {"access": 1}
    with committed():
        client.post("/status/", {"reference": request.reference})
    (sent,) = mail.outbox
    assert sent.to == ["Lee.Letter@Example.com"] and "Your code:" in sent.body
    assert OutgoingEmail.objects.get(request=request, notice="status_code").channel == "email"
    assert OutgoingEmail.objects.get(request=request, notice="received").channel == "letter"
    again = client.post(url, {"email": "other@example.com"}, follow=True).content.decode()
    assert "has an email address already" in again


def test_letter_pages_answer_bad_input_in_words_never_with_a_500(client, bob):
    request = entered_by_post(client, bob)
    assert client.get("/staff/letters/999999/pdf/").status_code == 404
    page = client.post("/staff/letters/999999/posted/", {"posted_on": "2026-01-01"},
                       follow=True)
    assert page.status_code == 200 and "There is no such letter." in page.content.decode()
    for data in ({}, {"posted_on": "9999-99-99"}, {"posted_on": "0001-01-01"}):
        letter = OutgoingEmail.objects.get(request=request)
        assert client.post(f"/staff/letters/{letter.pk}/posted/", data).status_code == 302
    assert client.post("/staff/requests/PP-NOPE/email/", {"email": "a@b.co"}).status_code == 404
    for data in ({}, {"email": "x" * 300 + "@example.com"}, {"email": "a@b.co\nBcc: e@v.il"}):
        assert client.post(f"/staff/requests/{request.reference}/email/",
                           data).status_code == 302
    assert client.post(f"/staff/requests/{request.reference}/package-sent/",
                       {"medium": "other", "detail": "x" * 5000}).status_code == 302
    assert Identity.objects.get(request=request).email == ""


def test_a_letter_still_prints_without_its_font_file(client, bob, settings):
    """LETTER_FONT missing (a machine without fonts-dejavu-core): the PDF core font,
    with characters outside Latin-1 as "?", rather than no letter at all."""
    settings.LETTER_FONT = "/nonexistent/font.ttf"
    request = entered_by_post(client, bob)
    Identity.objects.filter(request=request).update(name="Łukasz Zoë")
    with committed(), transaction.atomic():
        letter = outbox.queue_notice(PrivacyRequest.objects.get(pk=request.pk), "extended")
    text = open_letter(client, letter)
    assert f"Reference: {request.reference}" in text and "1 Privacy Way" in text
    assert "?ukasz Zoë" in text
