"""The scan's verdict as an ingest that runs before it sees it (scan.py, ingest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CleanVerdict:
    """A clean scan verdict to record: ``fields`` go into the UPDATE of the batch that
    carries it, ``record`` (the audit event) runs in that batch's transaction."""

    fields: dict[str, Any]
    record: Callable[[], object]


class Verdict(Protocol):
    """The scan's verdict on a file that the ingest reads while the scanner decides.

    Both methods return the clean verdict (to record with a batch) until a transaction
    that recorded it commits, then an empty one; they raise when the verdict is not
    clean or cannot be had: whoever passed the verdict in settles that (scan.py).
    """

    def poll(self) -> CleanVerdict | None:
        """The clean verdict if it came; None while the scanner still works."""
        ...

    def wait(self, heartbeat: Callable[[], None]) -> CleanVerdict:
        """Wait for the verdict, calling ``heartbeat`` every few seconds meanwhile."""
        ...
