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

import hashlib
import hmac
import json
import os
import re
from collections import Counter, defaultdict
from functools import lru_cache

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy import exc as sa_exc

from requests_app.files import open_text_reader, open_text_writer
from requests_app.sources.base import Connector, Outcome, SourceError, TransientSourceError
from requests_app.sources.datamap import DatasetMap, DatasetMapError, parse
from requests_app.sources.records import run_dir

BATCH = 1000  # values per IN-list, rows per erasure transaction


def engine_url(dsn: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix):]
    return dsn


@lru_cache(maxsize=32)
def _engine(url: str) -> sa.Engine:
    kwargs = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs |= {"pool_size": 2, "max_overflow": 2,
                   "connect_args": {"connect_timeout": 10,
                                    "options": "-c lock_timeout=5000 -c statement_timeout=300000"}}
    return sa.create_engine(url, **kwargs)


_REFLECTED: dict[tuple, dict] = {}


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
        return _engine(engine_url(dsn))

    def tables(self, conn) -> dict[str, sa.Table]:
        """The map's tables as reflected from the database, once per process."""
        key = (str(conn.engine.url), tuple(sorted(self.map.tables)))
        if key not in _REFLECTED:
            metadata = sa.MetaData()
            try:
                metadata.reflect(bind=conn, only=list(self.map.tables))
            except sa_exc.InvalidRequestError as exc:
                raise SourceError(f"{self.source.name}: {exc}") from None
            _REFLECTED[key] = {name: metadata.tables[name] for name in self.map.tables}
        return _REFLECTED[key]

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

    def _traverse(self, conn, tables, identity, on_row) -> "Traversal":
        """Find the person's rows hop by hop; call on_row(table_name, row) once per row.

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
        edges = self.map.edges()
        unique = {name: _unique_columns(tables[name]) for name in self.map.tables}
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
            for name, conditions in wanted.items():
                spec, table = self.map.tables[name], tables[name]
                follow = self.map.referenced_columns(name)
                forward_cols = {e.from_column for e in edges if e.from_table == name and e.forward}
                for row in self._select(conn, table, conditions):
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
                    on_row(name, row)
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
                if edge.forward:
                    values |= shared_now.get(edge.from_table, {}).get(edge.from_column, set())
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
                ordered = _ordered(values)
                for i in range(0, len(ordered), BATCH):
                    query = (sa.select(referrer, sa.func.count()).where(
                        referrer.in_(ordered[i:i + BATCH])).group_by(referrer))
                    for value, total in conn.execute(query):
                        if total > mine.get(value, 0):
                            still_used.add((edge.to_column, value))
            erasable_shared = {k for k, v in shared.items()
                               if not any(item in still_used for item in v.items())}
            if len(shared) > len(erasable_shared):
                kept[name] = len(shared) - len(erasable_shared)
            keys[name] = _ordered(trav.owned.get(name, set()) | erasable_shared)
        return keys, kept

    def _select(self, conn, table, conditions: dict[str, set]):
        """One query per table per hop: OR of IN-lists, batched at BATCH values."""
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
        query = sa.select(table).where(sa.or_(*(table.c[col].in_(vals) for col, vals in parts)))
        result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
        for row in result.mappings():
            yield row

    def _run(self, work):
        try:
            with self.engine.connect() as conn:
                return work(conn, self.tables(conn))
        except sa_exc.SQLAlchemyError as exc:
            kind = TransientSourceError if _transient(exc) else SourceError
            raise kind(f"{self.source.name}: database error ({type(exc).__name__})") from None

    # --- gathering ------------------------------------------------------------------

    def gather(self, run, identity, sink) -> Outcome:
        def work(conn, tables):
            def on_row(name, row):
                spec = self.map.tables[name]
                categories = {c.name: c.category for c in spec.columns.values()}
                sink.write(name, {c: row[c] for c in spec.columns}, categories)

            trav = self._traverse(conn, tables, identity, on_row)
            return {name: len(keys) for name, keys in trav.seen.items()}

        counts = self._run(work)
        return Outcome(records=sum(counts.values()), result={"tables": counts})

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

    def _keys(self, conn, tables, identity) -> tuple[dict, dict]:
        return self._erasable(conn, tables,
                              self._traverse(conn, tables, identity, lambda n, r: None))

    def plan_erasure(self, run, identity) -> Outcome:
        keys, kept = self._run(lambda conn, tables: self._keys(conn, tables, identity))
        plan = {}
        for name, spec in self.map.tables.items():
            count = len(keys.get(name, []))
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

    def erase(self, run, identity, plan: dict, on_batch=None) -> Outcome:
        keys_path = run_dir(run) / "erase-keys.json.enc"
        progress = dict(run.result.get("progress", {}))
        if keys_path.exists():
            with open_text_reader(keys_path) as f:
                keys = json.load(f)
        else:
            keys, _kept = self._run(lambda conn, tables: self._keys(conn, tables, identity))
            with open_text_writer(keys_path) as f:
                json.dump(keys, f, default=str)
        cleared = defaultdict(list)
        for table, column in self._cleared_references():
            cleared[table].append(column)

        def work(conn, tables):
            conn.commit()  # end the transaction reflection began: each batch has its own
            done = {}
            for name in self._order():
                spec, table = self.map.tables[name], tables[name]
                rows = keys.get(name, [])
                start = progress.get(name, 0)
                for i in range(start, len(rows), BATCH):
                    batch = rows[i:i + BATCH]
                    with conn.begin():
                        self._erase_batch(conn, spec, table, batch, cleared.get(name, []))
                    progress[name] = i + len(batch)
                    if on_batch:
                        on_batch(progress)  # records the cursor; a heartbeat
                done[name] = len(rows) if spec.erase != "retain" else 0
            return done

        counts = self._run(work)
        return Outcome(records=sum(counts.values()),
                       result={"tables": counts, "progress": progress})

    def _erase_batch(self, conn, spec, table, keys, cleared_columns):
        pk = table.c[spec.primary_key]
        if spec.erase == "delete":
            conn.execute(sa.delete(table).where(pk.in_(keys)))
            return
        nulls = {c: None for c in cleared_columns}
        if spec.erase == "update":
            nulls |= {c.name: None for c in spec.columns.values() if c.erase == "null"}
        computed = [c for c in spec.columns.values()
                    if spec.erase == "update" and c.erase in ("mask", "hash")]
        if nulls:
            conn.execute(sa.update(table).where(pk.in_(keys)).values(**nulls))
        if computed:
            rows = conn.execute(
                sa.select(pk, *(table.c[c.name] for c in computed)).where(pk.in_(keys))
            ).mappings().all()
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
        keys_path = run_dir(run) / "erase-keys.json.enc"
        stored = {}
        if keys_path.exists():
            with open_text_reader(keys_path) as f:
                stored = json.load(f)

        def work(conn, tables):
            left = set()
            for name, keys in stored.items():
                spec, table = self.map.tables[name], tables[name]
                pk = table.c[spec.primary_key]
                for i in range(0, len(keys), BATCH):
                    for row in conn.execute(sa.select(table).where(
                            pk.in_(keys[i:i + BATCH]))).mappings():
                        if self._left(name, row):
                            left.add((name, row[spec.primary_key]))
            found = set()

            def on_row(name, row):
                if self._left(name, row):
                    found.add((name, row[self.map.tables[name].primary_key]))

            keys, _kept = self._erasable(conn, tables,
                                         self._traverse(conn, tables, identity, on_row))
            left |= {(n, k) for n, k in found if k in set(keys.get(n, ()))}
            return len(left)

        return self._run(work)
