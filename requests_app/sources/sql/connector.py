"""The SQL connector: a source's dataset map and the database its DSN names, tied
to the traversal, identity verification, gathering and erasure of this package.
The DSN is read from the environment variable the source names; it is never
stored."""

import hashlib
import os
import threading

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from requests_app.sources.base import Connector, Outcome, SourceError, TransientSourceError
from requests_app.sources.datamap import DatasetMap, DatasetMapError, parse
from requests_app.sources.sql import constraints, erasure, errors, gathering, keys
from requests_app.sources.sql.driver import (_arrays, _schema_changed, engine_for, forget,
                                             reads_of, reflect)
from requests_app.sources.sql.identity import email_table, identity_points
from requests_app.sources.sql.shape import MapShape


# What a map says, worked out once per process per map and database (MapShape): a worker
# makes a connector per run, and working the shape out again (columns, edges, keys
# read from the database) cost more than a small subject's lookups. A shape is
# read-only but for use_keys, which runs under the lock when the tables it was
# given were reflected again.
_SHAPES: dict[tuple, MapShape] = {}
_SHAPE_LOCK = threading.Lock()


class SqlConnector(Connector):
    kind, access, erasure, has_map = "sql", True, True, True

    def __init__(self, source):
        super().__init__(source)
        text = source.dataset_map or ""
        # Per database too: keys the map leaves out are read from the database.
        key = (text, os.environ.get(source.connection_env or "", ""))
        shape = _SHAPES.get(key)
        if shape is None:
            try:
                shape = MapShape(parse(text))
            except DatasetMapError as exc:
                raise SourceError(f"{source.name}: the dataset map is invalid ({exc})") from None
            if len(_SHAPES) >= 32:
                _SHAPES.clear()
            _SHAPES[key] = shape
        self.shape = shape
        self.map: DatasetMap = shape.declared

    @property
    def engine(self) -> sa.Engine:
        name = self.source.connection_env
        dsn = os.environ.get(name or "")
        if not dsn:
            raise SourceError(f"{self.source.name}: environment variable {name or '(none)'} "
                              "holding the DSN is not set")
        try:
            return engine_for(dsn)
        except (sa_exc.ArgumentError, ValueError):  # their messages may quote the DSN
            raise SourceError(f"{self.source.name}: the DSN in {name} is not a database URL "
                              "this portal can use (postgresql://, mysql://, sqlite:///...)"
                              ) from None

    def tables(self, conn) -> dict[str, sa.Table]:
        """The map's tables as reflected from the database (driver.reflect), with
        the keys the map leaves out read from the database (sql/keys.py); a table
        with no key anywhere stops the run with the reason."""
        tables = reflect(conn, self.shape, self.source.name)
        if self.shape.keys_for is not tables:
            with _SHAPE_LOCK:
                if self.shape.keys_for is not tables:
                    resolved, read, problems = keys.resolve(self.shape.declared, tables)
                    if problems:
                        raise SourceError(f"{self.source.name}: {problems[0][1]}")
                    self.shape.use_keys(resolved, read, tables)
        return tables

    def warm_up(self) -> None:
        """Reflect the map's tables and open a connection of each pool (reads, and
        the one a copied leaf's CSV COPY runs on while its JSON COPY runs on the
        read), as a worker process does once
        when it starts (services/fulfilment/warm_up.py), so that its first task does not
        pay for them: about 0.1 s of reflection and two connections here."""
        with reads_of(self.engine).connect() as conn, self.engine.connect():
            self.tables(conn)

    def check(self) -> list[str]:
        """Problems between the map and the real database (missing tables or
        columns, references that cannot be cleared), for validation at save time."""
        problems = []
        try:
            with self.engine.connect() as conn:
                self._find_problems(conn, problems)
        except sa_exc.SQLAlchemyError as exc:
            problems.append(f"source `{self.source.name}`: {errors.in_words(exc)}")
        except SourceError as exc:  # the DSN
            problems.append(str(exc))
        return problems

    def _find_problems(self, conn, problems: list[str]) -> None:
        columns = {}
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        for name, table in self.map.tables.items():
            where = f"line {self.map.lines.get(name)}: source `{self.source.name}`"
            if name not in existing:
                problems.append(f"{where}: table `{name}` does not exist in the database")
                continue
            columns[name] = {c["name"]: c for c in inspector.get_columns(name)}
            for col in sorted(table.column_names() - set(columns[name])):
                problems.append(f"{where}: table `{name}` has no column `{col}`")
            when = columns[name].get(table.collected_at)
            if when and _arrays(conn) and not isinstance(when["type"], (sa.Date, sa.DateTime)):
                problems.append(f"{where}: table `{name}`: collected_at column "
                                f"`{table.collected_at}` must be a date or a timestamp")
        for name, table in self.map.tables.items():
            for ref in table.references:
                if ref.to_table in columns and ref.to_column not in columns[ref.to_table]:
                    problems.append(
                        f"line {self.map.lines.get(name)}: source `{self.source.name}`: "
                        f"table `{name}` refers to `{ref.to_table}.{ref.to_column}`, which "
                        "does not exist")
        self._key_problems(conn, columns, problems)
        # A NOT NULL reference to rows erasure deletes is kept where the row it points
        # at is shared (said in the dry run), and fails the dry run where it is not.
        problems.extend(constraints.erasure_problems(conn, self.shape, columns,
                                                     self.source.name))

    def probe(self) -> bool:
        """`SELECT 1` on a pooled connection (the engine's connect timeout applies)."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa_exc.SQLAlchemyError:
            return False
        return True

    def _key_problems(self, conn, columns: dict, problems: list[str]) -> None:
        """Tables whose map declares no key and whose database declares none either
        (never guessed: refused, naming the source and the table)."""
        missing = [n for n, t in self.map.tables.items() if not t.key and n in columns]
        if not missing:
            return
        metadata = sa.MetaData()
        metadata.reflect(bind=conn, only=missing)
        _resolved, _read, found = keys.resolve(self.map, dict(metadata.tables))
        for name, problem in found:
            line = self.map.lines.get(name)
            problems.append(f"line {line}: source `{self.source.name}`: {problem}")

    def _run(self, work, read_only=False):
        """work(conn, tables) on a pooled connection. read_only: in autocommit mode on
        PostgreSQL and MariaDB/MySQL (a connection of driver.reads_of, the engine's
        twin whose connections are in that mode from the start), so that no read
        transaction (and its locks, and its snapshot holding back VACUUM or purge)
        spans the whole traversal: each hop's lookups see the database as it is then."""
        try:
            engine = reads_of(self.engine) if read_only else self.engine
            with engine.connect() as conn:
                return work(conn, self.tables(conn))
        except Exception as exc:
            kind = errors.kind_of(exc)
            if kind is None:
                raise
            if _schema_changed(exc):  # reflected before a change: the retry reflects anew
                forget(str(self.engine.url))
                kind = TransientSourceError
            raise kind(f"{self.source.name}: {errors.in_words(exc)}") from None

    def gather(self, run, identity, sink) -> Outcome:
        """The person's rows, written to `sink` (see gathering.gather)."""
        return gathering.gather(self.shape, self._run, lambda: self.engine.connect(), run,
                                identity, sink)

    def identity_points(self, identity) -> set[str] | None:
        """The points of the identity that the identity table's rows for its email
        address confirm (see identity.identity_points); None when the map has no
        email identity or the request no email."""
        root = email_table(self.map)
        if root is None or not identity.email:
            return None
        # The shape's map: with the keys read from the database (self.tables).
        return self._run(lambda conn, tables: identity_points(
            conn, tables, self.shape.map, self.shape.map.tables[root.name], identity))

    @property
    def map_version(self) -> str:
        """The dataset map's version: the SHA-256 of its text, as saved."""
        return hashlib.sha256((self.source.dataset_map or "").encode()).hexdigest()

    def plan_erasure(self, run, identity) -> Outcome:
        """See erasure.plan_erasure: the statements executed and rolled back."""
        return erasure.plan_erasure(self.shape, self._run, identity, source=self.source.name,
                                    map_version=self.map_version)

    def erase(self, run, identity, plan: dict, on_batch=None) -> Outcome:
        """See erasure.erase: resumable, from keys kept when the run first started,
        and only the approved plan when `plan` carries its `approved_digest`."""
        return erasure.erase(self.shape, self._run, run, identity, on_batch, plan=plan,
                             source=self.source.name, map_version=self.map_version)

    def remaining(self, run, identity) -> int:
        return erasure.remaining(self.shape, self._run, run, identity)
