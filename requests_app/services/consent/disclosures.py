"""The disclosure log: who received a person's data, when, and whether they should have.

A SQL source's dataset map may mark a table as a log of disclosures to third
parties (`disclosures: {third_party: col, at: col, categories: col, purpose: col}`).
A periodic scan reads new rows of each such table in key order (a page at a time,
resuming where it stopped), ties each row to the person's email through the map,
and stores a `Disclosure` with a keyed hash of the email, never the email.

Each disclosure is judged when it is stored, against the ledger as it stood at the
moment of the disclosure: for every purpose that governs the recipient, a
disclosure while the purpose was not allowed (an opt-in never granted, or an
opt-out withdrawn) is a violation. The ledger is append-only and its times are the
times of recording, so the judgement never changes later.
"""

import datetime
import logging
import re

import sqlalchemy as sa
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.models import (
    Actor,
    DataSource,
    Disclosure,
    ConsentRecord,
    DisclosureScan,
    Purpose,
    ThirdParty,
)
from requests_app.services.consent import ledger as consent
from requests_app.services.audit.events import record_event
from requests_app.sources.base import SourceError
from requests_app.sources.datamap import disclosure_path

log = logging.getLogger(__name__)


def disclosure_tables(source: DataSource):
    from requests_app.sources.sql.connector import SqlConnector

    connector = SqlConnector(source)
    return connector, [t for t in connector.map.tables.values() if t.disclosures]


def scan_all() -> dict:
    """Periodic: scan every enabled SQL source that has a disclosure table. A source
    that fails is named in the result (None) and the others are still scanned."""
    counts = {}
    for source in DataSource.objects.filter(enabled=True, kind="sql"):
        try:
            counts[source.name] = scan_source(source)
        except Exception as exc:  # one broken source must not stop the others
            log.warning("disclosure scan of source %s failed: %s", source.pk,
                        exc if isinstance(exc, SourceError) else type(exc).__name__)
            counts[source.name] = None
    return counts


def scan_source(source: DataSource, *, batch: int | None = None) -> int:
    """Read the source's disclosure tables from where the last scan stopped."""
    connector, tables = disclosure_tables(source)
    batch = batch or settings.DISCLOSURE_SCAN_BATCH
    found = 0
    for table in tables:
        while True:
            added, more = _scan_page(source, connector, table, batch)
            found += added
            if not more:
                break
    return found


def _scan_page(source, connector, table, batch: int) -> tuple[int, bool]:
    scan, _ = DisclosureScan.objects.get_or_create(source=source, table=table.name)
    with consent.subject_lock(f"disclosure-scan:{scan.pk}"):
        scan.refresh_from_db()  # where the scan that held the lock left it
        return _read_page(source, connector, table, batch, scan)


def _read_page(source, connector, table, batch, scan) -> tuple[int, bool]:
    rows = _page_rows(source, connector, table, batch, scan)
    if not rows:
        DisclosureScan.objects.filter(pk=scan.pk).update(scanned_at=timezone.now())
        return 0, False
    # Where this page ends, whatever is kept of it.
    last_key, more = _json_key(rows[-1].key), len(rows) == batch
    made = _judged_disclosures(source, table, rows)
    with transaction.atomic():
        Disclosure.objects.bulk_create(made, ignore_conflicts=True)
        DisclosureScan.objects.filter(pk=scan.pk).update(
            last_key=last_key, scanned_at=timezone.now())
        violations = [d for d in made if d.violated_purpose is not None]
        if violations:
            record_event("disclosure.violations_found", actor=Actor.system(), data={
                "source": source.name, "table": table.name, "count": len(violations),
                "purposes": sorted({d.violated_purpose.slug for d in violations})})
    return len(made), more


def _page_rows(source, connector, table, batch, scan) -> list:
    """The table's next `batch` rows after the scan's last key, in key order, each
    with the email of the person it belongs to (None once they are erased)."""
    own_column, person_table, key_column, email_column = disclosure_path(
        connector.map.tables, table)
    spec = table.disclosures
    try:
        with connector.engine.connect() as conn:
            reflected = connector.tables(conn)
            d, p = reflected[table.name], reflected[person_table]
            columns = [d.c[table.primary_key].label("key"),
                       d.c[spec["third_party"]].label("third_party"),
                       d.c[spec["at"]].label("at")]
            for optional in ("categories", "purpose"):
                if optional in spec:
                    columns.append(d.c[spec[optional]].label(optional))
            if person_table == table.name:
                query = sa.select(*columns, d.c[email_column].label("email"))
            else:
                query = sa.select(*columns, p.c[email_column].label("email")).select_from(
                    d.outerjoin(p, d.c[own_column] == p.c[key_column]))
            if scan.last_key is not None:
                query = query.where(d.c[table.primary_key] > scan.last_key)
            return conn.execute(query.order_by(d.c[table.primary_key]).limit(batch)).all()
    except (sa.exc.SQLAlchemyError, KeyError, ValueError) as exc:
        raise SourceError(f"{source.name}: {type(exc).__name__} reading {table.name} "
                          "(check the map's disclosure columns)") from None


def _judged_disclosures(source, table, rows) -> list:
    """A Disclosure for each new row of the page, judged against the ledger."""
    parties = list(ThirdParty.objects.all())
    governing = _governing_purposes()
    known = set(Disclosure.objects.filter(source=source, table=table.name, row_key__in=[
        str(row.key) for row in rows]).values_list("row_key", flat=True))
    # A row whose person is gone (erased: no email) or whose time cannot be read
    # is skipped; it cannot be tied to anyone.
    usable = []
    for row in rows:
        moment = _aware(row.at)
        if row.email and moment is not None and str(row.key) not in known:
            usable.append((row, moment))
    subjects = {row.email: consent.person(row.email) for row, _ in usable}
    ledger = Ledger(subjects.values(), {p for ps in governing.values() for p in ps})
    made = []
    for row, disclosed_at in usable:
        party = match_third_party(str(row.third_party or ""), parties)
        subject = subjects[row.email]
        violated, why = judge(subject, party, disclosed_at, governing, ledger)
        made.append(Disclosure(
            source=source, table=table.name, row_key=str(row.key), subject=subject,
            third_party=party, third_party_name=str(row.third_party or "")[:200],
            categories=_categories(getattr(row, "categories", None)),
            purpose_text=str(getattr(row, "purpose", "") or "")[:300],
            disclosed_at=disclosed_at, violated_purpose=violated, violation=why))
    return made


def match_third_party(name: str, parties) -> ThirdParty | None:
    """The registered third party a source names: the same name, or the registered
    name as whole words within the source's text ("Channel partner: Northwind
    Resellers"), the longest such name first."""
    wanted = name.strip().casefold()
    for party in parties:
        if party.name.casefold() == wanted:
            return party
    for party in sorted(parties, key=lambda p: -len(p.name)):
        if re.search(rf"(?<!\w){re.escape(party.name.casefold())}(?!\w)", wanted):
            return party
    return None


def _governing_purposes() -> dict[int, list[Purpose]]:
    by_party: dict[int, list[Purpose]] = {}
    for purpose in Purpose.objects.filter(active=True).prefetch_related("third_parties"):
        for party in purpose.third_parties.all():
            by_party.setdefault(party.pk, []).append(purpose)
    return by_party


class Ledger:
    """The ledger records of many subjects for some purposes, read in one query, to
    answer "was it allowed at that moment?" for a page of disclosures."""

    def __init__(self, subjects, purposes):
        self.records: dict[tuple, list] = {}
        for entry in (ConsentRecord.objects.filter(subject__in=set(subjects),
                                                   purpose__in=list(purposes))
                      .order_by("at", "id").values_list("subject", "purpose_id", "at",
                                                        "action")):
            self.records.setdefault(entry[:2], []).append((entry[2], entry[3]))

    def allowed_at(self, subject: str, purpose: Purpose, moment: datetime.datetime) -> bool:
        history = self.records.get((subject, purpose.pk), ())
        return consent.allowed(purpose, consent.action_at(history, moment))


def judge(subject: str, party: ThirdParty | None, at: datetime.datetime,
          governing: dict, ledger: Ledger) -> tuple[Purpose | None, str]:
    """The first purpose governing the recipient that did not allow the disclosure."""
    if party is None:
        return None, ""
    for purpose in governing.get(party.pk, []):
        if not ledger.allowed_at(subject, purpose, at):
            if purpose.is_opt_in:
                why = _("disclosed without consent to the opt-in purpose “%(p)s”")
            else:
                why = _("disclosed after the person opted out of “%(p)s”")
            return purpose, why % {"p": purpose.name}
    return None, ""


def for_person(email: str):
    """A person's disclosures, for Right to Know answers: recipient, categories,
    stated purpose, first and last date."""
    summary: dict[tuple, dict] = {}
    for d in Disclosure.objects.filter(subject=consent.person(email)).order_by("disclosed_at"):
        key = (d.third_party.name if d.third_party else d.third_party_name, d.purpose_text)
        entry = summary.setdefault(key, {"recipient": key[0], "purpose": d.purpose_text,
                                         "categories": set(), "first": d.disclosed_at,
                                         "last": d.disclosed_at, "count": 0})
        entry["categories"].update(d.categories)
        entry["last"] = d.disclosed_at
        entry["count"] += 1
    return [{**e, "categories": sorted(e["categories"])} for e in summary.values()]


def _categories(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _aware(value) -> datetime.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime.combine(value, datetime.time())
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.timezone.utc)
    return value


def _json_key(value):
    return value if isinstance(value, (int, str)) else str(value)

