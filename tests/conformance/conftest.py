"""The conformance suite: small company databases written for the suite (not the
demo shop), each with its dataset map and what a request must find, plan, erase
and leave, written out by hand. Every schema runs the real SqlConnector against a
real database of every engine, created through SQLAlchemy Core so that a new
engine is one more name in ENGINES."""

import os

import pytest
import sqlalchemy as sa

from requests_app.models import DataSource
from requests_app.sources.base import IdentityData
from requests_app.sources.sql.connector import SqlConnector

@pytest.fixture
def engine_url(sql_engine, tmp_path, settings):
    """A fresh, empty database of each engine (SQLite, PostgreSQL, MariaDB: the
    suite's `sql_engine` in tests/conftest.py): its SQLAlchemy URL."""
    settings.MEDIA_ROOT = str(tmp_path)  # erasure keeps its key list under run_dir
    yield str(sql_engine)


class _Sink:
    def __init__(self):
        self.rows: dict[str, list[dict]] = {}

    def write(self, collection, record, categories):
        self.rows.setdefault(collection, []).append(dict(record))


class _Run:
    """A SourceRun stand-in: a fresh one per step (erasure keeps files by token)."""

    pk = 0

    def __init__(self, token):
        self.token, self.result = token, {}

    def save(self, **kwargs):
        pass


def _sorted(rows):
    return sorted(rows, key=lambda r: [(v is None, str(v)) for v in r.values()])


class Company:
    """A company database made from SQLAlchemy Core tables and rows, and the SQL
    source that maps it."""

    def __init__(self, url: str, metadata: sa.MetaData, rows: dict[str, list[dict]]):
        self.url, self.metadata = url, metadata
        self.engine = sa.create_engine(url)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for table in metadata.sorted_tables:
                if rows.get(table.name):
                    conn.execute(table.insert(), rows[table.name])
        self.before = self.state()
        self._runs = 0
        os.environ["CONFORMANCE_DSN"] = url

    def source(self, dataset_map: str) -> DataSource:
        return DataSource(name="Company", kind="sql", connection_env="CONFORMANCE_DSN",
                          dataset_map=dataset_map)

    def run(self):
        self._runs += 1
        return _Run(f"conf{os.getpid()}-{id(self)}-{self._runs}")

    def state(self) -> dict[str, list[dict]]:
        """Every row of every table, sorted."""
        with self.engine.connect() as conn:
            return {t.name: _sorted([dict(r) for r in conn.execute(sa.select(t)).mappings()])
                    for t in self.metadata.sorted_tables}

    def gather(self, dataset_map: str, **identity):
        """(outcome, {table: the person's rows, sorted})."""
        sink = _Sink()
        outcome = SqlConnector(self.source(dataset_map)).gather(
            self.run(), _identity(**identity), sink)
        return outcome, {n: _sorted(rows) for n, rows in sink.rows.items()}

    def plan(self, dataset_map: str, **identity):
        return SqlConnector(self.source(dataset_map)).plan_erasure(self.run(),
                                                                    _identity(**identity))

    def erase(self, dataset_map: str, **identity):
        """Erase, then re-scan with a new run: (erase outcome, what is left)."""
        connector = SqlConnector(self.source(dataset_map))
        run = self.run()
        outcome = connector.erase(run, _identity(**identity), {})
        return outcome, connector.remaining(run, _identity(**identity))

    def changed(self) -> dict[str, tuple[list, list]]:
        """{table: (rows gone or changed, rows new or changed)} since the start."""
        now, diff = self.state(), {}
        for name, rows in now.items():
            gone = [r for r in self.before[name] if r not in rows]
            new = [r for r in rows if r not in self.before[name]]
            if gone or new:
                diff[name] = (gone, new)
        return diff


def _identity(email="", extra=None, **fields) -> IdentityData:
    return IdentityData(email=email, extra=tuple((extra or {}).items()), **fields)


@pytest.fixture
def company(engine_url):
    """company(metadata, rows): the company database on this engine."""
    made = []

    def make(metadata, rows):
        made.append(Company(engine_url, metadata, rows))
        return made[-1]

    yield make
    for c in made:
        c.engine.dispose()
    os.environ.pop("CONFORMANCE_DSN", None)
