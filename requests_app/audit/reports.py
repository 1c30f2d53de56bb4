"""What auditors read: the request log, the event log and the yearly metrics.

Rows are produced from database cursors in chunks (`iterator`), so an export of any
size runs in constant memory. No identity field (name, email, phone, account,
address) appears in any of them.
"""

import csv
import datetime
import hashlib
import io
import json
import statistics
from collections import Counter

from django.utils import timezone

from requests_app import csvcells
from requests_app.models import AuditEvent, PrivacyRequest, State
from requests_app.models.privacy_request import DenialReason
from requests_app.rules import REQUEST_TYPES

REQUEST_LOG_COLUMNS = [
    "reference", "type", "type_asked_for", "jurisdiction", "channel", "received", "acknowledged", "verified",
    "due", "extended_due", "closed", "outcome", "denial_reason", "days_to_respond",
    "appeal_received", "appeal_outcome",
]
EVENT_LOG_COLUMNS = [
    "id", "time", "actor_kind", "actor", "action", "request", "from_state", "to_state",
    "reason", "data", "prev_hash", "hash",
]
OUTCOMES = ["complied", "denied", "cancelled", "expired", "open"]


def outcome_of(state: str, denial_reason: str, responded_at) -> str:
    if denial_reason:
        return "denied"
    if state == State.CANCELLED:
        return "cancelled"
    if state == State.EXPIRED:
        return "expired"
    if responded_at is not None:
        return "complied"
    return "open"


def _date(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return timezone.localdate(value).isoformat()
    return value.isoformat()


def days_to_respond(received_at, responded_at) -> int | None:
    if responded_at is None:
        return None
    return (timezone.localdate(responded_at) - timezone.localdate(received_at)).days


def _between(rows, column: str, start=None, end=None):
    """Rows whose `column` falls on a date from `start` to `end` (either may be None)."""
    if start:
        rows = rows.filter(**{f"{column}__date__gte": start})
    if end:
        rows = rows.filter(**{f"{column}__date__lte": end})
    return rows


def request_log(start=None, end=None, request_type=None, outcome=None):
    """One dict per request, oldest first, filtered by receipt date, type and outcome."""
    rows = _between(PrivacyRequest.objects.order_by("received_at", "id"), "received_at",
                    start, end)
    if request_type:
        rows = rows.filter(request_type=request_type)
    fields = ["reference", "request_type", "original_request_type", "jurisdiction",
              "channel", "received_at",
              "acknowledged_at", "verified_at", "due_on", "extended_due_on", "closed_at",
              "state", "denial_reason", "responded_at", "appeal_received_at", "appeal_outcome"]
    for r in rows.values(*fields).iterator(chunk_size=2000):
        result = outcome_of(r["state"], r["denial_reason"], r["responded_at"])
        if outcome and result != outcome:
            continue
        yield {
            "reference": r["reference"], "type": r["request_type"],
            "type_asked_for": r["original_request_type"] or r["request_type"],
            "jurisdiction": r["jurisdiction"], "channel": r["channel"],
            "received": _date(r["received_at"]), "acknowledged": _date(r["acknowledged_at"]),
            "verified": _date(r["verified_at"]), "due": _date(r["due_on"]),
            "extended_due": _date(r["extended_due_on"]), "closed": _date(r["closed_at"]),
            "outcome": result, "denial_reason": r["denial_reason"],
            "days_to_respond": days_to_respond(r["received_at"], r["responded_at"]),
            "appeal_received": _date(r["appeal_received_at"]),
            "appeal_outcome": r["appeal_outcome"] or ("pending" if r["appeal_received_at"]
                                                      else ""),
        }


def event_log(start=None, end=None, action=None):
    rows = _between(AuditEvent.objects.order_by("id"), "at", start, end)
    if action:
        rows = rows.filter(action__startswith=action)
    fields = ["id", "at", "actor_kind", "actor_label", "action", "request__reference",
              "from_state", "to_state", "reason", "data", "prev_hash", "hash"]
    for e in rows.values_list(*fields).iterator(chunk_size=5000):
        yield dict(zip(EVENT_LOG_COLUMNS, (
            e[0], e[1].isoformat(), e[2], e[3], e[4], e[5] or "", e[6], e[7], e[8],
            json.dumps(e[9], sort_keys=True, ensure_ascii=False), e[10], e[11])))


_EVENT_SELECT = """
SELECT e.id, to_json(e.at) #>> '{}' AS time, e.actor_kind, e.actor_label AS actor, e.action,
       coalesce(r.reference, '') AS request, e.from_state, e.to_state, e.reason,
       e.data::text AS data, e.prev_hash, e.hash
FROM requests_app_auditevent e LEFT JOIN requests_app_privacyrequest r ON r.id = e.request_id
WHERE (%(start)s::date IS NULL OR e.at >= %(start)s::date)
  AND (%(end)s::date IS NULL OR e.at < %(end)s::date + 1)
ORDER BY e.id
"""

# The same, each cell as csvcells.cell writes it (for the CSV that COPY writes).
_EVENT_CSV_SELECT = ("SELECT " + ", ".join(
    f'{csvcells.sql_cell(f"s.{c}")} AS {c}' for c in EVENT_LOG_COLUMNS)
    + f" FROM ({_EVENT_SELECT}) AS s ORDER BY s.id")


def event_log_text(fmt: str, start=None, end=None):
    """The event log as CSV or JSON Lines chunks (bytes, or text off PostgreSQL). On PostgreSQL the server
    writes it (COPY ... TO STDOUT): an export of millions of events runs at the
    database's speed and in constant memory. Elsewhere, rows go through Python."""
    from django.db import connection

    if connection.vendor != "postgresql":
        rows = event_log(start, end)
        yield from (as_csv(rows, EVENT_LOG_COLUMNS) if fmt == "csv" else as_jsonl(rows))
        return
    from psycopg import sql

    params = {"start": start, "end": end}
    if fmt == "csv":
        query = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(
            sql.SQL(_EVENT_CSV_SELECT))  # composed, not formatted
    else:
        # One JSON object a line; the quote and delimiter bytes never occur in JSON
        # text, so COPY passes each line through untouched.
        query = sql.SQL("COPY (SELECT row_to_json(t)::text FROM ({}) t) TO STDOUT "
                        "(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')").format(
            sql.SQL(_EVENT_SELECT))
    with connection.cursor() as cursor, cursor.cursor.copy(query, params) as copy:
        for block in copy:
            yield bytes(block)


def as_csv(rows, columns):
    """CSV text in chunks of about 64 KiB."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(csvcells.row(row))  # no cell a spreadsheet would run
        if buffer.tell() > 65536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def as_jsonl(rows):
    chunk = []
    size = 0
    for row in rows:
        line = json.dumps(row, ensure_ascii=False, default=str) + "\n"
        chunk.append(line)
        size += len(line)
        if size > 65536:
            yield "".join(chunk)
            chunk, size = [], 0
    yield "".join(chunk)


def hashed(chunks, manifest: dict):
    """Pass bytes through, noting their SHA-256, size and line count in `manifest`."""
    digest = hashlib.sha256()
    size = lines = 0
    for chunk in chunks:
        data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
        digest.update(data)
        size += len(data)
        lines += data.count(b"\n")
        yield data
    manifest.update({"sha256": digest.hexdigest(), "bytes": size, "lines": lines})


# --- metrics (CCPA regs §7102) --------------------------------------------------

METRICS_GROUPS = {
    "know": "Right to know (categories)", "access": "Access and portability",
    "delete": "Deletion", "correct": "Correction",
    "opt_out": "Opt-out of sale or sharing",
    "limit": "Limit the use of sensitive personal information",
    "marketing": "Stop marketing (not a CCPA right)",
}


def _new_group() -> dict:
    return {"received": 0, "complied": 0, "denied": 0, "denied_by_reason": Counter(),
            "days": [], "on_time": 0, "downgraded": 0}


def _count(g: dict, r: dict) -> None:
    """Add one request to its group: received, outcome, days to respond, on time."""
    g["received"] += 1
    if r["original_request_type"] and r["original_request_type"] != r["request_type"]:
        g["downgraded"] += 1
    result = outcome_of(r["state"], r["denial_reason"], r["responded_at"])
    if result == "complied":
        g["complied"] += 1
    elif result == "denied":
        g["denied"] += 1
        g["denied_by_reason"][r["denial_reason"]] += 1
    days = days_to_respond(r["received_at"], r["responded_at"])
    if days is not None:
        g["days"].append(days)
        due = r["extended_due_on"] or r["due_on"]
        if timezone.localdate(r["responded_at"]) <= due:
            g["on_time"] += 1


def metrics(year: int, jurisdiction: str = "") -> dict:
    """Per request type group (§7102(a)(1): know, delete, correct, opt-out of sale or
    sharing and limit, each apart), for requests received in `year` (and in
    `jurisdiction`, if given): received, complied with in whole or in part, denied
    (by reason), median and mean days to respond, on time; and the volume received
    and closed per month. A request is counted under the type the consumer asked
    for: an access request answered as categories (§7024) stays under access, and
    is counted as downgraded there."""
    group_of = {code: t.metrics_group for code, t in REQUEST_TYPES.items()}
    per_group = {g: _new_group() for g in METRICS_GROUPS}
    received_per_month, closed_per_month = Counter(), Counter()
    rows = PrivacyRequest.objects.filter(received_at__year=year)
    if jurisdiction:
        rows = rows.filter(jurisdiction=jurisdiction)
    rows = rows.values(
        "request_type", "original_request_type", "received_at", "responded_at",
        "closed_at", "state", "denial_reason", "due_on", "extended_due_on")
    for r in rows.iterator(chunk_size=2000):
        _count(per_group[group_of[r["original_request_type"] or r["request_type"]]], r)
        received_per_month[timezone.localdate(r["received_at"]).month] += 1
        if r["closed_at"]:
            closed_per_month[timezone.localdate(r["closed_at"]).month] += 1
    result = {"year": year, "jurisdiction": jurisdiction, "groups": {},
              "received_per_month": [received_per_month[m] for m in range(1, 13)],
              "closed_per_month": [closed_per_month[m] for m in range(1, 13)]}
    for key, g in per_group.items():
        days = g.pop("days")
        responded = len(days)
        result["groups"][key] = {
            "label": METRICS_GROUPS[key], "received": g["received"],
            "complied": g["complied"], "denied": g["denied"],
            "downgraded": g["downgraded"],
            "denied_by_reason": {r: g["denied_by_reason"][r] for r in DenialReason.values},
            "median_days": statistics.median(days) if days else None,
            "mean_days": round(statistics.fmean(days), 1) if days else None,
            "on_time_rate": round(g["on_time"] / responded, 3) if responded else None,
        }
    return result


def metrics_csv_rows(report: dict):
    def blank(value):
        return "" if value is None else value

    for g in report["groups"].values():
        row = {"year": report["year"], "jurisdiction": report["jurisdiction"] or "all",
               "type": g["label"], "received": g["received"],
               "complied_in_whole_or_part": g["complied"], "denied": g["denied"],
               "downgraded_to_categories": g["downgraded"],
               "median_days_to_respond": blank(g["median_days"]),
               "mean_days_to_respond": blank(g["mean_days"]),
               "on_time_rate": blank(g["on_time_rate"])}
        row.update({f"denied_{r}": n for r, n in g["denied_by_reason"].items()})
        yield row


METRICS_COLUMNS = (["year", "jurisdiction", "type", "received", "complied_in_whole_or_part",
                    "denied", "downgraded_to_categories"]
                   + [f"denied_{r}" for r in DenialReason.values]
                   + ["median_days_to_respond", "mean_days_to_respond", "on_time_rate"])


def monthly_bars(report: dict) -> list[dict]:
    """Rows for the volume chart: received and closed per month, as counts and as
    a share of the busiest month."""
    received, closed = report["received_per_month"], report["closed_per_month"]
    peak = max(received + closed) or 1
    names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return [{"month": names[i], "received": received[i], "closed": closed[i],
             "received_percent": round(100 * received[i] / peak),
             "closed_percent": round(100 * closed[i] / peak)} for i in range(12)]


def grouped(report: dict) -> list:
    return [dict(key=k, **v) for k, v in report["groups"].items()]

