"""Importing the settings changes nothing; config.bootstrap.prepare() makes what they read."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config import bootstrap
from csvault.crypto.keyring import generate_master_key_spec, parse_master_keys

ROOT = Path(__file__).resolve().parent.parent.parent
POSTGRES_URL = "postgres://csvault@127.0.0.1:5432/csvault"

# Imports the settings in a fresh interpreter with an audit hook that records every
# change to the disk or the environment, then makes a directory (argv[1]) to show
# that the hook sees one. Variables named in .env may be added: reading it is allowed.
IMPORT_SETTINGS = r"""
import hashlib, importlib, json, os, re, sys
from pathlib import Path

WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {
    "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.link", "os.symlink", "os.chmod",
    "os.chown", "os.truncate", "os.utime", "os.putenv", "os.unsetenv", "shutil.rmtree",
    "sqlite3.connect",
}
dotenv = Path.cwd() / ".env"
from_dotenv = set(
    re.findall(r"^\s*(?:export\s+)?([A-Za-z_]\w*)\s*=", dotenv.read_text(), re.M)
    if dotenv.is_file() else ()
)
events = []

def text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

def record(event, args):
    if event in ("os.putenv", "os.unsetenv"):
        if text(args[0]) not in from_dotenv:
            events.append([event, text(args[0])])  # never the value: it may be a secret
    elif event in CHANGES or (event == "open" and isinstance(args[2], int) and args[2] & WRITE):
        events.append([event, *map(text, args)])

before = dict(os.environ)
sys.addaudithook(record)
result = {"error": None, "secret_key_sha256": None}
try:
    module = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    result["secret_key_sha256"] = hashlib.sha256(module.SECRET_KEY.encode()).hexdigest()
except Exception as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"
result["during_import"] = list(events)
result["environ_changed"] = sorted(
    name for name in set(before) | set(os.environ)
    if before.get(name) != os.environ.get(name) and name not in from_dotenv
)
events.clear()
os.mkdir(sys.argv[1])
result["probe"] = list(events)
print(json.dumps(result))
"""


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Nothing inherited but PATH and HOME: no keys, no PROMETHEUS_MULTIPROC_DIR."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(data_dir.parent)),
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ writes to confuse the recorder
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CSVAULT_DATA_DIR": str(data_dir),
        **extra,
    }


def import_settings(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_SETTINGS, str(tmp_path / "probe")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert result["probe"] == [["os.mkdir", str(tmp_path / "probe"), "511", "-1"]]
    return result


def snapshot(folder: Path) -> dict[Path, bytes | None]:
    return {p: None if p.is_dir() else p.read_bytes() for p in folder.rglob("*")}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


KEYS = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "CSVAULT_MASTER_KEYS": generate_master_key_spec("t1"),
}


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        pytest.param(KEYS, None, id="embedded-keys-from-env"),
        pytest.param({"DATABASE_URL": POSTGRES_URL, **KEYS}, None, id="production"),
        pytest.param({}, "make migrate", id="embedded-no-dev-secrets-yet"),
        pytest.param({"DATABASE_URL": POSTGRES_URL}, "refusing to start", id="production-no-keys"),
    ],
)
def test_importing_the_settings_creates_nothing_and_leaves_the_environment_alone(
    tmp_path: Path, extra: dict[str, str], error: str | None
) -> None:
    data_dir = tmp_path / "data"
    result = import_settings(tmp_path, clean_env(data_dir, **extra))
    assert result["during_import"] == []
    assert result["environ_changed"] == []
    assert not data_dir.exists()
    if error is None:
        assert result["error"] is None
    else:
        assert result["error"].startswith("ImproperlyConfigured")
        assert error in result["error"]


def test_the_settings_read_the_dev_secrets_that_prepare_made(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = clean_env(data_dir)
    prepared = run(["-c", "from config import bootstrap; bootstrap.prepare()"], env)
    assert prepared.returncode == 0, prepared.stderr
    files = snapshot(data_dir)

    result = import_settings(tmp_path, env)
    assert result["error"] is None
    assert result["during_import"] == []
    assert result["environ_changed"] == []
    secret = (data_dir / "secret.key").read_text().strip()
    assert result["secret_key_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert snapshot(data_dir) == files


@pytest.fixture
def fresh_embedded_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Embedded mode on a data dir that does not exist yet; everything restored after."""
    for name in (
        "DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "CSVAULT_MASTER_KEYS",
        "PROMETHEUS_MULTIPROC_DIR",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("CSVAULT_DATA_DIR", str(data_dir))
    return data_dir


def test_prepare_makes_the_folders_and_the_dev_secrets_once(fresh_embedded_env: Path) -> None:
    data_dir = fresh_embedded_env
    layout = bootstrap.prepare()
    assert layout.data_dir == data_dir
    for folder in ("tmp", "metrics", "broker/queue", "broker/processed", "broker/control"):
        assert (data_dir / folder).is_dir(), folder
    assert (ROOT / "staticfiles").is_dir()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(data_dir / "metrics")
    secret_key, master_keys = data_dir / "secret.key", data_dir / "master.keys"
    for path in (secret_key, master_keys):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret_key.read_text().strip()) >= 50
    assert parse_master_keys(master_keys.read_text()).active_id
    made = {p: (p.read_bytes(), p.stat().st_ino) for p in (secret_key, master_keys)}
    names = sorted(p.name for p in data_dir.iterdir())
    assert names == ["broker", "master.keys", "metrics", "secret.key", "tmp"]

    bootstrap.prepare()
    assert {p: (p.read_bytes(), p.stat().st_ino) for p in (secret_key, master_keys)} == made
    assert sorted(p.name for p in data_dir.iterdir()) == names


@pytest.mark.parametrize(
    "extra",
    [pytest.param(KEYS, id="keys-from-env"), pytest.param({"DATABASE_URL": POSTGRES_URL, **KEYS})],
)
def test_prepare_generates_no_secret_the_environment_gives(
    fresh_embedded_env: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]
) -> None:
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    bootstrap.prepare()
    assert (fresh_embedded_env / "broker" / "queue").is_dir()
    assert not (fresh_embedded_env / "secret.key").exists()
    assert not (fresh_embedded_env / "master.keys").exists()


def test_a_secret_another_process_wrote_first_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"

    def make() -> str:
        path.write_text("theirs")  # another process gets there between the check and the link
        return "ours"

    bootstrap._create_once(path, make)
    assert path.read_text() == "theirs"
    assert list(tmp_path.iterdir()) == [path]


MULTIPROCESS = "from csvault.core.metrics import multiprocess_mode; assert multiprocess_mode()"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["manage.py", "shell", "-c", MULTIPROCESS], id="manage.py"),
        pytest.param(["-c", f"import config.wsgi; {MULTIPROCESS}"], id="wsgi"),
        pytest.param(
            [
                "-c",
                "from config.celery import app; app.conf.task_default_queue; "
                f"import django; django.setup(); {MULTIPROCESS}",
            ],
            id="celery",
        ),
    ],
)
def test_each_entry_point_prepares_a_fresh_data_dir(tmp_path: Path, args: list[str]) -> None:
    data_dir = tmp_path / "data"
    done = run(args, clean_env(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (data_dir / "secret.key").is_file()
    assert (data_dir / "master.keys").is_file()
    assert (data_dir / "broker" / "queue").is_dir()


def test_production_mode_still_refuses_to_start_without_keys(tmp_path: Path) -> None:
    done = run(["manage.py", "check"], clean_env(tmp_path / "data", DATABASE_URL=POSTGRES_URL))
    assert done.returncode != 0
    assert "refusing to start" in done.stderr
