"""The ingest's writer thread: database jobs in order, beside the parsing thread."""

from __future__ import annotations

import contextvars
import queue
import sys
import threading
from collections.abc import Callable
from types import TracebackType

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

# While a writer runs, the GIL changes hands after CSVAULT_GIL_SWITCH_INTERVAL
# seconds (1 ms by default) instead of Python's default 5 ms. The writer thread
# needs the GIL back after every wait on the socket (a batch's COPY stream fills
# the socket buffer dozens of times); with the default interval each of those
# waits cost up to 5 ms of a busy parser, which made the writer, not PostgreSQL,
# the bottleneck.


class BackgroundWriter:
    """Runs database jobs in order on one thread that borrows the caller's connection.

    The ingest parses and encrypts batch N+1 (CPU, holding the GIL) while this
    thread writes batch N: psycopg releases the GIL while it waits for
    PostgreSQL, which does its share of the work on another core. At most
    ``depth`` jobs wait in the queue, so memory stays bounded whatever the
    file size.

    The thread uses the caller's own ``DatabaseWrapper`` (as Django's live
    server thread does), so a job sees exactly what the caller would: the same
    transaction state, and in tests the same test transaction. The caller must
    therefore not touch the database between ``__enter__`` and ``__exit__``;
    it only submits jobs. Jobs run one at a time, in submission order.

    The first job that raises stops the writer: later jobs are skipped, and the
    exception is raised in the caller by the next :meth:`submit` or by
    ``__exit__``. When the caller's block raises, jobs still queued are dropped,
    the running one is waited for, and the caller's exception propagates
    (unless a job failed first: that earlier failure is raised instead).
    """

    def __init__(self, *, depth: int = 1, using: str = DEFAULT_DB_ALIAS) -> None:
        if depth < 1:
            raise ValueError("depth must be positive")
        self._using = using
        self._connection = connections[using]
        self._jobs: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None
        self._switch_interval = sys.getswitchinterval()

    def __enter__(self) -> BackgroundWriter:
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(settings.CSVAULT_GIL_SWITCH_INTERVAL)
        self._connection.inc_thread_sharing()
        # In the caller's context: what the jobs and their on-commit hooks log carries the
        # task's and the dataset's ids (csvault.core.logs).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="csvault-writer", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        connections[self._using] = self._connection
        try:
            while (job := self._jobs.get()) is not None:
                if self._error is None and not self._cancelled:
                    try:
                        job()
                    except BaseException as exc:
                        self._error = exc
                del job  # don't hold a written batch while waiting for the next
        finally:
            del connections[self._using]

    def submit(self, job: Callable[[], object]) -> None:
        """Queue ``job`` (blocks while the queue is full); raise a failed job's error."""
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def _stop(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join()
        self._thread = None
        self._connection.dec_thread_sharing()
        sys.setswitchinterval(self._switch_interval)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._cancelled = True
            while True:  # drop what is queued, so that the stop marker fits
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    break
        self._stop()
        if self._error is not None and self._error is not exc:
            raise self._error
