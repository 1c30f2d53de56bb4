import hashlib
import json

from django.conf import settings
from django.db import connection, transaction

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
    """Append one audit event, chained to the one before. Call it inside the
    transaction that makes the change, so the change and its record commit or roll
    back together."""
    with transaction.atomic():
        _lock_the_chain()
        event = AuditEvent(
            actor_kind=str(actor.kind),
            actor=actor.user if actor.user is not None else None,
            actor_label=actor.label,
            action=action,
            request=request,
            from_state=from_state,
            to_state=to_state,
            reason=reason,
            data=json.loads(json.dumps(data or {}, default=str)),
            prev_hash=AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
            or "",
        )
        event.hash = event.compute_hash(request.reference if request else "")
        event.save()
    return event


# Any constant: the key of the advisory lock that lets one transaction at a time
# append to the chain (held until that transaction ends).
#
# Lock order: a transaction takes its row locks first and the chain's lock last
# (record_event after the change), and after record_event it waits on no other
# lock. The event's own row references its request, and that foreign key takes a
# KEY SHARE lock on the request: requests are therefore locked FOR NO KEY UPDATE
# (PrivacyRequest.objects.locked()), which lets another transaction that holds the
# chain insert an event about a request this one has locked, instead of the two
# waiting on each other (a deadlock the fault tests found).
_CHAIN_LOCK = 7_261_017


def _lock_the_chain() -> None:
    """Appends must be serialised, or two events could chain to the same parent.
    PostgreSQL: a transaction-scoped advisory lock. SQLite serialises writers itself
    (transactions are IMMEDIATE)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])


def hash_value(value: str) -> str:
    """A keyed hash of a personal value, for audit data: equal values can be matched,
    the value itself cannot be read back."""
    key = hashlib.sha256(settings.IDENTITY_HASH_KEY.encode()).digest()
    return hashlib.blake2b(value.strip().lower().encode(), key=key, digest_size=16).hexdigest()
