"""Fake PagerDuty and Opsgenie REST APIs served on loopback, for Veil's real HTTP client.

Each serves the one endpoint Veil reads, with the documented request and answer:

- PagerDuty REST API v2, `GET /oncalls?schedule_ids[]=…&include[]=users` with `Authorization:
  Token token=…` and `Accept: application/vnd.pagerduty+json;version=2`: `{"oncalls": [...],
  "limit", "offset", "more", "total"}`, each entry with its `user` (a full user, with `email`,
  because of the include), `schedule` and `escalation_policy` references, `escalation_level`,
  `start` and `end`. A wrong token gets 401 with `{"error": {"message", "code"}}`.
- Opsgenie, `GET /v2/schedules/{id}/on-calls?scheduleIdentifierType=id&flat=true` with
  `Authorization: GenieKey …`: `{"data": {"_parent": {"id", "name", "enabled"},
  "onCallRecipients": [usernames]}, "took", "requestId"}`. An unknown schedule gets 404 and a
  wrong key 401, each with `{"message", "took", "requestId"}`.

Who is on call is the test's to change at any moment (a shift change): `on_call[schedule_id]`
holds the people on call now. Every call is recorded, and the fake can be told to fail the next
calls: answer a status, answer a body that is not JSON or not the documented shape, redirect,
hang past the client's timeout, or (PagerDuty) ignore the schedule filter.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback_http import LoopbackServer

PAGERDUTY_TOKEN = "pd-test-token"
OPSGENIE_KEY = "og-test-key"


@dataclass(frozen=True)
class OnCall:
    """Someone on call now: their email (PagerDuty user email, Opsgenie username), their shift."""

    email: str
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def for_hours(cls, email: str, started_hours_ago: int = 2, hours: int = 8) -> OnCall:
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = hour - timedelta(hours=started_hours_ago)
        return cls(email, start, start + timedelta(hours=hours))


@dataclass
class Call:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int


@dataclass
class _FakeServer(LoopbackServer):
    """What both fakes share: a threaded server on loopback, the calls, the scripted faults."""

    schedule_names: dict[str, str] = field(default_factory=dict)  # schedule ID -> name
    on_call: dict[str, list[OnCall]] = field(default_factory=dict)  # schedule ID -> who is on call now
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._faults: deque[tuple[str, Any]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return self.root

    # --- scripting -----------------------------------------------------------------------------

    def schedule(self, schedule_id: str, name: str, *people: OnCall) -> None:
        self.schedule_names[schedule_id] = name
        self.on_call[schedule_id] = list(people)

    def fail(self, kind: str, value: Any = None, times: int = 1) -> None:
        """The next `times` calls: "status" (answer `value`), "not_json", "wrong_shape",
        "redirect", "hang" (`value` seconds, no answer) or "ignore_filter" (PagerDuty)."""
        self._faults.extend((kind, value) for _ in range(times))

    # --- serving -------------------------------------------------------------------------------

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        url = urlsplit(http.path)
        query = parse_qs(url.query)
        headers = {k.lower(): v for k, v in http.headers.items()}
        with self._lock:
            kind, value = self._faults.popleft() if self._faults else ("", None)
            if kind == "hang":
                status, body, extra = 0, b"", {}
            elif kind == "status":
                status, body, extra = value, json.dumps(self._error(value)).encode(), {}
            elif kind == "not_json":
                status, body, extra = 200, b"<html>Service Unavailable</html>", {}
            elif kind == "wrong_shape":
                status, body, extra = 200, json.dumps({"result": "ok"}).encode(), {}
            elif kind == "redirect":
                status, body, extra = 302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}
            else:
                ignore = kind == "ignore_filter"
                status, answer = self._answer(unquote(url.path), query, headers, ignore_filter=ignore)
                body, extra = json.dumps(answer).encode(), {}
            self.calls.append(Call(url.path, query, headers, status))
        if kind == "hang":
            self._stop.wait(float(value or 5))
            return  # no answer: the client times out
        self.send(http, status, body, headers=extra)

    def _answer(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str], *, ignore_filter: bool
    ) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def _error(self, status: int) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class FakePagerDuty(_FakeServer):
    token: str = PAGERDUTY_TOKEN

    def _error(self, status: int) -> dict[str, Any]:
        return {"error": {"message": "Internal Server Error" if status >= 500 else "Error", "code": 2001}}

    def _answer(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str], *, ignore_filter: bool
    ) -> tuple[int, dict[str, Any]]:
        if path != "/oncalls":
            return 404, {"error": {"message": "Not Found", "code": 2100}}
        if headers.get("authorization") != f"Token token={self.token}":
            return 401, {"error": {"message": "Unauthorized", "code": 2006}}
        wanted = query.get("schedule_ids[]", [])
        with_users = "users" in query.get("include[]", [])
        entries = [
            self._entry(schedule_id, person, with_users)
            for schedule_id, people in self.on_call.items()
            if ignore_filter or not wanted or schedule_id in wanted
            for person in people
        ]
        limit, offset = int(query.get("limit", ["25"])[0]), int(query.get("offset", ["0"])[0])
        page = entries[offset : offset + limit]
        return 200, {
            "oncalls": page,
            "limit": limit,
            "offset": offset,
            "more": offset + limit < len(entries),
            "total": None,
        }

    def _entry(self, schedule_id: str, person: OnCall, with_users: bool) -> dict[str, Any]:
        user_id = "P" + uuid.uuid5(uuid.NAMESPACE_DNS, person.email).hex[:6].upper()
        user: dict[str, Any] = {
            "id": user_id,
            "type": "user_reference",
            "summary": person.email.split("@")[0].title(),
            "self": f"https://api.pagerduty.com/users/{user_id}",
            "html_url": f"https://acme.pagerduty.com/users/{user_id}",
        }
        if with_users:  # include[]=users: the full user, email included
            user |= {"type": "user", "name": user["summary"], "email": person.email, "time_zone": "UTC"}
        return {
            "escalation_policy": {
                "id": "PEP0001",
                "type": "escalation_policy_reference",
                "summary": "Data platform",
                "self": "https://api.pagerduty.com/escalation_policies/PEP0001",
                "html_url": "https://acme.pagerduty.com/escalation_policies/PEP0001",
            },
            "escalation_level": 1,
            "schedule": {
                "id": schedule_id,
                "type": "schedule_reference",
                "summary": self.schedule_names.get(schedule_id, schedule_id),
                "self": f"https://api.pagerduty.com/schedules/{schedule_id}",
                "html_url": f"https://acme.pagerduty.com/schedules/{schedule_id}",
            },
            "user": user,
            "start": _iso(person.start),
            "end": _iso(person.end),
        }


@dataclass
class FakeOpsgenie(_FakeServer):
    key: str = OPSGENIE_KEY
    disabled: set[str] = field(default_factory=set)

    def _error(self, status: int) -> dict[str, Any]:
        return {"message": "Internal Server Error", "took": 0.001, "requestId": str(uuid.uuid4())}

    def _answer(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str], *, ignore_filter: bool
    ) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["v2", "schedules"] or parts[3] != "on-calls":
            return 404, {"message": "Not found", "took": 0.001, "requestId": str(uuid.uuid4())}
        if headers.get("authorization") != f"GenieKey {self.key}":
            return 401, {"message": "Could not authenticate", "took": 0.001, "requestId": str(uuid.uuid4())}
        schedule_id = parts[2]
        if schedule_id not in self.on_call:
            message = f"Schedule with identifier [{schedule_id}] not found"
            return 404, {"message": message, "took": 0.002, "requestId": str(uuid.uuid4())}
        parent = {
            "id": schedule_id,
            "name": self.schedule_names.get(schedule_id, schedule_id),
            "enabled": schedule_id not in self.disabled,
        }
        people = [p.email for p in self.on_call[schedule_id]]
        if query.get("flat") == ["true"]:
            data: dict[str, Any] = {"_parent": parent, "onCallRecipients": people}
        else:
            data = {
                "_parent": parent,
                "onCallParticipants": [{"id": str(uuid.uuid4()), "name": p, "type": "user"} for p in people],
            }
        return 200, {"data": data, "took": 0.104, "requestId": str(uuid.uuid4())}


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None
