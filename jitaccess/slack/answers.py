"""A click and the private answers to its clicker: who clicked what (`Click`), an ephemeral reply,
and the reason modal kept for a clicker Veil could not place inside the acknowledgement. Shared by
the request, policy-change and access-review listeners, which `interactions` registers."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from jitaccess.slack.blocks import notice_modal
from jitaccess.slack.clicks import click_record
from jitaccess.slack.client import slack_client
from jitaccess.slack.models import SlackClick
from jitaccess.slack.selectors import linked_user

logger = logging.getLogger(__name__)
MODAL_KEPT_S = 10 * 60  # how long the view ID of an unlinked clicker's reason modal is remembered


@dataclass(frozen=True)
class Click:
    """Who clicked what, and where to answer them privately. For a policy-change button,
    `request_id` holds the change's ID."""

    slack_user_id: str
    request_id: int | None
    channel_id: str
    message_ts: str

    @classmethod
    def from_action(cls, body: dict[str, Any]) -> Click:
        value = str(body["actions"][0].get("value", ""))
        container = body.get("container") or {}
        return cls(
            slack_user_id=body["user"]["id"],
            request_id=int(value) if value.isdigit() else None,
            channel_id=container.get("channel_id") or (body.get("channel") or {}).get("id", ""),
            message_ts=container.get("message_ts", ""),
        )

    @classmethod
    def from_submission(cls, body: dict[str, Any]) -> Click:
        """The modal carries the request and the clicked message in its private metadata."""
        meta = json.loads(body["view"].get("private_metadata") or "{}")
        request_id = meta.get("request")
        return cls(
            slack_user_id=body["user"]["id"],
            request_id=request_id if isinstance(request_id, int) else None,
            channel_id=str(meta.get("channel", "")),
            message_ts=str(meta.get("ts", "")),
        )

    @classmethod
    def recorded(cls, click: SlackClick) -> Click:
        return cls(click.slack_user_id, click.target_id, click.channel_id, click.message_ts)

    def metadata(self) -> str:
        return json.dumps({"request": self.request_id, "channel": self.channel_id, "ts": self.message_ts})

    def record(self, body: dict[str, Any], kind: str, text: str = "") -> None:
        """Commit this click for `apply_recorded` (inside the acknowledgement)."""
        click_record(
            body=body,
            kind=kind,
            slack_user_id=self.slack_user_id,
            target_id=self.request_id,
            channel_id=self.channel_id,
            message_ts=self.message_ts,
            text=text,
        )


def remember_modal(body: dict[str, Any], opened: Any, *, unsettled: bool = False) -> None:
    """Keep the view ID of a reason modal opened for a clicker Veil does not know yet (inside the
    ack, where Slack may not be asked who they are), or whose right to decide is `unsettled` until
    the on-call provider is asked, for the lazy listener to replace if need be."""
    if unsettled or linked_user(body["user"]["id"]) is None:
        cache.set(_modal_key(body), str(opened["view"]["id"]), MODAL_KEPT_S)


def unlinked_modal(body: dict[str, Any]) -> str:
    """The view ID `remember_modal` kept for this click, or ""."""
    return str(cache.get(_modal_key(body)) or "")


def replace_modal(body: dict[str, Any], view_id: str, title: str, text: str) -> None:
    """Show `text` in place of the reason a modal asks for: nothing is left to submit. Falls back
    to a private message if the modal cannot be updated (closed already, say)."""
    try:
        slack_client().views_update(view_id=view_id, view=notice_modal(title=title, text=text))
    except Exception:
        logger.info("could not update modal %s; answering in the channel", view_id, exc_info=True)
        reply(Click.from_action(body), text)


def _modal_key(body: dict[str, Any]) -> str:
    return f"slack:unlinked-modal:{body['user']['id']}:{body['trigger_id']}"


def reply(click: Click, text: str) -> None:
    """An ephemeral answer to the clicker. Best effort: the decision already stands."""
    if not click.channel_id:
        return
    try:
        slack_client().chat_postEphemeral(channel=click.channel_id, user=click.slack_user_id, text=text)
    except Exception:
        logger.warning("could not answer %s in %s", click.slack_user_id, click.channel_id, exc_info=True)
