"""`make proxy-demo` (bin/proxy-demo) on a machine with a local PostgreSQL: the sample shop, the two
tokens in the Veil `make run` uses, and a veil-proxy configuration that `veil-proxy check` passes
against that PostgreSQL and that Veil. Run up to the point where it would start the proxy
(PROXY_DEMO_PREPARE_ONLY=1), against the real Veil on loopback and the real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import psycopg
import pytest

from tests.datapath import shop_source
from tests.sdk.conftest import veil_url  # noqa: F401 - the live Veil the script's tokens work with

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def _demo(var: Path, shop: str, veil: str) -> subprocess.CompletedProcess[str]:
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "VEIL_VAR_DIR": str(var),
        "SHOP_DATABASE": shop,
        "VEIL_URL": veil,
        "PROXY_PORT": "16432",
        "PGHOST": "127.0.0.1",
        "PGPORT": "5432",
        "PGUSER": "postgres",
        "PROXY_DEMO_PREPARE_ONLY": "1",
    }
    return subprocess.run(["bin/proxy-demo"], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture
def shop_name():
    name = shop_source.source_name("veil_demo_shop")
    yield name
    shop_source.drop(name)


def test_proxy_demo_prepares_the_shop_tokens_and_a_config_veil_proxy_accepts(tmp_path, shop_name, veil_url):  # noqa: F811
    from jitaccess.demo import load_demo_data

    load_demo_data()
    done = _demo(tmp_path, shop_name, veil_url)
    assert done.returncode == 0, done.stderr

    folder = tmp_path / "proxy-demo"
    alice_token = (folder / "alice-token").read_text().strip()
    assert alice_token not in done.stdout  # printed as $(cat file), never in the clear
    assert f'psql "host=127.0.0.1 port=16432 user=alice@example.com dbname={shop_name}"' in done.stdout
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {"0o600"}
    with psycopg.connect(shop_source.dsn(shop_name)) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (shop_source.CUSTOMERS,)

    # The configuration reaches the local PostgreSQL and Veil with the service token.
    check = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "veil-proxy"), "check", "--config", str(folder / "veil-proxy.toml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"ok      prod-pg/{shop_name} as postgres" in check.stdout
    # And Veil takes alice's token as her login, asked as the proxy asks.
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{veil_url}/api/v1/query-logins",
        data=json.dumps(
            {"login": "alice@example.com", "token": alice_token, "instance": "prod-pg", "database": "shop"}
        ).encode(),
        headers={
            "Authorization": f"Bearer {(folder / 'service-token').read_text().strip()}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        answer = json.loads(response.read())
    assert answer["valid"] is True and answer["principal"] == {"user": "alice@example.com"}

    # Again: the sample is made afresh, the tokens are kept.
    tokens = {p.name: p.read_text() for p in folder.glob("*-token")}
    assert _demo(tmp_path, shop_name, veil_url).returncode == 0
    assert {p.name: p.read_text() for p in folder.glob("*-token")} == tokens


def test_proxy_demo_never_drops_a_database_it_did_not_make(tmp_path, shop_name, veil_url):  # noqa: F811
    with psycopg.connect(shop_source.ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{shop_name}"')
    with psycopg.connect(shop_source.dsn(shop_name), autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (id int)")

    done = _demo(tmp_path, shop_name, veil_url)

    assert done.returncode == 1
    assert "is not the sample: set SHOP_DATABASE" in done.stderr
    with psycopg.connect(shop_source.dsn(shop_name)) as conn:
        assert conn.execute("SELECT to_regclass('precious') IS NOT NULL").fetchone() == (True,)
    assert not (tmp_path / "proxy-demo" / "veil-proxy.toml").exists()
