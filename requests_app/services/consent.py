"""The consent ledger: recording choices and computing what a person chose.

Rules, all computed from the append-only ledger:
- an opt-in purpose counts as consented only after a grant, and only until a
  later withdrawal; no record at all is never consent;
- an opt-out purpose is allowed until a withdrawal, and again only after a new
  grant;
- the latest record wins (ties broken by insertion order).

A withdrawal of a purpose that governs sources or third parties also files an
opt-out request of the purpose's type (services/lifecycle.do_receive_request),
which pushes the withdrawal to each of them and tracks it to confirmation on the
legal clock. Withdrawals made through the request form are recorded by that
request (see `record_request_opt_out`).
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
from requests_app.services.audit import hash_value, record_event

Action, Method = ConsentRecord.Action, ConsentRecord.Method


def person(email: str) -> str:
    """The ledger's subject for a person: a keyed hash of the address, never the address."""
    return "email:" + hash_value(email)


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


def change(
    email: str,
    purpose: Purpose,
    action: str,
    *,
    method: str,
    notice: PurposeNotice,
    actor: Actor,
    affirmative_act: str = "",
) -> tuple[ConsentRecord, PrivacyRequest | None]:
    """A person's choice, from the preference page (or staff on their behalf).
    A withdrawal also files the opt-out request that carries it to the sources
    and third parties the purpose governs. Returns the record and that request."""
    if purpose.current_notice is None or notice.pk != purpose.current_notice.pk:
        raise TransitionInputError(
            _("The notice for “%(purpose)s” has changed since the page was shown: read it "
              "again and choose.") % {"purpose": purpose.name})
    subject = person(email)
    if action == Action.WITHDRAW and _needs_request(purpose):
        request = _file_opt_out(email, purpose.opt_out_type, {purpose: notice}, method=method,
                                actor=actor)
        return request.consent_records.get(purpose=purpose), request
    with transaction.atomic(durable=True):
        entry = record(subject, purpose, action, method=method, notice=notice, actor=actor,
                       affirmative_act=affirmative_act)
    return entry, None


def _file_opt_out(email: str, request_type: str, notices: dict, *, method: str,
                  actor: Actor) -> PrivacyRequest:
    """The opt-out request that carries withdrawals (purpose -> notice shown) to the
    sources and third parties. The person's residence is not asked: the earliest
    legal clock applies (jurisdiction unknown)."""
    from requests_app.services.lifecycle import NewRequest, do_receive_request

    return do_receive_request(
        NewRequest(request_type=request_type, jurisdiction="UNKNOWN", channel="web", name="",
                   email=email, purposes=tuple(notices), consent_method=method,
                   consent_notices={p.pk: n for p, n in notices.items()}),
        actor=actor)


def _needs_request(purpose: Purpose) -> bool:
    return purpose.sources.exists() or purpose.third_parties.exists()


def withdraw_purposes(email: str, purposes, *, method: str, actor: Actor) -> list:
    """Withdraw these purposes (those not withdrawn already), as `withdraw_everything`
    does for all. Returns the opt-out requests filed."""
    subject = person(email)
    with subject_lock(subject):
        return _withdraw_everything(email, subject, method=method, actor=actor,
                                    gpc_only=False, only={p.pk for p in purposes})


def withdraw_everything(email: str, *, method: str, actor: Actor,
                        gpc_only: bool = False) -> list[PrivacyRequest]:
    """One step: withdraw every active purpose the person has not already withdrawn
    (with `gpc_only`, those a Global Privacy Control signal covers). Purposes are
    grouped by their opt-out type: one request per type. Idempotent."""
    subject = person(email)
    with subject_lock(subject):
        return _withdraw_everything(email, subject, method=method, actor=actor,
                                    gpc_only=gpc_only)


def _withdraw_everything(email, subject, *, method, actor, gpc_only, only=None):
    by_type: dict[str, list[Choice]] = {}
    plain = []
    honoured = _gpc_honoured(subject) if gpc_only else set()
    for choice in choices(subject):
        if choice.notice is None or choice.withdrawn:
            continue
        if gpc_only and (not choice.purpose.honours_gpc or choice.purpose.pk in honoured):
            continue
        if only is not None and choice.purpose.pk not in only:
            continue
        if _needs_request(choice.purpose):
            by_type.setdefault(choice.purpose.opt_out_type, []).append(choice)
        else:
            plain.append(choice)
    requests = [_file_opt_out(email, request_type, {c.purpose: c.notice for c in picked},
                              method=method, actor=actor)
                for request_type, picked in by_type.items()]
    with transaction.atomic(durable=True):
        for choice in plain:
            record(subject, choice.purpose, Action.WITHDRAW, method=method,
                   notice=choice.notice, actor=actor)
    return requests


def record_request_opt_out(request: PrivacyRequest, purposes, *, method: str, actor: Actor,
                           notices: dict | None = None) -> None:
    """Inside do_receive_request: an opt-out request withdraws its purposes in the
    ledger (the form and the preference page both come through here)."""
    purposes = list(purposes) or list(
        Purpose.objects.filter(active=True, opt_out_type=request.request_type))
    if not purposes:
        return
    request.purposes.set(purposes)
    subject = person(request.identity.email)
    for purpose in purposes:
        notice = (notices or {}).get(purpose.pk) or purpose.current_notice
        if notice is None:
            continue
        # Dated when the person made it: a letter entered days later still counts
        # from the day it arrived.
        record(subject, purpose, Action.WITHDRAW, method=method, notice=notice, actor=actor,
               request=request, at=request.received_at)


def history(email: str) -> list[ConsentRecord]:
    """Every record of a person's, newest first (for the staff request desk)."""
    return list(ConsentRecord.objects.filter(subject=person(email))
                .select_related("purpose", "notice", "request").order_by("-at", "-id"))


def honour_gpc_for_browser(subject: str, *, actor: Actor) -> list[ConsentRecord]:
    """A Global Privacy Control signal from a browser no person is tied to: withdraw,
    for that browser, each purpose the signal covers. Idempotent. (For a person, see
    `withdraw_everything(..., gpc_only=True)`, which also tells the sources.)"""
    recorded = []
    with subject_lock(subject):
        honoured = _gpc_honoured(subject)
        for choice in choices(subject):
            if (not choice.purpose.honours_gpc or choice.notice is None or choice.withdrawn
                    or choice.purpose.pk in honoured):
                continue
            with transaction.atomic():
                recorded.append(record(subject, choice.purpose, Action.WITHDRAW,
                                       method=Method.GPC, notice=choice.notice, actor=actor))
    return recorded


def _gpc_honoured(subject: str) -> set[int]:
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

