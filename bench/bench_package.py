"""(b) A portability package for a subject with 200,000 rows.

    .venv/bin/python bench/bench_package.py [--subjects 1000000] [--events 200000] [--repeat 3]

Adds to the demo shop (loaded with --subjects customers if it does not hold that
many) one customer, bench-package@example.com, with 2 devices and --events
web_events (half per device): events are found through devices.cookie_id, two hops
from the customer. Then, in a fresh child process started for the purpose (a
worker-like process: Django set up, the connector and packages modules imported):

1. baseline RSS after imports;
2. SqlConnector.gather into a RecordSink for a gather SourceRun of a portability
   request (as fulfilment.execute_run does), the run marked done with its
   collections;
3. packages.build(request): the streamed, encrypted zip of JSON + CSV per table.

Peak RSS: ru_maxrss of the child (whole life), and per phase VmHWM (reset between
phases through /proc/self/clear_refs). Throughput: rows / (gather + build), against
`COPY (SELECT ... the same rows ...) TO STDOUT (FORMAT csv)` read with psycopg's
copy and written to a file.

Targets: peak RSS <= 150 MB; throughput >= 0.5 x COPY.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common as c

EMAIL = "bench-package@example.com"


def make_subject(email: str, events: int, tag: str) -> dict:
    """A customer with 2 devices and `events` web events (plus marketing preferences).
    Replaces an earlier one with the same email. Returns row counts."""
    import psycopg

    with psycopg.connect(c.shop_dsn()) as conn:
        old = conn.execute("SELECT id FROM customers WHERE email = %s", (email,)).fetchone()
        if old:
            cid = old[0]
            conn.execute("DELETE FROM web_events WHERE cookie_id IN "
                         "(SELECT cookie_id FROM devices WHERE customer_id = %s)", (cid,))
            for table in ("devices", "marketing_preferences", "addresses", "support_tickets",
                          "product_reviews", "partner_shares"):
                conn.execute(f"DELETE FROM {table} WHERE customer_id = %s", (cid,))
            conn.execute("DELETE FROM customers WHERE id = %s", (cid,))
        cid = conn.execute(
            "INSERT INTO customers (customer_number, email, first_name, last_name, phone, "
            "created_at) VALUES (%s, %s, 'Bench', 'Subject', NULL, now()) RETURNING id",
            (f"B-{tag}", email)).fetchone()[0]
        conn.execute("INSERT INTO marketing_preferences (customer_id, email_opt_in, sms_opt_in, "
                     "updated_at) VALUES (%s, true, false, now())", (cid,))
        cookies = [f"bench-{tag}-cookie-{k}" for k in (1, 2)]
        for cookie in cookies:
            conn.execute("INSERT INTO devices (cookie_id, customer_id, user_agent, first_seen) "
                         "VALUES (%s, %s, 'Mozilla/5.0 (X11; Linux x86_64) Bench/1.0', now())",
                         (cookie, cid))
        per_device = [events // 2, events - events // 2]
        for cookie, n in zip(cookies, per_device):
            conn.execute(
                "INSERT INTO web_events (cookie_id, ip_address, url, occurred_at) "
                "SELECT %s, '203.0.113.' || (g %% 250 + 1), "
                "'https://shop.example.com/products/' || (g %% 250 + 1) || '?ref=bench', "
                "now() - g * interval '1 minute' FROM generate_series(1, %s) g",
                (cookie, n))
    with psycopg.connect(c.shop_dsn(), autocommit=True) as conn:
        conn.execute("ANALYZE customers, devices, web_events, marketing_preferences")
    return {"customers": 1, "marketing_preferences": 1, "devices": 2, "web_events": events}


COPY_QUERIES = [
    "SELECT c.* FROM customers c WHERE c.email = %(e)s",
    "SELECT m.* FROM marketing_preferences m JOIN customers c ON c.id = m.customer_id "
    "WHERE c.email = %(e)s",
    "SELECT d.* FROM devices d JOIN customers c ON c.id = d.customer_id WHERE c.email = %(e)s",
    "SELECT w.* FROM web_events w JOIN devices d ON d.cookie_id = w.cookie_id "
    "JOIN customers c ON c.id = d.customer_id WHERE c.email = %(e)s",
]


def copy_out(email: str, path) -> tuple[float, int, int]:
    """COPY ... TO STDOUT (FORMAT csv) of the subject's rows into a file:
    (seconds, rows, bytes)."""
    import psycopg
    from psycopg import sql

    rows = size = 0
    started = time.perf_counter()
    with psycopg.connect(c.shop_dsn()) as conn, open(path, "wb") as out:
        cur = conn.cursor()
        for query in COPY_QUERIES:
            literal = sql.SQL(query.replace("%(e)s", "{e}")).format(e=sql.Literal(email))
            with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(literal)) as copy:
                for data in copy:
                    out.write(data)
                    size += len(data)
                    rows += bytes(data).count(b"\n")
    return time.perf_counter() - started, rows, size


# --- the worker-like child ------------------------------------------------------


def child(request_id: int, run_id: int, profile: bool, phases: bool) -> None:
    """Gather and build as a worker would, measuring this process. With `phases`,
    VmHWM is reset between gather and build to get each one's peak (that reset also
    resets what ru_maxrss reports, so rounds without it give the true ru_maxrss)."""
    import threading

    c.setup_django(migrate=False)
    import stream_zip  # noqa: F401

    import requests_app.tasks  # noqa: F401  - what a worker process has imported
    from privacyportal.celery import app
    from requests_app import packages
    from requests_app.models import PrivacyRequest, SourceRun
    from requests_app.sources.base import IdentityData
    from requests_app.sources.records import RecordSink
    from requests_app.sources.registry import connector_for

    app.loader.import_default_modules()
    out = {"baseline_rss_mb": c.rss_mb(), "baseline_peak_mb": c.peak_rss_mb(),
           "phases": phases}

    # Sampled RSS, as a cross-check of VmHWM.
    sampled = {"max": 0.0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            sampled["max"] = max(sampled["max"], c.rss_mb())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    run = SourceRun.objects.select_related("source", "request__identity").get(pk=run_id)
    identity = IdentityData.of(run.request.identity)
    connector = connector_for(run.source)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if phases:
        out["hwm_reset"] = c.reset_peak_rss()
    t0 = time.perf_counter()
    with RecordSink(run) as sink:
        outcome = connector.gather(run, identity, sink)
    run.result = {**outcome.result, "collections": sink.collections}
    run.records_found = outcome.records
    run.state = SourceRun.State.DONE
    run.save()
    t1 = time.perf_counter()
    out["gather_seconds"] = t1 - t0
    out["gather_hwm_mb"] = c.hwm_mb()
    out["rss_after_gather_mb"] = c.rss_mb()
    out["records"] = outcome.records
    out["collections"] = {k: v["count"] for k, v in sink.collections.items()}
    if phases:
        c.reset_peak_rss()
    request = PrivacyRequest.objects.select_related("identity").get(pk=request_id)
    t2 = time.perf_counter()
    package = packages.build(request)
    t3 = time.perf_counter()
    out["build_seconds"] = t3 - t2
    out["build_hwm_mb"] = c.hwm_mb()
    if profiler:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
    stop.set()
    sampler.join()
    out["sampled_max_rss_mb"] = sampled["max"]
    out["package_id"] = package.pk
    out["package_bytes"] = package.size
    out["ru_maxrss_mb"] = c.peak_rss_mb()
    print("CHILD " + json.dumps(out), flush=True)


def check_package(package_id: int) -> dict:
    """Decrypt the package and read its manifest (not timed)."""
    import io
    import zipfile
    from pathlib import Path

    from django.conf import settings

    from requests_app.files import iter_decrypted
    from requests_app.models import Package

    package = Package.objects.get(pk=package_id)
    data = io.BytesIO()
    for chunk in iter_decrypted(Path(settings.MEDIA_ROOT) / package.path):
        data.write(chunk)
    with zipfile.ZipFile(data) as z:
        manifest = json.loads(z.read("manifest.json"))
        names = z.namelist()
    return {"files": len(names),
            "records": {f["name"]: f["records"] for f in manifest["files"]}}


def one_round(email: str, source, profile: bool = False, phases: bool = False) -> dict:
    from requests_app.models import SourceRun, State

    request = c.file_request(email, "portability", state=State.FULFILLING)
    run = SourceRun.objects.create(request=request, source=source,
                                   action=SourceRun.Action.GATHER,
                                   state=SourceRun.State.RUNNING)
    proc = subprocess.run([sys.executable, __file__, "--child", str(request.pk), str(run.pk)]
                          + (["--profile"] if profile else [])
                          + (["--phases"] if phases else []),
                          capture_output=True, text=True)
    if profile:
        print(proc.stderr[-6000:])
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("CHILD ")][-1]
    return json.loads(line[len("CHILD "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="also run once under cProfile and print the top functions")
    parser.add_argument("--child", nargs=2, type=int, metavar=("REQUEST", "RUN"))
    parser.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, profile=args.profile, phases=args.phases)
        return

    c.setup_django()
    c.ensure_shop(args.subjects)
    source = c.shop_source()
    t = time.perf_counter()
    rows = make_subject(EMAIL, args.events, "package")
    print(f"subject created: {rows} in {time.perf_counter() - t:.1f} s", flush=True)
    total_rows = sum(rows.values())

    copy_path = Path(os.environ["DATA_DIR"]) / "bench-copy.csv"
    copy_out(EMAIL, copy_path)  # warm-up
    copies = [copy_out(EMAIL, copy_path) for _ in range(5)]
    copy_seconds = c.median([x[0] for x in copies])
    copy_rows, copy_bytes = copies[0][1], copies[0][2]
    copy_path.unlink()
    if copy_rows != total_rows:
        raise SystemExit(f"COPY wrote {copy_rows} rows, expected {total_rows}")

    rounds = []
    for i in range(args.repeat + 1):
        # The last round resets VmHWM between phases: per-phase peaks, not timed.
        phases = i == args.repeat
        r = one_round(EMAIL, source, phases=phases)
        if r["records"] != total_rows:
            raise SystemExit(f"gather found {r['records']} rows, expected {total_rows}")
        r["total_seconds"] = r["gather_seconds"] + r["build_seconds"]
        if phases:
            split = r
            print(f"phase round: peak during gather {r['gather_hwm_mb']:.0f} MB, during build "
                  f"{r['build_hwm_mb']:.0f} MB", flush=True)
        else:
            rounds.append(r)
            print(f"round {i + 1}: gather {r['gather_seconds']:.2f} s, build "
                  f"{r['build_seconds']:.2f} s, ru_maxrss {r['ru_maxrss_mb']:.0f} MB, sampled "
                  f"{r['sampled_max_rss_mb']:.0f} MB", flush=True)
    if args.profile:
        one_round(EMAIL, source, profile=True)
    checked = check_package(rounds[-1]["package_id"])
    web = [v for k, v in checked["records"].items() if k.endswith("web_events.json")]
    if web != [args.events]:
        raise SystemExit(f"the package's manifest says {checked['records']}")

    med = {k: c.median([r[k] for r in rounds]) for k in (
        "baseline_rss_mb", "gather_seconds", "build_seconds", "total_seconds", "ru_maxrss_mb",
        "sampled_max_rss_mb", "package_bytes")}
    med["gather_hwm_mb"], med["build_hwm_mb"] = split["gather_hwm_mb"], split["build_hwm_mb"]
    worst_rss = max(r["ru_maxrss_mb"] for r in rounds)
    result = {
        "machine": c.machine(), "subjects": args.subjects, "rows": total_rows,
        "rows_by_table": rows, "repeat": args.repeat, "rounds": rounds, "median": med,
        "phase_round": split, "worst_ru_maxrss_mb": worst_rss,
        "copy_seconds": copy_seconds, "copy_bytes": copy_bytes,
        "copy_rows_per_s": total_rows / copy_seconds,
        "gather_rows_per_s": total_rows / med["gather_seconds"],
        "build_rows_per_s": total_rows / med["build_seconds"],
        "pipeline_rows_per_s": total_rows / med["total_seconds"],
        "package_files": checked["files"],
    }
    result["throughput_vs_copy"] = result["pipeline_rows_per_s"] / result["copy_rows_per_s"]
    print(f"\n== portability package, {total_rows:,} rows (median of {args.repeat} "
          f"fresh processes) ==")
    print(f"baseline RSS after imports   {med['baseline_rss_mb']:8.1f} MB")
    print(f"peak RSS (ru_maxrss)         {med['ru_maxrss_mb']:8.1f} MB   (worst {worst_rss:.1f}); "
          f"target <= 150 MB: {c.verdict(worst_rss <= 150)}")
    print(f"  peak during gather (VmHWM) {med['gather_hwm_mb']:8.1f} MB")
    print(f"  peak during build (VmHWM)  {med['build_hwm_mb']:8.1f} MB")
    print(f"gather into RecordSink       {med['gather_seconds']:8.2f} s  "
          f"{result['gather_rows_per_s']:10,.0f} rows/s")
    print(f"packages.build               {med['build_seconds']:8.2f} s  "
          f"{result['build_rows_per_s']:10,.0f} rows/s")
    print(f"gather + build               {med['total_seconds']:8.2f} s  "
          f"{result['pipeline_rows_per_s']:10,.0f} rows/s")
    print(f"COPY ... TO STDOUT (csv)     {copy_seconds:8.2f} s  "
          f"{result['copy_rows_per_s']:10,.0f} rows/s  ({copy_bytes / 1e6:.1f} MB)")
    print(f"package                      {med['package_bytes'] / 1e6:8.1f} MB, "
          f"{checked['files']} files")
    print(f"throughput / COPY            {result['throughput_vs_copy']:8.3f}x   target >= 0.5x: "
          f"{c.verdict(result['throughput_vs_copy'] >= 0.5)}")
    c.report("package", result)


if __name__ == "__main__":
    main()
