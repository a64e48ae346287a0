"""`manage.py token create|list|revoke`: service-account API tokens and people's own tokens for
veil-proxy (`--user alice --scope query`). A new token is printed once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from audit.models import Channel
from identity.forms import expiry_in_days
from identity.models import ApiToken, PersonalScope, Scope, ServiceAccount, User
from identity.services import TokenError, personal_token_create, token_create, token_revoke

# The option to name when the service refuses a field (TokenError.field).
_OPTION_OF = {
    "scopes": "--scope",
    "expires_at": "--expires-in-days",
    "service_account": "--service-account",
    "user": "--user",
}


class Command(BaseCommand):
    help = "Manage API tokens of service accounts and people's tokens for veil-proxy."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        create = sub.add_parser("create", help="Create a token and print it once.")
        holder = create.add_mutually_exclusive_group(required=True)
        holder.add_argument("--service-account", help="The service account the token is for")
        holder.add_argument("--user", help="The person (username or email) the token is for")
        create.add_argument("--name", required=True)
        create.add_argument(
            "--scope",
            action="append",
            required=True,
            dest="scopes",
            help=f"Service accounts: {', '.join(Scope.values)}. People: {', '.join(PersonalScope.values)}",
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
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days")
        if options["user"] is not None and options["create_account"]:
            raise CommandError("--create-account: only with --service-account")
        try:
            if options["user"] is not None:
                _, plaintext = personal_token_create(
                    user=self._person(options["user"]),
                    name=options["name"],
                    scopes=options["scopes"],
                    created_by=None,
                    channel=Channel.CLI,
                    expires_at=expiry_in_days(days),
                )
            else:
                _, plaintext = token_create(
                    service_account=self._account(options["service_account"], options["create_account"]),
                    name=options["name"],
                    scopes=options["scopes"],
                    created_by=None,
                    channel=Channel.CLI,
                    expires_at=expiry_in_days(days),
                )
        except TokenError as exc:
            raise CommandError(f"{_OPTION_OF[exc.field]}: {exc}") from exc
        self.stderr.write("Store this token now; Veil keeps only its hash and cannot show it again.")
        self.stdout.write(plaintext)

    def _account(self, name: str, create: bool) -> ServiceAccount:
        if create:
            return ServiceAccount.objects.get_or_create(name=name)[0]
        account = ServiceAccount.objects.filter(name=name).first()
        if account is None:
            raise CommandError(f"--service-account: no service account named {name!r} (add --create-account)")
        return account

    def _person(self, login: str) -> User:
        people = list(User.objects.filter(Q(username=login) | Q(email__iexact=login))[:2])
        if len(people) != 1:
            found = "no person" if not people else "more than one person"
            raise CommandError(f"--user: {found} with the username or email {login!r}")
        return people[0]

    def _list(self, options: dict[str, Any]) -> None:
        tokens = list(ApiToken.objects.select_related("service_account", "user"))
        if not tokens:
            self.stdout.write("no tokens (create one with `token create`)")
        for token in tokens:
            state = "revoked" if token.revoked_at else "active"
            self.stdout.write(
                f"{token.prefix}  {token.holder_name}/{token.name}  {','.join(token.scopes)}  "
                f"{state}  last used {token.last_used_at or 'never'}"
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        token = ApiToken.objects.filter(prefix=options["prefix"]).first()
        if token is None:
            raise CommandError(f"no token with prefix {options['prefix']!r}")
        token_revoke(token=token, revoked_by=None, channel=Channel.CLI)
        self.stdout.write(f"revoked {token}")
