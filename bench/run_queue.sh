#!/usr/bin/env bash
# The queue benchmark on its own throwaway services (PostgreSQL 127.0.0.1:55460,
# Redis 127.0.0.1:55461), so that it never collides with run_all.sh's.
#   bench/run_queue.sh [--runs 300] [--sizes 1000 1000000]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PG_PORT=${PG_PORT:-55460} REDIS_PORT=${REDIS_PORT:-55461}
# shellcheck source=bench/services.sh
source "$ROOT/bench/services.sh"
TMP=$(mktemp -d /tmp/pp-bench-queue.XXXXXX)
cleanup() { status=$?; services_stop "$TMP"; rm -rf "$TMP"; exit $status; }
trap cleanup EXIT INT TERM
services_start "$TMP"
export DATA_DIR="$TMP/data" BENCH_RESULTS="${BENCH_RESULTS:-$ROOT/bench/results}"
echo "uptime before: $(uptime)"
"$ROOT/.venv/bin/python" bench/bench_queue.py "$@"
echo "uptime after: $(uptime)"
