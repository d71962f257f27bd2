"""Any supported encoding to UTF-8, as the bytes stream: what the C fast path reads.

The fast path (fastcsv.py) parses UTF-8 only. For a file in another encoding the
ingest hands it :class:`Utf8Chunks`, which decodes incrementally and re-encodes as
it goes (constant memory). A UTF-8 file is read as it is, with no copy. Bytes that
do not decode end the stream with :class:`Undecodable` after the text before them;
the fast path then declines, and the reference reader (which decodes the raw bytes
itself) reports the exact row, line and byte offset.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

__all__ = ["Undecodable", "Utf8Chunks"]

_BOM = "\ufeff"


class Undecodable(Exception):
    """The raw bytes do not decode in the file's encoding (the reference reader says where)."""


class Utf8Chunks:
    """Iterate the UTF-8 encoding of a file given as raw chunks in ``encoding``."""

    def __init__(self, chunks: Iterable[bytes], encoding: str, *, errors: str = "strict") -> None:
        self._chunks = chunks
        self._encoding = encoding
        self._errors = errors  # "replace" for the malware scan, which must see every byte

    def __iter__(self) -> Iterator[bytes]:
        decoder = codecs.getincrementaldecoder(self._encoding)(self._errors)
        # Unicode encodings start with an optional byte order mark, dropped as the
        # reference reader drops it; single-byte ones have none.
        at_start = self._encoding.startswith("utf-")
        for chunk in self._chunks:
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError:
                raise Undecodable from None
            if at_start and text:
                at_start = False
                if text.startswith(_BOM):
                    text = text[1:]
            if text:
                yield text.encode("utf-8")
        try:
            text = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise Undecodable from None
        if text:
            yield text.encode("utf-8")
