"""Is this a text file, and in which Unicode encoding? Judged from the first bytes.

One place for the checks that the upload (before storing a file) and the reader (before
parsing it) both need: binary formats by their magic numbers, byte order marks, UTF-16
without one, and NUL bytes.
"""

from __future__ import annotations

import codecs

# Bytes looked at to tell UTF-16 without a byte order mark from other text.
UTF16_SNIFF_BYTES = 64

# Magic numbers of common binary formats, checked whatever the name or declared type: a
# PDF or a ZIP can start with pages of NUL-free bytes. Only prefixes no CSV file starts with.
BINARY_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF87a": "a GIF image",
    b"GIF89a": "a GIF image",
    b"%PDF-": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (or an Excel/Office file)",
    b"PK\x05\x06": "a ZIP archive",
    b"PK\x07\x08": "a ZIP archive",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an old Excel/Office file",
    b"\x1f\x8b": "a gzip archive",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!\x1a\x07": "a RAR archive",
    b"\xfd7zXZ\x00": "an xz archive",
    b"\x7fELF": "an ELF executable",
    b"\xcf\xfa\xed\xfe": "a Mach-O executable",
    b"\xca\xfe\xba\xbe": "a Mach-O or Java class file",
}

UTF16_WITHOUT_BOM = (
    "The file looks like UTF-16 text without a byte order mark. "
    "Save it as UTF-8 (or UTF-16 with a byte order mark) and upload it again."
)

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose mark starts it
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def bom_encoding(head: bytes) -> tuple[str, int] | None:
    """``(encoding, length of the byte order mark)`` if ``head`` starts with one."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    return None


def looks_like_utf16(head: bytes) -> bool:
    """True when NULs sit in every other byte, as in BOM-less UTF-16 text."""
    sample = head[:UTF16_SNIFF_BYTES]
    pairs = len(sample) // 2
    if not pairs or b"\0" not in sample:
        return False
    little = sum(1 for i in range(0, 2 * pairs, 2) if sample[i] and not sample[i + 1])
    big = sum(1 for i in range(0, 2 * pairs, 2) if not sample[i] and sample[i + 1])
    return 2 * max(little, big) >= pairs


def not_text_reason(head: bytes) -> str | None:
    """Why a file starting with ``head`` is not a CSV text file, or None if it may be one."""
    for magic, kind in BINARY_MAGIC.items():
        if head.startswith(magic):
            return f"The file is not a CSV text file: it looks like {kind}."
    # Text files have no NUL byte; UTF-16 and UTF-32 text (csvault.csvio.detect tells
    # them by a byte order mark or the pattern of their NULs) are the exception.
    if (
        b"\0" in head
        and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        and not looks_like_utf16(head)
        and utf32_order(head) is None
    ):
        return "The file is not a CSV text file (it contains binary data)."
    return None


def utf32_order(head: bytes) -> str | None:
    """``"le"`` or ``"be"`` when three NULs go with every other byte in the order of
    UTF-32 text (in at least half of the first 1,024 characters); None otherwise."""
    sample = head[: min(len(head), 4096) // 4 * 4]
    quads = [sample[i : i + 4] for i in range(0, len(sample), 4)]
    if not quads:
        return None
    little = sum(1 for q in quads if q[0] and not any(q[1:]))
    big = sum(1 for q in quads if q[3] and not any(q[:3]))
    if 2 * max(little, big) < len(quads):
        return None
    return "le" if little >= big else "be"
