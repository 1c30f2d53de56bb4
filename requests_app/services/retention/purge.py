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
    Identity,
    IntakeRecord,
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


def purge_verification_files() -> int:
    """Data gathered only to verify goes once verification has ended (verified,
    denied, expired, cancelled: no longer pending): the agent's signed permission
    file. What was matched and when stays, as the record of the verification."""
    count = 0
    ended = (VerificationEvidence.objects.exclude(permission_path="")
             .exclude(request__state=State.PENDING_VERIFICATION).select_related("request"))
    for evidence in ended:
        with transaction.atomic():
            remove_on_commit(*release_permission(
                VerificationEvidence.objects.filter(pk=evidence.pk)))
            record_event("request.verification_file_purged", actor=Actor.system(),
                         request=evidence.request, data={"kind": "agent permission"})
        count += 1
    return count


def release_permission(evidence) -> list[str]:
    """Blank the agent's signed permission on these evidence rows; return the files
    no other row still points at (a submission's requests share one file: it goes
    with the last of them), for the caller to remove once committed."""
    paths = set(evidence.exclude(permission_path="").values_list("permission_path", flat=True))
    evidence.update(permission_path="")
    still_used = set(VerificationEvidence.objects.filter(permission_path__in=paths)
                     .values_list("permission_path", flat=True))
    return sorted(paths - still_used)
