#!/usr/bin/env bash
# make run: web server and one worker (with the reaper schedule) in the
# foreground; Ctrl-C (or either process dying) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA_DIR="${CSVAULT_DATA_DIR:-var}"
mkdir -p "$DATA_DIR"
# Every csvault process on this host starts now: drop earlier runs' metric files.
"$BIN/python" manage.py metrics_reset >/dev/null

"$BIN/gunicorn" config.wsgi --config scripts/gunicorn.conf.py &
WEB=$!
Q="${CELERY_TASK_DEFAULT_QUEUE:-csvault}"
"$BIN/celery" -A config worker --beat --loglevel INFO -Q "${CELERY_QUEUES:-$Q,$Q.scan,$Q.ingest}" \
  --concurrency "${CELERY_CONCURRENCY:-2}" \
  --schedule "$DATA_DIR/celerybeat-schedule" &
WORKER=$!

stop() { kill -TERM "$WEB" "$WORKER" 2>/dev/null || true; wait || true; }
trap stop INT TERM EXIT

cat <<MSG

  csvault is running at http://${HOST:-127.0.0.1}:${PORT:-8000}/  (API docs: /api/docs/)

  Create a user and get an API token (the token is the last line printed):
    .venv/bin/python manage.py createuser alice --password 'choose-a-long-one'
  Then log in on the upload page above with that name and password, or use the API:
    curl -H "Authorization: Token TOKEN" -F file=@data.csv http://${HOST:-127.0.0.1}:${PORT:-8000}/api/datasets/
  or the command-line client:
    CSVAULT_URL=http://${HOST:-127.0.0.1}:${PORT:-8000} CSVAULT_TOKEN=TOKEN .venv/bin/csvault upload data.csv --watch
  Ctrl-C stops the web server and the worker.

MSG
wait -n "$WEB" "$WORKER"
