"""Erasure: planning it (what would be deleted, updated or kept), doing it, and
checking afterwards that nothing is left.

It works from a list of primary keys taken when it starts and kept (with a
progress cursor) so that a worker killed half-way resumes where it stopped, each
batch in its own short transaction. Leaf tables are not read: they are deleted
on the server, set-based, from the values that find the person's rows in them.

`run_work(work, read_only=False)` is the connector's: work(conn, tables) on a
pooled connection, database errors turned into SourceErrors."""

import json
import time
from collections import defaultdict

import sqlalchemy as sa

from requests_app.files import open_text_reader, open_text_writer
from requests_app.sources.base import Outcome
from requests_app.sources.records import run_dir
from requests_app.sources.sql import driver
from requests_app.sources.sql.actions import _erase_batch, _erased
from requests_app.sources.sql.driver import _chunks, _delete_some, _in, _ordered
from requests_app.sources.sql.gathering import seen_notes
from requests_app.sources.sql.keys import key_columns, key_in, row_key
from requests_app.sources.sql.shape import MapShape
from requests_app.sources.sql.traversal import Traversal, leaf_where, traverse

ERASE_BATCH = 10_000  # rows per erasure transaction, by primary key
LEAF_BATCH = 50_000  # rows per set-based DELETE of a leaf table (one transaction each)
PROGRESS_EVERY = 0.5  # seconds between two progress records of an erasure


def _erasable(conn, tables, shape: MapShape, trav: Traversal) -> tuple[dict, dict]:
    """The keys erasure may touch, per table: the person's own rows, and shared
    rows that no one else's rows refer to. Also how many shared rows are kept."""
    keys, kept = {}, {}
    for name in shape.map.tables:
        shared = trav.shared_values.get(name, {})
        still_used = set()  # (column, value) pairs other people's rows refer to
        for edge in shape.edges:
            if not edge.forward or edge.to_table != name or not shared:
                continue
            values = {v[edge.to_column] for v in shared.values()
                      if v.get(edge.to_column) is not None}
            referrer = tables[edge.from_table].c[edge.from_column]
            mine = trav.own_refs[(edge.from_table, edge.from_column)]
            for chunk in _chunks(conn, _ordered(values)):
                query = (sa.select(referrer, sa.func.count()).where(
                    _in(conn, referrer, chunk)).group_by(referrer))
                for value, total in conn.execute(query):
                    if total > mine.get(value, 0):
                        still_used.add((edge.to_column, value))
        erasable_shared = {k for k, v in shared.items()
                           if not any(item in still_used for item in v.items())}
        if len(shared) > len(erasable_shared):
            kept[name] = len(shared) - len(erasable_shared)
        if name not in trav.leaves:
            keys[name] = _ordered(trav.owned.get(name, set()) | erasable_shared)
    return keys, kept


def _keys(conn, tables, shape: MapShape, identity, notes=None) -> tuple[dict, dict, dict]:
    """(primary keys per table, shared rows kept per table, leaves): leaf tables
    erasure deletes set-based are not read, only the values that find the
    person's rows in them ({table: {column: [values]}}). `notes`, when given,
    takes what the plan says besides (gathering.seen_notes)."""
    trav = traverse(conn, tables, shape, identity, lambda n, r: None,
                    defer=shape.deletable_leaves(tables))
    keys, kept = _erasable(conn, tables, shape, trav)
    leaves = {name: {column: _ordered(values) for column, values in conditions.items()}
              for name, conditions in trav.leaves.items()}
    if notes is not None:
        notes.update(seen_notes(shape, {n: len(k) for n, k in trav.withheld.items() if k},
                                trav.unsupplied))
    return keys, kept, leaves


def _count_leaves(conn, tables, leaves) -> dict[str, int]:
    return {name: conn.execute(sa.select(sa.func.count()).select_from(tables[name]).where(
                leaf_where(conn, tables[name], conditions))).scalar()
            for name, conditions in leaves.items()}


def plan_erasure(shape: MapShape, run_work, identity) -> Outcome:
    notes: dict = {}

    def work(conn, tables):
        keys, kept, leaves = _keys(conn, tables, shape, identity, notes)
        counts = {name: len(k) for name, k in keys.items()}
        counts |= _count_leaves(conn, tables, leaves)
        return counts, kept

    counts, kept = run_work(work, read_only=True)
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
        plan[name] = entry
    for table, column in shape.cleared_references():
        if table in plan:
            plan[table].setdefault("cleared_references", []).append(column)
    deletable = sum(p["rows"] for p in plan.values() if p["action"] != "retain")
    return Outcome(records=deletable, result={"tables": plan, **notes})


# --- erasing -------------------------------------------------------------------------


def _stored_keys(path) -> tuple[dict, dict]:
    """(keys, leaves) from an erasure's key file (older files hold keys only)."""
    if not path.exists():
        return {}, {}
    with open_text_reader(path) as f:
        stored = json.load(f)
    if stored.get("version") == 2:
        return stored["keys"], stored["leaves"]
    return stored, {}


def _keys_of_run(shape: MapShape, run_work, run, identity) -> tuple[dict, dict]:
    """(keys, leaves) the run's erasure works from: taken when it first started
    and kept in a file, so that a resumed attempt works from the same list."""
    keys_path = run_dir(run) / "erase-keys.json.enc"
    if keys_path.exists():
        return _stored_keys(keys_path)
    keys, _kept, leaves = run_work(
        lambda conn, tables: _keys(conn, tables, shape, identity), read_only=True)
    with open_text_writer(keys_path) as f:
        json.dump({"version": 2, "keys": keys, "leaves": leaves}, f, default=str)
    return keys, leaves


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


def erase(shape: MapShape, run_work, run, identity, on_batch=None) -> Outcome:
    """Erase from the keys (and leaf values) taken when the run first started,
    kept in a file: a resumed attempt works from the same list. Rows found by
    primary key go ERASE_BATCH per transaction; leaf tables (see MapShape.leaves)
    are deleted on the server, LEAF_BATCH rows per statement, each in its own short
    transaction, until none is left (so a resumed attempt simply goes on). The
    progress cursor is recorded (and the attempt's fence checked) at most every
    PROGRESS_EVERY seconds and at the end: an attempt that resumes from an older
    cursor redoes a few batches, which changes nothing (deleting what is gone,
    masking, hashing or clearing what already is)."""
    progress = dict(run.result.get("progress", {}))
    keys, leaves = _keys_of_run(shape, run_work, run, identity)
    cleared = defaultdict(list)
    for table, column in shape.cleared_references():
        cleared[table].append(column)
    cursor = _Progress(progress, on_batch)

    def work(conn, tables):
        conn.commit()  # end the transaction reflection began: each batch has its own
        done = {}
        for name in shape.erase_order():
            spec, table = shape.map.tables[name], tables[name]
            if name in leaves:
                done[name] = _delete_leaf(conn, name, table, spec, leaves[name], cursor)
            else:
                done[name] = _erase_keys(conn, name, table, spec, keys.get(name, []),
                                         cleared.get(name, []), cursor)
        cursor.record(force=True)
        return done

    counts = run_work(work)
    return Outcome(records=sum(counts.values()),
                   result={"tables": counts, "progress": progress})


def _delete_leaf(conn, name, table, spec, conditions, cursor: _Progress) -> int:
    """Delete a leaf's rows that the values find, LEAF_BATCH per transaction."""
    pk = key_columns(spec, table)[0]  # a leaf refers to a unique column: one-column keys
    where = leaf_where(conn, table, conditions)
    statement = _delete_some(conn, table, pk, where, LEAF_BATCH,
                             order_by=table.c[next(iter(conditions))])
    progress = cursor.done
    while True:
        with conn.begin():
            deleted = conn.execute(statement).rowcount
        progress[name] = progress.get(name, 0) + deleted
        cursor.record()
        if deleted < LEAF_BATCH:
            break
    return progress[name]


def _erase_keys(conn, name, table, spec, rows, cleared_columns, cursor: _Progress) -> int:
    """Erase a table's rows by primary key, ERASE_BATCH per transaction, from
    where the progress cursor says an earlier attempt stopped."""
    progress = cursor.done
    start = progress.get(name, 0)
    for i in range(start, len(rows), ERASE_BATCH):
        batch = rows[i:i + ERASE_BATCH]
        with conn.begin():
            _erase_batch(conn, spec, table, batch, cleared_columns)
        progress[name] = i + len(batch)
        cursor.record()
    return len(rows) if spec.erase != "retain" else 0


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
    stored, stored_leaves = _stored_keys(run_dir(run) / "erase-keys.json.enc")

    def work(conn, tables):
        left = _stored_rows_left(conn, tables, shape, stored)
        left |= _leaf_rows(conn, tables, shape, stored_leaves)
        found = set()

        def on_row(name, row):
            if _left(shape, name, row):
                found.add((name, row_key(shape.map.tables[name], row)))

        trav = traverse(conn, tables, shape, identity, on_row,
                        defer=shape.deletable_leaves(tables))
        keys, _kept = _erasable(conn, tables, shape, trav)
        erasable = {n: set(k) for n, k in keys.items()}
        left |= {(n, k) for n, k in found if k in erasable.get(n, ())}
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
