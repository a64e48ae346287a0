"""Jira Cloud issues, read over its REST API (v3) to check the ticket a request names.

A project may require that each request names an open Jira issue (`jitaccess.selectors.tickets`).
Veil reads the issue once, when the request is made, and keeps what it read on the request (its
title and status), so approvers see what was checked and no page view calls Jira.

- `GET {JIRA_URL}/rest/api/3/issue/{key}?fields=summary,status` with HTTP basic auth
  `JIRA_EMAIL:JIRA_API_TOKEN`: `{"id", "key", "self", "fields": {"summary", "status": {"name",
  "statusCategory": {"key", ...}}}}`. The status category `done` is closed (the others are `new`
  and `indeterminate`). An issue moved to another project answers under its new key.
- 404 (`{"errorMessages": [...], "errors": {}}`) means the issue does not exist or the account
  may not see it; Jira does not say which.

Anything else Veil cannot trust (no credentials, another status, a redirect, a body that is not
the documented JSON, a timeout) raises `JiraUnavailable`: the caller refuses the ticket, since a
ticket that cannot be checked is not known to be open. urllib3 (a dependency already, used by the
on-call providers and audit streams) with no retries and no redirects; the site is the operator's
setting, and a key is checked against Jira's key syntax before it is put in the path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import HTTPError

from jitaccess import outside_apis

USER_AGENT = "Veil-Tickets/1"
# A project key (an upper-case letter, then letters, digits or underscores), a dash, the number.
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,49}-[1-9][0-9]{0,14}")
MAX_BODY_BYTES = 1024 * 1024
DONE = "done"


class JiraUnavailable(Exception):
    """Jira could not say what the issue is; the message says why (never a credential)."""


@dataclass(frozen=True)
class JiraIssue:
    """An issue as Jira described it when asked."""

    key: str
    title: str
    status: str  # the status's name, e.g. "In Progress"
    done: bool  # its status category is `done`: the issue is closed


def jira_configured() -> bool:
    return bool(settings.JIRA_URL and settings.JIRA_EMAIL and settings.JIRA_API_TOKEN)


def issue_link(key: str) -> str:
    """The issue's page on the Jira site."""
    return f"{settings.JIRA_URL}/browse/{key}"


def key_in_link(url: str) -> str:
    """The issue key of a link to an issue's page on the configured Jira site
    (`{JIRA_URL}/browse/KEY`), or "" for any other link."""
    if not settings.JIRA_URL:
        return ""
    site, given = urlsplit(settings.JIRA_URL), urlsplit(url)
    if (given.scheme, given.netloc.lower()) != (site.scheme, site.netloc.lower()):
        return ""
    path = given.path.rstrip("/")
    prefix = f"{site.path.rstrip('/')}/browse/"
    key = path[len(prefix) :] if path.startswith(prefix) else ""
    return key if ISSUE_KEY.fullmatch(key) else ""


def jira_issue(key: str) -> JiraIssue | None:
    """The issue `key` as Jira describes it now; None when Jira says it does not exist (or the
    account may not see it); JiraUnavailable when Jira could not say."""
    if not ISSUE_KEY.fullmatch(key):
        raise JiraUnavailable(f"{key[:60]!r} is not an issue key")
    if not jira_configured():
        raise JiraUnavailable("no Jira site is configured")
    url = f"{settings.JIRA_URL}/rest/api/3/issue/{quote(key, safe='')}?fields=summary,status"
    status, body = _get_json(url)
    if status == 404:
        return None
    if status in (401, 403):
        raise JiraUnavailable(f"HTTP {status}: Jira refused Veil's credentials")
    if status != 200:
        raise JiraUnavailable(f"HTTP {status}")
    return _issue(body)


def _issue(body: Any) -> JiraIssue:
    fields = body.get("fields") if isinstance(body, dict) else None
    status = fields.get("status") if isinstance(fields, dict) else None
    category = status.get("statusCategory") if isinstance(status, dict) else None
    if not isinstance(fields, dict) or not isinstance(status, dict) or not isinstance(category, dict):
        raise JiraUnavailable("the answer has no 'fields.status.statusCategory'")
    key, title = body.get("key"), fields.get("summary")
    name, category_key = status.get("name"), category.get("key")
    if not isinstance(key, str) or not ISSUE_KEY.fullmatch(key):
        raise JiraUnavailable("the answer names no issue key")
    if not isinstance(title, str) or not isinstance(name, str) or not isinstance(category_key, str):
        raise JiraUnavailable("the answer's summary or status is not text")
    return JiraIssue(key=key, title=title.strip(), status=name.strip(), done=category_key == DONE)


def _get_json(url: str) -> tuple[int, Any]:
    """GET `url` with Veil's credentials: the status, and the parsed JSON body of a 200 (None for
    any other status). JiraUnavailable when there is no answer or a 200 is not JSON."""
    timeout_s = float(settings.JIRA_API_TIMEOUT_S)
    headers = urllib3.make_headers(basic_auth=f"{settings.JIRA_EMAIL}:{settings.JIRA_API_TOKEN}")
    try:
        status, raw = outside_apis.get(
            url,
            {**headers, "Accept": "application/json", "User-Agent": USER_AGENT},
            timeout_s=timeout_s,
            max_bytes=MAX_BODY_BYTES,
        )
    except (HTTPError, OSError) as exc:
        if outside_apis.timed_out(exc):
            raise JiraUnavailable(f"no answer within {timeout_s:g} s") from exc
        raise JiraUnavailable(f"no connection ({type(exc).__name__})") from exc
    if status != 200:
        return status, None
    if len(raw) > MAX_BODY_BYTES:
        raise JiraUnavailable(f"the answer is larger than {MAX_BODY_BYTES} bytes")
    try:
        return 200, json.loads(raw)
    except ValueError as exc:
        raise JiraUnavailable("the answer is not JSON") from exc
