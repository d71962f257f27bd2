"""``manage.py createuser NAME [--password P]``: a normal user and an API token."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from rest_framework.authtoken.models import Token


def _database() -> str:
    """The database in words: where its file is, or its name and host."""
    db = connections[DEFAULT_DB_ALIAS].settings_dict
    if connections[DEFAULT_DB_ALIAS].vendor == "sqlite":
        return f"{db['NAME']} (CSVAULT_DATA_DIR={settings.DATA_DIR})"
    return f"{db['NAME']} on {db.get('HOST') or 'localhost'}"


def _check_migrated() -> None:
    """A clear sentence instead of a traceback when the tables are not there (yet).

    It does not migrate by itself: a database that is not migrated is most often not
    the one meant (another CSVAULT_DATA_DIR or DATABASE_URL than the running server's),
    and a user created there could not log in to that server.
    """
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"Cannot use the database {_database()}: {first}") from None
    if pending:
        raise CommandError(
            f"The database {_database()} is not migrated ({len(pending)} migrations to apply): "
            "run `make migrate` (or `python manage.py migrate`) first, or use the "
            "CSVAULT_DATA_DIR / DATABASE_URL that `make run` runs with."
        )


class Command(BaseCommand):
    help = "Create a normal (non-staff) user and print an API token as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", help="Password for the browsable API and web login.")

    def handle(self, *args: Any, username: str, password: str | None, **options: Any) -> None:
        _check_migrated()
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"User {username!r} already exists.")
        user = User.objects.create_user(username=username, password=password)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        token = Token.objects.create(user=user)
        self.stdout.write(f"Created user {username}. API token:")
        self.stdout.write(token.key)
