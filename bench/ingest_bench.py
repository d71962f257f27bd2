#!/usr/bin/env python3
"""csvault ingest benchmark (``make bench``).

One run, against one PostgreSQL, measures:

1. a generated CSV (cached in ``bench/out/`` by row count);
2. the ceiling: PostgreSQL's own ``COPY ... FROM 'file' (FORMAT csv)`` into an
   unindexed scratch table of text columns (client-side ``COPY FROM STDIN`` if
   the server may not read the file);
3. csvault through the real API (gunicorn) and a real Celery worker: upload
   speed, upload response -> completed, the worker's ingest time
   (``finished_at - started_at``) and peak RSS of the worker and web processes,
   with the dataset files on local disk, on S3 (moto's S3 server), or each in turn
   (``--storage``);
4. the reference "old way": one Django ORM ``create()`` per row (autocommit) on
   a sample, extrapolated to the whole file;
5. two datasets ingested at once by two workers against one dataset alone;
6. a big file (5,000,000 rows by default, ``--big-rows``, ``--skip-big``) uploaded to
   completed, and at the end issue 17's table: upload -> completed of the main and the
   big file (split into upload, scan and ingest) and the slowdown of two ingests at once
   against the CPU share, each now vs target.

The machine is shared, so every number comes with a ratio to a baseline
measured in the same run. Standard library plus psycopg only.
Results: the printed table, ``bench/out/results.txt`` and ``bench/out/results.json``.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import csv
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
LOGS = OUT / "logs"
BIN = ROOT / ".venv" / "bin"
MB = 1_000_000  # file sizes and speeds are decimal megabytes
GENERATOR_VERSION = 3  # bump when the generated content changes (invalidates the cache)
FINAL = frozenset({"completed", "rejected", "failed", "cancelled"})
SCRATCH_SCHEMA = "csvault_bench_scratch"
COLUMNS = ("id", "name", "email", "amount", "date", "city", "note", "active")
POLL_SECONDS = 0.1
FAST_POLL_SECONDS = 0.02  # near the end of an ingest (FAST_POLL_ETA)
FAST_POLL_ETA = 0.3
STARTUP_TIMEOUT = 120.0
STOP_GRACE = 20.0
TARGET_CEILING_RATIO = 0.8
TARGET_COMPLETED_SECONDS_1M = 6.0
TARGET_WORKER_RSS_MB = 150.0
# Issue 17 ("Speed, part two"): upload start -> completed seen by a poller.
TARGET_UPLOAD_TO_COMPLETED_1M = 1.5
TARGET_UPLOAD_TO_COMPLETED_5M = 10.0
TARGET_PARALLEL_OVER_CPU_SHARE = 1.10  # two ingests at once: at most 10 % over the CPU share
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30  # config/settings.py, CSVAULT_MAX_UPLOAD_BYTES
STORAGES = ("local", "s3")
S3_BUCKET_PREFIX = "csvault-bench"
MOTO_NOTE = (
    "moto's S3 server keeps every object (and multipart part) in its own memory, so its "
    "RSS grows with the file; that is the test double's, not csvault's"
)


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the CSV ------------------------------------------------------------------

_FIRST = [
    ("Alice", "alice"), ("Bob", "bob"), ("Carol", "carol"), ("David", "david"),
    ("Eve", "eve"), ("Frank", "frank"), ("Grace", "grace"), ("Heidi", "heidi"),
    ("Ivan", "ivan"), ("Judy", "judy"), ("Mallory", "mallory"), ("Olivia", "olivia"),
    ("Rupert", "rupert"), ("Sybil", "sybil"), ("Zoë", "zoe"), ("José", "jose"),
]  # fmt: skip
_LAST = [
    ("Johnson", "johnson"), ("Smith", "smith"), ("Williams", "williams"),
    ("Brown", "brown"), ("García", "garcia"), ("Miller", "miller"), ("Davis", "davis"),
    ("Martínez", "martinez"), ("O'Neil", "oneil"), ("Lee", "lee"), ("Walker", "walker"),
]  # fmt: skip
_CITIES = [
    "New York, NY", "Los Angeles, CA", "Washington, D.C.", "Portland, OR", "Chicago",
    "Houston", "Paris", "Berlin", "São Paulo", "Tokyo", "London", "Zürich",
]  # fmt: skip
_NOTES = [
    'say "hi"',
    'say "hi", then leave',
    "call back, after 5pm",
    'ordered "the usual", paid cash',
    "returning customer; prefers email",
    "no comment",
    "",
    'gift wrap: "Happy birthday, Sam!"',
]


def csv_path_for(rows: int) -> Path:
    return OUT / f"bench-v{GENERATOR_VERSION}-{rows}.csv"


def ensure_csv(rows: int) -> Path:
    """The cached CSV of ``rows`` data rows (plus a header), generated once."""
    path = csv_path_for(rows)
    if path.is_file():
        log(f"using cached {path.relative_to(ROOT)} ({path.stat().st_size / MB:.1f} MB)")
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    log(f"generating {rows:,} rows into {path.relative_to(ROOT)} ...")
    started = time.monotonic()
    rng = random.Random(rows)  # deterministic per row count
    start_day = dt.date(2015, 1, 1)
    dates = [(start_day + dt.timedelta(days=d)).isoformat() for d in range(3653)]
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        choice, randrange = rng.choice, rng.randrange
        batch: list[list[str]] = []
        for i in range(1, rows + 1):
            first, fslug = choice(_FIRST)
            last, lslug = choice(_LAST)
            batch.append(
                [
                    str(i),
                    f"{first} {last}",
                    f"{fslug}.{lslug}.{i}@mail.example.com",
                    f"{randrange(-50_000, 100_000_000) / 100:.2f}",
                    choice(dates),
                    choice(_CITIES),
                    choice(_NOTES),
                    "true" if randrange(2) else "false",
                ]
            )
            if len(batch) >= 10_000:
                writer.writerows(batch)
                batch = []
        writer.writerows(batch)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    size = path.stat().st_size
    log(
        f"generated {size / MB:.1f} MB ({size / max(rows, 1):.0f} bytes/row) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return path


# --- processes ------------------------------------------------------------------


class Service:
    """A subprocess in its own session (so its whole tree can be signalled), logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = LOGS / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        RUNNING.append(self)
        STARTED.append(self)
        log(f"started {self.name} (pid {self.proc.pid}), log {self.log_path.relative_to(ROOT)}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise BenchError(f"{self.name} exited (code {code}).")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 50) -> str:
        text = "\n".join(self.log_text().splitlines()[-lines:])
        return (
            f"--- last {lines} lines of {self.log_path} ---\n{text}\n--- end of {self.name} log ---"
        )

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after STOP_GRACE seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in {STOP_GRACE:.0f} s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_GRACE)
        # Pool children left behind by a killed parent are in the same group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self in RUNNING:
            RUNNING.remove(self)


RUNNING: list[Service] = []  # alive, stopped at exit
STARTED: list[Service] = []  # every service of this run, for the logs of a failure


def stop_all() -> None:
    for service in reversed(list(RUNNING)):
        try:
            service.stop()
        except Exception as exc:
            log(f"could not stop {service.name}: {exc}")


atexit.register(stop_all)


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    cmd = [str(BIN / "python"), "manage.py", *args]
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"manage.py {' '.join(args)} timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(
            f"manage.py {' '.join(args)} failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


# --- memory sampling from /proc -------------------------------------------------


def proc_stats() -> Iterator[tuple[int, bytes, list[bytes]]]:
    """(pid, comm, the fields after it) of every process's /proc/PID/stat; a process
    that ends meanwhile is left out."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
        head, _, rest = data.rpartition(b")")
        yield int(entry.name), head.partition(b"(")[2], rest.split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, _, fields in proc_stats():
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(pid)
    return children


def process_tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    children = _children_map() if children is None else children
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def proc_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in kB (empty if it is gone)."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    found[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return found


@dataclass
class RssSampler:
    """Polls VmRSS of the process trees under ``roots`` every POLL_SECONDS in a thread.

    The tree (a scan of /proc/*/stat) is refreshed once a second; RSS of the
    known processes every tick, so sampling itself stays cheap on a busy box.
    """

    roots: dict[str, int]
    interval: float = POLL_SECONDS
    peaks_kb: dict[int, int] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    hwm_kb: dict[int, int] = field(default_factory=dict)
    first_kb: dict[int, int] = field(default_factory=dict)  # the first sample: idle, before
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _refresh(self) -> list[int]:
        children = _children_map()
        pids = []
        for name, root in self.roots.items():
            for pid in process_tree(root, children):
                self.roles.setdefault(pid, f"{name} {'main' if pid == root else 'child'}")
                pids.append(pid)
        return pids

    def _run(self) -> None:
        pids = self._refresh()
        last_scan = time.monotonic()
        while True:
            for pid in pids:
                rss = proc_memory_kb(pid).get("VmRSS")
                if rss is not None:
                    self.first_kb.setdefault(pid, rss)
                if rss is not None and rss > self.peaks_kb.get(pid, 0):
                    self.peaks_kb[pid] = rss
            self.samples += 1
            if self._stop.wait(self.interval):
                return
            if time.monotonic() - last_scan >= 1.0:
                pids = self._refresh()
                last_scan = time.monotonic()

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        for pid in self._refresh():
            mem = proc_memory_kb(pid)
            if "VmHWM" in mem:
                self.hwm_kb[pid] = mem["VmHWM"]
            if mem.get("VmRSS", 0) > self.peaks_kb.get(pid, 0):
                self.peaks_kb[pid] = mem["VmRSS"]

    def report(self) -> list[dict[str, Any]]:
        return [
            {
                "pid": pid,
                "role": self.roles.get(pid, "?"),
                "peak_rss_mb": round(self.peaks_kb[pid] / 1024, 1),
                "vmhwm_mb": round(self.hwm_kb[pid] / 1024, 1) if pid in self.hwm_kb else None,
                "idle_rss_mb": round(self.first_kb[pid] / 1024, 1)
                if pid in self.first_kb
                else None,
            }
            for pid in sorted(self.peaks_kb, key=lambda p: (self.roles.get(p, ""), p))
        ]

    def peak_mb(self, role_part: str) -> float | None:
        values = [kb for pid, kb in self.peaks_kb.items() if role_part in self.roles.get(pid, "")]
        return round(max(values) / 1024, 1) if values else None

    def hwm_mb(self, role_part: str) -> float | None:
        values = [kb for pid, kb in self.hwm_kb.items() if role_part in self.roles.get(pid, "")]
        return round(max(values) / 1024, 1) if values else None

    def idle_mb(self, role_part: str) -> float | None:
        """RSS before the measured work, of the process whose VmHWM (else peak) is largest."""
        marks = self.hwm_kb or self.peaks_kb
        pids = [pid for pid in marks if role_part in self.roles.get(pid, "")]
        if not pids:
            return None
        pid = max(pids, key=lambda p: marks[p])
        return round(self.first_kb[pid] / 1024, 1) if pid in self.first_kb else None


# --- CPU accounting from /proc ---------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds used so far by each of ``pids`` that still exists."""
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rpartition(b")")[2].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return found


def machine_busy() -> float:
    """CPU seconds all cores spent neither idle nor waiting for I/O, since boot."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


EXCLUDED_PG_PIDS: set[int] = set()  # the bench's own sampling backends
BENCH_DATABASE = ""  # set by run(): backends of other databases are other clients' work


def serves_bench(pid: int) -> bool:
    """Whether a postgres process works for the bench: one of the server's own processes
    (postmaster, checkpointer, WAL writer...: a title naming no client) or a backend of
    the bench's database ("postgres: 15/main: USER DATABASE HOST(PORT) STATE")."""
    if pid in EXCLUDED_PG_PIDS:
        return False
    if not BENCH_DATABASE:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            title = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if "(" not in title and "[local]" not in title:
        return True
    fields = title.rpartition(": ")[2].split()
    return len(fields) >= 2 and fields[1] == BENCH_DATABASE


def postgres_pids() -> list[int]:
    return [pid for pid, comm, _ in proc_stats() if comm == b"postgres" and serves_bench(pid)]


class PeriodicSampler:
    """A ``with`` block during which a thread calls ``_sample()`` every ``interval`` s
    (once more at each end); subclasses hold ``interval``, ``_stop`` and ``_thread``."""

    interval: float
    _stop: threading.Event
    _thread: threading.Thread | None

    def _sample(self) -> None:
        raise NotImplementedError

    def _begin(self) -> None:
        """Called first when the block is entered."""

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        self._begin()
        self._sample()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._sample()


@dataclass
class CpuSampler(PeriodicSampler):
    """Samples the CPU time of the worker trees and of every PostgreSQL process in a thread.

    ``cores(t0, t1)`` is the average number of cores each group kept busy between two
    wall-clock times (``time.time()``, as the database's ``started_at``/``finished_at``):
    per-process deltas, so processes that start or end meanwhile don't distort it.
    """

    roots: list[int]
    interval: float = 0.2
    samples: list[tuple[float, dict[int, float], dict[int, float], float]] = field(
        default_factory=list
    )
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        children = _children_map()
        workers = [pid for root in self.roots for pid in process_tree(root, children)]
        self.samples.append(
            (time.time(), cpu_by_pid(workers), cpu_by_pid(postgres_pids()), machine_busy())
        )

    def cores(self, t0: float, t1: float) -> dict[str, float]:
        """Average cores busy between t0 and t1 (the samples just outside them)."""
        start = max((i for i, x in enumerate(self.samples) if x[0] <= t0), default=0)
        end = min(
            (i for i, x in enumerate(self.samples) if x[0] >= t1), default=len(self.samples) - 1
        )
        window = self.samples[start : end + 1]
        span = max(window[-1][0] - window[0][0], 1e-9)

        def used(group: list[dict[int, float]]) -> float:
            # The last value seen of every process, so one that exits (a database
            # connection closed at the end of a task) keeps what it used.
            last: dict[int, float] = {}
            for sample in group:
                last.update(sample)
            return sum(cpu - group[0].get(pid, 0.0) for pid, cpu in last.items())

        return {
            "worker": round(used([x[1] for x in window]) / span, 2),
            "postgres": round(used([x[2] for x in window]) / span, 2),
            "machine": round((window[-1][3] - window[0][3]) / span, 2),
            "seconds": round(span, 2),
        }


# --- CPU by stage and by process group (issue 17: the CPU floor) -------------------------

#: The stages of upload -> completed, one after the other: each ends where the next begins.
STAGES = ("upload", "scan", "ingest", "rest")
#: csvault's own processes: what the CPU floor counts (the client apart).
CSVAULT_GROUPS = ("web", "worker", "postgres", "clamd")
GROUP_TITLES = {
    "web": "web",
    "worker": "worker",
    "postgres": "PostgreSQL",
    "clamd": "clamd",
    "csvault": "= csvault",
    "client": "client",
    "redis": "Redis",
    "moto": "moto",
    "bench": "bench",
    "other": "other",
    "machine": "machine",
}

ProcTable = dict[int, tuple[str, int, float, int]]


def proc_table() -> ProcTable:
    """pid -> (comm, ppid, user + system CPU seconds, start time in ticks since boot) of every
    process, from one pass over /proc."""
    table: ProcTable = {}
    for pid, comm, fields in proc_stats():
        table[pid] = (
            comm.decode(errors="replace"),
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            int(fields[19]),
        )
    return table


def thread_cpu(pid: int, tid: int) -> float:
    """User + system CPU seconds of one thread (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of all cores since boot: busy is user, nice, system, irq and
    softirq (neither idle nor I/O wait); steal is what the hypervisor gave to others."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    busy = values[0] + values[1] + values[2] + values[5] + values[6]
    return busy / CLOCK_TICKS, (values[7] if len(values) > 7 else 0) / CLOCK_TICKS


def uptime_ticks() -> float:
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0]) * CLOCK_TICKS


def tree_of(roots: list[int]) -> Callable[[ProcTable], list[int]]:
    """A group: the process trees under ``roots``."""

    def pids(table: ProcTable) -> list[int]:
        children: dict[int, list[int]] = {}
        for pid, (_, ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        return [pid for root in roots for pid in process_tree(root, children)]

    return pids


def named(comm: str) -> Callable[[ProcTable], list[int]]:
    """A group: every process whose command name is ``comm`` (``postgres``, ``clamd``)."""

    def pids(table: ProcTable) -> list[int]:
        return [pid for pid, row in table.items() if row[0] == comm]

    return pids


@dataclass
class StageCpu(PeriodicSampler):
    """The CPU seconds of each process group, sampled from /proc every ``interval`` s in a
    thread, as cumulative series; :meth:`between` interpolates them at any two wall-clock
    times. Besides ``groups`` it keeps ``client`` (this process's main thread: the upload's
    sending and the polls), ``bench`` (this process's other threads: the samplers) and
    ``machine`` (all cores, from /proc/stat). A process that starts meanwhile counts from
    zero; one that exits keeps what it used.
    """

    groups: dict[str, Callable[[ProcTable], list[int]]]
    interval: float = 0.1
    series: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _base: dict[tuple[str, int], float] = field(default_factory=dict)
    _last: dict[tuple[str, int], float] = field(default_factory=dict)
    _start_ticks: float = 0.0
    _first: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        now = time.time()
        table = proc_table()
        for name, pids in self.groups.items():
            for pid in pids(table):
                key, cpu, started = (name, pid), table[pid][2], table[pid][3]
                if key not in self._base:
                    # Started since sampling began: all of its CPU is in the window.
                    self._base[key] = 0.0 if started >= self._start_ticks else cpu
                self._last[key] = cpu
        totals = dict.fromkeys(self.groups, 0.0)
        for key, cpu in self._last.items():
            totals[key[0]] += cpu - self._base[key]
        me = os.getpid()
        main = thread_cpu(me, me)
        busy, steal = machine_cpu()
        raw = {
            "client": main,
            "bench": (table[me][2] if me in table else main) - main,
            "machine": busy,
            "steal": steal,
        }
        if not self._first:
            self._first = raw
        for name, value in raw.items():
            totals[name] = value - self._first[name]
        self.series.append((now, totals))

    def _begin(self) -> None:
        self._start_ticks = uptime_ticks()

    def at(self, t: float) -> dict[str, float]:
        """Every series at wall-clock time ``t``, linear between the samples around it."""
        series = self.series
        if t <= series[0][0]:
            return dict(series[0][1])
        for (t0, v0), (t1, v1) in itertools.pairwise(series):
            if t0 <= t <= t1:
                f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
                return {k: v0.get(k, 0.0) + f * (v1.get(k, 0.0) - v0.get(k, 0.0)) for k in v1}
        return dict(series[-1][1])

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds of every group between two wall-clock times, with ``csvault`` (the sum
        of CSVAULT_GROUPS) and ``other`` (the machine's busy time that no group explains:
        the kernel's own threads, other processes)."""
        a, b = self.at(t0), self.at(t1)
        used = {k: max(0.0, b.get(k, 0.0) - a.get(k, 0.0)) for k in b}
        used["csvault"] = sum(used.get(g, 0.0) for g in CSVAULT_GROUPS)
        named_groups = [*self.groups, "client", "bench"]
        used["other"] = max(0.0, used["machine"] - sum(used.get(g, 0.0) for g in named_groups))
        return {k: round(v, 3) for k, v in used.items()}


def stage_windows(
    upload_started: float, responded: float, started_at: float, finished_at: float, seen: float
) -> dict[str, tuple[float, float]]:
    """Wall-clock windows of the stages of upload -> completed, back to back: upload (until
    the POST's response), scan (from the response to the ingest's start: the scan and both
    hand-offs), ingest (``started_at`` to ``finished_at``) and rest (to the poll that saw
    completed)."""
    return {
        "upload": (upload_started, responded),
        "scan": (responded, started_at),
        "ingest": (started_at, finished_at),
        "rest": (finished_at, seen),
        "total": (upload_started, seen),
    }


def cpu_floor(stage_cpu: dict[str, Any], cores: int) -> dict[str, float]:
    """The shortest upload -> completed that any perfect overlap of the stages could reach on
    ``cores`` cores: all the CPU the work took, spread over every core all the time."""
    total = stage_cpu["total"]
    return {
        "cores": cores,
        "csvault_cpu": total["csvault"],
        "client_cpu": total["client"],
        "floor_seconds": round(total["csvault"] / cores, 2),
        "floor_with_client_seconds": round((total["csvault"] + total["client"]) / cores, 2),
        "machine_cpu": total["machine"],
    }


# --- what PostgreSQL waits on, and its WAL --------------------------------------------------

_WAITS_SQL = """
SELECT backend_type, coalesce(wait_event_type || ':' || wait_event, 'CPU'),
       upper(split_part(ltrim(query), ' ', 1))
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND ((backend_type = 'client backend' AND state = 'active' AND datname = current_database())
       OR (backend_type IN ('checkpointer', 'walwriter', 'background writer')
           AND wait_event NOT IN ('CheckpointerMain', 'WalWriterMain', 'BgWriterMain',
                                  'BgWriterHibernate')))
"""


@dataclass
class WaitSampler:
    """Samples ``pg_stat_activity`` every ``interval`` s in a thread: what each active client
    backend of the bench database waits on ('CPU' when on no wait event), by statement
    (COPY, UPDATE, COMMIT...), and the checkpointer, WAL writer and background writer when
    they are not idle. Its own backend is left out of the PostgreSQL CPU (EXCLUDED_PG_PIDS).
    """

    url: str
    interval: float = 0.02
    counts: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with pg_connect(self.url) as conn:
            pid = conn.info.backend_pid
            EXCLUDED_PG_PIDS.add(pid)
            self._ready.set()
            try:
                while not self._stop.wait(self.interval):
                    for backend, event, statement in conn.execute(_WAITS_SQL).fetchall():
                        key = (
                            f"{statement or '?'} {event}"
                            if backend == "client backend"
                            else f"{backend} {event}"
                        )
                        self.counts[key] = self.counts.get(key, 0) + 1
                    self.samples += 1
            finally:
                EXCLUDED_PG_PIDS.discard(pid)

    def __enter__(self) -> WaitSampler:
        self._thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def report(self) -> dict[str, Any]:
        return {"samples": self.samples, "interval": self.interval, "counts": dict(self.counts)}


def wal_counters(url: str) -> dict[str, float]:
    """The server's cumulative WAL and checkpoint counters (pg_stat_wal, pg_stat_bgwriter)."""
    with pg_connect(url) as conn:
        wal = conn.execute(
            "SELECT wal_records, wal_fpi, wal_bytes, wal_buffers_full, wal_write, wal_sync "
            "FROM pg_stat_wal"
        ).fetchone()
        bgw = conn.execute(
            "SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint, buffers_backend "
            "FROM pg_stat_bgwriter"
        ).fetchone()
    names = [
        "wal_records",
        "wal_fpi",
        "wal_bytes",
        "wal_buffers_full",
        "wal_write",
        "wal_sync",
        "checkpoints_timed",
        "checkpoints_req",
        "buffers_checkpoint",
        "buffers_backend",
    ]
    return dict(zip(names, [float(x) for x in (*(wal or ()), *(bgw or ()))], strict=False))


def counters_since(url: str, before: dict[str, float]) -> dict[str, float]:
    after = wal_counters(url)
    return {k: after[k] - before.get(k, 0.0) for k in after}


def waits_line(waits: dict[str, Any], what: str) -> str:
    """The wait-event sample as one line: each event's share of the backend samples."""
    counts: dict[str, int] = waits["counts"]
    backends = {k: v for k, v in counts.items() if not k.startswith(("checkpointer", "wal", "bac"))}
    total = sum(backends.values()) or 1
    top = sorted(backends.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in top[:8])
    others = [f"{k} in {v} samples" for k, v in counts.items() if k not in backends]
    return (
        f"wait events, {what}: {waits['samples']} samples every {waits['interval'] * 1000:.0f} ms, "
        f"{total} of active ingest backends (statement, wait event: share): {shown}"
        + (f"; {', '.join(others)}" if others else "")
    )


def wal_line(c: dict[str, float], rows: int, what: str) -> str:
    return (
        f"WAL, {what}: {c['wal_bytes'] / MB:.0f} MB ({c['wal_bytes'] / max(rows, 1):.0f} bytes a "
        f"row), {c['wal_records']:,.0f} records, {c['wal_fpi']:,.0f} full-page images, WAL buffers "
        f"full {c['wal_buffers_full']:,.0f} times, {c['wal_write']:,.0f} writes and "
        f"{c['wal_sync']:,.0f} syncs; checkpoints {c['checkpoints_req']:.0f} requested + "
        f"{c['checkpoints_timed']:.0f} timed; buffers written by backends "
        f"{c['buffers_backend']:,.0f}, by the checkpointer {c['buffers_checkpoint']:,.0f}"
    )


# --- the API client ----------------------------------------------------------------


class Api:
    def __init__(self, port: int, token: str, timeout: float) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, *, auth: bool = True) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            headers = {"Accept": "application/json"}
            if auth:
                headers["Authorization"] = f"Token {self.token}"
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(body) if body else None
        except ValueError:
            return resp.status, body[:500].decode(errors="replace")

    def upload(self, path: Path, name: str) -> tuple[dict[str, Any], float]:
        """Streaming multipart POST of ``path``; returns (dataset, seconds to the response)."""
        boundary = f"csvault-bench-{secrets.token_hex(16)}"
        head = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="name"\r\n\r\n'
            f"{name}\r\n"
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = path.stat().st_size
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        started = time.monotonic()
        try:
            conn.putrequest("POST", "/api/datasets/")
            conn.putheader("Authorization", f"Token {self.token}")
            conn.putheader("Accept", "application/json")
            conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            conn.putheader("Content-Length", str(len(head) + size + len(tail)))
            conn.endheaders()
            try:
                conn.send(head)
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        conn.send(chunk)
                conn.send(tail)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # The server may answer (413, 415...) before reading everything.
                log(f"upload interrupted by the server: {exc}; reading its response")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        seconds = time.monotonic() - started
        if resp.status != 201:
            raise BenchError(
                f"upload of {path.name} answered {resp.status}: "
                f"{body[:2000].decode(errors='replace')}"
            )
        return json.loads(body), seconds

    def wait_final(self, ids: list[str], timeout: float) -> dict[str, tuple[float, dict[str, Any]]]:
        """Poll progress of each id every POLL_SECONDS until final, every FAST_POLL_SECONDS
        once an ingest says it ends within FAST_POLL_ETA seconds (so that the poll that sees
        completed comes within FAST_POLL_SECONDS of it); (monotonic time, detail)."""
        done: dict[str, tuple[float, dict[str, Any]]] = {}
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while len(done) < len(ids):
            for dataset_id in ids:
                if dataset_id in done:
                    continue
                status, body = self.request("GET", f"/api/datasets/{dataset_id}/progress/")
                if status != 200:
                    raise BenchError(f"progress of {dataset_id} answered {status}: {body}")
                last[dataset_id] = body
                if body["status"] in FINAL:
                    seen = time.monotonic()
                    status, detail = self.request("GET", f"/api/datasets/{dataset_id}/")
                    if status != 200:
                        raise BenchError(f"detail of {dataset_id} answered {status}: {detail}")
                    done[dataset_id] = (seen, detail)
            if len(done) < len(ids):
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"datasets not final after {timeout:.0f} s; last progress: "
                        f"{json.dumps(last)}"
                    )
                ending = any(
                    body.get("status") == "processing"
                    and body.get("eta_seconds") is not None
                    and body["eta_seconds"] <= FAST_POLL_ETA
                    for dataset_id, body in last.items()
                    if dataset_id not in done
                )
                time.sleep(FAST_POLL_SECONDS if ending else POLL_SECONDS)
        return done

    def delete(self, dataset_id: str) -> int:
        status, _ = self.request("DELETE", f"/api/datasets/{dataset_id}/")
        return status


def wait_http_ready(web: Service, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        web.check_alive()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"web server not ready in {timeout:.0f} s ({last}).")


def wait_worker_ready(worker: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check_alive()
        if " ready." in worker.log_text():
            return
        time.sleep(0.2)
    raise BenchError(f"{worker.name} not ready in {timeout:.0f} s.")


# --- PostgreSQL --------------------------------------------------------------------


def pg_connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        url, autocommit=True, connect_timeout=10, options="-c statement_timeout=900000", **kwargs
    )


def ensure_database(url: str) -> None:
    dbname = conninfo_to_dict(url).get("dbname")
    if not dbname:
        raise BenchError(f"DATABASE_URL names no database: {url}")
    with pg_connect(url, dbname="postgres") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(dbname))))
        log(f"created database {dbname}")


def drop_scratch(url: str) -> None:
    with pg_connect(url) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCRATCH_SCHEMA))
        )


def vacuum_rows(url: str) -> None:
    """VACUUM the rows table, so that earlier runs' deleted rows don't weigh on this one.

    Every run deletes its datasets; without (auto)vacuum their dead rows stay in the
    partitions and their index entries, and a new dataset that hashes to such a
    partition pays for them.
    """
    started = time.monotonic()
    with pg_connect(url) as conn:
        conn.execute("VACUUM (ANALYZE) datasets_processeddata")
    log(f"vacuumed the rows table in {time.monotonic() - started:.1f} s")


def wal_lsn(url: str) -> str:
    with pg_connect(url) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def wal_since(url: str, lsn: str) -> int:
    """WAL bytes the server wrote since ``lsn`` (every client's, not only the bench's)."""
    with pg_connect(url) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,))
        found = row.fetchone()
    return int(found[0]) if found else 0


def dirty_mb() -> float:
    """Dirty and under-writeback page cache (/proc/meminfo), MB: what the disk still owes."""
    found = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith(("Dirty:", "Writeback:")):
                found += int(line.split()[1])
    return found * 1024 / MB


def settle_disk(url: str) -> dict[str, float]:
    """``sync`` and a CHECKPOINT (superuser or pg_checkpoint), so that the next run does not
    start while the disk still writes what the runs before it left (their uploaded files,
    rows and WAL; the kernel writes dirty pages back for up to 30 s) or in the middle of a
    checkpoint they set off."""
    dirty = dirty_mb()
    started = time.monotonic()
    os.sync()
    synced = time.monotonic()
    with pg_connect(url) as conn:
        conn.execute("CHECKPOINT")
    done = {
        "dirty_mb": round(dirty, 1),
        "sync_seconds": round(synced - started, 2),
        "checkpoint_seconds": round(time.monotonic() - synced, 2),
    }
    log(
        f"settled the disk: {dirty:.0f} MB dirty, sync {done['sync_seconds']:.1f} s, "
        f"CHECKPOINT {done['checkpoint_seconds']:.1f} s"
    )
    return done


def measure_ceiling(url: str, csv_file: Path, rows: int) -> dict[str, Any]:
    """PostgreSQL's COPY of the same CSV into an unindexed table of text columns."""
    table = sql.Identifier(SCRATCH_SCHEMA, "copy_ceiling")
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in COLUMNS)
    tmp_copy = Path("/tmp") / f"csvault-bench-{os.getpid()}-{csv_file.name}"
    errors: list[str] = []
    method = ""
    copied, seconds = -1, 0.0
    with pg_connect(url) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCRATCH_SCHEMA))
        )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(table, columns))
        try:
            # The file in place first, then a world-readable copy in /tmp.
            for path in (csv_file, tmp_copy):
                if path == tmp_copy:
                    shutil.copyfile(csv_file, tmp_copy)
                    os.chmod(tmp_copy, 0o644)
                query = sql.SQL("COPY {} FROM {} (FORMAT csv, HEADER true)").format(
                    table, sql.Literal(str(path))
                )
                try:
                    started = time.perf_counter()
                    cur = conn.execute(query)
                    seconds = time.perf_counter() - started
                except psycopg.Error as exc:
                    errors.append(f"{path}: {str(exc).strip()}")
                    continue
                copied = cur.rowcount
                method = f"server-side COPY FROM '{path}'"
                break
        finally:
            tmp_copy.unlink(missing_ok=True)
        if not method:
            log("server-side COPY not possible (" + "; ".join(errors) + "): using FROM STDIN")
            copy_sql = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(table)
            with conn.cursor() as cursor, open(csv_file, "rb") as fh:
                started = time.perf_counter()
                with cursor.copy(copy_sql) as copy:
                    while chunk := fh.read(1 << 20):
                        copy.write(chunk)
                seconds = time.perf_counter() - started
                copied = cursor.rowcount
            method = "client-side COPY FROM STDIN (server-side refused)"
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    if copied != rows:
        raise BenchError(f"ceiling COPY loaded {copied} rows, expected {rows}")
    return {
        "method": method,
        "rows": copied,
        "seconds": round(seconds, 3),
        "rows_per_second": round(copied / seconds),
        "server_side_errors": errors,
    }


def dataset_times(url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    with pg_connect(url) as conn:
        found = conn.execute(
            "SELECT id::text, started_at, finished_at, attempts, status, row_count, "
            "created_at, scanner FROM datasets_dataset WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    times = {}
    for dataset_id, started, finished, attempts, status, row_count, created, scanner in found:
        times[dataset_id] = {
            "created_at": created,
            "scanner": scanner,
            "created_to_ingest_start_seconds": (started - created).total_seconds()
            if started and created
            else None,
            "started_at": started,
            "finished_at": finished,
            "worker_seconds": (finished - started).total_seconds()
            if started and finished
            else None,
            "attempts": attempts,
            "status": status,
            "row_count": row_count,
        }
    return times


def _clamd_stream_limit(clamd_url: str) -> tuple[int, str] | None:
    """StreamMaxLength of the clamd at ``clamd_url`` when scripts/clamd.sh started it here
    (its config in CLAMD_DIR names the same TCP port); None when unknown."""
    conf = Path(os.environ.get("CLAMD_DIR", "/tmp/csvault-clamd")) / "clamd.conf"
    port = clamd_url.rpartition(":")[2].strip("/")
    try:
        settings = dict(
            line.split(None, 1) for line in conf.read_text().splitlines() if " " in line.strip()
        )
    except OSError:
        return None
    if not clamd_url.startswith("tcp://") or settings.get("TCPSocket", "").strip() != port:
        return None
    value = settings.get("StreamMaxLength", "").strip()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if not value:
        return None
    size = int(value[:-1]) * units[value[-1].upper()] if value[-1].isalpha() else int(value)
    return size, f"StreamMaxLength {value} in {conf}"


def check_limits(env: dict[str, str], csv_file: Path) -> str:
    """Whether ``csv_file`` fits the upload limit of the bench's web server and the stream
    limit of the clamd it uses; a sentence for the report, or BenchError before uploading."""
    size = csv_file.stat().st_size
    limit = int(env.get("CSVAULT_MAX_UPLOAD_BYTES") or DEFAULT_MAX_UPLOAD_BYTES)
    origin = "CSVAULT_MAX_UPLOAD_BYTES" if env.get("CSVAULT_MAX_UPLOAD_BYTES") else "default"
    if size > limit:
        raise BenchError(
            f"{csv_file.name} ({size / MB:.0f} MB) is over the upload limit {limit / MB:.0f} MB "
            f"({origin}): export a larger CSVAULT_MAX_UPLOAD_BYTES for the bench's services, and "
            "start clamd with it (scripts/clamd.sh derives its stream limit from it) or unset "
            "CLAMD_URL"
        )
    sentence = (
        f"{csv_file.name} ({size / MB:.0f} MB) fits the upload limit {limit / MB:.0f} MB ({origin})"
    )
    clamd_url = env.get("CLAMD_URL")
    if not clamd_url:
        return sentence + "; built-in matcher, no stream limit"
    found = _clamd_stream_limit(clamd_url)
    if found is None:
        return sentence + f"; clamd at {clamd_url}: stream limit not known here (over it: rejected)"
    stream_max, where = found
    if size > stream_max:
        raise BenchError(
            f"{csv_file.name} ({size / MB:.0f} MB) is over clamd's stream limit ({where}): "
            "restart clamd with a larger CSVAULT_MAX_UPLOAD_BYTES (scripts/clamd.sh) or unset "
            "CLAMD_URL"
        )
    return sentence + f" and clamd's {where} ({stream_max / MB:.0f} MB)"


# --- the benchmark steps ------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    env: dict[str, str]
    db_url: str
    port: int = 0
    token: str = ""
    username: str = ""
    api: Api | None = None
    web: Service | None = None
    workers: list[Service] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    storage: str = "local"
    moto: Service | None = None
    s3_endpoint: str = ""
    s3_bucket: str = ""


def service_env(queue: str, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{args.database}")
    env.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{args.broker_db}")
    env.setdefault("CACHE_URL", f"redis://127.0.0.1:6379/{args.cache_db}")
    if not env["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
        raise BenchError(f"the benchmark needs PostgreSQL; DATABASE_URL is {env['DATABASE_URL']}")
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        CSVAULT_MASTER_KEYS=f"bench{secrets.token_hex(4)}:{key}",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_DEBUG="0",
        CSVAULT_DATA_DIR=str(OUT / "data"),
        CELERY_TASK_DEFAULT_QUEUE=queue,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    # Files go to the bench data dir, or to moto's S3 server (storage_env).
    for name in ("STORAGE_URL", "AWS_S3_ENDPOINT_URL", "AWS_S3_ADDRESSING_STYLE"):
        env.pop(name, None)
    return env


def storage_env(ctx: Context, storage: str) -> dict[str, str]:
    """The services' environment for one storage: the bench data dir, or the moto bucket."""
    env = dict(ctx.env)
    if storage == "s3":
        env.update(
            STORAGE_URL=f"s3://{ctx.s3_bucket}/files",
            AWS_S3_ENDPOINT_URL=ctx.s3_endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_S3_REGION_NAME="us-east-1",
        )
    return env


def start_moto(ctx: Context, timeout: float) -> None:
    """moto's S3 server (``python -m moto.server``, a real HTTP endpoint) and a bucket."""
    port = free_port()
    ctx.moto = Service(
        "moto",
        [str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COVERAGE_"))},
    )
    ctx.moto.start()
    ctx.s3_endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        ctx.moto.check_alive()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"moto's S3 server not ready in {timeout:.0f} s ({exc})") from exc
            time.sleep(0.1)
    import boto3

    ctx.s3_bucket = f"{S3_BUCKET_PREFIX}-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3", endpoint_url=ctx.s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=ctx.s3_bucket)  # fmt: skip
    log(f"moto S3 server on {ctx.s3_endpoint}, bucket {ctx.s3_bucket}")


def worker_queues(base: str) -> list[str]:
    """Every queue a general-purpose worker consumes: the default and each pipeline stage."""
    sys.path.insert(0, str(ROOT))
    from config.celery import all_queues

    return all_queues(base)


def start_worker(ctx: Context) -> Service:
    n = len(ctx.workers) + 1
    queue = ctx.env["CELERY_TASK_DEFAULT_QUEUE"]
    cmd = [
        str(BIN / "python"), "-m", "celery", "-A", "config", "worker",
        "--concurrency", "1", "--loglevel", "INFO", "-Q", ",".join(worker_queues(queue)),
        "--hostname", f"{queue}-{n}@%h", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    worker = Service(f"{ctx.storage}-worker-{n}", cmd, storage_env(ctx, ctx.storage))
    ctx.workers.append(worker)
    worker.start()
    wait_worker_ready(worker, STARTUP_TIMEOUT)
    log(f"{worker.name} ready")
    return worker


_SCAN_LOG = re.compile(r"scan of ([0-9a-f-]{36}) clean \((\w+), ([0-9.]+) s\)")


def scan_seconds(ctx: Context, dataset_id: str) -> float | None:
    """The scan time the worker logged for a dataset (``scan of ID clean (scanner, S s)``)."""
    for worker in ctx.workers:
        for found in _SCAN_LOG.finditer(worker.log_text()):
            if found.group(1) == dataset_id:
                return float(found.group(3))
    return None


def _log_time(event: dict[str, Any]) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(event["time"])).timestamp()
    except (KeyError, ValueError):
        return None


def worker_events(ctx: Context, dataset_id: str) -> list[dict[str, Any]]:
    """The workers' JSON log lines about one dataset, and the "Task ...[id] received" lines
    of its tasks (those name the task, not the dataset), in log order."""
    found: list[dict[str, Any]] = []
    for worker in ctx.workers:
        lines = []
        for line in worker.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        tasks = {
            e["task_id"] for e in lines if e.get("dataset_id") == dataset_id and "task_id" in e
        }
        found.extend(
            e
            for e in lines
            if e.get("dataset_id") == dataset_id
            or any(f"[{task}] received" in str(e.get("message")) for task in tasks)
        )
    return found


def handoffs(
    ctx: Context, dataset_id: str, responded: float, seen: float, times: dict[str, Any]
) -> dict[str, float | None]:
    """Milliseconds between the stages of one dataset (wall-clock times: the bench's, the
    worker log's, the dataset's ``started_at``/``finished_at``).

    upload response -> scan start (the scan task's delivery, its claim; the start is the
    verdict's audit line, logged just before its commit, minus the scan time the worker
    logs), scan end (the log line written after the verdict's commit, which sends the
    ingest) -> ingest start
    (``started_at``, set by the ingest's claim), ingest end -> completed seen by the poller
    (``finished_at`` is stamped as the last batch starts; the worker logs "completed" after
    that batch's commit).
    """
    events = worker_events(ctx, dataset_id)

    def when(pattern: str) -> float | None:
        for event in events:
            if re.search(pattern, str(event.get("message"))):
                return _log_time(event)
        return None

    # The scan's verdict is audited inside the transaction that records it, before the
    # commit; "scan of ID clean (scanner, S s)" is logged after that commit, which sends
    # the ingest task. When the ingest runs during the scan, the line is logged as the
    # verdict arrives and the audit event comes with the next batch. The scan started
    # S seconds before the verdict.
    scan_end = scan_start = None
    for event in events:
        found = _SCAN_LOG.search(str(event.get("message")))
        if found and (scan_end := _log_time(event)) is not None:
            verdict = min(when(r"^audit scan_clean ") or scan_end, scan_end)
            scan_start = verdict - float(found.group(3))
            break
    scan_received = when(r"^Task csvault\.scan_dataset\[.*\] received")
    ingest_received = when(r"^Task csvault\.ingest_dataset\[.*\] received")
    completed = when(r"^ingest of \S+ completed")
    started, finished = times["started_at"].timestamp(), times["finished_at"].timestamp()

    def ms(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((b - a) * 1000, 1)

    return {
        "response_to_scan_start_ms": ms(responded, scan_start),
        "response_to_scan_received_ms": ms(responded, scan_received),
        "scan_end_to_ingest_start_ms": ms(scan_end, started),
        "scan_end_to_ingest_received_ms": ms(scan_end, ingest_received),
        "finished_to_seen_ms": ms(finished, seen),
        "finished_to_completed_logged_ms": ms(finished, completed),
        "completed_logged_to_seen_ms": ms(completed, seen),
    }


def handled_by(ctx: Context, dataset_id: str) -> list[str]:
    return [w.name for w in ctx.workers if dataset_id in w.log_text()]


def check_dataset(ctx: Context, dataset_id: str, detail: dict[str, Any], rows: int) -> None:
    if detail.get("status") != "completed":
        raise BenchError(
            f"dataset {dataset_id} ended {detail.get('status')!r} (expected completed); "
            f"error: {json.dumps(detail.get('error'))}"
        )
    if detail.get("row_count") != rows:
        raise BenchError(
            f"dataset {dataset_id} has row_count {detail.get('row_count')}, generated {rows}"
        )


def ingest_one(
    ctx: Context, csv_file: Path, rows: int, label: str, *, waits: bool = False
) -> dict[str, Any]:
    """Upload one file, wait for its ingest, measure it (and the RSS of web and worker);
    with ``waits``, PostgreSQL's wait events and WAL counters too."""
    assert ctx.api
    assert ctx.web
    size = csv_file.stat().st_size
    roots = {w.name: w.pid for w in ctx.workers}
    label = f"{ctx.storage}: {label}"
    log(f"[{label}] uploading {csv_file.name} ({size / MB:.1f} MB)")
    moto_roots = {"moto": ctx.moto.pid} if ctx.moto and ctx.storage == "s3" else {}
    groups = {
        "web": tree_of([ctx.web.pid]),
        "worker": tree_of(list(roots.values())),
        "postgres": lambda table: [p for p in named("postgres")(table) if serves_bench(p)],
        "clamd": named("clamd"),
        "redis": named("redis-server"),
        **({"moto": tree_of([ctx.moto.pid])} if moto_roots and ctx.moto else {}),
    }
    with (
        RssSampler(roots) as worker_rss,
        CpuSampler(list(roots.values())) as cpu,
        RssSampler({"web": ctx.web.pid}) as web_rss,
        RssSampler(moto_roots) as moto_rss,
        StageCpu(groups) as stage_cpu,
        WaitSampler(ctx.db_url) if waits else contextlib.nullcontext() as wait_sampler,
    ):
        wal_before = wal_counters(ctx.db_url) if waits else {}
        upload_started = time.monotonic()
        upload_started_wall = time.time()
        dataset, upload_s = ctx.api.upload(csv_file, f"bench {label}")
        responded = time.monotonic()
        responded_wall = time.time()
        dataset_id = str(dataset["id"])
        ctx.created.append(dataset_id)
        log(
            f"[{label}] uploaded in {upload_s:.2f} s ({size / MB / upload_s:.1f} MB/s), "
            f"id {dataset_id}"
        )
        done = ctx.api.wait_final([dataset_id], ctx.args.timeout)
        wal = counters_since(ctx.db_url, wal_before) if waits else None
    seen, detail = done[dataset_id]
    check_dataset(ctx, dataset_id, detail, rows)
    times = dataset_times(ctx.db_url, [dataset_id])[dataset_id]
    worker_s = times["worker_seconds"]
    if not worker_s:
        raise BenchError(f"dataset {dataset_id} has no started_at/finished_at: {times}")
    # Cores kept busy during the ingest (started_at to finished_at): the worker's
    # process tree and every PostgreSQL process.
    cores = cpu.cores(times["started_at"].timestamp(), times["finished_at"].timestamp())
    seen_wall = upload_started_wall + (seen - upload_started)
    windows = stage_windows(
        upload_started_wall,
        responded_wall,
        times["started_at"].timestamp(),
        times["finished_at"].timestamp(),
        seen_wall,
    )
    by_stage = {name: stage_cpu.between(*window) for name, window in windows.items()}
    for name, (t0, t1) in windows.items():
        by_stage[name]["wall"] = round(t1 - t0, 3)
    result = {
        "storage": ctx.storage,
        "dataset_id": dataset_id,
        "rows": rows,
        "bytes": size,
        "upload_seconds": round(upload_s, 3),
        "upload_mb_per_second": round(size / MB / upload_s, 1),
        "response_to_completed_seconds": round(seen - responded, 2),
        "upload_to_completed_seconds": round(seen - upload_started, 2),
        "cpu_cores_worker": cores["worker"],
        "cpu_cores_postgres": cores["postgres"],
        "cpu_cores_machine": cores["machine"],
        "worker_seconds": round(worker_s, 3),
        "rows_per_second": round(rows / worker_s),
        "attempts": times["attempts"],
        "scanner": times["scanner"],
        "scan_seconds": scan_seconds(ctx, dataset_id),
        "created_to_ingest_start_seconds": times["created_to_ingest_start_seconds"],
        "handled_by": handled_by(ctx, dataset_id),
        "worker_processes": worker_rss.report(),
        "worker_peak_rss_mb": worker_rss.peak_mb("child"),
        "worker_main_peak_rss_mb": worker_rss.peak_mb("main"),
        "worker_vmhwm_mb": worker_rss.hwm_mb("child"),
        "worker_idle_rss_mb": worker_rss.idle_mb("child"),
        "worker_main_vmhwm_mb": worker_rss.hwm_mb("main"),
        "web_processes": web_rss.report(),
        "web_peak_rss_mb": web_rss.peak_mb("web child"),
        "web_vmhwm_mb": web_rss.hwm_mb("web child"),
        "web_idle_rss_mb": web_rss.idle_mb("web child"),
        "web_main_peak_rss_mb": web_rss.peak_mb("web main"),
        "web_main_vmhwm_mb": web_rss.hwm_mb("web main"),
        "moto_peak_rss_mb": moto_rss.peak_mb("moto"),
        "moto_vmhwm_mb": moto_rss.hwm_mb("moto"),
        "rss_samples": worker_rss.samples,
        "stage_cpu": by_stage,
        "cpu_floor": cpu_floor(by_stage, len(os.sched_getaffinity(0))),
        "handoffs": handoffs(ctx, dataset_id, responded_wall, seen_wall, times),
    }
    if isinstance(wait_sampler, WaitSampler):
        result["waits"] = wait_sampler.report()
        result["wal"] = wal
    scan = result["scan_seconds"]
    log(
        f"[{label}] scan ({result['scanner'] or '?'}): "
        + (f"{scan:.2f} s" if scan is not None else "time not found in the worker log")
        + f"; upload committed -> ingest started "
        f"{result['created_to_ingest_start_seconds'] or 0:.2f} s"
    )
    log(
        f"[{label}] completed: worker {worker_s:.2f} s = {result['rows_per_second']:,} rows/s; "
        f"response->completed {result['response_to_completed_seconds']:.2f} s; "
        f"worker VmHWM {result['worker_vmhwm_mb']} MB, web VmHWM {result['web_vmhwm_mb']} MB"
        + (f", moto VmHWM {result['moto_vmhwm_mb']} MB" if moto_roots else "")
    )
    return result


def parallel_two(ctx: Context, csv_file: Path, rows: int) -> dict[str, Any]:
    """Two uploads at the same time (two threads), two workers: per-dataset speed and the
    wall time. At the same time, not back to back: an ingest of 1,000,000 rows lasts
    about as long as an upload of the file, so back to back the two ingests would barely
    overlap."""
    assert ctx.api
    api = ctx.api
    if len(ctx.workers) < 2:
        start_worker(ctx)
    log(f"[parallel] uploading two copies of {csv_file.name} at the same time")
    sent: list[tuple[dict[str, Any], float, float] | BaseException | None] = [None, None]

    def send(i: int) -> None:
        try:
            dataset, seconds = api.upload(csv_file, f"bench parallel {'AB'[i]}")
            sent[i] = (dataset, seconds, time.monotonic())
        except BaseException as exc:
            sent[i] = exc

    with CpuSampler([w.pid for w in ctx.workers]) as cpu, WaitSampler(ctx.db_url) as waits:
        wal_before = wal_counters(ctx.db_url)
        t0 = time.monotonic()
        senders = [threading.Thread(target=send, args=(i,), name=f"upload-{i}") for i in (0, 1)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        uploaded = []
        for outcome in sent:
            if not isinstance(outcome, tuple):
                raise BenchError(f"a parallel upload failed: {outcome!r}")
            uploaded.append(outcome)
        (first, first_s, first_resp), (second, second_s, second_resp) = uploaded
        first_resp = min(first_resp, second_resp)
        ids = [str(first["id"]), str(second["id"])]
        ctx.created.extend(ids)
        done = ctx.api.wait_final(ids, ctx.args.timeout)
        wal = counters_since(ctx.db_url, wal_before)
    last_done = max(seen for seen, _ in done.values())
    for dataset_id, (_, detail) in done.items():
        check_dataset(ctx, dataset_id, detail, rows)
    times = dataset_times(ctx.db_url, ids)
    per: list[dict[str, Any]] = []
    for dataset_id in ids:
        t = times[dataset_id]
        if not t["worker_seconds"]:
            raise BenchError(f"dataset {dataset_id} has no started_at/finished_at: {t}")
        per.append(
            {
                "dataset_id": dataset_id,
                "worker_seconds": round(t["worker_seconds"], 3),
                "rows_per_second": round(rows / t["worker_seconds"]),
                "attempts": t["attempts"],
                "handled_by": handled_by(ctx, dataset_id),
            }
        )
    span = (
        max(t["finished_at"] for t in times.values()) - min(t["started_at"] for t in times.values())
    ).total_seconds()
    overlap = (
        min(t["finished_at"] for t in times.values()) - max(t["started_at"] for t in times.values())
    ).total_seconds()
    # CPU from the first ingest's start to the last one's end.
    cores = cpu.cores(
        min(t["started_at"] for t in times.values()).timestamp(),
        max(t["finished_at"] for t in times.values()).timestamp(),
    )
    result = {
        "rows_each": rows,
        "upload_seconds": [round(first_s, 3), round(second_s, 3)],
        "datasets": per,
        "wall_from_first_upload_seconds": round(last_done - t0, 2),
        "wall_from_first_response_seconds": round(last_done - first_resp, 2),
        "ingest_span_seconds": round(span, 3),
        "ingest_overlap_seconds": round(max(overlap, 0.0), 3),
        "aggregate_rows_per_second": round(2 * rows / span),
        "cpu_cores_worker": cores["worker"],
        "cpu_cores_postgres": cores["postgres"],
        "cpu_cores_machine": cores["machine"],
        "same_worker": len({tuple(p["handled_by"]) for p in per}) == 1,
        "waits": waits.report(),
        "wal": wal,
    }
    log(
        "[parallel] completed: "
        + ", ".join(f"{p['rows_per_second']:,} rows/s ({'/'.join(p['handled_by'])})" for p in per)
        + f"; span {span:.2f} s, overlap {max(overlap, 0):.2f} s"
    )
    return result


def _run_label(label: str, i: int) -> str:
    return label if i == 0 else f"{label}, run {i + 1}"


def main_one(ctx: Context, csv_file: Path, rows: int, i: int) -> dict[str, Any]:
    return ingest_one(ctx, csv_file, rows, _run_label(f"{rows:,} rows", i))


def big_one(ctx: Context, csv_file: Path, rows: int, i: int) -> dict[str, Any]:
    """The big file, upload to completed, with PostgreSQL's waits and the WAL it wrote."""
    wal_before = wal_lsn(ctx.db_url)
    result = ingest_one(ctx, csv_file, rows, _run_label(f"{rows:,} rows (big)", i), waits=True)
    result["wal_bytes"] = wal_since(ctx.db_url, wal_before)
    return result


def parallel_pair(ctx: Context, csv_file: Path, rows: int, i: int) -> dict[str, Any]:
    """The file alone, then two copies at once; ``over_share``: the larger slowdown over the
    slowdown the CPU share explains (the target is at most 1.10)."""
    single = ingest_one(ctx, csv_file, rows, _run_label(f"{rows:,} rows alone", i), waits=True)
    pair = parallel_two(ctx, csv_file, rows)
    run = {"single": single, "pair": pair}
    nproc = len(os.sched_getaffinity(0))
    share = cpu_explained_slowdown({"parallel_single": single, "parallel": pair, "nproc": nproc})
    slowdowns = [single["rows_per_second"] / d["rows_per_second"] for d in pair["datasets"]]
    run["over_share"] = round(max(slowdowns) / share, 3)
    return run


def repeated(
    ctx: Context, measure: Callable[[int], dict[str, Any]], key: Callable[[dict[str, Any]], float]
) -> tuple[dict[str, Any], list[float]]:
    """``measure`` run ``--repeats`` times, each from a settled disk with the datasets of the
    runs before it purged: the run of the median ``key`` (the higher one of an even count)
    and every run's key, in the order they ran. One run of this machine can be 30 % off
    another, so a target is judged on the median."""
    runs: list[dict[str, Any]] = []
    for i in range(ctx.args.repeats):
        if ctx.created:
            discard(ctx)
        settled = settle_disk(ctx.db_url)  # the purge's writes included
        run = measure(i)
        run["settled_before"] = settled
        runs.append(run)
    keys = [round(key(run), 3) for run in runs]
    median = sorted(range(len(runs)), key=lambda j: keys[j])[len(runs) // 2]
    return runs[median], keys


def orm_reference(ctx: Context, csv_file: Path, sample: int) -> dict[str, Any]:
    cmd = [
        str(BIN / "python"), str(Path(__file__).resolve()), "orm-reference-child",
        str(csv_file), str(sample), ctx.username,
    ]  # fmt: skip
    log(f"[reference] one ORM create() per row, autocommit, {sample:,} rows ...")
    try:
        done = subprocess.run(
            cmd,
            cwd=ROOT,
            env=ctx.env,
            capture_output=True,
            text=True,
            timeout=ctx.args.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"ORM reference timed out after {ctx.args.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(
            f"ORM reference failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"[reference] {result['rows']:,} rows in {result['seconds']:.2f} s")
    return result


def orm_reference_child(csv_file: str, sample: int, username: str) -> None:
    """Runs in a subprocess: Django against the bench database, one create() per row."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    from config import bootstrap

    bootstrap.prepare()
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from csvault.datasets.models import Dataset, DatasetStatus, ProcessedData

    with open(csv_file, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows = [row for _, row in zip(range(sample), reader, strict=False)]
    owner = get_user_model().objects.get(username=username)
    # Cancelled, so that no reaper ever picks this scratch dataset up.
    ds = Dataset.objects.create(
        owner=owner,
        name="bench ORM reference",
        storage_key="bench",
        size=0,
        sha256="",
        key_id="bench",
        wrapped_key=b"",
        status=DatasetStatus.CANCELLED,
    )
    try:
        assert connection.get_autocommit()
        started = time.perf_counter()
        for n, row in enumerate(rows, start=1):
            ProcessedData.objects.create(dataset=ds, row_number=n, data=json.dumps(row).encode())
        seconds = time.perf_counter() - started
        written = ProcessedData.objects.filter(dataset=ds).count()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM datasets_processeddata WHERE dataset_id = %s", [ds.id])
        ds.delete()
    if written != len(rows):
        raise SystemExit(f"wrote {written} rows, expected {len(rows)}")
    print(json.dumps({"rows": len(rows), "seconds": round(seconds, 3)}))


def wait_purged(ctx: Context, timeout: float = 120.0) -> None:
    """Wait until the workers purged the deleted datasets (rows, file, record).

    DELETE only crypto-shreds; the purge runs as a task on this run's private queue,
    which nobody consumes once the workers are stopped.
    """
    deadline = time.monotonic() + timeout
    left = -1
    while time.monotonic() < deadline and any(w.alive() for w in ctx.workers):
        with pg_connect(ctx.db_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM datasets_dataset WHERE id = ANY(%s::uuid[])", (ctx.created,)
            ).fetchone()
        left = int(row[0]) if row else 0
        if not left:
            log(f"purged {len(ctx.created)} bench dataset(s)")
            return
        time.sleep(0.5)
    log(f"{left} deleted bench dataset(s) not purged yet; the reaper will re-send their purge")


def discard(ctx: Context) -> None:
    """Delete the datasets made so far (and wait for the purge); --keep keeps them."""
    if ctx.api and ctx.web and ctx.web.alive() and ctx.created:
        if ctx.args.keep:
            log(f"--keep: leaving datasets {', '.join(ctx.created)}")
        else:
            for dataset_id in ctx.created:
                try:
                    status = ctx.api.delete(dataset_id)
                    if status != 204:
                        log(f"DELETE {dataset_id} answered {status}")
                except OSError as exc:
                    log(f"DELETE {dataset_id} failed: {exc}")
            log(f"deleted {len(ctx.created)} bench dataset(s)")
            wait_purged(ctx)
    ctx.created = []


def end_pass(ctx: Context) -> None:
    """Delete this storage pass's datasets (and wait for the purge), stop its services."""
    discard(ctx)
    for service in [*ctx.workers, *([ctx.web] if ctx.web else [])]:
        service.stop()
    ctx.workers, ctx.web, ctx.api, ctx.created = [], None, None, []


def cleanup(ctx: Context) -> None:
    end_pass(ctx)
    stop_all()
    try:
        drop_scratch(ctx.db_url)
    except psycopg.Error as exc:
        log(f"could not drop the scratch schema: {exc}")
    if ctx.username and not ctx.args.keep:
        with contextlib.suppress(psycopg.Error), pg_connect(ctx.db_url) as conn, conn.transaction():
            conn.execute(
                "DELETE FROM authtoken_token WHERE user_id IN "
                "(SELECT id FROM auth_user WHERE username = %s)",
                (ctx.username,),
            )
            conn.execute("DELETE FROM auth_user WHERE username = %s", (ctx.username,))


# --- the report ---------------------------------------------------------------------


def cpu_us_per_row(r: dict[str, Any]) -> tuple[float, float]:
    """CPU microseconds (worker + PostgreSQL) per row: one ingest alone, two at once.

    If two ingests got in each other's way (locks, a shared partition, I/O), each row
    would cost more CPU, or the CPU would sit idle; if they only share the cores, a row
    costs the same and the machine is busy.
    """
    single, par = r["parallel_single"], r["parallel"]
    alone = (single["cpu_cores_worker"] + single["cpu_cores_postgres"]) * single["worker_seconds"]
    both = (par["cpu_cores_worker"] + par["cpu_cores_postgres"]) * par["ingest_span_seconds"]
    return alone / single["rows"] * 1e6, both / (2 * par["rows_each"]) * 1e6


def cpu_explained_slowdown(r: dict[str, Any]) -> float:
    """The per-dataset slowdown that sharing the CPU alone causes in the parallel run.

    One ingest alone kept ``demand`` cores busy (worker + PostgreSQL); two want twice
    that, from the cores not taken by anything else meanwhile.
    """
    single, par = r["parallel_single"], r["parallel"]
    demand = single["cpu_cores_worker"] + single["cpu_cores_postgres"]
    other = max(0.0, par["cpu_cores_machine"] - par["cpu_cores_worker"] - par["cpu_cores_postgres"])
    available = max(0.5, r["nproc"] - other)
    return float(max(1.0, 2 * demand / available))


def _spin(seconds_out: Any) -> None:
    started = time.perf_counter()
    x = 0
    for i in range(10_000_000):
        x += i
    seconds_out.put(time.perf_counter() - started)


def parallelism_check() -> dict[str, float]:
    """How much of two cores the machine gives right now: one CPU-bound process
    alone, then two at once (1.0 = the second core is fully there; a shared VM
    can give much less, and then no two-core pipeline overlaps fully)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = ctx.Queue()

    def run(n: int) -> float:
        procs = [ctx.Process(target=_spin, args=(out,)) for _ in range(n)]
        for proc in procs:
            proc.start()
        times = [out.get() for _ in procs]
        for proc in procs:
            proc.join()
        return max(times)

    alone = min(run(1) for _ in range(2))
    pair = min(run(2) for _ in range(2))
    return {
        "alone_s": round(alone, 3),
        "pair_s": round(pair, 3),
        "parallel": round(alone / pair * 2, 2),
    }


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def format_table(headers: tuple[str, ...], table: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [headers, *table]) for i in range(len(headers))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [
        fmt.format(*headers).rstrip(),
        "  ".join("-" * w for w in widths),
        *(fmt.format(*row).rstrip() for row in table),
    ]


def markdown_table(headers: tuple[str, ...], table: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [headers, *table]) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, table)]


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} MB"


def _rss_cell(hwm: float | None, idle: float | None, sampled: float | None) -> str:
    cell = _mb(hwm)
    if hwm is not None and idle is not None:
        cell += f" (idle {idle:.1f}, +{hwm - idle:.1f})"
    if sampled is not None:
        cell += f"; sampled {sampled:.1f}"
    return cell


def storage_table(r: dict[str, Any]) -> list[str]:
    """csvault with the files on each storage, side by side (one column each)."""
    runs = [(s, r["csvault"][s]) for s in r["storages"] if s in r["csvault"]]
    if not runs:
        return []
    rows = r["rows"]
    ceiling = r["ceiling"]
    names = {"local": "local disk", "s3": "S3 (moto server)"}
    headers = ("metric", *(names.get(s, s) for s, _ in runs), "target / note")

    def row(metric: str, cell: Any, note: str = "") -> tuple[str, ...]:
        return (metric, *(cell(res) for _, res in runs), note)

    def ingest(res: dict[str, Any]) -> str:
        ratio = res["rows_per_second"] / ceiling["rows_per_second"]
        return (
            f"{res['rows_per_second']:,} rows/s ({res['worker_seconds']:.2f} s) = "
            f"{ratio:.2f} x ceiling {_verdict(ratio >= TARGET_CEILING_RATIO)}"
        )

    def scan(res: dict[str, Any]) -> str:
        seconds = res.get("scan_seconds")
        return f"{seconds:.2f} s ({r['file_mb'] / seconds:.0f} MB/s)" if seconds else "not found"

    def pre(res: dict[str, Any]) -> str:
        seconds = res.get("created_to_ingest_start_seconds")
        return f"{seconds:.2f} s" if seconds is not None else "?"

    target = TARGET_COMPLETED_SECONDS_1M * rows / 1_000_000
    scaled = "" if rows == 1_000_000 else " (scaled)"

    def completed(res: dict[str, Any]) -> str:
        seconds = res["response_to_completed_seconds"]
        return f"{seconds:.2f} s {_verdict(seconds <= target)}"

    def worker_rss(res: dict[str, Any]) -> str:
        hwm = res["worker_vmhwm_mb"]
        peak = hwm if hwm is not None else res["worker_peak_rss_mb"] or 0.0
        return (
            _rss_cell(hwm, res.get("worker_idle_rss_mb"), res["worker_peak_rss_mb"])
            + f" {_verdict(peak < TARGET_WORKER_RSS_MB)}"
        )

    scanners = sorted({str(res.get("scanner") or "?") for _, res in runs})
    scanner = ", ".join(scanners)
    if scanners == ["clamd"]:
        scanner += f" INSTREAM at {r.get('clamd_url') or '?'}"
    elif scanners == ["builtin"]:
        scanner += " matcher (no CLAMD_URL)"
    table = [
        row(
            "COPY ceiling (unindexed text table)",
            lambda _: f"{ceiling['rows_per_second']:,} rows/s ({ceiling['seconds']:.2f} s)",
            "baseline, once, from local disk; " + ceiling["method"].split(" FROM")[0],
        ),
        row("csvault ingest (worker time)", ingest, f">= {TARGET_CEILING_RATIO:.1f} x ceiling"),
        row(
            "upload (streaming multipart POST)",
            lambda res: f"{res['upload_mb_per_second']:.1f} MB/s ({res['upload_seconds']:.2f} s)",
        ),
        row("malware scan stage (worker log)", scan, f"scanner: {scanner}"),
        row("upload committed -> ingest started", pre, "scan + both task hand-offs"),
        row("upload response -> completed", completed, f"<= {target:.1f} s{scaled}"),
        row(
            "worker peak RSS (pool child, VmHWM)",
            worker_rss,
            f"< {TARGET_WORKER_RSS_MB:.0f} MB; idle = RSS before the upload",
        ),
        row(
            "worker main process (VmHWM)",
            lambda res: _mb(res.get("worker_main_vmhwm_mb") or res["worker_main_peak_rss_mb"]),
        ),
        row(
            "web peak RSS (gunicorn workers, VmHWM)",
            lambda res: _rss_cell(
                res.get("web_vmhwm_mb"), res.get("web_idle_rss_mb"), res["web_peak_rss_mb"]
            ),
            "the largest gunicorn worker (max, not summed)",
        ),
        row(
            "gunicorn master (VmHWM)",
            lambda res: _mb(res.get("web_main_vmhwm_mb") or res["web_main_peak_rss_mb"]),
        ),
    ]
    if any(s == "s3" for s, _ in runs):
        table.append(
            row(
                "moto S3 server peak RSS (VmHWM)",
                lambda res: _mb(res.get("moto_vmhwm_mb")) if res["storage"] == "s3" else "-",
                "the test double's, not csvault's (see below)",
            )
        )
    lines = format_table(headers, table)
    lines.append(
        "RSS: VmHWM (the kernel's high-water mark) of each process, which is started anew for "
        "each storage; of several gunicorn workers or pool children the largest (max, not "
        "summed); 'sampled' is the highest VmRSS seen every 0.1 s."
    )
    s3 = r.get("s3")
    if s3:
        lines.append(
            f"S3: STORAGE_URL={s3['storage_url']} on {s3['endpoint']} ({s3['server']}). "
            f"Note: {MOTO_NOTE}."
        )
    return lines


def _rows_label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows:,}"


def _completed_row(res: dict[str, Any], target_1m_rows: float, rows_at: int) -> tuple[str, ...]:
    """Upload start -> completed of one file, split into the stages the bench measures."""
    rows = res["rows"]
    target = target_1m_rows * rows / rows_at
    scaled = "" if rows == rows_at else f" (scaled from {target_1m_rows:g} s at {rows_at:,})"
    total = res["upload_to_completed_seconds"]
    upload, scan, ingest = res["upload_seconds"], res.get("scan_seconds"), res["worker_seconds"]
    rest = total - upload - (scan or 0.0) - ingest
    floor = res.get("cpu_floor")
    return (
        f"{_rows_label(rows)}-row file ({res['bytes'] / MB:.0f} MB): upload -> completed",
        f"{total:.2f} s = upload {upload:.2f} + scan "
        + (f"{scan:.2f}" if scan is not None else "?")
        + f" + ingest {ingest:.2f} + rest {rest:.2f} s",
        f"<= {target:.1f} s{scaled}"
        + (f"; CPU floor {floor['floor_seconds']:.2f} s" if floor else ""),
        ("yes" if total <= target else "NO")
        + (" (target < floor)" if floor and floor["floor_seconds"] > target else ""),
    )


def _with_runs(row: tuple[str, ...], runs: list[float] | None, unit: str) -> tuple[str, ...]:
    """A table row of the median run, with every run's figure when there were several."""
    if not runs or len(runs) < 2:
        return row
    what, now, target, met = row
    figures = ", ".join(f"{x:.2f}" for x in runs)
    return (what, f"median of {len(runs)} runs ({figures}{unit}): {now}", target, met)


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} ms"


def stage_cpu_lines(res: dict[str, Any], target_1m_rows: float, rows_at: int) -> list[str]:
    """One file's CPU seconds by stage and process group, its CPU floor and its hand-offs."""
    stages = res.get("stage_cpu")
    if not stages:
        return []
    rows = res["rows"]
    target = target_1m_rows * rows / rows_at
    groups = [g for g in GROUP_TITLES if g in stages["total"]]
    titles = {
        "upload": "upload",
        "scan": "scan (+ hand-offs)",
        "ingest": "ingest",
        "rest": "rest",
        "total": "upload -> completed",
    }
    table = [
        (
            titles[stage],
            f"{stages[stage]['wall']:.2f}",
            *(f"{stages[stage].get(g, 0.0):.2f}" for g in groups),
        )
        for stage in (*STAGES, "total")
    ]
    floor = res["cpu_floor"]
    total = stages["total"]
    measured = res["upload_to_completed_seconds"]
    if floor["floor_seconds"] > target:
        verdict = "the target is below the floor: out of reach on this machine at this CPU cost"
    else:
        verdict = (
            f"the target is {target - floor['floor_seconds']:.2f} s above the floor: within "
            "reach only with the stages overlapped"
        )
    h = res.get("handoffs") or {}
    steal = f"; steal {total['steal']:.2f} s" if total.get("steal", 0.0) >= 0.05 else ""
    return [
        f"CPU by stage, {_rows_label(rows)}-row file ({res['bytes'] / MB:.0f} MB), files on "
        f"{res['storage']}: CPU seconds (user + system) from /proc every 0.1 s, interpolated "
        "at the stage boundaries",
        *format_table(("stage", "wall s", *(GROUP_TITLES[g] for g in groups)), table),
        "groups: web = gunicorn's process tree, worker = the Celery worker's tree, "
        "PostgreSQL = the server's own processes and the backends of the bench's database, "
        "clamd = the clamd daemon; '= csvault' is their sum; client = the bench's main thread "
        "(sending the upload, polling); Redis = redis-server; bench = the bench's sampling "
        "threads; other = the rest of the machine's busy time (the kernel's own threads, e.g. "
        f"writeback, and other processes){steal}.",
        f"CPU floor on {floor['cores']} cores: csvault's side used {floor['csvault_cpu']:.2f} s "
        f"of CPU, so no overlap of the stages can finish in less than "
        f"{floor['floor_seconds']:.2f} s ({floor['floor_with_client_seconds']:.2f} s with the "
        f"client's {floor['client_cpu']:.2f} s); measured {measured:.2f} s, target <= "
        f"{target:.1f} s: {verdict}.",
        f"hand-offs: upload response -> scan start {_ms(h.get('response_to_scan_start_ms'))} "
        f"(the worker had the task at {_ms(h.get('response_to_scan_received_ms'))}: negative "
        f"when before the response reached the client); {_scan_to_ingest(h)}; "
        "ingest end (finished_at) -> "
        f"completed seen by the poller {_ms(h.get('finished_to_seen_ms'))} (the worker logged "
        f"completed after {_ms(h.get('finished_to_completed_logged_ms'))}, the poll saw it "
        f"{_ms(h.get('completed_logged_to_seen_ms'))} later; polls every {POLL_SECONDS:g} s, "
        f"every {FAST_POLL_SECONDS:g} s once the ETA is under {FAST_POLL_ETA:g} s).",
    ]


def _scan_to_ingest(h: dict[str, Any]) -> str:
    gap = h.get("scan_end_to_ingest_start_ms")
    if gap is not None and gap < 0:
        return (
            f"the ingest ran during the scan: it started {_ms(-gap)} before clamd's verdict "
            "(no ingest task)"
        )
    return (
        f"scan end -> ingest start {_ms(gap)} (task received at "
        f"{_ms(h.get('scan_end_to_ingest_received_ms'))})"
    )


def speed_table(r: dict[str, Any]) -> list[str]:
    """Issue 17's table (speed, part two): what this run measured against the targets."""
    first = r["storages"][0] if r["storages"] else ""
    table: list[tuple[str, ...]] = []
    main = r["csvault"].get(first)
    if main:
        row = _completed_row(main, TARGET_UPLOAD_TO_COMPLETED_1M, 1_000_000)
        table.append(_with_runs(row, r.get("main_runs"), " s"))
    big = r.get("big")
    if big:
        row = _completed_row(big, TARGET_UPLOAD_TO_COMPLETED_5M, 5_000_000)
        table.append(_with_runs(row, r.get("big_runs"), " s"))
    else:
        table.append(("big file: upload -> completed", "not run (--skip-big)", "", "-"))
    par = r.get("parallel")
    if par:
        single = r["parallel_single"]
        slowdowns = [single["rows_per_second"] / d["rows_per_second"] for d in par["datasets"]]
        share = cpu_explained_slowdown(r)
        target = TARGET_PARALLEL_OVER_CPU_SHARE * share
        row = (
            f"two {_rows_label(par['rows_each'])}-row ingests at once",
            " / ".join(f"{x:.2f}x" for x in slowdowns)
            + f" slower each; the CPU share explains {share:.2f}x",
            f"<= CPU share + {100 * (TARGET_PARALLEL_OVER_CPU_SHARE - 1):.0f} % = {target:.2f}x",
            "yes" if max(slowdowns) <= target else "NO",
        )
        table.append(_with_runs(row, r.get("parallel_runs"), "x the share"))
    else:
        table.append(("two ingests at once", "not run (--skip-parallel)", "", "-"))
    lines = []
    if main:
        lines += [*stage_cpu_lines(main, TARGET_UPLOAD_TO_COMPLETED_1M, 1_000_000), ""]
    if big:
        lines += [*stage_cpu_lines(big, TARGET_UPLOAD_TO_COMPLETED_5M, 5_000_000), ""]
    lines += [
        f"== Issue 17 (speed, part two): now vs target, files on {first} ==",
        *markdown_table(("what", "now", "target", "met?"), table),
        "upload -> completed: from the first byte of the upload to the poll (every "
        f"{POLL_SECONDS:g} s) that sees completed. upload = until the POST's response; scan = "
        "the time the worker logs for the malware scan; ingest = the dataset's finished_at - "
        "started_at; rest = the remainder (commit, task hand-offs, queueing, the poll interval; "
        "negative when stages overlap). CPU floor = the CPU csvault's processes (web, worker, "
        "PostgreSQL, clamd) used for the file, over the cores: the shortest time any overlap "
        "of the stages could reach here (tables above).",
    ]
    if par:
        lines.append(
            "two at once: the rows/s of the same file ingested alone just before, over each "
            "dataset's rows/s while both ran on two workers; the CPU share is the slowdown that "
            "sharing the cores alone explains (the 'CPU explains' line above)."
        )
    if r.get("big_limits"):
        lines.append(f"big file limits: {r['big_limits']}.")
    if big:
        wal = big.get("wal_bytes")
        lines.append(
            f"big file: worker VmHWM {_mb(big['worker_vmhwm_mb'])}, web VmHWM "
            f"{_mb(big['web_vmhwm_mb'])} (peaks of the process so far, the main run's included)"
            + (f"; the server wrote {wal / MB:,.0f} MB of WAL meanwhile" if wal else "")
            + (
                f"; it started after sync ({big['settled_before']['dirty_mb']:.0f} MB dirty, "
                f"{big['settled_before']['sync_seconds']:.1f} s) and CHECKPOINT "
                f"({big['settled_before']['checkpoint_seconds']:.1f} s)"
                if "settled_before" in big
                else ""
            )
            + "."
        )
        if big.get("wal"):
            lines.append(wal_line(big["wal"], big["rows"], "big file, upload to completed"))
    return lines


def render(results: dict[str, Any]) -> str:
    r = results
    rows = r["rows"]
    lines = [
        f"csvault ingest benchmark  {r['finished_at']}",
        f"host: nproc {r['nproc']}; load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.2f}' for x in r['load_start'])}, at end "
        f"{'/'.join(f'{x:.2f}' for x in r['load_end'])}; {r['postgres_version']}; "
        f"Python {r['python']}",
        f"file: {rows:,} rows x {len(COLUMNS)} columns, {r['file_mb']:.1f} MB "
        f"({r['file_bytes'] / rows:.0f} bytes/row), {r['file']}",
        f"database {r['database']}; broker {r['broker']}; "
        f"CSV fast path: {r.get('fast_csv', 'unknown')}",
    ]
    if r.get("parallelism"):
        p = r["parallelism"]
        lines.append(
            f"cores available: {p['parallel']:.2f} of 2 (a CPU-bound process alone "
            f"{p['alone_s'] * 1000:.0f} ms, two at once {p['pair_s'] * 1000:.0f} ms each; "
            "below ~1.8 the machine cannot run the parser and PostgreSQL side by side)"
        )
    lines.append("")
    lines.extend(storage_table(r))
    lines.append("")
    ceiling = r["ceiling"]
    first = r["storages"][0] if r["storages"] else ""
    main = r["csvault"].get(first)
    table: list[tuple[str, str, str, str]] = []
    ref = r.get("reference")
    if ref:
        ref_rate = ref["rows"] / ref["seconds"]
        extrapolated = rows / ref_rate
        comparison = f"full file ~{extrapolated:,.0f} s"
        if main:
            comparison += f"; csvault {main['rows_per_second'] / ref_rate:,.0f}x faster"
        table.append(
            (
                "reference: ORM create() per row",
                f"{ref_rate:,.0f} rows/s ({ref['rows']:,} rows, {ref['seconds']:.2f} s)",
                comparison,
                "",
            )
        )
    par = r.get("parallel")
    if par:
        single = r["parallel_single"]
        n = par["rows_each"]
        table.append(
            (
                f"parallel: 1 worker, {n:,} rows alone",
                f"{single['rows_per_second']:,} rows/s ({single['worker_seconds']:.2f} s)",
                "baseline for the row below",
                "",
            )
        )
        rates = [d["rows_per_second"] for d in par["datasets"]]
        mean = sum(rates) / len(rates)
        expected = cpu_explained_slowdown(r)
        slowdown = single["rows_per_second"] / mean
        alone_us, both_us = cpu_us_per_row(r)
        saturated = par["cpu_cores_machine"] >= 0.9 * r["nproc"]
        table.append(
            (
                f"parallel: 2 workers, 2 x {n:,} rows",
                " / ".join(f"{x:,}" for x in rates) + " rows/s per dataset",
                f"slowdown {slowdown:.2f}x per dataset; CPU share alone {expected:.2f}x",
                "",
            )
        )
        table.append(
            (
                "parallel: CPU per row (worker + PG)",
                f"{alone_us:.2f} us alone, {both_us:.2f} us two at once",
                f"machine {par['cpu_cores_machine']:.2f} of {r['nproc']} cores busy",
                "CPU-bound, same work per row "
                + _verdict(saturated and both_us <= 1.15 * alone_us),
            )
        )
        table.append(
            (
                "parallel: both datasets together",
                f"{par['aggregate_rows_per_second']:,} rows/s aggregate",
                f"{par['aggregate_rows_per_second'] / single['rows_per_second']:.2f} x one worker; "
                f"wall {par['wall_from_first_upload_seconds']:.2f} s",
                "",
            )
        )
    if table:
        if par:
            lines.append(f"with the files on {r.get('parallel_storage', first)}:")
        lines.extend(format_table(("metric", "value", "comparison", "target"), table))
        lines.append("")
    if par:
        single = r["parallel_single"]
        demand = single["cpu_cores_worker"] + single["cpu_cores_postgres"]
        other = max(
            0.0, par["cpu_cores_machine"] - par["cpu_cores_worker"] - par["cpu_cores_postgres"]
        )
        lines.append(
            f"CPU explains: one {par['rows_each']:,}-row ingest alone kept {demand:.2f} cores busy "
            f"(worker {single['cpu_cores_worker']:.2f}, PostgreSQL "
            f"{single['cpu_cores_postgres']:.2f}); two at once want {2 * demand:.2f}. While both "
            f"ran, the machine had {par['cpu_cores_machine']:.2f} of {r['nproc']} cores busy, "
            f"{other:.2f} of them outside the workers and PostgreSQL (scanner, web, other "
            f"processes), leaving {r['nproc'] - other:.2f}: hence "
            f"{cpu_explained_slowdown(r):.2f}x if the two pipelines overlapped as well as one "
            "does alone (they don't quite: each worker's parse and COPY stages wait for CPU). "
            "Verdict: the machine was CPU-bound (>= 90 % busy) and a row cost at most 15 % "
            "more CPU than alone. CPU sampled from /proc every 0.2 s (PostgreSQL: the "
            "server's own processes and the bench database's backends)."
        )
        lines.append(
            f"parallel note: {r['nproc']} cores shared by PostgreSQL, two workers and the web "
            "server (and other work on this machine), so two ingests at once cannot each run at "
            "full speed; ingest overlap "
            f"{par['ingest_overlap_seconds']:.2f} s of a {par['ingest_span_seconds']:.2f} s span; "
            "workers: "
            + ", ".join("/".join(d["handled_by"]) or "?" for d in par["datasets"])
            + (" (WARNING: one worker took both)" if par["same_worker"] else "")
            + "."
        )
        single = r["parallel_single"]
        if single.get("waits") and par.get("waits"):
            lines.append(waits_line(single["waits"], "one ingest alone (upload to completed)"))
            lines.append(waits_line(par["waits"], "two at once (first upload to both completed)"))
        if single.get("wal") and par.get("wal"):
            lines.append(wal_line(single["wal"], single["rows"], "one ingest alone"))
            lines.append(wal_line(par["wal"], 2 * par["rows_each"], "two at once"))
    for storage, res in r["csvault"].items():
        procs = ", ".join(
            f"{p['role']} {p['pid']}: idle {p['idle_rss_mb']}, peak {p['peak_rss_mb']} MB"
            + (f" (HWM {p['vmhwm_mb']})" if p["vmhwm_mb"] is not None else "")
            for p in res["worker_processes"] + res["web_processes"]
        )
        lines.append(f"processes, {storage} (RSS sampled every 0.1 s, VmHWM at the end): {procs}")
    if ceiling["server_side_errors"]:
        lines.append("server-side COPY attempts: " + "; ".join(ceiling["server_side_errors"]))
    lines.append(f"command: {r['command']}")
    lines.append("")
    lines.extend(speed_table(r))
    return "\n".join(lines)


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def redact(url: str) -> str:
    info = conninfo_to_dict(url) if url.startswith("postgres") else {}
    if info.get("password"):
        return url.replace(str(info["password"]), "***")
    return url


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="csvault ingest benchmark: COPY ceiling vs csvault vs one ORM insert per row."
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the main file")
    parser.add_argument(
        "--parallel-rows",
        type=int,
        default=1_000_000,
        help="rows in each parallel file (an ingest of 300,000 rows lasts ~0.6 s: too short)",
    )
    parser.add_argument(
        "--big-rows",
        type=int,
        default=5_000_000,
        help="rows of the big file, uploaded to completed once (default 5,000,000, 588 MB)",
    )
    parser.add_argument("--skip-big", action="store_true", help="skip the big file")
    parser.add_argument("--reference-rows", type=int, default=20_000, help="ORM sample size")
    parser.add_argument("--skip-parallel", action="store_true", help="skip the two-worker run")
    parser.add_argument("--skip-reference", action="store_true", help="skip the ORM reference")
    parser.add_argument("--keep", action="store_true", help="don't delete the bench datasets")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each of issue 17's measurements (the 1M and big files, the pair); "
        "the table shows the median run (default 3)",
    )
    parser.add_argument(
        "--storage",
        choices=("local", "s3", "both"),
        default="both",
        help="where the dataset files live: the bench data dir, a bucket on moto's S3 "
        "server, or each in turn with fresh services (default both)",
    )
    parser.add_argument(
        "--database",
        default="csvault_bench",
        help="PostgreSQL database of the run (default csvault_bench; DATABASE_URL wins)",
    )
    parser.add_argument(
        "--broker-db",
        type=int,
        default=2,
        help="Redis DB number of the broker (default 2; CELERY_BROKER_URL wins)",
    )
    parser.add_argument(
        "--cache-db",
        type=int,
        default=3,
        help="Redis DB number of the cache (default 3; CACHE_URL wins)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds for every wait (default 600)"
    )
    args = parser.parse_args(argv)
    if min(args.rows, args.parallel_rows, args.reference_rows, args.big_rows) < 1:
        parser.error("row counts must be positive")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def fast_csv_state(env: dict[str, str]) -> str:
    """Whether the worker will parse with the C fast path (csvault/csvio/_csvblocks.c)."""
    built = subprocess.run(
        [str(BIN / "python"), "-c", "import csvault.csvio._csvblocks"],
        capture_output=True,
        check=False,
    )
    if built.returncode:
        return "not built (the Python reader reads every file)"
    if env.get("CSVAULT_FAST_CSV", "1").lower() in ("0", "false", "no", "off"):
        return "built, off (CSVAULT_FAST_CSV=0)"
    return "built, on"


def start_services(ctx: Context) -> None:
    """gunicorn and one worker with the files on ``ctx.storage``, fresh for each storage
    (so that each process's VmHWM is that storage's peak)."""
    ctx.port = free_port()
    web_env = {**storage_env(ctx, ctx.storage), "PORT": str(ctx.port), "HOST": "127.0.0.1"}
    ctx.web = Service(
        f"{ctx.storage}-web",
        [str(BIN / "gunicorn"), "config.wsgi", "--config", "scripts/gunicorn.conf.py"],
        web_env,
    )
    ctx.web.start()
    wait_http_ready(ctx.web, ctx.port, STARTUP_TIMEOUT)
    log(f"{ctx.web.name} ready on 127.0.0.1:{ctx.port}")
    ctx.api = Api(ctx.port, ctx.token, ctx.args.timeout)
    start_worker(ctx)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not (BIN / "python").exists():
        raise BenchError(f"{BIN / 'python'} missing: run `make install` first")
    global BENCH_DATABASE
    queue = f"csvault-bench-{uuid.uuid4().hex[:8]}"
    env = service_env(queue, args)
    ctx = Context(args=args, env=env, db_url=env["DATABASE_URL"])
    BENCH_DATABASE = str(conninfo_to_dict(ctx.db_url).get("dbname") or "")
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python bench/ingest_bench.py", *sys.argv[1:]]),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "load_start": list(os.getloadavg()),
        "parallelism": parallelism_check(),
        "python": platform.python_version(),
        "rows": args.rows,
        "database": redact(ctx.db_url),
        "broker": env["CELERY_BROKER_URL"],
        "clamd_url": env.get("CLAMD_URL") or None,
        "queue": queue,
        "fast_csv": fast_csv_state(env),
        "storages": list(STORAGES) if args.storage == "both" else [args.storage],
        "csvault": {},
    }
    try:
        csv_main = ensure_csv(args.rows)
        csv_par = None if args.skip_parallel else ensure_csv(args.parallel_rows)
        csv_big = None if args.skip_big else ensure_csv(args.big_rows)
        if csv_big is not None:
            results["big_limits"] = check_limits(env, csv_big)
            log(results["big_limits"])
        results.update(
            file=str(csv_main.relative_to(ROOT)),
            file_bytes=csv_main.stat().st_size,
            file_mb=round(csv_main.stat().st_size / MB, 2),
        )

        ensure_database(ctx.db_url)
        with pg_connect(ctx.db_url) as conn:
            row = conn.execute("SELECT version()").fetchone()
            results["postgres_version"] = str(row[0]).split(" on ")[0] if row else "?"
        drop_scratch(ctx.db_url)  # leftovers of an interrupted run

        log("[ceiling] COPY of the CSV into a scratch table ...")
        results["ceiling"] = measure_ceiling(ctx.db_url, csv_main, args.rows)
        c = results["ceiling"]
        log(f"[ceiling] {c['rows_per_second']:,} rows/s ({c['seconds']:.2f} s, {c['method']})")

        log("migrating the bench database ...")
        manage(env, "migrate", "--noinput", "-v", "0")
        vacuum_rows(ctx.db_url)
        ctx.username = f"bench-{uuid.uuid4().hex[:10]}"
        out = manage(env, "createuser", ctx.username)
        ctx.token = out.strip().splitlines()[-1].strip()

        if "s3" in results["storages"]:
            start_moto(ctx, STARTUP_TIMEOUT)
            results["s3"] = {
                "endpoint": ctx.s3_endpoint,
                "bucket": ctx.s3_bucket,
                "storage_url": f"s3://{ctx.s3_bucket}/files",
                "server": "moto (python -m moto.server), objects in its memory",
                "log": str(LOGS / "moto.log"),
            }
        for n, storage in enumerate(results["storages"]):
            ctx.storage = storage
            start_services(ctx)
            if n == 0:  # issue 17's measurements, each --repeats times: first storage only
                results["csvault"][storage], results["main_runs"] = repeated(
                    ctx,
                    partial(main_one, ctx, csv_main, args.rows),
                    lambda run: run["upload_to_completed_seconds"],
                )
            else:
                results["csvault"][storage] = main_one(ctx, csv_main, args.rows, 0)
            if n == 0:  # the big file, the parallel run and the reference: first storage only
                # Right after the main file, on the same services, as one file alone: right
                # after the parallel run a 5M-row ingest took 16.8-19.4 s (three runs)
                # instead of 7.8-9.0 s (four). Each run starts from a settled disk (sync
                # and a checkpoint) with the datasets before it purged.
                if csv_big is not None:
                    results["big"], results["big_runs"] = repeated(
                        ctx,
                        partial(big_one, ctx, csv_big, args.big_rows),
                        lambda run: run["upload_to_completed_seconds"],
                    )
                if csv_par is not None:
                    results["parallel_storage"] = storage
                    pair, results["parallel_runs"] = repeated(
                        ctx,
                        partial(parallel_pair, ctx, csv_par, args.parallel_rows),
                        lambda run: run["over_share"],
                    )
                    results["parallel_single"] = pair["single"]
                    results["parallel"] = pair["pair"]
                if not args.skip_reference:
                    results["reference"] = orm_reference(
                        ctx, csv_main, min(args.reference_rows, args.rows)
                    )
            end_pass(ctx)
            if storage == "s3" and ctx.moto:
                ctx.moto.stop()
    finally:
        cleanup(ctx)
    results["load_end"] = list(os.getloadavg())
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return results


def main(argv: list[str]) -> int:
    if argv[:1] == ["orm-reference-child"]:
        orm_reference_child(argv[1], int(argv[2]), argv[3])
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        results = run(args)
    except BenchError as exc:
        for service in STARTED:
            lines = 50 if "worker" in service.name else 20
            print(service.tail(lines), file=sys.stderr)
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    text = render(results)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.txt").write_text(text + "\n")
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    print("\n" + text)
    print(f"\n(also in {OUT.relative_to(ROOT)}/results.txt and results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
