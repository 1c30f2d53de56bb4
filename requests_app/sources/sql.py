"""SQL sources: PostgreSQL by DSN, or SQLite for the embedded demo.

The DSN is read from the environment variable the source names; it is never stored.
Traversal starts from the rows matching the person's identity and follows the map's
references, both ways, hop by hop (never into another identity table's rows: those
are other people, reached only by their own identity; cycles end where rows were
seen already): one query per table per hop, with bound,
batched IN-lists (SQLAlchemy Core quotes identifiers and binds every value; no SQL
is built by formatting strings). Rows are streamed to the sink as they arrive;
only primary keys and the values needed for the next hop are kept in memory.

Erasure works from a list of primary keys taken when it starts and kept (with a
progress cursor) so that a worker killed half-way resumes where it stopped, each
batch in its own short transaction.
"""

import datetime
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections import Counter, defaultdict
from functools import lru_cache

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles

try:
    import psycopg
    from psycopg.rows import dict_row
except ImportError:  # SQLite only (the embedded demo)
    psycopg = None

from requests_app.files import open_text_reader, open_text_writer
from requests_app.sources.base import (Connector, Outcome, SourceError, TransientSourceError,
                                       collection_period, in_period, period_bounds)
from requests_app.sources.datamap import DatasetMap, DatasetMapError, parse
from requests_app.sources.records import run_dir

BATCH = 1000  # values per IN-list (SQLite); rows read per round trip when streaming
ARRAY_BATCH = 50_000  # values per array parameter (PostgreSQL: one `= ANY(%s)`)
ERASE_BATCH = 10_000  # rows per erasure transaction, by primary key
LEAF_BATCH = 50_000  # rows per set-based DELETE of a leaf table (one transaction each)
PROGRESS_EVERY = 0.5  # seconds between two progress records of an erasure


def engine_url(dsn: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix):]
    return dsn


_ENGINE_LOCK = threading.Lock()


@lru_cache(maxsize=32)
def _engine(url: str) -> sa.Engine:
    kwargs = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        # jit=off: our statements are index lookups and copies of a person's rows,
        # never analytics; PostgreSQL JIT-compiles any query whose estimated cost
        # passes jit_above_cost (a 200,000-row copy does), which cost 20-40 ms a copy
        # here and saved nothing (PostgreSQL 11 or later: older ones lack the setting).
        kwargs |= {"pool_size": 2, "max_overflow": 2,
                   "connect_args": {"connect_timeout": 10,
                                    "options": "-c lock_timeout=5000 -c statement_timeout=300000"
                                               " -c jit=off"}}
    return sa.create_engine(url, **kwargs)


_COPY_BLOCK = 1 << 18


def _copy_out(conn, statement: str, params: dict, write) -> None:
    """`COPY ... TO STDOUT` on a SQLAlchemy connection (psycopg 3), the rows' bytes
    passed to `write` in blocks of about 256 KiB of whole rows (one call per block,
    not per row: 200,000 calls cost more than the reading itself). The values are
    bound client-side by psycopg (COPY takes no server-side parameters):
    ClientCursor.mogrify quotes them as literals itself.
    Rows are read with libpq's PQgetCopyData in a plain loop rather than psycopg's
    Copy iterator, which waits through a generator for every row: that halves the
    client's time per row (0.26 s against 0.45 s for 200,000 rows of CSV here).
    The socket is waited on only when libpq has no complete row buffered, without
    the GIL, so another thread runs meanwhile. On any failure the connection is
    invalidated (it may be stopped in the middle of a COPY) and the error raised."""
    import select

    from psycopg import pq

    driver = conn.connection.driver_connection
    query = psycopg.ClientCursor(driver).mogrify(statement, params)
    pgconn = driver.pgconn

    def result():
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                return pgconn.get_result()
            select.select([pgconn.socket], [], [])

    def check(res, expected):
        if res is None or res.status != expected:
            if res is not None and res.status == pq.ExecStatus.FATAL_ERROR:
                raise psycopg.errors.error_from_result(res, encoding=driver.info.encoding)
            raise psycopg.OperationalError(
                f"COPY: {pgconn.get_error_message(driver.info.encoding) or 'no result'}")

    try:
        with driver.lock:
            pgconn.send_query(query.encode(driver.info.encoding))
            check(result(), pq.ExecStatus.COPY_OUT)
            get, block = pgconn.get_copy_data, bytearray()
            while True:
                size, data = get(1)
                if size > 0:
                    block += data
                    if len(block) >= _COPY_BLOCK:
                        write(bytes(block))
                        block.clear()
                elif size == 0:  # nothing complete buffered: wait for the socket
                    select.select([pgconn.socket], [], [])
                    pgconn.consume_input()
                elif size == -1:  # the end of the COPY
                    break
                else:
                    raise psycopg.OperationalError(
                        f"COPY: {pgconn.get_error_message(driver.info.encoding)}")
            if block:
                write(bytes(block))
            check(result(), pq.ExecStatus.COMMAND_OK)
            while result() is not None:
                pass
    except BaseException:
        conn.invalidate()
        raise


_REFLECTED: dict[tuple, dict] = {}
_BULK = object()  # a leaf table with too many rows to read one by one: copied instead
# Lookup statements compiled once per (database, table, columns): SQL text made by
# SQLAlchemy (identifiers quoted, every value a bound parameter) and its defaults.
_LOOKUPS: dict[tuple, tuple] = {}


def _arrays(conn) -> bool:
    """PostgreSQL binds a whole list as one array parameter (`col = ANY(%s)`): the
    SQL text is the same whatever the number of values (prepared once by psycopg),
    and there is no limit of bound parameters. SQLite gets batched IN-lists."""
    return conn.dialect.name == "postgresql"


def _in(conn, column, values):
    """`column = ANY(:values)` (one array parameter) on PostgreSQL, else IN (...)."""
    values = list(values)
    if _arrays(conn):
        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


class _ArrayOf(sa.sql.expression.ColumnElement):
    """PostgreSQL's ARRAY(subquery): the subquery's rows as one array value."""

    inherit_cache = True
    type = sa.types.NullType()

    def __init__(self, select):
        self.select = select.scalar_subquery()


@compiles(_ArrayOf)
def _compile_array_of(element, compiler, **kw):
    return "ARRAY" + compiler.process(element.select, **kw)


def _delete_some(conn, table, pk, where, limit: int, order_by=None):
    """DELETE at most `limit` rows matching `where`, in one statement. On PostgreSQL
    the rows are picked by their physical address: `ctid = ANY(ARRAY(SELECT ctid ...
    LIMIT n))`, a TID scan, never the join the planner would choose for `pk IN
    (SELECT pk ... LIMIT n)` (a sequential scan of the whole table, seconds on a
    big one). `order_by`, the looked-up column, keeps it on that column's index:
    with statistics that still count the rows of a big subject (fresh after they
    were added, stale after some were deleted), an unordered `LIMIT n` was at times
    planned as a sequential scan, a write transaction of 1 s."""
    if _arrays(conn):
        ctid = sa.literal_column("ctid")
        pick = sa.select(ctid).select_from(table).where(where)
        if order_by is not None:
            pick = pick.order_by(order_by)
        return sa.delete(table).where(ctid == sa.any_(_ArrayOf(pick.limit(limit))))
    return sa.delete(table).where(pk.in_(sa.select(pk).where(where).limit(limit).scalar_subquery()))


def _chunks(conn, values):
    size = ARRAY_BATCH if _arrays(conn) else BATCH
    values = list(values)
    return [values[i:i + size] for i in range(0, len(values), size)]


def _ordered(values) -> list:
    """Values in a stable order (numbers numerically, for index locality)."""
    return sorted(values, key=lambda v: (type(v).__name__, v))


def _unique_columns(table: sa.Table) -> set[str]:
    """Columns whose value names one row: the primary key and unique columns."""
    names = {c.name for c in table.columns if c.primary_key or c.unique}
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint) and len(constraint.columns) == 1:
            names.update(c.name for c in constraint.columns)
    for index in table.indexes:
        if index.unique and len(index.columns) == 1:
            names.update(c.name for c in index.columns)
    return names


class Traversal:
    """What a traversal found: every row's key, which rows are the person's own,
    and, for rows that may be shared, the values other rows refer to them by."""

    def __init__(self):
        self.seen: dict[str, set] = defaultdict(set)
        self.owned: dict[str, set] = defaultdict(set)
        self.shared_values: dict[str, dict] = defaultdict(dict)
        self.own_refs: dict[tuple, Counter] = defaultdict(Counter)
        # Deferred leaf tables (see SqlConnector._leaves): not read, only the values
        # that find the person's rows in them, {table: {column: values}}.
        self.leaves: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))


def forget(url: str) -> None:
    """Drop what this process knows of a database's tables (reflection and compiled
    lookups): the next use reflects them again."""
    for cache in (_REFLECTED, _LOOKUPS):
        for key in [k for k in list(cache) if k[0] == url]:  # a snapshot: other threads
            cache.pop(key, None)


def _schema_changed(exc: Exception) -> bool:
    """A table or column the cached reflection has is gone (PostgreSQL's undefined
    table / column, SQLite's "no such ...")."""
    orig = getattr(exc, "orig", exc)
    return (getattr(orig, "sqlstate", None) in ("42P01", "42703")
            or "no such column" in str(orig) or "no such table" in str(orig))


def _transient(exc: Exception) -> bool:
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError))


# --- erasure actions ---------------------------------------------------------------

_HASHED = re.compile(r"^~[0-9a-f]{8,64}$")


def mask(value):
    """Keep the shape: the first character of each run of letters or digits, the
    rest as x (letters) or 0 (digits), punctuation as it was. Masking a masked
    value changes nothing. Non-text values become NULL."""
    if not isinstance(value, str):
        return None

    def run(m):
        s = m.group(0)
        return s[0] + "".join("0" if c.isdigit() else "x" for c in s[1:])

    return re.sub(r"[^\W_]+", run, value)


def keyed_hash(value, length: int | None = None):
    """A keyed hash (HMAC-SHA256 under IDENTITY_HASH_KEY): equal values stay equal, so the
    column can still be joined on, but cannot be read back. Idempotent."""
    if value is None:
        return None
    if not isinstance(value, str):
        return None
    if _HASHED.match(value):
        return value
    digest = hmac.new(settings.IDENTITY_HASH_KEY.encode(), value.encode(),
                      hashlib.sha256).hexdigest()
    size = 32 if length is None else max(8, min(64, length - 1))
    return "~" + digest[:size]


def _erased(value, action: str) -> bool:
    if value is None:
        return True
    if action == "hash":
        return isinstance(value, str) and bool(_HASHED.match(value))
    if action == "mask":
        return mask(value) == value
    return False


# --- the connector -----------------------------------------------------------------


class SqlConnector(Connector):
    def __init__(self, source):
        super().__init__(source)
        try:
            self.map: DatasetMap = parse(source.dataset_map)
        except DatasetMapError as exc:
            raise SourceError(f"{source.name}: the dataset map is invalid ({exc})") from None

    @property
    def engine(self) -> sa.Engine:
        name = self.source.connection_env
        dsn = os.environ.get(name or "")
        if not dsn:
            raise SourceError(f"{self.source.name}: environment variable {name or '(none)'} "
                              "holding the DSN is not set")
        with _ENGINE_LOCK:  # one engine (and pool) per database, whichever thread comes first
            return _engine(engine_url(dsn))

    def _needed(self, name: str) -> tuple[str, ...]:
        """The columns of a table that the map names (keys, identities, references,
        categories, collection time) or that references into it follow: a lookup
        reads those only. Other columns are none of our business, and a column
        dropped from the database that the map never used breaks nothing."""
        needed = getattr(self, "_needed_cache", None)
        if needed is None:
            needed = self._needed_cache = {
                n: tuple(sorted(spec.column_names() | self.map.referenced_columns(n)))
                for n, spec in self.map.tables.items()}
        return needed[name]

    def _mapped(self, table: sa.Table) -> list:
        return [table.c[name] for name in self._needed(table.name)]

    def tables(self, conn) -> dict[str, sa.Table]:
        """The map's tables as reflected from the database, once per process, and again
        when the map names a column the reflection lacks (a column added to the
        database and then to the map while the worker ran)."""
        key = (str(conn.engine.url), tuple(sorted(self.map.tables)))
        known = _REFLECTED.get(key)
        if known is None or any(not set(self._needed(name)) <= set(known[name].c.keys())
                                for name in self.map.tables):
            if known is not None:  # stale: its compiled lookups too
                forget(str(conn.engine.url))
            metadata = sa.MetaData()
            try:
                metadata.reflect(bind=conn, only=list(self.map.tables))
            except sa_exc.InvalidRequestError as exc:
                raise SourceError(f"{self.source.name}: {exc}") from None
            reflected = {name: metadata.tables[name] for name in self.map.tables}
            for name in self.map.tables:
                missing = sorted(set(self._needed(name)) - set(reflected[name].c.keys()))
                if missing:  # dropped since the map was saved
                    raise SourceError(f"{self.source.name}: table `{name}` has no column "
                                      f"`{missing[0]}`")
            _REFLECTED[key] = reflected
        return _REFLECTED[key]

    def warm_up(self) -> None:
        """Reflect the map's tables and open the pool's two connections (a copied
        leaf's JSON and CSV COPYs run on two at once), as a worker process does once
        when it starts (fulfilment.warm_up.warm_up_worker), so that its first task does not
        pay for them: about 0.1 s of reflection and two connections here."""
        with self.engine.connect() as conn, self.engine.connect():
            self.tables(conn)

    def check(self) -> list[str]:
        """Problems between the map and the real database (missing tables or
        columns, references that cannot be cleared), for validation at save time."""
        problems = []
        try:
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                existing = set(inspector.get_table_names())
                columns = {}
                for name, table in self.map.tables.items():
                    line = self.map.lines.get(name)
                    if name not in existing:
                        problems.append(f"line {line}: table `{name}` does not exist")
                        continue
                    columns[name] = {c["name"]: c for c in inspector.get_columns(name)}
                    for col in sorted(table.column_names() - set(columns[name])):
                        problems.append(f"line {line}: table `{name}` has no column `{col}`")
                    when = columns[name].get(table.collected_at)
                    if when and _arrays(conn) and not isinstance(when["type"], (sa.Date,
                                                                                sa.DateTime)):
                        problems.append(f"line {line}: table `{name}`: collected_at column "
                                        f"`{table.collected_at}` must be a date or a timestamp")
                for name, table in self.map.tables.items():
                    for ref in table.references:
                        if ref.to_table in columns and ref.to_column not in columns[ref.to_table]:
                            problems.append(
                                f"line {self.map.lines.get(name)}: table `{name}` refers to "
                                f"`{ref.to_table}.{ref.to_column}`, which does not exist")
                for table, column in self._cleared_references():
                    info = columns.get(table, {}).get(column)
                    if info is not None and not info["nullable"]:
                        problems.append(
                            f"line {self.map.lines.get(table)}: `{table}.{column}` refers to "
                            "rows that erasure deletes, so it must accept NULL")
        except sa_exc.SQLAlchemyError as exc:
            problems.append(f"cannot reach the database: {type(exc).__name__}")
        return problems

    # --- traversal ----------------------------------------------------------------

    def _leaves(self, tables) -> set[str]:
        """Tables whose rows are all the person's own and lead nowhere else: no
        identity columns, no other table refers to them, and their one reference
        points at a unique column (so following it back finds only the row it came
        from). Traversal reaches them only backwards from the person's own rows
        (web_events from the person's devices), so every row it would find there is
        theirs, and the values it would look them up by are all erasure needs: it
        can delete them on the server, set-based, without reading them."""
        referenced = {r.to_table for spec in self.map.tables.values() for r in spec.references}
        leaves = set()
        for name, spec in self.map.tables.items():
            if spec.identity or name in referenced or len(spec.references) != 1:
                continue
            ref = spec.references[0]
            if ref.to_column in _unique_columns(tables[ref.to_table]):
                leaves.add(name)
        return leaves

    def _deletable_leaves(self, tables) -> set[str]:
        return {n for n in self._leaves(tables) if self.map.tables[n].erase == "delete"}

    def _leaf_where(self, conn, table, conditions: dict):
        return sa.or_(*(_in(conn, table.c[column], chunk)
                        for column, values in conditions.items()
                        for chunk in _chunks(conn, _ordered(values))))

    def _shape(self, tables) -> tuple:
        """What traversal needs of the map, worked out once per reflected schema:
        (edges, columns followed per table, forward columns per table, unique
        columns per table)."""
        cached = getattr(self, "_shape_cache", None)
        if cached is None or cached[0] is not tables:
            edges = self.map.edges()
            follows = {n: {e.from_column for e in edges if e.from_table == n}
                       for n in self.map.tables}
            forwards = {n: {e.from_column for e in edges if e.from_table == n and e.forward}
                        for n in self.map.tables}
            # Unique columns that references lead to: rows seen there need no second
            # lookup (the only use of `known` in _traverse).
            unique = {n: _unique_columns(tables[n]) & follows[n] for n in self.map.tables}
            cached = self._shape_cache = (tables, (edges, follows, forwards, unique))
        return cached[1]

    def _traverse(self, conn, tables, identity, on_row, defer=(), bulk=(),
                  through=()) -> "Traversal":
        """Find the person's rows hop by hop; call on_row(table_name, row) once per row.
        When it returns False (a row outside a Right to Know period), the row's
        references are followed only into the tables in `through` (those that judge
        each row by its own date): what is reached only through it is left out.
        Tables in `defer` (leaves, see _leaves) are not read: the values that would
        find the rows are kept in trav.leaves instead. Tables in `bulk` (leaves too)
        are read as usual unless the lookup finds more than BATCH rows: then they
        are left to the caller in the same way (gather copies them, see _copy_leaf).

        A row is the person's own when their identity finds it, or when it refers
        to a row of theirs (their orders). A row that one of theirs refers to (the
        address an order was shipped to) may be shared with other people: it is
        found, but the rows that refer to it are not followed, or traversal would
        walk through a shared row into someone else's data."""
        trav = Traversal()
        wanted: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
        owning: dict[str, set] = defaultdict(set)  # columns whose match makes a row theirs
        lookups = identity.lookup_values()
        for name, spec in self.map.tables.items():
            for field_name, column in spec.identity.items():
                value = lookups.get(field_name)
                if value:
                    wanted[name][column].update({value, value.lower()} if field_name == "email"
                                                else {value})
                    owning[name].add(column)
        edges, follows, forwards, unique = self._shape(tables)
        # References into identity tables: a shared row that points at a person who
        # is not this one (an address whose customer_id is someone else's) is theirs.
        to_people = {name: [(r.column, r.to_table, r.to_column) for r in spec.references
                            if self.map.tables[r.to_table].identity]
                     for name, spec in self.map.tables.items()}
        mine: dict[tuple, set] = defaultdict(set)  # values of the person's identity rows
        known: dict[tuple, set] = defaultdict(set)  # values of unique columns of seen rows
        while wanted:
            owned_now = defaultdict(lambda: defaultdict(set))
            shared_now = defaultdict(lambda: defaultdict(set))
            left_owned = defaultdict(lambda: defaultdict(set))  # rows on_row left out
            left_shared = defaultdict(lambda: defaultdict(set))
            # A leaf left to the caller once stays so in later hops (one copy of it).
            skip = set(defer) | set(trav.leaves)
            for name, conditions in wanted.items():
                if name in skip:
                    for column, values in conditions.items():
                        trav.leaves[name][column].update(values)
            fetched = self._fetch(conn, tables, {n: c for n, c in wanted.items()
                                                 if n not in skip}, bulk=bulk)
            for name, conditions in wanted.items():
                if name in skip:
                    continue
                spec, table = self.map.tables[name], tables[name]
                if fetched[name] is _BULK:
                    if not trav.seen.get(name):
                        for column, values in conditions.items():
                            trav.leaves[name][column].update(values)
                        continue
                    # Some of its rows were read one by one in an earlier hop: these
                    # too, streamed, so that the table stays one collection.
                    fetched[name] = self._select(conn, table, conditions)
                follow, forward_cols = follows[name], forwards[name]
                for row in fetched[name]:
                    key = row[spec.primary_key]
                    if key in trav.seen[name]:
                        continue
                    trav.seen[name].add(key)
                    owned = any(row[c] in conditions.get(c, ()) for c in owning[name])
                    if not owned and any(
                        row[col] is not None and row[col] not in mine[(person, pcol)]
                        for col, person, pcol in to_people[name]
                    ):
                        continue  # someone else's row: neither shown nor erased
                    if owned:
                        trav.owned[name].add(key)
                        if spec.identity:
                            for column in row.keys():
                                mine[(name, column)].add(row[column])
                        # Only the person's own rows count as their references to a
                        # shared row (a kept shared row's links are not theirs).
                        for column in forward_cols:
                            trav.own_refs[(name, column)][row[column]] += 1
                    else:
                        trav.shared_values[name][key] = {c: row[c] for c in follow}
                    if on_row(name, row) is False:  # left out (outside a period)
                        target = left_owned if owned else left_shared
                    else:
                        for column in unique[name]:
                            known[(name, column)].add(row[column])
                        target = owned_now if owned else shared_now
                    for column in follow:
                        if row[column] is not None:
                            target[name][column].add(row[column])
            wanted = defaultdict(lambda: defaultdict(set))
            owning = defaultdict(set)
            for edge in edges:
                if self.map.tables[edge.to_table].identity:
                    # Rows of an identity table are people: only the person's own
                    # identity finds theirs. Following a reference into one (a
                    # "referred by" link, a household) would reach someone else.
                    continue
                values = set(owned_now.get(edge.from_table, {}).get(edge.from_column, ()))
                dated = edge.to_table in through  # judged by its own date: reached anyway
                if dated:
                    values |= left_owned.get(edge.from_table, {}).get(edge.from_column, set())
                if edge.forward:
                    values |= shared_now.get(edge.from_table, {}).get(edge.from_column, set())
                    if dated:
                        values |= left_shared.get(edge.from_table, {}).get(edge.from_column,
                                                                           set())
                    # A unique column's rows seen already need no second look.
                    values -= known.get((edge.to_table, edge.to_column), set())
                else:
                    owning[edge.to_table].add(edge.to_column)
                if values:
                    wanted[edge.to_table][edge.to_column].update(values)
        return trav

    def _erasable(self, conn, tables, trav: "Traversal") -> tuple[dict, dict]:
        """The keys erasure may touch, per table: the person's own rows, and shared
        rows that no one else's rows refer to. Also how many shared rows are kept."""
        keys, kept = {}, {}
        for name in self.map.tables:
            shared = trav.shared_values.get(name, {})
            still_used = set()  # (column, value) pairs other people's rows refer to
            for edge in self.map.edges():
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

    def _fetch(self, conn, tables, wanted: dict, bulk=()) -> dict:
        """One hop's lookups, {table: rows}. On PostgreSQL they all go in one round
        trip (psycopg pipeline mode), one statement per table with one array
        parameter per column and a LIMIT one above BATCH; a table that reaches the
        limit is read again, streamed (see _stream). Elsewhere: _select, lazily."""
        if not _arrays(conn) or psycopg is None or not wanted:
            return {name: self._select(conn, tables[name], conditions)
                    for name, conditions in wanted.items()}
        pg = conn.connection.driver_connection
        fetched, pending = {}, []
        for name, conditions in wanted.items():
            columns = tuple(sorted(conditions))
            values = [_ordered(conditions[c]) for c in columns]
            if any(len(v) > ARRAY_BATCH for v in values):
                fetched[name] = self._select(conn, tables[name], conditions)
                continue
            sql, streamed, params = self._lookup(conn, tables[name], columns)
            params = {**params, **{f"v{i}": v for i, v in enumerate(values)}}
            pending.append((name, sql, streamed, params))
        cursors = []
        with pg.pipeline():
            for name, sql, streamed, params in pending:
                cursor = pg.cursor(row_factory=dict_row)
                cursor.execute(sql, params)
                cursors.append((name, cursor, streamed, params))
        for name, cursor, streamed, params in cursors:
            rows = cursor.fetchall()
            cursor.close()
            if len(rows) <= BATCH:
                fetched[name] = rows
            else:
                fetched[name] = _BULK if name in bulk else self._stream(pg, streamed, params)
        return fetched

    def _lookup(self, conn, table, columns: tuple) -> tuple[str, str, dict]:
        """(SQL with LIMIT, SQL without, default parameters) of the lookup of `table`
        by `columns`: `SELECT ... WHERE c0 = ANY(%(v0)s) OR c1 = ANY(%(v1)s) ...`."""
        key = (str(conn.engine.url), table.name, columns, self._needed(table.name))
        if key not in _LOOKUPS:
            query = sa.select(*self._mapped(table)).where(sa.or_(*(
                table.c[c] == sa.any_(sa.bindparam(f"v{i}", type_=ARRAY(table.c[c].type)))
                for i, c in enumerate(columns))))
            # By one column: in that column's order, so that the LIMIT stays on its
            # index. Unordered, a lookup that the statistics say finds many rows
            # (a big subject's web_events) may be planned as a sequential scan that
            # "soon" finds BATCH+1 of them, and reads the whole table when the rows
            # are at its end.
            ordered = query.order_by(table.c[columns[0]]) if len(columns) == 1 else query
            limited = ordered.limit(sa.bindparam("limit", BATCH + 1, type_=sa.Integer))
            compiled = limited.compile(dialect=conn.dialect)
            params = {k: v for k, v in compiled.params.items() if not k.startswith("v")}
            _LOOKUPS[key] = (str(compiled), str(query.compile(dialect=conn.dialect)), params)
        return _LOOKUPS[key]

    @staticmethod
    def _stream(pg, sql, params):
        """A lookup that finds very many rows, read on a server-side cursor BATCH rows
        per round trip (memory stays bounded), in a transaction of its own."""
        with pg.transaction():
            with pg.cursor(name="pp_lookup", row_factory=dict_row) as cursor:
                cursor.itersize = BATCH
                cursor.execute(sql, {k: v for k, v in params.items() if k != "limit"})
                yield from cursor

    def _select(self, conn, table, conditions: dict[str, set]):
        """One query per table per hop: OR of one array parameter per column on
        PostgreSQL (ARRAY_BATCH values each); of IN-lists batched at BATCH values
        on SQLite."""
        if _arrays(conn) and psycopg is not None:
            # Only for many rows or values (see _fetch): streamed on a server-side
            # cursor in a transaction of its own (reads run in autocommit mode).
            columns = tuple(sorted(conditions))
            chunks = [_chunks(conn, _ordered(conditions[c])) for c in columns]
            _limited, sql, params = self._lookup(conn, table, columns)
            pg = conn.connection.driver_connection
            for i in range(max(len(c) for c in chunks)):
                values = {f"v{j}": c[i] if i < len(c) else [] for j, c in enumerate(chunks)}
                yield from self._stream(pg, sql, {**params, **values})
            return
        chunks = []
        for column, values in conditions.items():
            ordered = _ordered(values)
            chunks.extend((column, ordered[i:i + BATCH]) for i in range(0, len(ordered), BATCH))
        # Pack the chunks into as few statements as possible, BATCH values each.
        statement, size = [], 0
        for column, values in chunks:
            if statement and size + len(values) > BATCH:
                yield from self._run_select(conn, table, statement)
                statement, size = [], 0
            statement.append((column, values))
            size += len(values)
        if statement:
            yield from self._run_select(conn, table, statement)

    def _run_select(self, conn, table, parts):
        """Most lookups find a few rows: one round trip on a client-side cursor, with
        a LIMIT one above BATCH. Only when that limit is reached (a subject with
        very many rows in this table) is the query run again on a server-side
        cursor, streamed BATCH rows at a time, so memory stays bounded."""
        query = sa.select(*self._mapped(table)).where(sa.or_(*(
            _in(conn, table.c[col], vals) for col, vals in parts)))
        rows = conn.execute(query.limit(BATCH + 1)).mappings().all()
        if len(rows) <= BATCH:
            yield from rows
            return
        del rows
        result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
        yield from result.mappings()

    def _run(self, work, read_only=False):
        """work(conn, tables) on a pooled connection. read_only: in autocommit mode on
        PostgreSQL, so that no read transaction (and its AccessShareLocks, and its
        snapshot holding back VACUUM) spans the whole traversal: each hop's lookups
        see the database as it is then."""
        try:
            with self.engine.connect() as conn:
                if read_only and _arrays(conn):
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                return work(conn, self.tables(conn))
        except sa_exc.SQLAlchemyError as exc:
            kind = TransientSourceError if _transient(exc) else SourceError
            if _schema_changed(exc):  # reflected before a change: the retry reflects anew
                forget(str(self.engine.url))
                kind = TransientSourceError
            raise kind(f"{self.source.name}: database error ({type(exc).__name__})") from None
        except Exception as exc:
            if psycopg is None or not isinstance(exc, psycopg.Error):
                raise
            kind = TransientSourceError if isinstance(exc, psycopg.OperationalError) else SourceError
            if _schema_changed(exc):
                forget(str(self.engine.url))
                kind = TransientSourceError
            raise kind(f"{self.source.name}: database error ({type(exc).__name__})") from None

    # --- gathering ------------------------------------------------------------------

    def gather(self, run, identity, sink) -> Outcome:
        """The person's rows, written to `sink`. For a Right to Know request with a
        period, rows of tables whose map names a `collected_at` column are written
        only when collected in it (or when that time is empty); undated rows reached
        only through a row left out are not reached (an old order's items and shipping
        address), dated ones are judged by their own date (a new message on an old
        ticket is shown); a copied leaf leaves its rows out in its COPY.
        result["outside_period"] counts the dated rows left out per table."""
        period = collection_period(run)
        outside: dict[str, int] = {}

        def work(conn, tables):
            def on_row(name, row):
                spec = self.map.tables[name]
                if period and spec.collected_at and not in_period(row[spec.collected_at],
                                                                  period):
                    outside[name] = outside.get(name, 0) + 1
                    return False  # and what is reached only through it (an order's items)
                categories = {c.name: c.category for c in spec.columns.values()}
                sink.write(name, {c: row[c] for c in spec.columns}, categories)

            copies = _arrays(conn) and psycopg is not None and hasattr(sink, "write_copy")
            dated = {n for n, spec in self.map.tables.items() if spec.collected_at}
            trav = self._traverse(conn, tables, identity, on_row,
                                  bulk=self._leaves(tables) if copies else (),
                                  through=dated if period else ())
            counts = {name: len(keys) - outside.get(name, 0)
                      for name, keys in trav.seen.items()}
            for name, conditions in trav.leaves.items():
                counts[name] = self._copy_leaf(conn, tables[name], conditions, sink, period,
                                               outside)
            return counts

        counts = self._run(work, read_only=True)
        result = {"tables": counts}
        if period:
            result["period"] = [period[0].isoformat(), period[1].isoformat()]
            result["outside_period"] = outside
        return Outcome(records=sum(counts.values()), result=result)

    def _copy_leaf(self, conn, table, conditions, sink, period=None, outside=None) -> int:
        """A leaf table with very many rows of the person's (web_events), formatted by
        PostgreSQL itself: `COPY (SELECT row_to_json(t) ...) TO STDOUT` as JSON lines
        and `COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)`, the bytes streamed
        into the sink's encrypted files, no row ever becoming a Python object. The
        sink runs the two at once (the CSV one on a second pooled connection), so
        the database formats both while we deflate and encrypt.
        Columns of never-disclosed categories are replaced by a constant in the
        SELECT itself, so their values never leave the database. The select is built
        by SQLAlchemy (identifiers quoted); COPY takes no server-side parameters, so
        psycopg binds the values client-side, as literals it quotes itself."""
        from requests_app.sources.categories import WITHHELD, never_disclosed

        spec = self.map.tables[table.name]
        categories = {c.name: c.category for c in spec.columns.values()}
        selected = [sa.literal(WITHHELD, sa.Text).label(name) if never_disclosed(category)
                    else table.c[name] for name, category in categories.items()]
        where = self._leaf_where(conn, table, conditions)
        if period and spec.collected_at:  # the rows of the period (or of no known time)
            when = table.c[spec.collected_at]
            aware = isinstance(when.type, sa.DateTime) and when.type.timezone
            first, after = period_bounds(period, aware)
            kept = sa.or_(when.is_(None), sa.and_(when >= first, when < after))
            left_out = conn.execute(sa.select(sa.func.count()).select_from(table).where(
                where, sa.not_(kept))).scalar()
            if left_out and outside is not None:
                outside[table.name] = left_out
            where = sa.and_(where, kept)
        compiled = (sa.select(*selected).where(where).compile(dialect=conn.dialect))
        inner, params = str(compiled), compiled.params
        # JSON lines: CSV format with a quote and a delimiter that JSON text never
        # holds raw (it escapes control characters), so each line is the JSON as is.
        as_json = ("COPY (SELECT row_to_json(t) FROM (" + inner + ") AS t) TO STDOUT "
                   "(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')")
        as_csv = "COPY (" + inner + ") TO STDOUT (FORMAT csv, HEADER)"
        def json_lines(write):
            _copy_out(conn, as_json, params, write)

        def csv(write):  # at the same time, in another thread: a connection of its own
            with self.engine.connect() as other:
                _copy_out(other, as_csv, params, write)

        return sink.write_copy(spec.name, categories, json_lines, csv)

    # --- identity verification ------------------------------------------------------

    def identity_points(self, identity) -> set[str] | None:
        """One parameterised query: the identity table's rows for the address (case
        insensitive), LEFT JOINed to the address columns of tables that refer to
        it; the given points are compared with what they hold, normalised."""
        from requests_app.sources.identity_match import compare

        root = next((t for t in self.map.tables.values() if "email" in t.identity), None)
        if root is None or not identity.email:
            return None

        def category_columns(spec, prefix):
            return [name for name, col in spec.columns.items()
                    if col.category.startswith(prefix)]

        def work(conn, tables):
            table = tables[root.name]
            selected, name_cols = [], category_columns(root, "user.name")
            id_cols = {f: root.identity[f] for f in ("phone", "account_number")
                       if f in root.identity}
            for field_name, column in id_cols.items():
                selected.append(table.c[column].label(f"id_{field_name}"))
            selected += [table.c[c].label(f"name_{i}") for i, c in enumerate(name_cols)]
            address_sets, joined = [], table
            own = category_columns(root, "user.contact.address")
            if own:
                address_sets.append([f"addr_0_{i}" for i in range(len(own))])
                selected += [table.c[c].label(f"addr_0_{i}") for i, c in enumerate(own)]
            for spec in self.map.tables.values():
                cols = [c for c in category_columns(spec, "user.contact.address")
                        if not self.map.tables[spec.name].columns[c].category.endswith(
                            ("city", "state", "country"))]
                ref = next((r for r in spec.references if r.to_table == root.name), None)
                if spec is root or not cols or ref is None:
                    continue
                other = tables[spec.name]
                n = len(address_sets)
                joined = joined.outerjoin(other, other.c[ref.column] == table.c[ref.to_column])
                address_sets.append([f"addr_{n}_{i}" for i in range(len(cols))])
                selected += [other.c[c].label(f"addr_{n}_{i}") for i, c in enumerate(cols)]
                break  # one joined table keeps it one small query
            if not selected:
                selected = [table.c[root.primary_key]]
            email_col = table.c[root.identity["email"]]
            query = (sa.select(*selected).select_from(joined)
                     .where(sa.func.lower(email_col) == identity.email.strip().lower())
                     .limit(50))
            rows = list(conn.execute(query).mappings())
            if not rows:
                return set()
            held = {"phone": [], "account_number": [], "name": [], "postal_address": []}
            for row in rows:
                for field_name in id_cols:
                    held[field_name].append(row[f"id_{field_name}"])
                if name_cols:
                    held["name"].append([row[f"name_{i}"] for i in range(len(name_cols))])
                for labels in address_sets:
                    parts = [row[label] for label in labels]
                    if any(parts):
                        held["postal_address"].append(parts)
            return compare(identity.as_dict(), held)

        return self._run(work)

    # --- erasure ------------------------------------------------------------------

    def _cleared_references(self) -> list[tuple[str, str]]:
        """(table, column) of kept rows that point at rows erasure deletes."""
        cleared = []
        for edge in self.map.edges():
            source, target = self.map.tables[edge.from_table], self.map.tables[edge.to_table]
            refs = {(r.column, r.to_table, r.to_column) for r in source.references}
            if (edge.from_column, edge.to_table, edge.to_column) in refs:
                if target.erase == "delete" and source.erase != "delete":
                    cleared.append((source.name, edge.from_column))
        return cleared

    def _keys(self, conn, tables, identity) -> tuple[dict, dict, dict]:
        """(primary keys per table, shared rows kept per table, leaves): leaf tables
        erasure deletes set-based are not read, only the values that find the
        person's rows in them ({table: {column: [values]}})."""
        trav = self._traverse(conn, tables, identity, lambda n, r: None,
                              defer=self._deletable_leaves(tables))
        keys, kept = self._erasable(conn, tables, trav)
        leaves = {name: {column: _ordered(values) for column, values in conditions.items()}
                  for name, conditions in trav.leaves.items()}
        return keys, kept, leaves

    def _count_leaves(self, conn, tables, leaves) -> dict[str, int]:
        return {name: conn.execute(sa.select(sa.func.count()).select_from(tables[name]).where(
                    self._leaf_where(conn, tables[name], conditions))).scalar()
                for name, conditions in leaves.items()}

    def plan_erasure(self, run, identity) -> Outcome:
        def work(conn, tables):
            keys, kept, leaves = self._keys(conn, tables, identity)
            counts = {name: len(k) for name, k in keys.items()}
            counts |= self._count_leaves(conn, tables, leaves)
            return counts, kept

        counts, kept = self._run(work, read_only=True)
        plan = {}
        for name, spec in self.map.tables.items():
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
        for table, column in self._cleared_references():
            if table in plan:
                plan[table].setdefault("cleared_references", []).append(column)
        deletable = sum(p["rows"] for p in plan.values() if p["action"] != "retain")
        return Outcome(records=deletable, result={"tables": plan})

    def _order(self) -> list[str]:
        """Tables in the order erasure visits them: rows that point at others before
        the rows they point at, identity tables last (they are how we find the rest)."""
        order, visiting, done = [], set(), set()

        def visit(name):
            if name in done or name in visiting:
                return
            visiting.add(name)
            for other in self.map.tables.values():
                if any(r.to_table == name for r in other.references) and other.name != name:
                    visit(other.name)
            visiting.discard(name)
            done.add(name)
            order.append(name)

        for name in sorted(self.map.tables, key=lambda n: bool(self.map.tables[n].identity)):
            visit(name)
        return order

    @staticmethod
    def _stored_keys(path) -> tuple[dict, dict]:
        """(keys, leaves) from an erasure's key file (older files hold keys only)."""
        if not path.exists():
            return {}, {}
        with open_text_reader(path) as f:
            stored = json.load(f)
        if stored.get("version") == 2:
            return stored["keys"], stored["leaves"]
        return stored, {}

    def erase(self, run, identity, plan: dict, on_batch=None) -> Outcome:
        """Erase from the keys (and leaf values) taken when the run first started,
        kept in a file: a resumed attempt works from the same list. Rows found by
        primary key go ERASE_BATCH per transaction; leaf tables (see _leaves) are
        deleted on the server, LEAF_BATCH rows per statement, each in its own short
        transaction, until none is left (so a resumed attempt simply goes on). The
        progress cursor is recorded (and the attempt's fence checked) at most every
        PROGRESS_EVERY seconds and at the end: an attempt that resumes from an older
        cursor redoes a few batches, which changes nothing (deleting what is gone,
        masking, hashing or clearing what already is)."""
        keys_path = run_dir(run) / "erase-keys.json.enc"
        progress = dict(run.result.get("progress", {}))
        if keys_path.exists():
            keys, leaves = self._stored_keys(keys_path)
        else:
            keys, _kept, leaves = self._run(
                lambda conn, tables: self._keys(conn, tables, identity), read_only=True)
            with open_text_writer(keys_path) as f:
                json.dump({"version": 2, "keys": keys, "leaves": leaves}, f, default=str)
        cleared = defaultdict(list)
        for table, column in self._cleared_references():
            cleared[table].append(column)
        last = [time.monotonic()]

        def record(force=False):
            if on_batch and (force or time.monotonic() - last[0] >= PROGRESS_EVERY):
                on_batch(progress)  # records the cursor; a heartbeat; the fence
                last[0] = time.monotonic()

        def work(conn, tables):
            conn.commit()  # end the transaction reflection began: each batch has its own
            done = {}
            for name in self._order():
                spec, table = self.map.tables[name], tables[name]
                if name in leaves:
                    pk = table.c[spec.primary_key]
                    where = self._leaf_where(conn, table, leaves[name])
                    statement = _delete_some(conn, table, pk, where, LEAF_BATCH,
                                             order_by=table.c[next(iter(leaves[name]))])
                    while True:
                        with conn.begin():
                            deleted = conn.execute(statement).rowcount
                        progress[name] = progress.get(name, 0) + deleted
                        record()
                        if deleted < LEAF_BATCH:
                            break
                    done[name] = progress[name]
                    continue
                rows = keys.get(name, [])
                start = progress.get(name, 0)
                for i in range(start, len(rows), ERASE_BATCH):
                    batch = rows[i:i + ERASE_BATCH]
                    with conn.begin():
                        self._erase_batch(conn, spec, table, batch, cleared.get(name, []))
                    progress[name] = i + len(batch)
                    record()
                done[name] = len(rows) if spec.erase != "retain" else 0
            record(force=True)
            return done

        counts = self._run(work)
        return Outcome(records=sum(counts.values()),
                       result={"tables": counts, "progress": progress})

    def _erase_batch(self, conn, spec, table, keys, cleared_columns):
        pk = table.c[spec.primary_key]
        if spec.erase == "delete":
            for chunk in _chunks(conn, keys):
                conn.execute(sa.delete(table).where(_in(conn, pk, chunk)))
            return
        nulls = {c: None for c in cleared_columns}
        if spec.erase == "update":
            nulls |= {c.name: None for c in spec.columns.values() if c.erase == "null"}
        computed = [c for c in spec.columns.values()
                    if spec.erase == "update" and c.erase in ("mask", "hash")]
        if nulls:
            for chunk in _chunks(conn, keys):
                conn.execute(sa.update(table).where(_in(conn, pk, chunk)).values(**nulls))
        if computed:
            rows = [row for chunk in _chunks(conn, keys) for row in conn.execute(
                sa.select(pk, *(table.c[c.name] for c in computed)).where(_in(conn, pk, chunk))
            ).mappings()]
            unique = _unique_columns(table)
            params = []
            for row in rows:
                key = row[spec.primary_key]
                values = {"_pk": key}
                for c in computed:
                    length = getattr(table.c[c.name].type, "length", None)
                    value = row[c.name]
                    if c.erase == "hash":
                        # In a unique column two people's hashes must differ too (the
                        # same person erased twice, say): salt with the row's key.
                        if c.name in unique and isinstance(value, str):
                            value = keyed_hash(f"{key}:{value}", length) if not _HASHED.match(
                                value) else value
                        else:
                            value = keyed_hash(value, length)
                        values[c.name] = value
                    else:
                        values[c.name] = mask(value)
                params.append(values)
            if params:
                stmt = (sa.update(table).where(pk == sa.bindparam("_pk"))
                        .values({c.name: sa.bindparam(c.name) for c in computed}))
                conn.execute(stmt, params)

    def _left(self, name: str, row) -> bool:
        """Does this row still hold something erasure should have removed?"""
        spec = self.map.tables[name]
        return spec.erase == "delete" or (spec.erase == "update" and any(
            c.erase != "retain" and not _erased(row[c.name], c.erase)
            for c in spec.columns.values()))

    def remaining(self, run, identity) -> int:
        """Rows that still hold a value erasure should have removed: the rows erasure
        worked on, looked up again by primary key (their identity columns may be
        hashed now, so the identity alone would find nothing), and any row the
        identity still finds (added since, say)."""
        stored, stored_leaves = self._stored_keys(run_dir(run) / "erase-keys.json.enc")

        def leaf_rows(conn, tables, leaves):
            # Leaves are `erase: delete`: any row still there is left (at most
            # ARRAY_BATCH of them counted per leaf). Ordered by the looked-up column
            # so that PostgreSQL walks its index: right after a big erasure the
            # statistics still count the deleted rows, and the plain lookup was
            # planned as a sequential scan of the whole table (0.5-0.7 s here).
            found = set()
            for name, conditions in leaves.items():
                table = tables[name]
                query = (sa.select(table.c[self.map.tables[name].primary_key])
                         .where(self._leaf_where(conn, table, conditions))
                         .order_by(table.c[next(iter(conditions))]).limit(ARRAY_BATCH))
                found.update((name, key) for (key,) in conn.execute(query))
            return found

        def work(conn, tables):
            left = set()
            for name, keys in stored.items():
                spec, table = self.map.tables[name], tables[name]
                pk = table.c[spec.primary_key]
                for chunk in _chunks(conn, keys):
                    for row in conn.execute(sa.select(*self._mapped(table)).where(
                            _in(conn, pk, chunk))).mappings():
                        if self._left(name, row):
                            left.add((name, row[spec.primary_key]))
            left |= leaf_rows(conn, tables, stored_leaves)
            found = set()

            def on_row(name, row):
                if self._left(name, row):
                    found.add((name, row[self.map.tables[name].primary_key]))

            trav = self._traverse(conn, tables, identity, on_row,
                                  defer=self._deletable_leaves(tables))
            keys, _kept = self._erasable(conn, tables, trav)
            erasable = {n: set(k) for n, k in keys.items()}
            left |= {(n, k) for n, k in found if k in erasable.get(n, ())}
            left |= leaf_rows(conn, tables, trav.leaves)
            return len(left)

        return self._run(work, read_only=True)
