"""(j) Gathering one subject on a foreign schema, on PostgreSQL and on MariaDB.

    .venv/bin/python bench/bench_foreign.py [--subjects 100000] [--runs 100]
        [--subject 4230] [--engines postgresql mariadb] [--reload]

The schema (bench/_foreign_schema.py) is the conformance suite's schemas put
together, written as SQLAlchemy Core: two email columns and a custom identity,
emails in mixed case and padded, a self-reference, composite keys, a join table,
a shared address, messages tied to other people one hop away (withheld). With
100,000 subjects it holds 2,030,000 rows. It is loaded once per engine (COPY on
PostgreSQL, multi-row INSERTs on MariaDB) into database `foreign_bench`, and
kept: a later run with the same --subjects reuses it.

For subject n (default 4230: email stored as `User4230@Example.com`, an
alt_email, a referrer), per engine, interleaved round by round (--runs rounds):

* gather: SqlConnector.gather with the records dropped (the traversal alone);
* sink: the same gather into a real RecordSink (encrypted JSONL files, as a
  worker writes them);
* task: fulfilment's runs.execute for the gather SourceRun of an access request
  (what a worker runs for a source run: the claim, the gather into a RecordSink,
  the run's outcome and its audit event), the run put back to pending between
  rounds;
* floor: the fastest hand-written way to fetch the same rows, one parameterised
  query per table following the keys (customers by email, then orders, messages
  and memberships by the customer's id, then order_items, addresses and groups,
  then products), sent one by one on an open connection, no ORM: psycopg with
  server-side prepared statements on PostgreSQL (emails compared as
  LOWER(TRIM(column)), served by the expression indexes), PyMySQL on MariaDB
  (emails compared by `=`: the column's collation ignores case and trailing
  spaces, not leading ones; the subject has none). The floor's messages query
  leaves out the rows tied to others in SQL.

Statements: per gather, counted on the server (pg_stat_statements on PostgreSQL;
MariaDB's global Questions counter, which counts every statement the server
received, the status queries themselves taken off).

Targets (issue 13): gather <= 1.5x the floor, sink <= 3x, task <= 8x, on both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import _common as c
import _foreign_schema as fs
from bench_gather import DropSink, ServerStatements

DB = "foreign_bench"
MARIADB_PORT = int(os.environ.get("MARIADB_PORT", "55442"))
MARIADB_SERVER = f"mysql+pymysql://root@127.0.0.1:{MARIADB_PORT}"
ENV = {"postgresql": "FOREIGN_BENCH_PG_DSN", "mariadb": "FOREIGN_BENCH_MARIADB_DSN"}
DSN = {"postgresql": f"{c.SERVER}/{DB}", "mariadb": f"{MARIADB_SERVER}/{DB}"}

PG_FLOOR = {
    "customers": "SELECT id, email, alt_email, loyalty_no, name, referred_by FROM customers "
                 "WHERE lower(trim(email)) = %(e)s OR lower(trim(alt_email)) = %(e)s",
    "orders": "SELECT id, customer_id, address_id, total, placed_at FROM orders "
              "WHERE customer_id = ANY(%(c)s)",
    "messages": "SELECT id, sender_id, recipient_id, body FROM messages "
                "WHERE (sender_id = ANY(%(c)s) OR recipient_id = ANY(%(c)s)) "
                "AND (sender_id IS NULL OR sender_id = ANY(%(c)s)) "
                "AND (recipient_id IS NULL OR recipient_id = ANY(%(c)s))",
    "memberships": "SELECT customer_id, group_id, nickname FROM memberships "
                   "WHERE customer_id = ANY(%(c)s)",
    "order_items": "SELECT order_id, line, product_id, note FROM order_items "
                   "WHERE order_id = ANY(%(o)s)",
    "addresses": "SELECT id, street, city FROM addresses WHERE id = ANY(%(a)s)",
    "groups": "SELECT id, title FROM groups WHERE id = ANY(%(g)s)",
    "products": "SELECT id, name FROM products WHERE id = ANY(%(p)s)",
}
# PyMySQL binds a tuple as a parenthesised list: `IN %(c)s`.
MARIADB_FLOOR = {
    **{k: v.replace("= ANY(", "IN ").replace("s)", "s") for k, v in PG_FLOOR.items()},
    "customers": "SELECT id, email, alt_email, loyalty_no, name, referred_by FROM customers "
                 "WHERE email = %(e)s OR alt_email = %(e)s",
}
# What each query's keys come from: (table, column) of rows fetched before.
KEYS = {"c": ("customers", "id"), "o": ("orders", "id"), "a": ("orders", "address_id"),
        "g": ("memberships", "group_id"), "p": ("order_items", "product_id")}


def floor(cursor, queries: dict, email: str, arrays: bool) -> tuple[float, dict]:
    """The hand-written floor: one query per table, one by one. ({table: rows})."""
    started = time.perf_counter()
    params, counts, found = {"e": email}, {}, {}
    for name, sql in queries.items():
        for key, (table, column) in KEYS.items():
            if f"%({key})s" in sql and key not in params:
                values = sorted({r[column] for r in found[table] if r[column] is not None})
                params[key] = values if arrays else tuple(values or [None])
        cursor.execute(sql, params)
        found[name] = cursor.fetchall()
        counts[name] = len(found[name])
    return time.perf_counter() - started, {k: v for k, v in counts.items() if v}


def floor_cursor(engine: str):
    """An open connection's cursor returning dicts: psycopg (statements prepared
    at once) or PyMySQL."""
    if engine == "postgresql":
        import psycopg
        from psycopg.rows import dict_row

        conn = psycopg.connect(DSN[engine], autocommit=True, prepare_threshold=0)
        return conn, conn.cursor(row_factory=dict_row)
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=MARIADB_PORT, user="root", database=DB,
                           autocommit=True, cursorclass=pymysql.cursors.DictCursor)
    return conn, conn.cursor()


def ensure_loaded(engine: str, subjects: int, reload: bool) -> dict | None:
    """Create database `foreign_bench` on the engine and load it unless it holds
    `subjects` subjects already (bench_meta). Returns the load's timings."""
    import sqlalchemy as sa

    from requests_app.sources.sql import driver

    if engine == "postgresql":
        c.ensure_database(DB)
    else:
        with sa.create_engine(MARIADB_SERVER).connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE IF NOT EXISTS foreign_bench")
    eng = sa.create_engine(driver.engine_url(DSN[engine]))
    meta = sa.Table("bench_meta", sa.MetaData(), sa.Column("subjects", sa.Integer))
    try:
        meta.create(eng, checkfirst=True)
        with eng.connect() as conn:
            held = conn.execute(sa.select(meta.c.subjects)).scalar()
        if held == subjects and not reload:
            return None
        print(f"{engine}: loading {subjects:,} subjects into {DB} ...", flush=True)
        started = time.perf_counter()
        fs.md.drop_all(eng)
        fs.md.create_all(eng)
        if engine == "postgresql":
            with tempfile.TemporaryDirectory(prefix="pp-foreign-") as tmp:
                fs.load_postgresql(DSN[engine], fs.write_files(subjects, Path(tmp)))
        else:
            fs.load_mariadb(driver.engine_url(DSN[engine]), subjects)
        with eng.begin() as conn:
            conn.execute(meta.delete())
            conn.execute(meta.insert().values(subjects=subjects))
        return {"load_seconds": time.perf_counter() - started}
    finally:
        eng.dispose()
        driver._REFLECTED.clear()
        driver._engine.cache_clear()


class MariaDBStatements:
    """Statements the MariaDB server received (the global Questions counter: the
    bench is its only client), the two status queries of each reading taken off."""

    def __init__(self):
        import pymysql

        self.conn = pymysql.connect(host="127.0.0.1", port=MARIADB_PORT, user="root",
                                    autocommit=True)
        self.start = 0

    def _questions(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            return int(cur.fetchone()[1])

    def reset(self):
        self.start = self._questions()

    def read(self, _db) -> tuple[dict, float]:
        return {"statements": self._questions() - self.start - 1}, float("nan")


def task_run(engine: str, email: str):
    """A saved DataSource for the engine's database (disabled: no other benchmark's
    request goes to it) and the gather SourceRun of an access request in
    fulfilment for the subject."""
    from requests_app.models import DataSource, SourceRun, State

    source, _ = DataSource.objects.update_or_create(
        name=f"Foreign bench ({engine})",
        defaults={"kind": "sql", "connection_env": ENV[engine], "dataset_map": fs.MAP,
                  "enabled": False})
    request = c.file_request(email, "access", state=State.FULFILLING)
    return SourceRun.objects.create(request=request, source=source,
                                    action=SourceRun.Action.GATHER)


def one_round(eng, times: dict, i: int) -> None:
    """One timed round of each: gather, floor, gather into a RecordSink, the task."""
    from requests_app.models import SourceRun
    from requests_app.services.fulfilment import runs
    from requests_app.sources.records import run_dir

    t0 = time.perf_counter()
    eng.connector.gather(None, eng.identity, DropSink())
    times["gather"].append(time.perf_counter() - t0)
    t, counts = floor(eng.cursor, eng.queries, eng.email, eng.name == "postgresql")
    times["floor"].append(t)
    if counts != eng.found:
        raise SystemExit(f"{eng.name}: the floor found {counts}, gather {eng.found}")
    run = SimpleNamespace(token=f"bench-foreign-{eng.name}-{i}")
    t0 = time.perf_counter()
    with c.record_sink(run) as sink:
        eng.connector.gather(None, eng.identity, sink)
    times["sink"].append(time.perf_counter() - t0)
    shutil.rmtree(run_dir(run), ignore_errors=True)
    SourceRun.objects.filter(pk=eng.run.pk).update(state=SourceRun.State.PENDING, result={})
    t0 = time.perf_counter()
    status, _request = runs.execute(eng.run.pk)
    times["task"].append(time.perf_counter() - t0)
    if status != "done":
        raise SystemExit(f"{eng.name}: the task ended {status}")
    shutil.rmtree(run_dir(eng.run), ignore_errors=True)


def measure(engine: str, subject: int, runs: int) -> dict:
    from requests_app.models import DataSource
    from requests_app.sources.base import IdentityData
    from requests_app.sources.sql.connector import SqlConnector

    os.environ[ENV[engine]] = DSN[engine]
    email = f"user{subject}@example.com"
    eng = SimpleNamespace(name=engine, email=email, identity=IdentityData(email=email))
    eng.connector = SqlConnector(DataSource(name=f"Foreign bench ({engine})", kind="sql",
                                            connection_env=ENV[engine], dataset_map=fs.MAP))
    eng.queries = PG_FLOOR if engine == "postgresql" else MARIADB_FLOOR
    conn, eng.cursor = floor_cursor(engine)
    eng.run = task_run(engine, email)
    t0 = time.perf_counter()
    sink = DropSink()
    outcome = eng.connector.gather(None, eng.identity, sink)
    first = time.perf_counter() - t0
    eng.found = dict(sink.counts)
    stats = ServerStatements() if engine == "postgresql" else MariaDBStatements()
    for _ in range(5):
        eng.connector.gather(None, eng.identity, DropSink())
        floor(eng.cursor, eng.queries, email, engine == "postgresql")
    server = {}
    for label, call in (("gather", lambda: eng.connector.gather(None, eng.identity, DropSink())),
                        ("floor", lambda: floor(eng.cursor, eng.queries, email,
                                                engine == "postgresql"))):
        stats.reset()
        for _ in range(10):
            call()
        kinds, _ms = stats.read(DB)
        server[label] = {k: v // 10 for k, v in kinds.items() if v >= 10}
    times = {"gather": [], "floor": [], "sink": [], "task": []}
    for i in range(runs + 3):
        one_round(eng, times, i)
    for values in times.values():
        del values[:3]  # the first rounds warm the sink's and the task's paths
    # The floor again, back to back: the server's process never waits between
    # statements long enough to be put to sleep (on this VM a woken process costs
    # tens of microseconds a round trip), the fastest it gets.
    for _ in range(runs):
        times.setdefault("floor_back_to_back", []).append(
            floor(eng.cursor, eng.queries, email, engine == "postgresql")[0])
    conn.close()
    return summarise(eng, times, outcome, first, server)


def summarise(eng, times, outcome, first, server) -> dict:
    ms = {k: {"median": c.median(v) * 1000, "p90": sorted(v)[int(0.9 * len(v))] * 1000,
              "min": min(v) * 1000} for k, v in times.items()}
    fl = ms["floor"]["median"]
    return {
        "engine": eng.name, "subject_email": eng.email, "rows": sum(eng.found.values()),
        "rows_by_table": eng.found,
        "withheld": outcome.result.get("withheld_linked_to_others", {}),
        "first_call_ms": first * 1000, "ms": ms,
        "ratios": {k: ms[k]["median"] / fl for k in ("gather", "sink", "task")},
        "ratios_vs_back_to_back_floor": {k: ms[k]["median"] / ms["floor_back_to_back"]["median"]
                                         for k in ("gather", "sink", "task")},
        # Of the fastest rounds: on a busy machine, the cost without waiting for a CPU.
        "ratios_of_min": {k: ms[k]["min"] / ms["floor"]["min"] for k in ("gather", "sink", "task")},
        "server_statements": server, "floor_statements": len(eng.queries),
    }


def report(r: dict) -> None:
    ms, ratio = r["ms"], r["ratios"]
    print(f"\n== {r['engine']}: {r['rows']} rows in {len(r['rows_by_table'])} tables "
          f"(withheld {r['withheld']}) ==")
    print(f"first call (reflection)     {r['first_call_ms']:8.2f} ms")
    for key, label, target in (("gather", "gather, records dropped", 1.5),
                               ("sink", "gather into a RecordSink", 3), ("task", "the task", 8)):
        m = ms[key]
        print(f"{label:27} {m['median']:8.2f} ms (p90 {m['p90']:.2f}, min {m['min']:.2f})  "
              f"{ratio[key]:.2f}x floor, target <= {target}x: {c.verdict(ratio[key] <= target)}")
    print(f"floor: {r['floor_statements']} queries, one by one "
          f"{ms['floor']['median']:8.2f} ms (p90 {ms['floor']['p90']:.2f}, "
          f"min {ms['floor']['min']:.2f})")
    print(f"floor, back to back          {ms['floor_back_to_back']['median']:8.2f} ms: gather, "
          "sink, task " + ", ".join(f"{v:.2f}x" for v in r["ratios_vs_back_to_back_floor"].values()))
    print("fastest rounds / floor's     " + ", ".join(
        f"{k} {v:.2f}x" for k, v in r["ratios_of_min"].items()))
    print(f"statements on the server    {r['server_statements']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--subject", type=int, default=4230)
    parser.add_argument("--engines", nargs="+", default=["postgresql", "mariadb"])
    parser.add_argument("--reload", action="store_true", help="load the schema again")
    args = parser.parse_args()
    if not 8 < args.subject <= args.subjects or args.subject % 1000 == 0:
        raise SystemExit("--subject must be in 9 .. --subjects, not a multiple of 1000 "
                         "(those emails have a leading space, which the MariaDB floor misses)")
    c.setup_django()
    loads = {e: ensure_loaded(e, args.subjects, args.reload) for e in args.engines}
    machine = c.machine()
    results = []
    for engine in args.engines:
        results.append({**measure(engine, args.subject, args.runs), "load": loads[engine]})
        report(results[-1])
    machine["mariadb"] = mariadb_version() if "mariadb" in args.engines else None
    c.report("foreign", {"machine": machine, "runs": args.runs, "subjects": args.subjects,
                         "subject": args.subject, "engines": results})


def mariadb_version() -> str:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=MARIADB_PORT, user="root")
    try:
        return conn.get_server_info()
    finally:
        conn.close()


if __name__ == "__main__":
    main()
