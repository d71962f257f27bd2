"""Where csvault keeps its files, computed from the environment alone.

config/settings.py reads these paths and config/bootstrap.py creates them, so the
variables and their defaults are decided here, once. Nothing here touches the disk
except :func:`load_env`, which reads ``.env``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

#: The filesystem broker's folders under ``<data dir>/broker``.
BROKER_FOLDERS = ("queue", "processed", "control")


def load_env() -> environ.Env:
    """The environment, with ``BASE_DIR/.env`` filling in the variables it does not set."""
    env = environ.Env()
    if (BASE_DIR / ".env").is_file():
        environ.Env.read_env(BASE_DIR / ".env")
    return env


@dataclass(frozen=True)
class Layout:
    """The data dir and what the environment puts in it."""

    data_dir: Path
    database_url: str
    broker_url: str
    metrics_dir: str

    @classmethod
    def from_env(cls, env: environ.Env) -> Layout:
        data_dir = Path(env.str("CSVAULT_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
        return cls(
            data_dir=data_dir,
            database_url=env.str("DATABASE_URL", default=""),
            broker_url=env.str("CELERY_BROKER_URL", default="filesystem://"),
            metrics_dir=env.str("PROMETHEUS_MULTIPROC_DIR", default=str(data_dir / "metrics")),
        )

    @property
    def embedded(self) -> bool:
        """SQLite: no DATABASE_URL, or a sqlite:// one (as test workers use)."""
        return not self.database_url or self.database_url.startswith("sqlite")

    @property
    def filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def upload_temp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def static_root(self) -> Path:
        return BASE_DIR / "staticfiles"

    @property
    def secret_key_file(self) -> Path:
        """Embedded mode's generated DJANGO_SECRET_KEY."""
        return self.data_dir / "secret.key"

    @property
    def master_keys_file(self) -> Path:
        """Embedded mode's generated CSVAULT_MASTER_KEYS."""
        return self.data_dir / "master.keys"

    def folders(self) -> list[Path]:
        """Every folder a csvault process expects to find."""
        folders = [self.data_dir, self.upload_temp_dir, self.static_root, Path(self.metrics_dir)]
        if self.filesystem_broker:
            folders += [self.broker_dir / name for name in BROKER_FOLDERS]
        return folders
