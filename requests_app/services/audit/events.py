import hashlib
import json

from django.conf import settings
from django.db import connection, transaction

from requests_app.models import Actor, AuditEvent
from requests_app.models.audit import HMAC_SHA256


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
    back together.

    No savepoint of its own (savepoint=False): an error here fails the change it
    records, as it must, and the two round trips of SAVEPOINT / RELEASE are saved
    on every audited step. Outside a transaction it still opens one."""
    with transaction.atomic(savepoint=False):
        head = _lock_the_chain_and_read_head()
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
            prev_hash=head,
            chain_version=HMAC_SHA256,
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


def _lock_the_chain_and_read_head() -> str:
    """Take the chain, then read the hash of its last event ("" when empty).

    Appends must be serialised, or two events could chain to the same parent.
    PostgreSQL: a transaction-scoped advisory lock. SQLite serialises writers itself
    (transactions are IMMEDIATE).

    On PostgreSQL both statements go in one round trip (a simple query of two
    statements, with Django's default client-side binding). They stay two
    statements on purpose: under READ COMMITTED each statement takes its own
    snapshot when it starts, so the head is read after the lock is granted and
    sees the event of whoever held the lock before (one statement, or a subquery,
    would read with a snapshot taken before the wait)."""
    head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True)[:1]
    if connection.vendor != "postgresql":
        return head.first() or ""
    with connection.cursor() as cursor:
        if connection.settings_dict.get("OPTIONS", {}).get("server_side_binding"):
            # Server-side binding allows one statement per execute.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])
            return head.first() or ""
        from psycopg import sql

        select, params = head.query.sql_with_params()  # Django's own SQL, values bound
        cursor.execute(sql.SQL("SELECT pg_advisory_xact_lock(%s); {}").format(sql.SQL(select)),
                       [_CHAIN_LOCK, *params])
        cursor.nextset()
        row = cursor.fetchone()
    return (row[0] if row else "") or ""


def hash_value(value: str) -> str:
    """A keyed hash of a personal value, for audit data: equal values can be matched,
    the value itself cannot be read back."""
    key = hashlib.sha256(settings.IDENTITY_HASH_KEY.encode()).digest()
    return hashlib.blake2b(value.strip().lower().encode(), key=key, digest_size=16).hexdigest()
