"""`manage.py slack check`: is the Slack app installed the way Veil needs it, and if not, what to do."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from jitaccess.models import ApprovalPolicy, SlackRoute
from jitaccess.slack.client import slack_client, slack_error

# Keep in step with slack-app-manifest.yml.
REQUIRED_SCOPES = ("chat:write", "users:read", "users:read.email", "channels:read", "groups:read")


@dataclass(frozen=True)
class Finding:
    ok: bool
    subject: str
    message: str


def installation_findings() -> list[Finding]:
    """Token (auth.test), scopes (its x-oauth-scopes header), every configured channel
    (conversations.info: exists, not archived, the bot is a member) and the signing secret."""
    if not settings.SLACK_BOT_TOKEN:
        return [Finding(False, "token", "SLACK_BOT_TOKEN is empty: Slack is off and approvals are web-only")]
    findings = []
    if not settings.SLACK_SIGNING_SECRET:
        findings.append(
            Finding(
                False,
                "signing secret",
                "SLACK_SIGNING_SECRET is empty: every click in Slack is refused. Copy it from the app's "
                "Basic Information page",
            )
        )
    client = slack_client()
    try:
        auth = client.auth_test()
    except SlackApiError as exc:
        return [
            *findings,
            Finding(False, "token", f"Slack refused the token ({slack_error(exc)}): {_token_help()}"),
        ]
    except OSError as exc:
        return [*findings, Finding(False, "token", f"cannot reach Slack at {settings.SLACK_API_URL}: {exc}")]
    findings.append(
        Finding(True, "token", f"bot @{auth['user']} ({auth['user_id']}) in workspace {auth['team']}")
    )
    header = next((v for k, v in auth.headers.items() if k.lower() == "x-oauth-scopes"), "")
    granted = {scope.strip() for scope in str(header).split(",") if scope.strip()}
    missing = [scope for scope in REQUIRED_SCOPES if scope not in granted]
    if missing:
        findings.append(
            Finding(
                False,
                "scopes",
                f"missing {', '.join(missing)}: add them under OAuth & Permissions → Bot Token Scopes "
                "(or from slack-app-manifest.yml), then reinstall the app to the workspace",
            )
        )
    else:
        findings.append(Finding(True, "scopes", ", ".join(REQUIRED_SCOPES)))
    channels = configured_channels()
    if not channels:
        findings.append(Finding(True, "channels", "none configured: approvers get DMs"))
    for channel, uses in channels.items():
        findings.append(_check_channel(client, channel, uses, bot=str(auth["user"])))
    url = f"{settings.SITE_URL}/slack/interactions"
    findings.append(
        Finding(
            url.startswith("https://"),
            "interactivity",
            f"Slack must post clicks to {url}"
            + ("" if url.startswith("https://") else ": Slack only posts to https URLs (set SITE_URL)"),
        )
    )
    return findings


def configured_channels() -> dict[str, list[str]]:
    """Every channel some setting, project route or enabled approval policy names, with who names it."""
    uses: dict[str, list[str]] = defaultdict(list)
    for channel, use in (
        (settings.SLACK_APPROVAL_CHANNEL, "SLACK_APPROVAL_CHANNEL"),
        (settings.SLACK_ESCALATION_CHANNEL, "SLACK_ESCALATION_CHANNEL"),
    ):
        if channel:
            uses[channel].append(use)
    for route in SlackRoute.objects.select_related("project"):
        if route.channel:
            uses[route.channel].append(f"project {route.project.key}")
        if route.escalation_channel:
            uses[route.escalation_channel].append(f"project {route.project.key} (escalation)")
    for policy in (
        ApprovalPolicy.objects.filter(enabled=True).exclude(slack_channel="").select_related("project")
    ):
        uses[policy.slack_channel].append(f"policy {policy}")
    return dict(uses)


def _check_channel(client: WebClient, channel: str, uses: list[str], *, bot: str) -> Finding:
    subject = f"channel {channel} ({'; '.join(uses)})"
    try:
        channel_id = _channel_id(client, channel)
        if not channel_id:
            return Finding(False, subject, "not found; if it is private, invite the bot to it first")
        info = client.conversations_info(channel=channel_id)["channel"]
    except SlackApiError as exc:
        error = slack_error(exc)
        if error == "channel_not_found":
            return Finding(False, subject, "not found; if it is private, invite the bot to it first")
        return Finding(False, subject, f"cannot be checked: {error}")
    if info.get("is_archived"):
        return Finding(False, subject, "is archived: unarchive it or name another channel")
    if not info.get("is_member"):
        return Finding(False, subject, f"the bot is not a member: type `/invite @{bot}` in the channel")
    return Finding(True, subject, f"#{info.get('name', channel_id)}, the bot is a member")


def _channel_id(client: WebClient, channel: str) -> str:
    """conversations.info needs an ID; a #name is looked up in the channel list."""
    if not channel.startswith("#"):
        return channel
    name = channel[1:]
    for page in client.conversations_list(
        types="public_channel,private_channel", exclude_archived=True, limit=1000
    ):
        for found in page["channels"]:
            if found.get("name") == name:
                return str(found["id"])
    return ""


def _token_help() -> str:
    return "use the Bot User OAuth Token (xoxb-…) from OAuth & Permissions, after installing the app"
