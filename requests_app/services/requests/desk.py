"""Use cases of the staff workspace that are not steps of the lifecycle: claiming
and assigning requests, internal notes, and requests entered by staff (email,
post, phone). Each is audited in the same transaction; free text and files stay
off the audit trail (they may describe the person) and are purged with the
identity."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.files import EncryptedWriter
from requests_app.models import Actor, GuardianDetails, IntakeRecord, PrivacyRequest, RequestNote
from requests_app.models.privacy_request import OPEN_STATES, TransitionInputError
from requests_app.models.verification import child_age
from requests_app.services.audit.events import record_event
from requests_app.services.notices.reminders import queue_assignment_email
from requests_app.services.requests.filing import NewRequest, do_receive_request
from requests_app.services.requests.lifecycle import TransitionRefused

ASSIGN = "requests_app.assign_request"
WORK = "requests_app.work_request"
MAX_ORIGINAL = 20 * 1024 * 1024


def assignable_users():
    """Staff who can work requests (the choices of the assign menus)."""
    User = get_user_model()
    return (User.objects.filter(is_active=True, is_staff=True)
            .filter(groups__permissions__codename="work_request").distinct()
            .order_by("username"))


def do_assign(request_ids: list[int], assignee, *, by) -> int:
    """Give open requests to `assignee` (None: unassign). Claiming (assigning to
    oneself a request nobody holds) needs `work_request`; everything else, taking
    a request from someone, assigning to others, unassigning, `assign_request`."""
    if not by.has_perm(WORK):
        raise TransitionRefused(_("You do not have permission for this step."))
    manager = by.has_perm(ASSIGN)
    if assignee != by and not manager:
        raise TransitionRefused(_("You do not have permission to assign requests to others."))
    if assignee is not None and not assignable_users().filter(pk=assignee.pk).exists():
        raise TransitionInputError(_("That person cannot work requests."))
    changed = 0
    with transaction.atomic(durable=True):
        requests = (PrivacyRequest.objects.locked(of=("self",)).select_related("assignee")
                    .filter(pk__in=request_ids, state__in=OPEN_STATES).order_by("pk"))
        for request in requests:
            if request.assignee_id == (assignee.pk if assignee else None):
                continue
            if request.assignee_id is not None and not manager:
                raise TransitionRefused(_("This request is assigned to someone else."))
            previous = request.assignee.get_username() if request.assignee else ""
            request.assignee = assignee
            request.save(update_fields=["assignee", "updated_at"])
            record_event("request.assigned", actor=Actor.staff(by), request=request,
                         data={"from": previous,
                               "to": assignee.get_username() if assignee else ""})
            queue_assignment_email(request, assignee, by=by)
            changed += 1
    return changed


def do_claim(request_id: int, *, by) -> int:
    if not PrivacyRequest.objects.filter(pk=request_id, state__in=OPEN_STATES).exists():
        raise TransitionRefused(_("Only an open request can be claimed."))
    return do_assign([request_id], by, by=by)


def do_add_note(request: PrivacyRequest, text: str, *, by) -> RequestNote:
    text = (text or "").strip()
    if not text:
        raise TransitionInputError(_("Write the note first."))
    if not by.has_perm(WORK):
        raise TransitionRefused(_("You do not have permission for this step."))
    with transaction.atomic(durable=True):
        note = RequestNote.objects.create(request=request, author=by, text=text[:4000])
        record_event("request.note_added", actor=Actor.staff(by), request=request,
                     data={"note": note.pk})
    return note


def _store_original(request: PrivacyRequest, upload) -> dict:
    """Encrypt the original at rest: MEDIA_ROOT/intake/<reference>/<random>."""
    if upload.size > MAX_ORIGINAL:
        raise TransitionInputError(_("The original is larger than 20 MB."))
    relative = f"intake/{request.reference}/{secrets.token_hex(8)}"
    with EncryptedWriter(settings.MEDIA_ROOT / relative) as writer:
        for chunk in upload.chunks():
            writer.write(chunk)
    return {"original_name": upload.name[-200:], "original_path": relative,
            "original_type": (upload.content_type or "application/octet-stream")[:100],
            "original_size": upload.size}


def do_staff_intake(new: NewRequest, *, by, original=None, call_note: str = "",
                    verification_method: str = "", evidence: str = "",
                    guardian: dict | None = None) -> PrivacyRequest:
    """A request that came by email, post or phone, entered by staff. The clock
    starts from `new.received_at`, when it reached us, however late it is entered.
    How staff verified the person is recorded; the verification itself is the step
    verify_manually (services/verification/manual.py), which the intake page takes
    next. `guardian`: a parent's or guardian's request ({child_name,
    child_birth_date, proof}: the proof is stored encrypted)."""
    if not by.has_perm(WORK):
        raise TransitionRefused(_("You do not have permission for this step."))
    if new.received_at is None:
        raise TransitionInputError(_("Say when the request reached us."))
    if verification_method and not evidence.strip():
        raise TransitionInputError(_("Describe the evidence the identity was verified with."))
    actor = Actor.staff(by)
    request = do_receive_request(new, actor=actor)
    stored = _store_original(request, original) if original is not None else {}
    with transaction.atomic(durable=True):
        IntakeRecord.objects.create(
            request=request, entered_by=by, call_note=call_note.strip(),
            verification_method=verification_method,
            verification_evidence=evidence.strip() if verification_method else "", **stored)
        late = (timezone.localdate() - timezone.localdate(request.received_at)).days
        record_event("request.entered_by_staff", actor=actor, request=request,
                     data={"channel": request.channel, "original": bool(stored),
                           "days_after_receipt": late,
                           "verification": verification_method or None})
        if guardian is not None:
            _guardian_details(request, guardian)
    request.refresh_from_db()
    return request


def _guardian_details(request: PrivacyRequest, guardian: dict) -> None:
    proof, birth = guardian.get("proof"), guardian["child_birth_date"]
    relative = ""
    if proof is not None:
        relative = f"verification/{request.reference}/guardian-{secrets.token_hex(8)}.enc"
        with EncryptedWriter(settings.MEDIA_ROOT / relative) as writer:
            for chunk in proof.chunks():
                writer.write(chunk)
    GuardianDetails.objects.create(
        request=request, child_name=guardian["child_name"], child_birth_date=birth,
        child_age_at_filing=child_age(birth, timezone.localdate(request.received_at)),
        proof_path=relative, proof_type=getattr(proof, "sniffed_type", "") if proof else "",
        proof_size=proof.size if proof is not None else 0)
