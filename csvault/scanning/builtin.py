"""The built-in signature matcher: embedded mode's scanner when no clamd is configured.

It is deliberately minimal and says so (:attr:`SignatureScanner.minimal`): it knows only the
signatures in its directory, has no heuristics and does not look inside archives or
encoded content. It exists so that the embedded mode runs the same scan step as production
(and rejects the EICAR test file), not to replace ClamAV.

Supported, in ClamAV's own formats (so one signature directory serves both scanners):

- ``.ndb`` body signatures ``Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]`` with
  TargetType ``0`` or ``*``, Offset ``*`` (anywhere) or a decimal ``n`` (starting exactly
  at byte n), and a hex signature of plain bytes and ``??`` (any one byte), with at least
  one plain byte. Other features (``{n-m}``, ``*``, ``(a|b)``, nibble wildcards, ``[n-m]``,
  ``!``, anchors, other target types or offsets) are skipped with a logged warning.
- ``.hdb`` / ``.hsb`` hash signatures ``Hash:Size:Name[:MinFL]`` where Hash is an MD5,
  SHA-1 or SHA-256 of the whole file (told apart by length) and Size is a byte count or
  ``*`` (any size).

Any other ClamAV database file (``.ldb``, ``.cvd``...) is skipped with a warning; other
files are ignored.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from csvault.scanning.base import ScanResult, Settled
from csvault.scanning.chunks import rechunk

__all__ = ["BLOCK_SIZE", "DESCRIPTION", "SignatureScanner"]

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "built-in signature matcher (minimal: only the shipped signatures, no heuristics, no archives)"
)
_BODY_EXTENSIONS = {".ndb"}
_HASH_EXTENSIONS = {".hdb", ".hsb"}
# ClamAV databases this matcher cannot read: worth a warning, since their signatures are
# silently missing otherwise.
_UNSUPPORTED_EXTENSIONS = {
    ".cvd", ".cld", ".cud", ".ldb", ".ldu", ".ndu", ".hdu", ".hsu", ".mdb", ".mdu", ".msb",
    ".msu", ".db", ".fp", ".sfp", ".ign", ".ign2", ".idb", ".cdb", ".crb", ".cbc", ".pdb",
    ".gdb", ".wdb", ".ftm", ".yar", ".yara", ".pwdb", ".imp", ".info", ".cfg",
}  # fmt: skip
_HASH_NAMES = {32: "md5", 40: "sha1", 64: "sha256"}
_ANY_BYTE = "??"
_HEX_TOKENS = re.compile(r"[0-9a-f]{2}|\?\?")
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-f]+")
#: Bytes scanned at a time: input chunks of any size are joined or cut to this.
BLOCK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class _BodySignature:
    name: str
    length: int
    # Exactly one of these: plain bytes for bytes.find, or a pattern for ``??`` wildcards.
    literal: bytes | None
    pattern: re.Pattern[bytes] | None
    offset: int | None  # None: anywhere


@dataclass
class _Database:
    floating_literals: list[_BodySignature] = field(default_factory=list)
    floating_patterns: list[_BodySignature] = field(default_factory=list)
    anchored: list[_BodySignature] = field(default_factory=list)
    # algorithm -> {(hex digest, size or None) -> name}
    hashes: dict[str, dict[tuple[str, int | None], str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return (
            len(self.floating_literals)
            + len(self.floating_patterns)
            + len(self.anchored)
            + sum(len(table) for table in self.hashes.values())
        )


class SignatureScanner:
    """Minimal streaming matcher over ClamAV ``.ndb``/``.hdb``/``.hsb`` signatures.

    ``scan`` reads chunks of any size in constant memory: it keeps the last
    (longest floating signature - 1) bytes between blocks so matches across chunk
    boundaries are found, and the prefix that anchored signatures need. It stops at the
    first body match; hash signatures are checked at the end of the stream. It never
    raises ScannerUnavailable: its verdict is always definite.

    Raises ValueError at construction when the directory holds no usable signature, so a
    missing or empty database fails closed instead of passing everything.
    """

    name = "builtin"
    minimal = True
    decides_elsewhere = False
    description = DESCRIPTION

    def __init__(self, directory: Path, *, block_size: int = BLOCK_SIZE) -> None:
        if block_size < 1:
            raise ValueError("block_size must be positive")
        self.directory = Path(directory)
        self.block_size = block_size
        self._db = _load(self.directory)
        floating = self._db.floating_literals + self._db.floating_patterns
        self._tail_size = max((s.length for s in floating), default=1) - 1
        self._head_size = max(((s.offset or 0) + s.length for s in self._db.anchored), default=0)
        self.signature_count = len(self._db)

    def __repr__(self) -> str:
        return f"SignatureScanner({str(self.directory)!r}, signatures={self.signature_count})"

    def ping(self) -> None:
        """Always ready: the signatures were loaded (or rejected) at construction."""

    def start(self, chunks: Iterable[bytes]) -> Settled:
        """The verdict is known once the stream is read: this matcher runs in-process."""
        return Settled(self.scan(chunks))

    def scan(self, chunks: Iterable[bytes]) -> ScanResult:
        """Match the stream against the loaded signatures; the first match wins."""
        db = self._db
        hashers = {name: hashlib.new(name, usedforsecurity=False) for name in db.hashes}
        head = bytearray()
        anchored_checked = not db.anchored
        tail = b""
        size = 0
        for block in rechunk(chunks, self.block_size):
            size += len(block)
            for hasher in hashers.values():
                hasher.update(block)
            if not anchored_checked:
                head += block[: self._head_size - len(head)]
                if len(head) >= self._head_size:
                    anchored_checked = True
                    if found := _match_anchored(db.anchored, head):
                        return ScanResult.found(found)
            window = tail + block if tail else block
            if found := _match_floating(db, window):
                return ScanResult.found(found)
            if self._tail_size:
                tail = window[-self._tail_size :]

        if not anchored_checked and (found := _match_anchored(db.anchored, head)):
            return ScanResult.found(found)
        for algorithm, table in db.hashes.items():
            digest = hashers[algorithm].hexdigest()
            name = table.get((digest, size)) or table.get((digest, None))
            if name:
                return ScanResult.found(name)
        return ScanResult.ok()


def _match_floating(db: _Database, window: bytes) -> str | None:
    for signature in db.floating_literals:
        if signature.literal is not None and signature.literal in window:
            return signature.name
    for signature in db.floating_patterns:
        if signature.pattern is not None and signature.pattern.search(window):
            return signature.name
    return None


def _match_anchored(signatures: list[_BodySignature], head: bytes | bytearray) -> str | None:
    for signature in signatures:
        offset = signature.offset or 0
        if signature.literal is not None:
            if head[offset : offset + signature.length] == signature.literal:
                return signature.name
        elif signature.pattern is not None and signature.pattern.match(head, offset):
            return signature.name
    return None


# --- loading ----------------------------------------------------------------------------


def _load(directory: Path) -> _Database:
    if not directory.is_dir():
        raise ValueError(f"signature directory {directory} does not exist")
    db = _Database()
    for path in sorted(directory.iterdir()):
        suffix = path.suffix.lower()
        if suffix in _BODY_EXTENSIONS:
            _load_lines(path, db, _parse_body)
        elif suffix in _HASH_EXTENSIONS:
            _load_lines(path, db, _parse_hash)
        elif suffix in _UNSUPPORTED_EXTENSIONS:
            logger.warning("built-in matcher skips %s: format not supported", path.name)
    if not len(db):
        raise ValueError(
            f"no usable signatures in {directory} (need .ndb, .hdb or .hsb files); "
            "refusing to scan with an empty database"
        )
    logger.info("built-in matcher loaded %d signatures from %s", len(db), directory)
    return db


class _Unsupported(ValueError):
    pass


def _load_lines(path: Path, db: _Database, parse: Callable[[str, _Database], None]) -> None:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                parse(line, db)
            except _Unsupported as exc:
                logger.warning("%s:%d: signature skipped: %s", path.name, number, exc)


def _star_or_number(text: str, problem: str) -> int | None:
    """``*`` (any) as None, or a decimal number; anything else is unsupported."""
    if text == "*":
        return None
    if _DECIMAL.fullmatch(text):
        return int(text)
    raise _Unsupported(f"{problem} (only * or a number)")


def _parse_body(line: str, db: _Database) -> None:
    fields = line.split(":")
    if not 4 <= len(fields) <= 6:
        raise _Unsupported("expected Name:TargetType:Offset:HexSignature")
    name, target, offset_text, hex_text = fields[:4]
    if not name:
        raise _Unsupported("empty name")
    if target not in ("0", "*"):
        raise _Unsupported(f"{name}: target type {target} is not supported (only 0 or *)")
    offset = _star_or_number(offset_text, f"{name}: offset {offset_text!r} is not supported")
    hex_text = hex_text.lower()
    if len(hex_text) % 2 or "".join(_HEX_TOKENS.findall(hex_text)) != hex_text:
        raise _Unsupported(f"{name}: only plain hex bytes and ?? are supported in the signature")
    units = _HEX_TOKENS.findall(hex_text)
    if all(unit == _ANY_BYTE for unit in units):
        raise _Unsupported(f"{name}: a signature needs at least one fixed byte")
    if _ANY_BYTE not in units:
        literal = bytes.fromhex(hex_text)
        signature = _BodySignature(name, len(literal), literal, None, offset)
    else:
        regex = b"".join(
            b"." if unit == _ANY_BYTE else re.escape(bytes.fromhex(unit)) for unit in units
        )
        pattern = re.compile(regex, re.DOTALL)
        signature = _BodySignature(name, len(units), None, pattern, offset)
    if offset is not None:
        db.anchored.append(signature)
    elif signature.literal is not None:
        db.floating_literals.append(signature)
    else:
        db.floating_patterns.append(signature)


def _parse_hash(line: str, db: _Database) -> None:
    fields = line.split(":")
    if not 3 <= len(fields) <= 4:
        raise _Unsupported("expected Hash:Size:Name")
    digest, size_text, name = fields[0].lower(), fields[1], fields[2]
    algorithm = _HASH_NAMES.get(len(digest))
    if algorithm is None or not _HEX.fullmatch(digest):
        raise _Unsupported(f"{name}: not an MD5, SHA-1 or SHA-256 hex digest")
    size = _star_or_number(size_text, f"{name}: size {size_text!r} is not supported")
    if not name:
        raise _Unsupported("empty name")
    db.hashes.setdefault(algorithm, {})[(digest, size)] = name
