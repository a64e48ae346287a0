"""The one GET the on-call providers and Jira are asked with: urllib3 (already a dependency), one
timeout for the whole exchange, no retries and no redirects (a redirect is an answer that is not
trusted), and a bounded read. Each caller says what a failure means for it."""

from __future__ import annotations

import urllib3
from urllib3.exceptions import HTTPError


def get(url: str, headers: dict[str, str], *, timeout_s: float, max_bytes: int) -> tuple[int, bytes]:
    """The status and at most `max_bytes + 1` bytes of the body (so the caller can tell a body that
    is too large). Raises urllib3's HTTPError or OSError when there is no answer."""
    response = urllib3.request(
        "GET",
        url,
        headers=headers,
        timeout=urllib3.Timeout(total=timeout_s),
        retries=False,
        redirect=False,
        preload_content=False,
    )
    try:
        return response.status, response.read(max_bytes + 1)
    finally:
        response.release_conn()


def timed_out(exc: HTTPError | OSError) -> bool:
    return "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower()
