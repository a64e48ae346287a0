"""docker compose's veil-proxy in front of the sample shop (`docker compose --profile demo up`).

Docker does not run here, so what compose would do is checked piece by piece: the services fit
together (names, profiles, mounts, the secret both sides share, the published port), the
proxy's configuration is one veil-proxy accepts once proxy-setup has written its files, and
proxy-setup itself (deploy/proxy/compose-setup.sh) is run for real against Veil's database.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROXY_SERVICES = ("shop-db", "proxy-setup", "proxy")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path or volume name, for `source:target[:mode]` entries."""
    return {entry.split(":")[1]: entry.split(":")[0] for entry in service.get("volumes", [])}


def _setup(directory: Path) -> subprocess.CompletedProcess[str]:
    """proxy-setup's command, as compose runs it in Veil's image (cwd the project, python on PATH)."""
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "PROXY_SETUP_OWNER": str(os.getuid()),
    }
    return subprocess.run(
        ["sh", "deploy/proxy/compose-setup.sh", str(directory)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )


def test_proxy_services_are_a_demo_trial_wired_to_each_other(compose):
    services = compose["services"]
    config = tomllib.loads((ROOT / "deploy" / "proxy" / "compose.toml").read_text())
    shop_db, setup, proxy = (services[name] for name in PROXY_SERVICES)

    assert all(services[name]["profiles"] == ["demo"] for name in PROXY_SERVICES)
    for name, service in services.items():  # nothing outside the trial waits for the trial
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on an unknown service {needed}"
            if not service.get("profiles"):
                assert not services[needed].get("profiles"), f"{name} needs {needed}, a demo service"
    assert set(proxy["depends_on"]) == {"proxy-setup", "shop-db", "web"}

    # The proxy reads the file compose mounts, serves the port compose publishes.
    config_path = proxy["command"].split("--config ")[1]
    assert _mounts(proxy)[config_path] == "./deploy/proxy/compose.toml"
    assert proxy["ports"] == [f"{config['listen'].rsplit(':', 1)[1]}:6432"]
    # It logs in to shop-db as the database's owner, with the one secret both are given.
    instance = config["instances"]["prod-pg"]  # the demo catalog's instance, so Veil knows its columns
    assert instance["host"] == "shop-db"
    assert instance["databases"] == [shop_db["environment"]["POSTGRES_DB"]] == ["shop"]
    assert instance["user"] == shop_db["environment"]["POSTGRES_USER"]
    assert shop_db["secrets"] == proxy["secrets"] == ["shop_db_password"]
    assert shop_db["environment"]["POSTGRES_PASSWORD_FILE"] == instance["password_file"]
    assert instance["password_file"] == "/run/secrets/shop_db_password"
    assert (ROOT / compose["secrets"]["shop_db_password"]["file"]).is_file()
    assert (ROOT / _mounts(shop_db)["/docker-entrypoint-initdb.d/10-shop.sql"]).is_file()
    # Its token and TLS files come from proxy-setup's volume, read-only for the proxy.
    volume = _mounts(setup)["/run/veil-proxy"]
    assert volume in compose["volumes"] and _mounts(proxy)["/run/veil-proxy"] == volume
    assert "/run/veil-proxy:ro" in " ".join(proxy["volumes"])
    files = [config["tls"]["cert"], config["tls"]["key"], config["veil"]["token_file"]]
    assert all(f.startswith("/run/veil-proxy/") for f in files)
    assert setup["command"].endswith("compose-setup.sh /run/veil-proxy")
    # It asks the web service and holds none of Veil's own secrets or database credentials.
    assert config["veil"]["url"] == "http://web:8000"
    assert "environment" not in proxy and "env_file" not in proxy


@pytest.mark.django_db(transaction=True)
def test_proxy_setup_writes_a_token_and_certificate_the_proxy_config_accepts(tmp_path):
    from veil_sdk.proxy.config import parse

    from identity.models import ApiToken, Scope
    from identity.services import token_authenticate

    secrets_dir = tmp_path / "run" / "veil-proxy"
    _setup(secrets_dir)

    token = token_authenticate((secrets_dir / "token").read_text().strip())
    assert token is not None and token.service_account is not None
    assert token.service_account.name == "sql-proxy"
    assert set(token.scopes) == {Scope.DECISIONS, Scope.ACCESS_EVENTS}
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
        secrets_dir / "server.crt", secrets_dir / "server.key"
    )
    assert {oct(p.stat().st_mode & 0o777) for p in secrets_dir.iterdir()} == {"0o600"}

    # The proxy's configuration as it is in the container, its absolute paths moved under tmp_path.
    (tmp_path / "run" / "secrets").mkdir()
    (tmp_path / "run" / "secrets" / "shop_db_password").write_text(
        (ROOT / "deploy" / "shop" / "demo-password").read_text()
    )
    text = (ROOT / "deploy" / "proxy" / "compose.toml").read_text().replace('"/run/', f'"{tmp_path}/run/')
    config = parse(tomllib.loads(text))
    assert config.tls_cert and config.tls_key
    assert config.veil_token == (secrets_dir / "token").read_text().strip()
    assert config.instances["prod-pg"].password == "shop-demo"
    assert config.target("shop") == (config.instances["prod-pg"], "shop")

    # Restarting the stack keeps what was made: no second token, the same certificate.
    before = {p.name: p.read_bytes() for p in secrets_dir.iterdir()}
    _setup(secrets_dir)
    assert {p.name: p.read_bytes() for p in secrets_dir.iterdir()} == before
    assert ApiToken.objects.filter(service_account__name="sql-proxy").count() == 1
