"""Checking the audit trail's hash chain against itself and against the signed
checkpoints kept outside the database; writing those checkpoints."""

import logging
from dataclasses import dataclass

from django.utils import timezone

from requests_app.models import Actor, AuditEvent
from requests_app.models.audit import HMAC_SHA256, PLAIN_SHA256
from requests_app.services.audit import checkpoints
from requests_app.services.audit.checkpoints import BadCheckpoint, Checkpoint
from requests_app.services.audit.events import record_event

log = logging.getLogger(__name__)


@dataclass
class ChainReport:
    events: int
    head: str
    broken_at: AuditEvent | None = None
    problem: str = ""
    last_id: int = 0
    keyed: bool = False           # the last event walked is keyed
    checkpoints: int = 0          # checkpoints that agreed
    newest: Checkpoint | None = None

    @property
    def intact(self) -> bool:
        return not self.problem

    @property
    def unvouched(self) -> int:
        """Events after the newest checkpoint: cutting those off could not be seen."""
        return self.events - (self.newest.count if self.newest else 0)


def _events(after: int):
    return (AuditEvent.objects.filter(id__gt=after).order_by("id").select_related("request")
            .only("id", "at", "actor_kind", "actor_id", "actor_label", "action",
                  "request__reference", "from_state", "to_state", "reason", "data",
                  "prev_hash", "hash", "chain_version")
            .iterator(chunk_size=2000))


def _fault(event: AuditEvent, previous: str, keyed: bool) -> str:
    """Why this event does not belong where it is ("" when it does)."""
    if event.prev_hash != previous:
        return ("it does not follow the event before it "
                "(an event was removed, inserted or reordered)")
    if keyed and event.chain_version == PLAIN_SHA256:
        return ("it has a plain SHA-256 hash after keyed events (the chain was "
                "recomputed without the key)")
    if event.compute_hash(event.request.reference if event.request else "") != event.hash:
        return "its content does not match its hash (it was altered)"
    return ""


def _against(event: AuditEvent, count: int, mark: Checkpoint) -> str:
    if event.hash != mark.head or count != mark.count:
        return (f"it differs from the checkpoint of {mark.at} ({mark.where}), which "
                f"recorded hash {mark.head} after {mark.count} events (the chain was "
                "rewritten)")
    return ""


def walk(report: ChainReport, marks: dict[int, Checkpoint] | None = None) -> ChainReport:
    """Continue `report` over the events after report.last_id, in order and in
    constant memory; stop at the first broken event. Each event named in `marks`
    must have the checkpoint's hash and count (matched marks are removed)."""
    for event in _events(report.last_id):
        problem = _fault(event, report.head, report.keyed)
        mark = marks.pop(event.id, None) if marks else None
        if not problem and mark is not None:
            problem = _against(event, report.events + 1, mark)
            report.checkpoints += 1
        if problem:
            report.broken_at, report.problem = event, problem
            return report
        report.head, report.last_id = event.hash, event.id
        report.keyed = event.chain_version == HMAC_SHA256
        report.events += 1
    return report


def _load_marks() -> tuple[dict[int, Checkpoint], Checkpoint | None, str]:
    marks: dict[int, Checkpoint] = {}
    newest = None
    try:
        for mark in checkpoints.read_all():
            if mark.seq in marks and marks[mark.seq].head != mark.head:
                return marks, newest, (f"checkpoints {marks[mark.seq].where} and "
                                       f"{mark.where} disagree about event {mark.seq}")
            marks[mark.seq] = newest = mark
    except BadCheckpoint as exc:
        return marks, newest, f"checkpoint {exc}"
    return marks, newest, ""


def verify_chain() -> ChainReport:
    """Walk the whole chain, and check it against every signed checkpoint: an event
    a checkpoint vouched for that is gone (a cut tail, an emptied table) or differs
    (a rewritten chain) breaks it as surely as a broken link."""
    marks, newest, problem = _load_marks()
    report = ChainReport(0, "", newest=newest)
    if problem:
        report.problem = problem
        return report
    walk(report, marks)
    if report.intact and marks:
        missing = marks[min(marks)]
        if not report.events:
            found = "is empty"
        elif missing.seq > report.last_id:
            found = f"ends at event {report.last_id} with {report.events}"
        else:
            found = "has no such event"
        report.problem = (
            f"the checkpoint of {missing.at} ({missing.where}) vouches for event "
            f"{missing.seq} with {missing.count} events, but the chain {found} "
            "(events were removed from its end, or the table was emptied)")
    return report


def write_checkpoint() -> Checkpoint | None:
    """Sign and append the chain's current head. Only the events since the newest
    checkpoint are walked (minutes of them), starting from the hash it vouched for;
    a broken chain gets no checkpoint (and an error in the log)."""
    newest = checkpoints.latest()
    report = ChainReport(0, "")
    if newest is not None:
        vouched = AuditEvent.objects.filter(pk=newest.seq).first()
        if vouched is None or vouched.hash != newest.head:
            log.error("audit trail: event %s, vouched for by the newest checkpoint, is "
                      "gone or changed; no checkpoint written", newest.seq)
            return None
        report = ChainReport(newest.count, newest.head, last_id=newest.seq,
                             keyed=vouched.chain_version == HMAC_SHA256)
    walk(report)
    if not report.intact:
        log.error("audit trail broken at event %s; no checkpoint written",
                  report.broken_at.pk)
        return None
    if not report.events:
        return None  # nothing to vouch for yet
    now = timezone.now()
    if (newest is not None and newest.seq == report.last_id
            and newest.at[:10] == now.date().isoformat()):
        return newest  # nothing new today since the last one
    checkpoint = checkpoints.sign(report.last_id, report.head, report.events, now)
    checkpoints.append(checkpoint)
    return checkpoint


def record_chain_head() -> AuditEvent:
    """Verify the chain (against the checkpoints too) and note the result in the
    chain: for the auditor area. The proof is the checkpoints outside the database;
    this event only records that the nightly check ran and what it found."""
    report = verify_chain()
    return record_event(
        "audit.chain_head", actor=Actor.system(),
        data={"head": report.head, "events": report.events, "intact": report.intact,
              "broken_at": report.broken_at.pk if report.broken_at else None,
              "problem": report.problem, "checkpoints": report.checkpoints},
    )
