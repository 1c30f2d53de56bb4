#!/usr/bin/env bash
# `make run`: migrate, load the demo, print the demo login, then run web server,
# Celery worker and beat under honcho (Ctrl-C stops all three).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
export WEB_ADDRESS="${WEB_ADDRESS:-127.0.0.1:8000}"
BIN=.venv/bin

$BIN/python manage.py migrate --noinput
$BIN/python manage.py seed_demo
$BIN/python manage.py demo_staff
echo "Privacy Portal: http://${WEB_ADDRESS}/  (staff: http://${WEB_ADDRESS}/admin/)"
exec $BIN/honcho start -f Procfile.dev
