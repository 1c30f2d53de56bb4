"""Verification data is kept only as long as it serves (issue 15, item 12): what was
given only to verify goes when verification ends (the agent's signed permission)
or, for the data points sources also look people up by, when the request ends
(phone, account number, postal address); the outcome and the points matched stay,
and the identity itself follows retention."""

import pytest

from requests_app.models import AuditEvent, Identity, State, VerificationEvidence
from requests_app.services.retention.tasks import purge_expired_packages
from tests.conftest import committed, file_request

pytestmark = pytest.mark.django_db

POINTS = {"phone": "+1 555 0100", "account_number": "AC-991",
          "postal_address": "1 Main St, Springfield"}


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def _with_evidence(media, state, **extra):
    request = file_request(state=state, **POINTS, **extra)
    (media / "permissions").mkdir(exist_ok=True)
    path = media / "permissions" / f"{request.reference}.pdf"
    path.write_bytes(b"%PDF-1.4 signed permission")
    VerificationEvidence.objects.create(
        request=request, submission=request.reference, points_given=["email", "phone"],
        points_matched=["email", "phone"], outcome="Verified automatically: 2 data points "
        "matched.", level_reached=True, agent_name="Ann Agent",
        permission_path=f"permissions/{request.reference}.pdf")
    return request, path


def _purge():
    with committed():  # files go once the purge commits
        purge_expired_packages()


def test_the_agents_permission_goes_when_verification_ends_not_before(media):
    pending, pending_file = _with_evidence(media, None)
    verified, verified_file = _with_evidence(media, State.VERIFIED, email="sam@example.com")
    _purge()
    assert pending_file.exists() and pending.evidence.permission_path
    assert not verified_file.exists()
    evidence = VerificationEvidence.objects.get(request=verified)
    assert evidence.permission_path == ""
    assert evidence.points_matched == ["email", "phone"] and evidence.level_reached
    assert evidence.outcome.startswith("Verified automatically")


def test_points_sources_look_people_up_by_stay_while_the_request_is_worked(media):
    request, _ = _with_evidence(media, State.FULFILLING)
    _purge()
    identity = Identity.objects.get(request=request)
    assert (identity.phone, identity.account_number, identity.postal_address) == (
        POINTS["phone"], POINTS["account_number"], POINTS["postal_address"])
    assert not AuditEvent.objects.filter(action="request.verification_data_purged").exists()


@pytest.mark.parametrize("state", [State.CLOSED, State.EXPIRED, State.CANCELLED])
def test_phone_account_and_address_go_when_the_request_ends(media, state):
    request, _ = _with_evidence(media, state)
    _purge()
    identity = Identity.objects.get(request=request)
    assert (identity.phone, identity.account_number, identity.postal_address) == ("", "", "")
    # The identity itself follows retention: the name and email stay for now.
    assert identity.email == "pat.doe@example.com" and identity.name == "Pat Doe"
    evidence = VerificationEvidence.objects.get(request=request)
    assert evidence.points_matched == ["email", "phone"] and evidence.points_given
    event = AuditEvent.objects.get(request=request, action="request.verification_data_purged")
    assert event.data == {"fields": ["phone", "account_number", "postal_address"]}
    assert "555" not in str(event.data) and "Main" not in str(event.data)
    _purge()  # once only
    assert AuditEvent.objects.filter(action="request.verification_data_purged").count() == 1


def test_without_an_email_the_phone_and_address_stay_to_reach_the_person(media):
    request, _ = _with_evidence(media, State.CLOSED, email="")
    _purge()
    identity = Identity.objects.get(request=request)
    assert identity.account_number == ""
    assert (identity.phone, identity.postal_address) == (POINTS["phone"],
                                                         POINTS["postal_address"])
    _purge()
    assert AuditEvent.objects.filter(action="request.verification_data_purged").count() == 1
