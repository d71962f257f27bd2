"""The test harness itself (config/pytest_plugin.py, tests/conftest.py): a missing or
misnamed service ends the run, an unexpected skip fails it, a hang fails one test, and
each session has its own data dir, Redis DBs, database and queues.

Each test runs a small pytest session in a subprocess with this project's plugin and
tests/conftest.py (re-exported by a conftest beside the module), so what it checks is
what `make test` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from django.conf import settings

from config import pytest_plugin
from csvault.crypto.keyring import generate_master_key_spec
from tests.helpers import ROOT, SESSION_QUEUE, free_port

# Everything of tests/conftest.py, hooks and (underscore-named) fixtures included.
CONFTEST = (
    "import tests.conftest as project\n"
    "globals().update({k: v for k, v in vars(project).items() if not k.startswith('__')})\n"
)


def run_session(
    tmp_path: Path, body: str, env: dict[str, str | None] | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``body`` as a test module in a new pytest session; ``None`` in ``env`` unsets."""
    module = tmp_path / "test_inner.py"
    module.write_text(textwrap.dedent(body))
    (tmp_path / "conftest.py").write_text(CONFTEST)
    child_env = {**os.environ}
    for name, value in (env or {}).items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    child_env.pop("COVERAGE_PROCESS_CONFIG", None)  # not this project's code under test
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(ROOT), "-p", "no:cacheprovider",
         "-q", str(module), *args],
        cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


PASSING = "def test_ok():\n    assert True\n"


def test_an_unknown_expected_service_ends_the_run(tmp_path: Path) -> None:
    done = run_session(tmp_path, PASSING, {"CSVAULT_TEST_EXPECT": "postgres,clamd"})
    assert done.returncode == 4, done.stdout + done.stderr
    assert "unknown services ['postgres']" in done.stdout + done.stderr


def test_an_unreachable_cache_fails_the_redis_expectation(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = run_session(
        tmp_path,
        PASSING,
        {"CSVAULT_TEST_EXPECT": "redis", "CELERY_BROKER_URL": dead, "CACHE_URL": dead},
    )
    assert done.returncode == 3, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "Redis broker unreachable" in output
    assert "Redis cache unreachable" in output


def test_embedded_expectation_refuses_another_database(tmp_path: Path) -> None:
    done = run_session(
        tmp_path,
        PASSING,
        {
            "CSVAULT_TEST_EXPECT": "embedded",
            "DATABASE_URL": "postgres://nobody@127.0.0.1:1/x",
            "DJANGO_SECRET_KEY": "x" * 50,
            "CSVAULT_MASTER_KEYS": generate_master_key_spec(),
        },
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "embedded mode expected but the database is not SQLite" in done.stdout


SKIPPING = "import pytest\n\ndef test_later():\n    pytest.skip('not today')\n"


def test_a_skip_outside_the_allowlist_fails_a_ci_run(tmp_path: Path) -> None:
    done = run_session(tmp_path, SKIPPING, {"CI": "true", "CSVAULT_TEST_EXPECT": None})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "::test_later: not today" in done.stdout
    assert "1 skip(s) outside the allowlist" in done.stdout
    assert "FAILS the run" in done.stdout


def test_outside_ci_a_skip_is_listed_but_allowed(tmp_path: Path) -> None:
    done = run_session(tmp_path, SKIPPING, {"CI": None, "CSVAULT_TEST_EXPECT": None})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::test_later: not today" in done.stdout


def test_a_hung_test_fails_alone(tmp_path: Path) -> None:
    body = """
        import time

        def test_hangs():
            time.sleep(60)

        def test_after():
            assert True
    """
    done = run_session(tmp_path, body, None, "-o", "timeout=2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    assert "Timeout" in done.stdout + done.stderr


def test_each_session_has_its_own_data_dir_redis_dbs_database_and_queue(tmp_path: Path) -> None:
    body = """
        import os
        from django.conf import settings
        from django.db import connection
        from tests.helpers import SESSION_QUEUE

        def test_report(db):
            values = (settings.DATA_DIR, settings.CELERY_BROKER_URL, settings.CACHE_URL,
                      connection.settings_dict["NAME"], SESSION_QUEUE)
            print("REPORT", "|".join(map(str, values)))
    """
    done = run_session(tmp_path, body, None, "-s")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("REPORT"))
    data_dir, broker, cache, database, queue = line.split(" ", 1)[1].split("|")
    from django.db import connection

    mine = (
        str(settings.DATA_DIR),
        settings.CELERY_BROKER_URL,
        settings.CACHE_URL,
        connection.settings_dict["NAME"],
        SESSION_QUEUE,
    )
    assert data_dir != mine[0]
    assert pytest_plugin.SESSION_TAG in mine[0]
    assert queue != mine[4]
    assert database != mine[3]
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        assert {broker, cache}.isdisjoint({mine[1], mine[2]})
        assert broker != cache
        numbers = {int(url.rsplit("/", 1)[1]) for url in (broker, cache, mine[1], mine[2])}
        assert numbers <= set(pytest_plugin.TEST_REDIS_DBS)
    assert not Path(data_dir).exists(), "a session's data dir is removed at its end"


def test_tasks_left_by_a_transactional_test_do_not_reach_the_next(tmp_path: Path) -> None:
    body = """
        from config.celery import app
        from tests.helpers import SESSION_QUEUE

        def size():
            with app.connection_for_write() as conn:
                return conn.default_channel.queue_declare(SESSION_QUEUE).message_count

        def test_queues_a_task(transactional_db):
            app.send_task("csvault.reap_stalled", queue=SESSION_QUEUE)
            assert size() == 1

        def test_finds_the_queue_empty(transactional_db):
            assert size() == 0
    """
    done = run_session(tmp_path, body)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_ci_runs_hypothesis_without_deadlines() -> None:
    from hypothesis import settings as hypothesis_settings

    assert hypothesis_settings.get_profile("ci").deadline is None
    if os.environ.get("CI") and not os.environ.get("HYPOTHESIS_PROFILE"):
        assert hypothesis_settings().deadline is None
