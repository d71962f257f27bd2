"""``manage.py rotate_master_key [--dry-run]``: re-wrap data keys under the active master key.

Rotation: put the new master key first in ``CSVAULT_MASTER_KEYS`` (keep the old ones
after it), restart, run this command, check that the old key id is no longer in use,
then remove the old key and restart again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from csvault.datasets.keys import get_keyring
from csvault.datasets.rotation import dataset_key_ids_in_use, dataset_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-wrap every dataset's data key that is not under the active (first) master key "
        "of CSVAULT_MASTER_KEYS. Exits non-zero if some data key could not be unwrapped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Unwrap every stale data key to check it, but write nothing.",
        )
        parser.add_argument("--batch-size", type=int, default=500, help="Datasets per batch (500).")

    def handle(self, *args: Any, dry_run: bool, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        keyring = get_keyring()
        report = dataset_keys_rotate(keyring=keyring, batch_size=batch_size, dry_run=dry_run)
        out = self.stdout.write
        out(f"Active master key: {keyring.active_id}")
        out(f"{'Would re-wrap' if dry_run else 'Re-wrapped'}: {report.rewrapped}")
        out(f"Already current: {report.current}")
        out(f"Skipped (deleted or re-wrapped concurrently): {report.skipped}")
        out(f"Could not unwrap: {sum(report.failed.values())}")
        in_use = dataset_key_ids_in_use()
        listed = ", ".join(f"{key_id} ({n})" for key_id, n in in_use.items()) or "none"
        out(f"Key ids still in use: {listed}")
        if report.failed:
            for key_id, n in sorted(report.failed.items()):
                self.stderr.write(f"{n} data key(s) under {key_id!r}: {report.problems[key_id]}")
            raise CommandError(
                "Some data keys could not be unwrapped (master key ids: "
                f"{', '.join(sorted(report.failed))}); add the missing master keys to "
                "CSVAULT_MASTER_KEYS and run the command again."
            )
