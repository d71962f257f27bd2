"""The format an ingest reads a file in: what the scan recorded, or detected from the
file's start (datasets scanned before the scan recorded it); and the hint for a ragged
row in a file another delimiter reads consistently."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.core.files import File

from csvault.core.storage import dataset_storage
from csvault.csvio.detect import (
    DELIMITER_NAMES,
    SAMPLE_BYTES,
    Detected,
    consistent_delimiter,
    decode_sample,
    detect,
)
from csvault.csvio.errors import CsvDataError
from csvault.csvio.sniff import bom_encoding
from csvault.datasets.models import Dataset


def file_format(dataset: Dataset, plaintext: Callable[[File], Iterator[bytes]]) -> Detected:
    """The encoding and delimiter the scan recorded. A dataset scanned before the scan
    recorded them is read as it was scanned: UTF-8, or UTF-16 after a byte order mark
    (the only encodings its scan saw as text)."""
    if dataset.encoding and dataset.delimiter:
        return Detected(
            dataset.encoding,
            dataset.encoding_detected,
            dataset.delimiter,
            dataset.delimiter_detected,
        )
    head, final = file_head(dataset, plaintext)
    bom = bom_encoding(head)
    encoding = dataset.encoding or (
        bom[0] if bom is not None and bom[0] in ("utf-8", "utf-16-le", "utf-16-be") else "utf-8"
    )
    return detect(head, final=final, encoding=encoding, delimiter=dataset.delimiter)


def file_head(dataset: Dataset, plaintext: Callable[[File], Iterator[bytes]]) -> tuple[bytes, bool]:
    """The first SAMPLE_BYTES of the file, and whether that is all of it."""
    head = bytearray()
    with dataset_storage().open(dataset.storage_key, "rb") as fh:
        for chunk in plaintext(fh):
            head += chunk
            if len(head) > SAMPLE_BYTES:
                return bytes(head[:SAMPLE_BYTES]), False
    return bytes(head), True


def with_delimiter_hint(
    exc: CsvDataError,
    dataset: Dataset,
    found: Detected,
    plaintext: Callable[[File], Iterator[bytes]],
) -> CsvDataError:
    """A ragged row in a file that another delimiter reads consistently: say so."""
    if exc.code != "ragged_row":
        return exc
    head, final = file_head(dataset, plaintext)
    other = consistent_delimiter(
        decode_sample(head, found.encoding), final=final, used=found.delimiter
    )
    if other is None:
        return exc
    name = DELIMITER_NAMES[other]
    value = "tab" if other == "\t" else other
    exc.message += (
        f" The file looks {name}-separated ({other!r}); upload it again with delimiter={value}."
    )
    return exc
