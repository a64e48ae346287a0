"""Multiprocess mode as production runs it: gunicorn with two workers, one scrape sees both."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from identity.models import Scope
from tests.factories import make_token

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path):
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"left by an earlier run")
    port = _free_port()
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "METRICS_TOKEN": "scrape-token-0123456789",
        "DEBUG": "0",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--no-control-socket",  # its default path is per user: parallel servers would share it
        ],
        cwd=ROOT,  # gunicorn.conf.py is read from here, as in the image
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()  # noqa: S310 - loopback
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail((tmp_path / "gunicorn.log").read_text())
            time.sleep(0.1)
    yield url, multiproc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def _decide(url: str, token: str) -> None:
    body = {
        "principal": {"user": "alice@example.com"},
        "query_id": "q",
        "columns": [
            {"instance": "prod-pg", "database": "shop", "schema": "public", "table": "t", "column": "c"}
        ],
    }
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{url}/api/v1/decisions",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Connection": "close",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status == 200


def _requests_counted(url: str) -> float:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{url}/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "veil_decision_requests_total"
    )


def _workers_that_answered(multiproc: Path) -> list[str]:
    """The per-worker files holding at least one decision request."""
    answered = []
    for path in multiproc.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            if any(s.name == "veil_decision_requests_total" and s.value for s in family.samples):
                answered.append(path.name)
    return answered


def test_one_scrape_counts_the_requests_every_worker_answered(server):
    url, multiproc = server
    _, token = make_token([Scope.DECISIONS])
    assert not (multiproc / "counter_999999.db").exists()  # stale files are emptied at start

    sent = 0
    while len(_workers_that_answered(multiproc)) < 2 and sent < 400:
        _decide(url, token)
        sent += 1
    assert len(_workers_that_answered(multiproc)) == 2, "every request reached the same worker"
    # Whichever worker answers the scrape, it reports both workers' requests.
    assert [_requests_counted(url) for _ in range(6)] == [float(sent)] * 6
