#!/usr/bin/env bash
# make run: web server and one worker (with the reaper schedule) in the
# foreground; Ctrl-C (or either process dying) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
# The data dir (absolute) and the mode as csvault reads them: the environment, else .env,
# else var/.
LAYOUT="$("$BIN/python" -c 'from config.layout import Layout, load_env
layout = Layout.from_env(load_env())
print(layout.embedded, layout.data_dir)')"
EMBEDDED="${LAYOUT%% *}"
DATA_DIR="${LAYOUT#* }"
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

URL="http://${HOST:-127.0.0.1}:${PORT:-8000}"
# manage.py in another terminal finds var/ and .env by itself; a data dir or a database
# given in this terminal's environment it does not.
SAME="" NOTE=""
if [ "$DATA_DIR" != "$(pwd -P)/var" ] && [ -n "${CSVAULT_DATA_DIR:-}" ]; then
  SAME="CSVAULT_DATA_DIR=$(printf %q "$DATA_DIR") "
  NOTE="  (manage.py commands need this server's CSVAULT_DATA_DIR"
  if [ "$EMBEDDED" = True ]; then NOTE="$NOTE: its database and keys are there"; fi
  NOTE="$NOTE.)"$'\n'
fi
if [ -n "${DATABASE_URL:-}" ]; then
  NOTE="$NOTE  (manage.py commands need the DATABASE_URL and the other variables set in this terminal.)"$'\n'
fi

cat <<MSG

  csvault is running at $URL/  (API docs: /api/docs/)

  In another terminal, in $(pwd), create a user and get an API token (the last line printed):
    ${SAME}.venv/bin/python manage.py createuser alice --password 'choose-a-long-one'
${NOTE}  Then log in on the upload page above with that name and password, or use the API:
    curl -H "Authorization: Token TOKEN" -F file=@samples/first.csv $URL/api/datasets/
  or the command-line client (csvault --help lists every command):
    export CSVAULT_URL=$URL CSVAULT_TOKEN=TOKEN
    .venv/bin/csvault upload samples/first.csv samples/semicolon.csv --watch
    .venv/bin/csvault list                  # then with an id: show, head, rows, profile,
    .venv/bin/csvault head ID               # export, cancel, delete
  Ctrl-C stops the web server and the worker.

MSG
wait -n "$WEB" "$WORKER"
