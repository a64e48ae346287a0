"""veil-proxy's configuration: one TOML (or YAML) file, checked whole before anything starts.

Every secret can come from a file instead (``token_file``, ``password_file``), so it can live in
a mounted secret rather than in the configuration. A bad file fails with a message naming the
offending key.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil_sdk.proxy.loops import EVENT_LOOPS

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class Instance:
    """A PostgreSQL server the proxy fronts, and the account it logs in with there."""

    name: str
    host: str
    port: int
    databases: tuple[str, ...]
    user: str
    password: str | None
    sslmode: str
    sslrootcert: str | None


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    tls_cert: str | None
    tls_key: str | None
    veil_url: str
    veil_token: str
    veil_timeout: float
    guard_mode: str | None
    request_url: str | None
    instances: dict[str, Instance]
    max_message_bytes: int
    login_failure_delay: float
    login_max_delay: float
    event_loop: str = "auto"
    """``auto`` (uvloop when installed), ``uvloop`` or ``asyncio`` (see ``veil_sdk.proxy.loops``)."""
    metrics_host: str | None = None
    """Where Prometheus metrics are served (``[metrics] listen``); None: not served."""
    metrics_port: int = 0
    metrics_token: str | None = None

    def target(self, dbname: str) -> tuple[Instance, str] | None:
        """The instance and database a client's ``dbname`` names: ``shop`` when only one instance
        has a database of that name, else ``prod-pg/shop``. None when it names none."""
        if "/" in dbname:
            name, _, database = dbname.partition("/")
            instance = self.instances.get(name)
            return (instance, database) if instance and database in instance.databases else None
        matches = [i for i in self.instances.values() if dbname in i.databases]
        return (matches[0], dbname) if len(matches) == 1 else None


def load(path: str | Path) -> Config:
    """Read and check the file (``.yaml``/``.yml`` need PyYAML; anything else is TOML)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError("a YAML configuration needs PyYAML; use TOML or install it") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse(data, base=path.parent)


def parse(data: Any, base: Path = Path()) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a table of keys")
    _known(data, "", {"listen", "event_loop", "tls", "veil", "instances", "limits", "login", "metrics"})
    host, port = _listen(data.get("listen", "127.0.0.1:6432"))
    tls = _table(data, "tls")
    _known(tls, "tls.", {"cert", "key"})
    cert, key = _opt_str(tls, "tls.cert"), _opt_str(tls, "tls.key")
    if (cert is None) != (key is None):
        raise ConfigError("tls.cert and tls.key go together")
    for name, file in (("tls.cert", cert), ("tls.key", key)):
        if file is not None and not (base / file).is_file():
            raise ConfigError(f"{name}: no such file {file}")
    veil = _table(data, "veil")
    _known(veil, "veil.", {"url", "token", "token_file", "timeout", "guard_mode", "request_url"})
    url = _str(veil, "veil.url")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("veil.url must be an http:// or https:// URL")
    token = _secret(veil, "veil.token", base, required=True)
    assert token is not None
    guard_mode = _opt_str(veil, "veil.guard_mode")  # None: each project's setting in Veil
    if guard_mode not in (None, "refuse", "audit"):
        raise ConfigError("veil.guard_mode must be 'refuse' or 'audit'")
    instances_data = _table(data, "instances")
    if not instances_data:
        raise ConfigError("instances: name at least one PostgreSQL instance")
    instances = {name: _instance(name, spec, base) for name, spec in instances_data.items()}
    limits = _table(data, "limits")
    _known(limits, "limits.", {"max_message_bytes"})
    login = _table(data, "login")
    _known(login, "login.", {"failure_delay", "max_delay"})
    event_loop = data.get("event_loop", "auto")
    if event_loop not in EVENT_LOOPS:
        raise ConfigError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}")
    metrics = _table(data, "metrics")
    _known(metrics, "metrics.", {"listen", "token", "token_file"})
    metrics_host, metrics_port, metrics_token = (
        None,
        0,
        _secret(metrics, "metrics.token", base, required=False),
    )
    if "listen" in metrics:
        try:
            metrics_host, metrics_port = _listen(metrics["listen"])
        except ConfigError:
            raise ConfigError("metrics.listen must be 'host:port'") from None
        if metrics_token is None and not _is_loopback(metrics_host):
            raise ConfigError("metrics.token (or token_file) is required when metrics.listen is not loopback")
    return Config(
        listen_host=host,
        listen_port=port,
        tls_cert=str(base / cert) if cert else None,
        tls_key=str(base / key) if key else None,
        veil_url=url.rstrip("/"),
        veil_token=token,
        veil_timeout=_number(veil, "veil.timeout", 0.5),
        guard_mode=guard_mode,
        request_url=_opt_str(veil, "veil.request_url"),
        instances=instances,
        max_message_bytes=int(_number(limits, "limits.max_message_bytes", 64 * 1024 * 1024)),
        login_failure_delay=_number(login, "login.failure_delay", 0.5),
        login_max_delay=_number(login, "login.max_delay", 10.0),
        event_loop=event_loop,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        metrics_token=metrics_token,
    )


def _instance(name: str, spec: Any, base: Path) -> Instance:
    where = f"instances.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a table")
    if not name or "/" in name:
        raise ConfigError(f"{where}: an instance name must be non-empty and without '/'")
    _known(
        spec,
        f"{where}.",
        {"host", "port", "databases", "user", "password", "password_file", "sslmode", "sslrootcert"},
    )
    databases = spec.get("databases")
    if (
        not isinstance(databases, list)
        or not databases
        or not all(isinstance(d, str) and d for d in databases)
    ):
        raise ConfigError(f"{where}.databases must be a non-empty list of database names")
    port = spec.get("port", 5432)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where}.port must be a TCP port number")
    sslmode = spec.get("sslmode", "prefer")
    if sslmode not in SSLMODES:
        raise ConfigError(f"{where}.sslmode must be one of {', '.join(SSLMODES)}")
    rootcert = _opt_str(spec, f"{where}.sslrootcert")
    if sslmode.startswith("verify") and rootcert is None:
        raise ConfigError(f"{where}.sslrootcert is needed for sslmode {sslmode}")
    return Instance(
        name=name,
        host=_str(spec, f"{where}.host"),
        port=port,
        databases=tuple(databases),
        user=_str(spec, f"{where}.user"),
        password=_secret(spec, f"{where}.password", base, required=False),
        sslmode=sslmode,
        sslrootcert=str(base / rootcert) if rootcert else None,
    )


def _listen(value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError("listen must be 'host:port'")
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError("listen must be 'host:port'")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _known(table: dict[str, Any], prefix: str, keys: set[str]) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]}")


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table")
    return value


def _str(table: dict[str, Any], where: str) -> str:
    value = table.get(where.rsplit(".", 1)[-1])
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} is required (a non-empty string)")
    return value


def _opt_str(table: dict[str, Any], where: str) -> str | None:
    key = where.rsplit(".", 1)[-1]
    return None if table.get(key) is None else _str(table, where)


def _number(table: dict[str, Any], where: str, default: float) -> float:
    value = table.get(where.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where} must be a non-negative number")
    return float(value)


def _secret(table: dict[str, Any], where: str, base: Path, *, required: bool) -> str | None:
    """``key`` or ``key_file`` (a file holding it; surrounding whitespace is dropped)."""
    key = where.rsplit(".", 1)[-1]
    if key in table and f"{key}_file" in table:
        raise ConfigError(f"give {where} or {where}_file, not both")
    if f"{key}_file" in table:
        file = base / _str(table, f"{where}_file")
        try:
            value = file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}_file: cannot read {file}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{where}_file: {file} is empty")
        return value
    if key in table or required:
        return _str(table, where)
    return None
