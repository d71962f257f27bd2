"""``manage.py check --deploy`` under production settings, in a fresh process each time."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from csvault.crypto.keyring import generate_master_key_spec

ROOT = Path(__file__).resolve().parent.parent.parent


def production_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """A production environment built from scratch (nothing inherited but PATH and HOME)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "CSVAULT_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "postgres://csvault@127.0.0.1:5432/csvault",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "CSVAULT_MASTER_KEYS": generate_master_key_spec("prod1"),
        "DJANGO_ALLOWED_HOSTS": "csvault.example.com",
        "CLAMD_URL": "tcp://clamd.internal:3310",
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)


def test_production_settings_pass_check_deploy_without_a_warning(tmp_path):
    result = check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_without_clamd_warns_that_only_the_minimal_matcher_scans(tmp_path):
    result = check_deploy(production_env(tmp_path, CLAMD_URL=None))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "csvault.W001" in output
    assert "minimal built-in" in output
    assert "1 issue" in output


def test_a_malformed_clamd_url_is_an_error(tmp_path):
    result = check_deploy(production_env(tmp_path, CLAMD_URL="http://clamd:3310"))
    assert result.returncode != 0
    assert "csvault.E001" in result.stdout + result.stderr


def test_embedded_mode_needs_no_clamd_and_stays_plain_http(tmp_path):
    env = production_env(
        tmp_path, DATABASE_URL=None, DJANGO_SECRET_KEY=None, CSVAULT_MASTER_KEYS=None,
        CLAMD_URL=None, DJANGO_ALLOWED_HOSTS=None,
    )  # fmt: skip
    result = check_deploy(env)
    assert "csvault.W001" not in result.stdout + result.stderr
    shown = run(
        [
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_HSTS_SECONDS)",
        ],
        {**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["False", "False", "False", "0"]


@pytest.mark.parametrize(
    ("variable", "value", "warning"),
    [
        ("DJANGO_SECURE_HSTS_SECONDS", "0", "security.W004"),
        ("DJANGO_SECURE_COOKIES", "0", "security.W012"),
        ("DJANGO_SECURE_SSL_REDIRECT", "0", "security.W008"),
    ],
)
def test_each_production_default_can_be_turned_off_and_check_deploy_says_so(
    tmp_path, variable, value, warning
):
    result = check_deploy(production_env(tmp_path, **{variable: value}))
    assert result.returncode != 0
    assert warning in result.stdout + result.stderr
