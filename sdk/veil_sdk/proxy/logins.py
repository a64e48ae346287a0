"""Checking a client's login with Veil, and slowing down whoever keeps getting it wrong.

The password a person types is their Veil token with the scope ``query``. It is sent to Veil's
``/api/v1/query-logins`` and nowhere else: not logged, not kept. A valid answer is cached for at
most its ``ttl_s`` (60 s at most) under the login and a keyed hash of the token, so a revoked
token stops working within a minute while a client opening many connections does not ask Veil for
each. Failures are never cached, and anything but a clear answer from Veil is a failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from veil_sdk.client import Principal

logger = logging.getLogger("veil_sdk.proxy")

LOGIN_PATH = "/api/v1/query-logins"
MAX_CACHE_TTL_S = 60.0
_MAX_CACHED = 10_000


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None
    reason: str
    """Why a login failed (Veil's reason, or what went wrong reaching Veil); '' when valid."""


class LoginChecker:
    """Asks Veil whether (login, token) is a person allowed to query through the proxy. Blocking
    (urllib): the proxy calls it in a worker thread. Thread-safe."""

    def __init__(
        self,
        base_url: str,
        service_token: str,
        *,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = base_url.rstrip("/") + LOGIN_PATH
        self._service_token = service_token
        self._timeout = timeout
        self._clock = clock
        self._key = secrets.token_bytes(32)  # the cache key is keyed: a dump of it reveals no tokens
        self._cache: OrderedDict[tuple[str, str, str, bytes], tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0

    def check(
        self, login: str, token: str, instance: str, database: str, client_addr: str | None
    ) -> LoginResult:
        key = (
            login,
            instance,
            database,
            hmac.digest(self._key, hashlib.sha256(token.encode()).digest(), "sha256"),
        )
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return LoginResult(cached[1], "")
            self._cache.pop(key, None)
        body = {
            "login": login,
            "token": token,
            "instance": instance,
            "database": database,
            "client_addr": client_addr,
        }
        request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked by the config
            self._url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self._service_token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "veil-proxy/0.1",
            },
        )
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                answer = json.loads(response.read(64 * 1024))
        except urllib.error.HTTPError as error:
            error.close()
            logger.warning("Veil refused the login check: HTTP %s", error.code)
            return LoginResult(None, f"veil_http_{error.code}")
        except (OSError, ValueError) as exc:
            logger.warning("cannot check a login with Veil: %s", type(exc).__name__)
            return LoginResult(None, "veil_unreachable")
        if not isinstance(answer, dict) or answer.get("valid") is not True:
            reason = answer.get("reason") if isinstance(answer, dict) else None
            return LoginResult(None, str(reason or "invalid"))
        try:
            principal = Principal.from_json(answer["principal"])
            ttl = min(float(answer.get("ttl_s", MAX_CACHE_TTL_S)), MAX_CACHE_TTL_S)
        except (KeyError, TypeError, ValueError):
            return LoginResult(None, "veil_bad_answer")
        if ttl > 0:
            with self._lock:
                self._cache[key] = (now + ttl, principal)
                while len(self._cache) > _MAX_CACHED:
                    self._cache.popitem(last=False)
        return LoginResult(principal, "")


class FailureThrottle:
    """Delays the answer to a failed login from an address that failed recently: ``base`` seconds,
    doubling with each further failure within ``window`` seconds, up to ``max_delay``. A success
    clears the address. Bounded: the oldest addresses are forgotten first."""

    def __init__(
        self,
        base: float,
        max_delay: float,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base, self._max, self._window, self._clock = base, max_delay, window, clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failed(self, address: str) -> float:
        """Record a failure; the seconds to wait before answering it."""
        now = self._clock()
        count, last = self._failures.pop(address, (0, now))
        count = count + 1 if now - last < self._window else 1
        self._failures[address] = (count, now)
        while len(self._failures) > _MAX_CACHED:
            self._failures.popitem(last=False)
        return min(self._base * 2 ** min(count - 1, 20), self._max)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
