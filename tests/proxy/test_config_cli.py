"""veil-proxy's configuration file and its command line (``check``, ``run``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from veil_sdk.proxy.config import ConfigError, load, parse

from tests.proxy.conftest import LoginServer, PrivateCluster

pytestmark = pytest.mark.timeout(60)

VEIL_PROXY = str(Path(sys.executable).with_name("veil-proxy"))


def write_config(directory: Path, body: str, name: str = "proxy.toml") -> Path:
    path = directory / name
    path.write_text(body)
    return path


def test_a_toml_file_with_secrets_in_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("veil_service_token\n")
    (tmp_path / "pg-password").write_text("s3cret\n")
    path = write_config(
        tmp_path,
        """
listen = "0.0.0.0:6432"
[veil]
url = "http://veil.internal:8000/"
token_file = "token"
[instances.prod-pg]
host = "db.internal"
databases = ["shop", "analytics"]
user = "veil_proxy"
password_file = "pg-password"
sslmode = "require"
""",
    )

    config = load(path)

    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 6432)  # noqa: S104 - parsed, not bound
    assert config.veil_url == "http://veil.internal:8000"
    assert config.veil_token == "veil_service_token"
    instance = config.instances["prod-pg"]
    assert (instance.host, instance.port, instance.password, instance.sslmode) == (
        "db.internal",
        5432,
        "s3cret",
        "require",
    )
    assert config.target("shop") == (instance, "shop")
    assert config.target("prod-pg/analytics") == (instance, "analytics")
    assert config.target("nope") is None


def test_a_yaml_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "veil: {url: 'https://veil', token: t}\n"
        "instances:\n  pg: {host: h, databases: [shop], user: u, password: p, sslmode: disable}\n",
        "proxy.yaml",
    )

    assert load(path).instances["pg"].databases == ("shop",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"veil": {"url": "ftp://x", "token": "t"}}, "veil.url must be an http"),
        ({"veil": {"url": "http://x"}}, "veil.token is required"),
        ({"veil": {"url": "http://x", "token": "t", "token_file": "f"}}, "not both"),
        ({"bogus": 1}, "unknown key bogus"),
        ({"listen": "6432"}, "listen must be 'host:port'"),
        ({"event_loop": "trio"}, "event_loop must be one of auto, uvloop, asyncio"),
        ({"metrics": {"listen": "9188"}}, "metrics.listen must be 'host:port'"),
        (
            {"metrics": {"listen": "0.0.0.0:9188"}},
            "metrics.token .*required when metrics.listen is not loopback",
        ),
        ({"metrics": {"port": 9188}}, "unknown key metrics.port"),
        ({"tls": {"cert": "c.pem"}}, "tls.cert and tls.key go together"),
        ({"instances": {}}, "at least one"),
        ({"instances": {"pg": {"host": "h", "databases": [], "user": "u"}}}, "instances.pg.databases"),
        (
            {"instances": {"pg": {"host": "h", "databases": ["d"], "user": "u", "sslmode": "maybe"}}},
            "sslmode",
        ),
        (
            {"instances": {"pg": {"host": "h", "databases": ["d"], "user": "u", "sslmode": "verify-full"}}},
            "sslrootcert",
        ),
        ({"instances": {"pg": {"host": "h", "databases": ["d"], "user": "u", "port": "5432"}}}, "port"),
        (
            {"instances": {"pg": {"host": "h", "databases": ["d"], "user": "u", "pasword": "x"}}},
            "unknown key",
        ),
    ],
)
def test_an_invalid_configuration_names_the_key(change: dict[str, Any], message: str) -> None:
    data = {
        "veil": {"url": "http://veil", "token": "t"},
        "instances": {"pg": {"host": "h", "databases": ["d"], "user": "u"}},
        **change,
    }

    with pytest.raises(ConfigError, match=message):
        parse(data)


def test_metrics_are_off_unless_listened_for_and_take_their_token_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "metrics-token").write_text("scrape-secret\n")
    base = {
        "veil": {"url": "http://veil", "token": "t"},
        "instances": {"pg": {"host": "h", "databases": ["d"], "user": "u"}},
    }

    off = parse(base)
    on = parse({**base, "metrics": {"listen": "0.0.0.0:9188", "token_file": "metrics-token"}}, base=tmp_path)
    loopback = parse({**base, "metrics": {"listen": "127.0.0.1:9188"}})

    assert off.metrics_host is None
    assert (on.metrics_host, on.metrics_port, on.metrics_token) == ("0.0.0.0", 9188, "scrape-secret")  # noqa: S104
    assert (loopback.metrics_host, loopback.metrics_token) == ("127.0.0.1", None)


def cluster_toml(cluster: PrivateCluster, veil_url: str, token: str, password: str | None = None) -> str:
    return f"""
listen = "127.0.0.1:0"
[veil]
url = "{veil_url}"
token = "{token}"
[instances.pg2]
host = "127.0.0.1"
port = {cluster.port}
databases = ["{cluster.database}"]
user = "{cluster.user}"
password = "{password or cluster.password}"
sslmode = "require"
"""


def test_check_connects_to_each_upstream_and_to_veil(
    tmp_path: Path, private_cluster: PrivateCluster, login_server: LoginServer
) -> None:
    path = write_config(tmp_path, cluster_toml(private_cluster, login_server.url, LoginServer.SERVICE_TOKEN))

    result = subprocess.run(
        [VEIL_PROXY, "check", "--config", str(path)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok      pg2/{private_cluster.database} as h7_proxy" in result.stdout
    assert "ok      Veil" in result.stdout


def test_check_reports_what_fails(
    tmp_path: Path, private_cluster: PrivateCluster, login_server: LoginServer
) -> None:
    path = write_config(
        tmp_path, cluster_toml(private_cluster, login_server.url, "wrong-token", password="wrong")
    )

    result = subprocess.run(
        [VEIL_PROXY, "check", "--config", str(path)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 1
    assert "FAILED  pg2/h7_shop2" in result.stdout and "password authentication failed" in result.stdout
    assert "FAILED  Veil" in result.stdout and "HTTP 401" in result.stdout


def test_check_rejects_an_invalid_file_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[veil]\nurl = 'http://x'\n")

    result = subprocess.run(
        [VEIL_PROXY, "check", "--config", str(path)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert "veil.token is required" in result.stderr


@pytest.mark.parametrize(
    ("options", "pure_python", "runs_on"),
    [
        ([], "", "(event loop: uvloop 0.2"),
        (["--event-loop", "asyncio"], "", "(event loop: asyncio, row rewrite: compiled)"),
        ([], "1", ", row rewrite: pure Python)"),
    ],
)
def test_run_serves_until_terminated_and_says_what_it_runs_on(
    tmp_path: Path,
    private_cluster: PrivateCluster,
    login_server: LoginServer,
    options: list[str],
    pure_python: str,
    runs_on: str,
) -> None:
    toml = cluster_toml(private_cluster, login_server.url, LoginServer.SERVICE_TOKEN)
    port = _free_port()
    path = write_config(tmp_path, toml.replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    process = subprocess.Popen(
        [VEIL_PROXY, "run", "--config", str(path), *options],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VEIL_PROXY_PURE_PYTHON": pure_python},
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert f"listening on 127.0.0.1:{port}" in line, line
        assert runs_on in line, line
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                f"host=127.0.0.1 port={port} user=alice password=wrong dbname={private_cluster.database}"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
