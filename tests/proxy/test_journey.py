"""The journey through veil-proxy, every part real: alice logs in to the proxy with her personal
token (checked by Veil's /api/v1/query-logins), sees `email` masked, is refused a probe whose
message links to Veil's request form, asks for access with that form (the web, through Django's
test client), bob approves in Slack (a payload signed as Slack signs it, posted to
/slack/interactions), her next query in the same session shows the emails, and once the grant
has expired, with no worker running, her next query is masked again."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.jitaccess.conftest import world  # noqa: F401 - the personas (alice requests, bob approves)
from tests.proxy.conftest import SOURCE_DB, FakeClock, RunningProxy, personal_token
from tests.slack.conftest import _no_broker, after_ack, click, fake_slack, post_interaction, slack  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

QUERY = "SELECT id, email FROM customers ORDER BY id"


@pytest.fixture
def shop_in_veil(slack: Any) -> Any:  # noqa: F811
    """The personas' catalog (prod-pg/shop/public.customers, emails masked by a rule), naming the
    proxy's source database, so Veil decides for the database the proxy serves; `id` reviewed as
    not sensitive (Veil masks what nobody classified)."""
    from audit.models import Channel
    from audit.services import SYSTEM
    from masking.models import Database
    from masking.selectors import decision_caches
    from masking.services.catalog import catalog_upsert
    from tests.factories import catalog_payload

    Database.objects.filter(instance__key="prod-pg", name="shop").update(name=SOURCE_DB)
    payload = catalog_payload(
        columns=[
            {"name": "id", "data_type": "bigint", "classification_level": 0},
            {"name": "email", "data_type": "text", "classification_level": 3},
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
    decision_caches.clear()
    yield slack
    decision_caches.clear()


def test_alice_asks_bob_approves_in_slack_her_session_sees_it_until_the_grant_expires(
    shop_in_veil: Any,
    source_db: dict[str, Any],
    veil_url: str,
    veil_proxy: Callable[..., RunningProxy],
    client: Any,
    after_ack: Any,  # noqa: F811
) -> None:
    import time_machine
    from django.utils import timezone

    from identity.models import Scope
    from jitaccess.models import AccessRequest
    from jitaccess.states import State
    from tests.factories import make_token

    with psycopg.connect(**source_db) as direct:
        raw = direct.execute(QUERY).fetchall()
    people = shop_in_veil
    _, service_token = make_token([Scope.DECISIONS, Scope.ACCESS_EVENTS], account_name="veil-proxy")
    clock = FakeClock()
    proxy = veil_proxy(veil_url, service_token, SOURCE_DB, client={"clock": clock})
    token = personal_token("alice")

    with psycopg.connect(proxy.dsn(user="alice@example.com", password=token), autocommit=True) as session:
        # 1. Masked, and a probe of the masked column is refused with a link to ask for it.
        before = session.execute(QUERY).fetchall()
        assert [r[0] for r in before] == [r[0] for r in raw]
        assert all(got[1] != was[1] for got, was in zip(before, raw, strict=True) if was[1] is not None)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            session.execute("SELECT id FROM customers WHERE email LIKE 'a%'")
        link = urllib.parse.urlsplit(re.search(r"Ask for access: (\S+)", str(refused.value)).group(1))

        # 2. The link opens Veil's request form with the column ticked; alice sends it.
        client.force_login(people.alice)
        page = client.get(f"{link.path}?{link.query}")
        assert page.status_code == 200
        scope = page.context["form"]["scope"].value()
        sent = client.post(
            f"{link.path}?{link.query}",
            {"scope": scope, "duration": "4", "reason": "INC-4711 refund mismatch"},
        )
        assert sent.status_code == 302, sent.content.decode()[:500]
        request = AccessRequest.objects.get(requester=people.alice)
        assert (request.column_names, request.state) == (["email"], State.PENDING)

        # 3. Bob approves in Slack.
        client.logout()
        response, _, _ = post_interaction(client, click("approve", request.pk, user="UBOB"))
        assert response.status_code == 200
        after_ack.run()
        request.refresh_from_db()
        assert request.state == State.APPROVED

        # 4. Her next query in the same session shows the emails (a mask answer is re-asked after 1 s).
        clock.now += 1
        assert session.execute(QUERY).fetchall() == raw

        # 5. The grant expires with no worker running: the decision path checks expires_at itself.
        with time_machine.travel(request.expires_at + timedelta(seconds=1), tick=True):
            assert timezone.now() > request.expires_at
            clock.now += 4 * 3600  # the unmask answer was valid until the expiry at the latest
            after = session.execute(QUERY).fetchall()
        request.refresh_from_db()
        assert request.state == State.APPROVED, "no worker ran: the grant's row still says approved"
        assert [r[0] for r in after] == [r[0] for r in raw]
        assert all(got[1] != was[1] for got, was in zip(after, raw, strict=True) if was[1] is not None)
