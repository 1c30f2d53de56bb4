#!/usr/bin/env bash
# `make test`: installs PostgreSQL, MariaDB and Redis from Debian packages when
# missing, starts throwaway instances on free loopback ports in a temp dir, runs the
# whole suite against them (integration tests start a real Celery worker; the SQL
# source's engine tests run on PostgreSQL, MariaDB and SQLite), and stops them on
# exit, whether the suite passed or not.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
# MariaDB: the second SQL engine of SQL sources (the server, and mariadb-admin to
# wait for it).
{ [ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null \
  && command -v mariadb-admin >/dev/null; } || missing+=(mariadb-server mariadb-client)
# End-to-end tests drive Debian's chromium through Playwright.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Letters to requesters with no email address are printed in DejaVu Sans (LETTER_FONT).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  echo "make test: installing ${missing[*]} from Debian packages"
  # Keep Debian from creating a cluster and from starting system services of its own
  # (PostgreSQL, Redis, MariaDB: a policy-rc.d that says no, removed again if we
  # created it).
  as_root mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  policy_made=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$policy_made" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
fi
PG_BIN=$(pg_bin)

TMP=$(mktemp -d /tmp/privacyportal-test.XXXXXX)
chmod 755 "$TMP"
AS_PG=() AS_MYSQL=()
mkdir -p "$TMP/pg" "$TMP/sock" "$TMP/mariadb"
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: PostgreSQL runs as the postgres user, and MariaDB
  # as the mysql user (both created by their Debian packages).
  AS_PG=(runuser -u postgres --)
  AS_MYSQL=(runuser -u mysql --)
  chown postgres "$TMP/pg" "$TMP/sock"
  chown mysql "$TMP/mariadb"
fi

cleanup() {
  status=$?
  if [ -f "$TMP/redis.pid" ]; then kill "$(cat "$TMP/redis.pid")" 2>/dev/null || true; fi
  if [ "$status" != 0 ] && [ -f "$TMP/pg.log" ]; then
    echo "--- last lines of the PostgreSQL log ---"; tail -n 20 "$TMP/pg.log" || true
  fi
  if [ "$status" != 0 ] && [ -s "$TMP/mariadb/error.log" ]; then
    echo "--- last lines of the MariaDB log ---"; tail -n 20 "$TMP/mariadb/error.log" || true
  fi
  # MariaDB: killed outright (its data is thrown away), by the pid it wrote, else
  # by the pid of what started it (when it died before writing one).
  if [ -f "$TMP/mariadb/mariadb.pid" ]; then
    kill -KILL "$(cat "$TMP/mariadb/mariadb.pid")" 2>/dev/null || true
  fi
  for pid in ${MARIADB_INIT_PID:-} ${MARIADB_PID:-}; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -f "$TMP/pg/postmaster.pid" ]; then
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP"
  exit $status
}
trap cleanup EXIT INT TERM

free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
MARIADB_PORT=$(free_port)

# MariaDB's system tables, created while PostgreSQL's cluster is (a few seconds
# each). Its own options only (--no-defaults: nothing from /etc/mysql), root without
# a password on loopback, durability off as for PostgreSQL: the data is thrown away.
MARIADB_OPTS=(--no-defaults --datadir="$TMP/mariadb/data" --skip-name-resolve
              --innodb-doublewrite=0 --innodb-flush-log-at-trx-commit=0
              --innodb-log-file-size=8M --innodb-buffer-pool-size=64M
              --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci)
"${AS_MYSQL[@]}" mariadb-install-db "${MARIADB_OPTS[@]}" --auth-root-authentication-method=normal \
  --skip-test-db >"$TMP/mariadb/install.log" 2>&1 &
MARIADB_INIT_PID=$!

"${AS_PG[@]}" "$PG_BIN/initdb" -D "$TMP/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N >"$TMP/initdb.log" 2>&1 \
  || { cat "$TMP/initdb.log"; exit 1; }
# Loopback logins are trusted, except for members of one group, which log in with
# a password as on a production server: the tests of a wrong password make their
# roles members of it (tests/test_bad_input_sources.py).
"${AS_PG[@]}" sed -i '1i host all +pp_password_login 127.0.0.1/32 scram-sha-256' "$TMP/pg/pg_hba.conf"
touch "$TMP/pg.log"; [ "$(id -u)" = 0 ] && chown postgres "$TMP/pg.log"
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w -t 60 start -o \
  "-p $PG_PORT -k $TMP/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null

wait "$MARIADB_INIT_PID" || { cat "$TMP/mariadb/install.log"; exit 1; }
MARIADB_INIT_PID=
"${AS_MYSQL[@]}" /usr/sbin/mariadbd "${MARIADB_OPTS[@]}" --port="$MARIADB_PORT" \
  --bind-address=127.0.0.1 --socket="$TMP/mariadb/mariadb.sock" \
  --pid-file="$TMP/mariadb/mariadb.pid" --log-error="$TMP/mariadb/error.log" \
  --skip-log-bin --max-connections=200 >/dev/null 2>&1 &
MARIADB_PID=$!

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
  --dir "$TMP" --pidfile "$TMP/redis.pid" --logfile "$TMP/redis.log"
for i in $(seq 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  if [ "$i" = 100 ]; then echo "make test: Redis did not start"; cat "$TMP/redis.log"; exit 1; fi
  sleep 0.1
done
for i in $(seq 300); do
  mariadb-admin --no-defaults --protocol=tcp -h 127.0.0.1 -P "$MARIADB_PORT" -u root \
    ping >/dev/null 2>&1 && break
  if [ "$i" = 300 ] || ! kill -0 "$MARIADB_PID" 2>/dev/null; then
    echo "make test: MariaDB did not start"; exit 1
  fi
  sleep 0.1
done

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/privacyportal"
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export SECRET_KEY="test-secret-key-$(date +%s)-not-for-production"
export FILE_ENCRYPTION_KEY="$("$BIN/python" -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
export AUDIT_CHAIN_KEY="test-audit-chain-key-$(date +%s)"
export AUDIT_CHECKPOINT_KEY="$("$BIN/python" -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
export DEBUG=0 SECURE_SSL_REDIRECT=0 SECURE_COOKIES=0
export EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend
export DATA_DIR="$TMP/data" STATIC_ROOT="$TMP/static"
# The MariaDB server (tests create their databases on it: tests/conftest.py, sql_engine).
export TEST_MARIADB_URL="mysql+pymysql://root@127.0.0.1:$MARIADB_PORT"
export PP_TEST_SERVICES=1   # conftest.py refuses to run on anything but PostgreSQL and Redis
export PG_BIN TEST_TMP="$TMP" REDIS_PORT PG_PORT
# Screenshots of the end-to-end tests (kept after the run, never committed).
export TEST_ARTIFACTS="${TEST_ARTIFACTS:-$ROOT/test-artifacts}"

cd "$ROOT"
# The architecture's contracts (pyproject.toml, [tool.importlinter]).
"$BIN/lint-imports" --no-cache
"$BIN/python" manage.py collectstatic --noinput -v 0
echo "make test: PostgreSQL on 127.0.0.1:$PG_PORT, MariaDB on 127.0.0.1:$MARIADB_PORT," \
     "Redis on 127.0.0.1:$REDIS_PORT"
if [ $# -gt 0 ]; then
  "$BIN/python" -m pytest "$@"
else
  # The main suite, then the fault tests in a session of their own: they kill and
  # restart workers and Redis, so no other worker may share the queue with them.
  "$BIN/python" -m pytest --ignore=tests/faults
  "$BIN/python" -m pytest tests/faults
fi
