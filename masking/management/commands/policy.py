"""`manage.py policy export | plan FILE | apply FILE | convert FILE`: the policy as code.

`plan` exits 0 when the file matches the live policy, 2 when applying it would change something
(as `terraform plan -detailed-exitcode` does), and 1 when the file is invalid: a CI job can run it
on every merge request and apply on merge. `--format bytebase` reads a Bytebase export instead.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import ActorType, Channel
from audit.services import Actor
from identity.models import User
from identity.services import actor_for
from masking.policy.diff import plan_against_live
from masking.policy.document import SOURCE_FORMATS, DocumentError, dump_yaml, export_document, load_source
from masking.services.policy import PolicyError
from masking.services.policy_changes import policy_submit


class Command(BaseCommand):
    help = "Export, plan and apply the whole masking policy as YAML."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        export = sub.add_parser("export", help="Write the live policy as YAML.")
        export.add_argument("--output", "-o", help="File to write (default: standard output)")
        for name, text in (
            ("plan", "Show what applying FILE would change; exit 2 if anything."),
            ("apply", "Apply FILE in one transaction as one policy version."),
            ("convert", "Print FILE (e.g. a Bytebase export) as a Veil policy document."),
        ):
            command = sub.add_parser(name, help=text)
            command.add_argument("file", help="Policy file, or - for standard input")
            command.add_argument("--format", choices=SOURCE_FORMATS, default="veil", dest="source_format")
            if name == "apply":
                command.add_argument("--message", "-m", required=True, help="Why: recorded on the version")
                command.add_argument(
                    "--author", help="Username to attribute the change to (default: the shell user)"
                )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "export":
            text = dump_yaml(export_document())
            if options["output"]:
                Path(options["output"]).write_text(text, encoding="utf-8")
            else:
                self.stdout.write(text, ending="")
            return
        source = sys.stdin.read() if options["file"] == "-" else _read(options["file"])
        try:
            document = load_source(source, options["source_format"])
            if options["subcommand"] == "convert":
                self.stdout.write(dump_yaml(document), ending="")
            elif options["subcommand"] == "plan":
                self._plan(document)
            else:
                self._apply(document, options)
        except (DocumentError, PolicyError) as exc:
            raise CommandError(str(exc)) from exc

    def _plan(self, document: dict[str, Any]) -> None:
        plan = plan_against_live(document)
        self.stdout.write(plan.text())
        if plan.has_changes:
            sys.exit(2)

    def _apply(self, document: dict[str, Any], options: dict[str, Any]) -> None:
        actor, user = _author(options["author"])
        submission = policy_submit(
            document=document,
            message=options["message"],
            actor=actor,
            channel=Channel.CLI,
            author=user,
            authorize=False,  # whoever runs manage.py already has the database
        )
        self.stdout.write(submission.plan.text())
        if submission.status == "applied" and submission.version is not None:
            self.stdout.write(self.style.SUCCESS(f"Applied as policy version {submission.version.number}."))
        elif submission.status == "pending" and submission.change is not None:
            self.stdout.write(
                self.style.WARNING(
                    f"Held for a second person (two-person rule): policy change #{submission.change.pk}. "
                    "Nothing takes effect until someone else approves it."
                )
            )
        else:
            self.stdout.write("Nothing to apply.")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc


def _author(username: str | None) -> tuple[Actor, User | None]:
    """The person named with --author, else the shell user (the operator has database access)."""
    if username:
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"--author: no active user {username!r}")
        return actor_for(user), user
    shell_user = getpass.getuser()
    return Actor(type=ActorType.SYSTEM, id=f"cli:{shell_user}", name=f"policy apply ({shell_user})"), None
