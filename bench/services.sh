#!/usr/bin/env bash
# Throwaway PostgreSQL 15 (port 55440), Redis (port 55441) and MariaDB (port 55442,
# the second SQL engine of sources: bench_foreign only) for the benchmarks.
#
#   bench/services.sh start DIR   # initdb + start them, data under DIR (a /tmp path)
#   bench/services.sh stop DIR    # stop them (immediate), leave DIR
#
# Same recipe as scripts/test.sh: PostgreSQL runs as the postgres user when we are
# root, fsync/synchronous_commit/full_page_writes off (a benchmark database, never
# data anyone keeps), pg_stat_statements loaded so that benchmarks can count the
# statements the server really ran (DECLARE/FETCH/CLOSE of server-side cursors too).
# Sourced by run_all.sh; usable by hand to keep the services up between runs.
set -euo pipefail

PG_PORT=${PG_PORT:-55440}
REDIS_PORT=${REDIS_PORT:-55441}
MARIADB_PORT=${MARIADB_PORT:-55442}

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
  mariadb_start "$dir"
  echo "services: PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT," \
       "MariaDB on 127.0.0.1:$MARIADB_PORT, files in $dir"
}

# MariaDB as scripts/test.sh starts it (its own options only, root without a
# password on loopback, durability off: benchmark data), with a buffer pool that
# holds bench_foreign's tables (~0.5 GB). Run as the mysql user when we are root.
MARIADB_OPTS=()
mariadb_start() {
  local dir=$1 as=()
  [ -x /usr/sbin/mariadbd ] || { echo "MariaDB is not installed (see scripts/test.sh)"; return 1; }
  mkdir -p "$dir/mariadb"
  if [ "$(id -u)" = 0 ]; then chown mysql "$dir/mariadb"; as=(runuser -u mysql --); fi
  MARIADB_OPTS=(--no-defaults --datadir="$dir/mariadb/data" --skip-name-resolve
                --innodb-doublewrite=0 --innodb-flush-log-at-trx-commit=0
                --innodb-log-file-size=512M --innodb-buffer-pool-size=1G
                --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci
                --local-infile=1)
  if [ ! -d "$dir/mariadb/data/mysql" ]; then
    "${as[@]}" mariadb-install-db "${MARIADB_OPTS[@]}" --auth-root-authentication-method=normal \
      --skip-test-db >"$dir/mariadb/install.log" 2>&1 || { cat "$dir/mariadb/install.log"; return 1; }
  fi
  "${as[@]}" /usr/sbin/mariadbd "${MARIADB_OPTS[@]}" --port="$MARIADB_PORT" \
    --bind-address=127.0.0.1 --socket="$dir/mariadb/mariadb.sock" \
    --pid-file="$dir/mariadb/mariadb.pid" --log-error="$dir/mariadb/error.log" \
    --skip-log-bin --max-connections=200 >/dev/null 2>&1 &
  for i in $(seq 300); do
    mariadb-admin --no-defaults --protocol=tcp -h 127.0.0.1 -P "$MARIADB_PORT" -u root \
      ping >/dev/null 2>&1 && return 0
    if [ "$i" = 300 ]; then echo "MariaDB did not start"; tail -n 20 "$dir/mariadb/error.log"; return 1; fi
    sleep 0.1
  done
}

services_stop() {
  local dir=$1
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -f "$dir/redis.pid"
  fi
  # MariaDB: killed outright by the pid it wrote (its data is benchmark data).
  if [ -f "$dir/mariadb/mariadb.pid" ]; then
    kill -KILL "$(cat "$dir/mariadb/mariadb.pid")" 2>/dev/null || true
    rm -f "$dir/mariadb/mariadb.pid"
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
