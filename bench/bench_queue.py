"""Benchmark: the staff queue page with 1,000 and with 1,000,000 requests.

    bench/run_queue.sh          # throwaway PostgreSQL on 127.0.0.1:55460 (Redis 55461)

Each size has its own database (portal_queue_<size>), filled server-side
(INSERT ... SELECT generate_series, random() with a fixed seed) with 5% of the
requests open, spread over states, types, jurisdictions and due dates. Three views
of /staff/queue/ are requested through Django's handler, in process, as a verified
Privacy Manager: the default view (open requests by due date), a filtered view (a
state and a type: 40 requests match at every size, and about 1,000 more at a
million) and a search (an email). The sizes are measured in alternating
rounds, so that a change of load on a shared machine hits both alike. For each:
server time (the handler's wall time for the whole request, session to rendered
page) p50 and p95 over --runs requests after a warm-up, and the number of SQL
queries.

Target: the same query count at both sizes, at most 10, and p95 at 1,000,000
within 1.3x of p95 at 1,000.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("PG_PORT", "55460")
os.environ.setdefault("REDIS_PORT", "55461")
sys.path.insert(0, os.path.dirname(__file__))

import _common as bench

OPEN = ["pending_verification", "verified", "in_review", "approved", "fulfilling",
        "waiting_manual", "results_ready", "needs_attention"]
CLOSED = ["closed", "cancelled", "expired", "completed", "denied"]


def generate(first: int, last: int) -> float:
    """Requests first..last (and their identities), 5% open, server-side."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
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
                   (%(types)s::text[])[1 + floor(random() * %(ntypes)s)::int],
                   (%(jur)s::text[])[1 + floor(random() * %(njur)s)::int],
                   'web', 'self',
                   CASE WHEN i %% 20 = 0 THEN (%(open)s::text[])[1 + floor(random() * 8)::int]
                        ELSE (%(closed)s::text[])[1 + floor(random() * 5)::int] END,
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
        # The working set the filtered view shows, at every size: 40 open deletions in
        # review (so that its page is full at 1,000 requests too, and the sizes
        # compare the cost of finding them, not of rendering more or fewer rows).
        cursor.execute("""
            UPDATE requests_app_privacyrequest SET state = 'in_review', request_type = 'deletion'
            WHERE id IN (SELECT id FROM requests_app_privacyrequest
                         WHERE state = ANY(%s) ORDER BY id LIMIT 40)""", [OPEN])
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


def use_database(name: str) -> None:
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


def one(client, url: str) -> tuple[float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.queries_log.clear()  # a full log (9,000 entries) would capture nothing
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.status_code
    return elapsed, len(captured.captured_queries), len(response.content)


def explain(client, url: str) -> list[dict]:
    """Each SELECT of one request to `url`, with PostgreSQL's own execution time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    plans = []
    from psycopg import sql as psql

    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]  # as Django ran it
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(psql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(psql.SQL(sql)))
            plan = cursor.fetchone()[0][0]
            plans.append({"sql": sql[:160], "execution_ms": round(plan["Execution Time"], 3),
                          "node": plan["Plan"]["Node Type"]})
    return plans


def summary(samples: list) -> dict:
    times = sorted(t for t, _, _ in samples)
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "queries": sorted({q for _, q, _ in samples}), "bytes": samples[-1][2]}


def views(size: int) -> dict[str, str]:
    # A search for a person whose request exists at both sizes.
    return {"default": "/staff/queue/",
            "filtered": "/staff/queue/?state=in_review&type=deletion",
            "search": "/staff/queue/?q=person777%40example.com"}


def database(size: int) -> str:
    return f"portal_queue_{size}"


def prepare(size: int) -> None:
    """Create, migrate and fill the database of one size (once)."""
    from django.db import connection

    bench.ensure_database(database(size))
    env = {**os.environ, "DATABASE_URL": f"{bench.SERVER.replace('postgresql', 'postgres')}/"
                                         f"{database(size)}"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=bench.ROOT, check=True, env=env)
    use_database(database(size))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM requests_app_privacyrequest")
        count = cursor.fetchone()[0]
    if count not in (0, size):
        sys.exit(f"bench_queue: {database(size)} holds {count} requests; drop it first")
    if count == 0:
        seconds = generate(1, size)
        print(f"{size:,} requests generated in {seconds:.1f} s "
              f"(load average {bench.load_average()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = (f"{bench.SERVER.replace('postgresql', 'postgres')}/"
                                  f"{database(min(args.sizes))}")
    bench.ensure_database(database(min(args.sizes)))
    bench.PORTAL_DB = database(min(args.sizes))
    bench.setup_django(migrate=False)
    from django.conf import settings

    settings.DEBUG = False
    sizes = sorted(args.sizes)
    clients = {}
    for size in sizes:
        prepare(size)
        clients[size] = staff_client()
    samples = {size: {name: [] for name in views(0)} for size in sizes}
    per_round = max(1, args.runs // args.rounds)
    for _round in range(args.rounds):
        for size in sizes:
            use_database(database(size))
            for name, url in views(size).items():
                for _ in range(5):  # warm-up after switching databases
                    one(clients[size], url)
                samples[size][name] += [one(clients[size], url) for _ in range(per_round)]
    results = {"machine": bench.machine(), "runs": per_round * args.rounds,
               "rounds": args.rounds, "sizes": {}}
    for size in sizes:
        results["sizes"][size] = {name: summary(s) for name, s in samples[size].items()}
        for name, f in results["sizes"][size].items():
            print(f"{size:>9,} {name:<9} p50 {f['p50_ms']:7.2f} ms  p95 {f['p95_ms']:7.2f} ms  "
                  f"queries {f['queries']}", flush=True)
    results["load_average_after"] = bench.load_average()
    for size in sizes:
        use_database(database(size))
        for name, url in views(size).items():
            plans = explain(clients[size], url)
            slowest = max(plans, key=lambda p: p["execution_ms"])
            results["sizes"][size][name]["sql_server_ms"] = round(
                sum(p["execution_ms"] for p in plans), 3)
            results["sizes"][size][name]["slowest_sql"] = slowest
            print(f"{size:>9,} {name:<9} SQL on the server (EXPLAIN ANALYZE): "
                  f"{sum(p['execution_ms'] for p in plans):.2f} ms in {len(plans)} SELECTs, "
                  f"slowest {slowest['execution_ms']:.2f} ms ({slowest['node']}): "
                  f"{slowest['sql'][:60]}")
    small, big = sizes[0], sizes[-1]
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
