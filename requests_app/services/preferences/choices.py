"""A person's choices on the preference page (or made for them by staff): grants
and withdrawals in the consent ledger, and, for a withdrawal that must reach
sources or third parties, the opt-out request that carries it there
(services/requests/filing.py), one per opt-out type.
"""

from django.db import transaction
from django.utils.translation import gettext as _

from requests_app.models import Actor, PrivacyRequest, Purpose, PurposeNotice, ConsentRecord
from requests_app.models.privacy_request import TransitionInputError
from requests_app.services.consent.ledger import (
    Choice, gpc_honoured, choices, person, record, subject_lock)
from requests_app.services.requests.filing import NewRequest, do_receive_request

Action = ConsentRecord.Action


def change(email: str, purpose: Purpose, action: str, *, method: str, notice: PurposeNotice,
           actor: Actor, affirmative_act: str = "") -> tuple[ConsentRecord, PrivacyRequest | None]:
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
    honoured = gpc_honoured(subject) if gpc_only else set()
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
