"""Use cases that move a privacy request through its lifecycle.

Each one locks the request row, applies a transition of the machine in
models/privacy_request.py, saves, writes the audit event in the same transaction
and enqueues its side effects on commit.
"""

from django.db import transaction
from django.utils.translation import gettext as _
from django_fsm import ConcurrentTransition, can_proceed

from requests_app.models import Actor, PrivacyRequest
from requests_app.models.privacy_request import ActorKind
from requests_app.services.audit.events import record_event
from requests_app.services.notices.outbox import queue_notice
from requests_app.services.queue import enqueue_on_commit


class TransitionRefused(Exception):
    """The transition cannot be taken: wrong state, unmet guard, no permission, or
    another user moved the request first. The message can be shown to staff."""


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
        request = lock_as_seen(request_id, expected_state, expected_version)
        apply_transition(request, name, actor=actor, **inputs)
    return request


def lock_as_seen(request_id: int, expected_state: str | None = None,
                 expected_version: str | None = None) -> PrivacyRequest:
    """The request, locked, if it is still in the state and version the actor saw
    (see do_transition); else TransitionRefused."""
    request = PrivacyRequest.objects.locked().get(pk=request_id)
    if ((expected_state is not None and request.state != expected_state)
            or (expected_version is not None and request.version != expected_version)):
        raise TransitionRefused(
            _("This request was changed by someone else; reload it and try again.")
        )
    return request


def apply_transition(request: PrivacyRequest, name: str, *, actor: Actor, audit_reason: str = "",
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
        data=transition.custom["audit"](request) if transition.custom.get("audit") else {},
    )
    if transition.custom.get("notice"):
        queue_notice(request, transition.custom["notice"], event)
    if transition.custom.get("follow_up"):
        enqueue_on_commit(transition.custom["follow_up"], request.pk)


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
