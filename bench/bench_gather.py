"""(a) Gathering one subject from the demo shop source.

    .venv/bin/python bench/bench_gather.py [--sizes 1000 1000000] [--runs 50] [--subject 196]

For each shop size (the shop is (re)loaded with requests_app.demo.shop.populate(...,
fast=True) when it does not hold that many subjects), the same subject (customer n,
user<n>@example.com: 21 rows in all 12 mapped tables for n = 196) is gathered with
SqlConnector.gather:

* warm-up: one call (reflection of the 12 tables, once per process) and two more;
* then --runs timed calls, into a sink that drops the records (the traversal alone)
  and into a real RecordSink (encrypted JSONL files, as a worker writes them);
* statements: counted with a SQLAlchemy before_cursor_execute listener on the
  connector's engine (0 on PostgreSQL since the lookups go to psycopg directly,
  prepared: see docs/benchmarks.md), and on the server with pg_stat_statements (which also sees
  what the driver sends by itself: BEGIN, the pool's ping, the DECLARE / FETCH /
  CLOSE of server-side cursors, ROLLBACK).

The fastest floor is the same rows fetched by 12 hand-written SELECTs, one per
table, joined from the customer's email, sent one by one with psycopg on an open
connection (prepared by psycopg after their fifth execution). The same 12 SELECTs
sent as one script (one round trip, results read with nextset(), client-side
binding) are reported too. Gather and floors are timed round by round, interleaved.

Targets: gather <= 1.5 x the fastest floor (issue 13); the 1,000,000-subject median
within 1.3 x of the 1,000-subject median.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from types import SimpleNamespace

import _common as c

FLOOR_QUERIES = {
    "customers": "SELECT c.* FROM customers c WHERE c.email = %(e)s",
    "addresses": "SELECT a.* FROM addresses a JOIN customers c ON c.id = a.customer_id "
                 "WHERE c.email = %(e)s",
    "orders": "SELECT o.* FROM orders o JOIN customers c ON c.id = o.customer_id "
              "WHERE c.email = %(e)s",
    "order_items": "SELECT i.* FROM order_items i JOIN orders o ON o.id = i.order_id "
                   "JOIN customers c ON c.id = o.customer_id WHERE c.email = %(e)s",
    "payments": "SELECT p.* FROM payments p JOIN orders o ON o.id = p.order_id "
                "JOIN customers c ON c.id = o.customer_id WHERE c.email = %(e)s",
    "support_tickets": "SELECT t.* FROM support_tickets t JOIN customers c "
                       "ON c.id = t.customer_id WHERE c.email = %(e)s",
    "chat_messages": "SELECT m.* FROM chat_messages m JOIN support_tickets t "
                     "ON t.id = m.ticket_id JOIN customers c ON c.id = t.customer_id "
                     "WHERE c.email = %(e)s",
    "marketing_preferences": "SELECT m.* FROM marketing_preferences m JOIN customers c "
                             "ON c.id = m.customer_id WHERE c.email = %(e)s",
    "devices": "SELECT d.* FROM devices d JOIN customers c ON c.id = d.customer_id "
               "WHERE c.email = %(e)s",
    "web_events": "SELECT w.* FROM web_events w JOIN devices d ON d.cookie_id = w.cookie_id "
                  "JOIN customers c ON c.id = d.customer_id WHERE c.email = %(e)s",
    "product_reviews": "SELECT r.* FROM product_reviews r JOIN customers c "
                       "ON c.id = r.customer_id WHERE c.email = %(e)s",
    "partner_shares": "SELECT s.* FROM partner_shares s JOIN customers c "
                      "ON c.id = s.customer_id WHERE c.email = %(e)s",
}


class DropSink:
    """A sink that keeps nothing: the cost of the traversal alone."""

    def __init__(self):
        self.counts = Counter()

    def write(self, collection, record, categories):
        self.counts[collection] += 1


def floor_script(conn, email) -> tuple[float, dict]:
    """All 12 SELECTs in one script, one round trip (client-side binding)."""
    import psycopg

    script = ";\n".join(FLOOR_QUERIES.values())
    started = time.perf_counter()
    with psycopg.ClientCursor(conn) as cur:
        cur.execute(script, {"e": email})
        counts = {}
        names = iter(FLOOR_QUERIES)
        while True:
            counts[next(names)] = len(cur.fetchall())
            if not cur.nextset():
                break
    return time.perf_counter() - started, counts


def floor_one_by_one(conn, email) -> tuple[float, dict]:
    started = time.perf_counter()
    counts = {}
    with conn.cursor() as cur:
        for name, sql in FLOOR_QUERIES.items():
            cur.execute(sql, {"e": email})
            counts[name] = len(cur.fetchall())
    return time.perf_counter() - started, counts


class ServerStatements:
    """Statements the server ran in one database (pg_stat_statements), by first word."""

    def __init__(self):
        import psycopg

        self.conn = psycopg.connect(f"{c.SERVER}/postgres", autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def reset(self):
        self.conn.execute("SELECT pg_stat_statements_reset()")

    def read(self, db: str) -> tuple[dict[str, int], float]:
        """(statements by first word, total execution time in ms)."""
        rows = self.conn.execute(
            "SELECT query, calls, total_exec_time FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = %s)", (db,)).fetchall()
        kinds = Counter()
        total = 0.0
        for query, calls, exec_ms in rows:
            word = query.split(None, 1)[0].upper() if query.strip() else "?"
            kinds[word] += calls
            total += exec_ms
        return dict(kinds), total


LOADED: dict[int, dict | None] = {}


def load(sizes: list[int]) -> None:
    """Load every shop first: a load clears the connector's engine cache, which would
    drop the statement counters set on engines before it."""
    for size in sizes:
        LOADED[size] = c.ensure_shop(size, db_for(size))


def db_for(size: int) -> str:
    """shop_bench holds the 1,000,000-subject shop (which bench_package and
    bench_erase use too); other sizes get a database of their own."""
    return c.SHOP_DB if size == c.BIG_SHOP else f"{c.SHOP_DB}_{size}"


class Size:
    """One shop size: its database, a connector reading it, and the timings."""

    def __init__(self, size: int):
        import sqlalchemy as sa

        from requests_app.sources.sql.connector import SqlConnector

        self.size, self.db = size, db_for(size)
        self.env = c.SHOP_ENV if self.db == c.SHOP_DB else f"SHOP_BENCH_{size}_DSN"
        self.dsn = c.shop_dsn(self.db)
        os.environ[self.env] = self.dsn
        self.loaded = LOADED.get(size)
        self.connector = SqlConnector(c.shop_source(save=False, env=self.env))
        self.engine = c.shop_engine(self.dsn)
        self.statements = 0

        def count(*args, **kwargs):
            self.statements += 1

        sa.event.listen(self.engine, "before_cursor_execute", count)
        self.times = {"drop": [], "sink": [], "script": [], "one_by_one": [],
                      "one_by_one_back_to_back": []}


def measure(sizes: list[int], subject: int, runs: int) -> list[dict]:
    import psycopg

    from requests_app.sources.base import IdentityData

    email = f"user{subject}@example.com"
    identity = IdentityData(email=email)
    load(sizes)
    shops = [Size(size) for size in sizes]
    stats = ServerStatements()
    found = {}
    for shop in shops:
        # Warm-up: the first call reflects the map's tables (once per process).
        t0 = time.perf_counter()
        shop.connector.gather(None, identity, DropSink())
        shop.first_call = time.perf_counter() - t0
        for _ in range(3):
            shop.connector.gather(None, identity, DropSink())
        # Statements of one call, from both ends, and the server's execution time
        # (mean of 10 calls).
        shop.statements = 0
        stats.reset()
        for _ in range(10):
            sink = DropSink()
            shop.connector.gather(None, identity, sink)
        shop.client_statements = shop.statements // 10
        kinds, exec_ms = stats.read(shop.db)
        shop.server = {k: v // 10 for k, v in kinds.items()}
        shop.server_exec_ms = exec_ms / 10
        found[shop.size] = dict(sink.counts)

    conns = {shop.size: psycopg.connect(shop.dsn, autocommit=True) for shop in shops}
    for shop in shops:
        for _ in range(5):  # psycopg prepares a statement on its 5th execution
            floor_script(conns[shop.size], email)
            floor_one_by_one(conns[shop.size], email)
    # Interleaved round by round, the gather and its floors, so that drift on a
    # shared machine hits every size and both sides of each ratio alike.
    for _ in range(runs):
        for shop in shops:
            t0 = time.perf_counter()
            shop.connector.gather(None, identity, DropSink())
            shop.times["drop"].append(time.perf_counter() - t0)
            t, floor_counts = floor_script(conns[shop.size], email)
            shop.times["script"].append(t)
            t, counts2 = floor_one_by_one(conns[shop.size], email)
            shop.times["one_by_one"].append(t)
            mine = found[shop.size]
            if ({k: v for k, v in floor_counts.items() if v} != mine
                    or counts2 != {**dict.fromkeys(FLOOR_QUERIES, 0), **mine}):
                raise SystemExit(f"the floor found other rows than gather: {floor_counts} "
                                 f"vs {mine}")
    for i in range(runs):
        for shop in shops:
            t0 = time.perf_counter()
            with c.record_sink(SimpleNamespace(token=f"bench-gather-{i}")) as record_sink:
                shop.connector.gather(None, identity, record_sink)
            shop.times["sink"].append(time.perf_counter() - t0)
    # The fastest floor again, back to back (the server's process never sleeps
    # between statements: see bench_foreign.py).
    for shop in shops:
        shop.times["one_by_one_back_to_back"] = [
            floor_one_by_one(conns[shop.size], email)[0] for _ in range(runs)]
    for conn in conns.values():
        conn.close()

    results = []
    for shop in shops:
        med = {k: c.median(v) * 1000 for k, v in shop.times.items()}
        r = {
            "subjects": shop.size, "database": shop.db, "subject": subject,
            "load": shop.loaded, "rows": sum(found[shop.size].values()),
            "tables": len(found[shop.size]), "rows_by_table": found[shop.size],
            "first_call_ms": shop.first_call * 1000,
            "gather_drop_ms": med["drop"], "gather_drop_min_ms": min(shop.times["drop"]) * 1000,
            "gather_drop_p90_ms": sorted(shop.times["drop"])[int(0.9 * runs)] * 1000,
            "gather_recordsink_ms": med["sink"],
            "floor_script_ms": med["script"],
            "floor_script_min_ms": min(shop.times["script"]) * 1000,
            "floor_one_by_one_ms": med["one_by_one"],
            "floor_one_by_one_back_to_back_ms": med["one_by_one_back_to_back"],
            "client_statements": shop.client_statements,
            "server_statements": shop.server,
            "server_statements_total": sum(shop.server.values()),
            "server_exec_ms": shop.server_exec_ms,
            "floor_statements": len(FLOOR_QUERIES),
        }
        r["ratio_drop_vs_floor"] = r["gather_drop_ms"] / r["floor_script_ms"]
        r["ratio_recordsink_vs_floor"] = r["gather_recordsink_ms"] / r["floor_script_ms"]
        r["ratio_drop_vs_one_by_one"] = r["gather_drop_ms"] / r["floor_one_by_one_ms"]
        r["ratio_drop_vs_back_to_back"] = (r["gather_drop_ms"]
                                           / r["floor_one_by_one_back_to_back_ms"])
        results.append(r)
    return results


def what_if(size: int, subject: int, runs: int) -> dict:
    """NOT the shipped code: traversal._run_select patched to a client-side cursor
    (one round trip per query instead of DECLARE / FETCH ... / CLOSE), timed
    alternately with the shipped one on the same shop, to size the fix."""
    import sqlalchemy as sa

    from requests_app.sources.base import IdentityData
    from requests_app.sources.sql import traversal

    load([size])
    shop = Size(size)
    identity = IdentityData(email=f"user{subject}@example.com")
    shipped = traversal._run_select

    def client_side(conn, table, selected, parts):
        query = sa.select(table).where(sa.or_(*(table.c[col].in_(vals) for col, vals in parts)))
        yield from conn.execute(query).mappings()

    times = {"shipped": [], "client_cursor": []}
    try:
        for i in range(runs + 3):
            for label, impl in (("shipped", shipped), ("client_cursor", client_side)):
                traversal._run_select = impl
                t0 = time.perf_counter()
                shop.connector.gather(None, identity, DropSink())
                if i >= 3:
                    times[label].append(time.perf_counter() - t0)
    finally:
        traversal._run_select = shipped
    return {k: c.median(v) * 1000 for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, c.BIG_SHOP])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--subject", type=int, default=196,
                        help="customer number n (email user<n>@example.com), <= min(sizes)")
    parser.add_argument("--what-if", action="store_true",
                        help="also time a client-side-cursor variant (not the shipped code; "
                        "obsolete: on PostgreSQL the connector no longer uses _run_select, "
                        "so both variants now run the same code)")
    args = parser.parse_args()
    if args.subject > min(args.sizes) or args.subject <= 8:
        raise SystemExit("--subject must be in 9 .. min(sizes)")
    c.setup_django()
    results = measure(args.sizes, args.subject, args.runs)
    for r in results:
        print(f"\n== {r['subjects']:,} subjects, database {r['database']} ({r['rows']} rows of "
              f"subject {args.subject} in {r['tables']} tables) ==")
        print(f"first call (reflection)      {r['first_call_ms']:8.2f} ms")
        print(f"gather, records dropped      {r['gather_drop_ms']:8.2f} ms  (median of "
              f"{args.runs}; min {r['gather_drop_min_ms']:.2f}, p90 {r['gather_drop_p90_ms']:.2f})")
        print(f"gather, into a RecordSink    {r['gather_recordsink_ms']:8.2f} ms")
        print(f"floor: one script            {r['floor_script_ms']:8.2f} ms  (min "
              f"{r['floor_script_min_ms']:.2f})")
        print(f"floor: 12 SELECTs one by one {r['floor_one_by_one_ms']:8.2f} ms")
        print(f"statements per gather        {r['client_statements']} (SQLAlchemy), "
              f"{r['server_statements_total']} on the server {r['server_statements']}; "
              f"floor: {r['floor_statements']} in 1 round trip")
        print(f"server execution per gather  {r['server_exec_ms']:8.2f} ms  (pg_stat_statements)")
        print(f"gather / script floor        {r['ratio_drop_vs_floor']:.2f}x (records "
              f"dropped), {r['ratio_recordsink_vs_floor']:.2f}x (RecordSink)")
        print(f"gather / fastest floor       {r['ratio_drop_vs_one_by_one']:.2f}x (12 SELECTs "
              f"one by one); target <= 1.5x: {c.verdict(r['ratio_drop_vs_one_by_one'] <= 1.5)}")
        print(f"the same, back to back       {r['floor_one_by_one_back_to_back_ms']:8.2f} ms: "
              f"gather {r['ratio_drop_vs_back_to_back']:.2f}x")
    summary = {"machine": c.machine(), "runs": args.runs, "sizes": results}
    if len(results) >= 2:
        small, big = results[0], results[-1]
        scale = big["gather_drop_ms"] / small["gather_drop_ms"]
        scale_sink = big["gather_recordsink_ms"] / small["gather_recordsink_ms"]
        summary["scale_ratio"] = scale
        summary["scale_ratio_recordsink"] = scale_sink
        ok = 1 / 1.3 <= scale <= 1.3
        print(f"\n{big['subjects']:,} vs {small['subjects']:,} subjects: {scale:.2f}x "
              f"(records dropped), {scale_sink:.2f}x (RecordSink); target within 1.3x: "
              f"{c.verdict(ok)}")
    if args.what_if:
        w = what_if(max(args.sizes), args.subject, args.runs)
        summary["what_if_ms"] = w
        print(f"\nwhat-if (not shipped), {max(args.sizes):,} subjects: shipped "
              f"{w['shipped']:.2f} ms, client-side cursor {w['client_cursor']:.2f} ms")
    c.report("gather", summary)


if __name__ == "__main__":
    main()
