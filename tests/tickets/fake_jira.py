"""A fake Jira Cloud served on loopback, for Veil's real HTTP client.

It serves the one endpoint Veil reads, with the documented request and answer (Jira Cloud
platform REST API v3): `GET /rest/api/3/issue/{issueIdOrKey}?fields=summary,status` with HTTP
basic auth `email:api_token`, answered `{"expand", "id", "self", "key", "fields": {"summary",
"status": {"self", "description", "iconUrl", "name", "id", "statusCategory": {"self", "id", "key",
"colorName", "name"}}}}`. Status categories are `new` (To Do), `indeterminate` (In Progress) and
`done` (Done). An unknown key gets 404 and bad credentials 401, each with `{"errorMessages": [...],
"errors": {}}`. An issue moved to another project answers, under its old key, as itself.

Issues are the test's to change at any moment (`issue`, `move`). Every call is recorded, and the
fake can be told to fail the next calls: answer a status, answer a body that is not JSON or not
the documented shape, redirect, or hang past the client's timeout.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback_http import LoopbackServer

JIRA_EMAIL = "veil-bot@acme.example"
JIRA_TOKEN = "jira-test-api-token"
CATEGORIES = {  # key -> (id, colour, name)
    "new": (2, "blue-gray", "To Do"),
    "indeterminate": (4, "yellow", "In Progress"),
    "done": (3, "green", "Done"),
}


@dataclass
class Issue:
    key: str
    summary: str
    status: str = "In Progress"
    category: str = "indeterminate"


@dataclass
class Call:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int


@dataclass
class FakeJira(LoopbackServer):
    email: str = JIRA_EMAIL
    token: str = JIRA_TOKEN
    issues: dict[str, Issue] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)  # old key -> new key
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._faults: deque[tuple[str, Any]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return self.root

    # --- scripting -----------------------------------------------------------------------------

    def issue(
        self, key: str, summary: str, status: str = "In Progress", category: str = "indeterminate"
    ) -> None:
        self.issues[key] = Issue(key, summary, status, category)

    def move(self, old_key: str, new_key: str) -> None:
        """The issue moved to another project: it answers under its old key with its new one."""
        issue = self.issues.pop(old_key)
        self.issues[new_key] = Issue(new_key, issue.summary, issue.status, issue.category)
        self.moved[old_key] = new_key

    def fail(self, kind: str, value: Any = None, times: int = 1) -> None:
        """The next `times` calls: "status" (answer `value`), "not_json", "wrong_shape",
        "redirect" or "hang" (`value` seconds, no answer)."""
        self._faults.extend((kind, value) for _ in range(times))

    # --- serving -------------------------------------------------------------------------------

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        url = urlsplit(http.path)
        query = parse_qs(url.query)
        headers = {k.lower(): v for k, v in http.headers.items()}
        extra: dict[str, str] = {}
        with self._lock:
            kind, value = self._faults.popleft() if self._faults else ("", None)
            if kind == "hang":
                status, body = 0, b""
            elif kind == "status":
                status, body = value, _errors("Internal server error")
            elif kind == "not_json":
                status, body = 200, b"<html>Atlassian is down for maintenance</html>"
            elif kind == "wrong_shape":
                status, body = 200, json.dumps({"key": "OPS-1", "fields": {"summary": "no status"}}).encode()
            elif kind == "redirect":
                status, body = 302, b""
                extra["Location"] = "http://169.254.169.254/latest/meta-data/"
            else:
                status, answer = self._answer(unquote(url.path), query, headers)
                body = json.dumps(answer).encode()
            self.calls.append(Call(url.path, query, headers, status))
        if kind == "hang":
            self._stop.wait(float(value or 5))
            return  # no answer: the client times out
        self.send(http, status, body, content_type="application/json;charset=UTF-8", headers=extra)

    def _answer(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if headers.get("authorization") != expected:
            return 401, {
                "errorMessages": [
                    "You are not authenticated. Authentication required to perform this operation."
                ],
                "errors": {},
            }
        prefix = "/rest/api/3/issue/"
        key = path[len(prefix) :] if path.startswith(prefix) else ""
        issue = self.issues.get(self.moved.get(key, key)) if key and "/" not in key else None
        if issue is None:
            return 404, {
                "errorMessages": ["Issue does not exist or you do not have permission to see it."],
                "errors": {},
            }
        wanted = set(",".join(query.get("fields", [])).split(",")) - {""}
        return 200, self._issue(issue, wanted)

    def _issue(self, issue: Issue, wanted: set[str]) -> dict[str, Any]:
        number = abs(hash(issue.key)) % 90000 + 10000
        category_id, colour, category_name = CATEGORIES[issue.category]
        site = "https://acme.atlassian.net"
        fields: dict[str, Any] = {
            "summary": issue.summary,
            "status": {
                "self": f"{site}/rest/api/3/status/{category_id}",
                "description": "",
                "iconUrl": f"{site}/images/icons/statuses/generic.png",
                "name": issue.status,
                "id": str(category_id),
                "statusCategory": {
                    "self": f"{site}/rest/api/3/statuscategory/{category_id}",
                    "id": category_id,
                    "key": issue.category,
                    "colorName": colour,
                    "name": category_name,
                },
            },
            "description": {"type": "doc", "version": 1, "content": []},
            "labels": ["pii"],
        }
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": str(number),
            "self": f"{site}/rest/api/3/issue/{number}",
            "key": issue.key,
            "fields": {name: value for name, value in fields.items() if not wanted or name in wanted},
        }


def _errors(message: str) -> bytes:
    return json.dumps({"errorMessages": [message], "errors": {}}).encode()
