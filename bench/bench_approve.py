"""(d) 1,000 access requests approved at once, two worker processes.

    .venv/bin/python bench/bench_approve.py [--requests 1000] [--subjects 5000] [--concurrency 2]

The demo shop (its own database, shop_bench_5000: a small shop, so that this
measures orchestration) is the only enabled source. The requests are filed through
the real use case (as tests/conftest.py file_request does: do_receive_request, the
'received' notice sent eagerly, then the state set to in_review by a queryset
update), one per shop customer user9@example.com, user10@ ... Then a Celery worker
is started as tests.conftest.start_worker does (`celery -A privacyportal worker
--pool=prefork --concurrency=2`, its own process group, on the bench Redis and the
portal database, production defaults otherwise: DATABASE_CONN_MAX_AGE=60), the
broker queue is purged, and a Privacy Manager approves every request in a tight
loop (do_transition 'approve': each commit sends begin_fulfilment to Redis).

Measured: time from the first approval until the last request reaches
results_ready (from the audit trail), requests per minute, per-request latency,
and nothing lost: every request results_ready with its package, every SourceRun
done (how many attempts each took), no run failed. The beat scheduler (and so the
reconciler) is not running: a lost message would show as a request left behind.
Also: the tasks' durations from the worker log, how many task messages the
worker received per request (broker trips: begin_fulfilment, then run_source; the
last run checks the request and builds its package inline), and CPU use during the
run (the worker's CPU per request).

Targets (issue 12): none lost; at least 1,000 requests per minute; at most two
broker trips per request from approval to results ready.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import _common as c

DB = "shop_bench_5000"


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parts = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(parts[1]) == pid:
                found.append(int(entry.name))
    return found


def start_worker(log_path: Path, concurrency: int) -> subprocess.Popen:
    env = {**os.environ, "LOG_LEVEL": "INFO"}
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "privacyportal", "worker", "--pool=prefork",
         f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle",
         "--without-gossip", "--hostname", f"bench-{os.getpid()}@%h"],
        cwd=c.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    process.log_file = log
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the worker exited: {log_path.read_text()[-3000:]}")
        if "ready." in log_path.read_text():
            return process
        time.sleep(0.2)
    stop_worker(process)
    raise SystemExit("the worker did not start within 60 s")


def stop_worker(process: subprocess.Popen) -> None:
    """SIGTERM to the worker's own process group (it and its pool), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.log_file.close()


TASK_LINE = re.compile(r"Task (requests_app\.[\w.]+)\[[^\]]+\] succeeded in ([0-9.e-]+)s")
RECEIVED_LINE = re.compile(r"Task (requests_app\.[\w.]+)\[[^\]]+\] received")


def task_times(log_path: Path) -> dict:
    """Per task that ran (short name: begin_fulfilment, run_source, ...): how many
    were received from the broker, how many succeeded, and their durations. The
    check and the package build of a request happen inside its last run_source."""
    durations = defaultdict(list)
    received = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        m = TASK_LINE.search(line)
        if m:
            durations[m.group(1).rsplit(".", 1)[1]].append(float(m.group(2)))
            continue
        m = RECEIVED_LINE.search(line)
        if m:
            received[m.group(1).rsplit(".", 1)[1]] += 1
    return {name: {"received": received[name], "count": len(v), "total_s": sum(v),
                   "mean_ms": 1000 * sum(v) / len(v) if v else 0.0,
                   "median_ms": 1000 * c.median(v) if v else 0.0,
                   "max_ms": 1000 * max(v) if v else 0.0}
            for name, v in sorted({**{n: [] for n in received}, **durations}.items())}


class LockWaits(threading.Thread):
    """Every 50 ms: how many sessions of the portal database wait for a lock, and how
    many of them for an advisory lock (the audit chain's, services/audit.py)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.samples = 0
        self.with_waiters = 0
        self.advisory_waiters = 0
        self.waiters = 0

    def run(self):
        import psycopg

        with psycopg.connect(f"{c.SERVER}/{c.PORTAL_DB}", autocommit=True) as conn:
            while not self.stop.is_set():
                waiting, advisory = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE locktype = 'advisory') "
                    "FROM pg_locks WHERE NOT granted").fetchone()
                self.samples += 1
                self.waiters += waiting
                self.advisory_waiters += advisory
                self.with_waiters += bool(waiting)
                time.sleep(0.05)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800,
                        help="seconds to wait for all requests (default 1800)")
    args = parser.parse_args()
    if args.requests > args.subjects - 8:
        raise SystemExit("--requests must be at most --subjects - 8")

    c.use_shop(DB if args.subjects == 5000 else f"shop_bench_{args.subjects}")
    c.setup_django()
    c.ensure_shop(args.subjects)
    from django.db.models import Count

    from privacyportal.celery import app
    from requests_app.models import (Actor, AuditEvent, Package, PrivacyRequest, SourceRun,
                                     State)
    from requests_app.services.requests.lifecycle import do_transition

    source = c.shop_source()
    mgr = c.manager()

    t0 = time.perf_counter()
    ids = []
    for n in range(9, 9 + args.requests):
        ids.append(c.file_request(f"user{n}@example.com", "access", state=State.IN_REVIEW).pk)
    filing = time.perf_counter() - t0
    print(f"filed {len(ids)} requests in {filing:.1f} s", flush=True)

    log_path = Path(os.environ["DATA_DIR"]) / "bench-worker.log"
    app.conf.task_always_eager = False
    purged = app.control.purge()
    worker = start_worker(log_path, args.concurrency)
    pool = children(worker.pid)
    print(f"worker ready: pid {worker.pid}, pool {pool} (purged {purged} old messages)",
          flush=True)
    cpu_before = cpu_times()
    worker_cpu_before = {p: process_cpu(p) for p in [worker.pid, *pool]}
    locks = LockWaits()
    locks.start()
    try:
        started = time.perf_counter()
        for pk in ids:
            do_transition(pk, "approve", actor=Actor.staff(mgr))
        approving = time.perf_counter() - started
        print(f"approved {len(ids)} requests in {approving:.1f} s", flush=True)
        ready = PrivacyRequest.objects.filter(pk__in=ids, state=State.RESULTS_READY)
        progress = []
        done = 0
        while done < len(ids) and time.perf_counter() - started < args.timeout:
            time.sleep(1)
            done = ready.count()
            progress.append((time.perf_counter() - started, done))
            if len(progress) % 15 == 0:
                print(f"  {progress[-1][0]:6.0f} s: {done} results ready", flush=True)
        waited = time.perf_counter() - started
        cpu_after = cpu_times()
        worker_cpu = sum(process_cpu(p) - worker_cpu_before.get(p, 0.0)
                         for p in [worker.pid, *children(worker.pid)])
    finally:
        locks.stop.set()
        stop_worker(worker)

    approved_at = dict(AuditEvent.objects.filter(request_id__in=ids, action="request.approve")
                       .values_list("request_id", "at"))
    ready_at = dict(AuditEvent.objects.filter(request_id__in=ids,
                                              action="request.mark_results_ready")
                    .values_list("request_id", "at"))
    states = Counter(PrivacyRequest.objects.filter(pk__in=ids).values_list("state", flat=True))
    runs = SourceRun.objects.filter(request_id__in=ids)
    run_states = Counter(runs.values_list("state", flat=True))
    attempts = Counter(runs.values_list("attempts", flat=True))
    per_request = Counter(runs.values("request_id").annotate(n=Count("id"))
                          .values_list("n", flat=True))
    packages = Package.objects.filter(request_id__in=ids, kind=Package.Kind.ACCESS).count()
    lost = len(ids) - states.get(State.RESULTS_READY, 0)
    latencies = [(ready_at[i] - approved_at[i]).total_seconds() for i in ids if i in ready_at]
    if ready_at:
        first, last = min(approved_at.values()), max(ready_at.values())
        span = (last - first).total_seconds()
    else:
        span = float("nan")
    # When 10 %, 50 %, 90 % and all of the requests were ready (after the first
    # approval). The queue is FIFO, so every request's first task runs before any
    # request's last: completions bunch towards the end.
    marks = sorted(ready_at.values())
    curve = {}
    if ready_at:
        for share in (10, 50, 90, 100):
            k = max(0, min(len(marks) - 1, (share * len(ids)) // 100 - 1))
            curve[f"{share}%"] = (marks[k] - first).total_seconds()
    busy = (cpu_after[0] - cpu_before[0]) / max(cpu_after[1] - cpu_before[1], 1)
    tasks = task_times(log_path)
    # Broker trips: every task message the worker received (retries included),
    # per request. Two when every source answers at once (begin_fulfilment, then
    # one run_source per source, here one).
    trips = sum(t["received"] for t in tasks.values()) / len(ids)
    result = {
        "machine": c.machine(), "requests": len(ids), "subjects": args.subjects,
        "concurrency": args.concurrency, "source": source.name, "filing_seconds": filing,
        "approving_seconds": approving, "span_seconds": span, "waited_seconds": waited,
        "requests_per_minute": len(ready_at) / span * 60 if ready_at else 0.0,
        "ready_after_s": curve,
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                      "max": max(latencies)} if latencies else None,
        "states": dict(states), "lost": lost, "run_states": dict(run_states),
        "runs_per_request": dict(per_request), "attempts": dict(attempts),
        "packages": packages, "machine_cpu_busy": busy, "worker_cpu_seconds": worker_cpu,
        "worker_cpu_ms_per_request": 1000 * worker_cpu / len(ids),
        "tasks": tasks, "broker_trips_per_request": trips,
        "lock_waits": {"samples": locks.samples,
                       "share_with_waiters": locks.with_waiters / max(locks.samples, 1),
                       "mean_waiters": locks.waiters / max(locks.samples, 1),
                       "mean_advisory_waiters": locks.advisory_waiters / max(locks.samples, 1)},
    }
    none_lost = (lost == 0 and run_states == {SourceRun.State.DONE: len(ids)}
                 and per_request == {1: len(ids)} and packages == len(ids))
    result["none_lost"] = none_lost
    print(f"\n== {len(ids):,} access requests approved at once, worker --concurrency="
          f"{args.concurrency}, demo shop of {args.subjects:,} subjects ==")
    print(f"approving (tight loop)        {approving:8.1f} s")
    print(f"first approval -> last ready  {span:8.1f} s")
    print(f"throughput                    {result['requests_per_minute']:8.0f} requests/min")
    print("ready after                   " + ", ".join(
        f"{k}: {v:.0f} s" for k, v in curve.items()))
    if latencies:
        print(f"latency approve -> ready      p50 {result['latency_s']['p50']:.1f} s, p95 "
              f"{result['latency_s']['p95']:.1f} s, max {result['latency_s']['max']:.1f} s")
    print(f"request states                {dict(states)}")
    print(f"source runs                   {dict(run_states)}; attempts {dict(attempts)}")
    print(f"packages                      {packages}")
    print(f"machine CPU busy              {busy * 100:8.0f} %  (2 cores; worker processes "
          f"used {worker_cpu:.0f} CPU-s)")
    print(f"worker CPU per request        {result['worker_cpu_ms_per_request']:8.0f} ms")
    print(f"broker trips per request      {trips:8.2f}  (tasks received by the worker / "
          "requests; the check and the package build run inside the last run_source)")
    for name, t in tasks.items():
        print(f"  task {name:20s} {t['received']:6d} received {t['count']:6d} ok  mean {t['mean_ms']:7.1f} ms  "
              f"median {t['median_ms']:7.1f} ms  max {t['max_ms']:8.1f} ms  "
              f"total {t['total_s']:7.1f} s")
    lw = result["lock_waits"]
    print(f"lock waits (portal database)  a session waited in {lw['share_with_waiters'] * 100:.0f} % "
          f"of {lw['samples']} samples; mean waiting {lw['mean_waiters']:.2f}, of which on the "
          f"audit chain's advisory lock {lw['mean_advisory_waiters']:.2f}")
    print(f"none lost                     {c.verdict(none_lost)}")
    print(f">= 1,000 requests/min         {c.verdict(result['requests_per_minute'] >= 1000)}")
    print(f"<= 2 broker trips per request {c.verdict(trips <= 2)}")
    c.report("approve", result)


if __name__ == "__main__":
    main()
