"""Slack tests: the real slack-sdk client against a fake Slack on loopback, interactions signed
with Slack's scheme and posted to the real endpoint, the outbox delivered by its own functions."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from jitaccess.slack.interactions import request_handler
from jitaccess.tasks import deliver_pending_notifications
from tests.jitaccess.conftest import World, world  # noqa: F401  (the personas)
from tests.slack.fake_slack import TOKEN, FakeSlack

SIGNING_SECRET = "test-signing-secret"
APPROVALS = "CAPPROVALS"
ESCALATIONS = "CESCALATE"
SLACK_IDS = {"alice": "UALICE", "bob": "UBOB", "carol": "UCAROL", "dave": "UDAVE", "eve": "UEVE"}


@pytest.fixture
def fake_slack():
    fake = FakeSlack(
        channels={
            APPROVALS: {"name": "pii-approvals", "is_member": True},
            ESCALATIONS: {"name": "security-oncall", "is_member": True},
        }
    ).start()
    yield fake
    fake.stop()


@pytest.fixture
def slack(settings, fake_slack, world) -> World:  # noqa: F811
    """Slack switched on against the fake; everyone's IdP email verified and known to Slack."""
    settings.SLACK_BOT_TOKEN = TOKEN
    settings.SLACK_ENABLED = True
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_TEAM_ID, settings.SLACK_APP_ID = "T0ACME", "A0VEIL"
    settings.SLACK_API_URL = fake_slack.url
    settings.SLACK_API_TIMEOUT_S = 1
    settings.SLACK_RATE_LIMIT_MAX_WAIT_S = 1
    settings.SLACK_APPROVAL_CHANNEL = APPROVALS
    settings.SLACK_ESCALATION_CHANNEL = ESCALATIONS
    settings.SLACK_WEB_CONFIRM_LEVEL = 4
    settings.SITE_URL = "https://veil.example"
    # A cache of this test's own: Slack lookups and seen interactions must not leak between tests.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": str(uuid.uuid4())}
    }
    for person in (world.alice, world.bob, world.carol, world.dave, world.eve):
        person.email_verified = True
        person.save(update_fields=["email_verified"])
        fake_slack.users[person.email] = SLACK_IDS[person.username]
    return world


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Outbox rows stay in the database for the test to deliver; nothing goes to a shared broker."""
    monkeypatch.setattr("jitaccess.services.notifications.enqueue_deliveries", lambda ids: None)


class DeferredLazyListeners:
    """Stands in for Bolt's thread-based lazy runner: holds the work that follows the ack until
    the test runs it, on the test's thread and transaction, with exceptions surfacing."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, Any]] = []

    def start(self, function: Any, request: Any) -> None:
        self.pending.append((function, request))

    def run(self) -> None:
        while self.pending:
            function, request = self.pending.pop(0)
            function(body=request.body)


@pytest.fixture
def after_ack(slack):
    runner = request_handler().app.listener_runner
    original, runner.lazy_listener_runner = runner.lazy_listener_runner, DeferredLazyListeners()
    yield runner.lazy_listener_runner
    runner.lazy_listener_runner = original


def sign(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    """Slack's scheme: v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def post_interaction(
    client: Client,
    payload: dict[str, Any],
    *,
    timestamp: int | None = None,
    secret: str = SIGNING_SECRET,
    headers: dict[str, str] | None = None,
) -> tuple[Any, str, dict[str, str]]:
    """POST a signed payload; returns the response and what was sent, for replaying it."""
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = int(time.time()) if timestamp is None else timestamp
    sent = {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": sign(body, timestamp, secret)}
    sent.update(headers or {})
    return replay(client, body, sent), body, sent


def replay(client: Client, body: str, headers: dict[str, str]) -> Any:
    return client.post(
        "/slack/interactions", data=body, content_type="application/x-www-form-urlencoded", headers=headers
    )


def click(
    action_id: str, request_pk: int, *, user: str, channel: str = APPROVALS, message_ts: str = ""
) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a button in one of Veil's messages."""
    return {
        "type": "block_actions",
        "team": {"id": "T0ACME", "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0ACME"},
        "api_app_id": "A0VEIL",
        "token": "legacy-verification-token",
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "container": {"type": "message", "channel_id": channel, "message_ts": message_ts or "1.000100"},
        "channel": {"id": channel, "name": "pii-approvals"},
        "message": {"ts": message_ts or "1.000100", "text": ""},
        "response_url": "https://hooks.slack.invalid/actions/T0ACME/1/x",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"request:{request_pk}",
                "value": str(request_pk),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def deny_submission(request_pk: int, reason: str, *, user: str, channel: str = APPROVALS) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T0ACME", "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0ACME"},
        "api_app_id": "A0VEIL",
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "deny_modal",
            "private_metadata": json.dumps({"request": request_pk, "channel": channel, "ts": "1.000100"}),
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
        },
    }


def deliver_outbox() -> int:
    """One run of the outbox's periodic sweep, as the beat schedule runs it; how many rows were due."""
    return deliver_pending_notifications()
