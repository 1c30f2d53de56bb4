"""Filing a request: from whichever door it came in (the portal, staff intake, the
preference page), a request is received here, its deadlines set from receipt,
flagged when it duplicates an open one, acknowledged, and, for an opt-out, its
withdrawals written to the consent ledger in the same transaction.
"""

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.models import Actor, Identity, PrivacyRequest
from requests_app.models.privacy_request import OPEN_STATES, TransitionInputError
from requests_app.rules import JURISDICTIONS, REQUEST_TYPES, UNKNOWN, Verification
from requests_app.services.audit.events import hash_value, record_event
from requests_app.services.consent.ledger import record_request_opt_out
from requests_app.services.notices.outbox import queue_notice
from requests_app.services.requests.lifecycle import apply_transition


@dataclass(frozen=True)
class NewRequest:
    request_type: str
    jurisdiction: str
    channel: str
    name: str
    email: str
    filed_by: str = "self"
    phone: str = ""
    account_number: str = ""
    postal_address: str = ""
    # Identity types of the office's own, as its sources' maps name them:
    # {"loyalty_id": "LC-1234"} (DataSource.identity_types offers them).
    extra: dict = field(default_factory=dict)
    details: str = ""
    # When the request reached us; staff entering a letter days later set this, and
    # the clock starts from it.
    received_at: datetime.datetime | None = None
    # Opt-outs: the purposes withdrawn (empty: every purpose of this opt-out type),
    # how the choice was made (ConsentRecord.Method; default from the channel) and
    # the notice version shown for each purpose (default: the current one).
    purposes: tuple = ()
    consent_method: str = ""
    consent_notices: dict = field(default_factory=dict)
    # Extra context for the acknowledgment email (the portal's verification code).
    notice_extra: dict = field(default_factory=dict)
    # False when another request filed with this one sends the one acknowledgment of
    # the submission (the portal's form: one email lists every right asked for;
    # filed together by do_receive_requests).
    acknowledge: bool = True
    # Called with the new request inside the transaction that files it, for rows
    # that must exist as soon as the request does (the portal's verification
    # evidence): a crash can leave neither without the other.
    on_received: Callable[[PrivacyRequest], None] | None = None


# The longest identifier of another type (a loyalty id, a device id) a form takes.
MAX_EXTRA = 200

# What no single-line value (a name, a phone number, an identifier) may hold: the
# C0 controls with NUL, tab, CR and LF (a line break in a name splits an email
# header or a CSV row), DEL, the C1 controls, and Unicode's line separators.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(value: str) -> bool:
    """Whether `value` holds no control character and no line break."""
    return not _NOT_ONE_LINE.search(value or "")


def validate_one_line(value: str) -> None:
    """For forms: a single-line answer is refused, not cleaned, when it holds a line
    break or another control character."""
    if not one_line(value):
        raise ValidationError(_("Write this on one line, without line breaks or control "
                                "characters."))


# How an opt-out arrived, for the consent ledger, by the channel it came through.
CONSENT_METHODS = {"web": "request_form", "api": "request_form", "phone": "staff_phone",
                   "email": "staff_writing", "post": "staff_writing"}


def do_receive_request(new: NewRequest, *, actor: Actor) -> PrivacyRequest:
    """File one request: checked, recorded, audited and acknowledged at once."""
    return do_receive_requests([new], actor=actor)[0]


def do_receive_requests(news: list[NewRequest], *, actor: Actor,
                        then: Callable[[list[PrivacyRequest]], None] | None = None,
                        ) -> list[PrivacyRequest]:
    """File the requests of one submission together, in one transaction: all of
    them or none (a crash half-way leaves no request filed without its
    acknowledgment). The one that acknowledges (`acknowledge=True`) lists the
    others filed before it (`also_filed`), so one email answers the submission.
    `then` runs in the same transaction with the requests filed (a notice about
    them all)."""
    received = [(new, _checked(new)) for new in news]
    filed: list[PrivacyRequest] = []
    with transaction.atomic(durable=True):
        for new, received_at in received:
            extra = ({"also_filed": list(filed)}
                     if new.acknowledge and len(news) > 1 else {})
            filed.append(_receive(new, received_at, actor, extra))
        if then is not None:
            then(filed)
    return filed


def _checked(new: NewRequest) -> datetime.datetime:
    """Refuse, in words, what cannot be filed; the date of receipt."""
    if new.request_type not in REQUEST_TYPES:
        raise TransitionInputError(_("Unknown request type."))
    if new.jurisdiction not in JURISDICTIONS and new.jurisdiction != UNKNOWN:
        raise TransitionInputError(_("Unknown jurisdiction."))
    if not all(isinstance(k, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,62}", k)
               and isinstance(v, str) and len(v) <= MAX_EXTRA for k, v in new.extra.items()):
        raise TransitionInputError(_("An identifier of another type is too long or not "
                                     "named as a source's map names it."))
    if not any(v.strip() for v in (new.email, new.phone, new.account_number,
                                    new.postal_address, *new.extra.values())):
        raise TransitionInputError(_("Give an email address or another identifier (a phone "
                                     "number, a customer number, a postal address or an "
                                     "identifier of the office's own) to find the person by."))
    if not new.email.strip() and not new.postal_address.strip():
        # Every notice to a person without email goes by letter (notices/letters.py).
        raise TransitionInputError(_("Without an email address, give a postal address: "
                                     "every notice to this person goes by letter."))
    if not all(one_line(v) for v in (new.name, new.phone, new.account_number,
                                     *new.extra.values())):
        raise TransitionInputError(_("A name, a phone number or an identifier cannot hold "
                                     "line breaks or other control characters."))
    received_at = new.received_at or timezone.now()
    if received_at > timezone.now():
        raise TransitionInputError(_("The date of receipt cannot be in the future."))
    return received_at


def _receive(new: NewRequest, received_at, actor: Actor, notice_extra: dict) -> PrivacyRequest:
    """One request, inside the caller's transaction."""
    request, identity = _create(new, received_at)
    original = _open_duplicate_of(request, identity)
    if original is not None:
        request.duplicate_of = original
        request.save(update_fields=["duplicate_of"])
    if new.on_received is not None:
        new.on_received(request)
    event = record_event(
        "request.received", actor=actor, request=request, to_state=request.state,
        data={"type": request.request_type, "jurisdiction": request.jurisdiction,
              "channel": request.channel, "due_on": request.due_on.isoformat()})
    if new.acknowledge:
        queue_notice(request, "received", event, **new.notice_extra, **notice_extra)
    if request.type_rules.is_opt_out:
        record_request_opt_out(
            request, new.purposes, actor=actor, notices=new.consent_notices,
            method=new.consent_method or CONSENT_METHODS.get(new.channel, "request_form"))
    if original is not None:
        record_event("request.flagged_duplicate", actor=Actor.system(), request=request,
                     data={"duplicate_of": original.reference})
    if request.type_rules.verification is Verification.NONE:
        # Opt-outs need no identity verification (CCPA regs §7026): straight on.
        apply_transition(request, "verify", actor=Actor.system(),
                         audit_reason="no identity verification for this type")
    return request


def _create(new: NewRequest, received_at) -> tuple[PrivacyRequest, Identity]:
    request = PrivacyRequest(request_type=new.request_type, jurisdiction=new.jurisdiction,
                             channel=new.channel, filed_by=new.filed_by, details=new.details,
                             received_at=received_at)
    request.set_deadlines()
    request.full_clean(exclude=["state"])
    request.save()
    identity = Identity(request=request, name=new.name, email=new.email, phone=new.phone,
                        account_number=new.account_number, postal_address=new.postal_address,
                        email_hash=hash_value(new.email) if new.email.strip() else "",
                        extra={k: v.strip() for k, v in new.extra.items() if v.strip()})
    identity.full_clean()
    identity.save()
    return request, identity


def _open_duplicate_of(request: PrivacyRequest, identity: Identity) -> PrivacyRequest | None:
    """The oldest open request for the same right from the same person (the same
    email, in any case), which a new request duplicates (none told apart without
    an email: staff compare such requests themselves)."""
    if not identity.email.strip():
        return None
    return (PrivacyRequest.objects
            .filter(state__in=OPEN_STATES, request_type=request.request_type)
            .annotate(email_lower=Lower("identity__email"))
            .filter(email_lower=identity.email.strip().lower())
            .exclude(pk=request.pk).order_by("received_at", "id").first())
