"""Who is on call now for a PagerDuty or Opsgenie schedule, asked over their REST APIs.

An approval policy may name a schedule: whoever is on call for it counts as an approver, and the
responder on call may be approved at once for a short while (`jitaccess.selectors.oncall`). The
answer decides who may approve, so it is read afresh at every decision and never cached: a shift
that changed a minute ago counts at once. Anything Veil cannot trust (no token, an error status, a
redirect, a body that is not the documented JSON, a timeout) raises `OnCallUnavailable`, and the
caller then treats nobody as on call: the outside API being down never approves anything.

- PagerDuty: `GET /oncalls?schedule_ids[]=ID&include[]=users` with `Authorization: Token
  token=…` (REST API v2); an entry names its user (with `email`, thanks to the include), its
  schedule and the shift's `start` and `end` (null for someone always on call).
- Opsgenie: `GET /v2/schedules/ID/on-calls?scheduleIdentifierType=id&flat=true` with
  `Authorization: GenieKey …`; `data.onCallRecipients` lists the usernames (emails) on call and
  `data._parent` the schedule. Opsgenie does not say when their shift ends.

Only entries for the schedule asked about count, so an API that ignored the filter would not make
everyone in the account an approver. urllib3 (a dependency already, used by audit streams) with no
retries and no redirects; the base URLs are the operator's settings, not anyone's input, and
schedule IDs are checked before they are put in a path.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import models
from django.utils import timezone
from urllib3.exceptions import HTTPError

from jitaccess import outside_apis

logger = logging.getLogger(__name__)

USER_AGENT = "Veil-OnCall/1"
SCHEDULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_BODY_BYTES = 1024 * 1024
MAX_NAME = 200  # a schedule's name, as the provider gives it, shown in notes and messages
PAGERDUTY_PAGE_SIZE = 100
PAGERDUTY_MAX_PAGES = 5  # 500 on-call entries for one schedule is not a schedule Veil understands


class OnCallProvider(models.TextChoices):
    PAGERDUTY = "pagerduty", "PagerDuty"
    OPSGENIE = "opsgenie", "Opsgenie"


class OnCallUnavailable(Exception):
    """The provider could not say who is on call; the message says why (never a token)."""


@dataclass(frozen=True)
class Shift:
    """One person's turn on call; `start`/`end` are None where the provider does not say."""

    email: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class OnCallNow:
    """What the provider said about one schedule at `checked_at`."""

    provider: str
    schedule_id: str
    schedule_name: str
    shifts: tuple[Shift, ...]
    checked_at: datetime

    def shift_of(self, email: str) -> Shift | None:
        wanted = email.strip().lower()
        return next((s for s in self.shifts if s.email == wanted), None) if wanted else None


def provider_configured(provider: str) -> bool:
    """Whether Veil has the credential to ask this provider."""
    if provider == OnCallProvider.PAGERDUTY:
        return bool(settings.PAGERDUTY_API_TOKEN)
    if provider == OnCallProvider.OPSGENIE:
        return bool(settings.OPSGENIE_API_KEY)
    return False


def on_call_now(provider: str, schedule_id: str) -> OnCallNow:
    """Who is on call for the schedule right now, or OnCallUnavailable."""
    if not SCHEDULE_ID.fullmatch(schedule_id):
        raise OnCallUnavailable(f"{schedule_id!r} is not a schedule ID")
    if not provider_configured(provider):
        raise OnCallUnavailable(f"no credential for {provider or 'an unnamed provider'} is configured")
    if provider == OnCallProvider.PAGERDUTY:
        return _pagerduty(schedule_id)
    return _opsgenie(schedule_id)


def _pagerduty(schedule_id: str) -> OnCallNow:
    checked_at = timezone.now()
    headers = {
        "Authorization": f"Token token={settings.PAGERDUTY_API_TOKEN}",
        "Accept": "application/vnd.pagerduty+json;version=2",
    }
    shifts: list[Shift] = []
    name = ""
    for page in range(PAGERDUTY_MAX_PAGES):
        query = urlencode(
            [
                ("schedule_ids[]", schedule_id),
                ("include[]", "users"),
                ("limit", PAGERDUTY_PAGE_SIZE),
                ("offset", page * PAGERDUTY_PAGE_SIZE),
            ]
        )
        body = _get_json(f"{settings.PAGERDUTY_API_URL.rstrip('/')}/oncalls?{query}", headers)
        entries = body.get("oncalls") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise OnCallUnavailable("the answer has no 'oncalls' list")
        for entry in entries:
            if not isinstance(entry, dict):
                raise OnCallUnavailable("an on-call entry is not an object")
            schedule, user = entry.get("schedule"), entry.get("user")
            if not isinstance(schedule, dict) or schedule.get("id") != schedule_id:
                continue  # another schedule's entry: not ours to count
            name = name or str(schedule.get("summary") or "")[:MAX_NAME]
            email = user.get("email") if isinstance(user, dict) else None
            if isinstance(email, str) and "@" in email:
                shifts.append(
                    Shift(email.strip().lower(), _moment(entry.get("start")), _moment(entry.get("end")))
                )
        if body.get("more") is not True:
            return OnCallNow(OnCallProvider.PAGERDUTY, schedule_id, name, tuple(shifts), checked_at)
    raise OnCallUnavailable(f"more than {PAGERDUTY_MAX_PAGES * PAGERDUTY_PAGE_SIZE} on-call entries")


def _opsgenie(schedule_id: str) -> OnCallNow:
    checked_at = timezone.now()
    query = urlencode({"scheduleIdentifierType": "id", "flat": "true"})
    url = (
        f"{settings.OPSGENIE_API_URL.rstrip('/')}/v2/schedules/{quote(schedule_id, safe='')}/on-calls?{query}"
    )
    body = _get_json(url, {"Authorization": f"GenieKey {settings.OPSGENIE_API_KEY}"})
    data = body.get("data") if isinstance(body, dict) else None
    recipients = data.get("onCallRecipients") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(recipients, list):
        raise OnCallUnavailable("the answer has no 'data.onCallRecipients' list")
    parent = data.get("_parent")
    if not isinstance(parent, dict) or parent.get("id") != schedule_id:
        raise OnCallUnavailable("the answer is about another schedule")
    if parent.get("enabled") is False:
        recipients = []  # a disabled schedule puts nobody on call
    shifts = tuple(
        Shift(r.strip().lower(), None, None) for r in recipients if isinstance(r, str) and "@" in r
    )
    name = str(parent.get("name") or "")[:MAX_NAME]
    return OnCallNow(OnCallProvider.OPSGENIE, schedule_id, name, shifts, checked_at)


def _get_json(url: str, headers: dict[str, str]) -> Any:
    """GET `url` and parse its JSON; OnCallUnavailable for anything but a 200 with JSON."""
    timeout_s = float(settings.ONCALL_API_TIMEOUT_S)
    try:
        status, raw = outside_apis.get(
            url, {"User-Agent": USER_AGENT, **headers}, timeout_s=timeout_s, max_bytes=MAX_BODY_BYTES
        )
    except HTTPError as exc:
        if outside_apis.timed_out(exc):
            raise OnCallUnavailable(f"no answer within {timeout_s:g} s") from exc
        raise OnCallUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
    except OSError as exc:
        raise OnCallUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
    if status != 200:
        raise OnCallUnavailable(f"HTTP {status}")
    if len(raw) > MAX_BODY_BYTES:
        raise OnCallUnavailable(f"the answer is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise OnCallUnavailable("the answer is not JSON") from exc


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
