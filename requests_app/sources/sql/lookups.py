"""A hop's lookups compiled once per (database, table, columns) and sent straight
to the DBAPI driver: SQL text made by SQLAlchemy (identifiers quoted, every
value a bound parameter; nothing built by formatting strings), kept in
driver._LOOKUPS (driver.forget drops it with the reflection).

- PostgreSQL: one array parameter per column (`c = ANY(%(v0)s)`), prepared on
  the server by psycopg (compiled_lookup).
- MariaDB/MySQL: one IN-list per column, bound by the driver itself (PyMySQL and
  mysqlclient render a tuple as `(a, b, ...)`), the whole lookup one round trip
  on the DBAPI cursor (mysql_lookup, run_mysql), without SQLAlchemy's per-call
  statement building, which cost more than the round trip itself.
- Emails are compared as LOWER(TRIM(column)) on every engine (email_in); where
  the database indexes no expression (MariaDB/MySQL), the column's own
  case-insensitive index narrows the rows first."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from requests_app.sources.sql import driver


def compiled_lookup(conn, table, columns: tuple, needed: tuple,
                    normal: frozenset = frozenset()) -> tuple[str, str, dict]:
    """(SQL with LIMIT, SQL without, default parameters) of the PostgreSQL lookup
    of `table` by `columns`, reading the columns `needed`: `SELECT ... WHERE c0 =
    ANY(%(v0)s) OR c1 = ANY(%(v1)s) ...`; a column in `normal` (an email) is
    compared as `LOWER(TRIM(c)) = ANY(...)` (an expression index serves it)."""
    key = (driver.url_key(conn.engine), table.name, columns, needed, normal)
    if key not in driver._LOOKUPS:
        query = sa.select(*(table.c[name] for name in needed)).where(sa.or_(*(
            (_normalised(table.c[c]) if c in normal else table.c[c])
            == sa.any_(sa.bindparam(f"v{i}", type_=ARRAY(table.c[c].type)))
            for i, c in enumerate(columns))))
        # By one column: in that column's order, so that the LIMIT stays on its
        # index. Unordered, a lookup that the statistics say finds many rows
        # (a big subject's web_events) may be planned as a sequential scan that
        # "soon" finds BATCH+1 of them, and reads the whole table when the rows
        # are at its end. Never by an email: its rows are few, and ordering by the
        # column could lead the planner to the column's own (not the expression's)
        # index.
        ordered = (query.order_by(table.c[columns[0]])
                   if len(columns) == 1 and not normal else query)
        limited = ordered.limit(sa.bindparam("limit", driver.BATCH + 1, type_=sa.Integer))
        compiled = limited.compile(dialect=conn.dialect)
        params = {k: v for k, v in compiled.params.items() if not k.startswith("v")}
        driver._LOOKUPS[key] = (str(compiled), str(query.compile(dialect=conn.dialect)),
                                params)
    return driver._LOOKUPS[key]


def mysql_lookup(conn, table, columns: tuple, needed: tuple,
                 normal: tuple = ()) -> tuple[str, tuple, dict]:
    """(SQL, its parameters' names in order (empty when the driver takes them by
    name: PyMySQL), result processors by column) of the
    MariaDB/MySQL lookup of `table` by `columns` (`c0 IN %s OR c1 IN %s ...`, with
    a LIMIT), reading the columns `needed`. `normal`: (column, number of values)
    of the email columns (see email_in: one LIKE per value)."""
    key = (driver.url_key(conn.engine), table.name, columns, needed, normal)
    if key not in driver._LOOKUPS:
        counts = dict(normal)
        where = [_mysql_condition(conn, table.c[name], i, counts.get(name))
                 for i, name in enumerate(columns)]
        selected = [table.c[name] for name in needed]
        if counts and len(where) > 1:
            # By email and by more: one SELECT per column, UNION ALL, so that each
            # is a range scan of its own index with the exact comparison made on
            # the index entries (an OR would merge the indexes and read every row
            # a LIKE narrowed to). A row both find comes twice: traversal takes
            # each row once.
            query = sa.union_all(*(sa.select(*selected).where(w) for w in where))
        else:
            query = sa.select(*selected).where(sa.or_(*where))
        compiled = query.limit(sa.bindparam("limit")).compile(dialect=conn.dialect)
        names = tuple(compiled.positiontup or ())
        processors = {name: p for name in needed
                      if (p := table.c[name].type.result_processor(conn.dialect, None))}
        driver._LOOKUPS[key] = (str(compiled), names, processors)
    return driver._LOOKUPS[key]


def _mysql_condition(conn, column, i: int, count: int | None):
    """Column i's condition in a mysql_lookup: `c IN %(vi)s`, or for an email
    column with `count` values, LOWER(TRIM(c)) IN %(vi)s narrowed as email_in."""
    values = sa.bindparam(f"v{i}")
    if count is None:
        return column.op("IN")(values)
    exact = _normalised(column).op("IN")(values)
    if not _ignores_case(conn, column):
        return exact
    return sa.and_(sa.or_(*(column.like(sa.bindparam(f"p{i}_{j}"), escape="!")
                            for j in range(count)), column.like(sa.bindparam(f"s{i}"))), exact)


def mysql_params(columns: tuple, values: list[list], normal: dict) -> dict:
    """The parameters of a mysql_lookup: each column's values as a tuple, and for
    an email column the LIKE patterns that narrow its rows (see email_in)."""
    params = {"limit": driver.BATCH + 1}
    for i, (name, vals) in enumerate(zip(columns, values)):
        params[f"v{i}"] = tuple(vals)
        if name in normal:
            params[f"s{i}"] = " %"
            for j, value in enumerate(vals):
                params[f"p{i}_{j}"] = _like_prefix(value)
    return params


def run_mysql(conn, sql: str, names: tuple, processors: dict, params: dict) -> list[dict]:
    """A mysql_lookup's rows, as dicts, on the connection's DBAPI cursor. A driver
    error is raised as SQLAlchemy wraps it (so that driver.error_kind tells a
    transient one), the connection dropped from the pool when it is broken."""
    raw = conn.connection.driver_connection
    args = tuple(params[name] for name in names) if names else params
    try:
        with raw.cursor() as cursor:
            cursor.execute(sql, args)
            keys = [d[0] for d in cursor.description]
            rows = [dict(zip(keys, row)) for row in cursor.fetchall()]
    except conn.dialect.loaded_dbapi.Error as exc:
        broken = conn.dialect.is_disconnect(exc, raw, None)
        if broken:
            conn.invalidate()
        raise sa.exc.DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error,
                                         hide_parameters=True,
                                         connection_invalidated=broken,
                                         dialect=conn.dialect) from exc
    for name, process in processors.items():
        for row in rows:
            row[name] = process(row[name])
    return rows


def run_mysql_many(conn, lookups: list) -> list[list[dict]]:
    """The rows of several mysql_lookups, (sql, names, processors, params) each,
    in one round trip when the connection takes several statements in one query
    (the read engine's, driver.MULTI_STATEMENTS): each statement rendered by the
    driver itself with its values (as execute does), the results read in turn.
    Otherwise, or for one lookup, run_mysql each."""
    raw = conn.connection.driver_connection
    if len(lookups) < 2 or not getattr(raw, "client_flag", 0) & driver.MULTI_STATEMENTS:
        return [run_mysql(conn, *lookup) for lookup in lookups]
    results = []
    try:
        with raw.cursor() as cursor:
            text = ";\n".join(cursor.mogrify(sql, tuple(params[n] for n in names) if names
                                              else params)
                               for sql, names, _processors, params in lookups)
            cursor.execute(text)  # no parameters: the text is sent as it is
            for _sql, _names, processors, _params in lookups:
                keys = [d[0] for d in cursor.description]
                rows = [dict(zip(keys, row)) for row in cursor.fetchall()]
                for name, process in processors.items():
                    for row in rows:
                        row[name] = process(row[name])
                results.append(rows)
                cursor.nextset()
    except conn.dialect.loaded_dbapi.Error as exc:
        conn.invalidate()  # result sets may be left unread: the connection goes
        raise sa.exc.DBAPIError.instance(None, None, exc, conn.dialect.loaded_dbapi.Error,
                                         hide_parameters=True, connection_invalidated=True,
                                         dialect=conn.dialect) from exc
    return results


def _normalised(column):
    """An email column as compared: LOWER(TRIM(column))."""
    return sa.func.lower(sa.func.trim(column))


def email_in(conn, column, values: list):
    """`LOWER(TRIM(column)) IN values` (the values trimmed and in lower case), in a
    form the column's own index serves where the database indexes no expression:
    on MariaDB/MySQL, when the column's collation ignores case (`..._ci`: the
    default), the rows are first narrowed on that index by `column LIKE 'value%'`
    (any case; trailing spaces included) or `column LIKE ' %'` (a leading space),
    then compared exactly. Elsewhere (PostgreSQL and SQLite compare exactly: an
    expression index serves it there), the exact comparison alone."""
    exact = _normalised(column).in_(values)
    if not _ignores_case(conn, column):
        return exact
    return sa.and_(sa.or_(*(column.like(_like_prefix(v), escape="!") for v in values),
                          column.like(" %")), exact)


def _like_prefix(value: str) -> str:
    """`value%` as a LIKE pattern, the value's own wildcards escaped (by `!`)."""
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


def _ignores_case(conn, column) -> bool:
    """Does a MariaDB/MySQL column compare case-insensitively (its collation, else
    its table's, as reflected, ends `_ci`)? False on other engines, and when the
    reflection does not say."""
    if conn.dialect.name not in ("mysql", "mariadb") or not isinstance(column.type, sa.String):
        return False
    table, collation = column.table, column.type.collation
    for dialect in (conn.dialect.name, "mysql"):
        if not collation and dialect in table.dialect_options:
            collation = table.dialect_options[dialect].get("collate")
    return bool(collation) and collation.lower().endswith("_ci")
