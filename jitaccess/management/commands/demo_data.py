"""`manage.py demo_data`: load the demo company (idempotent).

The demo users' password is published in the README, so the command refuses to run with DEBUG=0
unless told `--allow-public-passwords`: a production database never gets them by accident (it
used to, on every `docker compose up`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jitaccess.demo import DEMO_PASSWORD, DEMO_TOKEN, demo_token_live, load_demo_data, try_the_api


class Command(BaseCommand):
    help = "Load a small demo company: projects, prod/staging catalog, people, groups, roles, permissions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--allow-public-passwords",
            action="store_true",
            help=f"Load even with DEBUG=0: creates admin, alice, bob... with the password {DEMO_PASSWORD!r}.",
        )

    def handle(self, *args: Any, allow_public_passwords: bool = False, **options: Any) -> None:
        if not (settings.DEBUG or allow_public_passwords):
            raise CommandError(
                "demo_data creates users (admin among them) whose password is public, and DEBUG=0 says "
                "this is production: refused. For a trial, pass --allow-public-passwords."
            )
        usernames = load_demo_data()
        self.stdout.write(f"demo data ready; users {', '.join(usernames)} (password {DEMO_PASSWORD!r})")
        if demo_token_live():
            self.stdout.write(f"\nTry the decision API with the demo's public token {DEMO_TOKEN}:")
            for command in try_the_api(settings.SITE_URL):
                self.stdout.write(f"  {command}")
