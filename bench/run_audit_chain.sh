#!/usr/bin/env bash
# Throwaway PostgreSQL on a free loopback port, the portal's schema, 20,000 audit
# events written by record_event, then bench/bench_audit_chain.py; stopped again on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=$("$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
TMP=$(mktemp -d /tmp/pp-audit-chain-bench.XXXXXX); chmod 755 "$TMP"; mkdir -p "$TMP/pg" "$TMP/sock"
AS_PG=(); if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); chown postgres "$TMP/pg" "$TMP/sock"; fi
trap '"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$TMP/pg" -U postgres --auth=trust -N >/dev/null
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg/log" -w start \
  -o "-p $PORT -k $TMP/sock -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
"${AS_PG[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p $PORT -U postgres audit_chain_bench
export DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/audit_chain_bench DEBUG=0 \
  SECRET_KEY=bench-secret-key-not-for-production-0123456789 SECURE_SSL_REDIRECT=0 \
  FILE_ENCRYPTION_KEY=$("$ROOT/.venv/bin/python" -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
  AUDIT_CHAIN_KEY=bench-audit-chain-key-not-for-production \
  AUDIT_CHECKPOINT_KEY=$("$ROOT/.venv/bin/python" -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
  EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend DATA_DIR="$TMP/data"
cd "$ROOT"
.venv/bin/python manage.py migrate -v 0
.venv/bin/python bench/bench_audit_chain.py --events "${EVENTS:-20000}" "$@"
