"""The one outgoing HTTP client of audit streams: a POST to the address `config` checked.

Connecting to the checked address (not to the name again) closes the gap between checking and
connecting that DNS rebinding uses; TLS still verifies the certificate against the host name (SNI
and hostname checks use the name). Redirects are never followed: a destination that answers 3xx
failed, so a collector cannot bounce Veil's request to a loopback or private address. The whole
exchange is bounded by one timeout, so a destination that hangs costs a worker that long at most.
urllib3 (already installed with `requests`) rather than requests itself: requests cannot connect
to one address while speaking TLS to a name.
"""

from __future__ import annotations

import urllib3
from urllib3.exceptions import HTTPError

from audit.streams.config import Target

USER_AGENT = "Veil-Audit-Stream/1"


class DeliveryError(Exception):
    """The destination did not acknowledge the batch; worth another try later."""


def post(target: Target, *, body: bytes, headers: dict[str, str], timeout_s: float) -> None:
    """POST `body`; return when the destination answered 2xx, else raise DeliveryError saying why
    (no secret: headers are never quoted)."""
    timeout = urllib3.Timeout(total=timeout_s)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            target.address, target.port, timeout=timeout, retries=False, maxsize=1
        )
    all_headers = {"Host": target.host_header, "User-Agent": USER_AGENT, **headers}
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=all_headers,
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            try:
                response.read(64 * 1024)  # the acknowledgement's body is not used; read a little to finish
            finally:
                response.release_conn()
    except HTTPError as exc:
        raise DeliveryError(_reason(exc, timeout_s)) from exc
    except OSError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if 300 <= response.status < 400:
        raise DeliveryError(f"HTTP {response.status}: redirects are not followed; give the final URL")
    if not 200 <= response.status < 300:
        raise DeliveryError(f"HTTP {response.status} {response.reason or ''}".strip())


def _reason(exc: HTTPError, timeout_s: float) -> str:
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return f"no answer within {timeout_s:g} s"
    if "refused" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text}"[:400]
