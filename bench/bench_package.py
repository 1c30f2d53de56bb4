"""(b) A portability package for a subject with 200,000 rows.

    .venv/bin/python bench/bench_package.py [--subjects 1000000] [--events 200000] [--repeat 3]

Adds to the demo shop (loaded with --subjects customers if it does not hold that
many) one customer, bench-package@example.com, with 2 devices and --events
web_events (half per device): events are found through devices.cookie_id, two hops
from the customer. Then, in a fresh child process started for the purpose (a
worker-like process: Django set up, the Celery app, tasks, connector and packages
modules imported):

1. baseline RSS after imports;
2. fulfilment.execute_run for the gather SourceRun of a portability request (what
   the run_source task calls: claim, SqlConnector.gather into a RecordSink, the
   outcome recorded); the time inside SqlConnector.gather is reported too;
3. packages.build(request) (what build_results calls): the streamed, encrypted
   zip of JSON + CSV per table and a manifest.

Three kinds of round, each in its own child: "fresh" (a process that has only
imported the app: the worst case, no longer what a worker meets), "started" (the
child first does what Celery's worker_process_init makes every worker process do
before its first task: fulfilment.warm_up.warm_up_worker, untimed; that is a worker's
first package) and, with --warm, "warm" (a package built before in the process).

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


def copy_out_libpq(email: str, path) -> tuple[float, int, int]:
    """The same COPYs read the way the connector reads its own (driver._copy_out:
    libpq's PQgetCopyData in a plain loop, not psycopg's Copy iterator), into a
    file: a faster floor, reported next to the usual one."""
    from psycopg import sql

    from requests_app.sources.sql.driver import _copy_out

    rows = size = 0
    started = time.perf_counter()
    with c.shop_engine().connect() as conn, open(path, "wb") as out:
        def write(data):
            nonlocal rows, size
            out.write(data)
            size += len(data)
            rows += bytes(data).count(b"\n")

        for query in COPY_QUERIES:
            _copy_out(conn, sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(sql.SQL(query)),
                      {"e": email}, write)
    return time.perf_counter() - started, rows, size


def breakdown(email: str) -> dict:
    """Where gathering time goes, step by step, for the same rows (seconds, median
    of 3): the rows read by psycopg (server-side cursor, 1,000 per FETCH, as the
    connector's SQLAlchemy setting does), read by SQLAlchemy as mappings, then
    SqlConnector.gather into a sink that drops them (the traversal's own work; that
    sink has no write_copy, so the 200,000 web_events are streamed row by row on a
    server-side cursor there, not copied as a RecordSink gets them)."""
    import psycopg
    import sqlalchemy as sa

    from bench_gather import DropSink
    from requests_app.sources.base import IdentityData
    from requests_app.sources.sql.connector import SqlConnector

    query = " UNION ALL ".join(
        f"SELECT count(*) FROM ({q}) AS x" for q in COPY_QUERIES)  # warms the same pages
    steps = {"psycopg_server_cursor": [], "sqlalchemy_stream": [], "gather_drop_sink": []}
    connector = SqlConnector(c.shop_source(save=False))
    engine = c.shop_engine()
    identity = IdentityData(email=email)
    with psycopg.connect(c.shop_dsn()) as conn:
        conn.execute(query, {"e": email})
    for _ in range(3):
        with psycopg.connect(c.shop_dsn()) as conn:
            t = time.perf_counter()
            for q in COPY_QUERIES:
                with conn.cursor(name="bench") as cur:
                    cur.itersize = 1000
                    cur.execute(q, {"e": email})
                    for _row in cur:
                        pass
            steps["psycopg_server_cursor"].append(time.perf_counter() - t)
        with engine.connect() as conn:
            t = time.perf_counter()
            for q in COPY_QUERIES:
                text = sa.text(q.replace("%(e)s", ":e"))
                result = conn.execution_options(stream_results=True, yield_per=1000).execute(
                    text, {"e": email})
                for _row in result.mappings():
                    pass
            steps["sqlalchemy_stream"].append(time.perf_counter() - t)
        t = time.perf_counter()
        connector.gather(None, identity, DropSink())
        steps["gather_drop_sink"].append(time.perf_counter() - t)
    return {k: c.median(v) for k, v in steps.items()}


# --- the worker-like child ------------------------------------------------------


def child(request_id: int, run_id: int, profile: bool, phases: bool,
          warm_up: list[int] | None = None, started: bool = False) -> None:
    """Gather and build as a worker would, measuring this process. With `phases`,
    VmHWM is reset between gather and build to get each one's peak (that reset also
    resets what ru_maxrss reports, so rounds without it give the true ru_maxrss).
    With `warm_up` (another request and its gather run, for the same subject), that
    request is gathered and packaged first, untimed, as a long-lived worker has
    done before: tables reflected, connections to the shop, the portal database and
    Redis open. ru_maxrss then covers both. With `started`, the process first does
    what a worker process does when it starts, before it is given a task
    (fulfilment.warm_up.warm_up_worker, run on Celery's worker_process_init): SQL sources
    reflected, their connections and the broker's opened; untimed."""
    import threading

    c.setup_django(migrate=False)
    import requests_app.services.fulfilment.tasks  # noqa: F401  - what a worker process has imported
    from privacyportal.celery import app
    from requests_app.services.fulfilment import packages
    from requests_app.models import PrivacyRequest, SourceRun
    from requests_app.services.fulfilment import runs as fulfilment
    from requests_app.sources.sql.connector import SqlConnector

    app.loader.import_default_modules()
    if started:  # as Celery's worker_process_init does: the warm-up thread, waited for
        from requests_app.services.fulfilment.tasks import _warm_up

        _warm_up()
        for thread in threading.enumerate():
            if thread.name == "warm-up":
                thread.join()
    if warm_up:
        fulfilment.execute_run(warm_up[1])
        packages.build(PrivacyRequest.objects.select_related("identity").get(pk=warm_up[0]))
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

    # The worker's own path: fulfilment.execute_run claims the run, gathers into a
    # RecordSink and records the outcome (its check_fulfilment message goes to
    # Redis, where no worker takes it; bench scripts purge the queue). The time
    # spent inside SqlConnector.gather is taken by wrapping it.
    clock = c.TransactionClock(c.shop_engine())
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if phases:
        out["hwm_reset"] = c.reset_peak_rss()
    t0 = time.perf_counter()
    with c.timed_methods(SqlConnector, "gather") as inner:
        status = fulfilment.execute_run(run_id)
    t1 = time.perf_counter()
    run = SourceRun.objects.get(pk=run_id)
    if run.state != SourceRun.State.DONE:
        raise SystemExit(f"the run ended {status!r} / {run.state}: {run.last_error}")
    out["gather_seconds"] = t1 - t0
    out["connector_gather_seconds"] = inner["gather"][0]
    out["gather_longest_transaction_s"] = max(clock.read + clock.write, default=0.0)
    clock.close()
    out["gather_hwm_mb"] = c.hwm_mb()
    out["rss_after_gather_mb"] = c.rss_mb()
    out["records"] = run.records_found
    out["collections"] = {k: v["count"] for k, v in run.result["collections"].items()}
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


def one_round(email: str, source, profile: bool = False, phases: bool = False,
              warm: bool = False, started: bool = False) -> dict:
    from requests_app.models import SourceRun, State

    def new_run():
        request = c.file_request(email, "portability", state=State.FULFILLING)
        run = SourceRun.objects.create(request=request, source=source,
                                       action=SourceRun.Action.GATHER)
        return [str(request.pk), str(run.pk)]

    warm_up = ["--warm-up"] + new_run() if warm else []
    proc = subprocess.run([sys.executable, __file__, "--child"] + new_run() + warm_up
                          + (["--profile"] if profile else [])
                          + (["--phases"] if phases else [])
                          + (["--started"] if started else []),
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
    parser.add_argument("--name", default="package", help="name of the results file")
    parser.add_argument("--profile", action="store_true",
                        help="also run once under cProfile and print the top functions")
    parser.add_argument("--child", nargs=2, type=int, metavar=("REQUEST", "RUN"))
    parser.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warm-up", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--started", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true",
                        help="also time warm rounds: each child first gathers and packages "
                        "another request of the same subject, untimed, as a long-lived "
                        "worker has done before")
    args = parser.parse_args()
    if args.child:
        child(*args.child, profile=args.profile, phases=args.phases, warm_up=args.warm_up,
              started=args.started)
        return

    c.setup_django()
    c.ensure_shop(args.subjects)
    source = c.shop_source()
    t = time.perf_counter()
    rows = c.make_subject(EMAIL, args.events, "package")
    print(f"subject created: {rows} in {time.perf_counter() - t:.1f} s", flush=True)
    total_rows = sum(rows.values())

    copy_path = Path(os.environ["DATA_DIR"]) / "bench-copy.csv"
    copy_out(EMAIL, copy_path)  # warm-up
    copies = [copy_out(EMAIL, copy_path) for _ in range(5)]
    copy_seconds = c.median([x[0] for x in copies])
    copy_rows, copy_bytes = copies[0][1], copies[0][2]
    copy_out_libpq(EMAIL, copy_path)  # warm-up
    libpq = [copy_out_libpq(EMAIL, copy_path) for _ in range(5)]
    libpq_seconds = c.median([x[0] for x in libpq])
    copy_path.unlink()
    if libpq[0][1] != total_rows:
        raise SystemExit(f"COPY (libpq loop) wrote {libpq[0][1]} rows, expected {total_rows}")
    if copy_rows != total_rows:
        raise SystemExit(f"COPY wrote {copy_rows} rows, expected {total_rows}")

    rounds = []
    parent_rss = c.rss_mb()
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
    def timed_rounds(label, count, **kind):
        done = []
        for i in range(count):
            r = one_round(EMAIL, source, **kind)
            if r["records"] != total_rows:
                raise SystemExit(f"gather found {r['records']} rows, expected {total_rows}")
            r["total_seconds"] = r["gather_seconds"] + r["build_seconds"]
            done.append(r)
            print(f"{label} round {i + 1}: gather {r['gather_seconds']:.2f} s, build "
                  f"{r['build_seconds']:.2f} s, ru_maxrss {r['ru_maxrss_mb']:.0f} MB", flush=True)
        return done

    # The first task of a worker process that has started as Celery starts one
    # (its worker_process_init warm-up done): what a worker's first package costs.
    started_rounds = timed_rounds("started", args.repeat, started=True)
    warm_rounds = timed_rounds("warm", args.repeat if args.warm else 0, warm=True)
    if args.profile:
        one_round(EMAIL, source, profile=True, warm=args.warm)
    # After the rounds: a child's ru_maxrss starts at this process's RSS when it is
    # started (Linux keeps the peak across fork/vfork and exec), and this breakdown
    # holds the traversal's keys of every row (gather into a sink without
    # write_copy), which made this parent, and so every child's ru_maxrss, as big
    # as the gather it measures.
    steps = breakdown(EMAIL)
    checked = check_package(rounds[-1]["package_id"])
    web = [v for k, v in checked["records"].items() if k.endswith("web_events.json")]
    if web != [args.events]:
        raise SystemExit(f"the package's manifest says {checked['records']}")

    med = {k: c.median([r[k] for r in rounds]) for k in (
        "baseline_rss_mb", "gather_seconds", "connector_gather_seconds", "build_seconds", "total_seconds", "ru_maxrss_mb",
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
        "package_files": checked["files"], "breakdown_seconds": steps,
    }
    result["throughput_vs_copy"] = result["pipeline_rows_per_s"] / result["copy_rows_per_s"]
    result["copy_libpq_seconds"] = libpq_seconds
    result["throughput_vs_copy_libpq"] = libpq_seconds / med["total_seconds"]
    def summary(kind_rounds):
        kind = {k: c.median([r[k] for r in kind_rounds]) for k in (
            "gather_seconds", "connector_gather_seconds", "build_seconds", "total_seconds")}
        kind["worst_ru_maxrss_mb"] = max(r["ru_maxrss_mb"] for r in kind_rounds)
        kind["throughput_vs_copy"] = copy_seconds / kind["total_seconds"]
        kind["throughput_vs_copy_libpq"] = libpq_seconds / kind["total_seconds"]
        return kind

    started = summary(started_rounds)
    result["started_rounds"], result["started"] = started_rounds, started
    if warm_rounds:
        warm = summary(warm_rounds)
        result["warm_rounds"], result["warm"] = warm_rounds, warm
    print(f"\n== portability package, {total_rows:,} rows (median of {args.repeat} "
          f"fresh processes) ==")
    print(f"baseline RSS after imports   {med['baseline_rss_mb']:8.1f} MB")
    result["parent_rss_mb_at_rounds"] = parent_rss
    print(f"parent RSS while the children ran {parent_rss:8.1f} MB (a floor of their ru_maxrss)")
    print(f"peak RSS (ru_maxrss)         {med['ru_maxrss_mb']:8.1f} MB   (worst {worst_rss:.1f}); "
          f"target <= 150 MB: {c.verdict(worst_rss <= 150)}")
    print(f"  peak during gather (VmHWM) {med['gather_hwm_mb']:8.1f} MB")
    print(f"  peak during build (VmHWM)  {med['build_hwm_mb']:8.1f} MB")
    print(f"execute_run (gather)         {med['gather_seconds']:8.2f} s  "
          f"{result['gather_rows_per_s']:10,.0f} rows/s")
    print(f"  of which in SqlConnector.gather {med['connector_gather_seconds']:5.2f} s")
    print(f"packages.build               {med['build_seconds']:8.2f} s  "
          f"{result['build_rows_per_s']:10,.0f} rows/s")
    print(f"gather + build               {med['total_seconds']:8.2f} s  "
          f"{result['pipeline_rows_per_s']:10,.0f} rows/s")
    print(f"  rows read by psycopg (server-side cursor)   {steps['psycopg_server_cursor']:5.2f} s")
    print(f"  ... by SQLAlchemy, streamed as mappings     {steps['sqlalchemy_stream']:5.2f} s")
    print(f"  SqlConnector.gather, records dropped        {steps['gather_drop_sink']:5.2f} s")
    print(f"COPY ... TO STDOUT (csv)     {copy_seconds:8.2f} s  "
          f"{result['copy_rows_per_s']:10,.0f} rows/s  ({copy_bytes / 1e6:.1f} MB)")
    print(f"gather's read transaction    {c.median([r['gather_longest_transaction_s'] for r in rounds]):8.2f} s  "
          "(AccessShareLock on the 12 tables while it streams)")
    print(f"package                      {med['package_bytes'] / 1e6:8.1f} MB, "
          f"{checked['files']} files")
    print(f"throughput / COPY            {result['throughput_vs_copy']:8.3f}x   target >= 0.5x: "
          f"{c.verdict(result['throughput_vs_copy'] >= 0.5)}")
    print(f"COPY read by a libpq loop    {libpq_seconds:8.2f} s  (driver._copy_out, as the "
          f"connector reads): throughput / that {result['throughput_vs_copy_libpq']:.3f}x")
    print(f"started worker's first task (median of {len(started_rounds)}): gather "
          f"{started['gather_seconds']:.2f} s, build {started['build_seconds']:.2f} s, total "
          f"{started['total_seconds']:.2f} s, ru_maxrss worst {started['worst_ru_maxrss_mb']:.1f} MB")
    print(f"throughput / COPY, started   {started['throughput_vs_copy']:8.3f}x   target >= 0.5x: "
          f"{c.verdict(started['throughput_vs_copy'] >= 0.5)}; / the libpq-loop COPY "
          f"{started['throughput_vs_copy_libpq']:.3f}x")
    if warm_rounds:
        print(f"warm worker (median of {len(warm_rounds)}): gather {warm['gather_seconds']:.2f} s "
              f"(SqlConnector.gather {warm['connector_gather_seconds']:.2f} s), build "
              f"{warm['build_seconds']:.2f} s, total {warm['total_seconds']:.2f} s, ru_maxrss "
              f"worst {warm['worst_ru_maxrss_mb']:.1f} MB")
        print(f"throughput / COPY, warm      {warm['throughput_vs_copy']:8.3f}x   target >= 0.5x: "
              f"{c.verdict(warm['throughput_vs_copy'] >= 0.5)}; / the libpq-loop COPY "
              f"{warm['throughput_vs_copy_libpq']:.3f}x")
    from privacyportal.celery import app

    app.control.purge()  # the check_fulfilment messages execute_run sent
    c.report(args.name, result)


if __name__ == "__main__":
    main()
