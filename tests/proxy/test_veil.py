"""veil-proxy with the real data path (``veil_sdk.datapath``) and a real Veil (its WSGI application
on loopback): decisions from Veil's catalog and policy, access events landing in Veil's audit,
logins with alice's personal token checked by Veil's /api/v1/query-logins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.proxy.conftest import SOURCE_DB, RunningProxy, personal_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def veil_service(veil_url: str) -> dict[str, Any]:
    """Veil's catalog for prod-pg/h7_shop: customers.email is an `email` (masked), id and name
    are classified below the masking threshold; a service token for the proxy."""
    from audit.models import Channel
    from audit.services import SYSTEM
    from identity.models import Scope
    from masking.models import SemanticType
    from masking.selectors import decision_caches
    from masking.services.catalog import catalog_upsert
    from tests.factories import catalog_payload, make_project, make_token, make_user

    make_project("shop", title="Shop")
    SemanticType.objects.create(key="email", title="Email", algorithm={"type": "email"})
    payload = catalog_payload(
        columns=[
            {"name": "id", "data_type": "bigint", "classification_level": 0},
            {"name": "name", "data_type": "text", "classification_level": 0},
            {"name": "email", "data_type": "text", "classification_level": 3, "semantic_type": "email"},
        ]
    )
    payload["databases"][0]["name"] = SOURCE_DB
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    make_user("alice", email="alice@example.com", email_verified=True)
    _, token = make_token([Scope.DECISIONS, Scope.ACCESS_EVENTS], account_name="veil-proxy")
    decision_caches.clear()
    return {"url": veil_url, "token": token}


@pytest.fixture
def real_proxy(
    veil_service: dict[str, Any], source_db: dict[str, Any], veil_proxy: Callable[..., RunningProxy]
) -> RunningProxy:
    return veil_proxy(veil_service["url"], veil_service["token"], SOURCE_DB)


@pytest.fixture
def alice_dsn(real_proxy: RunningProxy) -> str:
    """Alice's connection string: her Veil login and her personal token."""
    return real_proxy.dsn(user="alice@example.com", password=personal_token("alice"))


def test_veil_decides_what_the_proxy_masks(alice_dsn: str) -> None:
    with psycopg.connect(alice_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT id, name, email FROM customers ORDER BY id").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot be used in WHERE"):
            conn.execute("SELECT id FROM customers WHERE email LIKE 'a%'")
        binary = conn.cursor(binary=True).execute("SELECT email FROM customers WHERE id = 1").fetchone()

    assert [r[:2] for r in rows] == [(1, "Alice Martin"), (2, "Bob Durand"), (3, "Chloé Petit")]
    emails = [r[2] for r in rows]
    assert emails[0] != "alice@example.com" and emails[0].endswith("@example.com")  # the domain is kept
    assert emails[1] != "bob@example.com"
    assert emails[2] == "******"  # the algorithm masks NULL too
    assert binary == (emails[0],)


def test_each_query_lands_in_veils_audit_as_one_access_event(
    real_proxy: RunningProxy, alice_dsn: str
) -> None:
    from audit.models import AccessEvent

    with psycopg.connect(alice_dsn, autocommit=True) as conn:
        conn.execute("SELECT id, email FROM customers WHERE id < 3").fetchall()
    assert real_proxy.server.veil.flush(10)

    event = AccessEvent.objects.get(principal="alice@example.com", row_count=2)
    assert event.masked_columns == ["prod-pg/h7_shop/public.customers.email"], event.masked_columns
    assert event.unmasked_columns == ["prod-pg/h7_shop/public.customers.id"], event.unmasked_columns
