"""The one Slack Web API client, and how to read its failures.

Retries are bounded and happen in two places. Inside a call, slack-sdk's handlers retry a
connection that failed before the request was sent, and a 429 whose Retry-After is short. Anything
longer or unclear goes back to the outbox, which backs off and tries again from the periodic sweep,
so no task sleeps in a worker or waits in the broker on a long countdown.
"""

from __future__ import annotations

from http.client import HTTPException
from urllib.error import URLError

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

# chat.update answers these when the message or its channel is gone: nothing left to update.
MESSAGE_GONE = frozenset({"message_not_found", "channel_not_found", "is_archived", "cant_update_message"})


class ShortRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Waits out a 429 inside the call only when Slack asks for at most
    `SLACK_RATE_LIMIT_MAX_WAIT_S`; a longer wait surfaces as `ratelimited` for the outbox."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        values = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), ["1"])
        try:
            wait = int(values[0])
        except (TypeError, ValueError):
            return False
        return wait <= settings.SLACK_RATE_LIMIT_MAX_WAIT_S


def slack_client() -> WebClient:
    """A client for the configured workspace. Built per use (it holds no connections); every Slack
    call in Veil goes through here so the base URL, timeout and retries are the same everywhere.

    Connection errors are retried only when urllib failed before the request was sent (URLError):
    a reset or timeout after sending may mean Slack acted, and retrying a chat.postMessage then
    could post twice.
    """
    return WebClient(
        token=settings.SLACK_BOT_TOKEN,
        base_url=settings.SLACK_API_URL.rstrip("/") + "/",
        timeout=settings.SLACK_API_TIMEOUT_S,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1, error_types=[URLError]),
            ShortRateLimitRetryHandler(max_retry_count=2),
        ],
    )


def slack_error(exc: Exception) -> str:
    """Slack's error code (`channel_not_found`, `ratelimited`, ...), or "" for a transport failure."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"http_{exc.response.status_code}")
    return ""


def slack_unreachable(exc: Exception) -> bool:
    """Slack did not answer, failed (5xx) or asked to slow down: an outage, not a wrong request."""
    if isinstance(exc, SlackApiError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, OSError | HTTPException)


def surely_not_delivered(exc: Exception) -> bool:
    """True when Slack certainly did not act on the call: it answered with an error, or urllib
    failed before sending. A timeout or reset while waiting for the answer is unknown."""
    return isinstance(exc, SlackApiError | URLError)
