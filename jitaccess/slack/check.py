"""`manage.py slack check`: is the Slack app installed the way Veil needs it, and if not, what to do."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from jitaccess.models import ApprovalPolicy, SlackRoute
from jitaccess.slack.client import slack_client, slack_error
from jitaccess.slack.request_modal import COMMAND, SHORTCUT

# Keep in step with slack-app-manifest.yml.
REQUIRED_SCOPES = (
    "chat:write",
    "commands",
    "users:read",
    "users:read.email",
    "channels:read",
    "groups:read",
)
MANIFEST = "slack-app-manifest.yml"


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
    return findings + manifest_findings()


def manifest_findings(path: Path | None = None) -> list[Finding]:
    """Does the app manifest (slack-app-manifest.yml, what the app is created from) declare what
    Veil listens to: the /veil command and the options load URL on Veil's endpoints, and the
    global shortcut's callback ID? Each line also says the URL Slack must be given for this SITE_URL."""
    path = path or Path(settings.BASE_DIR) / MANIFEST
    try:
        manifest: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [Finding(False, "manifest", f"cannot read {path}: {exc}")]
    features = manifest.get("features") or {}
    interactivity = (manifest.get("settings") or {}).get("interactivity") or {}
    command = next((c for c in features.get("slash_commands") or [] if c.get("command") == COMMAND), None)
    shortcut = next((s for s in features.get("shortcuts") or [] if s.get("callback_id") == SHORTCUT), None)
    fix = f"fix {MANIFEST} and update the app from it (App Manifest in the app's settings)"
    return [
        _declared("slash command", COMMAND, command and command.get("url"), "/slack/commands", fix),
        Finding(
            bool(shortcut) and (shortcut or {}).get("type") == "global",
            "shortcut",
            f"global shortcut with callback ID {SHORTCUT}"
            + ("" if shortcut and shortcut.get("type") == "global" else f": not declared; {fix}"),
        ),
        _declared(
            "options load URL",
            "the request modal",
            interactivity.get("message_menu_options_url"),
            "/slack/options",
            fix,
        ),
    ]


def _declared(subject: str, what: str, url: Any, path: str, fix: str) -> Finding:
    expected = f"{settings.SITE_URL}{path}"
    if not url:
        return Finding(False, subject, f"{what} is not declared: {fix}")
    if urlsplit(str(url)).path != path:
        return Finding(False, subject, f"{what} points at {url}, not Veil's {path}: {fix}")
    https = "" if expected.startswith("https://") else ": Slack only posts to https URLs (set SITE_URL)"
    return Finding(not https, subject, f"Slack must post {what} to {expected}{https}")


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
