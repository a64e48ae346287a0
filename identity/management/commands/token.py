"""`manage.py token create|list|revoke`: service-account API tokens. A new token is printed once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from audit.models import Channel
from identity.models import ApiToken, Scope, ServiceAccount
from identity.services import TokenError, token_create, token_revoke


class Command(BaseCommand):
    help = "Manage service-account API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        create = sub.add_parser("create", help="Create a token and print it once.")
        create.add_argument("--service-account", required=True)
        create.add_argument("--name", required=True)
        create.add_argument(
            "--scope",
            action="append",
            required=True,
            dest="scopes",
            help=f"One of: {', '.join(Scope.values)}",
        )
        create.add_argument("--expires-in-days", type=int)
        create.add_argument(
            "--create-account",
            action="store_true",
            help="Create the service account if it does not exist",
        )
        sub.add_parser("list", help="List tokens (never their secrets).")
        revoke = sub.add_parser("revoke", help="Revoke a token by its prefix.")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['subcommand']}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        name = options["service_account"]
        account: ServiceAccount | None
        if options["create_account"]:
            account, _ = ServiceAccount.objects.get_or_create(name=name)
        else:
            account = ServiceAccount.objects.filter(name=name).first()
            if account is None:
                raise CommandError(
                    f"--service-account: no service account named {name!r} (add --create-account)"
                )
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days")
        try:
            _, plaintext = token_create(
                service_account=account,
                name=options["name"],
                scopes=options["scopes"],
                created_by=None,
                channel=Channel.CLI,
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except TokenError as exc:
            raise CommandError(f"--scope: {exc}") from exc
        self.stderr.write("Store this token now; Veil keeps only its hash and cannot show it again.")
        self.stdout.write(plaintext)

    def _list(self, options: dict[str, Any]) -> None:
        for token in ApiToken.objects.select_related("service_account"):
            state = "revoked" if token.revoked_at else "active"
            self.stdout.write(
                f"{token.prefix}  {token.service_account.name}/{token.name}  {','.join(token.scopes)}  "
                f"{state}  last used {token.last_used_at or 'never'}"
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        token = ApiToken.objects.filter(prefix=options["prefix"]).first()
        if token is None:
            raise CommandError(f"no token with prefix {options['prefix']!r}")
        token_revoke(token=token, revoked_by=None, channel=Channel.CLI)
        self.stdout.write(f"revoked {token}")
