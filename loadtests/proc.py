"""CPU accounting for scripts/loadtest.sh (Linux /proc).

``proc.py snapshot NAME=PID...`` prints JSON: the CPU seconds used so far by
each PID with all its descendants (under NAME), and the whole machine's busy and total CPU
seconds (``/proc/stat``). Two snapshots around a phase give the server's CPU
cost per request and how much of the machine others were using meanwhile.

``proc.py settle NAME=PID...`` waits (at most 60 s) until those trees together use
under 5 % of a core over one second: the work an earlier phase left queued (uploads
still ingesting) must not be counted against the next phase's requests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command: state ppid ... utime(12) stime(13) (0-based from state)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(root: int) -> float:
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p)))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def machine() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, already counted in user
    return (total - idle) / TICK, total / TICK


def settle(roots: list[int], quiet: float = 0.05, timeout: float = 60.0) -> float:
    """Seconds waited until ``roots`` used under ``quiet`` of a core over one second."""
    started = time.monotonic()
    before = sum(tree_cpu(pid) for pid in roots)
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = sum(tree_cpu(pid) for pid in roots)
        if now - before < quiet:
            break
        before = now
    return time.monotonic() - started


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "settle":
        waited = settle([int(arg.split("=", 1)[1]) for arg in sys.argv[2:]])
        print(f"settled after {waited:.0f} s")
        raise SystemExit(0)
    if len(sys.argv) < 2 or sys.argv[1] != "snapshot":
        raise SystemExit(__doc__)
    busy, total = machine()
    print(
        json.dumps(
            {
                "cpu": {
                    name: tree_cpu(int(pid))
                    for name, pid in (arg.split("=", 1) for arg in sys.argv[2:])
                },
                "machine_busy": busy,
                "machine_total": total,
                "ncpu": os.cpu_count(),
            }
        )
    )
