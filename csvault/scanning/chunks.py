"""Re-cutting a byte stream into pieces of a fixed size, whatever the caller's chunking."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["rechunk"]


def rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Yield the concatenation of ``chunks`` as pieces of exactly ``size`` bytes.

    The last piece may be shorter; no piece is empty. Memory stays within one piece plus
    the caller's current chunk, whether chunks are single bytes or the whole file.
    """
    if size < 1:
        raise ValueError("size must be positive")
    pending = bytearray()
    for chunk in chunks:
        if not pending and len(chunk) == size:
            yield bytes(chunk)  # no copy when chunk is already bytes
            continue
        view = memoryview(chunk)
        while view:
            take = size - len(pending)
            pending += view[:take]
            view = view[take:]
            if len(pending) == size:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)
