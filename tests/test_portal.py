"""The consumer portal: filing, confirming the email, identity verification against
the sources, following, cancelling, appealing and downloading, with no account."""

import datetime
import io
import re
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from requests_app.audit import reports
from requests_app.models import (
    AuditEvent,
    OneTimeCode,
    OutgoingEmail,
    Package,
    PrivacyRequest,
    State,
    VerificationEvidence,
)
from requests_app.portal.session import verified_emails
from tests.conftest import committed, emailed_code, file_request, portal_form

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


form = portal_form


def submit(client, **overrides):
    with committed():
        response = client.post("/request/", form(**overrides))
    return response


def code_in(email: OutgoingEmail) -> str:
    return emailed_code(email)


def last_email(notice: str, to: str = "pat.doe@example.com") -> OutgoingEmail:
    return OutgoingEmail.objects.filter(notice=notice, to=to).latest("id")


def verify(client, reference, code):
    with committed():
        return client.post("/verify/", {"reference": reference, "code": code})


# --- the pages ---------------------------------------------------------------------------


def test_the_home_page_explains_each_right_and_links_to_the_form(client):
    html = client.get("/").content.decode()
    for words in ("Find out what we know about you", "Get a copy", "Take it with you",
                  "Have it deleted", "Fix mistakes", "Say no to selling"):
        assert words in html
    assert 'href="/request/"' in html and 'href="/status/"' in html


def test_the_form_labels_every_field_and_hides_the_honeypot(client):
    html = client.get("/request/").content.decode()
    for field in ("name", "email", "phone", "account_number", "postal_address", "agent_name",
                  "agent_email", "permission", "period_start", "period_end", "details"):
        assert f'for="id_{field}"' in html, field
    assert 'class="hp" aria-hidden="true"' in html
    assert "csrfmiddlewaretoken" in html
    assert 'enctype="multipart/form-data"' in html


def test_the_right_to_know_period_defaults_to_the_last_twelve_months(client):
    html = client.get("/request/").content.decode()
    today = timezone.localdate()
    assert f'value="{today.isoformat()}"' in html
    assert f'value="{(today.replace(year=today.year - 1)).isoformat()}"' in html


FIELD_ERRORS = [
    ({"rights": []}, "rights", "Choose at least one thing"),
    ({"rights": ["fly_to_the_moon"]}, "rights", "Choose from the list"),
    ({"residence": ""}, "residence", "Choose the state or country where you live"),
    ({"residence": "Atlantis"}, "residence", "from the list"),
    ({"name": ""}, "name", "Enter your full name"),
    ({"name": "x" * 201}, "name", "at most 200 characters"),
    ({"email": ""}, "email", "Enter your email address"),
    ({"email": "not-an-address"}, "email", "like name@example.com"),
    ({"phone": "call me"}, "phone", "at least 7 digits"),
    ({"account_number": "x" * 65}, "account_number", "at most 64"),
    ({"postal_address": "x" * 501}, "postal_address", "at most 500"),
    ({"filed_by": "a robot"}, "filed_by", "Say who is making this request"),
    ({"filed_by": "agent"}, "agent_name", "Enter the agent&#x27;s name"),
    ({"filed_by": "agent", "agent_name": "Ann Agent"}, "agent_email",
     "Enter the agent&#x27;s email"),
    ({"filed_by": "agent", "agent_name": "Ann", "agent_email": "nope"}, "agent_email",
     "like name@example.com"),
    ({"filed_by": "agent", "agent_name": "Ann", "agent_email": "ann@agents.example"},
     "permission", "Upload the person"),
    ({"rights": ["access"], "declaration": "on", "period_start": "2021-12-31",
      "residence": "CA"},
     "period_start", "January 1, 2022 at the earliest"),
    ({"rights": ["know_categories"], "period_end": "2999-01-01", "residence": "CA"},
     "period_end",
     "cannot end in the future"),
    ({"rights": ["know_categories"], "period_start": "2024-05-01", "period_end": "2024-01-01",
      "residence": "CA"}, "period_start", "before the end date"),
    ({"rights": ["know_categories"], "period_start": "yesterday"}, "period_start",
     "YYYY-MM-DD"),
    ({"rights": ["correction"]}, "corrected_field", "Choose which information is wrong"),
    ({"rights": ["correction"], "corrected_field": "name"}, "correction_wrong",
     "Say what is wrong"),
    ({"rights": ["correction"], "corrected_field": "name", "correction_wrong": "Pat"},
     "correction_right", "Say what it should say"),
    ({"rights": ["correction"], "corrected_field": "shoe size"}, "corrected_field",
     "from the list"),
    ({"rights": ["access"]}, "declaration", "tick the declaration"),
    ({"rights": ["portability"]}, "declaration", "tick the declaration"),
    ({"details": "x" * 2001}, "details", "at most 2,000 characters"),
    ({"rights": ["correction"], "corrected_field": "name", "correction_wrong": "w" * 1000,
      "correction_right": "r" * 900, "details": "d" * 200}, "details",
     "Together with the correction"),
]


@pytest.mark.parametrize("overrides,field,message", FIELD_ERRORS,
                         ids=[f"{f}-{i}" for i, (_o, f, _m) in enumerate(FIELD_ERRORS)])
def test_each_field_says_what_is_wrong_in_the_summary_and_beside_it(client, overrides, field,
                                                                      message):
    response = submit(client, **overrides)
    assert response.status_code == 400
    html = response.content.decode()
    summary = html.split('id="error-summary"')[1].split("</div>")[0]
    assert f'href="#f-{field}"' in summary, summary
    assert message in summary
    beside = html.split(f'id="f-{field}"')[1].split('<div class="field"')[0]
    assert message in beside
    assert not PrivacyRequest.objects.exists()


def test_an_oversized_permission_file_is_refused(client, settings):
    big = SimpleUploadedFile("permission.pdf", PDF + b"0" * (5 * 1024 * 1024),
                             content_type="application/pdf")
    response = submit(client, filed_by="agent", agent_name="Ann Agent",
                      agent_email="ann@agents.example", permission=big)
    assert response.status_code == 400
    assert "too large: upload a file of at most 5 MB" in response.content.decode()
    assert not PrivacyRequest.objects.exists()


def test_a_body_far_over_the_limit_gets_a_clear_413_page(client, settings):
    settings.AGENT_PERMISSION_MAX_BYTES = 10_000
    big = SimpleUploadedFile("p.pdf", PDF + b"0" * 100_000, content_type="application/pdf")
    response = submit(client, filed_by="agent", agent_name="Ann",
                      agent_email="ann@agents.example", permission=big)
    assert response.status_code == 413
    assert "too large" in response.content.decode()


def test_a_file_whose_name_lies_about_its_type_is_refused(client):
    fake = SimpleUploadedFile("permission.pdf", b"MZ\x90\x00 this is a program",
                              content_type="application/pdf")
    response = submit(client, filed_by="agent", agent_name="Ann Agent",
                      agent_email="ann@agents.example", permission=fake)
    assert response.status_code == 400
    assert "must be a PDF, PNG or JPEG file" in response.content.decode()


def test_a_png_named_like_a_pdf_is_accepted_as_what_it_is(client):
    upload = SimpleUploadedFile("scan.pdf", PNG, content_type="application/pdf")
    response = submit(client, filed_by="agent", agent_name="Ann Agent",
                      agent_email="ann@agents.example", permission=upload)
    assert response.status_code == 302
    evidence = VerificationEvidence.objects.get()
    assert evidence.permission_type == "image/png"
    stored = Path(settings.MEDIA_ROOT) / evidence.permission_path
    assert PNG not in stored.read_bytes()  # encrypted at rest
    from requests_app.files import EncryptedReader

    with EncryptedReader(stored) as reader:
        assert reader.read() == PNG


def test_a_bad_post_never_gives_a_server_error(client):
    for data in ({"rights": "x" * 10_000}, {"email": "\x00@x"}, {"name": "\x00"},
                 {"period_start": "99999-99-99"}, {"filed_by": ["agent", "self"]}):
        response = client.post("/request/", data)
        assert response.status_code == 400
    # Bytes that are not UTF-8, and a body that is not a form at all.
    for body, content_type in ((b"name=%ED%A0%80&email=%FF", "application/x-www-form-urlencoded"),
                               (b"\xff\xfe{not a form", "multipart/form-data; boundary=x")):
        response = client.post("/request/", body, content_type=content_type)
        assert response.status_code == 400


def test_a_reference_with_a_nul_byte_or_junk_never_gives_a_server_error(client):
    for reference in ("\x00", "PP-\x00", "a\x00b" * 4, "é" * 30):
        for url, data in (("/verify/", {"reference": reference, "resend": "1"}),
                          ("/verify/", {"reference": reference, "code": "12345678"}),
                          ("/status/", {"reference": reference}),
                          ("/status/code/", {"reference": reference, "code": "12345678"})):
            response = client.post(url, data)
            assert response.status_code < 500, (url, reference)


def test_a_content_length_that_is_not_a_number_is_refused_not_a_server_error(client):
    for declared in ("abc", "1e9", " "):
        response = client.post("/request/", form(), CONTENT_LENGTH=declared)
        assert response.status_code == 413, declared


def test_a_form_without_the_csrf_token_is_refused_with_words(settings):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/request/", form())
    assert response.status_code == 403
    assert "send the form again" in response.content.decode()


# --- filing and the acknowledgment --------------------------------------------------------


def test_one_submission_files_one_linked_request_per_right(client):
    response = submit(client, rights=["know_categories", "deletion"], phone="555-0100",
                      residence="CA")
    assert response.status_code == 302 and response.url == "/request/sent/"
    requests = list(PrivacyRequest.objects.order_by("id"))
    assert [r.request_type for r in requests] == ["know_categories", "deletion"]
    evidences = VerificationEvidence.objects.filter(request__in=requests)
    assert len({e.submission for e in evidences}) == 1
    assert all(r.channel == "web" and r.identity.phone == "555-0100" for r in requests)
    know = requests[0].evidence
    assert know.period_end == timezone.localdate()
    sent = client.get("/request/sent/").content.decode()
    for r in requests:
        assert r.reference in sent
        assert r.due_on.strftime("%B %-d, %Y") in sent


def test_the_acknowledgment_has_the_reference_next_steps_due_date_and_a_code(client):
    submit(client)
    request = PrivacyRequest.objects.get()
    email = last_email("received")
    assert request.reference in email.body_text
    assert "What happens next" in email.body_text
    assert request.due_on.strftime("%B %-d, %Y") in email.body_text
    code = code_in(email)
    assert len(code) >= 6
    assert f"/verify/?reference={request.reference}" in email.body_text
    (sent,) = [m for m in mail.outbox if m.to == [email.to]]
    assert code in sent.body and code in sent.alternatives[0][0]
    # The outbox keeps the email with the code replaced (tests/test_outbox_codes.py).
    assert code not in email.body_text + email.body_html and email.sealed == ""
    assert not OneTimeCode.objects.filter(code_hash__contains=code).exists()


def test_an_opt_out_acknowledgment_says_nothing_of_verification_and_has_no_code(client):
    submit(client, rights=["opt_out_sale"], residence="CA")
    request = PrivacyRequest.objects.get()
    email = last_email("received")
    assert "Your code" not in email.body_text and "Your code" not in email.body_html
    for words in (email.body_text.lower(), email.body_html.lower()):
        assert "confirm" not in words and "verif" not in words and "identity" not in words
    assert "it will be done by" in email.body_text
    assert request.state != State.PENDING_VERIFICATION  # verified at once
    assert not OneTimeCode.objects.exists()
    page = client.get("/request/sent/").content.decode()
    assert "Enter my code" not in page and "identity" not in page.lower()


def _normalised(text: str, references, code=None) -> bytes:
    for i, reference in enumerate(references):
        text = text.replace(reference, f"PP-REF-{i}")
    text = re.sub(r"PP-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", "PP-REF", text)
    if code:
        text = text.replace(code, "CODE")
    return text.encode()


def test_no_enumeration_known_and_unknown_addresses_get_identical_answers(client, portal_shop):
    """pat.doe@example.com is in the shop's customer table and has filed before;
    nobody@example.com is unknown. The page and the email differ only by the
    reference (and the random code, normalised too)."""
    file_request(email="pat.doe@example.com", request_type="know_categories")
    answers = []
    for address in ("pat.doe@example.com", "nobody@example.com"):
        cache.clear()
        response = submit(client, email=address, rights=["deletion"])
        page = client.get(response.url)
        request = PrivacyRequest.objects.filter(identity__email=address).latest("id")
        email = last_email("received", to=address)
        code = code_in(email)
        answers.append((
            response.status_code, response.url,
            _normalised(page.content.decode(), [request.reference]),
            _normalised(email.subject, [request.reference]),
            _normalised(email.body_text, [request.reference], code),
            _normalised(email.body_html, [request.reference], code),
        ))
        assert OutgoingEmail.objects.filter(to=address).count() == 1 + (
            address == "pat.doe@example.com")
    assert answers[0] == answers[1]


def test_the_honeypot_gets_the_same_answer_and_files_nothing(client):
    response = submit(client, website="http://spam.example")
    assert response.status_code == 302 and response.url == "/request/sent/"
    page = client.get(response.url).content.decode()
    assert "Thank you: we received your request" in page and "We will answer by" in page
    assert not PrivacyRequest.objects.exists() and not OutgoingEmail.objects.exists()


def test_the_form_is_rate_limited_per_ip_and_per_email(client, settings):
    settings.RATELIMIT_FORM_PER_EMAIL = 2
    statuses = [submit(client).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
    page = submit(client).content.decode()
    assert 'name="filing_code"' in page  # over the per-email limit: prove the address
    settings.RATELIMIT_FORM_PER_IP = 5
    assert submit(client, email="other@example.com").status_code == 302
    over_ip = submit(client, email="third@example.com")
    assert over_ip.status_code == 429 and "Too many attempts" in over_ip.content.decode()


def test_plus_tags_do_not_multiply_the_per_email_limit(client, settings):
    from requests_app.ratelimit import mailbox

    settings.RATELIMIT_FORM_PER_EMAIL = 2
    statuses = [submit(client, email=f"Pat+{i}@Example.com").status_code for i in range(3)]
    assert statuses == [302, 302, 429]
    assert mailbox(" Pat+x+y@Example.COM ") == "pat@example.com"
    assert mailbox("+tag@example.com") == "+tag@example.com"  # no mailbox name before it
    assert mailbox("PP-ABCD-1234") == "pp-abcd-1234"


# --- confirming the email -------------------------------------------------------------


def test_the_code_confirms_the_email_and_opens_the_status_timeline(client):
    submit(client)
    request = PrivacyRequest.objects.get()
    code = code_in(last_email("received"))
    response = verify(client, request.reference, code)
    assert response.status_code == 302 and response.url == f"/status/{request.reference}/"
    request.refresh_from_db()
    assert request.evidence.email_confirmed_at is not None
    page = client.get(response.url).content.decode()
    assert "You confirmed your email address." in page
    assert "We received your request." in page
    assert request.due_on.strftime("%B %-d, %Y") in page


def test_a_wrong_code_is_refused(client):
    submit(client)
    request = PrivacyRequest.objects.get()
    code = code_in(last_email("received"))
    wrong = "12345678" if code != "12345678" else "87654321"
    response = verify(client, request.reference, wrong)
    assert response.status_code == 400
    assert "That code is not right" in response.content.decode()
    assert VerificationEvidence.objects.get().email_confirmed_at is None


def test_an_expired_code_is_refused(client):
    submit(client)
    request = PrivacyRequest.objects.get()
    code = code_in(last_email("received"))
    OneTimeCode.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    response = verify(client, request.reference, code)
    assert "That code has expired" in response.content.decode()


def test_a_reused_code_is_refused(client):
    submit(client)
    request = PrivacyRequest.objects.get()
    code = code_in(last_email("received"))
    assert verify(client, request.reference, code).status_code == 302
    assert "was used already" in verify(client, request.reference, code).content.decode()


def test_a_code_is_locked_after_five_wrong_tries(client):
    submit(client)
    request = PrivacyRequest.objects.get()
    code = code_in(last_email("received"))
    wrong = "12345678" if code != "12345678" else "87654321"
    for _ in range(5):
        verify(client, request.reference, wrong)
    response = verify(client, request.reference, code)
    assert "this code is locked" in response.content.decode()


def test_a_code_does_not_confirm_someone_elses_reference(client):
    submit(client)
    mine = PrivacyRequest.objects.get()
    code = code_in(last_email("received"))
    other = file_request(email="sam@example.com", request_type="deletion")
    response = verify(client, other.reference, code)
    assert "That code is not right" in response.content.decode()
    assert mine.evidence.email_confirmed_at is None


def test_a_new_code_at_most_once_a_minute(client):
    submit(client)
    request = PrivacyRequest.objects.get()
    with committed():
        page = client.post("/verify/", {"reference": request.reference, "resend": "1"})
    assert "a new code is on its way" in page.content.decode()
    # Sent less than a minute after the first: nothing more went out.
    assert not OutgoingEmail.objects.filter(notice="verification_code").exists()
    OneTimeCode.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=2))
    with committed():
        client.post("/verify/", {"reference": request.reference, "resend": "1"})
    new = code_in(last_email("verification_code"))
    assert verify(client, request.reference, new).status_code == 302


def test_code_entry_is_rate_limited(client, settings):
    settings.RATELIMIT_CODE_PER_EMAIL = 3
    submit(client)
    request = PrivacyRequest.objects.get()
    statuses = [verify(client, request.reference, "00000000").status_code for _ in range(4)]
    assert statuses[-1] == 429


# --- identity verification against the sources ----------------------------------------

def file_and_confirm(client, **overrides):
    submit(client, **overrides)
    request = PrivacyRequest.objects.latest("id")
    verify(client, request.reference, code_in(last_email("received", to=request.identity.email)))
    request.refresh_from_db()
    return request


def test_three_matching_points_and_the_declaration_verify_an_access_request(client, portal_shop):
    request = file_and_confirm(client, rights=["access"], declaration="on",
                               phone="+1 555 010 0100", account_number="c1001",
                               postal_address="12 Elm Street\nAustin TX 73301")
    evidence = request.evidence
    assert set(evidence.points_matched) == {"email", "name", "phone", "account_number",
                                            "postal_address"}
    assert evidence.level_reached and request.verified_at is not None
    assert request.state != State.PENDING_VERIFICATION
    rows = dict(evidence.summary())
    assert "three data points" in rows["Level required"]
    assert "Pat" not in str(evidence.summary())  # names of points, never values


def test_an_unverifiable_access_request_becomes_a_request_for_categories(client, portal_shop):
    request = file_and_confirm(client, rights=["access"], declaration="on",
                               phone="555 999 9999")
    assert request.request_type == "know_categories"
    assert request.original_request_type == "access"  # the type filed stays on the record
    assert request.verified_at is not None
    assert sorted(request.evidence.points_matched) == ["email", "name"]
    email = last_email("treated_as_categories")
    assert "categories" in email.body_text and request.reference in email.body_text
    assert AuditEvent.objects.filter(request=request,
                                     action="request.treated_as_categories").exists()
    verify_page = client.get(f"/status/{request.reference}/").content.decode()
    assert "answering with the categories" in verify_page
    # The record keeps what was asked for, and §7102 metrics count it there.
    assert request.original_request_type == "access"
    access = reports.metrics(request.received_at.year)["groups"]["access"]
    assert (access["received"], access["downgraded"]) == (1, 1)
    assert reports.metrics(request.received_at.year)["groups"]["know"]["received"] == 0


def test_when_the_level_is_not_met_the_request_goes_to_staff(client, portal_shop, alice):
    request = file_and_confirm(client, rights=["deletion"], email="stranger@example.com")
    assert request.state == State.PENDING_VERIFICATION
    assert request.evidence.manual_review
    assert "0 of 2 data points matched" in request.evidence.outcome
    assert AuditEvent.objects.filter(request=request,
                                     action="request.needs_manual_verification").exists()
    page = client.get(f"/status/{request.reference}/").content.decode()
    assert "checking by hand" in page
    from tests.conftest import staff_login

    desk = staff_login(client, alice).get(f"/staff/requests/{request.reference}/")
    html = desk.content.decode()
    assert "Verification by the portal" in html and "manual verification by staff" in html


def test_a_deletion_needs_more_points_where_sensitive_data_is_held(client, portal_shop):
    # Two points (the address and the name) verify a deletion of ordinary data.
    plain = file_and_confirm(client, rights=["deletion"])
    assert plain.evidence.points_required == 2 and plain.verified_at is not None
    # Once a source holds sensitive data (a card token), the same two do not ...
    portal_shop.categories = ["user.contact.email", "user.financial.credit_card"]
    portal_shop.save()
    cache.clear()
    sensitive = file_and_confirm(client, rights=["deletion"], email="Pat.Doe@example.com",
                                 name="Pat Doe")
    assert sensitive.evidence.points_required == 3
    assert sensitive.state == State.PENDING_VERIFICATION and sensitive.evidence.manual_review
    assert "2 of 3 data points matched" in sensitive.evidence.outcome
    # ... and a third (the phone number) does.
    cache.clear()
    third = file_and_confirm(client, rights=["deletion"], phone="+1 555 010 0100")
    assert third.evidence.points_required == 3 and third.verified_at is not None


def test_a_correction_is_not_verified_with_the_field_being_corrected(client, portal_shop):
    request = file_and_confirm(client, rights=["correction"], phone="555-010-0100",
                               corrected_field="phone", correction_wrong="old",
                               correction_right="new")
    assert "What is wrong: old\nWhat it should say: new" in request.details
    assert "phone" not in request.evidence.points_matched
    assert request.verified_at is not None  # email and name are two points


def test_a_parent_is_always_verified_by_staff(client, portal_shop):
    request = file_and_confirm(client, rights=["deletion"], filed_by="parent",
                               phone="555 010 0100", child_name="Sam Doe",
                               child_birth_date=(timezone.localdate() - datetime.timedelta(
                                   days=6 * 365)).isoformat(),
                               guardian_proof=SimpleUploadedFile("proof.pdf", PDF))
    assert request.state == State.PENDING_VERIFICATION and request.evidence.manual_review


# --- authorized agents ----------------------------------------------------------------------


def test_an_agent_filing_waits_for_the_persons_confirmation(client, portal_shop, settings):
    upload = SimpleUploadedFile("permission.pdf", PDF, content_type="application/pdf")
    submit(client, filed_by="agent", agent_name="Ann Agent", agent_email="ann@agents.example",
           permission=upload, phone="555 010 0100")
    request = PrivacyRequest.objects.get()
    assert request.filed_by == "agent"
    received = last_email("received")
    assert "Your code" not in received.body_text and "Ann Agent" in received.body_text
    confirm = last_email("agent_confirm")
    assert "Ann Agent" in confirm.subject and request.reference in confirm.body_text
    assert request.state == State.PENDING_VERIFICATION
    # Nothing is verified until the person confirms...
    assert VerificationEvidence.objects.get().agent_confirmed_at is None
    verify(client, request.reference, code_in(confirm))
    request.refresh_from_db()
    assert request.evidence.agent_confirmed_at is not None
    assert request.verified_at is not None
    assert ("Authorized agent", "Ann Agent <ann@agents.example>") in request.evidence.summary()


def test_an_unconfirmed_agent_request_expires_by_the_rules(client, settings):
    upload = SimpleUploadedFile("permission.pdf", PDF, content_type="application/pdf")
    submit(client, filed_by="agent", agent_name="Ann", agent_email="ann@agents.example",
           permission=upload)
    request = PrivacyRequest.objects.get()
    PrivacyRequest.objects.filter(pk=request.pk).update(
        received_at=timezone.now() - datetime.timedelta(days=settings.VERIFICATION_WINDOW_DAYS))
    from requests_app.services.requests.tasks import expire_unverified_requests

    with committed():
        assert expire_unverified_requests() == 1
    request.refresh_from_db()
    assert request.state == State.EXPIRED


# --- the status page --------------------------------------------------------------------


def test_the_status_page_needs_the_reference_and_a_code_sent_to_the_request(client, open_status):
    request = file_request(request_type="deletion")
    assert client.get(f"/status/{request.reference}/").status_code == 302
    url = open_status(client, request)
    page = client.get(url).content.decode()
    assert request.reference in page and "We received your request." in page
    assert verified_emails(client.get(url).wsgi_request) == ["pat.doe@example.com"]


def test_an_unknown_reference_gets_the_same_answer_as_a_known_one(client):
    request = file_request(request_type="deletion")
    known = client.post("/status/", {"reference": request.reference})
    unknown = client.post("/status/", {"reference": "PP-0000-0000-0000-0000"})
    assert known.status_code == unknown.status_code == 302
    page_known = client.get(known.url).content.decode().replace(request.reference, "REF")
    page_unknown = client.get(unknown.url).content.decode().replace("PP-0000-0000-0000-0000",
                                                                    "REF")
    strip = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
    assert strip.sub("", page_known) == strip.sub("", page_unknown)


def test_someone_elses_reference_cannot_be_opened_with_my_code(client, open_status):
    mine = file_request(request_type="deletion")
    theirs = file_request(request_type="deletion", email="sam@example.com")
    open_status(client, mine)
    assert client.get(f"/status/{theirs.reference}/").status_code == 302
    with committed():
        client.post("/status/", {"reference": mine.reference})
    OneTimeCode.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=2))
    with committed():
        client.post("/status/", {"reference": mine.reference})
    code = code_in(last_email("status_code"))
    response = client.post("/status/code/", {"reference": theirs.reference, "code": code})
    assert response.status_code == 400 and "not right" in response.content.decode()
    assert client.post(f"/status/{theirs.reference}/cancel/").status_code == 302
    theirs.refresh_from_db()
    assert theirs.state == State.PENDING_VERIFICATION


def test_every_code_that_opens_a_request_gives_the_browser_a_new_session_id(client, open_status):
    planted = file_request(request_type="deletion", email="mallory@example.com")
    victims = file_request(request_type="deletion")
    open_status(client, planted)
    before = client.session.session_key
    open_status(client, victims)
    assert client.session.session_key != before
    from django.conf import settings
    from django.test import Client

    # Whoever holds the old session id sees nothing of the second request.
    planter = Client()
    planter.cookies[settings.SESSION_COOKIE_NAME] = before
    assert planter.get(f"/status/{victims.reference}/").status_code == 302


def test_the_consumer_can_cancel_before_fulfilment_starts(client, open_status):
    request = file_request(request_type="deletion")
    url = open_status(client, request)
    assert "Cancel my request" in client.get(url).content.decode()
    with committed():
        response = client.post(f"/status/{request.reference}/cancel/",
                               {"expected_state": "pending_verification", "confirm": "yes"})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.CANCELLED
    page = client.get(url).content.decode()
    assert "The request was cancelled." in page and "Cancel my request" not in page
    assert last_email("cancelled").request == request


def test_no_cancel_once_fulfilment_has_started(client, open_status):
    request = file_request(request_type="deletion", state="fulfilling")
    url = open_status(client, request)
    assert "Cancel my request" not in client.get(url).content.decode()
    response = client.post(f"/status/{request.reference}/cancel/",
                           {"expected_state": "fulfilling"})
    assert response.status_code == 409 and "can no longer be cancelled" in \
        response.content.decode()


def test_a_denial_shows_its_reason_the_complaint_route_and_an_appeal_form(client, open_status):
    request = file_request(request_type="deletion", jurisdiction="VA", state="denied")
    PrivacyRequest.objects.filter(pk=request.pk).update(
        denial_reason="exemption", denial_detail="We must keep invoices for tax law.")
    url = open_status(client, request)
    page = client.get(url).content.decode()
    assert "An exemption applies" in page and "We must keep invoices" in page
    assert "Attorney General" in page
    assert "Appeal our decision" in page
    empty = client.post(f"/status/{request.reference}/appeal/", {"text": "  "})
    assert empty.status_code == 400 and "Say why you disagree" in empty.content.decode()
    with committed():
        response = client.post(f"/status/{request.reference}/appeal/",
                               {"text": "I closed my account years ago."})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.UNDER_APPEAL and request.appeal_due_on
    assert "We received your appeal." in client.get(url).content.decode()
    assert last_email("appeal_received").request == request


def test_an_extension_notice_is_shown(client, open_status):
    request = file_request(request_type="deletion", state="in_review")
    PrivacyRequest.objects.filter(pk=request.pk).update(
        extended_at=timezone.now(), extended_due_on=request.due_on + datetime.timedelta(days=45),
        extension_notice="Our archive is being moved.")
    page = client.get(open_status(client, request)).content.decode()
    assert "Our archive is being moved." in page


# --- downloads ----------------------------------------------------------------------------


def completed_with_package(request_type="portability"):
    from requests_app.services.fulfilment import packages

    request = file_request(request_type=request_type, state="completed")
    package = packages.build(request)
    assert package is not None
    return request, package


def test_the_download_streams_the_decrypted_zip_and_is_audited(client, open_status):
    request, package = completed_with_package()
    page = client.get(open_status(client, request)).content.decode()
    link = re.search(r'href="(/download/[^"]+/)"', page).group(1)
    response = client.get(link)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert response["Content-Disposition"].endswith(f'"{package.filename}"')
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert "manifest.json" in archive.namelist()
    assert AuditEvent.objects.filter(request=request, action="package.downloaded").count() == 1
    package.refresh_from_db()
    assert package.download_count == 1
    assert package.expires_at.date() == (timezone.now() + datetime.timedelta(days=7)).date()


def test_a_replayed_download_link_stops_after_five_downloads(client, settings, open_status):
    request, package = completed_with_package()
    page = client.get(open_status(client, request)).content.decode()
    link = re.search(r'href="(/download/[^"]+/)"', page).group(1)
    for _ in range(settings.DOWNLOAD_MAX_COUNT):
        assert client.get(link).status_code == 200
    refused = client.get(link)
    assert refused.status_code == 410
    assert "no longer works" in refused.content.decode()


def test_a_package_that_cannot_be_read_does_not_use_up_a_download(client, settings, open_status):
    request, package = completed_with_package()
    page = client.get(open_status(client, request)).content.decode()
    link = re.search(r'href="(/download/[^"]+/)"', page).group(1)
    stored = Path(settings.MEDIA_ROOT) / package.path
    saved = stored.read_bytes()
    stored.write_bytes(saved[:10] + b"tampered" + saved[18:])
    assert client.get(link).status_code == 404
    package.refresh_from_db()
    assert package.download_count == 0
    stored.write_bytes(saved)
    assert client.get(link).status_code == 200


def test_an_expired_download_link_is_refused(client, open_status):
    request, package = completed_with_package()
    page = client.get(open_status(client, request)).content.decode()
    link = re.search(r'href="(/download/[^"]+/)"', page).group(1)
    Package.objects.filter(pk=package.pk).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert client.get(link).status_code == 410


def test_a_download_link_needs_the_browser_that_entered_a_fresh_code(client, open_status):
    from django.test import Client

    request, package = completed_with_package()
    page = client.get(open_status(client, request)).content.decode()
    link = re.search(r'href="(/download/[^"]+/)"', page).group(1)
    assert Client().get(link).status_code == 410
    assert client.get("/download/forged-token/").status_code == 410


def test_expired_packages_are_purged_by_the_periodic_task(client):
    from requests_app.services.retention.tasks import purge_expired_packages

    request, package = completed_with_package()
    Package.objects.filter(pk=package.pk).update(
        expires_at=timezone.now() - datetime.timedelta(days=1))
    path = Path(settings.MEDIA_ROOT) / package.path
    assert path.exists()
    assert purge_expired_packages() == 1
    package.refresh_from_db()
    assert package.purged_at is not None and not path.exists()


def test_staff_open_the_agents_signed_permission_decrypted_and_audited(client, alice, charlie):
    from tests.conftest import staff_login

    upload = SimpleUploadedFile("scan.png", PNG, content_type="image/png")
    submit(client, filed_by="agent", agent_name="Ann Agent", agent_email="ann@agents.example",
           permission=upload)
    request = PrivacyRequest.objects.get()
    url = f"/staff/requests/{request.reference}/permission/"
    assert staff_login(client, charlie).get(url).status_code == 403
    response = staff_login(client, alice).get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == (
        f'attachment; filename="{request.reference}-permission.png"')
    assert AuditEvent.objects.filter(request=request, action="staff.viewed_identity",
                                     data__page="agent permission").exists()
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "Open the signed permission" in desk


def test_the_agents_permission_file_is_purged_once_the_request_has_ended(client, settings):
    from requests_app.services.retention.tasks import purge_expired_packages

    upload = SimpleUploadedFile("p.pdf", PDF, content_type="application/pdf")
    submit(client, rights=["deletion", "correction"], corrected_field="name",
           correction_wrong="a", correction_right="b", filed_by="agent", agent_name="Ann",
           agent_email="ann@agents.example", permission=upload)
    first, second = PrivacyRequest.objects.order_by("id")
    path = Path(settings.MEDIA_ROOT) / first.evidence.permission_path
    assert path.exists() and second.evidence.permission_path == first.evidence.permission_path
    PrivacyRequest.objects.filter(pk=first.pk).update(state=State.CANCELLED)
    purge_expired_packages()
    first.evidence.refresh_from_db()
    assert first.evidence.permission_path == "" and path.exists()  # still needed by the second
    PrivacyRequest.objects.filter(pk=second.pk).update(state=State.EXPIRED)
    with committed():  # the file goes once the purge commits
        purge_expired_packages()
    assert not path.exists()
    assert AuditEvent.objects.filter(action="request.verification_file_purged").count() == 2


def test_errors_get_pages_in_plain_words_never_a_stack_trace(client):
    from django.test import RequestFactory
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/request/"))
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong on our side" in body and "Traceback" not in body
    missing = client.get("/no-such-page/")
    assert missing.status_code == 404 and "Page not found" in missing.content.decode()
    too_big = client.post("/request/", b"name=" + b"x" * 3_000_000,
                          content_type="application/x-www-form-urlencoded")
    assert too_big.status_code == 400
    assert "We could not read what was sent" in too_big.content.decode()


def test_every_described_by_reference_points_at_a_real_element(client):
    """Help texts and errors are tied to their inputs for screen readers."""
    response = submit(client, rights=["correction", "access"], email="nope", filed_by="agent")
    html = response.content.decode()
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    described = re.findall(r'aria-describedby="([^"]+)"', html)
    assert len(described) > 10
    for value in described:
        for ref in value.split():
            assert ref in ids, ref
    assert 'aria-invalid="true"' in html
    for field in re.findall(r'href="#(f-[a-z_]+)"', html):
        assert field in ids, field


def test_the_rate_limit_address_is_the_sockets_unless_a_proxy_is_trusted(settings):
    from django.test import RequestFactory

    from requests_app.ratelimit import client_ip

    spoofed = RequestFactory().get("/", REMOTE_ADDR="203.0.113.9",
                                   HTTP_X_FORWARDED_FOR="198.51.100.1, 192.0.2.7")
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
    assert client_ip(spoofed) == "203.0.113.9"
    # Behind the one trusted proxy: the entry it appended, never what the client sent.
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
    assert client_ip(spoofed) == "192.0.2.7"


def test_an_email_in_another_case_counts_in_the_same_bucket(client, settings):
    settings.RATELIMIT_FORM_PER_EMAIL = 2
    settings.RATELIMIT_FORM_PER_IP = 100
    for email in ("Pat.Doe@Example.com", " PAT.DOE@EXAMPLE.COM"):
        assert submit(client, email=email, website="x").status_code == 302
    assert submit(client, email="pat.doe@example.com", website="x").status_code == 429


def test_the_page_language_follows_the_active_language_and_errors_take_the_focus(client,
                                                                                 settings):
    settings.LANGUAGES = [("en", "English"), ("fr", "French")]
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert '<html lang="fr">' in page
    # Without JavaScript, the summary of errors is where the focus lands.
    page = client.post("/request/", form(name="")).content.decode()
    assert re.search(r'<div class="error-summary"[^>]*\bautofocus\b', page)
    page = client.post("/preferences/", {"email": "not an address"}).content.decode()
    assert re.search(r'role="alert"[^>]*\bautofocus\b', page)
