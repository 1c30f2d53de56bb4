"""The databases underneath: one engine (and pool) per database per process, with
each engine's session settings (PostgreSQL, MariaDB/MySQL, SQLite), their ways of
binding many values, `COPY ... TO STDOUT` read with libpq (PostgreSQL only), the
map's tables as reflected from a database (cached per process, as the lookups
sql/lookups.py compiles for it), and which database errors are worth a retry.

What differs between the engines, and where:
- session limits: a lock is waited for 5 s and a statement may run 5 min, set as
  connection options on PostgreSQL and as session variables on MariaDB/MySQL
  (_engine); SQLite has neither (a file, one writer).
- many values: one array parameter on PostgreSQL, batched IN-lists elsewhere (_in).
- a bounded DELETE: by ctid on PostgreSQL, DELETE ... LIMIT on MariaDB/MySQL (which
  refuses a LIMIT in an IN subquery and a subquery on the table being deleted
  from), IN (SELECT ... LIMIT) on SQLite (_delete_some).
- reads in autocommit mode on PostgreSQL and MariaDB/MySQL (no read transaction
  holding a snapshot or, on MariaDB, metadata locks that block ALTER TABLE for the
  whole traversal): a twin engine whose connections are in that mode from the
  start (reads_of).
- lookups: prepared array lookups through psycopg on PostgreSQL, IN-lists bound by
  the MariaDB/MySQL driver itself (sql/lookups.py); COPY: PostgreSQL only.
- text comparison: PostgreSQL and SQLite compare exactly, MariaDB/MySQL by the
  column's collation (case-insensitive by default): emails are compared as
  LOWER(TRIM(column)) everywhere (lookups.email_in), so the same rows match on
  all three.

BATCH and ARRAY_BATCH are read from this module at each use (`driver.BATCH`) by
the modules that use them, so that setting them here changes them everywhere."""

import select
import threading
import time
import warnings
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles

try:
    import psycopg
    from psycopg.rows import dict_row
except ImportError:  # SQLite only (the embedded demo)
    psycopg = dict_row = None

from requests_app.sources.base import SourceError, TransientSourceError
from requests_app.sources.sql.shape import MapShape

BATCH = 1000  # values per IN-list (MariaDB/MySQL, SQLite); rows read per round trip when streaming
ARRAY_BATCH = 50_000  # values per array parameter (PostgreSQL: one `= ANY(%s)`)


_DRIVERS = {"postgres://": "postgresql+psycopg://", "postgresql://": "postgresql+psycopg://",
            "mysql://": "mysql+pymysql://", "mariadb://": "mariadb+pymysql://"}


def engine_url(dsn: str) -> str:
    """The SQLAlchemy URL of a DSN: a bare `postgres://` or `mysql://` gets the
    driver we install (psycopg 3, PyMySQL); a URL naming its driver is kept."""
    for prefix, url in _DRIVERS.items():
        if dsn.startswith(prefix):
            return url + dsn[len(prefix):]
    return dsn


_ENGINE_LOCK = threading.Lock()


# MariaDB/MySQL session limits, the counterparts of PostgreSQL's lock_timeout and
# statement_timeout: row locks (innodb_lock_wait_timeout) and table locks taken by
# DDL (lock_wait_timeout) waited for 5 s; a statement stopped after 5 min
# (MariaDB's max_statement_time, in seconds; MySQL's max_execution_time, in ms and
# for SELECTs only). Constant statements, no value of anyone's in them.
_MYSQL_LOCKS = "SET SESSION innodb_lock_wait_timeout = 5, lock_wait_timeout = 5"
_MARIADB_STATEMENT = "SET SESSION max_statement_time = 300"
_MYSQL_STATEMENT = "SET SESSION max_execution_time = 300000"


def _mysql_session(dbapi_connection, _record) -> None:
    """A new MariaDB/MySQL connection's session limits (see above)."""
    mariadb = "mariadb" in dbapi_connection.get_server_info().lower()
    with dbapi_connection.cursor() as cursor:
        cursor.execute(_MYSQL_LOCKS)
        cursor.execute(_MARIADB_STATEMENT if mariadb else _MYSQL_STATEMENT)


# MySQL client protocol flags: CLIENT_FOUND_ROWS (which SQLAlchemy sets, for
# rowcounts) and CLIENT_MULTI_STATEMENTS (several statements in one query).
_FOUND_ROWS, MULTI_STATEMENTS = 2, 1 << 16


def _is_mysql(url: str) -> bool:
    return url.startswith(("mysql", "mariadb"))


@lru_cache(maxsize=32)
def _engine(url: str) -> sa.Engine:
    """The engine of a URL, and on PostgreSQL and MariaDB/MySQL its twin for reads
    (`reads_of`): connections in autocommit mode from the moment they are made, in
    a pool of their own, so that a read never pays for switching a connection
    into autocommit and back (on MariaDB three round trips and a COMMIT)."""
    kwargs = {}
    if _is_mysql(url):
        # READ COMMITTED, as PostgreSQL's default: each statement sees what is
        # committed when it starts (InnoDB's REPEATABLE READ would keep the first
        # snapshot of a transaction, and lock gaps when erasing). Connections are
        # renewed before the server's idle timeout (wait_timeout, 8 h by default).
        kwargs = {"pool_recycle": 3600, "isolation_level": "READ COMMITTED",
                  "connect_args": {"connect_timeout": 10}}
    elif url.startswith("postgresql"):
        # jit=off: our statements are index lookups and copies of a person's rows,
        # never analytics; PostgreSQL JIT-compiles any query whose estimated cost
        # passes jit_above_cost (a 200,000-row copy does), which cost 20-40 ms a copy
        # here and saved nothing (PostgreSQL 11 or later: older ones lack the setting).
        kwargs = {"connect_args": {"connect_timeout": 10,
                                   "options": "-c lock_timeout=5000 -c statement_timeout=300000"
                                              " -c jit=off"}}
    else:
        return _pooled(sa.create_engine(url, pool_reset_on_return=None), url)
    kwargs |= {"pool_size": 2, "max_overflow": 2, "pool_reset_on_return": None}
    engine = _pooled(sa.create_engine(url, **kwargs), url)
    reads_kwargs = {**kwargs, "isolation_level": "AUTOCOMMIT"}
    if _is_mysql(url):
        # A hop's lookups sent as one multi-statement query (lookups.run_mysql_many):
        # the statements are SQLAlchemy's, their values bound by the driver.
        reads_kwargs["connect_args"] = {**kwargs["connect_args"],
                                        "client_flag": _FOUND_ROWS | MULTI_STATEMENTS}
    reads = _pooled(sa.create_engine(url, **reads_kwargs), url)
    engine.pp_reads = reads
    sa.event.listen(engine, "engine_disposed", lambda _engine: reads.dispose())
    return engine


def url_key(engine: sa.Engine) -> str:
    """The engine's URL as the caches of this package key it (str(engine.url),
    worked out once per engine: rendering a URL costs more than a cache lookup)."""
    key = getattr(engine, "pp_url", None)
    if key is None:
        key = engine.pp_url = str(engine.url)
    return key


def reads_of(engine: sa.Engine) -> sa.Engine:
    """The engine's twin whose connections are in autocommit mode (see _engine),
    or the engine itself (SQLite)."""
    return getattr(engine, "pp_reads", engine)


# A connection that sat in the pool longer than this is checked (a round trip)
# before it is handed out; one used moments ago is not: were it broken all the
# same (the server restarted in between), the statement's error is a transient
# one (error_kind), and the run is retried.
PING_AFTER_IDLE = 2.0  # seconds


def _pooled(engine: sa.Engine, url: str) -> sa.Engine:
    """The pool's handling of an engine's connections: MariaDB/MySQL session limits
    on connect; a ping only for a connection idle PING_AFTER_IDLE or more (instead
    of SQLAlchemy's pool_pre_ping, a round trip at every checkout); on return, a
    rollback only when a transaction is open (instead of one at every return: a
    round trip on MariaDB even in autocommit mode)."""
    if _is_mysql(url):
        sa.event.listen(engine, "connect", _mysql_session)

    def checkin(_dbapi_connection, record):
        record.info["pp_idle_since"] = time.monotonic()

    def checkout(dbapi_connection, record, _proxy):
        since = record.info.get("pp_idle_since")
        if since is not None and time.monotonic() - since >= PING_AFTER_IDLE:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:  # the pool replaces it with a new connection
                raise sa_exc.DisconnectionError(type(exc).__name__) from exc

    def reset(dbapi_connection, _record, state):
        if not state.transaction_was_reset and not state.terminate_only and _in_transaction(
                dbapi_connection):
            dbapi_connection.rollback()

    sa.event.listen(engine.pool, "checkin", checkin)
    sa.event.listen(engine.pool, "checkout", checkout)
    sa.event.listen(engine.pool, "reset", reset)  # pool_reset_on_return=None: this instead
    return engine


def _in_transaction(dbapi_connection) -> bool:
    """Is a transaction open on this DBAPI connection (psycopg's transaction status,
    PyMySQL's server status flag, sqlite3's in_transaction)? True when the driver
    does not say."""
    if psycopg is not None and isinstance(dbapi_connection, psycopg.Connection):
        return dbapi_connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    status = getattr(dbapi_connection, "server_status", None)
    if isinstance(status, int):
        return bool(status & 1)  # SERVER_STATUS_IN_TRANS
    return getattr(dbapi_connection, "in_transaction", True) is not False


def engine_for(dsn: str) -> sa.Engine:
    """The engine of a DSN: one engine (and pool) per database, whichever thread
    comes first."""
    with _ENGINE_LOCK:
        return _engine(engine_url(dsn))


# --- COPY out ------------------------------------------------------------------------

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
    from psycopg import pq

    driver = conn.connection.driver_connection
    query = psycopg.ClientCursor(driver).mogrify(statement, params)
    pgconn = driver.pgconn
    try:
        with driver.lock:
            pgconn.send_query(query.encode(driver.info.encoding))
            _expect(driver, _next_result(pgconn), pq.ExecStatus.COPY_OUT)
            _copy_rows(driver, write)
            _expect(driver, _next_result(pgconn), pq.ExecStatus.COMMAND_OK)
            while _next_result(pgconn) is not None:
                pass
    except BaseException:
        conn.invalidate()
        raise


def _next_result(pgconn):
    """libpq's next result, the socket waited on (without the GIL) while it is busy."""
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return pgconn.get_result()
        select.select([pgconn.socket], [], [])


def _expect(driver, res, expected) -> None:
    """Raise psycopg's error unless `res` has the status expected."""
    from psycopg import pq

    pgconn = driver.pgconn
    if res is None or res.status != expected:
        if res is not None and res.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(res, encoding=driver.info.encoding)
        raise psycopg.OperationalError(
            f"COPY: {pgconn.get_error_message(driver.info.encoding) or 'no result'}")


def _copy_rows(driver, write) -> None:
    """The rows of a COPY under way, to `write` in blocks of whole rows."""
    pgconn = driver.pgconn
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


# --- binding many values -------------------------------------------------------------


def _arrays(conn) -> bool:
    """PostgreSQL binds a whole list as one array parameter (`col = ANY(%s)`): the
    SQL text is the same whatever the number of values (prepared once by psycopg),
    and there is no limit of bound parameters. MariaDB/MySQL (which has no arrays)
    and SQLite get batched IN-lists."""
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
    planned as a sequential scan, a write transaction of 1 s.
    MariaDB/MySQL refuse both a LIMIT inside `IN (subquery)` and a subquery on the
    table being deleted from: there it is `DELETE ... WHERE ... LIMIT n`, which
    they have for this (the lookup's IN-list keeps it on the column's index)."""
    if conn.dialect.name in ("mysql", "mariadb"):
        return sa.delete(table).where(where).with_dialect_options(mysql_limit=int(limit))
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
    """Values in a stable order (numbers numerically, for index locality): by type
    name, then value. Values all of one type (the usual case) are sorted as they
    are, which is the same order without a key function's cost."""
    if len({type(v) for v in values}) == 1:
        return sorted(values)
    return sorted(values, key=lambda v: (type(v).__name__, v))


# --- what this process knows of a database's tables ----------------------------------

_REFLECTED: dict[tuple, dict] = {}
# Lookup statements compiled once per (database, table, columns) by sql/lookups.py:
# SQL text made by SQLAlchemy (identifiers quoted, every value a bound parameter).
_LOOKUPS: dict[tuple, tuple] = {}


def forget(url: str) -> None:
    """Drop what this process knows of a database's tables (reflection and compiled
    lookups): the next use reflects them again."""
    for cache in (_REFLECTED, _LOOKUPS):
        for key in [k for k in list(cache) if k[0] == url]:  # a snapshot: other threads
            cache.pop(key, None)


def reflect(conn, shape: MapShape, source_name: str) -> dict[str, sa.Table]:
    """The map's tables as reflected from the database, once per process, and again
    when the map names a column the reflection lacks (a column added to the
    database and then to the map while the worker ran)."""
    names = shape.map.tables
    key = (url_key(conn.engine), tuple(sorted(names)))
    known = _REFLECTED.get(key)
    if known is None or any(not shape.declared_needed[name] <= set(known[name].c.keys())
                            for name in names):
        if known is not None:  # stale: its compiled lookups too
            forget(str(conn.engine.url))
        metadata = sa.MetaData()
        try:
            with warnings.catch_warnings():
                # SQLite's reflection skips expression indexes (LOWER(TRIM(email))) with a
                # warning; the connector reads columns and keys, never those indexes.
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of "
                                        "expression-based index", sa_exc.SAWarning)
                metadata.reflect(bind=conn, only=list(names))
        except sa_exc.InvalidRequestError:
            # Its message names the engine (the DSN's host, user and database): the
            # tables are named instead.
            gone = sorted(set(names) - set(sa.inspect(conn).get_table_names()))
            raise SourceError(f"{source_name}: " + (", ".join(f"table `{n}`" for n in gone)
                                                    or "a table of the map")
                              + " does not exist (dropped or renamed since the map was "
                              "saved?), or this user may not see it") from None
        reflected = {name: metadata.tables[name] for name in names}
        for name in names:
            missing = sorted(shape.declared_needed[name] - set(reflected[name].c.keys()))
            if missing:  # dropped since the map was saved
                raise SourceError(f"{source_name}: table `{name}` has no column "
                                  f"`{missing[0]}` (dropped or renamed since the map was "
                                  "saved?)")
        _REFLECTED[key] = reflected
    return _REFLECTED[key]


# --- errors --------------------------------------------------------------------------


# MariaDB/MySQL error codes: no such table, unknown column.
_MYSQL_SCHEMA_CHANGED = {1146, 1054}
# MariaDB/MySQL errors a retry may get past: too many connections, server shutting
# down, lock wait timeout, deadlock, connection killed, statement time exceeded
# (MariaDB 1969, MySQL 3024), and the client's can't connect / server gone / lost
# connection / lost during handshake. Any other (a constraint, a syntax error, a
# value that does not fit) would fail again: PyMySQL raises most of them as
# OperationalError, so the class alone does not tell.
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1927, 1969, 3024, 2002, 2003, 2006, 2013, 2055}


def mysql_code(exc: Exception) -> int | None:
    """The MariaDB/MySQL error code of a PyMySQL error (wrapped or not), else None."""
    orig = getattr(exc, "orig", exc)
    if type(orig).__module__.startswith("pymysql") and orig.args and isinstance(orig.args[0],
                                                                                 int):
        return orig.args[0]
    return None


def _schema_changed(exc: Exception) -> bool:
    """A table or column the cached reflection has is gone (PostgreSQL's undefined
    table / column, MariaDB's error codes, SQLite's "no such ...")."""
    orig = getattr(exc, "orig", exc)
    return (getattr(orig, "sqlstate", None) in ("42P01", "42703")
            or mysql_code(exc) in _MYSQL_SCHEMA_CHANGED
            or "no such column" in str(orig) or "no such table" in str(orig))


def _transient(exc: Exception) -> bool:
    if isinstance(exc, (sa_exc.InterfaceError, sa_exc.TimeoutError)) or getattr(
            exc, "connection_invalidated", False):
        return True
    code = mysql_code(exc)
    if code is not None:
        return code in _MYSQL_TRANSIENT
    return isinstance(exc, sa_exc.OperationalError)


def error_kind(exc: Exception) -> type[SourceError] | None:
    """The SourceError a database error becomes (TransientSourceError when a retry
    may succeed: the connection or a timeout), None for an error that is not the
    database's."""
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return TransientSourceError if _transient(exc) else SourceError
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return TransientSourceError if isinstance(exc, psycopg.OperationalError) else SourceError
    return None
