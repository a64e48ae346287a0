"""`/healthz` and `/readyz` against the real PostgreSQL and Redis, and with each taken away."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from config import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_migrations(monkeypatch):
    """Every test checks the migrations again instead of trusting an earlier test's answer."""
    monkeypatch.setattr(health, "_migrations_applied", False)


def test_healthz_answers_without_touching_dependencies(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_ready_with_postgresql_redis_and_every_migration(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok"},
    }


def test_readyz_stays_ready_without_the_broker_and_says_it_failed(client, monkeypatch):
    """Decisions and approvals work without the broker (notifications wait in the outbox): a load
    balancer must not take every node out during a Redis outage."""
    from config.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["checks"] == {"database": "ok", "migrations": "ok", "broker": "failed"}
    assert "127.0.0.1" not in response.content.decode()  # the error's text stays in the log


def test_readyz_is_not_ready_while_a_migration_is_unapplied(client):
    recorder = MigrationRecorder(connection)
    last = recorder.migration_qs.filter(app="audit").order_by("-id").first()
    last.delete()  # as if the code were newer than the schema
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "failed"


@pytest.mark.django_db(transaction=True)
def test_readyz_is_not_ready_when_postgresql_is_unreachable(client, monkeypatch):
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # nothing listens there
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "failed", "migrations": "skipped", "broker": "ok"}


def test_a_readiness_probe_over_plain_http_is_not_redirected(client, settings):
    """Load balancers and compose probe over plain HTTP inside the network."""
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200


def _probe(path: str, *, port: int, allowed_hosts: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "ALLOWED_HOSTS": allowed_hosts}
    return subprocess.run(
        [sys.executable, "deploy/probe.py", path], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.django_db(transaction=True)
def test_the_container_probe_passes_django_host_check_with_the_deployments_hosts(live_server, settings):
    settings.ALLOWED_HOSTS = [".veil.example.com"]
    port = int(live_server.url.rsplit(":", 1)[1])
    assert _probe("/readyz", port=port, allowed_hosts=".veil.example.com").returncode == 0
    refused = _probe("/readyz", port=port, allowed_hosts="elsewhere.example.com")
    assert refused.returncode == 1
    assert "HTTP 400" in refused.stderr
