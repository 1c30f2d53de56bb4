"""Packages for the consumer, written as a stream into an encrypted file: no package
is ever whole in memory, and none is ever on disk in clear.

- access (and know, specific pieces): report.html, grouped by data category and
  source, and data.json;
- portability: one JSON and one CSV file per source and table, and manifest.json
  (record counts, schema, SHA-256 of each file);
- know (categories): report.html and categories.json: the categories found about
  this person in the sources that matched them (answers.py), no data;
- deletion: report.html and deletion.json: what was deleted, what was kept and why.

Values of the categories the request's jurisdiction holds back were replaced
when they were gathered (sources/records.py), so no package can hold them; each
access and portability package says which kinds are held, where, and why, under
which jurisdiction's rule (rules/, JurisdictionRules.withheld).
"""

import csv
import datetime
import hashlib
import io
import json
from pathlib import Path

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import escape

from requests_app import csvcells
from requests_app.files import CHUNK_SIZE, EncryptedWriter, iter_decrypted
from requests_app.models import Package, SourceRun
from requests_app.models.sources import origin_labels
from requests_app.rules import WITHHOLDINGS, deletion_law
from requests_app.services.fulfilment import answers, claims
from requests_app.services.fulfilment.claims import BuildingElsewhere
from requests_app.sources import categories as cats
from requests_app.sources.base import requested_period
from requests_app.sources.records import read_records, run_dir
from requests_app.zipfiles import Deflated, stream_zip

Action, RunState = SourceRun.Action, SourceRun.State


def kind_for(request) -> str | None:
    code = request.request_type
    if code == "access":
        return Package.Kind.ACCESS
    if code == "portability":
        return Package.Kind.PORTABILITY
    if code == "know_categories":
        return Package.Kind.CATEGORIES
    if request.type_rules.is_deletion and request.erasure_approved_at:
        return Package.Kind.DELETION
    return None


def build(request) -> Package | None:
    """Build the request's package, once (a second call returns the first): its row
    is claimed first and the file written after (claims.py). Raises
    BuildingElsewhere while another worker builds it."""
    kind = kind_for(request)
    if kind is None:
        return None
    package, fresh = claims.claim(request, kind)
    if not fresh:
        return package
    members = {
        Package.Kind.ACCESS: _access_members,
        Package.Kind.PORTABILITY: _portability_members,
        Package.Kind.CATEGORIES: _categories_members,
        Package.Kind.DELETION: _deletion_members,
    }[kind](request)
    path = Path(settings.MEDIA_ROOT) / package.path
    now = datetime.datetime.now(datetime.timezone.utc)
    pulse = claims.pulse(package.pk)
    pulse.start()
    try:
        with EncryptedWriter(path) as out:
            for chunk in stream_zip(members, now):
                out.write(chunk)
                if pulse.lost.is_set():  # taken over, or discarded by a retry
                    raise BuildingElsewhere(package.path)
    except BaseException:
        pulse.stop()
        claims.release(package.pk)
        raise
    pulse.stop()
    if not claims.finish(package.pk, out.plaintext_size, out.sha256):
        path.unlink(missing_ok=True)  # the claim went while the file was written
        raise BuildingElsewhere(package.path)
    package.refresh_from_db()
    return package


def discard(package: Package) -> None:
    """Delete a package's file and mark it purged (the row stays, for the record)."""
    (Path(settings.MEDIA_ROOT) / package.path).unlink(missing_ok=True)
    Package.objects.filter(pk=package.pk).update(purged_at=timezone.now())


def discard_run_files(request) -> None:
    """Once the package is built, the gathered records it was built from go: the
    runs' files, and the records sealed into their results (RecordSink)."""
    import shutil

    from requests_app.sources.records import run_dir

    for run in SourceRun.objects.filter(request=request):
        shutil.rmtree(run_dir(run), ignore_errors=True)
        result = run.result if isinstance(run.result, dict) else {}
        collections = result.get("collections")
        if isinstance(collections, dict) and any(
                isinstance(info, dict) and "sealed" in info for info in collections.values()):
            kept = {name: ({k: v for k, v in info.items() if k != "sealed"}
                           if isinstance(info, dict) else info)
                    for name, info in collections.items()}
            SourceRun.objects.filter(pk=run.pk).update(result={**result, "collections": kept})


def _runs(request, action=Action.GATHER):
    return (SourceRun.objects.filter(request=request, action=action, state=RunState.DONE)
            .select_related("source").order_by("source__name"))


def _collections(runs):
    """(run, collection name, info) for every collection gathered in `runs` (the
    request's done gathering runs, _runs(request), read once per package)."""
    for run in runs:
        for name, info in (run.result.get("collections") or {}).items():
            yield run, name, info


def _encode(text_chunks, size=CHUNK_SIZE):
    """Text pieces (often one per record) as UTF-8 in blocks of about `size` bytes:
    compressing and encrypting a few large blocks costs far less than many tiny."""
    buffer, length = [], 0
    for text in text_chunks:
        buffer.append(text)
        length += len(text)
        if length >= size:
            yield "".join(buffer).encode("utf-8")
            buffer, length = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")


def _deflated(run, info, key) -> Deflated:
    """A member deflated while it was gathered, as it is on disk (decrypted only)."""
    meta = info["deflated"][key]
    return Deflated(iter_decrypted(run_dir(run) / info[key]), meta["crc32"], meta["bytes"],
                    meta["compressed"])


def _json_array(records):
    yield "["
    for i, record in enumerate(records):
        yield ("," if i else "") + "\n" + json.dumps(record, ensure_ascii=False, default=str)
    yield "\n]\n"


# --- access ------------------------------------------------------------------


def _registry_summary(runs) -> list[dict]:
    sources = {run.source for run in runs} or set()
    return [
        {"source": s.name, "purposes": s.purposes, "retention": s.retention,
         "collected_from": origin_labels(s.collected_from),
         "third_parties": [f"{t.name} ({t.get_kind_display()})" for t in s.third_parties.all()]}
        for s in sorted(sources, key=lambda s: s.name)
    ]


def withheld(request, runs) -> dict:
    """What the answer held back, per data category: where it is held (source:
    table.column) and why, as recorded when it was gathered (the sink's
    `withheld`: {column: rules.Withholding code}), under the request's jurisdiction."""
    found: dict[str, dict] = {}
    for run, name, info in _collections(runs):
        for column, code in (info.get("withheld") or {}).items():
            category = info["columns"].get(column, "")
            rule = WITHHOLDINGS.get(code)
            entry = found.setdefault(category, {
                "category": category, "name": cats.label(category), "rule": code,
                "reason": str(rule.basis) if rule else code, "held_in": []})
            entry["held_in"].append(f"{run.source.name}: {name}.{column}")
    return {"jurisdiction": request.jurisdiction,
            "jurisdiction_name": str(request.get_jurisdiction_display()),
            "categories": [found[k] for k in sorted(found, key=cats.label)]}


def _access_members(request):
    # The runs and the registry's summary are read once, for both members.
    runs = list(_runs(request))
    summary, held = _registry_summary(runs), withheld(request, runs)
    facts = {"unfiltered": answers.unfiltered_sources(runs, requested_period(request)),
             "gdpr": answers.gdpr_facts(request, runs)}
    yield "report.html", _encode(_access_report(request, runs, summary, held, facts))
    yield "data.json", _encode(_access_json(request, runs, summary, held, facts))


def _access_report(request, runs, summary, held, facts):
    yield render_to_string("packages/report_head.html", {
        "request": request, "title": "Your personal information",
        "summary": summary, "period": requested_period(request), "withheld": held,
        "unfiltered": facts["unfiltered"], "gdpr": facts["gdpr"]})
    collections = list(_collections(runs))
    by_category: dict[str, list] = {}
    for run, name, info in collections:
        for column, category in info["columns"].items():
            by_category.setdefault(category, []).append((run, name, info, column))
    reasons = {c["category"]: c["reason"] for c in held["categories"]}
    for category in sorted(by_category, key=cats.label):
        yield f"<section><h2>{escape(cats.label(category))} <small>({escape(category)})</small></h2>"
        if category in reasons:
            yield ("<p>We hold information of this kind. It is not shown: "
                   f"{escape(reasons[category])}</p></section>")
            continue
        groups: dict[tuple, tuple] = {}
        for run, name, info, column in by_category[category]:
            groups.setdefault((run.pk, name), (run, name, info, []))[3].append(column)
        for run, name, info, columns in groups.values():
            yield (f"<h3>{escape(run.source.name)}: {escape(name)}</h3>"
                   "<table><thead><tr>"
                   + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr></thead><tbody>")
            for record in read_records(run, info):
                yield "<tr>" + "".join(
                    f"<td>{escape(_text(record.get(c)))}</td>" for c in columns) + "</tr>"
            yield "</tbody></table>"
        yield "</section>"
    yield "</main></body></html>\n"


def _period_entry(request) -> dict:
    """{"period": {"start", "end"}} when the request asked for one (then dated
    records collected outside it were left out), else nothing."""
    period = requested_period(request)
    if not period:
        return {}
    return {"period": {"start": period[0].isoformat(), "end": period[1].isoformat()}}


def _text(value) -> str:
    return "" if value is None else str(value)


def _access_json(request, runs, summary, held, facts):
    gdpr = {"gdpr": facts["gdpr"]} if facts["gdpr"] else {}
    yield json.dumps({"request": request.reference,
                      "generated_at": timezone.now().isoformat(),
                      **_period_entry(request),
                      "could_not_filter_by_date": facts["unfiltered"],
                      "sources": summary, "withheld": held, **gdpr})[:-1]
    yield ', "records": {'
    first = True
    for run, name, info in _collections(runs):
        key = json.dumps(f"{run.source.name}/{name}")
        yield ("" if first else ",") + f"\n{key}: "
        first = False
        yield from _json_array(read_records(run, info))
    yield "}}\n"


# --- portability ----------------------------------------------------------------


def _portability_members(request):
    runs = list(_runs(request))
    manifest = {"request": request.reference, "generated_at": timezone.now().isoformat(),
                "withheld": withheld(request, runs), "files": []}
    used = set()
    for run, name, info in list(_collections(runs)):
        base = f"{_safe(run.source.name)}/{_safe(name)}"
        while base in used:  # "a b" and "a_b" must not overwrite each other
            base += "_"
        used.add(base)
        schema = info["columns"]
        if info.get("deflated"):  # formatted by the database, deflated when gathered
            for suffix, key in (("json", "file"), ("csv", "csv")):
                meta = info["deflated"][key]
                manifest["files"].append({
                    "name": f"{base}.{suffix}", "records": info["count"], "schema": schema,
                    "sha256": meta["sha256"], "bytes": meta["bytes"]})
                yield f"{base}.{suffix}", _deflated(run, info, key)
            continue
        bodies = (("json", _encode(_json_array(read_records(run, info)))),
                  ("csv", _encode(_csv(read_records(run, info), list(schema)))))
        for suffix, body in bodies:
            entry = {"name": f"{base}.{suffix}", "records": info["count"], "schema": schema}
            manifest["files"].append(entry)
            yield entry["name"], _hashed(body, entry)
    yield "manifest.json", _encode([json.dumps(manifest, indent=2, ensure_ascii=False)])


def _hashed(chunks, entry: dict):
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    entry["sha256"] = digest.hexdigest()
    entry["bytes"] = size


def _csv(records, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for i, record in enumerate(records, 1):
        writer.writerow(csvcells.row(record))  # formulas neutralised; JSON stays exact
        if i % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _safe(name: str) -> str:
    """A file name from a source or table name: no path separators, no leading dots."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return cleaned or "unnamed"


# --- know (categories) --------------------------------------------------------


def _categories_members(request):
    runs = list(_runs(request).prefetch_related("source__third_parties"))
    period = requested_period(request)
    data = {
        "request": request.reference,
        **_period_entry(request),
        "could_not_filter_by_date": answers.unfiltered_sources(runs, period),
        **answers.know_answer(runs),
        **_disclosed_to(request),
    }
    html = render_to_string("packages/categories.html", {"request": request, "data": data,
                                                         "period": period})
    yield "report.html", _encode([html])
    yield "categories.json", _encode([json.dumps(data, indent=2, ensure_ascii=False)])


def _disclosed_to(request) -> dict:
    """Whom this person's information went to, from the sources' disclosure logs
    (read up to now first), with the categories and the stated purpose; and the
    sources whose log could not be read now (the answer says it may be incomplete)."""
    from requests_app.services.consent import disclosures

    scanned = disclosures.scan_all()
    return {
        "disclosed_to": [
            {"recipient": d["recipient"], "purpose": d["purpose"],
             "categories": [{"key": c, "name": cats.label(c)} for c in d["categories"]],
             "first": d["first"].date().isoformat(), "last": d["last"].date().isoformat(),
             "times": d["count"]}
            # Disclosure logs name people by email: none to look up without one.
            for d in (disclosures.for_person(request.identity.email)
                      if request.identity.email else [])],
        "disclosure_logs_unread": sorted(name for name, n in scanned.items() if n is None),
    }


# --- deletion -------------------------------------------------------------------


def _done(plan: dict, result: dict) -> dict:
    """Per table, what the erasure did ({"action", "rows"}, and `stays_linked`), with
    the dry run's reasons (legal basis, rows kept as shared, columns): the report
    says what was done, not what was planned. A run without `done` (an older one,
    or a source that reports no tables) shows its plan."""
    done = result.get("done")
    if done is None:
        return plan.get("tables", {})
    tables = {}
    for name, planned in plan.get("tables", {}).items():
        reasons = {k: v for k, v in planned.items() if k not in ("rows", "action",
                                                                  "stays_linked")}
        tables[name] = reasons | done.get(name, {"action": planned.get("action"), "rows": 0})
    for name, did in done.items():
        tables.setdefault(name, did)
    return tables


def deletion_summary(request) -> dict:
    plans = {r.source_id: r.result for r in _runs(request, Action.PLAN_ERASURE)}
    sources = []
    for run in _runs(request, Action.ERASE):
        plan = plans.get(run.source_id, {})
        entry = {"source": run.source.name, "tables": _done(plan, run.result)}
        if run.source.kind == "manual":
            entry["outcome"] = run.result.get("outcome", "")
            entry["reason"] = run.result.get("reason", "")
        elif run.source.kind == "http":
            entry["outcome"] = "done"
            entry["deleted"] = run.result.get("deleted")
            entry["reason"] = plan.get("legal_basis", "")
        sources.append(entry)
    notices = third_party_lines(request)
    return {"request": request.reference, "law": deletion_law(request.jurisdiction),
            "sources": sources, "third_parties": notices}


def third_party_lines(request) -> list[dict]:
    """Of each third party told of a deletion, where it stands now (the deletion
    report holds these as at its date; the status page shows them live)."""
    return [_third_party_line(n) for n in request.third_party_notices.select_related(
        "third_party").order_by("third_party__name", "pk")]


def _third_party_line(notice) -> dict:
    """Of one third party: whether it was told (or is being told now: the notice is
    sent right after the deletion commits; a party with no address is told by staff)
    and whether it confirmed, never the staff's queue label."""
    State = notice.State
    told = notice.state != State.PENDING
    return {"third_party": notice.third_party.name,
            "told": told, "told_on": notice.sent_at.date() if notice.sent_at else None,
            "told_by": ("" if told else "email" if notice.third_party.contact_email
                        else "staff"),
            "confirmed": notice.state == State.CONFIRMED,
            "confirmed_on": notice.confirmed_at.date() if notice.confirmed_at else None,
            "could_not": notice.state == State.IMPOSSIBLE}


def _deletion_members(request):
    data = deletion_summary(request)
    html = render_to_string("packages/deletion.html", {"request": request, "data": data})
    yield "report.html", _encode([html])
    yield "deletion.json", _encode([json.dumps(data, indent=2, ensure_ascii=False,
                                               default=str)])
