import hashlib

from django.conf import settings

from requests_app.models import Actor, AuditEvent


def record_event(
    action: str,
    *,
    actor: Actor,
    request=None,
    from_state: str = "",
    to_state: str = "",
    reason: str = "",
    data: dict | None = None,
) -> AuditEvent:
    """Append one audit event. Call it inside the transaction that makes the change,
    so the change and its record commit or roll back together."""
    return AuditEvent.objects.create(
        actor_kind=str(actor.kind),
        actor=actor.user if actor.user is not None else None,
        actor_label=actor.label,
        action=action,
        request=request,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        data=data or {},
    )


def hash_value(value: str) -> str:
    """A keyed hash of a personal value, for audit data: equal values can be matched,
    the value itself cannot be read back."""
    key = hashlib.sha256(settings.IDENTITY_HASH_KEY.encode()).digest()
    return hashlib.blake2b(value.strip().lower().encode(), key=key, digest_size=16).hexdigest()
