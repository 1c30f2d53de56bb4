"""Export of the audit trail (issue 6): rows per second and peak RSS of the event
log export (CSV, zipped with its SHA-256 manifest, as /audit/events/ streams it)
against PostgreSQL's own `COPY (...) TO STDOUT (FORMAT csv)` of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:55450/audit_bench \\
        .venv/bin/python bench/bench_audit_export.py --events 1000000

The database must exist and be migrated (bench/run_audit_export.sh does both on a
throwaway PostgreSQL). Each side runs in a child process so its peak RSS is its own.
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

COLUMNS = ("e.id, e.at, e.actor_kind, e.actor_label, e.action, r.reference, e.from_state, "
           "e.to_state, e.reason, e.data, e.prev_hash, e.hash")


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacyportal.settings")
    import django

    django.setup()


def fill(count: int) -> None:
    """Insert `count` events with generate_series (hashes are random: the export
    does not verify the chain)."""
    setup_django()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM requests_app_auditevent")
        have = cursor.fetchone()[0]
        if have >= count:
            return
        cursor.execute(
            "INSERT INTO requests_app_auditevent (at, actor_kind, actor_label, action, "
            "from_state, to_state, reason, data, prev_hash, hash) "
            "SELECT now() - (n || ' seconds')::interval, 'system', 'system', "
            "'request.' || (ARRAY['received','verify','approve','release'])[1 + n %% 4], "
            "'in_review', 'approved', '', "
            "jsonb_build_object('source', 'Demo shop', 'records', n %% 97), "
            "md5(n::text) || md5((n + 1)::text), md5((n + 2)::text) || md5((n + 3)::text) "
            "FROM generate_series(%s, %s) n", [have + 1, count])
        cursor.execute("ANALYZE requests_app_auditevent")


def child_export() -> dict:
    setup_django()
    from requests_app.audit import reports
    from requests_app.zipfiles import stream_zip

    start = time.perf_counter()
    manifest = {}
    now = datetime.datetime.now(datetime.timezone.utc)
    body = reports.hashed(reports.event_log_text("csv"), manifest)
    # As the view streams it (zipfiles' writer and fast deflate).
    size = sum(len(chunk) for chunk in stream_zip([("events.csv", body)], now))
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "zip_bytes": size, "rows": manifest["lines"] - 1,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_copy() -> dict:
    import psycopg
    from psycopg import sql

    url = os.environ["DATABASE_URL"]
    start = time.perf_counter()
    size = rows = 0
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        query = sql.SQL("COPY (SELECT {} FROM requests_app_auditevent e LEFT JOIN "
                        "requests_app_privacyrequest r ON r.id = e.request_id ORDER BY e.id) "
                        "TO STDOUT (FORMAT csv, HEADER)").format(sql.SQL(COLUMNS))
        with cursor.copy(query) as copy:
            for block in copy:
                size += len(block)
                rows += bytes(block).count(b"\n")
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "bytes": size, "rows": rows - 1,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(which: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", which], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_export() if args.child == "export" else child_copy()))
        return
    fill(args.events)
    results = {"export": [], "copy": []}
    for _ in range(args.repeat):
        results["copy"].append(run_child("copy"))
        results["export"].append(run_child("export"))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in results.items()}
    rows = best["export"]["rows"]
    summary = {
        "events": rows,
        "export_rows_per_s": round(rows / best["export"]["seconds"]),
        "copy_rows_per_s": round(best["copy"]["rows"] / best["copy"]["seconds"]),
        "export_peak_rss_mb": round(max(r["peak_rss_mb"] for r in results["export"]), 1),
        "copy_peak_rss_mb": round(max(r["peak_rss_mb"] for r in results["copy"]), 1),
    }
    summary["ratio_vs_copy"] = round(summary["export_rows_per_s"] / summary["copy_rows_per_s"], 3)
    print(json.dumps({"best": best, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
