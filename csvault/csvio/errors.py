"""The one error type of the CSV layer, and the internal one that feeds it."""

from __future__ import annotations

from typing import Any


class CsvDataError(Exception):
    """The file is not acceptable CSV; says what is wrong and where.

    ``code`` is machine-readable; ``message`` is a sentence a person can act
    on. ``row``, ``column``, ``line`` and ``offset`` locate the problem as far
    as it is known (csvault/csvio/reader.py explains their numbering) and are
    ``None`` otherwise.
    """

    def __init__(
        self,
        code: str,
        message: str,
        row: int | None = None,
        column: int | None = None,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.row = row
        self.column = column
        self.line = line
        self.offset = offset

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickling replays ``self.args`` (the message only); keep every field.
        return (
            type(self),
            (self.code, self.message, self.row, self.column, self.line, self.offset),
        )

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        """All six fields, ``None`` included, for storing or returning as JSON."""
        return {
            "code": self.code,
            "message": self.message,
            "row": self.row,
            "column": self.column,
            "line": self.line,
            "offset": self.offset,
        }


class SourceError(Exception):
    """A byte- or line-level problem, raised inside the feed of ``csv.reader``.

    It travels through the C reader (which passes on exceptions from its input)
    to the row loop, which knows the row number and turns it into a
    :class:`CsvDataError`.
    """

    def __init__(
        self, code: str, line: int, offset: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(code)
        self.code, self.line, self.offset, self.column = code, line, offset, column
