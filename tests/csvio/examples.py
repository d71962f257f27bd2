"""Hypothesis example counts for tests/csvio, scaled by CSVAULT_TEST_EXAMPLES (a whole
multiplier, default 1): scripts/c-sanitize.sh runs the property tests with many more
examples under the sanitizer build. An explicit ``max_examples`` overrides the profile's,
so the tests take theirs from here."""

from __future__ import annotations

import os

MULTIPLIER = int(os.environ.get("CSVAULT_TEST_EXAMPLES") or 1)
if MULTIPLIER < 1:
    raise ValueError(f"CSVAULT_TEST_EXAMPLES must be a whole number >= 1, not {MULTIPLIER}")


def examples(count: int) -> int:
    """``count`` examples, times CSVAULT_TEST_EXAMPLES."""
    return count * MULTIPLIER
