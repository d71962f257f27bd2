"""The column profile, fed from a thread of its own while the ingest goes on.

:class:`csvault.csvio.profile.Profiler` releases the GIL while it reads grid blocks,
so on a second core it runs beside the C parser and the COPY instead of after them.
Work is handed over in order (one thread: the profile sees the rows in file order,
which its examples and ties depend on), and at most :data:`AHEAD` pieces wait, so
memory stays bounded if the profile falls behind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from csvault.csvio.profile import Profiler

AHEAD = 2


class BackgroundProfile:
    """Feed ``Profiler(width, decimal_comma=...)`` from a thread; use as a context manager."""

    def __init__(self, width: int, *, decimal_comma: bool) -> None:
        self._profiler = Profiler(width, decimal_comma=decimal_comma)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="csvault-profile")
        self._pending: deque[Future[None]] = deque()

    def feed_blocks(self, plaintexts: Sequence[bytes]) -> None:
        self._submit(self._profiler.feed_blocks, plaintexts)

    def feed_rows(self, rows: Sequence[Sequence[str]]) -> None:
        self._submit(self._profiler.feed_rows, rows)

    def result(self, columns: Sequence[str]) -> list[dict[str, object]]:
        """The profile once everything handed over is in (errors of the thread raise here)."""
        while self._pending:
            self._pending.popleft().result()
        return self._profiler.result(columns)

    def _submit(self, feed: Callable[[Any], None], piece: Any) -> None:
        while len(self._pending) >= AHEAD:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(feed, piece))

    def __enter__(self) -> BackgroundProfile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for pending in self._pending:
            pending.cancel()
        self._pool.shutdown(wait=True)
