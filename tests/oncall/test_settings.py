"""On-call settings, read as production reads them (a fresh process, DEBUG=0): off and harmless
when unset, credentials from `*_FILE`, and a base URL that would send a token in clear refused at
start-up with the variable's name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "veil.example.com",
    "SITE_URL": "https://veil.example.com",
    "SECRET_KEY": "a-long-random-production-secret-" + "x7Qp2" * 10,
    "VEIL_SIGNING_KEY": "another-long-random-signing-key-" + "k9Wm4" * 10,
}
ONCALL = (
    "PAGERDUTY_API_TOKEN",
    "PAGERDUTY_API_URL",
    "OPSGENIE_API_KEY",
    "OPSGENIE_API_URL",
    "ONCALL_API_TIMEOUT_S",
)


# What pytest-env switches off for the tests' own server; production keeps Django's secure defaults.
TEST_ONLY = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(ONCALL) and k not in TEST_ONLY}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, **PRODUCTION, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def setting(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    return run(["-c", code], DJANGO_SETTINGS_MODULE="config.settings", **env)


def test_check_deploy_passes_with_on_call_approval_unset():
    result = run(["manage.py", "check", "--deploy"])

    assert result.returncode == 0, result.stderr
    assert setting("PAGERDUTY_API_URL").stdout.strip() == "https://api.pagerduty.com"


def test_credentials_are_read_from_files(tmp_path):
    token = tmp_path / "pagerduty-token"
    token.write_text("pd-secret-from-a-file\n")

    assert setting("PAGERDUTY_API_TOKEN", PAGERDUTY_API_TOKEN_FILE=str(token)).stdout.strip() == (
        "pd-secret-from-a-file"
    )
    assert run(["manage.py", "check", "--deploy"], PAGERDUTY_API_TOKEN_FILE=str(token)).returncode == 0


def test_a_base_url_that_would_send_the_token_in_clear_is_refused_by_name():
    refused = setting("OPSGENIE_API_URL", OPSGENIE_API_URL="http://api.opsgenie.com")
    assert refused.returncode != 0
    assert "OPSGENIE_API_URL must use https (http only to localhost)" in refused.stderr

    local = setting("PAGERDUTY_API_URL", PAGERDUTY_API_URL="http://127.0.0.1:8089")
    assert (local.returncode, local.stdout.strip()) == (0, "http://127.0.0.1:8089")


def test_a_base_url_with_a_query_or_credentials_and_a_zero_timeout_are_refused():
    with_query = setting("PAGERDUTY_API_URL", PAGERDUTY_API_URL="https://api.pagerduty.com/?x=1")
    assert with_query.returncode != 0 and "PAGERDUTY_API_URL must be a plain base URL" in with_query.stderr
    zero = setting("ONCALL_API_TIMEOUT_S", ONCALL_API_TIMEOUT_S="0")
    assert zero.returncode != 0 and "ONCALL_API_TIMEOUT_S must be at least 1" in zero.stderr
