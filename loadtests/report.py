"""Summary text and chart of a ``make loadtest`` run (reads loadtests/out/)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TARGET_AVG_MS = 20.0
TARGET_P99_MS = 100.0
KNEE_P95_MS = 200.0


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _text(path: Path) -> str:
    return path.read_text().strip() if path.is_file() else "?"


def _locust_totals(out: Path, phase: str) -> dict[str, float] | None:
    path = out / f"{phase}_stats.csv"
    if not path.is_file():
        return None
    with path.open() as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                return {
                    "requests": float(row["Request Count"]),
                    "failures": float(row["Failure Count"]),
                    "rps": float(row["Requests/s"]),
                }
    return None


def _failures(out: Path, phase: str) -> list[str]:
    path = out / f"{phase}_failures.csv"
    if not path.is_file():
        return []
    with path.open() as fh:
        return [
            f"  {r['Occurrences']} x {r['Method']} {r['Name']}: {r['Error'][:160]}"
            for r in csv.DictReader(fh)
        ]


def _died(out: Path, phase: str) -> list[str]:
    path = out / f"{phase}-died.txt"
    return [f"!! {line}" for line in path.read_text().splitlines()] if path.is_file() else []


def _row(name: str, s: dict[str, float]) -> str:
    return (
        f"{name:<42} {int(s['requests']):>8} {int(s['failures']):>5} {s['rps']:>8.1f} "
        f"{s['avg']:>7.1f} {s['p50']:>7.1f} {s['p95']:>7.1f} {s['p99']:>7.1f} {s['max']:>8.1f}"
    )


HEADER = (
    f"{'endpoint':<42} {'requests':>8} {'fails':>5} {'req/s':>8} "
    f"{'avg':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>8}   (ms)"
)


def _server_settings() -> str:
    """The web server as scripts/gunicorn.conf.py configures it from the same environment."""
    env = os.environ
    worker_class = env.get("WEB_WORKER_CLASS", "gevent")
    if worker_class == "gevent":
        pool = env.get("CSVAULT_DATABASE_POOL") or env.get("WEB_DATABASE_POOL", "16")
        each = f"{env.get('WEB_WORKER_CONNECTIONS', '1000')} connections and {pool} database "
        each += "connections (a pool) each"
    else:
        each = f"{env.get('WEB_THREADS', '4')} threads each; "
        each += f"CONN_MAX_AGE {env.get('DATABASE_CONN_MAX_AGE', '60')}"
    return (
        f"gunicorn {worker_class} x{env.get('WEB_CONCURRENCY', '2')} workers, {each}; "
        f"celery concurrency {env.get('CELERY_CONCURRENCY', '2')}"
    )


def _machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0))
    return f"{platform.node()}: nproc {nproc}, {cpu}, Python {platform.python_version()}"


def web_ms_per_request(out: Path, phase: str) -> float | None:
    """The web tier's CPU (gunicorn master + workers, /proc) over a phase, per request sent
    in it (Locust's count, spawn included): a mean; per-request CPU is not recorded."""
    start, end = _load(out / f"{phase}-cpu-start.json"), _load(out / f"{phase}-cpu-end.json")
    requests = (_locust_totals(out, phase) or {}).get("requests", 0)
    if not start or not end or not requests:
        return None
    return 1000 * (end["cpu"]["web"] - start["cpu"].get("web", 0.0)) / requests


def cpu_line(out: Path, phase: str, requests: float) -> str | None:
    """Server CPU per request and the machine's load during a phase (/proc accounting)."""
    start, end = _load(out / f"{phase}-cpu-start.json"), _load(out / f"{phase}-cpu-end.json")
    if not start or not end or not requests:
        return None
    used = {k: end["cpu"][k] - start["cpu"].get(k, 0.0) for k in end["cpu"]}
    wall = (end["machine_total"] - start["machine_total"]) / end["ncpu"]
    busy = end["machine_busy"] - start["machine_busy"]
    others = busy - sum(used.values())
    return (
        f"CPU over the phase ({wall:.0f} s): web {used.get('web', 0):.1f} s "
        f"= {1000 * used.get('web', 0) / requests:.1f} ms per request; "
        f"worker {used.get('worker', 0):.1f} s; machine busy {100 * busy / wall:.0f} % of one "
        f"core out of {end['ncpu'] * 100} % (Locust and other processes "
        f"{100 * others / wall:.0f} %)"
    )


def _locust_cpu(record: dict[str, Any], step: dict[str, Any]) -> str:
    whole = record.get("locust_process")
    if not whole or not whole["wall_seconds"]:
        return f"locust CPU (its own process): {step['locust_cpu'] or 0:.0f} %"
    return (
        f"locust CPU (its own process, whole run incl. spawn): {whole['cpu_seconds']:.1f} s in "
        f"{whole['wall_seconds']:.0f} s = {100 * whole['cpu_seconds'] / whole['wall_seconds']:.0f} "
        "% of one core"
    )


def steady_section(out: Path, phase: str, title: str, lines: list[str]) -> dict[str, Any] | None:
    record = _load(out / f"{phase}.json")
    if not record or not record["steps"]:
        return None
    step = record["steps"][0]
    totals = _locust_totals(out, phase) or {}
    lines += [
        "",
        f"== {title}: {step['users']} users, think {record['think']} s, "
        f"measured {step['seconds']:.0f} s after {record['warmup']:.0f} s warm-up ==",
        f"uptime at start: {_text(out / f'{phase}-uptime-start.txt')}",
        f"uptime at end:   {_text(out / f'{phase}-uptime-end.txt')}",
        _locust_cpu(record, step),
        HEADER,
    ]
    lines += [_row(name, s) for name, s in step["endpoints"].items()]
    lines.append(_row("ALL (measured window)", step["total"]))
    if totals:
        lines.append(
            f"whole run incl. spawn (Locust CSV): {int(totals['requests'])} requests, "
            f"{int(totals['failures'])} failures, {totals['rps']:.1f} req/s"
        )
    cpu = cpu_line(out, phase, totals.get("requests", 0))
    if cpu:
        lines.append(cpu)
    for status, flow in sorted(record["upload_flows"].items()):
        lines.append(
            f"upload -> {status}: {int(flow['requests'])} uploads, p50 {flow['p50']:.0f} ms, "
            f"p95 {flow['p95']:.0f} ms, max {flow['max']:.0f} ms (includes the 1 s poll interval)"
        )
    lines += _failures(out, phase)
    lines += _died(out, phase)
    return {"step": step, "totals": totals}


READ_TARGET_RPS = 1000.0
READ_TARGET_P99_MS = 250.0
READ_TARGET_CPU_MS = 1.0
ROWS_TARGET_CPU_MS = 3.0


def mix_median(per_kind: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """The median CPU of a mix whose kinds each cost their own mean: sort the kinds by
    cost and take the one at which the cumulated weight reaches half. None when a kind
    was not measured."""
    if not per_kind or any(ms is None for ms in per_kind.values()):
        return None
    half = sum(weights.values()) / 2
    seen = 0.0
    for tag, ms in sorted(per_kind.items(), key=lambda item: item[1] or 0.0):
        seen += weights[tag]
        if seen >= half:
            return ms
    return None


def markdown_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def read_targets(out: Path, mix: str, seed_rows: str, lines: list[str]) -> None:
    """Issue 17's table for the reads: the readmix phase (and its rows-only sub-phase)."""
    record = _load(out / "readmix.json")
    if not record or not record["steps"]:
        return
    step = record["steps"][0]
    total = step["total"]
    fails = int((_locust_totals(out, "readmix") or {}).get("failures", total["failures"]))
    page = os.environ.get("LOADTEST_PAGE_LIMIT", "100")
    names = {"rows": f"rows of {page}"}
    weights = " : ".join(
        f"{names.get(tag, tag)} {weight}"
        for tag, _, weight in (part.partition("=") for part in mix.split(","))
    )
    void = " (VOID: a server died)" if _died(out, "readmix") else ""
    rps_ok = total["rps"] >= READ_TARGET_RPS and total["p99"] <= READ_TARGET_P99_MS and not fails
    table = [
        (
            f"read mix, {step['users']} users no think time: req/s / p99",
            f"{total['rps']:,.0f} req/s / {total['p99']:,.0f} ms ({fails} failures){void}",
            f">= {READ_TARGET_RPS:,.0f} req/s, p99 <= {READ_TARGET_P99_MS:.0f} ms, no failures",
            _met(rps_ok and not void),
        )
    ]
    mix_ms = web_ms_per_request(out, "readmix")
    rows_ms = web_ms_per_request(out, "readmix-rows")
    kinds = [(tag, float(weight)) for tag, _, weight in (p.partition("=") for p in mix.split(","))]
    per_kind = {
        tag: rows_ms if tag == "rows" else web_ms_per_request(out, f"readmix-{tag}")
        for tag, _ in kinds
    }
    median = mix_median(per_kind, dict(kinds))
    if median is not None:
        each = ", ".join(f"{tag} {ms:.2f}" for tag, ms in per_kind.items() if ms is not None)
        table.append(
            (
                "web CPU per request (mix)",
                f"median {median:.2f} ms, mean {mix_ms or 0:.2f} ms ({each}){void}",
                f"<= {READ_TARGET_CPU_MS:.0f} ms median",
                _met(median <= READ_TARGET_CPU_MS and not void),
            )
        )
    elif mix_ms is not None:
        table.append(
            (
                "web CPU per request (mix)",
                f"{mix_ms:.2f} ms (mean over the phase; median not measured){void}",
                f"<= {READ_TARGET_CPU_MS:.0f} ms median",
                _met(mix_ms <= READ_TARGET_CPU_MS and not void),
            )
        )
    rows_void = " (VOID: a server died)" if _died(out, "readmix-rows") else ""
    table.append(
        (
            f"web CPU per {page}-row page",
            f"{rows_ms:.2f} ms (mean, rows-only sub-phase){rows_void}"
            if rows_ms is not None
            else "not measured (LOADTEST_READROWS_SECONDS=0)",
            f"<= {ROWS_TARGET_CPU_MS:.0f} ms",
            _met(rows_ms <= ROWS_TARGET_CPU_MS and not rows_void) if rows_ms is not None else "-",
        )
    )
    lines += [
        "",
        "== Issue 17 (speed, part two), reads: now vs target ==",
        *markdown_table(("what", "now (this run)", "target", "met?"), table),
        f"read mix: {weights} (Locust picks each request at random with these weights), on "
        f"the seeded accounts' {seed_rows}-row datasets; no uploads, no exports.",
        f"req/s and p99: every request of the readmix phase after its {record['warmup']:.0f} s "
        "warm-up, as Locust saw it, on the same machine: readmix " + _locust_cpu(record, step),
        "web CPU: user + system CPU of gunicorn's process tree from /proc over the whole phase, "
        "divided by every request Locust sent in it: a mean. The web tier does not record CPU "
        "per request; the median is that of the mix with each kind at its own mean, measured "
        "in a sub-phase of that kind alone (readmix-<kind>, the same users, no think time): "
        "the kinds sorted by CPU, the one where the mix's weights pass one half.",
        f"{page}-row page: the same from a sub-phase (readmix-rows) where the same users, still "
        f"with no think time, only read pages of {page} rows (following next).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="loadtests/out")
    parser.add_argument("--mode", default="?")
    parser.add_argument("--scanner", default="?")
    parser.add_argument("--cache", default="?")
    parser.add_argument("--nocache", default="?")
    parser.add_argument("--seed-rows", default="?")
    parser.add_argument("--accounts", default="?")
    parser.add_argument("--read-mix", default="progress=5,detail=2,rows=2,list=1")
    args = parser.parse_args()
    out = Path(args.out)

    lines = [
        "csvault load test",
        f"machine: {_machine()}",
        f"mode: {args.mode} (cache {args.cache}; scanner {args.scanner})",
        f"server: {_server_settings()}",
        f"data: {args.accounts} accounts, each with one completed {args.seed_rows}-row dataset; "
        "uploads of 200-row CSVs; Locust FastHttpUser on the same machine",
    ]

    steady = steady_section(out, "steady", "Phase 1: steady load, cache on", lines)
    if steady:
        total = steady["step"]["total"]
        fails = int(steady["totals"].get("failures", total["failures"]))
        checks = [
            (f"average <= {TARGET_AVG_MS:.0f} ms", total["avg"] <= TARGET_AVG_MS, total["avg"]),
            (f"p99 <= {TARGET_P99_MS:.0f} ms", total["p99"] <= TARGET_P99_MS, total["p99"]),
            ("zero failures", fails == 0, fails),
        ]
        lines.append(
            "targets: "
            + "; ".join(f"{n}: {'met' if ok else 'MISSED'} ({v:.1f})" for n, ok, v in checks)
        )

    ramp = _load(out / "ramp.json")
    knee: str = "no ramp run"
    if ramp and ramp["steps"]:
        lines += [
            "",
            f"== Phase 2: stepped ramp, think {ramp['think']} s, stats per step after "
            f"{ramp['warmup']:.0f} s warm-up ==",
            f"uptime at start: {_text(out / 'ramp-uptime-start.txt')}",
            f"uptime at end:   {_text(out / 'ramp-uptime-end.txt')}",
            f"{'users':>6} {'req/s':>8} {'requests':>9} {'fails':>6} {'avg':>7} {'p50':>7} "
            f"{'p95':>7} {'p99':>7} {'max':>8} {'locust cpu':>11}",
        ]
        previous = None
        knee = f"p95 stays under {KNEE_P95_MS:.0f} ms up to {ramp['steps'][-1]['users']} users"
        crossed = False
        for step in ramp["steps"]:
            t = step["total"]
            lines.append(
                f"{step['users']:>6} {t['rps']:>8.1f} {int(t['requests']):>9} "
                f"{int(t['failures']):>6} {t['avg']:>7.1f} {t['p50']:>7.1f} {t['p95']:>7.1f} "
                f"{t['p99']:>7.1f} {t['max']:>8.1f} {step['locust_cpu'] or 0:>10.0f}%"
            )
            failing = t["failures"] > 0.01 * max(t["requests"], 1)
            if not crossed and (t["p95"] > KNEE_P95_MS or failing):
                crossed = True
                why = f"{int(t['failures'])} failures" if failing else f"p95 {t['p95']:.0f} ms"
                knee = (
                    f"p95 crosses {KNEE_P95_MS:.0f} ms (or >1 % fail) between {previous} and "
                    f"{step['users']} users ({why} at {step['users']})"
                    if previous
                    else f"p95 over {KNEE_P95_MS:.0f} ms (or >1 % fail) already at "
                    f"{step['users']} users ({why})"
                )
            previous = step["users"]
        lines.append(knee)
        cpu = cpu_line(out, "ramp", (_locust_totals(out, "ramp") or {}).get("requests", 0))
        if cpu:
            lines.append(cpu)
        slowest = ramp["steps"][-1]["endpoints"]
        lines.append(f"per endpoint at {ramp['steps'][-1]['users']} users:")
        lines.append(HEADER)
        lines += [_row(name, s) for name, s in slowest.items()]
        lines += _failures(out, "ramp")
        lines += _died(out, "ramp")
        chart(ramp, out / "loadtest.png", knee)

    steady_section(out, "readmix", f"Phase 3: read mix {args.read_mix}, cache on", lines)
    steady_section(out, "readmix-rows", "Phase 3b: rows pages only, cache on", lines)
    for tag, _, _ in (part.partition("=") for part in args.read_mix.split(",")):
        if tag != "rows" and (out / f"readmix-{tag}.json").exists():
            steady_section(out, f"readmix-{tag}", f"Phase 3c: {tag} only, cache on", lines)
    steady_section(out, "nocache", f"Phase 1 again with the cache off ({args.nocache})", lines)

    lines += ["", "== database queries per request (PostgreSQL transactions / HTTP requests) =="]
    if args.mode != "production":
        lines.append("n/a in embedded mode (SQLite)")
    for phase, label in (("steady", "cache on"), ("nocache", "cache off")):
        db, totals = _load(out / f"{phase}-db.json"), _locust_totals(out, phase)
        if args.mode == "production" and db and totals and totals["requests"]:
            lines.append(
                f"{label:<10} {db['xacts'] / totals['requests']:.2f} per request "
                f"({db['xacts']} transactions / {int(totals['requests'])} requests; includes "
                "the worker's ingest of the uploads; autocommit: one per query or atomic block)"
            )
    read_targets(out, args.read_mix, args.seed_rows, lines)
    text = "\n".join(lines) + "\n"
    (out / "summary.txt").write_text(text)
    print(text)
    print(f"reports: {out}/summary.txt, {out}/loadtest.png, {out}/*.html, {out}/*_stats*.csv")


def chart(ramp: dict[str, Any], path: Path, knee: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [s["users"] for s in ramp["steps"]]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"), ("avg", "x--")):
        ax.plot(users, [s["total"][key] for s in ramp["steps"]], style, label=f"{key} latency")
    ax.axhline(KNEE_P95_MS, color="grey", linestyle=":", label=f"{KNEE_P95_MS:.0f} ms")
    ax.set_xlabel(f"concurrent users (think time {ramp['think']} s)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    right = ax.twinx()
    right.plot(users, [s["total"]["rps"] for s in ramp["steps"]], "k*-", label="requests/s")
    right.set_ylabel("requests/s")
    right.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left")
    ax.set_title(re.sub(r"\s+", " ", f"csvault stepped ramp: {knee}"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
