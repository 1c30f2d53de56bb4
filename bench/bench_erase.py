"""(c) Deleting 200,000 rows with SqlConnector.erase.

    .venv/bin/python bench/bench_erase.py [--subjects 1000000] [--events 200000] [--repeat 3]

Adds to the demo shop (loaded with --subjects customers if it does not hold that
many) four identical customers, each with marketing preferences, 2 devices and
--events web_events (half per device): 200,003 deletable rows each (web_events,
devices and marketing_preferences are `erase: delete`; the customer row is updated).

* erase (the first): fulfilment.execute_run for the deletion request's dry-run
  SourceRun, then for its erase SourceRun, as the run_source task does. The erase
  run calls SqlConnector.erase (it finds the keys by traversal, keeps them in an
  encrypted file, then deletes in batches of BATCH keys, one transaction each,
  recording its progress on the run after each), then SqlConnector.remaining (the
  re-scan). The connector's methods are timed from the outside.
* raw DELETE (the second, a copy): the same number of rows deleted by three
  hand-written statements in one transaction (web_events by the customer's
  devices, devices, marketing preferences).
* raw batched (the third and fourth copies): the same rows deleted by primary key
  (keys fetched first, not timed), 1,000 and 10,000 per DELETE ... = ANY(array),
  one transaction each, from psycopg: what batching itself costs.

Locks: every transaction of the connector's engine is timed with SQLAlchemy
`begin` / `commit` / `rollback` events (and classified by whether it wrote), and a
thread polls pg_stat_activity + pg_locks every 10 ms for the oldest open
transaction in the shop database holding a RowExclusiveLock (the write batches) or
only AccessShareLocks (reads).

Targets: no lock held longer than 1 s; throughput >= 0.5 x raw DELETE.
"""

from __future__ import annotations

import argparse
import threading
import time

import _common as c

KINDS = ("erase", "raw", "batched", "batched10k")


def emails(round_no: int) -> dict[str, str]:
    """A new email per round, so that each round erases a customer of its own."""
    stamp = f"{int(time.time())}-{round_no}"
    return {kind: f"bench-{kind}-{stamp}@example.com" for kind in KINDS}


class LockPoller(threading.Thread):
    """The oldest open transaction of other client sessions in the shop database
    (only the connector's, while erase runs), by the locks it holds, polled every
    `interval` seconds. Autovacuum is left out: it holds RowExclusiveLock on the
    indexes it vacuums for as long as it runs, and it does start on web_events
    during these rounds (each round inserts 800,000 rows)."""

    SQL = """
        SELECT a.pid, extract(epoch FROM clock_timestamp() - a.xact_start),
               bool_or(l.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock',
                                  'ExclusiveLock', 'AccessExclusiveLock')
                       AND l.locktype = 'relation')
        FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
        WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
          AND a.backend_type = 'client backend' AND l.granted
        GROUP BY a.pid, a.xact_start"""

    def __init__(self, interval=0.01):
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.max_write = 0.0
        self.max_read = 0.0
        self.samples = 0

    def run(self):
        import psycopg

        with psycopg.connect(f"{c.SERVER}/postgres", autocommit=True) as conn:
            while not self.stop.is_set():
                for _pid, age, writes in conn.execute(self.SQL, (c.SHOP_DB,)):
                    if writes:
                        self.max_write = max(self.max_write, float(age))
                    else:
                        self.max_read = max(self.max_read, float(age))
                self.samples += 1
                time.sleep(self.interval)


def raw_delete(email: str) -> tuple[float, int]:
    import psycopg

    with psycopg.connect(c.shop_dsn()) as conn:
        cid = conn.execute("SELECT id FROM customers WHERE email = %s", (email,)).fetchone()[0]
        started = time.perf_counter()
        with conn.transaction():
            n = conn.execute("DELETE FROM web_events WHERE cookie_id IN (SELECT cookie_id "
                             "FROM devices WHERE customer_id = %s)", (cid,)).rowcount
            n += conn.execute("DELETE FROM devices WHERE customer_id = %s", (cid,)).rowcount
            n += conn.execute("DELETE FROM marketing_preferences WHERE customer_id = %s",
                              (cid,)).rowcount
        return time.perf_counter() - started, n


def raw_batched(email: str, batch: int) -> tuple[float, int, float]:
    """Keys first (not timed), then DELETE ... WHERE id = ANY(batch), one transaction
    each: (seconds, rows, longest transaction)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(c.shop_dsn()) as conn:
        cid = conn.execute("SELECT id FROM customers WHERE email = %s", (email,)).fetchone()[0]
        keys = {
            "web_events": [r[0] for r in conn.execute(
                "SELECT w.id FROM web_events w JOIN devices d ON d.cookie_id = w.cookie_id "
                "WHERE d.customer_id = %s ORDER BY w.id", (cid,))],
            "devices": [r[0] for r in conn.execute(
                "SELECT id FROM devices WHERE customer_id = %s ORDER BY id", (cid,))],
            "marketing_preferences": [r[0] for r in conn.execute(
                "SELECT id FROM marketing_preferences WHERE customer_id = %s", (cid,))],
        }
        conn.commit()
        n, longest = 0, 0.0
        started = time.perf_counter()
        for table, ids in keys.items():
            for i in range(0, len(ids), batch):
                t0 = time.perf_counter()
                with conn.transaction():
                    n += conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(
                        sql.Identifier(table)), (ids[i:i + batch],)).rowcount
                longest = max(longest, time.perf_counter() - t0)
        return time.perf_counter() - started, n, longest


def left_of(email: str) -> int:
    import psycopg

    with psycopg.connect(c.shop_dsn()) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM web_events w JOIN devices d "
            "ON d.cookie_id = w.cookie_id JOIN customers c ON c.id = d.customer_id "
            "WHERE c.email = %s) + (SELECT count(*) FROM devices d JOIN customers c "
            "ON c.id = d.customer_id WHERE c.email = %s)", (email, email)).fetchone()[0]


def one_round(events: int, source, round_no: int) -> dict:
    from django.utils import timezone

    from requests_app.models import PrivacyRequest, SourceRun, State
    from requests_app.services.fulfilment import runs as fulfilment
    from requests_app.sources.sql.connector import SqlConnector
    from requests_app.sources.sql.driver import BATCH

    EMAILS = emails(round_no)
    rows = {}
    for key, email in EMAILS.items():
        rows[key] = c.make_subject(email, events, f"{key}-{round_no}-{int(time.time())}")
    deletable = sum(v for k, v in rows["erase"].items() if k != "customers")
    touched = sum(rows["erase"].values())  # and the customer row is updated (masked)

    # The worker's own path: fulfilment.execute_run for the dry run, then for the
    # erasure (which calls SqlConnector.erase, then remaining() to re-scan). The
    # connector's methods are timed from the outside. execute_run's check_fulfilment
    # messages go to Redis, where no worker takes them (purged at the end).
    request = c.file_request(EMAILS["erase"], "deletion", state=State.FULFILLING)
    plan_run = SourceRun.objects.create(request=request, source=source,
                                        action=SourceRun.Action.PLAN_ERASURE)
    with c.timed_methods(SqlConnector, "plan_erasure") as times:
        fulfilment.execute_run(plan_run.pk)
    plan_run.refresh_from_db()
    if plan_run.state != SourceRun.State.DONE or plan_run.records_found != touched:
        raise SystemExit(f"plan_erasure: {plan_run.state} {plan_run.last_error}, "
                         f"{plan_run.records_found} rows to erase, expected {touched}")
    plan_seconds = times["plan_erasure"][0]
    # Approved as approve_erasure records it (the erasure must match the approved
    # dry run's digest); the state machine's step itself is not what is measured.
    PrivacyRequest.objects.filter(pk=request.pk).update(
        erasure_approved_at=timezone.now(),
        erasure_plan_digests={str(source.pk): plan_run.result.get("digest")})
    run = SourceRun.objects.create(request=request, source=source, action=SourceRun.Action.ERASE)

    engine = c.shop_engine()
    clock = c.TransactionClock(engine)
    poller = LockPoller()
    poller.start()
    t0 = time.perf_counter()
    with c.timed_methods(SqlConnector, "erase", "remaining") as times:
        fulfilment.execute_run(run.pk)
    run_seconds = time.perf_counter() - t0
    poller.stop.set()
    poller.join()
    clock.close()
    run.refresh_from_db()
    if run.state != SourceRun.State.DONE or left_of(EMAILS["erase"]):
        raise SystemExit(f"erasure: {run.state} {run.last_error}; "
                         f"{left_of(EMAILS['erase'])} rows left")
    erase_seconds = times["erase"][0]
    remaining_seconds = times["remaining"][0]

    raw_seconds, raw_rows = raw_delete(EMAILS["raw"])
    batched_seconds, batched_rows, batched_longest = raw_batched(EMAILS["batched"], BATCH)
    b10_seconds, b10_rows, b10_longest = raw_batched(EMAILS["batched10k"], 10 * BATCH)
    if not raw_rows == batched_rows == b10_rows == deletable:
        raise SystemExit(f"raw deletes removed {raw_rows} / {batched_rows} / {b10_rows} rows")
    # Time to the first write: the traversal that finds the keys (one read transaction).
    return {
        "deletable_rows": deletable, "erased_records": run.records_found,
        "plan": plan_run.result, "plan_seconds": plan_seconds, "erase_seconds": erase_seconds,
        "execute_run_seconds": run_seconds,
        "remaining_seconds": remaining_seconds,
        "write_transactions": len(clock.write),
        "longest_write_transaction_s": max(clock.write),
        "median_write_transaction_s": c.median(clock.write),
        "write_transactions_total_s": sum(clock.write),
        "read_transactions": len(clock.read),
        "longest_read_transaction_s": max(clock.read) if clock.read else 0.0,
        "polled_longest_write_xact_s": poller.max_write,
        "polled_longest_read_xact_s": poller.max_read, "poll_samples": poller.samples,
        "raw_delete_seconds": raw_seconds, "raw_batched_seconds": batched_seconds,
        "raw_batched_longest_s": batched_longest,
        "raw_batched10k_seconds": b10_seconds, "raw_batched10k_longest_s": b10_longest,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    c.setup_django()
    c.ensure_shop(args.subjects)
    source = c.shop_source()
    rounds = []
    for i in range(args.repeat):
        r = one_round(args.events, source, i)
        rounds.append(r)
        print(f"round {i + 1}: erase {r['erase_seconds']:.2f} s ({r['write_transactions']} "
              f"write transactions, longest {r['longest_write_transaction_s'] * 1000:.0f} ms), "
              f"raw DELETE {r['raw_delete_seconds']:.2f} s, raw batched "
              f"{r['raw_batched_seconds']:.2f} s", flush=True)
    keys = [k for k in rounds[0] if isinstance(rounds[0][k], (int, float))]
    med = {k: c.median([r[k] for r in rounds]) for k in keys}
    worst = {k: max(r[k] for r in rounds) for k in (
        "longest_write_transaction_s", "polled_longest_write_xact_s",
        "longest_read_transaction_s", "polled_longest_read_xact_s")}
    rows = med["deletable_rows"]
    result = {
        "machine": c.machine(), "subjects": args.subjects, "repeat": args.repeat,
        "rounds": rounds, "median": med, "worst": worst,
        "erase_rows_per_s": rows / med["erase_seconds"],
        "erase_batches_rows_per_s": rows / med["write_transactions_total_s"],
        "raw_rows_per_s": rows / med["raw_delete_seconds"],
        "raw_batched_rows_per_s": rows / med["raw_batched_seconds"],
        "raw_batched10k_rows_per_s": rows / med["raw_batched10k_seconds"],
    }
    result["throughput_vs_raw"] = result["erase_rows_per_s"] / result["raw_rows_per_s"]
    lock_ok = max(worst["longest_write_transaction_s"], worst["polled_longest_write_xact_s"]) <= 1
    print(f"\n== erasure of {rows:,.0f} rows (median of {args.repeat}) ==")
    print(f"plan_erasure (dry run)        {med['plan_seconds']:8.2f} s")
    print(f"erase                         {med['erase_seconds']:8.2f} s  "
          f"{result['erase_rows_per_s']:10,.0f} rows/s")
    print(f"  of which write transactions {med['write_transactions_total_s']:8.2f} s  "
          f"({med['write_transactions']:.0f} batches)")
    print(f"remaining() re-scan           {med['remaining_seconds']:8.2f} s")
    print(f"execute_run (erase + re-scan) {med['execute_run_seconds']:8.2f} s")
    print(f"raw DELETE, one transaction   {med['raw_delete_seconds']:8.2f} s  "
          f"{result['raw_rows_per_s']:10,.0f} rows/s")
    print(f"raw DELETE by key, 1,000/txn  {med['raw_batched_seconds']:8.2f} s  "
          f"{result['raw_batched_rows_per_s']:10,.0f} rows/s  (longest "
          f"{med['raw_batched_longest_s'] * 1000:.0f} ms)")
    print(f"raw DELETE by key, 10,000/txn {med['raw_batched10k_seconds']:8.2f} s  "
          f"{result['raw_batched10k_rows_per_s']:10,.0f} rows/s  (longest "
          f"{med['raw_batched10k_longest_s'] * 1000:.0f} ms)")
    print(f"longest write transaction     {worst['longest_write_transaction_s'] * 1000:8.0f} ms "
          f"(events), {worst['polled_longest_write_xact_s'] * 1000:.0f} ms (pg_locks poll); "
          f"target <= 1 s: {c.verdict(lock_ok)}")
    read_ok = max(worst["longest_read_transaction_s"], worst["polled_longest_read_xact_s"]) <= 1
    result["write_locks_ok"], result["read_locks_ok"] = lock_ok, read_ok
    print(f"longest read transaction      {worst['longest_read_transaction_s'] * 1000:8.0f} ms "
          f"(events), {worst['polled_longest_read_xact_s'] * 1000:.0f} ms (poll): "
          f"AccessShareLock only; if the target counts these too: {c.verdict(read_ok)}")
    print(f"erase / raw DELETE            {result['throughput_vs_raw']:8.3f}x   target >= 0.5x: "
          f"{c.verdict(result['throughput_vs_raw'] >= 0.5)}")
    from privacyportal.celery import app

    app.control.purge()  # the check_fulfilment messages execute_run sent
    c.report("erase", result)


if __name__ == "__main__":
    main()
