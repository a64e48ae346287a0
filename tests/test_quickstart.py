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
        output = _until_ready(proc)
        # The banner is last: after Django's and Celery's, once the server accepts connections.
        banner = output[output.index(f"Veil is running at http://127.0.0.1:{port}/") :]
        assert output.index("Starting development server") < output.index(banner), output
        assert output.index("[queues]") < output.index(banner), output
        assert "No hostname was supplied" not in output, "kombu's warning, once per connection"
        for person in ("alice", "bob", "carol", "dave", "erin", "admin"):
            assert f"{person} / veil-demo" in banner
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=10) as response:
            assert "Sign in to Veil" in response.read().decode(), "the banner came before the server"
        assert (tmp_path / "var" / "veil.sqlite3").exists(), "the embedded default is SQLite"
        _alice_sees_her_demo_grant(tmp_path, port)
        _the_printed_commands_work(banner, tmp_path)
    finally:
        # Ctrl-C, as a terminal sends it to the foreground process group: the script returns only
        # once the server and the worker (with its pool and beat) have stopped.
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    assert _alive_in_group(proc.pid) == [], "nothing of the group outlives the script"


def _alive_in_group(pgid: int) -> list[str]:
    """The command lines of the group's processes still running (zombies, which the system reaps
    once their parent is gone, have stopped)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append((stat.parent / "cmdline").read_text().replace("\0", " "))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return alive


def _until_ready(proc: subprocess.Popen[str]) -> str:
    printed = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        printed.append(line)
        if "Press Ctrl-C to stop." in line:
            break
    return "".join(printed)


def _the_printed_commands_work(banner: str, tmp_path: Path) -> None:
    """A newcomer pastes the curl and SDK commands of the banner as they are, with the demo's token."""
    commands = [line.strip() for line in banner.splitlines() if line.strip().startswith(("curl ", ".venv/"))]
    assert len(commands) == 2, banner
    curl, sdk = (
        subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=_embedded_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        for command in commands
    )
    assert curl.returncode == 0, curl.stderr
    email, phone = json.loads(curl.stdout)["decisions"]
    assert (email["action"], email["reason"]["kind"], phone["action"]) == ("unmask", "grant", "mask")
    assert sdk.returncode == 0, sdk.stdout + sdk.stderr
    assert "Access event delivered." in sdk.stdout


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
