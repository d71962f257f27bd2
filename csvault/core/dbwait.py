"""Short reads that keep the CPU instead of yielding it, for the gevent web workers.

Under gevent a greenlet that waits on a socket goes to the back of the line: it runs
again only after every other ready greenlet of its process has run to its own next
wait. With a hundred requests in flight, each wait costs a round of all of them, so a
request that waits three times (Redis, then the database's answer in two reads) ends up
several times slower than one that waits once, although its own work is only a little
longer. ``make loadtest``'s read mix measured it: pages of rows 220 ms at the median
while progress polls took 46 ms.

:func:`without_yielding` makes the database waits inside it block the process instead
(psycopg's C wait, as without gevent): the query's few hundred microseconds are spent
waiting in place, and the request keeps its turn. Only for short, lock-free reads (an
indexed SELECT under MVCC never waits for a lock); anything that may wait long must
yield. :class:`Connection` is the pool's connection class (config/settings.py); the
connection must already be taken from the pool (a pool wait must yield).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import waiting

_BLOCKING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "csvault_db_blocking", default=False
)
_WAIT_C = getattr(waiting, "wait_c", None)  # psycopg's C wait (psycopg[binary] or [c])


class Connection(psycopg.Connection[Any]):
    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if _BLOCKING.get() and _WAIT_C is not None:
            return _WAIT_C(gen, self.pgconn.socket, interval, timeout)
        return super().wait(gen, interval, timeout)


@contextlib.contextmanager
def without_yielding() -> Iterator[None]:
    """Database waits in this block (this greenlet only) hold the process."""
    token = _BLOCKING.set(True)
    try:
        yield
    finally:
        _BLOCKING.reset(token)
