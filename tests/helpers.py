"""Helpers shared by the tests (fixtures live in conftest.py; plain functions live here)."""

from __future__ import annotations

from csvault.csvio.reader import CsvStream


def all_rows(stream: CsvStream, step: int = 4096) -> list[list[str]]:
    """Every data row of an open CSV stream, read ``step`` rows at a time."""
    rows: list[list[str]] = []
    while batch := stream.read_rows(step):
        rows.extend(batch)
    return rows
