"""`manage.py slack ...`: check the Slack installation, route a project, link accounts.

slack check                                   token, scopes, channels, signing secret; exit 1 on a problem
slack route PROJECT [--channel C] [--dm-approvers | --no-dm-approvers] [--escalation-channel C]
slack link USERNAME SLACK_USER_ID             an administrator vouches that the Slack account is this person
slack unlink SLACK_USER_ID
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.exports import cli_actor
from audit.models import Channel
from identity.models import User
from jitaccess.models import SlackLinkMethod, SlackRoute
from jitaccess.slack.check import installation_findings
from jitaccess.slack.services import slack_route_set, slack_user_link, slack_user_unlink
from masking.models import Project


class Command(BaseCommand):
    help = "Check the Slack app, route a project's requests, link Slack accounts to Veil users."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser("check", help="Verify the token, scopes and channels; exit 1 naming what is wrong.")
        route = sub.add_parser("route", help="Show or set where a project's requests go in Slack.")
        route.add_argument("project", help="Project key.")
        route.add_argument("--channel", help="Channel ID (C0123ABCD) or #name; '' for none.")
        route.add_argument("--dm-approvers", action="store_true", default=None, help="Also DM each approver.")
        route.add_argument("--no-dm-approvers", dest="dm_approvers", action="store_false")
        route.add_argument("--escalation-channel", help="Where requests still pending escalate; '' for none.")
        link = sub.add_parser("link", help="Link a Slack account to a Veil user (replaces any link it has).")
        link.add_argument("username")
        link.add_argument("slack_user_id", help="The member ID (U0123ABCD) from the person's Slack profile.")
        unlink = sub.add_parser("unlink", help="Remove a Slack account's link.")
        unlink.add_argument("slack_user_id")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['subcommand']}")(options)

    def _check(self, options: dict[str, Any]) -> None:
        findings = installation_findings()
        for finding in findings:
            style = self.style.SUCCESS if finding.ok else self.style.ERROR
            self.stdout.write(
                f"{style('ok  ' if finding.ok else 'FAIL')}  {finding.subject}: {finding.message}"
            )
        problems = sum(not f.ok for f in findings)
        if problems:
            raise CommandError(f"{problems} problem(s); see docs/slack.md")

    def _route(self, options: dict[str, Any]) -> None:
        try:
            project = Project.objects.get(key=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"no project {options['project']!r}") from None
        current = SlackRoute.objects.filter(project=project).first() or SlackRoute(project=project)
        changes = {
            k: options[k] for k in ("channel", "dm_approvers", "escalation_channel") if options[k] is not None
        }
        if changes:
            current = slack_route_set(
                project=project,
                slack_channel=changes.get("channel", current.channel),
                dm_approvers=changes.get("dm_approvers", current.dm_approvers),
                escalation_channel=changes.get("escalation_channel", current.escalation_channel),
                actor=cli_actor(),
                channel=Channel.CLI,
            )
        dm = "yes" if current.dm_approvers else "no"
        self.stdout.write(
            f"{project.key}: channel={current.channel or '-'} dm_approvers={dm} "
            f"escalation_channel={current.escalation_channel or '-'}"
        )

    def _link(self, options: dict[str, Any]) -> None:
        try:
            user = User.objects.get(username=options["username"])
        except User.DoesNotExist:
            raise CommandError(f"no user {options['username']!r}") from None
        slack_user_link(
            slack_user_id=options["slack_user_id"],
            user=user,
            method=SlackLinkMethod.ADMIN,
            actor=cli_actor(),
            channel=Channel.CLI,
        )
        self.stdout.write(f"{options['slack_user_id']} now acts as {user.username} in Slack")

    def _unlink(self, options: dict[str, Any]) -> None:
        if not slack_user_unlink(
            slack_user_id=options["slack_user_id"], actor=cli_actor(), channel=Channel.CLI
        ):
            raise CommandError(f"{options['slack_user_id']} is not linked")
        self.stdout.write(f"{options['slack_user_id']} is no longer linked")
