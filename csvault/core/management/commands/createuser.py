"""``manage.py createuser NAME [--password P]``: a normal user and an API token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create a normal (non-staff) user and print an API token as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", help="Password for the browsable API and web login.")

    def handle(self, *args: Any, username: str, password: str | None, **options: Any) -> None:
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
