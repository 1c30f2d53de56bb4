"""The keyed audit chain (issue 14, item 7): what keying costs an event's write,
and how fast checkpoints are written and the chain verified.

    DATABASE_URL=postgres://postgres@127.0.0.1:PORT/audit_chain_bench \\
        .venv/bin/python bench/bench_audit_chain.py --events 20000

bench/run_audit_chain.sh starts a throwaway PostgreSQL, migrates it and runs this.
Figures:
- hash_us: one event's hash, plain SHA-256 (before) and HMAC-SHA256 (now), on an
  event of the usual size;
- record_event_us: one `record_event` in its own transaction, as a use case
  writes it (lock the chain, read the head, hash, insert, commit);
- checkpoint: the first checkpoint (walks the whole chain) and the next one (walks
  the events since, `--tail` of them);
- verify: `verify_chain` over the whole chain, against the checkpoints.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacyportal.settings")
    os.environ.setdefault("AUDIT_CHECKPOINT_DIR", tempfile.mkdtemp(prefix="pp-checkpoints-"))
    import django

    django.setup()


def hash_cost(n: int = 200_000) -> dict:
    from django.utils import timezone

    from requests_app.models import AuditEvent
    from requests_app.models.audit import HMAC_SHA256, PLAIN_SHA256

    event = AuditEvent(at=timezone.now(), actor_kind="staff", actor_label="alice",
                       action="request.approve", from_state="in_review", to_state="approved",
                       data={"source": "Demo shop", "records": 42, "email": "0" * 32},
                       prev_hash="f" * 64)
    result = {}
    for name, version in (("plain_sha256", PLAIN_SHA256), ("hmac_sha256", HMAC_SHA256)):
        event.chain_version = version
        best = min(timeit.repeat(lambda: event.compute_hash("PP-ABCD-EFGH-JKLM-NPQR"),
                                 number=n, repeat=3))
        result[name] = round(best / n * 1e6, 2)
    return result


def record_cost(n: int) -> float:
    from requests_app.models import Actor
    from requests_app.services.audit.events import record_event

    start = time.perf_counter()
    for i in range(n):
        record_event("bench.event", actor=Actor.system(), reason="bench",
                     data={"source": "Demo shop", "records": i})
    return round((time.perf_counter() - start) / n * 1e6, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tail", type=int, default=300)
    args = parser.parse_args()
    setup_django()
    from requests_app.models import AuditEvent
    from requests_app.services.audit.chain import verify_chain, write_checkpoint

    summary = {"hash_us": hash_cost()}
    summary["record_event_us"] = record_cost(max(args.events - AuditEvent.objects.count(), 0)
                                             or 1)
    start = time.perf_counter()
    assert write_checkpoint() is not None
    first = time.perf_counter() - start
    record_cost(args.tail)
    start = time.perf_counter()
    assert write_checkpoint() is not None
    summary["checkpoint_s"] = {"first_full_walk": round(first, 3),
                               f"next_after_{args.tail}": round(time.perf_counter() - start, 3)}
    start = time.perf_counter()
    report = verify_chain()
    elapsed = time.perf_counter() - start
    assert report.intact and report.checkpoints == 2, report.problem
    summary["verify"] = {"events": report.events, "seconds": round(elapsed, 2),
                         "events_per_s": round(report.events / elapsed)}
    summary["hash_share_of_record_event"] = round(
        summary["hash_us"]["hmac_sha256"] / summary["record_event_us"], 4)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
