"""Retention: once a request has been closed for RETENTION_MONTHS (24 by default,
CCPA regs §7101), the person's identity and everything gathered to verify or
answer them is purged. The request record, its metrics fields and the audit trail
(whose personal values are hashed) stay."""

import logging

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from requests_app.files import remove_on_commit
from requests_app.models import (
    Actor,
    GuardianDetails,
    Identity,
    IntakeRecord,
    ManualVerification,
    OutgoingEmail,
    Package,
    PrivacyRequest,
    RequestNote,
    State,
    VerificationEvidence,
)
from requests_app.models.privacy_request import FINAL_STATES
from requests_app.services.audit.events import record_event
from requests_app.services.fulfilment import packages
from requests_app.services.retention import verification_data
from requests_app.services.verification import codes

log = logging.getLogger(__name__)


def due_for_purge(now=None):
    cutoff = (now or timezone.now()) - relativedelta(months=settings.RETENTION_MONTHS)
    return PrivacyRequest.objects.filter(state__in=FINAL_STATES, closed_at__lt=cutoff,
                                         identity__isnull=False)


def purge(request_id: int) -> bool:
    with transaction.atomic():
        request = PrivacyRequest.objects.locked().get(pk=request_id)
        deleted, _ = Identity.objects.filter(request=request).delete()
        if not deleted:
            return False
        emails, _ = OutgoingEmail.objects.filter(request=request).delete()
        # Free text that may describe the person; the codes and dates stay.
        PrivacyRequest.objects.filter(pk=request.pk).update(
            details="", appeal_text="", denial_detail="", extension_notice="",
            appeal_decision="", information_request="")
        # Staff notes and what staff entered by hand (the original, the evidence).
        RequestNote.objects.filter(request=request).delete()
        originals = [i.original_path for i in IntakeRecord.objects.filter(request=request)
                     if i.original_path]
        IntakeRecord.objects.filter(request=request).update(
            call_note="", verification_evidence="", original_name="", original_path="",
            purged_at=timezone.now())
        # The portal's verification evidence: the agent, the permission file and
        # the correction's texts go; the names of matched points and dates stay.
        evidence = VerificationEvidence.objects.filter(request=request)
        originals += release_permission(evidence)
        evidence.update(agent_name="", agent_email="", permission_name="",
                        correction_wrong="", correction_right="")
        # The child a parent or guardian acted for goes with the identity.
        guardians = GuardianDetails.objects.filter(request=request)
        originals += release_files(guardians, "proof_path")
        guardians.update(child_name="", child_birth_date=None)
        originals += release_files(ManualVerification.objects.filter(request=request),
                                   "evidence_path")
        remove_on_commit(*originals)
        for package in request.packages.filter(purged_at=None):
            packages.discard(package)
        record_event("request.identity_purged", actor=Actor.system(), request=request,
                     data={"retention_months": settings.RETENTION_MONTHS, "emails": emails})
    packages.discard_run_files(request)
    return True


def purge_all(now=None) -> int:
    # Emails about no request (preference-page codes) are of no use once sent.
    sent_before = (now or timezone.now()) - relativedelta(days=1)
    OutgoingEmail.objects.filter(request=None, sent_at__lt=sent_before).delete()
    count = 0
    for request_id in due_for_purge(now).values_list("pk", flat=True):
        count += purge(request_id)
    if count:
        log.info("retention: purged the identity of %s closed requests", count)
    return count


def purge_expired_packages() -> int:
    """Packages whose download link expired are deleted (the row stays); old
    one-time codes and the permission files of ended requests go too."""
    codes.purge_old()
    purge_verification_files()
    verification_data.purge_verification_points()
    count = 0
    for package in Package.objects.filter(purged_at=None, expires_at__lt=timezone.now()):
        packages.discard(package)
        record_event("package.purged", actor=Actor.system(), request=package.request,
                     data={"package": package.pk, "kind": package.kind})
        count += 1
    return count


# The files kept only to verify: (model, field of the path, what the audit calls it).
VERIFICATION_FILES = [
    (VerificationEvidence, "permission_path", "agent permission"),
    (ManualVerification, "evidence_path", "verification evidence"),
    (GuardianDetails, "proof_path", "guardian proof"),
]


def purge_verification_files() -> int:
    """Data gathered only to verify goes once verification has ended (verified,
    denied, expired, cancelled: no longer pending): the agent's signed permission,
    the evidence staff attached when verifying by hand, a parent's or guardian's
    proof. What was matched, the degree, the outcome and the dates stay, as the
    record of the verification."""
    count = 0
    for model, field, kind in VERIFICATION_FILES:
        ended = (model.objects.exclude(**{field: ""})
                 .exclude(request__state=State.PENDING_VERIFICATION).select_related("request"))
        for row in ended:
            with transaction.atomic():
                remove_on_commit(*release_files(model.objects.filter(pk=row.pk), field))
                record_event("request.verification_file_purged", actor=Actor.system(),
                             request=row.request, data={"kind": kind})
            count += 1
    return count


def release_permission(evidence) -> list[str]:
    return release_files(evidence, "permission_path")


def release_files(rows, field: str) -> list[str]:
    """Blank the file `field` on these rows; return the files no other row still
    points at (a submission's requests share one file: it goes with the last of
    them), for the caller to remove once committed."""
    paths = set(rows.exclude(**{field: ""}).values_list(field, flat=True))
    rows.update(**{field: ""})
    still_used = set(rows.model.objects.filter(**{f"{field}__in": paths})
                     .values_list(field, flat=True))
    return sorted(paths - still_used)
