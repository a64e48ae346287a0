"""Shared fixtures: the real services and personas used across the suite.

Tests run against the real PostgreSQL and Redis named by DATABASE_URL and REDIS_URL (see
pyproject's pytest env). With VEIL_REQUIRE_SERVICES=1 (CI) a missing service fails the run
instead of letting tests silently run on something else.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("VEIL_REQUIRE_SERVICES") != "1":
        return
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.exit(f"VEIL_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL ({engine})", returncode=3)
    import psycopg
    import redis

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db["HOST"],
            port=db["PORT"] or 5432,
            user=db["USER"],
            dbname=db["NAME"],
            connect_timeout=5,
        ).close()
    except psycopg.Error as exc:
        pytest.exit(f"PostgreSQL is unreachable: {exc}", returncode=3)
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is unreachable at {settings.REDIS_URL}: {exc}", returncode=3)


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def shop(db):
    from tests.factories import make_project

    return make_project("shop", title="Shop")


def _flush_past_the_audit_truncate_guard() -> None:
    """Transactional tests end with a TRUNCATE of every table, which the audit log refuses by
    design. Let only that teardown through, with pgtrigger's own per-statement ignore."""
    import pgtrigger
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        with pgtrigger.ignore("audit.AuditEvent:audit_no_truncate"):
            original(self)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]


_flush_past_the_audit_truncate_guard()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Test users' passwords protect nothing; a slow hash would only slow the suite down."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_decision_caches():
    """Each test starts with an empty database, so its epochs restart at 1: the per-process
    decision caches (keyed by epoch) must not carry a previous test's policy over."""
    from identity.services import token_cache_clear
    from masking.decisions import service as decisions
    from masking.selectors import decision_caches

    decision_caches.clear()
    decisions._reported_unknown.clear()
    token_cache_clear()
    yield
    decision_caches.clear()
    token_cache_clear()


@pytest.fixture
def demo(db):
    """The demo company (`make run`'s data), its people by username."""
    from identity.models import User
    from jitaccess.demo import load_demo_data

    load_demo_data()
    return {u.username: u for u in User.objects.all()}
