"""Deterministic tricky CSV content for tests: returns the bytes and the rows they hold."""

from __future__ import annotations

import csv
import io
import random

HEADER = ["id", "name", "note", "amount", "formula", "empty", "spaces", "text"]
MARKER = "ZQXJ-PLAINTEXT-MARKER"

_TRICKY = [
    "plain",
    "comma, inside",
    'doubled "quotes" here',
    "line\nbreak",
    "crlf\r\nbreak",
    "naïve café – 東京 – 🙂",
    "  leading and trailing  ",
    "",
    "=1+2",
    "@SUM(A1)",
    "-3",
    "+44 20",
    '"',
    ",",
    "\t",
]


def tricky_rows(n: int, seed: int = 7) -> list[list[str]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        rows.append(
            [
                str(i),
                f"{MARKER}-{i}" if i % 1000 == 1 else f"name {i}",
                rnd.choice(_TRICKY),
                f"{rnd.uniform(-1e6, 1e6):.2f}",
                rnd.choice(["=1+2", "@SUM(A1)", "-3", "+1", '=HYPERLINK("x")']),
                "",
                rnd.choice(["  a", "b  ", " c "]),
                rnd.choice(_TRICKY),
            ]
        )
    return rows


def to_csv(
    rows: list[list[str]],
    header: list[str] | None = HEADER,
    *,
    lineterminator: str = "\r\n",
    final_newline: bool = True,
) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=lineterminator)
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if not final_newline:
        text = text[: -len(lineterminator)]
    return text.encode("utf-8")
