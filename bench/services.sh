#!/usr/bin/env bash
# Throwaway PostgreSQL 15 (port 55440) and Redis (port 55441) for the benchmarks.
#
#   bench/services.sh start DIR   # initdb + start both, data under DIR (a /tmp path)
#   bench/services.sh stop DIR    # stop both (immediate), leave DIR
#
# Same recipe as scripts/test.sh: PostgreSQL runs as the postgres user when we are
# root, fsync/synchronous_commit/full_page_writes off (a benchmark database, never
# data anyone keeps), pg_stat_statements loaded so that benchmarks can count the
# statements the server really ran (DECLARE/FETCH/CLOSE of server-side cursors too).
# Sourced by run_all.sh; usable by hand to keep the services up between runs.
set -euo pipefail

PG_PORT=${PG_PORT:-55440}
REDIS_PORT=${REDIS_PORT:-55441}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_start() {
  local dir=$1 bin
  bin=$(pg_bin)
  [ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed (see scripts/test.sh)"; return 1; }
  command -v redis-server >/dev/null || { echo "redis-server is not installed"; return 1; }
  mkdir -p "$dir/pg" "$dir/sock" "$dir/data"
  chmod 755 "$dir"
  touch "$dir/pg.log"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pg" "$dir/sock" "$dir/pg.log"; fi
  if [ ! -f "$dir/pg/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; return 1; }
  fi
  as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 start -o \
    "-p $PG_PORT -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off \
     -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
     -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min \
     -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" \
    >/dev/null
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' \
    --appendonly no --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for i in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    if [ "$i" = 100 ]; then echo "Redis did not start"; cat "$dir/redis.log"; return 1; fi
    sleep 0.1
  done
  echo "services: PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT, files in $dir"
}

services_stop() {
  local dir=$1
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -f "$dir/redis.pid"
  fi
  if [ -f "$dir/pg/postmaster.pid" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    start) services_start "${2:?data directory}" ;;
    stop) services_stop "${2:?data directory}" ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
  esac
fi
