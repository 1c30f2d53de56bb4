"""Finding a person's rows: from the rows matching their identity, the map's
references followed both ways, hop by hop (never into another identity table's
rows: those are other people, reached only by their own identity; cycles end
where rows were seen already): one query per table per hop, with bound, batched
IN-lists or array parameters (SQLAlchemy Core quotes identifiers and binds every
value; no SQL is built by formatting strings). Rows are streamed to the caller as
they arrive; only primary keys and the values needed for the next hop are kept."""

import itertools
from collections import Counter, defaultdict

import sqlalchemy as sa

from requests_app.sources.sql import driver
from requests_app.sources.sql.driver import _arrays, _chunks, _in, _ordered, dict_row, psycopg
from requests_app.sources.sql.lookups import (compiled_lookup, email_in, mysql_lookup,
                                              mysql_params, run_mysql_many)
from requests_app.sources.sql.keys import row_key
from requests_app.sources.sql.shape import MapShape

_BULK = object()  # a leaf table with too many rows to read one by one: copied instead


def _values_by_column():
    """{table: {column: set of values}}"""
    return defaultdict(lambda: defaultdict(set))


def normal_email(value):
    """An email address as compared: trimmed, lower case (stored values are
    compared as LOWER(TRIM(column)) in the database, on every engine)."""
    return value.strip().lower() if isinstance(value, str) else value


def _matcher(conn, table, column: str, values, normal: bool):
    """`column IN values`, or LOWER(TRIM(column)) IN values for an email column
    (driver.email_in: served by the column's index on MariaDB/MySQL)."""
    if normal:
        return email_in(conn, table.c[column], list(values))
    return _in(conn, table.c[column], values)


class Traversal:
    """What a traversal found: every row's key, which rows are the person's own,
    and, for rows that may be shared, the values other rows refer to them by."""

    def __init__(self):
        self.seen: dict[str, set] = defaultdict(set)
        self.owned: dict[str, set] = defaultdict(set)
        self.shared_values: dict[str, dict] = defaultdict(dict)
        # Rows that one of the person's rows leads to but that a reference also
        # ties to someone else: never shown, erased or counted as theirs.
        self.withheld: dict[str, set] = defaultdict(set)
        self.unsupplied: set[str] = set()  # identity types the map has, the request not
        self.own_refs: dict[tuple, Counter] = defaultdict(Counter)
        # Deferred leaf tables (see MapShape.leaves): not read, only the values
        # that find the person's rows in them, {table: {column: values}}.
        self.leaves: dict[str, dict[str, set]] = _values_by_column()


def traverse(conn, tables, shape: MapShape, identity, on_row, defer=(), bulk=(),
             through=()) -> Traversal:
    """Find the person's rows hop by hop; call on_row(table_name, row) once per row.
    When it returns False (a row outside a Right to Know period), the row's
    references are followed only into the tables in `through` (those that judge
    each row by its own date): what is reached only through it is left out.
    Tables in `defer` (leaves, see MapShape.leaves) are not read: the values that
    would find the rows are kept in trav.leaves instead. Tables in `bulk` (leaves
    too) are read as usual unless the lookup finds more than BATCH rows: then they
    are left to the caller in the same way (gathering copies them).

    A row is the person's own when their identity finds it, or when it refers
    to a row of theirs (their orders). A row that one of theirs refers to (the
    address an order was shipped to) may be shared with other people: it is
    found, but the rows that refer to it are not followed, or traversal would
    walk through a shared row into someone else's data."""
    walk = _Walk(conn, tables, shape, on_row, defer, bulk, through)
    walk.start(identity)
    while walk.wanted:
        walk.hop()
    return walk.trav


class _Hop:
    """The values one hop found to follow in the next, per table and column: of
    the person's own rows and of rows that may be shared, those on_row kept and
    those it left out."""

    def __init__(self):
        self.owned, self.shared = _values_by_column(), _values_by_column()
        self.left_owned, self.left_shared = _values_by_column(), _values_by_column()


class _Walk:
    def __init__(self, conn, tables, shape: MapShape, on_row, defer, bulk, through):
        self.conn, self.tables, self.shape, self.on_row = conn, tables, shape, on_row
        self.defer, self.bulk, self.through = defer, bulk, through
        self.trav = Traversal()
        self.unique = shape.unique(tables)
        self.wanted: dict[str, dict[str, set]] = _values_by_column()
        self.owning: dict[str, set] = defaultdict(set)  # columns whose match makes a row theirs
        self.mine: dict[tuple, set] = defaultdict(set)  # values of the person's identity rows
        self.known: dict[tuple, set] = defaultdict(set)  # values of unique columns of seen rows
        self.normal: dict[str, set] = defaultdict(set)  # email columns, compared normalised

    def start(self, identity) -> None:
        """The first hop looks for the identity's values in the identity columns
        (every column of a type: email and alt_email); emails trimmed and in lower
        case on both sides. A type the request does not supply is not looked up."""
        lookups = identity.lookup_values()
        for name, spec in self.shape.map.tables.items():
            for field_name, column in spec.identity_columns:
                value = lookups.get(field_name)
                if not value:
                    self.trav.unsupplied.add(field_name)
                    continue
                if field_name == "email":
                    self.normal[name].add(column)
                    value = normal_email(value)
                self.wanted[name][column].add(value)
                self.owning[name].add(column)

    def hop(self) -> None:
        """Look up what is wanted, take the rows found, and work out the next hop."""
        trav, hop = self.trav, _Hop()
        # A leaf left to the caller once stays so in later hops (one copy of it).
        skip = set(self.defer) | set(trav.leaves)
        for name, conditions in self.wanted.items():
            if name in skip:
                self._leave(name, conditions)
        fetched = _fetch(self.conn, self.tables, self.shape,
                         {n: c for n, c in self.wanted.items() if n not in skip}, bulk=self.bulk,
                         normal=self.normal)
        for name, conditions in self.wanted.items():
            if name in skip:
                continue
            rows = fetched[name]
            if rows is _BULK:
                if not trav.seen.get(name):
                    self._leave(name, conditions)
                    continue
                # Some of its rows were read one by one in an earlier hop: these
                # too, streamed, so that the table stays one collection.
                rows = _select(self.conn, self.tables[name], self.shape, conditions)
            self._take(name, rows, conditions, hop)
        self.normal = defaultdict(set)  # identity columns are looked up in the first hop
        self.wanted, self.owning = self._next(hop)

    def _leave(self, name, conditions) -> None:
        for column, values in conditions.items():
            self.trav.leaves[name][column].update(values)

    def _take(self, name, rows, conditions, hop: _Hop) -> None:
        """The rows of one table found in this hop: each once, the person's own or
        maybe shared, never someone else's."""
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return  # nothing found: no entry for the table anywhere
        rows = itertools.chain((first,), rows)
        trav, on_row, spec = self.trav, self.on_row, self.shape.map.tables[name]
        follow, to_people = self.shape.follows[name], self.shape.to_people[name]
        seen, forwards = trav.seen[name], self.shape.forwards[name]
        known = [(c, self.known[(name, c)]) for c in self.unique[name]]  # once per table
        single = spec.key[0] if len(spec.key) == 1 else None
        for row in rows:
            key = row[single] if single is not None else row_key(spec, row)
            if key in seen:
                continue
            seen.add(key)
            owned, by_identity = self._owned(name, spec, row, conditions)
            if not by_identity and to_people and self._someone_elses(name, row):
                trav.withheld[name].add(key)  # linked to them and to others: withheld
                continue
            if owned:
                trav.owned[name].add(key)
                if spec.identity:
                    for column in row.keys():
                        self.mine[(name, column)].add(row[column])
                # Only the person's own rows count as their references to a
                # shared row (a kept shared row's links are not theirs).
                for column in forwards:
                    trav.own_refs[(name, column)][row[column]] += 1
            else:
                trav.shared_values[name][key] = {c: row[c] for c in follow}
            if on_row(name, row) is False:  # left out (outside a period)
                target = (hop.left_owned if owned else hop.left_shared)[name]
            else:
                for column, values in known:
                    values.add(row[column])
                target = (hop.owned if owned else hop.shared)[name]
            for column in follow:
                if row[column] is not None:
                    target[column].add(row[column])

    def _owned(self, name, spec, row, conditions) -> tuple[bool, bool]:
        """(the person's own row: a column matched what finds their rows, found by
        their identity itself)."""
        owning = self.owning.get(name)
        if not owning:
            return False, False
        normal = self.normal.get(name, ())
        matched = [c for c in owning
                   if (normal_email(row[c]) if c in normal else row[c]) in conditions.get(c, ())]
        if not matched:
            return False, False
        identity_cols = self.shape.identity_cols[name]
        return True, any(c in identity_cols for c in matched)

    def _someone_elses(self, name, row) -> bool:
        """Does any of the row's references to an identity table name a person
        other than this one (a message's recipient, an order's other customer)?
        Checked for every row not found by the identity itself, the person's own
        included: one of their references does not make the others theirs."""
        mine = self.mine
        return any(row[col] is not None and row[col] not in mine[(person, pcol)]
                   for col, person, pcol in self.shape.to_people[name])

    def _next(self, hop: _Hop) -> tuple[dict, dict]:
        """(wanted, owning) of the next hop: the values found followed along every
        edge, except into identity tables."""
        wanted, owning = _values_by_column(), defaultdict(set)
        tables = self.shape.map.tables
        for edge in self.shape.edges:
            if tables[edge.to_table].identity and (
                    edge.forward or edge.from_table == edge.to_table
                    or not tables[edge.from_table].identity):
                # Rows of an identity table are people: the rows one of theirs
                # points at (a "referred by" link, a household) are someone else,
                # and so are the rows that point at an ordinary row of theirs (the
                # customer whose primary account is the person's joint account).
                # The rows that point at the person's own identity rows are found
                # (the service requests an employee handled), and withheld when
                # tied to others too.
                continue
            values = set(hop.owned.get(edge.from_table, {}).get(edge.from_column, ()))
            dated = edge.to_table in self.through  # judged by its own date: reached anyway
            if dated:
                values |= hop.left_owned.get(edge.from_table, {}).get(edge.from_column, set())
            if edge.forward:
                values |= hop.shared.get(edge.from_table, {}).get(edge.from_column, set())
                if dated:
                    values |= hop.left_shared.get(edge.from_table, {}).get(edge.from_column,
                                                                           set())
                # A unique column's rows seen already need no second look.
                values -= self.known.get((edge.to_table, edge.to_column), set())
            else:
                owning[edge.to_table].add(edge.to_column)
            if values:
                wanted[edge.to_table][edge.to_column].update(values)
        return wanted, owning


# --- lookups -------------------------------------------------------------------------


def leaf_where(conn, table, conditions: dict):
    """The rows of a leaf table that any of the values finds ({column: values})."""
    return sa.or_(*(_in(conn, table.c[column], chunk)
                    for column, values in conditions.items()
                    for chunk in _chunks(conn, _ordered(values))))


def _fetch(conn, tables, shape: MapShape, wanted: dict, bulk=(), normal=None) -> dict:
    """One hop's lookups, {table: rows}. On PostgreSQL each is one statement per
    table with one array parameter per column (emails compared as
    LOWER(TRIM(column))) and a LIMIT one above BATCH, prepared on the server and
    sent straight to psycopg; a table that reaches the limit is read again,
    streamed (see _stream). On MariaDB/MySQL: _in_lists. On SQLite: _select,
    lazily."""
    normal = normal or {}
    if conn.dialect.name in ("mysql", "mariadb"):
        return _in_lists(conn, tables, shape, wanted, normal)
    if not _arrays(conn) or psycopg is None or not wanted:
        return {name: _select(conn, tables[name], shape, conditions, normal.get(name))
                for name, conditions in wanted.items()}
    pg = conn.connection.driver_connection
    fetched, pending = {}, []
    for name, conditions in wanted.items():
        columns = tuple(sorted(conditions))
        values = [_ordered(conditions[c]) for c in columns]
        if any(len(v) > driver.ARRAY_BATCH for v in values):
            fetched[name] = _select(conn, tables[name], shape, conditions, normal.get(name))
            continue
        sql, streamed, params = compiled_lookup(conn, tables[name], columns, shape.needed(name),
                                                frozenset(normal.get(name, ())))
        params = dict(params)
        for i, v in enumerate(values):
            params[f"v{i}"] = v
        pending.append((name, sql, streamed, params))
    for (name, _sql, streamed, params), rows in zip(pending, _lookups(pg, pending)):
        if len(rows) <= driver.BATCH:
            fetched[name] = rows
        else:
            fetched[name] = _BULK if name in bulk else _stream(pg, streamed, params)
    return fetched


def _lookups(pg, pending: list) -> list[list]:
    """The rows of a hop's lookups, (name, sql, streamed sql, params) each. One is
    a statement prepared on the server (one round trip, no planning); several go
    in one round trip, as one query of several statements with their values bound
    by psycopg itself (ClientCursor, as a simple query carries no parameters):
    planning these index lookups costs less than the round trips they spare."""
    if len(pending) == 1:
        with pg.cursor(row_factory=dict_row) as cursor:
            return [_lookup(cursor, pending[0][1], pending[0][3])]
    with psycopg.ClientCursor(pg, row_factory=dict_row) as cursor:
        cursor.execute(";\n".join(cursor.mogrify(sql, params)
                                   for _name, sql, _streamed, params in pending))
        results = []
        for _lookup_ in pending:
            results.append(cursor.fetchall())
            cursor.nextset()
    return results


def _in_lists(conn, tables, shape: MapShape, wanted: dict, normal: dict) -> dict:
    """A hop's MariaDB/MySQL lookups, {table: rows}: for a few values each, one
    statement compiled once (lookups.mysql_lookup) with a LIMIT one above BATCH,
    all of the hop's in one round trip (lookups.run_mysql_many). More values than
    BATCH, or a lookup that reaches the limit: _select (batched IN-lists, the rows
    streamed)."""
    fetched, batched = {}, []
    for name, conditions in wanted.items():
        columns = tuple(sorted(conditions))
        values = [_ordered(conditions[c]) for c in columns]
        if sum(len(v) for v in values) > driver.BATCH:
            fetched[name] = _select(conn, tables[name], shape, conditions, normal.get(name))
            continue
        emails = {c: len(conditions[c]) for c in columns if c in normal.get(name, ())}
        sql, names, processors = mysql_lookup(conn, tables[name], columns, shape.needed(name),
                                              tuple(emails.items()))
        batched.append((name, (sql, names, processors, mysql_params(columns, values, emails))))
    results = run_mysql_many(conn, [lookup for _name, lookup in batched])
    for (name, _lookup), rows in zip(batched, results):
        fetched[name] = (rows if len(rows) <= driver.BATCH else
                         _select(conn, tables[name], shape, wanted[name], normal.get(name)))
    return fetched


def _lookup(cursor, sql, params) -> list:
    """One lookup's rows: a statement prepared on the server the first time this
    connection sends it (one round trip each time after that, no planning)."""
    cursor.execute(sql, params, prepare=True)
    return cursor.fetchall()


def _stream(pg, sql, params):
    """A lookup that finds very many rows, read on a server-side cursor BATCH rows
    per round trip (memory stays bounded), in a transaction of its own."""
    with pg.transaction():
        with pg.cursor(name="pp_lookup", row_factory=dict_row) as cursor:
            cursor.itersize = driver.BATCH
            cursor.execute(sql, {k: v for k, v in params.items() if k != "limit"})
            yield from cursor


def _select(conn, table, shape: MapShape, conditions: dict[str, set], normal=None):
    """One query per table per hop: OR of one array parameter per column on
    PostgreSQL (ARRAY_BATCH values each); of IN-lists batched at BATCH values
    elsewhere. `normal`: the email columns, compared as LOWER(TRIM(column))."""
    if _arrays(conn) and psycopg is not None:
        # Only for many rows or values (see _fetch): streamed on a server-side
        # cursor in a transaction of its own (reads run in autocommit mode).
        columns = tuple(sorted(conditions))
        chunks = [_chunks(conn, _ordered(conditions[c])) for c in columns]
        _limited, sql, params = compiled_lookup(conn, table, columns, shape.needed(table.name),
                                                frozenset(normal or ()))
        pg = conn.connection.driver_connection
        for i in range(max(len(c) for c in chunks)):
            values = {f"v{j}": c[i] if i < len(c) else [] for j, c in enumerate(chunks)}
            yield from _stream(pg, sql, {**params, **values})
        return
    batch, chunks = driver.BATCH, []
    for column, values in conditions.items():
        ordered = _ordered(values)
        chunks.extend((column, ordered[i:i + batch]) for i in range(0, len(ordered), batch))
    # Pack the chunks into as few statements as possible, BATCH values each.
    selected = shape.mapped(table)
    statement, size = [], 0
    for column, values in chunks:
        if statement and size + len(values) > batch:
            yield from _run_select(conn, table, selected, statement, normal)
            statement, size = [], 0
        statement.append((column, values))
        size += len(values)
    if statement:
        yield from _run_select(conn, table, selected, statement, normal)


def _run_select(conn, table, selected: list, parts, normal=None):
    """Most lookups find a few rows: one round trip on a client-side cursor, with
    a LIMIT one above BATCH. Only when that limit is reached (a subject with
    very many rows in this table) is the query run again on a server-side
    cursor, streamed BATCH rows at a time, so memory stays bounded."""
    query = sa.select(*selected).where(sa.or_(*(
        _matcher(conn, table, col, vals, col in (normal or ())) for col, vals in parts)))
    rows = conn.execute(query.limit(driver.BATCH + 1)).mappings().all()
    if len(rows) <= driver.BATCH:
        yield from rows
        return
    del rows
    result = conn.execution_options(stream_results=True,
                                    yield_per=driver.BATCH).execute(query)
    yield from result.mappings()
