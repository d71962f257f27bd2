"""Make what a csvault process needs on disk, before the Django settings load.

config/settings.py only reads the environment and files that already exist, so
every entry point calls :func:`prepare` first: manage.py, config/wsgi.py (gunicorn),
the Celery app when it first reads its configuration (config/celery.py: workers,
beat) and the pytest plugin config/pytest_plugin.py. A script that calls
``django.setup()`` itself calls ``prepare()`` before it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from config.layout import Layout, load_env
from csvault.crypto.keyring import generate_master_key_spec


def prepare() -> Layout:
    """Create the folders and, in embedded mode, the dev secrets the environment does not
    give; set PROMETHEUS_MULTIPROC_DIR. Idempotent, and safe in concurrent processes."""
    env = load_env()
    layout = Layout.from_env(env)
    for folder in layout.folders():
        folder.mkdir(parents=True, exist_ok=True)
    if layout.embedded:
        if not env.str("DJANGO_SECRET_KEY", default=""):
            _create_once(layout.secret_key_file, lambda: secrets.token_urlsafe(50))
        if not env.str("CSVAULT_MASTER_KEYS", default=""):
            _create_once(layout.master_keys_file, generate_master_key_spec)
    # prometheus_client chooses multiprocess mode when it is imported, from this variable.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = layout.metrics_dir
    return layout


def _create_once(path: Path, make: Callable[[], str]) -> None:
    """Write a new secret to ``path`` (mode 0600) unless it exists.

    Processes starting at once on a fresh data dir must all end up with the same
    secret (data keys wrapped under a master key that is then replaced are lost), and
    none may read a file that is still empty: the secret is written to a private file
    first and linked into place, which fails if ``path`` exists.
    """
    if path.exists():
        return
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass
        except OSError:
            # A filesystem without hard links: create it in place, still exclusively.
            with contextlib.suppress(FileExistsError):
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(out, "w") as fh:
                    fh.write(Path(scratch).read_text())
    finally:
        os.unlink(scratch)
