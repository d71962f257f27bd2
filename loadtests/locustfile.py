"""Locust load test of the csvault API (run by ``make loadtest``; README.md, "Load test").

Each simulated user is a client with an API token (shared round-robin among the
accounts listed in ``LOADTEST_ACCOUNTS``, each seeded with one completed
dataset). It mostly polls and reads, sometimes uploads (task weights, of 80):

- 30: poll the progress of one of its datasets (a dashboard watching a job),
- 20: read one page of rows of a completed dataset; the next time it follows
  the ``next`` link (a reader paging on),
- 15: fetch one dataset's detail; 10: list its datasets,
- 3: export a completed dataset as CSV,
- 2: upload a small CSV, then poll its progress every think time until a final
  status (the end-to-end "upload to completed" time is recorded too).

Requests are named by route (``/api/datasets/[id]/progress/``) so the stats
group per endpoint. The think time is ``LOADTEST_THINK`` seconds (default 1):
every user starts at most one task per think time, paced from a random first
start (Locust's own pacing would fire every user of a spawn batch at once;
``LOADTEST_LOCKSTEP=1`` restores it).

``LOADTEST_MIX`` replaces those weights with a mix of reads by tag, e.g.
``progress=5,detail=2,rows=2,list=1`` (the ``readmix`` phase of
``scripts/loadtest.sh``, with ``LOADTEST_THINK=0``: no think time) or ``rows=1``.

``LOADTEST_SHAPE=ramp`` adds a stepped ramp (``LOADTEST_STEPS``, users per step,
``LOADTEST_STEP_SECONDS`` each). With ``LOADTEST_RECORD=path.json`` every
response is bucketed per phase/step (after ``LOADTEST_WARMUP`` seconds of each
step) and exact percentiles per step and endpoint are written there at the end;
``loadtests/report.py`` turns them into the summary and the chart.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import gevent
from csvgen import multipart, small_csv
from locust import LoadTestShape, constant_throughput, events, tag, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

THINK = float(os.environ.get("LOADTEST_THINK", "1"))
PAGE_LIMIT = int(os.environ.get("LOADTEST_PAGE_LIMIT", "100"))
UPLOAD_ROWS = int(os.environ.get("LOADTEST_UPLOAD_ROWS", "200"))
UPLOAD_TIMEOUT = float(os.environ.get("LOADTEST_UPLOAD_TIMEOUT", "120"))
WARMUP = float(os.environ.get("LOADTEST_WARMUP", "5"))
FINAL = {"completed", "failed", "rejected", "cancelled"}


def _load_accounts() -> list[dict[str, Any]]:
    path = os.environ.get("LOADTEST_ACCOUNTS", "loadtests/out/accounts.json")
    accounts: list[dict[str, Any]] = json.loads(Path(path).read_text())
    if not accounts:
        raise SystemExit(f"{path}: no accounts")
    return accounts


_ACCOUNTS: list[dict[str, Any]] | None = None
_NEXT_ACCOUNT = itertools.count()


def _next_account() -> dict[str, Any]:
    global _ACCOUNTS
    if _ACCOUNTS is None:
        _ACCOUNTS = _load_accounts()
    return _ACCOUNTS[next(_NEXT_ACCOUNT) % len(_ACCOUNTS)]


LOCKSTEP = os.environ.get("LOADTEST_LOCKSTEP") == "1"


def _paced(user: ApiClient) -> float:
    """One task per think time, counted from the user's own first task."""
    now = time.perf_counter()
    user.next_start = max(user.next_start + THINK, now)
    return user.next_start - now


class ApiClient(FastHttpUser):
    """A csvault API client: mostly polling and reading, some uploads."""

    wait_time = constant_throughput(1 / THINK) if LOCKSTEP else _paced
    # Keep connections like a real HTTP client (sync gunicorn workers close them).
    connection_timeout = 30.0
    network_timeout = 60.0

    def on_start(self) -> None:
        account = _next_account()
        self.headers = {"Authorization": f"Token {account['token']}"}
        self.completed: list[str] = list(account["datasets"])
        self.rows_next: str | None = None
        # Locust starts the users of one spawn second at the same instant, and its
        # constant_throughput paces each user from the moment it was created, so all
        # users would fire in lock-step: 100 requests at once every second, which
        # measures that burst (p50 ~100 ms with the server 80 % idle), not the service;
        # real clients do not synchronise to the millisecond. Each user therefore
        # starts at a random point of its first think time and is paced from there
        # (``_paced``). LOADTEST_LOCKSTEP=1 keeps Locust's lock-step, for comparison.
        if not LOCKSTEP:
            gevent.sleep(random.uniform(0, THINK))
        self.next_start = time.perf_counter()

    # --- reads ----------------------------------------------------------------

    @tag("progress")
    @task(30)
    def poll_progress(self) -> None:
        self.client.get(
            f"/api/datasets/{random.choice(self.completed)}/progress/",
            headers=self.headers,
            name="/api/datasets/[id]/progress/",
        )

    @tag("rows")
    @task(20)
    def page_rows(self) -> None:
        """One page per task; the next task follows ``next`` (a reader paging on)."""
        url = self.rows_next or (
            f"/api/datasets/{random.choice(self.completed)}/rows/?after=0&limit={PAGE_LIMIT}"
        )
        with self.client.get(
            url, headers=self.headers, name="/api/datasets/[id]/rows/", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                self.rows_next = None
                return
            body = resp.json()
            if not body.get("results"):
                resp.failure("empty page")
            self.rows_next = body.get("next")

    @tag("list")
    @task(10)
    def list_datasets(self) -> None:
        self.client.get("/api/datasets/", headers=self.headers, name="/api/datasets/")

    @tag("detail")
    @task(15)
    def detail(self) -> None:
        self.client.get(
            f"/api/datasets/{random.choice(self.completed)}/",
            headers=self.headers,
            name="/api/datasets/[id]/",
        )

    @tag("export")
    @task(3)
    def export_csv(self) -> None:
        self.client.get(
            f"/api/datasets/{random.choice(self.completed)}/export/?format=csv",
            headers=self.headers,
            name="/api/datasets/[id]/export/?format=csv",
        )

    # --- upload, then watch it ---------------------------------------------------

    @tag("upload")
    @task(2)
    def upload_and_watch(self) -> None:
        body, content_type = multipart({"name": "load test"}, "load.csv", small_csv(UPLOAD_ROWS))
        started = time.monotonic()
        with self.client.post(
            "/api/datasets/",
            data=cast(Any, body),  # bytes are sent as they are
            headers={**self.headers, "Content-Type": content_type},
            name="/api/datasets/ (upload)",
            catch_response=True,
        ) as resp:
            if resp.status_code != 201:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            dataset_id = resp.json()["id"]
        status = "pending"
        while time.monotonic() - started < UPLOAD_TIMEOUT:
            gevent.sleep(THINK)
            with self.client.get(
                f"/api/datasets/{dataset_id}/progress/",
                headers=self.headers,
                name="/api/datasets/[id]/progress/",
                catch_response=True,
            ) as resp:
                if resp.status_code != 200:
                    resp.failure(f"HTTP {resp.status_code}")
                    return
                status = resp.json()["status"]
            if status in FINAL:
                break
        RECORDER.flow(status, (time.monotonic() - started) * 1000)
        if status == "completed":
            self.completed.append(dataset_id)
        else:
            events.request.fire(
                request_type="FLOW",
                name="upload ended " + status,
                response_time=(time.monotonic() - started) * 1000,
                response_length=0,
                exception=RuntimeError(f"upload {dataset_id} ended {status}"),
                context={},
            )


# --- a mix of reads instead of the weights above (LOADTEST_MIX) -----------------------

MIX_TASKS = {
    "progress": ApiClient.poll_progress,
    "rows": ApiClient.page_rows,
    "detail": ApiClient.detail,
    "list": ApiClient.list_datasets,
    "export": ApiClient.export_csv,
    "upload": ApiClient.upload_and_watch,
}


def parse_mix(text: str) -> list[Any]:
    """``progress=5,rows=2`` -> each task as many times as its weight (Locust picks at random)."""
    tasks: list[Any] = []
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if name not in MIX_TASKS or not weight.isdigit():
            raise SystemExit(f"LOADTEST_MIX: {part!r} is not TAG=WEIGHT, TAG in {list(MIX_TASKS)}")
        tasks += [MIX_TASKS[name]] * int(weight)
    if not tasks:
        raise SystemExit("LOADTEST_MIX: no task has a weight")
    return tasks


if os.environ.get("LOADTEST_MIX"):
    # Locust turns the @task weights into this list when the class is made; replacing it
    # afterwards is how a weight changes without a second User class (which every other
    # phase would then run too).
    ApiClient.tasks = parse_mix(os.environ["LOADTEST_MIX"])


# --- exact per-step statistics -----------------------------------------------------


def _pct(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_ms:
        return 0.0
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


def _summary(samples: list[float], failures: int, seconds: float) -> dict[str, float]:
    s = sorted(samples)
    return {
        "requests": len(s),
        "failures": failures,
        "rps": len(s) / seconds if seconds else 0.0,
        "avg": sum(s) / len(s) if s else 0.0,
        "p50": _pct(s, 50),
        "p95": _pct(s, 95),
        "p99": _pct(s, 99),
        "max": s[-1] if s else 0.0,
    }


class Recorder:
    """Response times per (step, endpoint), kept only after each step's warm-up."""

    def __init__(self) -> None:
        self.step = 0
        self.users = 0
        self.step_started = time.monotonic()
        self.windows: dict[int, list[float]] = {}
        self.samples: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.failures: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.cpu: dict[int, list[float]] = defaultdict(list)
        self.flows: dict[str, list[float]] = defaultdict(list)
        self.user_counts: dict[int, int] = {}
        # Locust's own CPU over the whole run: its sampled value (psutil every 10 s, the
        # first one 0) says nothing in a short phase.
        self.process_started = (time.process_time(), time.monotonic())

    def start_step(self, step: int, users: int) -> None:
        self.step, self.users = step, users
        self.step_started = time.monotonic()
        self.user_counts[step] = users

    def measuring(self) -> bool:
        return time.monotonic() - self.step_started >= WARMUP

    def request(self, name: str, response_time: float, failed: bool) -> None:
        if not self.measuring():
            return
        now = time.monotonic()
        window = self.windows.setdefault(self.step, [now, now])
        window[1] = now
        self.samples[self.step][name].append(response_time)
        if failed:
            self.failures[self.step][name] += 1

    def flow(self, status: str, ms: float) -> None:
        self.flows[status].append(ms)

    def result(self) -> dict[str, Any]:
        steps = []
        for step in sorted(self.samples):
            start, end = self.windows[step]
            seconds = max(end - start, 1e-9)
            per_name = {
                name: _summary(times, self.failures[step][name], seconds)
                for name, times in sorted(self.samples[step].items())
            }
            every = [t for times in self.samples[step].values() for t in times]
            total = _summary(every, sum(self.failures[step].values()), seconds)
            cpu = self.cpu[step]
            steps.append(
                {
                    "step": step,
                    "users": self.user_counts.get(step, 0),
                    "seconds": seconds,
                    "locust_cpu": sum(cpu) / len(cpu) if cpu else None,
                    "total": total,
                    "endpoints": per_name,
                }
            )
        flows = {status: _summary(ms, 0, 1) for status, ms in self.flows.items()}
        cpu0, wall0 = self.process_started
        return {
            "think": THINK,
            "warmup": WARMUP,
            "steps": steps,
            "upload_flows": flows,
            "locust_process": {
                "cpu_seconds": time.process_time() - cpu0,
                "wall_seconds": time.monotonic() - wall0,
            },
        }


RECORDER = Recorder()


@events.request.add_listener
def _on_request(
    request_type: str, name: str, response_time: float, exception: Any, **_: Any
) -> None:
    if request_type != "FLOW":
        RECORDER.request(name, response_time, exception is not None)


@events.test_start.add_listener
def _on_start(environment: Environment, **_: Any) -> None:
    RECORDER.process_started = (time.process_time(), time.monotonic())
    if environment.shape_class is None:
        options = environment.parsed_options
        RECORDER.start_step(0, int(options.num_users or 0) if options else 0)

    def sample_cpu() -> None:
        while True:
            gevent.sleep(2)
            if environment.runner is not None and RECORDER.measuring():
                RECORDER.cpu[RECORDER.step].append(environment.runner.current_cpu_usage)

    gevent.spawn(sample_cpu)


@events.quitting.add_listener
def _on_quit(environment: Environment, **_: Any) -> None:
    path = os.environ.get("LOADTEST_RECORD")
    if path:
        Path(path).write_text(json.dumps(RECORDER.result(), indent=1))


if os.environ.get("LOADTEST_SHAPE") == "ramp":
    STEPS = [int(n) for n in os.environ.get("LOADTEST_STEPS", "50,100,200,400,700,1000").split(",")]
    STEP_SECONDS = float(os.environ.get("LOADTEST_STEP_SECONDS", "25"))

    class SteppedRamp(LoadTestShape):
        """Hold each user count for STEP_SECONDS; stats per step go to the recorder."""

        current = -1

        def tick(self) -> tuple[int, float] | None:
            index = int(self.get_run_time() // STEP_SECONDS)
            if index >= len(STEPS):
                return None
            if index != self.current:
                self.current = index
                RECORDER.start_step(index, STEPS[index])
            previous = STEPS[index - 1] if index else 0
            # Reach the step's user count within about two seconds.
            return STEPS[index], max(50.0, (STEPS[index] - previous) / 2)
