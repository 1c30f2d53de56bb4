"""Use cases of the consumer portal: file a submission (one request per right),
confirm the email with a code, check identity against the sources, open the
status page, download a package.

Personal values never reach the log or the audit trail: only references, the
names of data points and keyed hashes.
"""

import datetime
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.files import EncryptedWriter
from requests_app.models import (
    Actor,
    DataSource,
    PrivacyRequest,
    State,
    VerificationEvidence,
)
from requests_app.models.privacy_request import FiledBy
from requests_app.models.verification import GuardianDetails, child_age, holds_sensitive_data
from requests_app.rules import (
    CATEGORIES_FALLBACK,
    REQUEST_TYPES,
    REQUIRED_POINTS,
    SENSITIVE_DELETION_POINTS,
    Verification,
)
from requests_app.services.verification import codes
from requests_app.services.audit.events import record_event
from requests_app.services.requests.filing import NewRequest, do_receive_requests
from requests_app.services.requests.lifecycle import apply_transition
from requests_app.services.notices.outbox import queue_notice, queue_plain
from requests_app.services.queue import enqueue_on_commit
from requests_app.sources.base import IdentityData, SourceError
from requests_app.sources.identity_match import POINTS

log = logging.getLogger(__name__)

CHECK_IDENTITY = "requests_app.services.verification.tasks.check_identity"
VERIFY = "verify"
FILING = "filing"  # the code that lets a sender over the per-email limit file


def verify_purpose(submission: str) -> str:
    return f"{VERIFY}:{submission}"


def status_purpose(reference: str) -> str:
    return f"status:{reference}"


@dataclass
class Submission:
    """What the form gathered, cleaned."""

    rights: list
    jurisdiction: str
    name: str
    email: str
    phone: str = ""
    account_number: str = ""
    postal_address: str = ""
    extra: dict = field(default_factory=dict)  # the office's own identity types
    details: str = ""
    filed_by: str = FiledBy.SELF
    agent_name: str = ""
    agent_email: str = ""
    permission: object = None  # an uploaded file (already type-checked)
    period_start: datetime.date | None = None
    period_end: datetime.date | None = None
    corrected_field: str = ""
    correction_wrong: str = ""
    correction_right: str = ""
    declaration: bool = False
    # A parent or guardian for a child under 13 (models/verification.py).
    child_name: str = ""
    child_birth_date: datetime.date | None = None
    guardian_proof: object = None  # an uploaded file (already type-checked)
    guardian_consents: list = field(default_factory=list)
    key: str = field(default_factory=lambda: secrets.token_urlsafe(16))


def needs_verification(request_type: str) -> bool:
    return REQUEST_TYPES[request_type].verification is not Verification.NONE


def do_file_submission(sub: Submission) -> list[PrivacyRequest]:
    """File one request per right asked for, and send one acknowledgment listing
    them all, all in one transaction (do_receive_requests): a crash files none,
    never some without their acknowledgment. Rights that need verification share
    one code (purpose verify:<submission>), sent in that acknowledgment, or in the
    agent confirmation email when an agent filed. The acknowledging request is
    filed last, with the others listed, and is one that needs verification when
    any does, so the code in it goes with its reference."""
    verified_types = [r for r in sub.rights if needs_verification(r)]
    code = None
    if verified_types:
        code = codes.issue(verify_purpose(sub.key), codes.subject_for_email(sub.email))
    stored = {"permission": _store_upload(sub.permission, sub.key, "permission"),
              "guardian": _store_upload(sub.guardian_proof, sub.key, "guardian")}
    agent = sub.filed_by == FiledBy.AGENT
    acknowledging = verified_types[-1] if verified_types else sub.rights[-1]
    order = [r for r in sub.rights if r != acknowledging] + [acknowledging]
    news = []
    for right in order:
        extra = {}
        if right == acknowledging and needs_verification(right):
            extra = {"agent_name": sub.agent_name} if agent else {"code": code}
        news.append(_new_request(sub, right, stored, extra,
                                 acknowledge=right == acknowledging))

    def confirm_to_the_agent(filed: list[PrivacyRequest]) -> None:
        first = next(r for r in filed if needs_verification(r.request_type))
        queue_notice(first, "agent_confirm", code=code, agent_name=sub.agent_name,
                     references=[r.reference for r in filed])

    filed = do_receive_requests(news, actor=Actor.consumer(),
                                then=confirm_to_the_agent if agent and verified_types
                                else None)
    filed.sort(key=lambda r: sub.rights.index(r.request_type))
    log.info("portal: submission filed as %s", ", ".join(r.reference for r in filed))
    return filed


def _new_request(sub: Submission, right: str, stored: dict, notice_extra: dict, *,
                 acknowledge: bool) -> NewRequest:
    details = (correction_details(sub.corrected_field, sub.correction_wrong,
                                  sub.correction_right, sub.details)
               if REQUEST_TYPES[right].corrects_a_field else sub.details)
    return NewRequest(
        request_type=right, jurisdiction=sub.jurisdiction, channel="web", name=sub.name,
        email=sub.email, filed_by=sub.filed_by, phone=sub.phone,
        account_number=sub.account_number, postal_address=sub.postal_address,
        extra=sub.extra, details=details, notice_extra=notice_extra,
        acknowledge=acknowledge, on_received=_evidence_of(sub, right, stored))


def _evidence_of(sub: Submission, right: str, stored: dict):
    """What the form gave towards verifying the request for `right` (what the right
    takes: its flags in rules.REQUEST_TYPES), recorded with the request in the
    transaction that files it."""
    rules = REQUEST_TYPES[right]
    agent = sub.filed_by == FiledBy.AGENT
    period = (sub.period_start, sub.period_end) if rules.covers_period else (None, None)
    correction = ((sub.corrected_field, sub.correction_wrong, sub.correction_right)
                  if rules.corrects_a_field else ("", "", ""))
    permission_path = stored["permission"]
    permission = sub.permission if permission_path else None

    def record(request: PrivacyRequest) -> None:
        VerificationEvidence.objects.create(
            request=request, submission=sub.key,
            points_given=[p for p in POINTS if getattr(sub, p, "")],
            period_start=period[0], period_end=period[1],
            corrected_field=correction[0], correction_wrong=correction[1],
            correction_right=correction[2],
            declaration_accepted_at=timezone.now()
            if sub.declaration and rules.takes_declaration else None,
            agent_name=sub.agent_name if agent else "",
            agent_email=sub.agent_email if agent else "",
            permission_path=permission_path,
            permission_name=(getattr(permission, "name", "") or "")[:100],
            permission_type=getattr(permission, "sniffed_type", "") if permission else "",
            permission_size=getattr(permission, "size", 0) if permission else 0,
        )
        if sub.filed_by == FiledBy.PARENT:
            _guardian_of(sub, request, stored["guardian"])

    return record


def correction_details(field: str, wrong: str, right: str, details: str) -> str:
    """What a correction asks, as fulfilment passes it to the sources (the request's
    details); the form keeps it within the 2,000 characters of the field."""
    text = f"Field to correct: {field}\nWhat is wrong: {wrong}\nWhat it should say: {right}"
    return f"{text}\n\n{details}" if details else text


def _guardian_of(sub: Submission, request: PrivacyRequest, proof_path: str) -> None:
    """A parent's or guardian's request: the child, the proof, the consent given."""
    proof = sub.guardian_proof if proof_path else None
    GuardianDetails.objects.create(
        request=request, child_name=sub.child_name, child_birth_date=sub.child_birth_date,
        child_age_at_filing=child_age(sub.child_birth_date, timezone.localdate(
            request.received_at)) if sub.child_birth_date else 0,
        proof_path=proof_path, proof_type=getattr(proof, "sniffed_type", "") if proof else "",
        proof_size=getattr(proof, "size", 0) if proof else 0,
        consents=list(sub.guardian_consents),
        consent_given_at=request.received_at if sub.guardian_consents else None)


def _store_upload(upload, key: str, kind: str) -> str:
    """An upload of the submission, encrypted at rest (files.py); "" for none."""
    if upload is None:
        return ""
    relative = f"uploads/{key}/{kind}-{secrets.token_hex(8)}.enc"
    with EncryptedWriter(Path(settings.MEDIA_ROOT) / relative) as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return relative


def resend_verification_code(request: PrivacyRequest) -> bool:
    """A new code for the request's submission (False when asked too often)."""
    evidence = getattr(request, "evidence", None)
    if evidence is None or request.state != State.PENDING_VERIFICATION:
        return False
    return _email_code(request, verify_purpose(evidence.submission), "verification_code")


def send_status_code(request: PrivacyRequest | None) -> bool:
    """A code that opens the request's status page, to the request's address
    (nothing for an unknown reference or too many asks: the caller answers the same)."""
    if request is None or not hasattr(request, "identity"):
        return False
    return _email_code(request, status_purpose(request.reference), "status_code",
                       code_url=f"{settings.SITE_URL}/status/code/")


def send_filing_code(email: str) -> bool:
    """A code to the address, whose sender is over the per-email limit of the
    request form: typed into the form, it proves control of the address and the
    request goes in (False, nothing sent, when codes were asked for too often)."""
    try:
        code = codes.issue(FILING, codes.subject_for_email(email))
    except codes.TooManyCodes:
        return False
    queue_plain(email, "filing_code", code=code)
    return True


def check_filing_code(email: str, typed: str) -> codes.Result:
    return codes.check(FILING, codes.subject_for_email(email), typed)


def check_status_code(request: PrivacyRequest | None, typed: str) -> codes.Result:
    """Whether `typed` is the status code last sent for the request (WRONG for an
    unknown reference, answered as for a wrong code)."""
    if request is None or not hasattr(request, "identity"):
        return codes.Result.WRONG
    return codes.check(status_purpose(request.reference),
                       codes.subject_for_email(request.identity.email), typed)


def _email_code(request: PrivacyRequest, purpose: str, notice: str, **context) -> bool:
    """Issue a code for `purpose` to the request's address and queue its email, or
    its letter when there is no email address (False, nothing sent, when codes were
    asked for too often)."""
    # A code sent by letter (no email address) must outlast the post.
    hours = None if request.identity.email else settings.LETTER_CODE_TTL_DAYS * 24
    try:
        code = codes.issue(purpose, codes.subject_for_email(request.identity.email),
                           hours=hours)
    except codes.TooManyCodes:
        return False
    with transaction.atomic():
        queue_notice(request, notice, code=code, **context)
    return True


def do_confirm_email(request: PrivacyRequest, typed: str) -> codes.Result:
    """Check the code of the request's submission. When right, every request of
    the submission still pending has its email (and its agent) confirmed, and the
    identity check against the sources is queued."""
    evidence = getattr(request, "evidence", None)
    identity = getattr(request, "identity", None)
    if evidence is None or identity is None:
        return codes.Result.WRONG
    result = codes.check(verify_purpose(evidence.submission),
                         codes.subject_for_email(identity.email), typed)
    if result is not codes.Result.OK:
        return result
    now = timezone.now()
    with transaction.atomic(durable=True):
        for ev in (VerificationEvidence.objects.select_for_update()
                   .filter(submission=evidence.submission, email_confirmed_at=None)
                   .select_related("request")):
            ev.email_confirmed_at = now
            if ev.agent_email:
                ev.agent_confirmed_at = now
            ev.save(update_fields=["email_confirmed_at", "agent_confirmed_at"])
            record_event("request.email_confirmed", actor=Actor.consumer(), request=ev.request,
                         data={"agent_confirmed": bool(ev.agent_email)})
            if ev.request.state == State.PENDING_VERIFICATION:
                enqueue_on_commit(CHECK_IDENTITY, ev.request_id)
    return result


def points_held(identity) -> tuple[set, dict]:
    """Ask every enabled source which of the given points it confirms."""
    from requests_app.sources.registry import connector_for

    data = IdentityData.of(identity)
    matched, checked = set(), {}
    for source in DataSource.objects.filter(enabled=True).order_by("name"):
        try:
            points = connector_for(source).identity_points(data)
        except SourceError:
            log.warning("identity check: source %s unavailable", source.pk)
            checked[source.name] = "unavailable"
            continue
        except Exception:  # a broken source must not hide the request from staff
            log.exception("identity check: source %s failed", source.pk)
            checked[source.name] = "failed"
            continue
        if points is None:
            checked[source.name] = "offers no lookup"
        elif not points:
            checked[source.name] = "no record"
        else:
            checked[source.name] = "matched " + ", ".join(sorted(points))
            matched |= points
    return matched, checked


def do_check_identity(request_id: int) -> str:
    """Apply the verification level of the request's type to what the sources
    confirm. Reached: verified. Access or portability reaching only the level of
    categories: treated as a request for categories, the consumer told so (§7024).
    Otherwise: left to staff for manual verification, with the reason recorded."""
    request = PrivacyRequest.objects.select_related("identity", "evidence").get(pk=request_id)
    if request.state != State.PENDING_VERIFICATION or not hasattr(request, "evidence"):
        return "skipped"
    if request.evidence.email_confirmed_at is None:
        return "skipped"
    matched, checked = points_held(request.identity)
    with transaction.atomic(durable=True):
        request = PrivacyRequest.objects.locked().get(pk=request_id)
        evidence = VerificationEvidence.objects.select_for_update().get(request=request)
        if request.state != State.PENDING_VERIFICATION:
            return "skipped"
        matched = {p for p in matched if p in evidence.points_given or p == "email"}
        matched.discard(evidence.corrected_field)
        level = request.type_rules.verification
        required = points_required(request)
        evidence.points_matched = sorted(matched)
        evidence.sources_checked = checked
        evidence.level_required = level.value
        evidence.points_required = required
        evidence.checked_at = timezone.now()
        missing = _missing(request, evidence, matched, required, level)
        if not missing:
            outcome = _verified(request, evidence, matched)
        elif (level is Verification.THREE_POINTS_AND_DECLARATION
              and len(matched) >= REQUIRED_POINTS[Verification.TWO_POINTS]
              and request.filed_by == FiledBy.SELF):
            outcome = _verified_for_categories(request, evidence, matched, missing)
        else:
            evidence.manual_review = True
            evidence.outcome = _("Needs manual verification: %(missing)s.") % {"missing": missing}
            evidence.save()
            record_event("request.needs_manual_verification", actor=Actor.system(),
                         request=request, reason=missing,
                         data={"matched": sorted(matched), "required": required})
            outcome = "manual"
    log.info("request %s: identity check: %s", request.reference, outcome)
    return outcome


def _verified(request: PrivacyRequest, evidence, matched: set) -> str:
    evidence.level_reached = True
    evidence.outcome = _("Verified automatically: %(n)d data points matched.") % {
        "n": len(matched)}
    evidence.save()
    apply_transition(request, "verify", actor=Actor.system(),
                     audit_reason=f"{len(matched)} data points matched")
    return "verified"


def _verified_for_categories(request: PrivacyRequest, evidence, matched: set,
                             missing: str) -> str:
    """Access or portability that reached only the level of categories (§7024):
    answered as a request for categories, and the consumer told so."""
    old_type = request.request_type
    request.original_request_type = request.original_request_type or old_type
    request.request_type = CATEGORIES_FALLBACK
    request.save(update_fields=["request_type", "original_request_type", "updated_at"])
    evidence.level_reached = True
    evidence.level_required = Verification.TWO_POINTS.value
    evidence.points_required = REQUIRED_POINTS[Verification.TWO_POINTS]
    evidence.outcome = _("Specific pieces could not be verified (%(missing)s); "
                         "treated as a request for categories.") % {"missing": missing}
    evidence.save()
    event = record_event("request.treated_as_categories", actor=Actor.system(),
                         request=request, reason=missing,
                         data={"from_type": old_type, "matched": sorted(matched)})
    queue_notice(request, "treated_as_categories", event, old_type=old_type)
    apply_transition(request, "verify", actor=Actor.system(),
                     audit_reason="verified for categories only")
    return "categories"


def points_required(request: PrivacyRequest) -> int:
    """The data points the request's type needs; for a deletion, more when a
    source it would reach holds sensitive data (rules.SENSITIVE_CATEGORY_PREFIXES)."""
    level = request.type_rules.verification
    if level is Verification.SENSITIVITY and holds_sensitive_data():
        return SENSITIVE_DELETION_POINTS
    return REQUIRED_POINTS[level]


def _missing(request, evidence, matched, required, level) -> str:
    """Why the level is not reached ("" when it is): names and counts only."""
    if request.filed_by == FiledBy.PARENT:
        return "a parent or guardian must be verified as such by staff"
    if request.filed_by == FiledBy.AGENT and evidence.agent_confirmed_at is None:
        return "the consumer has not confirmed the agent"
    if len(matched) < required:
        return f"{len(matched)} of {required} data points matched"
    if (level is Verification.THREE_POINTS_AND_DECLARATION
            and evidence.declaration_accepted_at is None):
        return "no signed declaration"
    return ""
