"""Benchmark: the staff queue page with 1,000 and with 1,000,000 requests.

    bench/run_queue.sh          # throwaway PostgreSQL on 127.0.0.1:55460 (Redis 55461)

Requests are generated server-side (INSERT ... SELECT generate_series) with 5% of
them open, spread over states, types, jurisdictions and due dates; then three
views of /staff/queue/ are requested through Django's handler, in process, as a
verified Privacy Manager: the default view (open requests by due date), a
filtered view (a state and a type) and a search (an email). For each: server time
(the handler's wall time for the whole request, session to rendered page) p50 and
p95 over --runs requests after a warm-up, and the number of SQL queries.

Target: the same query count at both sizes, at most 10, and p95 at 1,000,000
within 1.3x of p95 at 1,000.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("PG_PORT", "55460")
os.environ.setdefault("REDIS_PORT", "55461")
sys.path.insert(0, os.path.dirname(__file__))

import _common as bench  # noqa: E402

OPEN = ["pending_verification", "verified", "in_review", "approved", "fulfilling",
        "waiting_manual", "results_ready", "needs_attention"]
CLOSED = ["closed", "cancelled", "expired", "completed", "denied"]


def generate(first: int, last: int) -> float:
    """Requests first..last (and their identities), 5% open, server-side."""
    from django.db import connection

    from requests_app.rules import JURISDICTIONS, REQUEST_TYPES

    jurisdictions, types = list(JURISDICTIONS), list(REQUEST_TYPES)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO requests_app_privacyrequest
              (reference, request_type, jurisdiction, channel, filed_by, state, details,
               received_at, acknowledge_by, acknowledged_at, due_on, extended_due_on,
               denial_reason, denial_detail, extension_notice, appeal_text, appeal_decision,
               appeal_outcome, information_request, created_at, updated_at, closed_at)
            SELECT 'PP-B' || lpad(upper(to_hex(i)), 15, '0'),
                   (%(types)s::text[])[1 + i %% %(ntypes)s],
                   (%(jur)s::text[])[1 + (i / 7) %% %(njur)s],
                   'web', 'self',
                   CASE WHEN i %% 20 = 0 THEN (%(open)s::text[])[1 + (i / 20) %% 8]
                        ELSE (%(closed)s::text[])[1 + i %% 5] END,
                   '', now() - make_interval(days => (i %% 400)),
                   (now() - make_interval(days => (i %% 400)))::date + 10,
                   CASE WHEN i %% 3 = 0 THEN NULL ELSE now() END,
                   -- open requests: due dates spread from 20 days ago to 45 days ahead
                   CASE WHEN i %% 20 = 0 THEN current_date + ((i / 20) %% 66) - 20
                        ELSE (now() - make_interval(days => (i %% 400)))::date + 45 END,
                   NULL, '', '', '', '', '', '', '', now(), now(),
                   CASE WHEN i %% 20 = 0 THEN NULL ELSE now() END
            FROM generate_series(%(first)s, %(last)s) AS i""", {
            "types": types, "ntypes": len(types), "jur": jurisdictions,
            "njur": len(jurisdictions), "open": OPEN, "closed": CLOSED,
            "first": first, "last": last})
        cursor.execute("""
            INSERT INTO requests_app_identity
              (request_id, name, email, phone, account_number, postal_address)
            SELECT id, 'Person ' || id, 'person' || id || '@example.com', '', '', ''
            FROM requests_app_privacyrequest WHERE id BETWEEN %s AND %s""",
                       [first, last])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) requests_app_privacyrequest")
        cursor.execute("VACUUM (ANALYZE) requests_app_identity")
    return time.perf_counter() - started


def staff_client():
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from requests_app.roles import sync_roles

    sync_roles()
    user, _ = User.objects.get_or_create(username="bench-queue", defaults={"is_staff": True})
    user.groups.set([Group.objects.get(name="Privacy Manager")])
    device = (TOTPDevice.objects.filter(user=user).first()
              or TOTPDevice.objects.create(user=user, name="bench", confirmed=True))
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def measure(client, url: str, runs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(max(10, runs // 10)):  # warm-up
        assert client.get(url).status_code == 200
    times, queries = [], set()
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
        queries.add(len(captured.captured_queries))
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "queries": sorted(queries), "bytes": len(response.content)}


def views(size: int) -> dict[str, str]:
    # A search for a person whose request exists at both sizes.
    return {"default": "/staff/queue/",
            "filtered": "/staff/queue/?state=in_review&type=deletion",
            "search": "/staff/queue/?q=person777%40example.com"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    bench.setup_django()
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM requests_app_privacyrequest")
        if cursor.fetchone()[0]:
            sys.exit("bench_queue: the portal database is not empty; use run_queue.sh")
    client = staff_client()
    results, loaded = {"machine": bench.machine(), "sizes": {}}, 0
    for size in sorted(args.sizes):
        seconds = generate(loaded + 1, size)
        loaded = size
        print(f"{size:,} requests generated in {seconds:.1f} s "
              f"(load average {bench.load_average()})", flush=True)
        figures = {name: measure(client, url, args.runs) for name, url in views(size).items()}
        figures["load_average"] = bench.load_average()
        results["sizes"][size] = figures
        for name, f in figures.items():
            if isinstance(f, dict):
                print(f"  {name:<9} p50 {f['p50_ms']:7.2f} ms  p95 {f['p95_ms']:7.2f} ms  "
                      f"queries {f['queries']}", flush=True)
    small, big = min(results["sizes"]), max(results["sizes"])
    checks = {}
    for name in views(0):
        a, b = results["sizes"][small][name], results["sizes"][big][name]
        ratio = b["p95_ms"] / a["p95_ms"]
        same = a["queries"] == b["queries"] and max(b["queries"]) <= 10
        checks[name] = {"p95_ratio": round(ratio, 2), "queries_same_and_at_most_10": same,
                        "verdict": bench.verdict(same and ratio <= 1.3)}
        print(f"{name:<9} p95 {big:,} / {small:,} = {ratio:.2f}x, queries "
              f"{a['queries']} -> {b['queries']}: {checks[name]['verdict']}")
    results["checks"] = checks
    bench.report("queue", results)


if __name__ == "__main__":
    main()
