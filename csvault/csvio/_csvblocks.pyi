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
