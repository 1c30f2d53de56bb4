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
    PrivacyRequest,
    RequestNote,
)
from requests_app.models.privacy_request import FINAL_STATES
from requests_app.services.audit import record_event

log = logging.getLogger(__name__)


def due_for_purge(now=None):
    cutoff = (now or timezone.now()) - relativedelta(months=settings.RETENTION_MONTHS)
    return PrivacyRequest.objects.filter(state__in=FINAL_STATES, closed_at__lt=cutoff,
                                         identity__isnull=False)


def purge(request_id: int) -> bool:
    from requests_app.packages import discard, discard_run_files

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
        from requests_app.models import VerificationEvidence
        from requests_app.services.portal import release_permission

        evidence = VerificationEvidence.objects.filter(request=request)
        originals += release_permission(evidence)
        evidence.update(agent_name="", agent_email="", permission_name="",
                        correction_wrong="", correction_right="")
        remove_on_commit(*originals)
        for package in request.packages.filter(purged_at=None):
            discard(package)
        record_event("request.identity_purged", actor=Actor.system(), request=request,
                     data={"retention_months": settings.RETENTION_MONTHS, "emails": emails})
    discard_run_files(request)
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
