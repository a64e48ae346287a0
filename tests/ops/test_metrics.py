"""`/metrics`: who may scrape it, and that each series moves when what it counts happens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from audit.models import Channel
from audit.services import checkpoint_create
from identity.models import Scope
from jitaccess import tasks
from jitaccess.models import DeliveryState, Notification
from jitaccess.services.requests import request_approve
from tests.factories import make_token
from tests.jitaccess.conftest import world  # noqa: F401  (the JIT personas)
from tests.masking.test_decisions_api import _col, _decide, _give_alice_a_grant

pytestmark = pytest.mark.django_db
TOKEN = "scrape-token-0123456789"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def read() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain; version=")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
        }

    return read


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_scrape_without_the_token_is_refused(client, settings):
    settings.METRICS_TOKEN = TOKEN
    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert missing.status_code == wrong.status_code == 401
    assert missing["WWW-Authenticate"] == "Bearer"
    assert b"veil_" not in missing.content + wrong.content


def test_metrics_are_off_until_a_token_or_network_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 403
    assert b"METRICS_TOKEN" in response.content


def test_an_allowed_network_scrapes_without_a_token_and_others_do_not(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 401
    # A forwarded header names no one: only the connecting address counts.
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 401


@pytest.fixture
def proxy(api_client):
    _, token = make_token([Scope.DECISIONS], account_name="sql-proxy")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


def test_decisions_are_counted_by_action_and_reason_with_their_latency(world, proxy, scrape):  # noqa: F811
    before = scrape()
    _give_alice_a_grant(world.alice, world.project)
    body = _decide(proxy, [_col("email"), _col("phone"), _col("no_such_column")]).json()
    assert [d["action"] for d in body["decisions"]] == ["unmask", "mask", "mask"]
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("veil_decisions_total", action="unmask", reason="grant") == 1
    assert moved("veil_decisions_total", action="mask", reason="unknown_column") == 1
    assert moved("veil_decision_requests_total") == 1
    assert moved("veil_decision_duration_seconds_count") == 1
    assert moved("veil_unmask_records_total", outcome="written") == 1
    assert moved("veil_unmask_records_total", outcome="failed") == 0
    assert moved("veil_decision_fail_closed_total") == 0


def test_an_unmask_that_cannot_be_recorded_counts_as_failed_and_fail_closed(world, proxy, scrape):  # noqa: F811
    _give_alice_a_grant(world.alice, world.project)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
            " LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE INSERT ON audit_decisionrecord"
            " FOR EACH ROW EXECUTE FUNCTION refuse();"
        )
    before = scrape()
    body = _decide(proxy, [_col("email"), _col("id")]).json()
    after = scrape()

    assert body["degraded"] is True
    assert (
        value(after, "veil_unmask_records_total", outcome="failed")
        - value(before, "veil_unmask_records_total", outcome="failed")
        == 1
    )
    assert (
        value(after, "veil_decision_fail_closed_total") - value(before, "veil_decision_fail_closed_total")
        == 1
    )
    degraded = ("veil_decisions_total", (("action", "mask"), ("reason", "degraded")))
    assert after.get(degraded, 0) - before.get(degraded, 0) == 2


def test_a_broken_metric_never_changes_a_decision(world, proxy, monkeypatch):  # noqa: F811
    from shared import metrics

    def broken(*args, **kwargs):
        raise RuntimeError("metrics file full")

    monkeypatch.setattr(metrics.DECISION_SECONDS, "observe", broken)
    monkeypatch.setattr(metrics._record_written, "inc", broken)
    _give_alice_a_grant(world.alice, world.project)
    body = _decide(proxy, [_col("email")]).json()
    assert body["decisions"][0]["action"] == "unmask"
    assert "degraded" not in body


def test_state_gauges_follow_requests_grants_the_outbox_and_the_audit_log(world, scrape):  # noqa: F811
    request = world.request("email")
    pending = scrape()
    assert value(pending, "veil_state_up") == 1
    assert value(pending, "veil_requests_pending") == 1
    assert value(pending, "veil_grants_in_force") == 0
    backlog = {k[1]: v for k, v in pending.items() if k[0] == "veil_outbox_backlog"}
    assert sum(backlog.values()) == Notification.objects.filter(state=DeliveryState.PENDING).count() > 0
    assert value(pending, "veil_audit_events_since_checkpoint") > 0
    assert value(pending, "veil_audit_unchecked_age_seconds") >= 0

    request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)
    Notification.objects.filter(state=DeliveryState.PENDING, channel="email").update(
        state=DeliveryState.FAILED, last_error="SMTPConnectError"
    )
    Notification.objects.filter(state=DeliveryState.PENDING).update(
        created_at=Notification.objects.first().created_at - timedelta(minutes=10), last_error="timeout"
    )
    checkpoint_create()
    approved = scrape()
    assert value(approved, "veil_requests_pending") == 0
    assert value(approved, "veil_grants_in_force") == 1
    oldest = [v for k, v in approved.items() if k[0] == "veil_outbox_oldest_age_seconds"]
    assert oldest and min(oldest) >= 600
    retrying = [
        v
        for k, v in approved.items()
        if k[0] == "veil_outbox_delivery_failures" and ("state", "retrying") in k[1]
    ]
    assert sum(retrying) == Notification.objects.filter(state=DeliveryState.PENDING).count()
    assert value(approved, "veil_outbox_delivery_failures", channel="email", state="gave_up") == (
        Notification.objects.filter(state=DeliveryState.FAILED, channel="email").count()
    )
    assert value(approved, "veil_audit_events_since_checkpoint") == 0
    assert value(approved, "veil_audit_unchecked_age_seconds") == 0
    assert value(approved, "veil_audit_checkpoint_timestamp_seconds") > 0


def test_the_sweep_reports_its_last_successful_run(scrape):
    from django.core.cache import cache

    from config.metrics import SWEEP_LAST_RUN_KEY

    cache.delete(SWEEP_LAST_RUN_KEY)
    assert ("veil_sweep_last_success_timestamp_seconds", ()) not in scrape()
    tasks.sweep_requests.apply()
    assert value(scrape(), "veil_sweep_last_success_timestamp_seconds") > 0


def test_failed_sign_ins_are_counted(client, scrape, db):
    from tests.factories import make_user

    make_user("alice")
    before = value(scrape(), "veil_login_failures_total", kind="failed")
    client.post("/login/", {"username": "alice", "password": "wrong"})
    assert value(scrape(), "veil_login_failures_total", kind="failed") - before == 1
