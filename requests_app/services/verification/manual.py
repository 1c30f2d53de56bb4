"""Verification by staff (issue 15, item 10): the desk's "Mark identity verified"
and "Verified only for categories" steps (models/verification.py), with what was
recorded (methods, names of the points checked, the degree reached) and the
evidence file, encrypted at rest (files.py). For a request by a parent or
guardian, the consent they gave on the form to opt-in purposes goes into the
consent ledger once they are verified as the child's parent or guardian (CCPA regs
§7070; never before).

The audit event of the step (`request.verify_manually`, `request.verify_for_categories`)
carries the method codes, the names of the points, the degrees and whether there
was evidence: never a value."""

import contextlib
import secrets
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.files import EncryptedWriter
from requests_app.models import (
    GuardianDetails,
    ManualVerification,
    PrivacyRequest,
    Purpose,
    PurposeNotice,
)
from requests_app.models.privacy_request import FiledBy, TransitionInputError
from requests_app.models.verification import certainty_needed
from requests_app.services.consent import ledger
from requests_app.services.requests.lifecycle import (
    TransitionRefused,
    apply_transition,
    lock_as_seen,
)
from requests_app.uploads import checked_type

STEPS = ("verify_manually", "verify_for_categories")
EVIDENCE_MAX_BYTES = 20 * 1024 * 1024


def store_encrypted(upload, relative: str) -> None:
    """Write an upload encrypted at rest under MEDIA_ROOT/`relative`."""
    with EncryptedWriter(Path(settings.MEDIA_ROOT) / relative) as out:
        for chunk in upload.chunks():
            out.write(chunk)


def checked_upload(upload, max_bytes: int, what: str) -> str:
    """The sniffed type of an upload; TransitionInputError with words else."""
    try:
        return checked_type(upload, max_bytes, what)
    except ValidationError as exc:
        raise TransitionInputError(exc.messages[0]) from None


def do_verify_manually(request_id: int, name: str, *, actor, expected_state=None,
                       expected_version=None, methods=(), points=(), level="",
                       evidence=None) -> PrivacyRequest:
    """Take one of the staff's verification steps, record how, and keep the evidence
    (encrypted) until verification ends. TransitionInputError when what was recorded
    does not reach the degree the right needs; nothing is saved then."""
    if name not in STEPS:
        raise TransitionRefused(_("This step is not possible now."))
    content_type = checked_upload(evidence, EVIDENCE_MAX_BYTES, _("The evidence")) \
        if evidence is not None else ""
    relative = ""
    try:
        with transaction.atomic(durable=True):
            request = lock_as_seen(request_id, expected_state, expected_version)
            needed = certainty_needed(request)
            apply_transition(request, name, actor=actor, methods=list(methods),
                             points=list(points), level=level, evidence=evidence)
            if evidence is not None:
                relative = (f"verification/{request.reference}/"
                            f"evidence-{secrets.token_hex(8)}.enc")
                store_encrypted(evidence, relative)
            ManualVerification.objects.create(
                request=request, verified_by=actor.user, methods=list(methods),
                points_checked=list(points), level_reached=level,
                level_needed=needed.value if needed else "",
                answered_with_categories=name == "verify_for_categories",
                evidence_path=relative, evidence_type=content_type,
                evidence_size=evidence.size if evidence is not None else 0)
            if request.filed_by == FiledBy.PARENT:
                record_guardian_consent(request, actor)
    except BaseException:
        if relative:
            with contextlib.suppress(FileNotFoundError):
                (Path(settings.MEDIA_ROOT) / relative).unlink()
        raise
    return request


def record_guardian_consent(request: PrivacyRequest, actor) -> int:
    """The guardian, now verified as such, consented on the form to these opt-in
    purposes for the child: each becomes a grant in the consent ledger, with the
    notice version they were shown and the affirmative act. Returns how many."""
    guardian = (GuardianDetails.objects.select_for_update()
                .filter(request=request, consent_recorded_at=None).first())
    if guardian is None or not guardian.consents:
        return 0
    subject = ledger.subject_of(request.identity)
    count = 0
    for given in guardian.consents:
        purpose = Purpose.objects.filter(slug=given["purpose"]).first()
        notice = PurposeNotice.objects.filter(purpose=purpose, version=given["notice"]).first()
        if purpose is None or notice is None:
            continue
        ledger.record(subject, purpose, ledger.Action.GRANT, method=ledger.Method.REQUEST_FORM,
                      notice=notice, actor=actor, request=request,
                      at=guardian.consent_given_at,
                      affirmative_act="The parent or guardian ticked the consent for the "
                                      "child on the request form; verified as parent or "
                                      "guardian by staff.")
        count += 1
    guardian.consent_recorded_at = timezone.now()
    guardian.save(update_fields=["consent_recorded_at"])
    return count
