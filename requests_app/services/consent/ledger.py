"""The consent ledger: recording choices and computing what a person chose.

Rules, all computed from the append-only ledger:
- an opt-in purpose counts as consented only after a grant, and only until a
  later withdrawal; no record at all is never consent;
- an opt-out purpose is allowed until a withdrawal, and again only after a new
  grant;
- the latest record wins (ties broken by insertion order).

Withdrawals that must reach sources or third parties file an opt-out request
(services/preferences/choices.py); every opt-out request records its withdrawals
here (`record_request_opt_out`, called as the request is filed).
"""

import datetime
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.models import Actor, ConsentRecord, Purpose, PurposeNotice, PrivacyRequest
from requests_app.models.privacy_request import TransitionInputError
from requests_app.services.audit.events import hash_value, record_event

Action, Method = ConsentRecord.Action, ConsentRecord.Method


def person(email: str) -> str:
    """The ledger's subject for a person: a keyed hash of the address, never the address."""
    return "email:" + hash_value(email)


def subject_of(identity) -> str:
    """The ledger's subject for a request's person: their address (person()), or,
    for a request filed with none, the first other identifier they gave, with its
    type, under the same keyed hash."""
    if identity.email:
        return person(identity.email)
    given = [("phone", identity.phone), ("account_number", identity.account_number),
             *sorted((identity.extra or {}).items()), ("postal_address", identity.postal_address)]
    kind, value = next((k, v) for k, v in given if v)
    return "id:" + hash_value(f"{kind}:{value.strip()}")


def browser(browser_id: str) -> str:
    """The ledger's subject for a browser that sent Global Privacy Control."""
    return "browser:" + hashlib.sha256(browser_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Choice:
    purpose: Purpose
    notice: PurposeNotice | None
    latest: ConsentRecord | None

    @property
    def allowed(self) -> bool:
        """May the purpose be carried out for this person now?"""
        return allowed(self.purpose, self.latest.action if self.latest else None)

    @property
    def withdrawn(self) -> bool:
        """The person's last word on it was no."""
        return self.latest is not None and self.latest.action == Action.WITHDRAW


def allowed(purpose: Purpose, latest_action: str | None) -> bool:
    """No record: allowed for an opt-out purpose, never for an opt-in one."""
    if latest_action is None:
        return not purpose.is_opt_in
    return latest_action == Action.GRANT


def _latest(subject: str, purposes, before: datetime.datetime | None = None) -> dict:
    """The latest record per purpose for this subject (at or before `before`)."""
    records = ConsentRecord.objects.filter(subject=subject, purpose__in=purposes)
    if before is not None:
        records = records.filter(at__lte=before)
    if connection.features.can_distinct_on_fields:  # PostgreSQL: one row per purpose
        records = records.order_by("purpose_id", "-at", "-id").distinct("purpose_id")
    else:
        records = records.order_by("-at", "-id")
    latest = {}
    for entry in records:
        latest.setdefault(entry.purpose_id, entry)
    return latest


def choices(subject: str) -> list[Choice]:
    """The current choice for every active purpose, with its current notice."""
    purposes = list(Purpose.objects.filter(active=True).annotate(
        notice_id=Subquery(PurposeNotice.objects.filter(purpose=OuterRef("pk"))
                           .order_by("-version").values("pk")[:1])))
    notices = PurposeNotice.objects.in_bulk([p.notice_id for p in purposes if p.notice_id])
    latest = _latest(subject, purposes)
    return [Choice(p, notices.get(p.notice_id), latest.get(p.pk)) for p in purposes]


def allowed_at(subject: str, purpose: Purpose, moment: datetime.datetime) -> bool:
    """Was the purpose allowed for this subject at that moment?"""
    record = _latest(subject, [purpose], before=moment).get(purpose.pk)
    return allowed(purpose, record.action if record else None)


def action_at(history: list[tuple[datetime.datetime, str]], moment: datetime.datetime):
    """The action in force at `moment`, from (at, action) pairs in ledger order."""
    latest = None
    for at, action in history:
        if at > moment:
            break
        latest = action
    return latest


def record(
    subject: str,
    purpose: Purpose,
    action: str,
    *,
    method: str,
    notice: PurposeNotice,
    actor: Actor,
    affirmative_act: str = "",
    request: PrivacyRequest | None = None,
    at: datetime.datetime | None = None,
) -> ConsentRecord:
    """Append a grant or withdrawal, and its audit event, in one transaction. `at`
    is when the person made the choice (a letter's date of receipt); now by default."""
    if notice.purpose_id != purpose.pk:
        raise TransitionInputError(_("That notice belongs to another purpose."))
    if action == Action.GRANT and purpose.is_opt_in and not affirmative_act.strip():
        raise TransitionInputError(
            _("Consent to an opt-in purpose needs the affirmative act that gave it."))
    with transaction.atomic():
        entry = ConsentRecord.objects.create(
            at=at or timezone.now(),
            subject=subject, purpose=purpose, action=action, method=method, notice=notice,
            affirmative_act=affirmative_act.strip(), request=request,
            staff=actor.user if actor.kind == "staff" else None)
        record_event(f"consent.{action}", actor=actor, request=request, data={
            "subject": subject, "purpose": purpose.slug, "method": method,
            "notice_version": notice.version, "record": entry.pk})
    return entry


def record_request_opt_out(request: PrivacyRequest, purposes, *, method: str, actor: Actor,
                           notices: dict | None = None) -> None:
    """Inside do_receive_request: an opt-out request withdraws its purposes in the
    ledger (the form and the preference page both come through here)."""
    purposes = list(purposes) or list(
        Purpose.objects.filter(active=True, opt_out_type=request.request_type))
    if not purposes:
        return
    request.purposes.set(purposes)
    subject = subject_of(request.identity)
    for purpose in purposes:
        notice = (notices or {}).get(purpose.pk) or purpose.current_notice
        if notice is None:
            continue
        # Dated when the person made it: a letter entered days later still counts
        # from the day it arrived.
        record(subject, purpose, Action.WITHDRAW, method=method, notice=notice, actor=actor,
               request=request, at=request.received_at)


def history(identity) -> list[ConsentRecord]:
    """Every record of a request's person (subject_of), newest first (for the staff
    request desk)."""
    return list(ConsentRecord.objects.filter(subject=subject_of(identity))
                .select_related("purpose", "notice", "request").order_by("-at", "-id"))


def honour_gpc_for_browser(subject: str, *, actor: Actor) -> list[ConsentRecord]:
    """A Global Privacy Control signal from a browser no person is tied to: withdraw,
    for that browser, each purpose the signal covers. Idempotent. (For a person, see
    `withdraw_everything(..., gpc_only=True)`, which also tells the sources.)"""
    recorded = []
    with subject_lock(subject):
        honoured = gpc_honoured(subject)
        for choice in choices(subject):
            if (not choice.purpose.honours_gpc or choice.notice is None or choice.withdrawn
                    or choice.purpose.pk in honoured):
                continue
            with transaction.atomic():
                recorded.append(record(subject, choice.purpose, Action.WITHDRAW,
                                       method=Method.GPC, notice=choice.notice, actor=actor))
    return recorded


def gpc_honoured(subject: str) -> set[int]:
    """Purposes a GPC signal was already recorded for. The signal is honoured once:
    a "yes" the person gives afterwards is their own choice and stands (CCPA regs
    §7025(c)(3)), and later visits with the same signal do not undo it."""
    return set(ConsentRecord.objects.filter(subject=subject, method=Method.GPC)
               .values_list("purpose_id", flat=True))


@contextmanager
def subject_lock(subject: str):
    """One change at a time per subject (the page and its favicon, both sending GPC,
    must not file two opt-outs). A PostgreSQL session advisory lock; SQLite
    serialises writers itself."""
    if connection.vendor != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])

