from collections.abc import Sequence
from typing import Any

GRID_FORMAT: int
GRID_HEADER_SIZE: int

def parse(
    buf: bytes,
    pos: int,
    final: bool,
    delimiter: int,
    width: int,
    max_field: int,
    max_row: int,
    max_rows: int,
    block_rows: int,
    block_bytes: int,
    /,
) -> tuple[list[bytes], list[int], int, int, int]: ...

class Profile:
    """Per-column profile accumulated in C (csvault/csvio/_profile.c)."""

    rows: int
    width: int
    bound: int
    def __init__(self, width: int, decimal_comma: bool) -> None: ...
    def feed_blocks(self, blocks: list[bytes], start: int = 0, /) -> int: ...
    def feed_rows(self, rows: Sequence[Sequence[str]], /) -> None: ...
    def state(self) -> list[tuple[Any, ...]]: ...
