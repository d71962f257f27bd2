"""``manage.py createuser`` on a fresh data dir (embedded mode), as a newcomer runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

#: The variables that would make the command use this session's services.
SESSION_ONLY = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "STORAGE_URL",
    "PROMETHEUS_MULTIPROC_DIR",
    "CSVAULT_TEST_EXPECT",
)


def manage(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SESSION_ONLY}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**env, "CSVAULT_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_createuser_on_a_database_not_migrated_says_to_migrate(tmp_path):
    data_dir = tmp_path / "fresh"
    refused = manage(data_dir, "createuser", "bob", "--password", "a-long-passphrase")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith(
        f"CommandError: The database {data_dir / 'csvault.sqlite3'} "
        f"(CSVAULT_DATA_DIR={data_dir}) is not migrated ("
    ), line
    assert "run `make migrate` (or `python manage.py migrate`) first" in line

    migrated = manage(data_dir, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    created = manage(data_dir, "createuser", "bob", "--password", "a-long-passphrase")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[0] == "Created user bob. API token:"
    assert len(created.stdout.splitlines()[-1]) == 40  # the token, last
