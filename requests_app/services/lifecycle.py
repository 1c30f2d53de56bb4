"""Use cases that move a privacy request through its lifecycle.

Each one locks the request row, applies a transition of the machine in
models/privacy_request.py, saves, writes the audit event in the same transaction
and enqueues its side effects on commit.
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django_fsm import ConcurrentTransition, can_proceed

from requests_app.models import Actor, Identity, PrivacyRequest
from requests_app.models.privacy_request import OPEN_STATES, ActorKind, TransitionInputError
from requests_app.rules import JURISDICTIONS, REQUEST_TYPES, UNKNOWN, Verification
from requests_app.services.audit import record_event
from requests_app.services.notices import queue_notice
from requests_app.services.tasks_queue import enqueue_on_commit


class TransitionRefused(Exception):
    """The transition cannot be taken: wrong state, unmet guard, no permission, or
    another user moved the request first. The message can be shown to staff."""


# The consumer notice (templates/emails/<name>/) sent after each transition.
NOTICES = {
    "expire": "expired",
    "deny": "denied",
    "cancel": "cancelled",
    "release": "completed",
    "extend": "extended",
    "appeal": "appeal_received",
    "grant_appeal": "appeal_granted",
    "deny_appeal": "appeal_denied",
    "confirm_opt_out": "opt_out_done",
    "request_information": "more_information",
    "merge": "merged",
}
# The system's next step, run by a worker after the transition commits.
FOLLOW_UPS = {
    "verify": "requests_app.tasks.begin_review",
    "approve": "requests_app.tasks.begin_fulfilment",
    "approve_opt_out": "requests_app.tasks.begin_fulfilment",
    "approve_erasure": "requests_app.tasks.begin_fulfilment",
    "retry_fulfilment": "requests_app.tasks.begin_fulfilment",
}


def follow_up(name: str):
    """The task a step enqueues, imported by its dotted path: a fresh web process
    that never imported requests_app.tasks gets it (and registers it) all the same."""
    return import_string(FOLLOW_UPS[name])


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
    # Called with the new request inside the transaction that files it, for rows
    # that must exist as soon as the request does (the portal's verification
    # evidence): a crash can leave neither without the other.
    on_received: Callable[[PrivacyRequest], None] | None = None


# How an opt-out arrived, for the consent ledger, by the channel it came through.
CONSENT_METHODS = {"web": "request_form", "api": "request_form", "phone": "staff_phone",
                   "email": "staff_writing", "post": "staff_writing"}


def do_receive_request(new: NewRequest, *, actor: Actor) -> PrivacyRequest:
    if new.request_type not in REQUEST_TYPES:
        raise TransitionInputError(_("Unknown request type."))
    if new.jurisdiction not in JURISDICTIONS and new.jurisdiction != UNKNOWN:
        raise TransitionInputError(_("Unknown jurisdiction."))
    received_at = new.received_at or timezone.now()
    if received_at > timezone.now():
        raise TransitionInputError(_("The date of receipt cannot be in the future."))
    with transaction.atomic(durable=True):
        request = PrivacyRequest(
            request_type=new.request_type,
            jurisdiction=new.jurisdiction,
            channel=new.channel,
            filed_by=new.filed_by,
            details=new.details,
            received_at=received_at,
        )
        request.set_deadlines()
        request.full_clean(exclude=["state"])
        request.save()
        identity = Identity(
            request=request,
            name=new.name,
            email=new.email,
            phone=new.phone,
            account_number=new.account_number,
            postal_address=new.postal_address,
        )
        identity.full_clean()
        identity.save()
        original = _open_duplicate_of(request, identity)
        if original is not None:
            request.duplicate_of = original
            request.save(update_fields=["duplicate_of"])
        if new.on_received is not None:
            new.on_received(request)
        event = record_event(
            "request.received",
            actor=actor,
            request=request,
            to_state=request.state,
            data={
                "type": request.request_type,
                "jurisdiction": request.jurisdiction,
                "channel": request.channel,
                "due_on": request.due_on.isoformat(),
            },
        )
        queue_notice(request, "received", event, **new.notice_extra)
        if request.type_rules.is_opt_out:
            from requests_app.services.consent import record_request_opt_out

            record_request_opt_out(
                request, new.purposes, actor=actor, notices=new.consent_notices,
                method=new.consent_method or CONSENT_METHODS.get(new.channel, "request_form"))
        if original is not None:
            record_event("request.flagged_duplicate", actor=Actor.system(), request=request,
                         data={"duplicate_of": original.reference})
        if request.type_rules.verification is Verification.NONE:
            # Opt-outs need no identity verification (CCPA regs §7026): straight on.
            _apply(request, "verify", actor=Actor.system(),
                   audit_reason="no identity verification for this type")
    return request


def _open_duplicate_of(request: PrivacyRequest, identity: Identity) -> PrivacyRequest | None:
    """The oldest open request for the same right from the same person (the same
    email, in any case), which a new request duplicates."""
    from django.db.models.functions import Lower

    return (PrivacyRequest.objects
            .filter(state__in=OPEN_STATES, request_type=request.request_type)
            .annotate(email_lower=Lower("identity__email"))
            .filter(email_lower=identity.email.strip().lower())
            .exclude(pk=request.pk).order_by("received_at", "id").first())


def _find_transition(request: PrivacyRequest, name: str):
    for t in request.get_all_state_transitions():
        if t.name == name and t.source in (request.state, "*"):
            return t
    return None


def _check_actor(request: PrivacyRequest, transition, actor: Actor) -> None:
    if actor.kind not in transition.custom.get("actors", ()):
        raise TransitionRefused(_("This step cannot be taken by %(actor)s.") % {"actor": actor.kind})
    if actor.kind == ActorKind.STAFF:
        if not (actor.user.is_active and transition.has_perm(request, actor.user)):
            raise TransitionRefused(_("You do not have permission for this step."))


def may_take(request: PrivacyRequest, name: str, actor: Actor) -> bool | None:
    """Whether the actor may take step `name` from the request's state (whatever
    its guards say now); None when the state has no such step."""
    transition = _find_transition(request, name)
    if transition is None:
        return None
    try:
        _check_actor(request, transition, actor)
    except TransitionRefused:
        return False
    return True


def available_transitions(request: PrivacyRequest, actor: Actor) -> list[str]:
    """The transitions this actor may take now, read from the machine itself."""
    names = []
    for t in request.get_available_state_transitions():
        try:
            _check_actor(request, t, actor)
        except TransitionRefused:
            continue
        names.append(t.name)
    return names


def do_transition(
    request_id: int,
    name: str,
    *,
    actor: Actor,
    expected_state: str | None = None,
    expected_version: str | None = None,
    **inputs,
) -> PrivacyRequest:
    """Apply transition `name` to the request.

    `expected_state` is the state the actor saw (a staff form carries it): if the
    request has moved since, the step is refused instead of applied to a state the
    actor never saw. `expected_version` (the request's `version`, which a staff form
    also carries) does the same for steps that keep the state, such as an
    extension. Raises TransitionRefused or TransitionInputError; on either,
    nothing is saved.
    """
    with transaction.atomic(durable=True):
        request = PrivacyRequest.objects.locked().get(pk=request_id)
        if ((expected_state is not None and request.state != expected_state)
                or (expected_version is not None and request.version != expected_version)):
            raise TransitionRefused(
                _("This request was changed by someone else; reload it and try again.")
            )
        _apply(request, name, actor=actor, **inputs)
    return request


def _apply(request: PrivacyRequest, name: str, *, actor: Actor, audit_reason: str = "",
           **inputs):
    """Take a step on a locked request inside the caller's transaction."""
    from_state = request.state
    transition = _find_transition(request, name)
    if transition is None:
        raise TransitionRefused(
            _("A request that is “%(state)s” cannot take the step “%(step)s”.")
            % {"state": request.get_state_display(), "step": name}
        )
    _check_actor(request, transition, actor)
    method = getattr(request, name)
    if not can_proceed(method):
        raise TransitionRefused(_refusal_reason(transition, request))
    method(**inputs)
    try:
        request.save()
    except ConcurrentTransition:
        raise TransitionRefused(
            _("This request was changed by someone else; reload it and try again.")
        ) from None
    event = record_event(
        f"request.{name}",
        actor=actor,
        request=request,
        from_state=from_state,
        to_state=request.state,
        reason=_reason_of(request, name, actor, audit_reason or inputs.get("reason", "")),
        data=_data_of(request, name),
    )
    if name in NOTICES:
        queue_notice(request, NOTICES[name], event)
    if name in FOLLOW_UPS:
        enqueue_on_commit(follow_up(name), request.pk)


def _refusal_reason(transition, request) -> str:
    for condition in transition.conditions:
        if not condition(request):
            return str(getattr(condition, "refusal", _("This step is not possible now.")))
    return _("This step is not possible now.")


def _reason_of(request: PrivacyRequest, name: str, actor: Actor, reason: str) -> str:
    """A reason fit for a trail that can never be edited: codes and system texts
    only. Free text written by staff or the consumer (denial detail, extension
    notice, appeal) may name people; it stays on the request and in the email
    sent, both of which retention can purge."""
    if name == "deny":
        return request.denial_reason
    if name == "extend":
        return f"extended to {request.extended_due_on.isoformat()}"
    if actor.kind == ActorKind.SYSTEM:
        return reason
    return ""


def _data_of(request: PrivacyRequest, name: str) -> dict:
    if name == "deny":
        return {"denial_reason": request.denial_reason}
    if name == "extend":
        return {"due_on": request.due_on.isoformat(),
                "extended_due_on": request.extended_due_on.isoformat()}
    if name == "merge":
        return {"merged_into": request.duplicate_of.reference}
    if name == "request_information":
        return {"asked_at": request.information_requested_at.isoformat()}
    if name == "appeal":
        return {"appeal_due_on": request.appeal_due_on.isoformat()
                if request.appeal_due_on else None}
    return {}
