"""The fast path reads a file of any size in bounded memory, C allocations included.

tracemalloc sees only Python's allocator, not the C parser's malloc, so the bound is
on the process's resident memory: each case streams a file through FastBlocks in a
fresh interpreter and reports how far its peak RSS (ru_maxrss) rose past the peak
after the first reads. A C buffer left unfreed after a call (the output, or the block
list) raises it by over 100 MiB in at least one of these cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from csvault.csvio import fastcsv
from csvault.csvio.fastcsv import FAST_AVAILABLE

pytestmark = [
    pytest.mark.skipif(not FAST_AVAILABLE, reason="C fast path not built"),
    # ASan keeps freed memory in quarantine: resident memory says nothing there.
    pytest.mark.skipif(
        bool(os.environ.get(fastcsv.MODULE_DIR_ENV)), reason="another build of the C parser"
    ),
]

STREAM = """
import json, resource, sys
from csvault.csvio.fastcsv import FastBlocks
from csvault.csvio.limits import CsvLimits

pad, row, total, step = (int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3]),
                        int(sys.argv[4]))
row = b"x" * pad + row

def chunks():
    yield b"a,b,c,d\\n"
    piece = row * max(1, 65536 // len(row))
    for _ in range(total // len(piece)):
        yield piece

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

reader = FastBlocks(chunks(), delimiter=",", width=4, limits=CsvLimits())
assert reader.skip_header(["a", "b", "c", "d"])
rows = 0
for _ in range(50):  # the first reads: buffers at their size
    rows += sum(reader.read(step)[1])
warm = peak_kib()
while (got := reader.read(step)) is not None and got[1]:
    rows += sum(got[1])
assert reader.finished and not reader.declined
print(json.dumps({"rows": rows, "rise_kib": peak_kib() - warm}))
"""

MIB = 1 << 20


@pytest.mark.parametrize(
    ("pad", "row", "total", "step"),
    [
        # Most rows in memory at a time: about 1 MiB of text per parse() call.
        pytest.param(
            0, '12345,abcdefgh,"quoted, ""value""",xyz\n', 256 * MIB, 100_000, id="1 MiB calls"
        ),
        # One row per parse() call: 300 000 calls, each with its own buffers.
        pytest.param(0, "1,2,3,4\n", 300_000 * 8, 1, id="one row per call"),
        # Rows of 1 MiB, within every limit: the buffer holds one or two of them.
        pytest.param(MIB - 7, ",1,2,3\n", 200 * MIB, 10, id="1 MiB rows"),
    ],
)
def test_the_fast_path_streams_in_bounded_resident_memory(pad, row, total, step) -> None:
    result = subprocess.run(
        [sys.executable, "-c", STREAM, str(pad), row, str(total), str(step)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    size = pad + len(row)
    piece = size * max(1, 65536 // size)
    assert report["rows"] == total // piece * (piece // size)
    print(f"{report['rows']} rows: peak RSS rose {report['rise_kib'] / 1024:.1f} MiB")
    assert report["rise_kib"] < 32 * 1024
