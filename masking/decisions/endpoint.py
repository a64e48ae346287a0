"""`POST /api/v1/decisions`, answered in front of Django's middleware stack: Veil's hot path.

Every query a data-access layer serves waits on this endpoint. Django's full stack (WhiteNoise,
sessions, CSRF, auth, messages, URL resolution, DRF dispatch) costs about half the throughput of a
bare WSGI function before any work is done (docs/performance.md), and none of it applies to a
token-authenticated JSON call. So `DecisionEndpoint` wraps Veil's WSGI application and answers this
one path itself; every other path goes to Django unchanged.

What Django would have checked still is, by Django's own code: the first request from each
(host, scheme, proxy headers) combination goes through `WSGIRequest.get_host()` (ALLOWED_HOSTS)
and `SecurityMiddleware` (HTTPS redirect, HSTS and the other security headers), and the outcome is
reused for later requests carrying the same values. The body limit is `DATA_UPLOAD_MAX_MEMORY_SIZE`.

`answer_decisions` is the one implementation: the WSGI path calls it, and so does the URL route
(`DecisionsApi`) that Django's test client, the OpenAPI schema and any non-WSGI server use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import DatabaseError, connections
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, ValidationError

from identity.authentication import TokenScope, bearer_token
from identity.models import ApiToken, Scope
from masking.decisions.engine import DEGRADED
from masking.decisions.request import parse_decision_request
from masking.decisions.service import DecisionResult, database_failures, decide_columns
from shared import strict_json
from shared.api import error_payload, validation_error_payload
from shared.metrics import count_fail_closed_before_deciding

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("django.security.DisallowedHost")

PATH = "/api/v1/decisions"


@dataclass(frozen=True)
class Reply:
    """A JSON answer: status, encoded body, headers beyond Content-Type and Content-Length."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def as_response(self) -> HttpResponse:
        response = HttpResponse(self.body, status=self.status, content_type="application/json")
        for name, value in self.headers:
            response[name] = value
        return response


def answer_decisions(*, method: str, authorization: str, content_type: str, body: bytes | None) -> Reply:
    """Authenticate the service token, validate the body, decide. Fail-closed, never raises:
    once the body names its columns, any failure (the database down while checking the token
    included) is a 200 that masks every one of them. `body` is None when it was too large."""
    if method != "POST":
        return _error(405, "method_not_allowed", f'Method "{method}" not allowed.', (("Allow", "POST"),))
    data, unreadable = _decode(content_type, body)
    columns = data.get("columns") if isinstance(data, dict) else None
    try:
        token = _authenticate(authorization)
        if isinstance(token, Reply):
            return token
        if unreadable is not None:
            return unreadable
        request = parse_decision_request(data, max_columns=settings.DECISION_MAX_COLUMNS)
        if request.asserted_groups and Scope.ASSERT_GROUPS not in token.scopes:
            raise ValidationError(
                {
                    "principal.groups": [
                        f"this token may not assert groups (needs scope {Scope.ASSERT_GROUPS})"
                    ]
                }
            )
        assert token.service_account is not None  # `bearer_token` finds service accounts' tokens only
        result = decide_columns(
            service_account=token.service_account.name,
            principal_spec=request.principal,
            asserted_groups=request.asserted_groups,
            query_id=request.query_id,
            columns=request.columns,
            token_prefix=token.prefix,
        )
        return Reply(200, result.encode())
    except ValidationError as exc:
        return _json(400, validation_error_payload(exc.detail))
    except Exception as exc:
        if isinstance(exc, DatabaseError):
            database_failures.failed(exc)  # one line now and then, not a traceback each
        else:
            logger.exception("decision request failed before the engine ran; answering mask")
        if isinstance(columns, list) and 0 < len(columns) <= settings.DECISION_MAX_COLUMNS:
            count_fail_closed_before_deciding(len(columns))
            return Reply(200, DecisionResult(None, [DEGRADED] * len(columns), 0.0).encode())
        return _error(503, "unavailable", "Veil cannot decide now; mask.")


def _decode(content_type: str, body: bytes | None) -> tuple[Any, Reply | None]:
    """The decoded body, or the 4xx that explains why there is none. `strict_json`, not orjson:
    orjson keeps the last of two equal keys silently; refusing them costs about 25 us a request."""
    if content_type != "application/json":
        message = f'Unsupported media type "{content_type}" in request; send application/json.'
        return None, _error(415, "unsupported_media_type", message)
    if body is None:
        return None, _error(413, "too_large", "The request body is larger than the server accepts.")
    try:
        return strict_json.loads(body), None
    except ValueError as exc:
        return None, _error(400, "parse_error", f"JSON parse error - {exc}")


_CHALLENGE = (("WWW-Authenticate", "Bearer"),)


def _authenticate(header: str) -> ApiToken | Reply:
    """The live token carrying the decisions scope, or the 401/403 that refuses the request."""
    try:
        token = bearer_token(header)
    except (NotAuthenticated, AuthenticationFailed) as refusal:
        return _error(401, str(refusal.get_codes()), str(refusal.detail), _CHALLENGE)
    if Scope.DECISIONS not in token.scopes:
        return _error(403, "permission_denied", TokenScope.message)
    return token


def _json(status: int, payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """orjson, because encoding the answer with `json` cost more than deciding it."""
    return Reply(status, orjson.dumps(payload), headers)


def _error(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return _json(status, error_payload(status, code, message), headers)


@dataclass(frozen=True)
class _FrontDoor:
    """What Django's host check and SecurityMiddleware say about one (host, scheme) combination:
    the response that refuses or redirects it, or the security headers every answer carries."""

    refusal: Reply | None
    headers: tuple[tuple[str, str], ...]


class DecisionEndpoint:
    """WSGI middleware: answers `PATH` with `answer_decisions`, passes everything else on."""

    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application
        self.security = SecurityMiddleware(lambda request: HttpResponse())
        proxy_header = settings.SECURE_PROXY_SSL_HEADER
        self._door_keys = (
            "HTTP_HOST",
            "HTTP_X_FORWARDED_HOST",
            "SERVER_NAME",
            "SERVER_PORT",
            "QUERY_STRING",
            "wsgi.url_scheme",
            *((proxy_header[0],) if proxy_header else ()),
        )
        self._doors: dict[tuple[Any, ...], _FrontDoor] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.application(environ, start_response)
        try:
            door = self._front_door(environ)
            reply = door.refusal or answer_decisions(
                method=environ["REQUEST_METHOD"],
                authorization=environ.get("HTTP_AUTHORIZATION", ""),
                content_type=environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower(),
                body=_read_body(environ),
            )
        finally:
            _end_request()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(reply.body))),
            *reply.headers,
            *door.headers,
        ]
        start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}", headers)
        return [reply.body]

    def _front_door(self, environ: dict[str, Any]) -> _FrontDoor:
        key = tuple(environ.get(name) for name in self._door_keys)
        door = self._doors.get(key)
        if door is None:
            door = self._ask_django(WSGIRequest(environ))
            if len(self._doors) > 1000:
                self._doors.clear()
            self._doors[key] = door
        return door

    def _ask_django(self, request: WSGIRequest) -> _FrontDoor:
        try:
            request.get_host()
        except DisallowedHost as exc:
            security_logger.error(str(exc))  # where Django logs it, once per host here
            return _FrontDoor(_error(400, "bad_host", "This host is not served here."), ())
        redirect = self.security.process_request(request)
        if redirect is not None:
            refusal = _error(
                redirect.status_code, "https_required", "Use HTTPS.", (("Location", redirect["Location"]),)
            )
            return _FrontDoor(refusal, ())
        added = self.security.process_response(request, HttpResponse(content_type="application/json"))
        return _FrontDoor(None, tuple((k, v) for k, v in added.items() if k != "Content-Type"))


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The request body; None when it is over `DATA_UPLOAD_MAX_MEMORY_SIZE`, as Django refuses it."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _end_request() -> None:
    """What Django does with database connections when a request finishes, without its
    per-request health check (a `SELECT 1` round trip): a connection that saw an error, was left
    outside autocommit or outlived `CONN_MAX_AGE` is closed, and the next request reconnects."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:  # a block is its opener's (a test's)
            continue
        if (
            conn.errors_occurred
            or not conn.get_autocommit()
            or (conn.close_at is not None and time.monotonic() >= conn.close_at)
        ):
            conn.close()
