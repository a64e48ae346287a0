"""`manage.py signin unlock --username NAME | --address ADDR`: lift a sign-in lockout, audited.

django-axes' own `axes_reset*` commands work too but leave no trace in the audit log; this one
records who unlocked what (the operator's OS user, as for other command-line changes)."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import ActorType, Channel
from audit.services import Actor
from identity.signin import lockout_clear


class Command(BaseCommand):
    help = "Password sign-in lockouts (django-axes): unlock a username or a client address."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        unlock = sub.add_parser("unlock", help="Forget the failed sign-ins of a username and/or an address.")
        unlock.add_argument("--username", default="")
        unlock.add_argument("--address", default="", help="The client address, as the lockout shows it.")

    def handle(self, *args: Any, username: str = "", address: str = "", **options: Any) -> None:
        if not (username or address):
            raise CommandError("unlock needs --username or --address (or both)")
        operator = getpass.getuser()
        actor = Actor(type=ActorType.SYSTEM, id=f"cli:{operator}", name=f"{operator} (command line)")
        removed = lockout_clear(username=username, address=address, actor=actor, channel=Channel.CLI)
        self.stdout.write(f"unlocked {username or address}: {removed} attempt record(s) removed")
