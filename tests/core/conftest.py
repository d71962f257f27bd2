from __future__ import annotations

from typing import Any

import pytest

from tests.core.promtext import METRICS_TOKEN


@pytest.fixture(autouse=True)
def metrics_token(settings: Any) -> None:
    """/metrics behind a token, as production should run it; promtext.scrape sends it."""
    settings.CSVAULT_METRICS_TOKEN = METRICS_TOKEN
