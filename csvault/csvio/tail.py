"""The end of a byte stream, kept as it goes by: blank lines at the end of a file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# Bytes kept: enough for a run of blank lines in any encoding (UTF-32: 4 per line end).
TAIL_BYTES = 1024


class Tail:
    """Count the bytes of the chunks that :meth:`watch` passes on, and keep the last
    :data:`TAIL_BYTES` of them."""

    def __init__(self) -> None:
        self.data = b""
        self.size = 0

    def watch(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.size += len(chunk)
            if len(chunk) >= TAIL_BYTES:
                self.data = bytes(chunk[-TAIL_BYTES:])
            else:
                self.data = (self.data + chunk)[-TAIL_BYTES:]
            yield chunk

    def blank_lines(self, encoding: str) -> int:
        """Blank lines after the last row (a run longer than the tail counts as its size)."""
        unit = 4 if encoding.startswith("utf-32") else 2 if encoding.startswith("utf-16") else 1
        data = self.data[len(self.data) % unit :]  # whole code units only
        text = data.decode(encoding, errors="replace")
        ends = text[len(text.rstrip("\r\n")) :]
        breaks = ends.count("\n") + ends.count("\r") - ends.count("\r\n")
        return max(0, breaks - 1)  # the first line end ends the last row

    def blank_line_warning(self, encoding: str) -> list[dict[str, object]]:
        """The ``blank_lines_at_end`` warning, when the file ends with blank lines."""
        count = self.blank_lines(encoding)
        if not count:
            return []
        return [
            {
                "code": "blank_lines_at_end",
                "message": f"The file ends with {count} blank line{'s' if count > 1 else ''}; "
                "skipped.",
            }
        ]
