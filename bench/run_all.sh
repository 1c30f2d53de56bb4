#!/usr/bin/env bash
# Run every benchmark on throwaway services, then stop them (EXIT trap).
#
#   bench/run_all.sh                   # all five, ~12-14 minutes on 2 cores
#   bench/run_all.sh gather foreign    # only some: gather package erase approve foreign
#
# PostgreSQL 15 on 127.0.0.1:55440 (data under a fresh /tmp/pp-bench.XXXXXX, run as
# the postgres user when we are root), Redis on 127.0.0.1:55441 and MariaDB on
# 127.0.0.1:55442 (bench_foreign only); all are stopped and the directory removed
# on exit, whatever happened. Figures are printed
# and kept as JSON in bench/results/ (or $BENCH_RESULTS). See docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
cd "$ROOT"
# shellcheck source=bench/services.sh
source "$ROOT/bench/services.sh"

for port in "$PG_PORT" "$REDIS_PORT" "$MARIADB_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run_all: port $port is in use (bench/services.sh stop DIR stops a kept instance)"
    exit 1
  fi
done

TMP=$(mktemp -d /tmp/pp-bench.XXXXXX)
cleanup() {
  status=$?
  services_stop "$TMP"
  rm -rf "$TMP"
  exit $status
}
trap cleanup EXIT INT TERM

services_start "$TMP"

export DATA_DIR="$TMP/data"
export BENCH_RESULTS="${BENCH_RESULTS:-$ROOT/bench/results}"
export PG_PORT REDIS_PORT MARIADB_PORT
mkdir -p "$BENCH_RESULTS"

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(gather package erase approve foreign)
started=$(date +%s)
for name in "${wanted[@]}"; do
  echo
  echo "=== $name ($(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg)) ==="
  case "$name" in
    # (a) 1,000 and 1,000,000 subjects (the 1M load takes ~2 minutes).
    gather) "$PY" bench/bench_gather.py --sizes 1000 1000000 --runs 100 ;;
    # (b) 200,000 rows; then 400,000 once, to see how peak RSS grows with rows.
    package)
      "$PY" bench/bench_package.py --events 200000 --repeat 3 --warm
      "$PY" bench/bench_package.py --events 400000 --repeat 1 --warm --name package_400k ;;
    # (c) 200,000 deletable rows, three times.
    erase) "$PY" bench/bench_erase.py --events 200000 --repeat 3 ;;
    # (d) 1,000 requests, one worker with two pool processes, a 5,000-subject shop.
    approve) "$PY" bench/bench_approve.py --requests 1000 --subjects 5000 --concurrency 2 ;;
    # (j) a foreign schema, 100,000 subjects, PostgreSQL and MariaDB (~3 minutes).
    foreign) "$PY" bench/bench_foreign.py --subjects 100000 --runs 100 ;;
    *) echo "run_all: unknown benchmark $name (gather package erase approve foreign)"; exit 2 ;;
  esac
done
echo
echo "run_all: done in $(( $(date +%s) - started )) s; results in $BENCH_RESULTS"
