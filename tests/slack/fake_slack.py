"""A fake Slack Web API served on loopback, for the real slack-sdk WebClient (through `base_url`).

It implements the methods Veil calls, keeps the messages it was sent (so a test can read what a
channel shows), records every call, and can be told to fail: answer an error, answer 429 with
Retry-After, hang past the client's timeout without acting, or be down altogether. Like Slack, it
refuses blocks and views past Block Kit's documented limits (`invalid_blocks`, `invalid_arguments`).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.loopback_http import LoopbackServer

TOKEN = "xoxb-test-token"
BOT_USER_ID = "UVEILBOT"
ALL_SCOPES = ("chat:write", "commands", "users:read", "users:read.email", "channels:read", "groups:read")


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int = 200


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str = ""
    updates: int = 0

    @property
    def has_buttons(self) -> bool:
        return any(b.get("type") == "actions" for b in self.blocks)

    @property
    def shown(self) -> str:
        """All the text a reader sees, for assertions."""
        return json.dumps(self.blocks, ensure_ascii=False) if self.blocks else self.text


@dataclass
class Fault:
    kind: str  # "error", "ratelimit" or "hang"
    error: str = ""
    retry_after: int = 0
    seconds: float = 0.0


@dataclass
class FakeSlack(LoopbackServer):
    users: dict[str, str] = field(default_factory=dict)  # email -> Slack user ID
    profiles: dict[str, str] = field(default_factory=dict)  # Slack user ID -> email, beyond `users`
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # ID -> name, is_member, is_archived
    scopes: tuple[str, ...] = ALL_SCOPES
    token: str = TOKEN
    down: bool = False
    calls: list[Call] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posted to a response_url

    def __post_init__(self) -> None:
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ts = itertools.count(1)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.root}/api/"

    # --- scripting -----------------------------------------------------------------------------

    def fail(self, method: str, error: str, times: int = 1) -> None:
        self._faults[method].extend(Fault("error", error=error) for _ in range(times))

    def rate_limit(self, method: str, retry_after: int, times: int = 1) -> None:
        self._faults[method].extend(Fault("ratelimit", retry_after=retry_after) for _ in range(times))

    def hang(self, method: str, seconds: float, times: int = 1) -> None:
        """Answer nothing for `seconds` and do nothing (the request is lost on the way)."""
        self._faults[method].extend(Fault("hang", seconds=seconds) for _ in range(times))

    # --- reading -------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def posts(self) -> list[Message]:
        """Top-level messages (not thread replies), oldest first."""
        with self._lock:
            return [m for m in self.messages if not m.thread_ts]

    def replies(self) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.thread_ts]

    def in_channel(self, channel: str) -> list[Message]:
        return [m for m in self.posts() if m.channel == channel]

    # --- the API -------------------------------------------------------------------------------

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        url = urlsplit(http.path)
        if url.path.startswith("/hooks/"):
            self._respond(http, url.path)
            return
        method = url.path.rsplit("/", 1)[-1]
        params: dict[str, Any] = dict(parse_qsl(url.query))
        raw = http.rfile.read(int(http.headers.get("Content-Length") or 0)).decode()
        if raw and "json" in (http.headers.get("Content-Type") or ""):
            params.update(json.loads(raw))
        elif raw:
            params.update(parse_qsl(raw))
        token = (http.headers.get("Authorization") or "").removeprefix("Bearer ") or params.get("token", "")
        with self._lock:
            fault = self._faults[method].popleft() if self._faults[method] else None
            if self.down:
                status, body, headers = 503, {"ok": False, "error": "service_unavailable"}, {}
            elif fault is not None and fault.kind == "error":
                status, body, headers = 200, {"ok": False, "error": fault.error}, {}
            elif fault is not None and fault.kind == "ratelimit":
                status, body = 429, {"ok": False, "error": "ratelimited"}
                headers = {"Retry-After": str(fault.retry_after)}
            elif fault is not None and fault.kind == "hang":
                status, body, headers = 0, {}, {}
            elif token != self.token:
                status, body, headers = 200, {"ok": False, "error": "invalid_auth"}, {}
            else:
                status, headers = 200, {}
                body = getattr(self, "_" + method.replace(".", "_"), self._unknown)(params)
                if method == "auth.test":
                    headers["x-oauth-scopes"] = ",".join(self.scopes)
            self.calls.append(Call(method, params, status))
        if fault is not None and fault.kind == "hang":
            self._stop.wait(fault.seconds)
            return  # no answer: the client times out
        self.send(http, status, json.dumps(body).encode(), headers=headers)

    def _respond(self, http: BaseHTTPRequestHandler, path: str) -> None:
        """A command's response_url (hooks.slack.com in Slack): the JSON message, answered "ok"."""
        raw = http.rfile.read(int(http.headers.get("Content-Length") or 0)).decode()
        with self._lock:
            self.responses.append({"path": path, **json.loads(raw or "{}")})
        self.send(http, 200, b"ok", content_type="text/plain")

    def hook_url(self, name: str = "1") -> str:
        """A response_url this fake answers, as Slack gives one with each command."""
        return self.url.replace("/api/", f"/hooks/commands/T0ACME/{name}")

    def _unknown(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": False, "error": "unknown_method"}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "team": "Acme", "team_id": "T0ACME", "user": "veil", "user_id": BOT_USER_ID}

    def _conversation(self, channel: str) -> str:
        """The conversation a post goes to: a DM for a user ID, a known channel by ID or #name."""
        if channel.startswith("U"):
            return "D" + channel[1:]
        if channel.startswith("#"):
            return next((cid for cid, c in self.channels.items() if c["name"] == channel[1:]), "")
        return channel if channel in self.channels else ""

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        if problem := block_kit_problem(_blocks(params.get("blocks"))):
            return {"ok": False, "error": "invalid_blocks", "errors": [problem]}
        conversation = self._conversation(str(params.get("channel", "")))
        if not conversation:
            return {"ok": False, "error": "channel_not_found"}
        if conversation.startswith("C") and not self.channels[conversation].get("is_member"):
            return {"ok": False, "error": "not_in_channel"}
        message = Message(
            channel=conversation,
            ts=f"{1_700_000_000 + next(self._ts)}.000100",
            text=str(params.get("text", "")),
            blocks=_blocks(params.get("blocks")),
            thread_ts=str(params.get("thread_ts", "")),
        )
        self.messages.append(message)
        return {"ok": True, "channel": conversation, "ts": message.ts, "message": {"text": message.text}}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        if problem := block_kit_problem(_blocks(params.get("blocks"))):
            return {"ok": False, "error": "invalid_blocks", "errors": [problem]}
        for message in self.messages:
            if (message.channel, message.ts) == (params.get("channel"), params.get("ts")):
                message.text, message.blocks = str(params.get("text", "")), _blocks(params.get("blocks"))
                message.updates += 1
                return {"ok": True, "channel": message.channel, "ts": message.ts}
        return {"ok": False, "error": "message_not_found"}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self.ephemerals.append(params)
        return {"ok": True, "message_ts": f"{1_700_000_000 + next(self._ts)}.000200"}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if problem := view_problem(_json(view)):
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": [problem]}}
        self.views.append({"trigger_id": params.get("trigger_id"), "view": _json(view)})
        return {"ok": True, "view": {"id": f"V{len(self.views)}"}}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = _json(params.get("view"))
        if problem := view_problem(view):
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": [problem]}}
        for number, opened in enumerate(self.views, start=1):
            if f"V{number}" == params.get("view_id"):
                opened["view"], opened["updates"] = view, opened.get("updates", 0) + 1
                return {"ok": True, "view": {"id": params["view_id"]}}
        return {"ok": False, "error": "not_found"}

    def _users_lookupByEmail(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email", "")).lower()
        if email not in self.users:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": {"id": self.users[email], "profile": {"email": email}}}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user", ""))
        emails = {slack_id: email for email, slack_id in self.users.items()} | self.profiles
        if user_id not in emails:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": user_id, "profile": {"email": emails[user_id]}}}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": {"id": params["channel"], **channel}}

    def _conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        listed = [{"id": cid, **c} for cid, c in self.channels.items() if not c.get("is_archived")]
        return {"ok": True, "channels": listed, "response_metadata": {"next_cursor": ""}}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _blocks(value: Any) -> list[dict[str, Any]]:
    return _json(value) or []


# Block Kit's documented limits (api.slack.com/reference/block-kit), the ones Veil's messages meet.
MAX_BLOCKS, MAX_TEXT, MAX_FIELD, MAX_FIELDS, MAX_HEADER = 50, 3000, 2000, 10, 150
MAX_ELEMENTS, MAX_BUTTON_TEXT, MAX_BUTTON_VALUE, MAX_URL = 25, 75, 2000, 3000
MAX_CONFIRM_TITLE, MAX_CONFIRM_TEXT, MAX_CONFIRM_BUTTON = 100, 300, 30
MAX_VIEW_TITLE, MAX_VIEW_METADATA, MAX_LABEL = 24, 3000, 2000


def block_kit_problem(blocks: list[dict[str, Any]]) -> str:
    """What Slack would refuse in these blocks, or "". Lengths are counted as sent (escaped)."""

    def text_of(obj: Any) -> str:
        return str((obj or {}).get("text", ""))

    if len(blocks) > MAX_BLOCKS:
        return f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"
    for i, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{i}]"
        kind = block.get("type")
        if kind == "section":
            if len(text_of(block.get("text"))) > MAX_TEXT:
                return f"must be less than {MAX_TEXT + 1} characters {where}/text/text"
            fields = block.get("fields") or []
            if len(fields) > MAX_FIELDS or any(len(text_of(f)) > MAX_FIELD for f in fields):
                return f"fields over the limits {where}/fields"
        elif kind == "header" and len(text_of(block.get("text"))) > MAX_HEADER:
            return f"must be less than {MAX_HEADER + 1} characters {where}/text/text"
        elif kind == "context":
            elements = block.get("elements") or []
            if len(elements) > 10 or any(len(text_of(e)) > MAX_TEXT for e in elements):
                return f"elements over the limits {where}/elements"
        elif kind == "actions":
            elements = block.get("elements") or []
            if len(elements) > MAX_ELEMENTS:
                return f"no more than {MAX_ELEMENTS} items allowed {where}/elements"
            for element in elements:
                if problem := _button_problem(element):
                    return f"{problem} {where}"
    return ""


def _button_problem(button: dict[str, Any]) -> str:
    if len(str(button["text"]["text"])) > MAX_BUTTON_TEXT:
        return "button text too long"
    if len(str(button.get("value", ""))) > MAX_BUTTON_VALUE or len(str(button.get("url", ""))) > MAX_URL:
        return "button value or url too long"
    confirm = button.get("confirm")
    if confirm and (
        len(confirm["title"]["text"]) > MAX_CONFIRM_TITLE
        or len(confirm["text"]["text"]) > MAX_CONFIRM_TEXT
        or len(confirm["confirm"]["text"]) > MAX_CONFIRM_BUTTON
        or len(confirm["deny"]["text"]) > MAX_CONFIRM_BUTTON
    ):
        return "confirm dialog over the limits"
    return ""


def view_problem(view: dict[str, Any]) -> str:
    """What views.open would refuse in a modal, or ""."""
    for part in ("title", "submit", "close"):
        if len(str((view.get(part) or {}).get("text", ""))) > MAX_VIEW_TITLE:
            return f"{part} must be less than {MAX_VIEW_TITLE + 1} characters"
    if len(str(view.get("private_metadata", ""))) > MAX_VIEW_METADATA:
        return "private_metadata too long"
    if any(len(str(b.get("label", {}).get("text", ""))) > MAX_LABEL for b in view.get("blocks", [])):
        return "label too long"
    return block_kit_problem([b for b in view.get("blocks", []) if b.get("type") != "input"])
