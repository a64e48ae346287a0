"""Setting Slack up: the manifest in the repository, `manage.py slack check`, routes and links."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.urls import resolve

from audit.models import AuditEvent
from jitaccess.models import SlackLinkMethod, SlackRoute, SlackUserLink
from jitaccess.slack.check import REQUIRED_SCOPES
from jitaccess.slack.views import interactions
from tests.slack.conftest import APPROVALS

pytestmark = pytest.mark.django_db


def slack_command(*args: str) -> str:
    out = StringIO()
    call_command("slack", *args, stdout=out)
    return out.getvalue()


def failing_check() -> str:
    out = StringIO()
    with pytest.raises(CommandError, match=r"problem\(s\)"):
        call_command("slack", "check", stdout=out)
    return out.getvalue()


def test_the_manifest_asks_for_what_veil_checks_and_points_at_the_endpoint():
    manifest = yaml.safe_load((Path(django_settings.BASE_DIR) / "slack-app-manifest.yml").read_text())

    assert tuple(manifest["oauth_config"]["scopes"]["bot"]) == REQUIRED_SCOPES
    assert manifest["features"]["bot_user"]["display_name"] == "Veil"
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert resolve(urlsplit(interactivity["request_url"]).path).func is interactions


def test_check_passes_for_a_complete_installation(slack):
    out = slack_command("check")

    assert "bot @veil (UVEILBOT) in workspace Acme" in out
    assert f"channel {APPROVALS} (SLACK_APPROVAL_CHANNEL): #pii-approvals, the bot is a member" in out
    assert "https://veil.example/slack/interactions" in out
    assert "FAIL" not in out


def test_check_names_each_problem_and_what_to_do(slack, settings, fake_slack):
    fake_slack.scopes = ("chat:write", "commands", "users:read", "channels:read")
    fake_slack.channels[APPROVALS]["is_member"] = False
    slack.policy.slack_channel = "#no-such-channel"
    slack.policy.save()
    settings.SITE_URL = "http://veil.internal"

    out = failing_check()

    assert "missing users:read.email, groups:read: add them under OAuth & Permissions" in out
    assert "the bot is not a member: type `/invite @veil` in the channel" in out
    assert "channel #no-such-channel (policy shop: prod PII): not found" in out
    assert "Slack only posts to https URLs" in out


def test_check_reports_a_token_slack_refuses(slack, settings):
    settings.SLACK_BOT_TOKEN = "xoxb-revoked"

    assert "FAIL  token: Slack refused the token (invalid_auth)" in failing_check()


def test_check_says_slack_is_off_without_a_token(settings):
    settings.SLACK_BOT_TOKEN = ""

    assert "SLACK_BOT_TOKEN is empty: Slack is off and approvals are web-only" in failing_check()


def test_routes_and_links_are_set_from_the_command_line_and_audited(slack):
    out = slack_command(
        "route", "shop", "--channel", APPROVALS, "--dm-approvers", "--escalation-channel", "C9"
    )
    assert out.strip() == f"shop: channel={APPROVALS} dm_approvers=yes escalation_channel=C9"
    slack_command("route", "shop", "--no-dm-approvers")
    route = SlackRoute.objects.get(project=slack.project)
    assert (route.channel, route.dm_approvers, route.escalation_channel) == (APPROVALS, False, "C9")

    slack_command("link", "bob", "UBOBWORK")
    link = SlackUserLink.objects.get(slack_user_id="UBOBWORK")
    assert (link.user, link.verified_via) == (slack.bob, SlackLinkMethod.ADMIN)
    slack_command("unlink", "UBOBWORK")
    assert not SlackUserLink.objects.filter(slack_user_id="UBOBWORK").exists()

    actions = list(AuditEvent.objects.filter(action__startswith="slack.").values_list("action", flat=True))
    assert actions == [
        "slack.route_changed",
        "slack.route_changed",
        "slack.user_linked",
        "slack.user_unlinked",
    ]
