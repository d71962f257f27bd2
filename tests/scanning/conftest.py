"""Real clamd processes for the scanning tests (see scripts/clamd.sh)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Clamd, clamd_unavailable, free_port
from tests.scanning.samples import ROOT

SCRIPT = ROOT / "scripts" / "clamd.sh"


def start_clamd(directory: Path, **limits: str) -> tuple[Clamd, Callable[[], None]]:
    """Start clamd with ``scripts/clamd.sh`` in ``directory``; return it and its stopper."""
    env = {**os.environ, "CLAMD_DIR": str(directory), "CLAMD_PORT": str(free_port()), **limits}
    started = subprocess.run(
        [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    if started.returncode == 127:
        clamd_unavailable(f"clamd is not installed: {started.stderr.strip()}")
    if started.returncode != 0:
        pytest.fail(f"scripts/clamd.sh start failed:\n{started.stderr}", pytrace=False)
    values = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)

    def stop() -> None:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=30, check=True)

    return Clamd(values["CLAMD_URL"], values.get("CLAMD_UNIX_URL")), stop


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    """The clamd under test: CSVAULT_TEST_CLAMD_URL, or one started for this module."""
    url = os.environ.get("CSVAULT_TEST_CLAMD_URL")
    if url:
        yield Clamd(url)
        return
    server, stop = start_clamd(tmp_path_factory.mktemp("clamd"))
    try:
        yield server
    finally:
        stop()


@pytest.fixture(scope="module")
def small_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    """A clamd that refuses streams over 2 MiB and flags files over 1 MiB."""
    server, stop = start_clamd(
        tmp_path_factory.mktemp("clamd-small"),
        CLAMD_STREAM_MAX_LENGTH="2M",
        CLAMD_MAX_FILE_SIZE="1M",
    )
    try:
        yield server
    finally:
        stop()


@pytest.fixture(scope="module")
def script_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Clamd, Path]]:
    """A clamd with the configuration ``scripts/clamd.sh`` writes by default (the shared
    CSVAULT_TEST_CLAMD_URL one may be older), and the directory holding its clamd.conf."""
    directory = tmp_path_factory.mktemp("clamd-default")
    server, stop = start_clamd(directory)
    try:
        yield server, directory
    finally:
        stop()
