"""`manage.py access_reviews ...`: access review campaigns from the command line.

access_reviews run             open the campaigns that are due and apply the deadlines that passed
                               (what the beat schedule runs every minute)
access_reviews open PROJECT    open a campaign of the project now, whatever its schedule
access_reviews list            the campaigns, newest first, with their items' answers
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.exports import cli_actor
from audit.models import Channel
from jitaccess.reviews.models import AccessReviewCampaign
from jitaccess.reviews.selectors import open_counts
from jitaccess.reviews.services import ReviewError, campaign_open, campaigns_open_due, campaigns_past_deadline
from masking.models import Project

SHOWN = 50


class Command(BaseCommand):
    help = "Open access reviews that are due (or one now), apply their deadlines, list them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser("run", help="Open the campaigns that are due and apply the deadlines that passed.")
        opening = sub.add_parser("open", help="Open a campaign of a project now.")
        opening.add_argument("project", help="The project's key.")
        sub.add_parser("list", help="The campaigns, newest first.")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['subcommand']}")(options)

    def _run(self, options: dict[str, Any]) -> None:
        opened, passed = campaigns_open_due(), campaigns_past_deadline()
        self.stdout.write(f"opened {len(opened)} campaign(s), applied {len(passed)} deadline(s)")

    def _open(self, options: dict[str, Any]) -> None:
        project = Project.objects.filter(key=options["project"]).first()
        if project is None:
            raise CommandError(f"project: no project has the key {options['project']!r}")
        try:
            campaign = campaign_open(project=project, actor=cli_actor(), channel=Channel.CLI)
        except ReviewError as error:
            raise CommandError(str(error)) from error
        deadline = f"{campaign.deadline:%Y-%m-%d %H:%M %Z}"
        self.stdout.write(f"{campaign.ref} opened: {campaign.items.count()} item(s), deadline {deadline}")

    def _list(self, options: dict[str, Any]) -> None:
        campaigns = AccessReviewCampaign.objects.select_related("project").order_by("-opened_at")[:SHOWN]
        for campaign in campaigns:
            counts = open_counts(campaign)
            self.stdout.write(
                f"{campaign.ref:8} {campaign.project.key:16} {campaign.state:9} "
                f"opened {campaign.opened_at:%Y-%m-%d}, deadline {campaign.deadline:%Y-%m-%d}: "
                + ", ".join(f"{n} {state}" for state, n in counts.items())
            )
