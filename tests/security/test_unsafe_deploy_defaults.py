"""Finding 8: with DEBUG=0 Veil started on the public default SECRET_KEY and `check --deploy`
passed; VEIL_SIGNING_KEY silently fell back to SECRET_KEY; `demo_data` ran with DEBUG=0 and
docker-compose ran it on every start, creating admin/veil-demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from identity.models import User

ROOT = Path(__file__).resolve().parent.parent.parent
REAL_SECRET = "a-long-random-production-secret-" + "x7Qp2" * 10
REAL_SIGNING_KEY = "another-long-random-signing-key-" + "k9Wm4" * 10


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """A process started as production starts it: DEBUG=0 and only the secrets given here."""
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "VEIL_SIGNING_KEY", "DEBUG"}}
    base.update(
        {"DEBUG": "0", "ALLOWED_HOSTS": "veil.example.com", "SITE_URL": "https://veil.example.com", **env}
    )
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    return run(["manage.py", "check", "--deploy"], **env)


def test_check_deploy_fails_on_the_public_default_secret_key():
    result = check_deploy(VEIL_SIGNING_KEY=REAL_SIGNING_KEY)

    assert result.returncode != 0
    assert "veil.E001" in result.stderr and "SECRET_KEY is a public default" in result.stderr


def test_check_deploy_fails_without_a_signing_key_of_its_own():
    missing = check_deploy(SECRET_KEY=REAL_SECRET)
    same = check_deploy(SECRET_KEY=REAL_SECRET, VEIL_SIGNING_KEY=REAL_SECRET)

    assert (
        missing.returncode != 0
        and "veil.E002" in missing.stderr
        and "VEIL_SIGNING_KEY is not set" in missing.stderr
    )
    assert same.returncode != 0 and "veil.E003" in same.stderr


def test_the_web_application_refuses_to_start_on_a_public_key_and_names_it():
    result = run(["-c", "import config.wsgi"], VEIL_SIGNING_KEY=REAL_SIGNING_KEY)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is a public default" in result.stderr


def test_the_web_application_starts_with_real_secrets_and_in_development_without():
    assert (
        run(
            ["-c", "import config.wsgi"], SECRET_KEY=REAL_SECRET, VEIL_SIGNING_KEY=REAL_SIGNING_KEY
        ).returncode
        == 0
    )
    assert run(["-c", "import config.wsgi"], DEBUG="1").returncode == 0, "make run (DEBUG=1) needs no secrets"


def test_the_signing_key_no_longer_falls_back_to_the_secret_key_in_production():
    result = run(
        [
            "-c",
            "from django.conf import settings; print(repr(settings.VEIL_SIGNING_KEY))",
        ],
        SECRET_KEY=REAL_SECRET,
    )

    assert result.stdout.strip() == "''"


@pytest.mark.django_db
def test_demo_data_is_refused_with_debug_off_unless_asked_for_explicitly(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--allow-public-passwords"):
        call_command("demo_data")
    assert not User.objects.filter(username="admin").exists()

    call_command("demo_data", allow_public_passwords=True)
    assert User.objects.filter(username="admin").exists()


def test_compose_production_needs_real_secrets_and_creates_no_demo_users():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    production = {name: s for name, s in compose["services"].items() if not s.get("profiles")}
    environment = compose["x-veil"]["environment"]

    assert all("demo_data" not in str(s.get("command", "")) for s in production.values())
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert environment["VEIL_SIGNING_KEY"].startswith("${VEIL_SIGNING_KEY:?")
    demo = [s for s in compose["services"].values() if "demo" in s.get("profiles", [])]
    assert demo and "demo_data --allow-public-passwords" in str(demo[0]["command"]), (
        "a trial still has its demo"
    )
