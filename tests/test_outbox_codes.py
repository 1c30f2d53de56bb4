"""One-time codes never rest in plain text: the outbox keeps each email with its code
replaced (what the desk shows), and the email as it is sent is sealed with the file
key until it is sent, then dropped. The consumer still gets the code."""

import pytest
from django.core import mail
from django.db import transaction
from django.db.models import Q

from requests_app.files import DecryptionError, unseal_text
from requests_app.models import OutgoingEmail, PrivacyRequest
from requests_app.services.notices import outbox
from tests.conftest import committed, emailed_code, file_request, staff_login

pytestmark = pytest.mark.django_db

CODE = "48213377"


def holding(code: str):
    """Outbox rows that hold `code` anywhere, in any column, as text."""
    return OutgoingEmail.objects.filter(
        Q(subject__contains=code) | Q(body_text__contains=code) | Q(body_html__contains=code)
        | Q(sealed__contains=code) | Q(to__contains=code))


@pytest.mark.parametrize("notice,context", [
    ("received", {"code": CODE}), ("verification_code", {"code": CODE}),
    ("status_code", {"code": CODE, "code_url": "https://x.example/status/code/"}),
    ("agent_confirm", {"code": CODE, "agent_name": "Ann Agent", "references": ["PP-1"]}),
])
def test_an_email_with_a_code_is_kept_without_it_and_sent_with_it(notice, context):
    request = file_request()
    mail.outbox.clear()
    with committed():
        with transaction.atomic():
            email = outbox.queue_notice(request, notice, **context)
        # Queued, not sent yet: the code is only in the sealed copy, encrypted.
        assert email.sealed and not holding(CODE).exists()
        assert "••••••" in email.body_text + email.subject
        assert CODE in unseal_text(email.sealed)
    email.refresh_from_db()
    assert email.sent_at is not None and email.sealed == "" and not holding(CODE).exists()
    (sent,) = mail.outbox
    assert CODE in sent.subject + sent.body and CODE in sent.alternatives[0][0] + sent.subject
    assert emailed_code(email) == CODE


def test_a_preference_page_code_is_kept_without_it_too():
    with committed():
        email = outbox.queue_plain("pat@example.com", "preferences_code", code=CODE)
        assert email.sealed and not holding(CODE).exists()
    email.refresh_from_db()
    assert email.sealed == "" and not holding(CODE).exists()
    (sent,) = mail.outbox
    assert CODE in sent.subject and CODE in sent.body


def test_an_email_without_a_code_is_kept_as_it_is_sent():
    request = file_request(request_type="opt_out_sale", jurisdiction="CA")
    email = OutgoingEmail.objects.get(request=request, notice="received")
    assert email.sealed == "" and email.sent_at is not None
    (sent,) = [m for m in mail.outbox if m.subject == email.subject]
    assert sent.body == email.body_text and sent.to == [email.to]


def test_an_email_lost_by_the_broker_is_sent_later_with_its_code(settings):
    request = file_request()
    with transaction.atomic():  # never committed here: no task sent it
        email = outbox.queue_notice(request, "verification_code", code=CODE)
    mail.outbox.clear()
    assert outbox.send_email(email.pk) is True  # as the reconciler's resend does
    assert CODE in mail.outbox[0].body and not holding(CODE).exists()
    assert outbox.send_email(email.pk) is False and len(mail.outbox) == 1


def test_a_sealed_email_does_not_open_with_another_key():
    request = file_request()
    with transaction.atomic():
        email = outbox.queue_notice(request, "verification_code", code=CODE)
    other = "A" * 43 + "="
    with pytest.raises(DecryptionError):
        unseal_text(email.sealed, key=other)
    with pytest.raises(DecryptionError):
        unseal_text(email.sealed[:-4] + "AAAA")


def test_the_desk_never_shows_the_consumers_code(client, alice, settings):
    settings.RATELIMIT_ENABLED = False
    with committed():
        client.post("/request/", {"rights": ["access"], "residence": "VA", "name": "Pat Doe",
                                  "email": "pat.doe@example.com", "filed_by": "self",
                                  "declaration": "on", "website": ""})
    request = PrivacyRequest.objects.get()
    email = OutgoingEmail.objects.get(request=request, notice="received")
    code = emailed_code(email)
    staff_login(client, alice)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "Your code: ••••••" in page and code not in page
    assert not holding(code).exists()


def test_emails_queued_before_the_outbox_hid_codes_have_them_scrubbed_by_the_migration():
    """Rows written before migration 0017 kept the code in plain text: migration
    0018 replaces it (an eight-digit code, in the notices that carry one); an email
    not sent yet is sealed first, so it still goes out with its code; other emails
    and other numbers are left alone."""
    import importlib
    import json

    from django.apps import apps
    from django.utils import timezone

    scrub = importlib.import_module("requests_app.migrations.0018_scrub_codes_at_rest").scrub
    parts = {"subject": "Your code: 12345678", "body_text": "Your code: 12345678\nRef PP-AB12",
             "body_html": "<b>12345678</b>"}
    sent = OutgoingEmail.objects.create(notice="verification_code", to="pat@example.com",
                                        sent_at=timezone.now(), **parts)
    unsent = OutgoingEmail.objects.create(notice="status_code", to="pat@example.com", **parts)
    other = OutgoingEmail.objects.create(
        notice="closed", to="pat@example.com", subject="Closed", body_text="Order 12345678",
        body_html="")
    assert scrub(apps) == 2
    for email in (sent, unsent):
        email.refresh_from_db()
        assert "12345678" not in email.subject + email.body_text + email.body_html
        assert email.body_text == "Your code: ••••••\nRef PP-AB12"
    assert sent.sealed == ""
    assert json.loads(unseal_text(unsent.sealed)) == parts  # sent as it was written
    other.refresh_from_db()
    assert other.body_text == "Order 12345678"
