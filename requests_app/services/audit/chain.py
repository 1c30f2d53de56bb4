"""Checking the audit trail's hash chain, and noting its head."""

from dataclasses import dataclass

from requests_app.models import Actor, AuditEvent
from requests_app.services.audit.events import record_event


@dataclass
class ChainReport:
    events: int
    head: str
    broken_at: AuditEvent | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain() -> ChainReport:
    """Walk the chain in order, in constant memory; stop at the first broken event."""
    previous = ""
    count = 0
    events = (AuditEvent.objects.order_by("id").select_related("request")
              .only("id", "at", "actor_kind", "actor_id", "actor_label", "action",
                    "request__reference", "from_state", "to_state", "reason", "data",
                    "prev_hash", "hash"))
    for event in events.iterator(chunk_size=2000):
        if event.prev_hash != previous:
            return ChainReport(count, previous, event,
                               "it does not follow the event before it "
                               "(an event was removed, inserted or reordered)")
        if event.compute_hash(event.request.reference if event.request else "") != event.hash:
            return ChainReport(count, previous, event,
                               "its content does not match its hash (it was altered)")
        previous = event.hash
        count += 1
    return ChainReport(count, previous)


def record_chain_head() -> AuditEvent:
    """Write the current head of the chain into the chain itself: a value an
    auditor can note down and compare later."""
    report = verify_chain()
    return record_event(
        "audit.chain_head", actor=Actor.system(),
        data={"head": report.head, "events": report.events, "intact": report.intact,
              "broken_at": report.broken_at.pk if report.broken_at else None},
    )
