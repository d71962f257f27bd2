"""The limits ``scripts/clamd.sh`` gives clamd, against real clamd processes: what a
hostile file costs the scanner, and that every limit a file hits ends in a finding (the
file is rejected) or in no verdict (the scan is retried), never in "clean".

Each test that needs other limits starts a clamd of its own with the script.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from csvault.csvio.sniff import not_text_reason
from csvault.datasets.models import Dataset
from csvault.scanning.base import ScannerUnavailable
from csvault.scanning.clamd import ClamdScanner
from tests.helpers import Clamd, free_port, ingest, upload
from tests.scanning.conftest import SCRIPT, start_clamd
from tests.scanning.samples import chunked, clean_csv, html_csv, zip_of_zeros


@contextmanager
def clamd_with(tmp_path: Path, **limits: str) -> Iterator[Clamd]:
    server, stop = start_clamd(tmp_path / "clamd", **limits)
    try:
        yield server
    finally:
        stop()


def config(directory: Path) -> dict[str, str]:
    lines = (directory / "clamd.conf").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is on, from /proc/mounts (longest mount point)."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point, fs_type = line.split()[1:3]
        inside = str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fs_type
    return kind


def dev_shm_is_tmpfs() -> bool:
    return Path("/dev/shm").is_dir() and filesystem_type(Path("/dev/shm")) == "tmpfs"


# --- what a hostile file costs ------------------------------------------------------------


def test_a_zip_bomb_inside_a_csv_costs_clamd_nothing(script_clamd: tuple[Clamd, Path]) -> None:
    # CSV text for the first 8 KiB (csvault's type check reads no further), then a zip of
    # 1000 MiB of zeros: a 1 MB upload. Unpacking it cost clamd 20 s.
    head = clean_csv(10_000)
    upload = head + zip_of_zeros(1000 << 20)
    assert len(upload) < 1_100_000
    assert not_text_reason(upload[:8192]) is None

    started = time.monotonic()
    ClamdScanner(script_clamd[0].url).scan(chunked(upload, 65536))

    assert time.monotonic() - started < 2.0


@pytest.mark.django_db
def test_a_csv_carrying_a_zip_bomb_is_scanned_then_fails_the_ingest(
    api: Any, settings: Any, script_clamd: tuple[Clamd, Path]
) -> None:
    settings.CLAMD_URL = script_clamd[0].url
    response = upload(api, clean_csv(10_000) + zip_of_zeros(16 << 20))
    assert response.status_code == 201, response.content

    dataset = Dataset.objects.get(id=ingest(response))

    assert dataset.status == "failed"
    assert (dataset.error or {})["code"] == "nul_byte"


def test_a_large_csv_of_html_within_the_limits_is_clean(script_clamd: tuple[Clamd, Path]) -> None:
    # Normalised as HTML it counts about twice its size against MaxScanSize, in parts and
    # levels against MaxFiles and MaxRecursion: the defaults leave room for it.
    data = html_csv(100_000)
    assert len(data) > 10_000_000

    assert ClamdScanner(script_clamd[0].url, timeout=120).scan(chunked(data, 65536)).clean


# --- a limit hit is a finding, never "clean" ----------------------------------------------


@pytest.mark.parametrize(
    ("limits", "data", "signature"),
    [
        ({"CLAMD_MAX_FILES": "1"}, html_csv(10), "Heuristics.Limits.Exceeded.MaxFiles"),
        ({"CLAMD_MAX_RECURSION": "1"}, html_csv(10), "Heuristics.Limits.Exceeded.MaxRecursion"),
        (
            {"CLAMD_MAX_SCAN_SIZE": "1M", "CLAMD_MAX_FILE_SIZE": "2M"},
            clean_csv(1536 * 1024),
            "Heuristics.Limits.Exceeded.MaxScanSize",
        ),
        (
            {"CLAMD_MAX_SCAN_TIME": "1"},
            clean_csv(50 << 20),
            "Heuristics.Limits.Exceeded.MaxScanTime",
        ),
    ],
    ids=["MaxFiles", "MaxRecursion", "MaxScanSize", "MaxScanTime"],
)
def test_a_file_over_a_limit_is_a_finding(
    tmp_path: Path, limits: dict[str, str], data: bytes, signature: str
) -> None:
    with clamd_with(tmp_path, **limits) as server:
        result = ClamdScanner(server.url).scan(chunked(data, 65536))

    assert result.clean is False
    assert result.signature == signature
    assert result.exceeds_limits


def test_a_clamd_that_cannot_spool_gives_no_verdict(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with clamd_with(tmp_path, CLAMD_TMP_DIR=str(spool)) as server:
        spool.rmdir()  # as good as a full tmpfs: clamd cannot write the stream down
        with pytest.raises(ScannerUnavailable):
            ClamdScanner(server.url).scan([clean_csv(1000)])


# --- the spool ------------------------------------------------------------------------------


def test_the_spool_is_private_in_memory_and_removed_at_stop(tmp_path: Path) -> None:
    directory = tmp_path / "clamd"
    server, stop = start_clamd(directory)
    try:
        spool = Path(config(directory)["TemporaryDirectory"])
        if dev_shm_is_tmpfs():
            assert filesystem_type(spool) == "tmpfs"
        else:
            assert spool == directory / "tmp"
        assert spool.stat().st_mode & 0o777 == 0o700
        assert spool.stat().st_uid == os.getuid()

        # While a stream is being sent, clamd holds what it received in the spool.
        paused, resume = threading.Event(), threading.Event()

        def stream() -> Iterator[bytes]:
            yield clean_csv(200_000)
            paused.set()
            resume.wait(10)
            yield b"1,last@example.com,City,1.00,end\n"

        scan = threading.Thread(target=ClamdScanner(server.url).scan, args=(stream(),))
        scan.start()
        try:
            assert paused.wait(10)
            deadline = time.monotonic() + 5
            while not list(spool.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list(spool.iterdir()), "clamd spooled the stream somewhere else"
        finally:
            resume.set()
            scan.join(10)
    finally:
        stop()
    if dev_shm_is_tmpfs():
        assert not spool.exists()


def test_the_configuration_unpacks_no_archive_and_alerts_on_every_limit(
    script_clamd: tuple[Clamd, Path],
) -> None:
    values = config(script_clamd[1])
    assert values["ScanArchive"] == "no"
    assert values["AlertExceedsMax"] == "yes"
    assert (values["MaxRecursion"], values["MaxFiles"]) == ("5", "1000")
    limit = f"{((1 << 30) + (1 << 20) - 1) // (1 << 20) + 1}M"  # the 1 GiB upload limit + 1M
    assert values["StreamMaxLength"] == values["MaxFileSize"] == limit
    assert values["MaxScanSize"] == f"{int(limit[:-1]) * 2}M"


def test_a_spool_path_taken_by_someone_else_is_refused(tmp_path: Path) -> None:
    if not dev_shm_is_tmpfs():
        return  # the spool is then under CLAMD_DIR, private to it (test above)
    directory = tmp_path / "clamd"
    env = {**os.environ, "CLAMD_DIR": str(directory), "CLAMD_PORT": str(free_port())}
    taken = Path(f"/dev/shm/csvault-clamd-{hashlib.sha1(bytes(directory)).hexdigest()[:12]}")
    taken.symlink_to(tmp_path)
    try:
        started = subprocess.run(
            [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        taken.unlink()
        # Should it have started after all, it must not outlive the test.
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=30)
    assert started.returncode == 1
    assert "not a directory of this user" in started.stderr
