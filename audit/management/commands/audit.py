"""`manage.py audit verify`: check the whole hash chain; exit 1 naming the first broken event."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.selectors import verify_chain


class Command(BaseCommand):
    help = "Audit log tools."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser("verify", help="Verify the hash chain of the audit log.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = verify_chain()
        if not result.ok:
            first = result.breaks[0]
            raise CommandError(f"audit chain broken at event #{first.seq}: {first.reason}")
        self.stdout.write(f"audit chain intact: {result.events_checked} events verified")
