#!/usr/bin/env bash
# make loadtest: start a private csvault (gunicorn with scripts/gunicorn.conf.py
# + one Celery worker on all queues), seed accounts, run the Locust phases
# headless, write reports to loadtests/out/, stop everything (trap).
#
# Production mode when DATABASE_URL names PostgreSQL (the load test uses its
# own database, LOADTEST_DB=csvault_load, dropped and re-created each run; the
# broker and cache URLs are used as given, with a private queue name);
# embedded mode (SQLite, filesystem broker, local-memory cache) otherwise.
#
# Phases (all knobs are environment variables, defaults below):
#   steady   LOADTEST_USERS users, LOADTEST_THINK s think time, LOADTEST_STEADY_SECONDS
#   ramp     LOADTEST_STEPS users per step, LOADTEST_STEP_SECONDS each
#   readmix  LOADTEST_READ_USERS users with no think time, reads only (LOADTEST_READ_MIX,
#            weights by task tag), LOADTEST_READMIX_SECONDS; then a rows-only sub-phase
#            (readmix-rows, LOADTEST_READROWS_SECONDS; 0 skips it) for the CPU of a page,
#            and one per other kind (readmix-progress..., LOADTEST_READKIND_SECONDS; 0 skips
#            them) for the web CPU of each kind, hence the mix's median
#   nocache  the steady phase again, LOADTEST_NOCACHE_SECONDS, with the cache off
# LOADTEST_PHASES="steady ramp readmix nocache" picks and orders them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PY=$BIN/python

OUT=${LOADTEST_OUT:-loadtests/out}
USERS=${LOADTEST_USERS:-100}
STEADY_SECONDS=${LOADTEST_STEADY_SECONDS:-65}
NOCACHE_SECONDS=${LOADTEST_NOCACHE_SECONDS:-35}
export LOADTEST_THINK=${LOADTEST_THINK:-1}
export LOADTEST_STEPS=${LOADTEST_STEPS:-50,100,200,400,700,1000}
export LOADTEST_STEP_SECONDS=${LOADTEST_STEP_SECONDS:-25}
export LOADTEST_WARMUP=${LOADTEST_WARMUP:-5}
READ_USERS=${LOADTEST_READ_USERS:-100}
READ_MIX=${LOADTEST_READ_MIX:-progress=5,detail=2,rows=2,list=1}
READMIX_SECONDS=${LOADTEST_READMIX_SECONDS:-45}
READROWS_SECONDS=${LOADTEST_READROWS_SECONDS:-25}
READKIND_SECONDS=${LOADTEST_READKIND_SECONDS:-15}
PHASES=${LOADTEST_PHASES:-steady ramp readmix nocache}
ACCOUNTS=${LOADTEST_ACCOUNTS_COUNT:-100}
SEED_ROWS=${LOADTEST_SEED_ROWS:-1000}

mkdir -p "$OUT"
rm -f "$OUT"/*.csv "$OUT"/*.html "$OUT"/*.json "$OUT"/*.log "$OUT"/*.txt "$OUT"/*.png
RUN_ID=$($PY -c 'import secrets; print(secrets.token_hex(4))')
export CELERY_TASK_DEFAULT_QUEUE="csvault-load-$RUN_ID"
export CSVAULT_DATA_DIR=${LOADTEST_DATA_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/csvault-load.XXXXXX")}
export STORAGE_URL="file://$CSVAULT_DATA_DIR/files"
export HOST=127.0.0.1
export PORT=${LOADTEST_PORT:-$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost
export DJANGO_SECURE_SSL_REDIRECT=0
export DJANGO_DEBUG=0
export LOG_LEVEL=${LOG_LEVEL:-WARNING}
BASE="http://$HOST:$PORT"

if [[ "${DATABASE_URL:-}" == postgres* ]]; then
  MODE=production
  DATABASE_URL=$($PY -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
    "$DATABASE_URL" "${LOADTEST_DB:-csvault_load}")
  export DATABASE_URL
  # Generated for this run when missing (production mode refuses to start without them).
  : "${DJANGO_SECRET_KEY:=$($PY -c 'import secrets; print(secrets.token_urlsafe(50))')}"
  : "${CSVAULT_MASTER_KEYS:=load1:$($PY -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')}"
  export DJANGO_SECRET_KEY CSVAULT_MASTER_KEYS
  $PY loadtests/pgdb.py recreate "$DATABASE_URL"
else
  MODE=embedded
  unset DATABASE_URL
fi
# A configured clamd that does not answer would fail every upload: fall back to
# the built-in matcher then (and say so).
if [[ -n "${CLAMD_URL:-}" ]] && ! $PY - "$CLAMD_URL" <<'PY' 2>/dev/null; then
import socket, sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
s = socket.socket(socket.AF_UNIX) if p.scheme == "unix" else socket.socket()
s.settimeout(2)
s.connect(p.path if p.scheme == "unix" else (p.hostname, p.port or 3310))
s.sendall(b"zPING\0")
assert s.recv(16).startswith(b"PONG")
PY
  echo "loadtest: CLAMD_URL=$CLAMD_URL does not answer; using the built-in matcher" >&2
  unset CLAMD_URL
fi
# The cache gets a Redis database of its own (LOADTEST_CACHE_DB), emptied now:
# each run re-creates its database, so user ids repeat and an earlier run's
# cached reads (keyed by user id) must not survive.
if [[ "${CACHE_URL:-}" == redis* ]]; then
  CACHE_URL=${LOADTEST_CACHE_URL:-$($PY -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
    "$CACHE_URL" "${LOADTEST_CACHE_DB:-13}")}
  export CACHE_URL
  $PY loadtests/pgdb.py flush-redis "$CACHE_URL"
fi
SCANNER=${CLAMD_URL:-built-in matcher}
CACHE_ON=${CACHE_URL:-local memory}
# "Cache off": a dummy cache if settings accept CACHE_URL=dummy://, else a Redis
# URL that refuses connections (django-redis then ignores every cache error).
if DJANGO_SETTINGS_MODULE=config.settings CACHE_URL=dummy:// $PY -c 'from config import bootstrap; bootstrap.prepare(); import django; django.setup(); from django.conf import settings; assert "Dummy" in settings.CACHES["default"]["BACKEND"]' 2>/dev/null; then
  NOCACHE_URL=${LOADTEST_NOCACHE_URL:-dummy://}
else
  NOCACHE_URL=${LOADTEST_NOCACHE_URL:-redis://127.0.0.1:9/0}
fi

WEB_PID="" WORKER_PID=""
stop_server() {
  local pid
  for pid in $WEB_PID $WORKER_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    local alive=""
    for pid in $WEB_PID $WORKER_PID; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ -z "$alive" ]] && break
    sleep 0.1
  done
  for pid in $WEB_PID $WORKER_PID; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in $WEB_PID $WORKER_PID; do wait "$pid" 2>/dev/null || true; done
  WEB_PID="" WORKER_PID=""
}
LOCUST_PID=""
cleanup() {
  if [[ -n "$LOCUST_PID" ]]; then kill -TERM "$LOCUST_PID" 2>/dev/null || true; wait "$LOCUST_PID" 2>/dev/null || true; fi
  stop_server
  if [[ -z "${LOADTEST_DATA_DIR:-}" && -d "$CSVAULT_DATA_DIR" ]]; then rm -rf "$CSVAULT_DATA_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() {  # $1: a label for the log files
  local q=$CELERY_TASK_DEFAULT_QUEUE
  $BIN/gunicorn config.wsgi --config scripts/gunicorn.conf.py >>"$OUT/server-$1.log" 2>&1 &
  WEB_PID=$!
  $BIN/celery -A config worker --loglevel WARNING -Q "$q,$q.scan,$q.ingest" \
    --concurrency "${CELERY_CONCURRENCY:-2}" --hostname "load-$RUN_ID@%h" >>"$OUT/worker-$1.log" 2>&1 &
  WORKER_PID=$!
  for _ in $(seq 1 120); do
    if $PY -c 'import sys, urllib.request as r; r.urlopen(sys.argv[1], timeout=1)' "$BASE/healthz" 2>/dev/null; then
      return 0
    fi
    kill -0 "$WEB_PID" 2>/dev/null || { echo "loadtest: gunicorn exited; see $OUT/server-$1.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "loadtest: $BASE/healthz not ready after 60 s" >&2
  exit 1
}

db_xacts() {
  if [[ $MODE == production ]]; then $PY loadtests/pgdb.py xacts "$DATABASE_URL"; else echo 0; fi
}

run_locust() {  # $1: phase name; the rest: extra locust arguments
  local name=$1
  shift
  local before after
  before=$(db_xacts)
  echo "loadtest: phase $name ($(uptime))"
  echo "$(uptime)" >"$OUT/$name-uptime-start.txt"
  $PY loadtests/proc.py snapshot "web=$WEB_PID" "worker=$WORKER_PID" >"$OUT/$name-cpu-start.json"
  set +e
  LOADTEST_RECORD="$OUT/$name.json" LOADTEST_ACCOUNTS="$OUT/accounts.json" \
    $BIN/locust -f loadtests/locustfile.py --headless --host "$BASE" --only-summary \
    --csv "$OUT/$name" --csv-full-history --html "$OUT/$name.html" \
    --loglevel WARNING --logfile "$OUT/locust-$name.log" "$@" >"$OUT/$name-console.txt" 2>&1 &
  LOCUST_PID=$!
  wait "$LOCUST_PID"
  local rc=$?
  LOCUST_PID=""
  set -e
  echo "$(uptime)" >"$OUT/$name-uptime-end.txt"
  $PY loadtests/proc.py snapshot "web=$WEB_PID" "worker=$WORKER_PID" >"$OUT/$name-cpu-end.json"
  after=$(db_xacts)
  echo "{\"xacts\": $((after - before)), \"locust_exit\": $rc}" >"$OUT/$name-db.json"
  # Something outside may stop the server mid-phase (a shared machine): say so
  # in the report, and start it again for the next phase.
  local pid
  for pid in $WEB_PID $WORKER_PID; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the web server or worker (pid $pid) died during this phase: its numbers are void" \
        >>"$OUT/$name-died.txt"
      echo "loadtest: WARNING: pid $pid died during phase $name; restarting" >&2
      stop_server
      start_server "$name-restart"
      break
    fi
  done
  [[ -s "$OUT/$name.json" ]] || { echo "loadtest: locust wrote no record for $name; see $OUT/$name-console.txt" >&2; tail -20 "$OUT/$name-console.txt" >&2; exit 1; }
}

echo "loadtest: $MODE mode, $BASE, data dir $CSVAULT_DATA_DIR, queue $CELERY_TASK_DEFAULT_QUEUE"
$PY manage.py migrate --noinput >"$OUT/migrate.log" 2>&1
start_server main
$PY loadtests/seed.py --base "$BASE" --accounts "$ACCOUNTS" --rows "$SEED_ROWS" --out "$OUT/accounts.json"

SPAWN=$((USERS / 2 > 1 ? USERS / 2 : 1))
READ_SPAWN=$((READ_USERS / 2 > 1 ? READ_USERS / 2 : 1))
CACHE_SAVED=${CACHE_URL-__unset__}
cache_state=on
cache_on() {
  [[ $cache_state == on ]] && return 0
  stop_server
  if [[ $CACHE_SAVED == __unset__ ]]; then unset CACHE_URL; else export CACHE_URL=$CACHE_SAVED; fi
  start_server main
  cache_state=on
}
cache_off() {
  [[ $cache_state == off ]] && return 0
  stop_server
  export CACHE_URL=$NOCACHE_URL
  start_server nocache
  cache_state=off
}
for phase in $PHASES; do
  case $phase in
    steady) cache_on; run_locust steady -u "$USERS" -r "$SPAWN" -t "${STEADY_SECONDS}s" ;;
    ramp) cache_on; LOADTEST_SHAPE=ramp run_locust ramp ;;
    readmix)
      cache_on
      # Uploads of an earlier phase may still be ingesting: wait until they are done.
      $PY loadtests/proc.py settle "web=$WEB_PID" "worker=$WORKER_PID"
      LOADTEST_THINK=0 LOADTEST_MIX=$READ_MIX \
        run_locust readmix -u "$READ_USERS" -r "$READ_SPAWN" -t "${READMIX_SECONDS}s"
      if ((READROWS_SECONDS > 0)); then
        LOADTEST_THINK=0 LOADTEST_MIX=rows=1 \
          run_locust readmix-rows -u "$READ_USERS" -r "$READ_SPAWN" -t "${READROWS_SECONDS}s"
      fi
      # The other kinds of the mix alone, for the web CPU of each (the mix's median).
      if ((READKIND_SECONDS > 0)); then
        for kind in $(tr ',' '\n' <<<"$READ_MIX" | cut -d= -f1); do
          [[ $kind == rows && $READROWS_SECONDS -gt 0 ]] && continue
          LOADTEST_THINK=0 LOADTEST_MIX=$kind=1 \
            run_locust "readmix-$kind" -u "$READ_USERS" -r "$READ_SPAWN" -t "${READKIND_SECONDS}s"
        done
      fi
      ;;
    nocache) cache_off; run_locust nocache -u "$USERS" -r "$SPAWN" -t "${NOCACHE_SECONDS}s" ;;
    *) echo "loadtest: unknown phase $phase" >&2; exit 2 ;;
  esac
done
stop_server

$PY loadtests/report.py --out "$OUT" --mode "$MODE" --scanner "$SCANNER" \
  --cache "$CACHE_ON" --nocache "$NOCACHE_URL" --seed-rows "$SEED_ROWS" --accounts "$ACCOUNTS" \
  --read-mix "$READ_MIX"
