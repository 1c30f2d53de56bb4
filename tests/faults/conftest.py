import datetime
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import *  # noqa: F401,F403  (personas, helpers, eager switch)
from tests.conftest import ROOT, wait_for


class Services:
    """Stop and start the suite's own Redis and PostgreSQL (scripts/test.sh started
    them in TEST_TMP, on REDIS_PORT and PG_PORT), as an outage would."""

    def __init__(self):
        self.tmp = os.environ["TEST_TMP"]
        self.redis_port = os.environ["REDIS_PORT"]
        self.pg_port = os.environ["PG_PORT"]
        self.pg_ctl = [f"{os.environ['PG_BIN']}/pg_ctl", "-D", f"{self.tmp}/pg"]
        if os.getuid() == 0:
            self.pg_ctl = ["runuser", "-u", "postgres", "--", *self.pg_ctl]

    def stop_redis(self) -> None:
        """Redis goes away, and everything queued in it (no persistence)."""
        subprocess.run(["redis-cli", "-p", self.redis_port, "shutdown", "nosave"],
                       capture_output=True)
        wait_for(lambda: not self._redis_answers(), timeout=10)

    def start_redis(self) -> None:
        subprocess.run(["redis-server", "--port", self.redis_port, "--bind", "127.0.0.1",
                        "--daemonize", "yes", "--save", "", "--appendonly", "no",
                        "--dir", self.tmp, "--pidfile", f"{self.tmp}/redis.pid",
                        "--logfile", f"{self.tmp}/redis.log"], check=True)
        wait_for(self._redis_answers, timeout=10, interval=0.05)

    def _redis_answers(self) -> bool:
        return subprocess.run(["redis-cli", "-p", self.redis_port, "ping"],
                              capture_output=True).returncode == 0

    def stop_postgres(self) -> None:
        subprocess.run([*self.pg_ctl, "-m", "fast", "-w", "stop"], check=True,
                       capture_output=True)

    def start_postgres(self) -> None:
        options = (f"-p {self.pg_port} -k {self.tmp}/sock -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        subprocess.run([*self.pg_ctl, "-l", f"{self.tmp}/pg.log", "-w", "-t", "60", "start",
                        "-o", options], check=True, capture_output=True)


    def _postgres_runs(self) -> bool:
        return subprocess.run([*self.pg_ctl, "status"], capture_output=True).returncode == 0

    def restore(self) -> None:
        """Both back up, whatever the test did (the next test needs them)."""
        if not self._redis_answers():
            self.start_redis()
        if not self._postgres_runs():
            self.start_postgres()


@pytest.fixture
def services():
    """Stop and start Redis and PostgreSQL; both are running again afterwards."""
    services = Services()
    yield services
    services.restore()


@pytest.fixture(scope="session")
def recovery_timings():
    """{name: figures}: each fault test's recovery times, written at the end of the
    session to test-artifacts/recovery.json and, when RECOVERY_RESULTS names a file
    (bench/results/recovery.json for docs/benchmarks.md), merged into it."""
    timings = {}
    yield timings
    if not timings:
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    stamp = {"commit": commit, "at": datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"), "load_average": [round(x, 2) for x in os.getloadavg()]}
    entries = {name: {**figures, **stamp} for name, figures in timings.items()}
    print("\nrecovery:", json.dumps(entries, indent=1))
    targets = [Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts")) / "recovery.json"]
    if os.environ.get("RECOVERY_RESULTS"):
        targets.append(Path(os.environ["RECOVERY_RESULTS"]))
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **entries}, indent=1) + "\n")
