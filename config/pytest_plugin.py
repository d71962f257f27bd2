"""pytest plugin (``-p config.pytest_plugin``, pyproject.toml): prepare the data dir.

pytest-django imports the settings while pytest loads the initial conftests, before
any conftest.py runs; this hook wraps that step, so it runs first.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from config import bootstrap


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests() -> Generator[None, None, None]:
    bootstrap.prepare()
    return (yield)
