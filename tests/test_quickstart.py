"""The quick start and production settings, exercised as a user would run them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of someone who set nothing: no DATABASE_URL, REDIS_URL, Slack or OIDC."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "SLACK_", "OIDC_"))
    }
    for key in (
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "STATIC_MANIFEST",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    ):
        env.pop(key, None)
    env.update(VEIL_VAR_DIR=str(tmp_path / "var"), **extra)
    return env


@pytest.mark.slow
def test_quick_start_serves_the_login_page_on_the_embedded_default(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [str(ROOT / "bin" / "veil-dev")],
        env=_embedded_env(tmp_path, PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        printed = []
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line)
            if "Starting development server" in line:
                break
        output = "".join(printed)
        assert f"Veil is running at http://127.0.0.1:{port}/" in output, output
        assert "alice / veil-demo" in output
        page = _get_with_retries(f"http://127.0.0.1:{port}/login/")
        assert "Sign in to Veil" in page
        assert (tmp_path / "var" / "veil.sqlite3").exists(), "the embedded default is SQLite"
        _alice_sees_her_demo_grant(tmp_path, port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _alice_sees_her_demo_grant(tmp_path: Path, port: int) -> None:
    """The decision API on the embedded default, through the server's WSGI application: the demo
    grant unmasks alice's customer emails, and the unmask is recorded (on SQLite) first."""
    created = subprocess.run(
        [
            *(sys.executable, "manage.py", "token", "create", "--service-account", "demo-proxy"),
            *("--name", "quickstart", "--scope", "decisions", "--create-account"),
        ],
        cwd=ROOT,
        env=_embedded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    column = {"instance": "prod-pg", "database": "shop", "schema": "public", "table": "customers"}
    body = {
        "principal": {"user": "alice"},
        "columns": [{**column, "column": "email"}, {**column, "column": "phone"}],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/decisions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {created.stdout.strip()}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        answer = json.loads(response.read())
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    email, phone = answer["decisions"]
    assert (email["action"], email["reason"]["kind"]) == ("unmask", "grant"), answer
    assert phone["action"] == "mask", answer
    assert answer["record_id"] >= 1


def _get_with_retries(url: str) -> str:
    last: Exception | None = None
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                return response.read().decode()
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered: {last}")


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = _embedded_env(
        tmp_path,
        DEBUG="0",
        SECRET_KEY="a-long-random-production-secret-" + "x7Qp2" * 10,
        ALLOWED_HOSTS="veil.example.com",
        SITE_URL="https://veil.example.com",
        DATABASE_URL="postgresql://veil@db.example.com:5432/veil",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_bad_setting_fails_fast_with_its_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=_embedded_env(tmp_path, SECURE_HSTS_SECONDS="a year"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS must be an integer" in result.stderr
