"""File names a client sent or will receive, made safe to display and to send back.

Names are display-only in csvault (storage keys are UUIDs), but they still end up in
pages, logs and ``Content-Disposition`` headers.
"""

from __future__ import annotations

import unicodedata

# Control, format (bidi overrides), surrogate, private-use and unassigned characters.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def visible_name(name: str) -> str:
    """``name`` without hidden characters and without surrounding spaces and dots."""
    kept = "".join(ch for ch in name if unicodedata.category(ch) not in _HIDDEN_CATEGORIES)
    return kept.strip().strip(".").strip()


def upload_filename(name: str) -> str:
    """A display-only version of a client file name: no paths, controls or bidi tricks."""
    return visible_name(name.replace("\\", "/").rsplit("/", 1)[-1])[:200] or "upload.csv"
