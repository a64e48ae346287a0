"""The decision endpoint as servers run it: `config.wsgi` answers it in front of Django's stack.

Django's test client goes through the URL route instead; these tests call the WSGI application
itself, so the front door (hosts, HTTPS, security headers, body limits) and the connection
handling that replace Django's middleware are exercised as gunicorn would exercise them.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import orjson
import pytest
from django.db import connection, connections
from django.test import RequestFactory
from prometheus_client import REGISTRY

from audit.models import DecisionRecord
from identity.models import Scope
from masking.decisions.endpoint import DecisionEndpoint
from masking.decisions.engine import ColumnKey
from masking.decisions.service import database_failures, decide_columns
from tests.factories import make_shop_policy, make_token, make_user
from tests.masking.test_decisions_api import URL, _col, _give_alice_a_grant


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    body: Any = None,
    *,
    token: str | None = None,
    method: str = "POST",
    path: str = URL,
    content_type: str = "application/json",
    **environ: Any,
) -> Answer:
    """Call `config.wsgi`'s arrangement (a fresh one, so settings changed by a test apply)."""
    from config.wsgi import django_application

    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    request = RequestFactory().generic(method, path, raw, content_type=content_type, **environ)
    started: list[Any] = []
    chunks = DecisionEndpoint(django_application)(
        request.environ, lambda status, headers, *exc: started.extend([status, headers])
    )
    out = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return Answer(started[0], started[1], out)


@pytest.fixture
def token(world):
    return make_token([Scope.DECISIONS], account_name="sql-proxy")[1]


def _body(*columns: dict[str, str]) -> dict[str, Any]:
    return {"principal": {"user": "alice@example.com"}, "query_id": "q-1", "columns": list(columns)}


def test_it_answers_exactly_as_the_url_route_does(world, shop, token, api_client):
    _give_alice_a_grant(world, shop)
    body = _body(_col("email"), _col("id"), _col("phone"), _col("nope"))

    fast = call(body, token=token)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    routed = api_client.post(URL, body, format="json")

    assert fast.status_code == routed.status_code == 200
    fast_body, routed_body = fast.json(), routed.json()
    assert fast_body.pop("record_id") != routed_body.pop("record_id")
    assert fast_body == routed_body
    assert [d["action"] for d in fast_body["decisions"]] == ["unmask", "unmask", "mask", "mask"]
    assert DecisionRecord.objects.count() == 2, "each answer recorded its unmask"
    assert fast.headers["Content-Type"] == "application/json"
    assert fast.headers["X-Content-Type-Options"] == "nosniff"


def test_the_body_encoded_from_memoised_parts_is_the_answer_as_json(world, shop, settings):
    _give_alice_a_grant(world, shop)
    columns = [ColumnKey(**_col(name)) for name in ("email", "id", "phone", "nope")]

    for _ in range(2):  # the second time from the memoised, already encoded parts
        result = decide_columns(
            service_account="sql-proxy",
            principal_spec={"user": "alice@example.com"},
            asserted_groups=[],
            query_id="q-1",
            columns=columns,
        )
        body = orjson.loads(result.encode())
        assert body == {
            "policy_version": result.policy_version,
            "decisions": [d.as_json(result.now, settings.DECISION_TTL_S) for d in result.decisions],
            "record_id": result.record_id,
        }
    assert [d["action"] for d in body["decisions"]] == ["unmask", "unmask", "mask", "mask"]


def test_the_unmask_record_is_prepared_once_per_connection(world, shop, token):
    """Django turns psycopg's statement preparation off unless told otherwise; the record's INSERT
    is on every unmask's path, so settings turn it back on and PostgreSQL keeps it parsed."""
    _give_alice_a_grant(world, shop)

    actions = [call(_body(_col("email")), token=token).json()["decisions"][0]["action"] for _ in range(3)]

    assert actions == ["unmask"] * 3
    assert DecisionRecord.objects.count() == 3
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f'INSERT INTO "{DecisionRecord._meta.db_table}"%'],
        )
        assert cursor.fetchone()[0] == 1


def test_every_other_path_goes_to_django(world):
    answer = call(method="GET", path="/healthz", content_type="text/plain")

    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"method": "GET"}, 405, "method_not_allowed"),
        ({"content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"body": b"{not json"}, 400, "parse_error"),
        ({"body": {"principal": {"user": "a@x"}, "columns": [{"instance": "x"}]}}, 400, "invalid"),
        ({"token": None}, 401, "not_authenticated"),
        ({"token": "veil_nope_nope"}, 401, "authentication_failed"),
    ],
)
def test_bad_requests_are_refused_with_the_api_error_shape(world, token, kwargs, status, code):
    arguments = {"body": _body(_col("id")), "token": token, **kwargs}

    answer = call(**arguments)

    assert answer.status_code == status, answer.body
    assert answer.json()["error"]["code"] == code
    if status == 405:
        assert answer.headers["Allow"] == "POST"
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_host_outside_allowed_hosts_is_refused_and_logged_where_django_logs_it(world, token, caplog):
    answer = call(_body(_col("id")), token=token, HTTP_HOST="evil.example.com")

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_host"
    assert [r.name for r in caplog.records] == ["django.security.DisallowedHost"]
    assert "evil.example.com" in caplog.text


def test_a_token_without_the_decisions_scope_is_forbidden(world):
    _, other = make_token([Scope.ACCESS_EVENTS])

    answer = call(_body(_col("id")), token=other)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "permission_denied"


def test_a_body_over_the_upload_limit_is_refused_unread(world, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    answer = call(_body(*[_col("id")] * 5), token=token)

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"


def test_plain_http_is_redirected_and_https_gets_hsts(world, token, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600

    plain = call(_body(_col("id")), token=token)
    secure = call(_body(_col("id")), token=token, secure=True)

    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://testserver{URL}"
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=3600"


@pytest.mark.django_db(transaction=True)
def test_a_dropped_database_connection_masks_once_then_reconnects(shop):
    make_shop_policy()
    alice = make_user("alice", email="alice@example.com")
    _give_alice_a_grant(alice, shop)
    token = make_token([Scope.DECISIONS])[1]
    assert call(_body(_col("email")), token=token).json()["decisions"][0]["action"] == "unmask"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    killer = connections.create_connection("default")
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        killer.close()

    during = call(_body(_col("email")), token=token).json()
    after = call(_body(_col("email")), token=token).json()

    assert during["degraded"] is True and during["decisions"][0]["action"] == "mask"
    assert after["decisions"][0]["action"] == "unmask", "the next request reconnected"


def _closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.django_db(transaction=True)
def test_while_the_database_is_unreachable_each_decision_masks_and_the_log_gets_one_line(
    shop, settings, caplog, monkeypatch
):
    make_shop_policy()
    _give_alice_a_grant(make_user("alice", email="alice@example.com"), shop)
    warm, cold = make_token([Scope.DECISIONS])[1], make_token([Scope.DECISIONS], account_name="etl")[1]
    assert call(_body(_col("email")), token=warm).json()["decisions"][0]["action"] == "unmask"
    settings.DECISION_EPOCH_MAX_AGE_MS = 0  # every decision reads the database
    monkeypatch.setattr(database_failures, "_next_at", 0.0)  # no warning from an earlier test pending
    fail_closed = REGISTRY.get_sample_value("veil_decision_fail_closed_total")
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(_closed_port())
    try:
        # The warm token is cached (the engine's reads fail); the cold one is checked in the database.
        answers = [call(_body(_col("email")), token=t).json() for t in (warm, warm, cold, warm)]
        warned = [r for r in caplog.records if r.name == "masking.decisions.service"]
        database_failures._next_at = 0.0  # as if the interval had passed
        later = call(_body(_col("email")), token=warm).json()
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port

    assert all(a["degraded"] and a["decisions"][0]["action"] == "mask" for a in [*answers, later])
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in warned] == [
        ("WARNING", "database error OperationalError: a decision request answered mask", None)
    ]
    assert caplog.records[-1].getMessage() == (
        "database error OperationalError: a decision request answered mask (3 more since the last warning)"
    )
    assert not [r for r in caplog.records if r.exc_info], "no traceback while the database is away"
    assert REGISTRY.get_sample_value("veil_decision_fail_closed_total") - fail_closed == 5
