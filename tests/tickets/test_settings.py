"""Jira settings, read as production reads them (a fresh process, DEBUG=0): off when unset, the token
from `JIRA_API_TOKEN_FILE`, and a site that would get the token in clear, or half a configuration,
refused at start-up with the variable's name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "veil.example.com",
    "SITE_URL": "https://veil.example.com",
    "SECRET_KEY": "a-long-random-production-secret-" + "x7Qp2" * 10,
    "VEIL_SIGNING_KEY": "another-long-random-signing-key-" + "k9Wm4" * 10,
}
JIRA = {
    "JIRA_URL": "https://acme.atlassian.net",
    "JIRA_EMAIL": "veil@acme.example",
    "JIRA_API_TOKEN": "t0ken",
}


def settings_of(**env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.JIRA_URL, s.JIRA_EMAIL, s.JIRA_API_TOKEN, s.JIRA_API_TIMEOUT_S)"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("JIRA_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **PRODUCTION, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_jira_is_off_when_unset():
    result = settings_of()

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2"], "no site, no account, no token; the default timeout"


def test_the_api_token_may_come_from_a_file(tmp_path):
    secret = tmp_path / "jira-token"
    secret.write_text("from-a-docker-secret\n")
    env = {**JIRA, "JIRA_URL": "https://acme.atlassian.net/", "JIRA_API_TOKEN_FILE": str(secret)}

    result = settings_of(**env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "https://acme.atlassian.net",
        "veil@acme.example",
        "from-a-docker-secret",
        "2",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JIRA_URL": "http://acme.atlassian.net"}, "JIRA_URL must use https (http only to localhost)"),
        ({"JIRA_URL": "https://bot:pw@acme.atlassian.net"}, "JIRA_URL must be a plain site URL"),
        ({"JIRA_URL": "https://acme.atlassian.net/?x=1"}, "JIRA_URL must be a plain site URL"),
        ({"JIRA_API_TOKEN": ""}, "JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN go together"),
        ({"JIRA_API_TIMEOUT_S": "0"}, "JIRA_API_TIMEOUT_S must be at least 1"),
    ],
)
def test_a_bad_jira_setting_stops_veil_at_start_up_naming_it(env, message):
    result = settings_of(**{**JIRA, **env})

    assert result.returncode != 0
    assert message in result.stderr
