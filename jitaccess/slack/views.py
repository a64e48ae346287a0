"""The interactivity endpoint (Slack's HTTP request-URL mode)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.signature import SignatureVerifier

from identity.signin import client_address
from jitaccess.slack.interactions import request_handler
from jitaccess.slack.services import forged_request_record

logger = logging.getLogger(__name__)
SIGNATURE_WINDOW_S = 5 * 60  # slack-sdk's verifier refuses timestamps further off than this
SEEN_TTL_S = 2 * SIGNATURE_WINDOW_S


@csrf_exempt
@require_POST
def interactions(request: HttpRequest) -> HttpResponse:
    """Verify that Slack signed the body recently (slack-sdk's verifier) and that it comes from
    Veil's own workspace and app; answer anything else with 401, counted for the audit log (one
    chained event per window, not one per request: whoever sends them is unauthenticated). Answer a
    body seen before (a Slack retry, X-Slack-Retry-Num, or a replay inside the signature window)
    with an empty 200, and hand the rest to Bolt. Slash commands (/slack/commands) and the
    options of the request modal (/slack/options) come here too, checked the same way; options
    are served again for the same typed text (they change nothing), so they skip the replay filter."""
    if not (settings.SLACK_ENABLED and settings.SLACK_SIGNING_SECRET):
        raise Http404("Slack is not configured")
    problem = signature_problem(request.body, request.headers) or workspace_problem(request.body)
    if problem:
        forged_request_record(reason=problem, remote_addr=client_address(request))
        return HttpResponse(status=401)
    seen_key = f"slack:interaction:{hashlib.sha256(request.body).hexdigest()}"
    if _payload(request.body).get("type") == "block_suggestion":
        return request_handler().handle(request)
    if not _first_time(seen_key):
        logger.info(
            "Slack interaction seen before (retry %s); ignored", request.headers.get("X-Slack-Retry-Num")
        )
        return HttpResponse(status=200)
    response = request_handler().handle(request)
    if response.status_code >= 500:
        cache.delete(seen_key)  # let Slack's retry in
    return response


def signature_problem(body: bytes, headers: Mapping[str, str]) -> str:
    """ "" when Slack signed `body` within the window; otherwise what is wrong, for the audit log."""
    verifier = SignatureVerifier(settings.SLACK_SIGNING_SECRET)
    header_map = {k.lower(): v for k, v in headers.items()}
    if verifier.is_valid_request(body, header_map):
        return ""
    timestamp, signature = header_map.get("x-slack-request-timestamp"), header_map.get("x-slack-signature")
    if not timestamp or not signature:
        return "missing signature headers"
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return "malformed timestamp"
    return "timestamp outside the 5-minute window" if age > SIGNATURE_WINDOW_S else "signature does not match"


def workspace_problem(body: bytes) -> str:
    """ "" when the payload names SLACK_TEAM_ID and SLACK_APP_ID; otherwise what is wrong.

    The signing secret belongs to the app, not to a workspace: if the app is ever installed in a
    second workspace (distributed, or a copy made with the same credentials), that workspace's
    clicks are signed just as validly. Slack IDs are only meaningful inside Veil's own workspace.
    A global shortcut's payload names no app (Slack sends none): it must name the workspace, and
    no other app."""
    payload = _payload(body)
    if not payload:
        return "no interaction payload"
    team: dict[str, Any] = payload["team"] if isinstance(payload.get("team"), dict) else {}
    user: dict[str, Any] = payload["user"] if isinstance(payload.get("user"), dict) else {}
    team_id = str(team.get("id") or user.get("team_id") or "")
    app_id = str(payload.get("api_app_id") or "")
    if team_id != settings.SLACK_TEAM_ID:
        return f"payload from another workspace ({team_id[:20] or 'none'})"
    if app_id != settings.SLACK_APP_ID and not (payload.get("type") == "shortcut" and not app_id):
        return f"payload for another app ({app_id[:20] or 'none'})"
    return ""


def _payload(body: bytes) -> dict[str, Any]:
    """An interaction's JSON payload, or a slash command's form fields in the same shape
    (`team.id`, `api_app_id`, `type` "command"); {} when the body is neither."""
    try:
        form = parse_qs(body.decode())
    except UnicodeDecodeError:
        return {}
    if "payload" in form:
        try:
            payload = json.loads(form["payload"][0])
        except ValueError:
            return {}
        return payload if isinstance(payload, dict) else {}
    if "command" in form:
        fields = {name: values[0] for name, values in form.items()}
        return {**fields, "type": "command", "team": {"id": fields.get("team_id", "")}}
    return {}


def _first_time(key: str) -> bool:
    """Duplicates are harmless anyway (the request row lock decides); this only spares the person
    a second ephemeral answer. If the cache is down, everything counts as new."""
    try:
        return bool(cache.add(key, 1, SEEN_TTL_S))
    except Exception:
        logger.warning("cache unavailable: Slack retries are not filtered", exc_info=True)
        return True
