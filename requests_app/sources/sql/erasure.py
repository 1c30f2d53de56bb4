"""Erasure: planning it (what would be deleted, updated or kept), doing it, and
checking afterwards that nothing is left.

It works from a list of primary keys taken when it starts and kept (with a
progress cursor) so that a worker killed half-way resumes where it stopped, each
batch in its own short transaction. Leaf tables are not read: they are deleted
on the server, set-based, from the values that find the person's rows in them.

`run_work(work, read_only=False)` is the connector's: work(conn, tables) on a
pooled connection, database errors turned into SourceErrors."""

import contextlib
import hashlib
import hmac
import json
import time

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy import exc as sa_exc

from requests_app.files import open_text_reader, open_text_writer
from requests_app.sources.base import Outcome, SourceError
from requests_app.sources.records import run_dir
from requests_app.sources.sql import constraints, driver
from requests_app.sources.sql.actions import _erase_batch, _erased
from requests_app.sources.sql.driver import _chunks, _delete_some, _ordered
from requests_app.sources.sql.gathering import seen_notes
from requests_app.sources.sql.keep import by_the_database, cleared_columns, erasable
from requests_app.sources.sql.keys import key_columns, key_in, row_key
from requests_app.sources.sql.shape import MapShape
from requests_app.sources.sql.traversal import leaf_where, traverse

ERASE_BATCH = 10_000  # rows per erasure transaction, by primary key
LEAF_BATCH = 100_000  # rows in the first set-based DELETE of a leaf table (its own transaction)
LEAF_BATCH_MAX = 800_000  # ... and at most this many in one, however quick they are
LEAF_BATCH_SECONDS = 0.25  # a leaf's batch grows while it takes under half this, shrinks above
PROGRESS_EVERY = 0.5  # seconds between two progress records of an erasure


def _keys(conn, tables, shape: MapShape, identity, seen=None,
          source: str = "") -> tuple[dict, dict, dict, dict]:
    """(primary keys per table, shared rows kept per table, leaves, notes): leaf
    tables erasure deletes set-based are not read, only the values that find the
    person's rows in them ({table: {column: [values]}}). `seen`, when given, takes
    what the plan says besides (gathering.seen_notes). Notes include what the
    database itself will do (keep.by_the_database), which may refuse the erasure."""
    trav = traverse(conn, tables, shape, identity, lambda n, r: None,
                    defer=shape.deletable_leaves(tables))
    fks = constraints.foreign_keys(conn)
    keys, kept, notes = erasable(conn, tables, shape, trav, fks)
    for name, said in by_the_database(conn, tables, shape, keys, fks, source).items():
        notes[name] = notes.get(name, {}) | said
    leaves = {name: {column: _ordered(values) for column, values in conditions.items()}
              for name, conditions in trav.leaves.items()}
    if seen is not None:
        seen.update(seen_notes(shape, {n: len(k) for n, k in trav.withheld.items() if k},
                               trav.unsupplied))
    return keys, kept, leaves, notes


def _digest(conn, tables, shape: MapShape, map_version: str, keys, leaves) -> str:
    """The plan's digest: the map's version, each table's actions, the keys of the
    rows it acts on and, for a leaf (deleted set-based from the values that find
    the person's rows in it: those values are in the digest), how many rows those
    values find now, under a keyed hash (a key alone may be guessable). Approval
    binds to it; erasure recomputes it. A leaf's rows are counted, not listed: a
    leaf may hold 200,000 of the person's rows, and every row the values find is
    the person's, so what can change beyond the plan is how many there are."""
    digest = hmac.new(settings.IDENTITY_HASH_KEY.encode(), digestmod=hashlib.sha256)
    actions = {n: [s.erase, sorted((c.name, c.erase) for c in s.columns.values())]
               for n, s in shape.map.tables.items()}
    counts = {name: conn.execute(sa.select(sa.func.count()).select_from(tables[name])
                                 .where(leaf_where(conn, tables[name], leaves[name])))
              .scalar() for name in sorted(leaves)}
    digest.update(json.dumps([map_version, actions, keys, leaves, counts], sort_keys=True,
                             default=str).encode())
    return digest.hexdigest()


def plan_erasure(shape: MapShape, run_work, identity, *, source: str = "",
                 map_version: str = "") -> Outcome:
    """The dry run. It takes the keys, then executes the real erasure statements in
    one transaction that is rolled back: a constraint the erasure would break fails
    here, before approval, in words; the counts are the database's own.

    Its result, which the desk shows and the deletion report explains:
    {"tables": {table: {"action": delete|update|retain, "rows": n,
                        "columns": {column: action} (update),
                        "legal_basis": "..." (where given),
                        "kept_shared": n, "shared_with": [tables that also use them],
                        "cleared_references": [columns set to NULL],
                        "stays_linked": [{"column", "to", "rows", "reason"}],
                        "by_the_database": [{"table", "column", "constraint",
                                             "on_delete", "rows"}]}},
     "proven": True, "map_version": sha256 of the map, "digest": _digest}"""
    seen: dict = {}

    def work(conn, tables):
        keys, kept, leaves, notes = _keys(conn, tables, shape, identity, seen, source)
        digest = _digest(conn, tables, shape, map_version, keys, leaves)
        conn.rollback()  # the reads' transaction: the statements get one of their own
        try:
            with constraints.enforcing(conn), conn.begin() as trans:
                counts = _apply(conn, tables, shape, keys, leaves, _Progress({}, None),
                                contextlib.nullcontext, source, dry_run=True)
                trans.rollback()
        except _Failed as failed:
            raise failed.in_words(conn) from None
        counts |= {n: len(keys.get(n, ())) for n, s in shape.map.tables.items()
                   if s.erase == "retain"}
        return counts, kept, notes, digest, cleared_columns(shape, tables)

    counts, kept, notes, digest, cleared = run_work(work)
    plan = {}
    for name, spec in shape.map.tables.items():
        count = counts.get(name, 0)
        if not count and not kept.get(name):
            continue
        entry = {"rows": count, "action": spec.erase}
        if kept.get(name):
            entry["kept_shared"] = kept[name]  # still used by other people's records
        if spec.erase == "update":
            entry["columns"] = {c.name: c.erase for c in spec.columns.values()}
        if spec.legal_basis:
            entry["legal_basis"] = spec.legal_basis
        if cleared.get(name):
            entry["cleared_references"] = list(cleared[name])
        plan[name] = entry | notes.get(name, {})
    deletable = sum(p["rows"] for p in plan.values() if p["action"] != "retain")
    return Outcome(records=deletable, result={"tables": plan, **seen, "proven": True,
                                              "map_version": map_version, "digest": digest})



def _apply(conn, tables, shape: MapShape, keys, leaves, cursor, batch, source,
           dry_run=False) -> dict:
    """Run the erasure's statements, table by table in erase order, each batch in
    `batch()` (its own transaction; nothing inside the dry run's one). Counts of
    rows the database deleted or changed per table. A database error stops it,
    in words (constraints.in_words), saying what was applied before it."""
    cleared, done = cleared_columns(shape, tables), {}
    for name in shape.erase_order():
        spec, table = shape.map.tables[name], tables[name]
        try:
            if name in leaves:
                done[name] = _delete_leaf(conn, name, table, spec, leaves[name], cursor, batch)
            else:
                done[name] = _erase_keys(conn, name, table, spec, keys.get(name, []),
                                         cleared.get(name, []), cursor, batch)
        except sa_exc.DBAPIError as exc:
            if not dry_run:
                cursor.record(force=True)
            applied = ("nothing was changed (the dry run was rolled back)" if dry_run
                       else "applied before the failure: " + _applied(shape, cleared,
                                                                      cursor.done))
            doing = spec.erase if spec.erase != "retain" else "clearing references"
            raise _Failed(exc, f"{source}: {{}}; {applied}", name, doing) from None
    return done


class _Failed(Exception):
    """A statement of the erasure failed: put into words (`in_words`) once its
    transaction has ended, when the database's foreign keys can be read."""

    def __init__(self, exc, template, table, doing):
        super().__init__(type(exc).__name__)
        self.exc, self.template, self.table, self.doing = exc, template, table, doing

    def in_words(self, conn) -> SourceError:
        try:
            if conn.in_transaction():
                conn.rollback()
            fks = constraints.foreign_keys(conn)
        except sa_exc.DBAPIError:
            fks = []
        kind = driver.error_kind(self.exc) or SourceError
        return kind(self.template.format(
            constraints.in_words(self.exc, self.table, self.doing, fks)))


def _applied(shape: MapShape, cleared, progress) -> str:
    """The batches an erasure committed, in words: "notes delete 2 rows, ..."."""
    parts = []
    for name in shape.erase_order():
        if progress.get(name):
            action = shape.map.tables[name].erase
            if action == "retain":
                action = "clear " + ", ".join(cleared.get(name, []))
            parts.append(f"{name} {action} {progress[name]} rows")
    return ", ".join(parts) or "nothing"


# --- erasing -------------------------------------------------------------------------


def _stored_keys(path) -> tuple[dict, dict, dict]:
    """(keys, leaves, notes) from an erasure's key file (older files hold keys only)."""
    if not path.exists():
        return {}, {}, {}
    with open_text_reader(path) as f:
        stored = json.load(f)
    if stored.get("version") in (2, 3):
        return stored["keys"], stored["leaves"], stored.get("notes", {})
    return stored, {}, {}


def _keys_of_run(shape: MapShape, run_work, run, identity, approved: str | None,
                 map_version: str, source: str) -> tuple[dict, dict, dict]:
    """(keys, leaves, notes) the run's erasure works from: taken when it first
    started and kept in a file, so that a resumed attempt works from the same list.
    When first taken they must be the approved plan's (`approved`: its digest)."""
    keys_path = run_dir(run) / "erase-keys.json.enc"
    if keys_path.exists():
        return _stored_keys(keys_path)

    def work(conn, tables):
        keys, _kept, leaves, notes = _keys(conn, tables, shape, identity, source=source)
        if approved and _digest(conn, tables, shape, map_version, keys, leaves) != approved:
            raise SourceError(
                f"{source}: the rows to erase are not those of the approved dry run (the "
                "person's data changed since): nothing was erased; run a new dry run and "
                "approve it")
        return keys, leaves, notes

    keys, leaves, notes = run_work(work, read_only=True)
    with open_text_writer(keys_path) as f:
        json.dump({"version": 3, "keys": keys, "leaves": leaves, "notes": notes}, f,
                  default=str)
    return keys, leaves, notes


class _Progress:
    """The progress cursor {table: rows done}, recorded through on_batch (which
    also beats the heart and checks the attempt's fence) at most every
    PROGRESS_EVERY seconds, and when forced."""

    def __init__(self, progress: dict, on_batch):
        self.done, self.on_batch, self.last = progress, on_batch, time.monotonic()

    def record(self, force=False) -> None:
        if self.on_batch and (force or time.monotonic() - self.last >= PROGRESS_EVERY):
            self.on_batch(self.done)
            self.last = time.monotonic()


def erase(shape: MapShape, run_work, run, identity, on_batch=None, *, plan=None,
          source: str = "", map_version: str = "") -> Outcome:
    """Erase from the keys (and leaf values) taken when the run first started,
    kept in a file: a resumed attempt works from the same list. With an approved
    `plan` ({"approved_digest", "map_version", ...}), only that plan: a map edited
    since its dry run, or rows to erase that differ from it, stop the run before
    anything is written. Rows found by primary key go ERASE_BATCH per transaction;
    leaf tables (see MapShape.leaves) are deleted on the server, LEAF_BATCH rows per
    statement, each in its own short transaction, until none is left (so a resumed
    attempt simply goes on). The progress cursor is recorded (and the attempt's
    fence checked) at most every PROGRESS_EVERY seconds, at the end and on a
    failure: an attempt that resumes from an older cursor redoes a few batches,
    which changes nothing. The result's `done` is what was done, per table:
    {"action", "rows"} (and `stays_linked`), for the consumer's report."""
    plan = plan or {}
    approved = plan.get("approved_digest")
    if approved and plan.get("map_version") != map_version:
        raise SourceError(f"{source}: the dataset map was edited since the dry run that was "
                          "approved: nothing was erased; run a new dry run and approve it")
    progress = dict(run.result.get("progress", {}))
    keys, leaves, notes = _keys_of_run(shape, run_work, run, identity, approved, map_version,
                                       source)
    cursor = _Progress(progress, on_batch)

    def work(conn, tables):
        conn.commit()  # end the transaction reflection began: each batch has its own
        constraints.preflight(conn, tables, shape, cleared_columns(shape, tables),
                              {n for n, k in keys.items() if k} | set(leaves), source)
        try:
            with constraints.enforcing(conn):
                _apply(conn, tables, shape, keys, leaves, cursor, conn.begin, source)
        except _Failed as failed:
            raise failed.in_words(conn) from None
        cursor.record(force=True)
        return {name: (len(keys.get(name, [])) if shape.map.tables[name].erase != "retain"
                       else 0) if name not in leaves else progress.get(name, 0)
                for name in shape.erase_order()}

    counts = run_work(work)
    done = {}
    for name in shape.erase_order():
        action = shape.map.tables[name].erase
        rows = progress.get(name, 0) if action != "retain" else len(keys.get(name, []))
        entry = {"action": action, "rows": rows} | notes.get(name, {})
        if rows or notes.get(name):
            done[name] = {k: v for k, v in entry.items() if k != "shared_with"}
    return Outcome(records=sum(counts.values()),
                   result={"tables": counts, "progress": progress, "done": done})


def _delete_leaf(conn, name, table, spec, conditions, cursor: _Progress, batch) -> int:
    """Delete a leaf's rows that the values find, in batches of one transaction
    each: LEAF_BATCH rows first, then twice as many while a batch takes under half
    of LEAF_BATCH_SECONDS, half as many when one takes longer, so that a big leaf
    goes in few statements and no lock is held long (the target is 1 s)."""
    pk = key_columns(spec, table)[0]  # a leaf refers to a unique column: one-column keys
    where = leaf_where(conn, table, conditions)
    progress, size, total = cursor.done, LEAF_BATCH, 0
    while True:
        statement = _delete_some(conn, table, pk, where, size,
                                 order_by=table.c[next(iter(conditions))])
        started = time.monotonic()
        with batch():
            deleted = conn.execute(statement).rowcount
        took = time.monotonic() - started
        progress[name] = progress.get(name, 0) + deleted
        total += deleted
        cursor.record()
        if deleted < size:
            return total
        if took < LEAF_BATCH_SECONDS / 2:
            size = min(size * 2, LEAF_BATCH_MAX)
        elif took > LEAF_BATCH_SECONDS:
            size = max(size // 2, 1_000)


def _erase_keys(conn, name, table, spec, rows, cleared_columns, cursor: _Progress,
                batch) -> int:
    """Erase a table's rows by primary key, ERASE_BATCH per transaction, from
    where the progress cursor says an earlier attempt stopped; the rows the
    database deleted or changed."""
    progress = cursor.done
    start, changed = progress.get(name, 0), 0
    for i in range(start, len(rows), ERASE_BATCH):
        chunk = rows[i:i + ERASE_BATCH]
        with batch():
            changed += _erase_batch(conn, spec, table, chunk, cleared_columns)
        progress[name] = i + len(chunk)
        cursor.record()
    return changed


# --- checking ------------------------------------------------------------------------


def _left(shape: MapShape, name: str, row) -> bool:
    """Does this row still hold something erasure should have removed?"""
    spec = shape.map.tables[name]
    return spec.erase == "delete" or (spec.erase == "update" and any(
        c.erase != "retain" and not _erased(row[c.name], c.erase)
        for c in spec.columns.values()))


def remaining(shape: MapShape, run_work, run, identity) -> int:
    """Rows that still hold a value erasure should have removed: the rows erasure
    worked on, looked up again by primary key (their identity columns may be
    hashed now, so the identity alone would find nothing), and any row the
    identity still finds (added since, say)."""
    stored, stored_leaves, _notes = _stored_keys(run_dir(run) / "erase-keys.json.enc")

    def work(conn, tables):
        left = _stored_rows_left(conn, tables, shape, stored)
        left |= _leaf_rows(conn, tables, shape, stored_leaves)
        found = set()

        def on_row(name, row):
            if _left(shape, name, row):
                found.add((name, row_key(shape.map.tables[name], row)))

        trav = traverse(conn, tables, shape, identity, on_row,
                        defer=shape.deletable_leaves(tables))
        keys, _kept, _notes = erasable(conn, tables, shape, trav, constraints.foreign_keys(conn))
        touched = {n: set(k) for n, k in keys.items()}
        left |= {(n, k) for n, k in found if k in touched.get(n, ())}
        left |= _leaf_rows(conn, tables, shape, trav.leaves)
        return len(left)

    return run_work(work, read_only=True)


def _stored_rows_left(conn, tables, shape: MapShape, stored: dict) -> set[tuple]:
    """(table, key) of the rows erasure worked on that still hold something."""
    left = set()
    for name, keys in stored.items():
        spec, table = shape.map.tables[name], tables[name]
        for chunk in _chunks(conn, keys):
            for row in conn.execute(sa.select(*shape.mapped(table)).where(
                    key_in(conn, spec, table, chunk))).mappings():
                if _left(shape, name, row):
                    left.add((name, row_key(spec, row)))
    return left


def _leaf_rows(conn, tables, shape: MapShape, leaves) -> set[tuple]:
    """Leaves are `erase: delete`: any row still there is left (at most
    ARRAY_BATCH of them counted per leaf). Ordered by the looked-up column so
    that PostgreSQL walks its index: right after a big erasure the statistics
    still count the deleted rows, and the plain lookup was planned as a
    sequential scan of the whole table (0.5-0.7 s here)."""
    found = set()
    for name, conditions in leaves.items():
        table = tables[name]
        spec = shape.map.tables[name]
        query = (sa.select(*key_columns(spec, table))
                 .where(leaf_where(conn, table, conditions))
                 .order_by(table.c[next(iter(conditions))]).limit(driver.ARRAY_BATCH))
        found.update((name, row_key(spec, row)) for row in conn.execute(query).mappings())
    return found
