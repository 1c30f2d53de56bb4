#!/usr/bin/env bash
# `make run`: migrate, load the demo, print the demo login, then run web server,
# a Celery worker for each queue (steps, emails, sources: see privacyportal/celery.py),
# beat and the demo HTTP source under honcho (Procfile.dev; Ctrl-C stops all).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
export WEB_ADDRESS="${WEB_ADDRESS:-127.0.0.1:8000}"
export DEMO_HTTP_PORT="${DEMO_HTTP_PORT:-8765}"
BIN=.venv/bin

$BIN/python manage.py migrate --noinput
$BIN/python manage.py seed_demo --subjects "${DEMO_SUBJECTS:-500}"
$BIN/python manage.py demo_staff
# The demo company's customer database, for the worker's SQL source.
DEMO_SHOP_DSN="$($BIN/python manage.py shell -v 0 -c \
  'from requests_app.demo.setup import demo_shop_dsn; print(demo_shop_dsn())')"
export DEMO_SHOP_DSN DATA_DIR="${DATA_DIR:-var}"
echo "Privacy Portal: http://${WEB_ADDRESS}/  (staff: http://${WEB_ADDRESS}/staff/, codes now: DEBUG=1 $BIN/python manage.py demo_staff --codes)"
exec $BIN/honcho start -f Procfile.dev
