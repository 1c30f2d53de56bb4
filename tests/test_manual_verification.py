"""Manual verification is recorded and enforced (issue 15, item 10): the desk's
verify step records the methods, the evidence (encrypted at rest, purged when
verification ends), the data points checked and the degree of certainty reached;
a degree below what the right needs is refused with words, or, the staff's
choice, a request for specific pieces is answered with categories, the type it
was filed as kept and the consumer told why."""

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from requests_app.files import iter_decrypted
from requests_app.models import AuditEvent, DataSource, ManualVerification, PrivacyRequest, State
from requests_app.rules import CERTAINTY_NEEDED, CERTAINTY_POINTS, REQUEST_TYPES, Certainty
from requests_app.services.retention.tasks import purge_expired_packages
from requests_app.services.verification.manual import EVIDENCE_MAX_BYTES
from tests.conftest import committed, file_request, intake_post, staff_login

pytestmark = pytest.mark.django_db

MARKER = b"PASSPORT-NO-X7731-PAT-DOE"
PDF = b"%PDF-1.4\n" + MARKER + b"\n%%EOF"


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def evidence(content=PDF, name="passport.pdf"):
    return SimpleUploadedFile(name, content, content_type="application/pdf")


def post_step(client, request, name, **fields):
    form = {f"{name}-{k}": v for k, v in fields.items()}
    form.update({f"{name}-expected_state": request.state, f"{name}-version": request.version})
    return client.post(f"/staff/requests/{request.reference}/step/{name}/", form)


def enc_files(media):
    return [p for p in (media / "verification").rglob("*") if p.is_file()] \
        if (media / "verification").exists() else []


def test_each_right_needs_the_degree_of_certainty_the_regulations_set():
    level = {code: CERTAINTY_NEEDED[t.verification] for code, t in REQUEST_TYPES.items()}
    assert level["know_categories"] is Certainty.REASONABLE  # §7062(b)
    assert level["access"] is level["portability"] is Certainty.REASONABLY_HIGH  # §7062(c)
    assert level["deletion"] is Certainty.REASONABLE  # §7062(d), no sensitive data
    assert level["opt_out_sale"] is None
    assert CERTAINTY_POINTS == {Certainty.REASONABLE: 2, Certainty.REASONABLY_HIGH: 3}


def test_manual_verification_records_method_evidence_points_and_level_and_audits_no_personal_data(
        client, bob, media):
    request = file_request(request_type="deletion", jurisdiction="CA",
                           postal_address="12 Elm Street", phone="+1 555 0100")
    staff_login(client, bob)
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-testid="verification-needed"' in desk
    assert "a reasonable degree of certainty (CCPA regs §7062(b))" in desk
    with committed():
        response = post_step(client, request, "verify_manually",
                             methods=["document", "call_back"],
                             points=["name", "postal_address", "phone"], level="reasonable",
                             evidence=evidence())
    assert response.status_code == 302, response.content.decode()[:3000]
    request.refresh_from_db()
    assert request.state == State.IN_REVIEW and request.verified_at is not None
    manual = ManualVerification.objects.get(request=request)
    assert manual.verified_by == bob and manual.methods == ["document", "call_back"]
    assert manual.points_checked == ["name", "postal_address", "phone"]
    assert (manual.level_reached, manual.level_needed) == ("reasonable", "reasonable")
    assert manual.evidence_type == "application/pdf" and manual.evidence_size == len(PDF)
    event = AuditEvent.objects.get(action="request.verify_manually", request=request)
    assert event.actor == bob
    assert event.data == {"methods": ["document", "call_back"],
                          "points": ["name", "postal_address", "phone"],
                          "level": "reasonable", "level_needed": "reasonable",
                          "evidence": True, "original_type": None}
    trail = str(event.data) + event.reason
    for personal in ("Pat", "pat.doe", "Elm", "555", MARKER.decode(), "passport"):
        assert personal not in trail
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-testid="manual-verification"' in page and "Identity document seen" in page
    assert "A reasonable degree of certainty" in page


def test_a_level_below_what_the_right_needs_is_refused_with_words(client, bob, media):
    request = file_request(request_type="access", jurisdiction="CA")
    staff_login(client, bob)
    response = post_step(client, request, "verify_manually", methods=["knowledge"],
                         points=["name", "phone"], level="reasonable", evidence=evidence())
    assert response.status_code == 400
    text = response.content.decode()
    assert ("This right needs a reasonably high degree of certainty (CCPA regs §7062(c)); a "
            "reasonable degree of certainty was recorded") in text
    assert "Verified only for categories" in text  # the other way, named where they decide
    request.refresh_from_db()
    assert request.state == State.PENDING_VERIFICATION and request.verified_at is None
    assert not ManualVerification.objects.exists()
    assert not AuditEvent.objects.filter(action="request.verify_manually").exists()
    assert enc_files(media) == []  # the refused step left no evidence behind


def test_a_level_needs_its_number_of_data_points_checked(client, bob, media):
    request = file_request(request_type="deletion")
    staff_login(client, bob)
    response = post_step(client, request, "verify_manually", methods=["document"],
                         points=["name"], level="reasonable")
    assert response.status_code == 400
    assert ("A reasonable degree of certainty needs at least 2 data points checked (CCPA regs "
            "§7062(b)); 1 are ticked.") in response.content.decode()
    response = post_step(client, request, "verify_manually", points=["name", "phone"],
                         level="reasonable")
    assert response.status_code == 400 and b"This field is required" in response.content
    request.refresh_from_db()
    assert request.state == State.PENDING_VERIFICATION


def test_a_deletion_reaching_sensitive_data_needs_a_reasonably_high_degree(client, bob, media):
    DataSource.objects.create(name="Health", kind="manual", enabled=True,
                              categories=["user.health_and_medical"])
    request = file_request(request_type="deletion")
    staff_login(client, bob)
    response = post_step(client, request, "verify_manually", methods=["document"],
                         points=["name", "phone"], level="reasonable")
    assert response.status_code == 400
    assert b"needs a reasonably high degree of certainty (CCPA regs \xc2\xa77062(c))" \
        in response.content


def test_a_copy_of_specific_pieces_needs_a_signed_declaration(client, bob, media):
    request = file_request(request_type="access")
    staff_login(client, bob)
    points = ["name", "phone", "postal_address"]
    response = post_step(client, request, "verify_manually", methods=["document"],
                         points=points, level="reasonably_high")
    assert response.status_code == 400
    assert b"needs a signed declaration under penalty of perjury" in response.content
    response = post_step(client, request, "verify_manually", methods=["declaration"],
                         points=points, level="reasonably_high")
    assert response.status_code == 400
    assert b"Attach the signed declaration as the evidence." in response.content
    with committed():
        response = post_step(client, request, "verify_manually",
                             methods=["document", "declaration"], points=points,
                             level="reasonably_high", evidence=evidence(name="signed.pdf"))
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.IN_REVIEW and request.request_type == "access"


def test_downgrade_keeps_the_original_type_and_sends_the_notice(client, bob, media):
    request = file_request(request_type="access", jurisdiction="CA")
    staff_login(client, bob)
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-step="verify_for_categories"' in desk
    mail.outbox.clear()
    with committed():
        response = post_step(client, request, "verify_for_categories", methods=["call_back"],
                             points=["name", "phone"], level="reasonable")
    assert response.status_code == 302, response.content.decode()[:3000]
    request.refresh_from_db()
    assert request.request_type == "know_categories"
    assert request.original_request_type == "access" and request.type_as_filed == "access"
    assert request.state == State.IN_REVIEW
    (message,) = [m for m in mail.outbox if "categories" in m.subject]
    assert message.to == ["pat.doe@example.com"]
    assert "will not disclose any specific information" in message.body
    event = AuditEvent.objects.get(action="request.verify_for_categories", request=request)
    assert event.data["original_type"] == "access" and event.data["level"] == "reasonable"
    assert ManualVerification.objects.get(request=request).answered_with_categories
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-testid="original-type"' in page and "answered with categories" in page


def test_only_a_request_for_specific_pieces_can_be_answered_with_categories(client, bob, media):
    request = file_request(request_type="deletion")
    staff_login(client, bob)
    desk = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-step="verify_for_categories"' not in desk
    response = post_step(client, request, "verify_for_categories", methods=["call_back"],
                         points=["name", "phone"], level="reasonable")
    assert response.status_code == 302  # refused with a message, nothing changed
    request.refresh_from_db()
    assert request.request_type == "deletion" and request.original_request_type == ""
    assert request.state == State.PENDING_VERIFICATION


def test_evidence_is_encrypted_at_rest_and_purged_when_verification_ends(client, bob, media):
    request = file_request(request_type="deletion")
    staff_login(client, bob)
    with committed():
        post_step(client, request, "verify_manually", methods=["document"],
                  points=["name", "postal_address"], level="reasonable", evidence=evidence())
    manual = ManualVerification.objects.get(request=request)
    stored = media / manual.evidence_path
    on_disk = stored.read_bytes()
    assert MARKER not in on_disk and not on_disk.startswith(b"%PDF")
    assert b"".join(iter_decrypted(stored)) == PDF
    response = client.get(f"/staff/requests/{request.reference}/verification/evidence/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    assert AuditEvent.objects.filter(action="staff.viewed_identity", request=request,
                                     data={"page": "evidence"}).exists()
    request.refresh_from_db()
    assert request.state != State.PENDING_VERIFICATION  # verification has ended
    with committed():
        purge_expired_packages()
    manual.refresh_from_db()
    assert not stored.exists() and manual.evidence_path == ""
    # The record of the verification stays: methods, points, degree, and that there was one.
    assert manual.points_checked == ["name", "postal_address"]
    assert manual.level_reached == "reasonable" and manual.evidence_type == "application/pdf"
    assert AuditEvent.objects.filter(action="request.verification_file_purged",
                                     request=request,
                                     data={"kind": "verification evidence"}).exists()
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "deleted once verification ended" in page
    assert client.get(f"/staff/requests/{request.reference}/verification/evidence/"
                      ).status_code == 404


@pytest.mark.parametrize("upload,message", [
    (SimpleUploadedFile("id.pdf", b"MZ\x90\x00 not a pdf at all"),
     "must be a PDF, PNG or JPEG file"),
    (SimpleUploadedFile("id.pdf", b"%PDF-" + b"0" * EVIDENCE_MAX_BYTES),
     "too large: upload a file of at most 20 MB"),
    (SimpleUploadedFile("id.pdf", b""), "The submitted file is empty."),
])
def test_bad_evidence_uploads_get_a_clear_message_not_a_500(upload, message, client, bob,
                                                            media):
    request = file_request(request_type="deletion")
    staff_login(client, bob)
    response = post_step(client, request, "verify_manually", methods=["document"],
                         points=["name", "phone"], level="reasonable", evidence=upload)
    assert response.status_code == 400
    assert message in response.content.decode()
    request.refresh_from_db()
    assert request.state == State.PENDING_VERIFICATION and enc_files(media) == []


def test_staff_intake_verifies_at_once_only_to_the_degree_the_right_needs(client, bob, media):
    staff_login(client, bob)
    with committed():
        response = client.post("/staff/intake/", intake_post(
            request_type="access", verification_method="call_back",
            verification_points=["name", "phone"], verification_level="reasonable",
            verification_evidence="Called back on the number on the account."), follow=True)
    request = PrivacyRequest.objects.get(identity__email="lee@example.com")
    assert request.state == State.PENDING_VERIFICATION
    assert "Entered, but not verified: This right needs a reasonably high degree" in \
        response.content.decode()
