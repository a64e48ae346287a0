"""The interactivity endpoint (Slack's HTTP request-URL mode)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.signature import SignatureVerifier

from jitaccess.slack.interactions import request_handler
from jitaccess.slack.services import forged_request_record

logger = logging.getLogger(__name__)
SIGNATURE_WINDOW_S = 5 * 60  # slack-sdk's verifier refuses timestamps further off than this
SEEN_TTL_S = 2 * SIGNATURE_WINDOW_S


@csrf_exempt
@require_POST
def interactions(request: HttpRequest) -> HttpResponse:
    """Verify that Slack signed the body recently (slack-sdk's verifier), answer a forgery with 401
    and an audit event, answer a body seen before (a Slack retry, X-Slack-Retry-Num, or a replay
    inside the signature window) with an empty 200, and hand the rest to Bolt."""
    if not (settings.SLACK_ENABLED and settings.SLACK_SIGNING_SECRET):
        raise Http404("Slack is not configured")
    problem = signature_problem(request.body, request.headers)
    if problem:
        forged_request_record(reason=problem, remote_addr=request.META.get("REMOTE_ADDR", ""))
        return HttpResponse(status=401)
    seen_key = f"slack:interaction:{hashlib.sha256(request.body).hexdigest()}"
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


def _first_time(key: str) -> bool:
    """Duplicates are harmless anyway (the request row lock decides); this only spares the person
    a second ephemeral answer. If the cache is down, everything counts as new."""
    try:
        return bool(cache.add(key, 1, SEEN_TTL_S))
    except Exception:
        logger.warning("cache unavailable: Slack retries are not filtered", exc_info=True)
        return True
