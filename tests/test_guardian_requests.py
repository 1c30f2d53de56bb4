"""A parent or guardian of a child under 13 (issue 15, item 11; CCPA regs §7070):
the portal form and staff intake take the child's name and date of birth (under
13 on the day of the request), the guardian's proof (encrypted, deleted when
verification ends) and, where consent is what is asked (an opt-in purpose), the
guardian's affirmative consent, which counts once staff have verified them as the
child's parent or guardian. The desk shows all of it where staff verify."""

import datetime

import pytest
from dateutil.relativedelta import relativedelta
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from requests_app.files import iter_decrypted
from requests_app.models import (
    AuditEvent,
    ConsentRecord,
    GuardianDetails,
    PrivacyRequest,
    State,
)
from requests_app.rules import GUARDIAN_CHILD_UNDER
from requests_app.services.retention.tasks import purge_expired_packages
from tests.conftest import committed, intake_post, portal_form, staff_login

pytestmark = pytest.mark.django_db

MARKER = b"BIRTH-CERT-CHILD-SAM-DOE"
PROOF = b"%PDF-1.4\n" + MARKER + b"\n%%EOF"


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def born(years_ago: int, days: int = 0) -> str:
    return (timezone.localdate() - relativedelta(years=years_ago) + datetime.timedelta(
        days=days)).isoformat()


def proof(content=PROOF, name="birth-certificate.pdf"):
    return SimpleUploadedFile(name, content, content_type="application/pdf")


def guardian_form(**overrides) -> dict:
    data = {"filed_by": "parent", "rights": ["deletion"], "name": "Pat Doe",
            "child_name": "Sam Doe", "child_birth_date": born(8), "guardian_proof": proof()}
    data.update(overrides)
    return portal_form(**data)


def file_as_guardian(client, **overrides) -> PrivacyRequest:
    with committed():
        response = client.post("/request/", guardian_form(**overrides))
    assert response.status_code == 302, response.content.decode()[:3000]
    return PrivacyRequest.objects.get(identity__email="pat.doe@example.com")


def test_a_guardian_request_for_a_child_13_or_over_is_refused_with_a_clear_message(
        client, media):
    response = client.post("/request/", guardian_form(child_birth_date=born(13)))
    assert response.status_code == 400
    assert (f"A parent or guardian can make a request for a child under "
            f"{GUARDIAN_CHILD_UNDER} only; a child born on {born(13)} is 13 on the day of the "
            f"request.") in response.content.decode()
    assert not PrivacyRequest.objects.exists()
    # The day before the 13th birthday, the child is still 12.
    assert file_as_guardian(client, child_birth_date=born(13, days=1)).filed_by == "parent"


def test_a_guardian_request_needs_the_child_and_the_proof(client, media):
    response = client.post("/request/", guardian_form(guardian_proof=None, child_name="",
                                                      child_birth_date=""))
    text = response.content.decode()
    assert response.status_code == 400
    assert "Upload your proof that you are the child&#x27;s parent or guardian." in text
    assert "Enter the child&#x27;s full name." in text
    assert "Enter the child&#x27;s date of birth." in text
    assert not PrivacyRequest.objects.exists()


@pytest.mark.parametrize("upload,message", [
    (SimpleUploadedFile("proof.pdf", b"GIF89a not a pdf"), "must be a PDF, PNG or JPEG file"),
    (SimpleUploadedFile("proof.pdf", b"%PDF-" + b"0" * (5 * 1024 * 1024)),
     "too large: upload a file of at most 5 MB"),
    (SimpleUploadedFile("proof.pdf", b""), "The proof file is empty"),
])
def test_bad_guardian_proof_uploads_get_a_clear_message_not_a_500(upload, message, client,
                                                                  media):
    response = client.post("/request/", guardian_form(guardian_proof=upload))
    assert response.status_code == 400 and message in response.content.decode()
    assert not PrivacyRequest.objects.exists() and not any(media.rglob("*.enc"))


def test_a_guardian_request_records_the_child_and_the_proof_encrypted_at_rest(client, media):
    request = file_as_guardian(client)
    guardian = GuardianDetails.objects.get(request=request)
    assert (guardian.child_name, guardian.child_birth_date.isoformat()) == ("Sam Doe", born(8))
    assert guardian.child_age_at_filing == 8
    stored = media / guardian.proof_path
    assert MARKER not in stored.read_bytes()
    assert b"".join(iter_decrypted(stored)) == PROOF
    assert guardian.proof_type == "application/pdf" and guardian.consents == []
    # Never verified automatically: staff check the proof (§7070).
    assert request.state == State.PENDING_VERIFICATION
    assert all("Sam" not in str(e.data) for e in AuditEvent.objects.filter(request=request))


def test_the_guardian_consent_is_recorded_once_the_guardian_is_verified(
        client, bob, media, make_purpose):
    purpose = make_purpose("kids-newsletter", "opt_in", text="Send the child our newsletter.")
    form = client.get("/request/").content.decode()
    assert "Send the child our newsletter." in form
    assert 'value="kids-newsletter:1" checked' not in form  # never pre-ticked
    request = file_as_guardian(client, guardian_consent=["kids-newsletter:1"])
    guardian = GuardianDetails.objects.get(request=request)
    assert guardian.consents == [{"purpose": "kids-newsletter", "notice": 1}]
    assert guardian.consent_given_at is not None
    assert not ConsentRecord.objects.exists()  # not before they are verified as guardian
    staff_login(client, bob)
    step = {"verify_manually-expected_state": request.state,
            "verify_manually-version": request.version,
            "verify_manually-points": ["name", "postal_address"],
            "verify_manually-level": "reasonable"}
    refused = client.post(f"/staff/requests/{request.reference}/step/verify_manually/",
                          {**step, "verify_manually-methods": ["document"]})
    assert refused.status_code == 400
    assert "acts for a child only once verified as such (CCPA regs §7070)" in \
        refused.content.decode()
    with committed():
        done = client.post(f"/staff/requests/{request.reference}/step/verify_manually/",
                           {**step, "verify_manually-methods": ["document", "guardian"]})
    assert done.status_code == 302
    (record,) = ConsentRecord.objects.all()
    assert (record.purpose, record.action, record.notice.version) == (purpose, "grant", 1)
    assert record.request == request and "parent or guardian" in record.affirmative_act
    guardian.refresh_from_db()
    assert guardian.consent_recorded_at is not None


def test_the_desk_shows_the_guardian_details_where_staff_verify(client, bob, media):
    request = file_as_guardian(client)
    staff_login(client, bob)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-testid="guardian"' in page and "Sam Doe" in page
    assert "8 on the filing date" in page
    assert "check their proof before verifying (CCPA regs §7070)" in page
    assert f"/staff/requests/{request.reference}/verification/guardian-proof/" in page
    response = client.get(f"/staff/requests/{request.reference}/verification/guardian-proof/")
    assert b"".join(response.streaming_content) == PROOF
    assert AuditEvent.objects.filter(action="staff.viewed_identity", request=request,
                                     data={"page": "guardian proof"}).exists()


def test_the_guardian_proof_is_purged_when_verification_ends(client, bob, media):
    request = file_as_guardian(client)
    stored = media / GuardianDetails.objects.get(request=request).proof_path
    with committed():
        purge_expired_packages()
    assert stored.exists()  # still pending: staff need it
    PrivacyRequest.objects.filter(pk=request.pk).update(state=State.DENIED)
    with committed():
        purge_expired_packages()
    guardian = GuardianDetails.objects.get(request=request)
    assert not stored.exists() and guardian.proof_path == ""
    assert guardian.child_name == "Sam Doe"  # goes with the identity, at retention
    assert AuditEvent.objects.filter(action="request.verification_file_purged",
                                     data={"kind": "guardian proof"}).exists()
    staff_login(client, bob)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert "deleted once verification ended" in page


def test_staff_intake_takes_a_guardian_request_for_a_child_under_13(client, bob, media):
    staff_login(client, bob)
    # The letter came 6 days ago: the age that counts is the child's on that day.
    twelve_then = born(13, days=-3)  # 13 now, 12 when the letter came
    response = client.post("/staff/intake/", intake_post(
        filed_by="parent", child_name="Sam Doe", child_birth_date=born(13, days=-10)))
    assert response.status_code == 400
    assert "is 13 on the day of the request" in response.content.decode()
    response = client.post("/staff/intake/", intake_post(
        filed_by="parent", child_name="Sam Doe", child_birth_date=twelve_then))
    assert response.status_code == 400
    assert "Attach the parent&#x27;s or guardian&#x27;s proof." in response.content.decode()
    with committed():
        response = client.post("/staff/intake/", intake_post(
            filed_by="parent", child_name="Sam Doe", child_birth_date=twelve_then,
            guardian_proof=proof()))
    assert response.status_code == 302, response.content.decode()[:3000]
    guardian = GuardianDetails.objects.get(request__identity__email="lee@example.com")
    assert guardian.child_age_at_filing == 12 and guardian.proof_type == "application/pdf"
    assert MARKER not in (media / guardian.proof_path).read_bytes()


def test_the_guardian_section_shows_only_when_chosen_and_works_without_javascript(
        chromium, live_server, media):
    context = chromium.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/request/")
        section = page.locator('[data-testid="guardian-section"]')
        assert not section.is_visible()
        page.check('input[name="filed_by"][value="parent"]')
        assert section.is_visible()
        page.check('input[name="rights"][value="deletion"]')
        page.select_option('select[name="residence"]', "CA")
        page.fill('input[name="name"]', "Pat Doe")
        page.fill('input[name="email"]', "pat.doe@example.com")
        page.fill('input[name="child_name"]', "Sam Doe")
        page.fill('input[name="child_birth_date"]', born(8))
        page.set_input_files('input[name="guardian_proof"]', files=[{
            "name": "proof.pdf", "mimeType": "application/pdf", "buffer": PROOF}])
        page.click("button[type=submit]")
        page.wait_for_url("**/sent/")
    finally:
        context.close()
    guardian = GuardianDetails.objects.get(request__identity__email="pat.doe@example.com")
    assert guardian.child_name == "Sam Doe" and guardian.proof_path


def test_retention_purges_the_childs_name_and_date_of_birth_with_the_identity(client, media):
    from requests_app.services.retention.purge import purge

    request = file_as_guardian(client)
    PrivacyRequest.objects.filter(pk=request.pk).update(state=State.CLOSED,
                                                        closed_at=timezone.now())
    proof_file = media / GuardianDetails.objects.get(request=request).proof_path
    with committed():
        assert purge(request.pk)
    guardian = GuardianDetails.objects.get(request=request)
    assert (guardian.child_name, guardian.child_birth_date) == ("", None)
    assert guardian.child_age_at_filing == 8 and not proof_file.exists()
