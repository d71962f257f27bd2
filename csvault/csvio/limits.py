"""Bounds that keep a hostile or broken file from exhausting the worker, and the
delimiter rule (one place for the upload form, the API and the readers)."""

from __future__ import annotations

from dataclasses import dataclass

from csvault.csvio.errors import CsvDataError


@dataclass(frozen=True)
class CsvLimits:
    """Upper bounds that keep a hostile or broken file from exhausting the worker.

    ``max_field_bytes`` is applied as :func:`csv.field_size_limit`, which counts
    characters. ``max_line_chars`` bounds one physical line (the reader holds at
    most one line, plus one chunk, in memory); it should stay well above
    ``max_field_bytes``, or long single-line values are reported as
    ``line_too_long`` rather than ``field_too_large``.
    """

    max_columns: int = 1000
    max_field_bytes: int = 1_048_576
    max_rows: int = 100_000_000
    max_line_chars: int = 16 * 1_048_576


DEFAULT_LIMITS = CsvLimits()

# A delimiter may be any single character but these: the quote and the line ends
# would make the file ambiguous, and NUL is never accepted in a file.
FORBIDDEN_DELIMITERS = frozenset('"\r\n\0')


def check_delimiter(delimiter: object) -> None:
    """Raise ``CsvDataError("invalid_delimiter")`` unless ``delimiter`` is a usable one."""
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in FORBIDDEN_DELIMITERS:
        raise CsvDataError(
            "invalid_delimiter",
            "The delimiter must be a single character other than a double quote, "
            f"CR, LF or NUL; got {delimiter!r}.",
        )
