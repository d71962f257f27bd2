#!/usr/bin/env bash
# A clamd for tests, CI and development, with csvault's own signature database
# (freshclam cannot reach its servers here, and clamd refuses to start without one).
#
#   scripts/clamd.sh start   # in the background; returns once it answers zPING with PONG
#                            # and prints CLAMD_URL=tcp://127.0.0.1:PORT
#   scripts/clamd.sh stop    # stops the clamd that `start` left in CLAMD_DIR
#   scripts/clamd.sh status  # exit 0 if it answers PONG
#   scripts/clamd.sh run     # in the foreground (Ctrl-C stops it)
#
# Environment:
#   CLAMD_PORT                TCP port on 127.0.0.1 (3310)
#   CLAMD_DIR                 config, database copy, socket, log, pid (/tmp/csvault-clamd)
#   CLAMD_SIGNATURES_DIR      signatures copied into the database (signatures/)
#   CLAMD_TMP_DIR             clamd's spool: INSTREAM data sits there, in clear, while it is
#                             scanned. Default: a private directory on /dev/shm when that is a
#                             tmpfs (removed by `stop`), else $CLAMD_DIR/tmp (with a warning)
#   CSVAULT_MAX_UPLOAD_BYTES  the app's upload limit (1 GiB); the size limits default to it + 1M
#   CLAMD_STREAM_MAX_LENGTH   StreamMaxLength: longer INSTREAM -> "size limit exceeded" (rejected)
#   CLAMD_MAX_FILE_SIZE       MaxFileSize: larger -> Heuristics.Limits.Exceeded.MaxFileSize FOUND
#   CLAMD_MAX_SCAN_SIZE       MaxScanSize (twice MaxFileSize, at most 4000M)
#   CLAMD_MAX_SCAN_TIME       MaxScanTime in ms (50000, below the client's 60 s read timeout)
#   CLAMD_MAX_RECURSION       MaxRecursion (5)
#   CLAMD_MAX_FILES           MaxFiles (1000)
#   CLAMD_START_TIMEOUT       seconds to wait for PONG (30)
#
# Why each limit has its value: docs/operations.md, "Malware scanner". AlertExceedsMax is
# on: without it clamd reports a file over its limits as clean. clamd caps MaxFileSize at
# 2 GiB - 3 bytes, so with a larger upload limit the files above that are rejected as
# Heuristics.Limits.Exceeded.MaxFileSize, never passed unscanned.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

PORT="${CLAMD_PORT:-3310}"
DIR="${CLAMD_DIR:-/tmp/csvault-clamd}"
SIGNATURES="${CLAMD_SIGNATURES_DIR:-$ROOT/signatures}"
MAX_UPLOAD="${CSVAULT_MAX_UPLOAD_BYTES:-1073741824}"
# In MiB, rounded up, plus one: a file of exactly the upload limit must fit.
DEFAULT_LIMIT="$(((MAX_UPLOAD + 1048575) / 1048576 + 1))M"
STREAM_MAX="${CLAMD_STREAM_MAX_LENGTH:-$DEFAULT_LIMIT}"
FILE_MAX="${CLAMD_MAX_FILE_SIZE:-$DEFAULT_LIMIT}"
SCAN_TIME="${CLAMD_MAX_SCAN_TIME:-50000}"
RECURSION="${CLAMD_MAX_RECURSION:-5}"
MAX_FILES="${CLAMD_MAX_FILES:-1000}"
START_TIMEOUT="${CLAMD_START_TIMEOUT:-30}"
# The spool holds plaintext: in memory (tmpfs) when the host has one, so it never reaches
# a disk. One directory per CLAMD_DIR, so that several instances never share a spool.
TMPFS_SPOOL="/dev/shm/csvault-clamd-$(printf %s "$DIR" | sha1sum | cut -c1-12)"
if [ -n "${CLAMD_TMP_DIR:-}" ]; then
  SPOOL="$CLAMD_TMP_DIR"
elif [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
  SPOOL="$TMPFS_SPOOL"
else
  SPOOL="$DIR/tmp"
fi
CONF="$DIR/clamd.conf"
PIDFILE="$DIR/clamd.pid"
LOG="$DIR/clamd.log"

say() { echo "clamd.sh: $*" >&2; }

# The spool holds plaintext while a stream is scanned: a directory of our own, mode 0700.
make_spool() {
  if [ "$SPOOL" = "$TMPFS_SPOOL" ]; then
    # /dev/shm is shared by every user: refuse a path someone else made (or a symlink).
    mkdir -m 700 "$SPOOL" 2>/dev/null || true
    if [ -L "$SPOOL" ] || [ ! -d "$SPOOL" ] || [ ! -O "$SPOOL" ]; then
      say "$SPOOL is not a directory of this user; set CLAMD_TMP_DIR"
      exit 1
    fi
    # Left by a clamd that died mid-scan: plaintext nobody will read.
    find "$SPOOL" -mindepth 1 -delete
  else
    mkdir -p "$SPOOL"
    [ "$SPOOL" != "$DIR/tmp" ] || say "no tmpfs at /dev/shm: the spool $SPOOL is on disk"
  fi
  chmod 700 "$SPOOL"
}

find_clamd() {
  CLAMD_BIN="${CLAMD_BIN:-$(command -v clamd || true)}"
  [ -n "$CLAMD_BIN" ] || CLAMD_BIN=/usr/sbin/clamd  # sbin is often not on a user's PATH
  if [ ! -x "$CLAMD_BIN" ]; then
    say "clamd not found; install it with: apt-get install clamav-daemon"
    exit 127
  fi
}

write_config() {
  mkdir -p "$DIR/db"
  chmod 700 "$DIR"
  make_spool
  rm -f "$DIR"/db/*
  local copied=0 file
  for file in "$SIGNATURES"/*.ndb "$SIGNATURES"/*.hdb "$SIGNATURES"/*.hsb; do
    [ -f "$file" ] || continue
    cp "$file" "$DIR/db/"
    copied=$((copied + 1))
  done
  if [ "$copied" -eq 0 ]; then
    say "no .ndb/.hdb/.hsb signatures in $SIGNATURES"
    exit 1
  fi
  # The file itself counts, and text that clamd reads as HTML is scanned again normalised
  # (about twice its size); clamd cannot count past 4000M.
  local scan_max="${CLAMD_MAX_SCAN_SIZE:-4000M}"
  if [ -z "${CLAMD_MAX_SCAN_SIZE:-}" ] && [[ "$FILE_MAX" =~ ^[0-9]+M$ ]] \
    && [ $((${FILE_MAX%M} * 2)) -lt 4000 ]; then
    scan_max="$((${FILE_MAX%M} * 2))M"
  fi
  local socket_line="LocalSocket $DIR/clamd.sock"
  # A unix socket path is limited to 107 bytes; TCP is enough without it.
  [ "${#DIR}" -lt 90 ] || socket_line="# LocalSocket omitted: $DIR is too long for a socket path"
  cat >"$CONF" <<CONF
# Generated by scripts/clamd.sh; edits are overwritten on the next start.
Foreground yes
TCPSocket $PORT
TCPAddr 127.0.0.1
$socket_line
DatabaseDirectory $DIR/db
TemporaryDirectory $SPOOL
PidFile $PIDFILE
LogFile $LOG
LogTime yes
# Fail closed: report files over a limit as Heuristics.Limits.Exceeded.* instead of clean.
AlertExceedsMax yes
StreamMaxLength $STREAM_MAX
MaxFileSize $FILE_MAX
MaxScanSize $scan_max
MaxScanTime $SCAN_TIME
# csvault takes CSV text only: an archive inside one is never unpacked or served by it,
# and unpacking one costs clamd up to 1000 times its size (a 1 MB upload, 20 s).
ScanArchive no
# Text that clamd reads as mail or HTML is unpacked one or two levels, into a few parts.
MaxRecursion $RECURSION
MaxFiles $MAX_FILES
CONF
}

ping_clamd() {
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "zPING\0" >&3
    IFS= read -r -d "" reply <&3
    [ "$reply" = PONG ]' _ "$PORT" 2>/dev/null
}

# The pid recorded by `start`, if that process is still a clamd (never signal a reused pid).
our_pid() {
  [ -f "$DIR/started.pid" ] || return 1
  local pid
  pid="$(cat "$DIR/started.pid")"
  [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = clamd ] || return 1
  echo "$pid"
}

start() {
  find_clamd
  if pid="$(our_pid)" && ping_clamd; then
    say "already running (pid $pid)"
  else
    if ping_clamd; then
      say "port $PORT already answers PONG, but not from a clamd started with CLAMD_DIR=$DIR"
      exit 1
    fi
    write_config
    : >"$LOG"
    "$CLAMD_BIN" -c "$CONF" </dev/null >>"$LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/started.pid"
    local deadline=$((SECONDS + START_TIMEOUT))
    until ping_clamd; do
      if ! kill -0 "$pid" 2>/dev/null; then
        say "clamd exited while starting; its log:"
        tail -n 20 "$LOG" >&2
        exit 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        say "no PONG on 127.0.0.1:$PORT after ${START_TIMEOUT}s; stopping it. Log:"
        kill "$pid" 2>/dev/null || true
        tail -n 20 "$LOG" >&2
        exit 1
      fi
      sleep 0.05
    done
    say "started (pid $pid, StreamMaxLength $STREAM_MAX, MaxFileSize $FILE_MAX, spool $SPOOL, log $LOG)"
  fi
  echo "CLAMD_URL=tcp://127.0.0.1:$PORT"
  if [ -S "$DIR/clamd.sock" ]; then echo "CLAMD_UNIX_URL=unix://$DIR/clamd.sock"; fi
}

stop() {
  local pid
  if ! pid="$(our_pid)"; then
    say "not running (no clamd recorded in $DIR)"
    rm -f "$DIR/started.pid"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "clamd $pid ignored SIGTERM for 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/started.pid"
  if [ "$SPOOL" = "$TMPFS_SPOOL" ] && [ -d "$SPOOL" ] && [ ! -L "$SPOOL" ]; then
    rm -rf -- "$SPOOL"
  fi
  say "stopped (pid $pid)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) ping_clamd && say "answers PONG on 127.0.0.1:$PORT" ;;
  run)
    find_clamd
    write_config
    say "clamd on tcp://127.0.0.1:$PORT (log $LOG); Ctrl-C stops it"
    exec "$CLAMD_BIN" -c "$CONF"
    ;;
  *)
    echo "usage: $0 start|stop|status|run" >&2
    exit 2
    ;;
esac
