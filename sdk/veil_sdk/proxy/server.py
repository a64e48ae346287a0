"""The listener: TLS, the startup and login exchange with each client, CancelRequest, and the
per-target state shared by sessions (the data path's enforcer, catalog connections).

A client logs in as the person: user name = their Veil login, password = their Veil token (scope
``query``), checked with Veil. The upstream connection uses the instance's configured account.
A password is taken only over TLS, or over plaintext from loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from veil_sdk.client import VeilClient
from veil_sdk.proxy import wire
from veil_sdk.proxy.config import Config, Instance
from veil_sdk.proxy.logins import FailureThrottle, LoginChecker
from veil_sdk.proxy.metrics import MetricsEndpoint, ProxyStats
from veil_sdk.proxy.session import Session
from veil_sdk.proxy.upstream import Upstream, UpstreamError, connect

logger = logging.getLogger("veil_sdk.proxy")

STARTUP_TIMEOUT_S = 30.0
_NOT_FORWARDED = frozenset({"user", "database", "replication"})


class CatalogPool:
    """A few idle connections to one target for catalog lookups a session cannot run on its own
    connection (it is mid-result, mid-pipeline or in a transaction). ``search_path`` is left empty,
    so what they print (view definitions) is fully qualified."""

    def __init__(self, instance: Instance, database: str, size: int = 2) -> None:
        self._instance, self._database = instance, database
        self._idle: list[Upstream] = []
        self._slots = asyncio.Semaphore(size)

    async def run(self, sql: str) -> list[tuple[str | None, ...]]:
        async with self._slots:
            while True:
                pooled = self._idle.pop() if self._idle else None
                connection = pooled or await connect(self._instance, self._database, {"search_path": ""})
                try:
                    rows = await connection.simple_query(sql)
                except (wire.PeerClosed, wire.ProtocolError, ConnectionError, OSError) as exc:
                    connection.close()
                    if pooled is not None:  # went stale while idle (server restarted): try a fresh one
                        continue
                    raise UpstreamError(f"catalog connection lost: {exc!r}") from None
                except UpstreamError:
                    self._idle.append(connection)
                    raise
                self._idle.append(connection)
                return rows

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class Target:
    """One (instance, database): its enforcer and catalog connections, shared by its sessions."""

    def __init__(self, instance: Instance, database: str, enforcer: Any, datapath: ModuleType | Any) -> None:
        self.instance, self.database, self.enforcer = instance, database, enforcer
        self.pool = CatalogPool(instance, database)
        self.field: Callable[..., Any] = datapath.Field
        self._type_names: dict[int, str] = {}

    async def type_name(self, oid: int) -> str:
        name = self._type_names.get(oid)
        if name is None:
            try:
                rows = await self.pool.run(f"SELECT typname FROM pg_catalog.pg_type WHERE oid = {int(oid)}")  # noqa: S608 - an int
            except UpstreamError:
                return ""  # unknown: treated as not text-like (masked values go out as NULL)
            name = self._type_names[oid] = str(rows[0][0]) if rows else ""
        return name


@dataclass(frozen=True)
class _CancelKey:
    instance: Instance
    pid: int
    secret: int


class ProxyServer:
    """veil-proxy. ``datapath`` is the module the enforcers come from (``veil_sdk.datapath``);
    ``login_checker`` asks Veil about logins (built from the configuration when not given)."""

    def __init__(
        self,
        config: Config,
        *,
        datapath: ModuleType | Any = None,
        login_checker: LoginChecker | None = None,
        veil_client: VeilClient | None = None,
    ) -> None:
        if datapath is None:
            from veil_sdk import datapath as datapath_module

            datapath = datapath_module
        self.config = config
        self.datapath = datapath
        self.veil = veil_client or VeilClient(config.veil_url, config.veil_token, timeout=config.veil_timeout)
        self.logins = login_checker or LoginChecker(config.veil_url, config.veil_token)
        self.throttle = FailureThrottle(config.login_failure_delay, config.login_max_delay)
        self.targets: dict[tuple[str, str], Target] = {}
        self.cancel_keys: dict[tuple[int, int], _CancelKey] = {}
        self.sessions = 0
        self.stats = ProxyStats()
        self.metrics: MetricsEndpoint | None = None
        """Serving Prometheus metrics (``[metrics] listen``), once started."""
        self._tls = _server_context(config) if config.tls_cert else None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen (and serve metrics when configured); the port listened on (useful with port 0)."""
        if self.config.metrics_host is not None and self.metrics is None:
            self.metrics = MetricsEndpoint(
                self, self.config.metrics_host, self.config.metrics_port, self.config.metrics_token
            )
        self._server = await asyncio.start_server(
            self._client, self.config.listen_host, self.config.listen_port
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for target in self.targets.values():
            target.pool.close()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)
        await asyncio.to_thread(self.veil.close, 2.0)

    def target(self, instance: Instance, database: str) -> Target:
        key = (instance.name, database)
        target = self.targets.get(key)
        if target is None:
            enforcer = self.datapath.Enforcer(
                self.veil,
                instance=instance.name,
                database=database,
                guard_mode=self.config.guard_mode,
                request_url=self.config.request_url,
            )
            target = self.targets[key] = Target(instance, database, enforcer, self.datapath)
        return target

    # --- One client ---------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else None
        try:
            session = await asyncio.wait_for(self._login(reader, writer, address), STARTUP_TIMEOUT_S)
        except (wire.PeerClosed, ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            writer.close()
            return
        except wire.ProtocolError as exc:
            await _refuse(writer, "08P01", f"protocol violation: {exc}")
            return
        except Exception:
            logger.exception("starting a session failed")
            await _refuse(writer, "XX000", "veil-proxy could not start the session")
            return
        if session is None:
            return
        self.sessions += 1
        try:
            await session.run()
        except Exception:
            logger.exception("a session failed")
        finally:
            self.sessions -= 1
            writer.close()

    async def _login(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str | None
    ) -> Session | None:
        client = wire.Reader(reader, self.config.max_message_bytes)
        tls = False
        for _ in range(3):  # SSLRequest and GSSENCRequest may each come once before the startup
            body = await client.startup()
            code = wire.unpack_int32(body, 0)
            if code == wire.CANCEL_REQUEST and len(body) == 12:
                await self._cancel(wire.unpack_int32(body, 4), int.from_bytes(body[8:12], "big"))
                writer.close()
                return None
            if code == wire.SSL_REQUEST and not tls:
                if client.take_buffered():  # bytes sent before the handshake could be injected
                    raise wire.ProtocolError("data after SSLRequest before the TLS handshake")
                writer.write(b"S" if self._tls else b"N")
                await writer.drain()
                if self._tls:
                    await writer.start_tls(self._tls)
                    tls = True
                continue
            if code == wire.GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            break
        else:
            raise wire.ProtocolError("too many requests before the startup message")
        if code >> 16 != 3:
            await _refuse(writer, "0A000", "veil-proxy speaks protocol 3.0 only")
            return None
        parameters = wire.startup_parameters(body)
        if code != wire.PROTOCOL_3_0 or any(k.startswith("_pq_.") for k in parameters):
            extensions = [k for k in parameters if k.startswith("_pq_.")]
            writer.write(
                wire.message(
                    b"v",
                    wire.int32(0)
                    + wire.int32(len(extensions))
                    + b"".join(wire.cstring(k) for k in extensions),
                )
            )
        login = parameters.get("user", "")
        dbname = parameters.get("database") or login
        if not login:
            await _refuse(writer, "28000", "no user name given: connect as your Veil login (your email)")
            return None
        if "replication" in parameters and parameters["replication"] not in ("false", "off", "0", "no"):
            await _refuse(writer, "28000", "veil-proxy does not relay replication connections")
            return None
        if not tls and not _loopback(address):
            await _refuse(
                writer, "28000", "veil-proxy takes your token only over TLS: connect with sslmode=require"
            )
            return None
        writer.write(wire.authentication(3))
        await writer.drain()
        kind, raw = await client.message()
        if kind != b"p":
            raise wire.ProtocolError("expected a password message")
        token, _ = wire.read_cstring(raw, 5)
        where = self.config.target(dbname)
        if where is None:
            self.stats.login_failures["unknown_database"] += 1
            await asyncio.sleep(self.throttle.failed(address or "local"))
            await _refuse(writer, "3D000", f'database "{dbname}" is not served by this veil-proxy')
            return None
        instance, database = where
        result = await asyncio.to_thread(
            self.logins.check, login, token.decode("utf-8", "replace"), instance.name, database, address
        )
        del token
        if result.principal is None:
            unreachable = result.reason.startswith("veil_")  # Veil could not be asked, or answered no JSON
            self.stats.login_failures["veil_unreachable" if unreachable else "refused"] += 1
            await asyncio.sleep(self.throttle.failed(address or "local"))
            await _refuse(writer, "28P01", f'password authentication failed for user "{login}"')
            return None
        self.throttle.succeeded(address or "local")
        options = {
            k: v for k, v in parameters.items() if k not in _NOT_FORWARDED and not k.startswith("_pq_.")
        }
        try:
            upstream = await connect(instance, database, options, self.config.max_message_bytes)
        except UpstreamError as exc:
            logger.warning("upstream connection failed: %s", exc)
            self.stats.login_failures["upstream"] += 1
            await _refuse(writer, exc.sqlstate, str(exc))
            return None
        self.stats.logins_ok += 1
        pid, secret = secrets.randbits(31), secrets.randbits(32)
        self.cancel_keys[(pid, secret)] = _CancelKey(instance, upstream.pid, upstream.secret)
        out = [wire.authentication(0)]
        for name, value in upstream.parameters.items():
            out.append(wire.message(b"S", wire.cstring(name) + wire.cstring(value)))
        out.append(wire.backend_key_data(pid, secret))
        out.append(wire.ready_for_query(upstream.status))
        writer.write(b"".join(out))
        await writer.drain()
        target = self.target(instance, database)
        session = Session(
            client_reader=client,
            client_writer=writer,
            upstream=upstream,
            target=target,
            principal=result.principal,
            stats=self.stats,
        )
        writer.transport.set_write_buffer_limits(high=256 * 1024)
        _forget_on_close(writer, lambda: self.cancel_keys.pop((pid, secret), None))
        return session

    async def _cancel(self, pid: int, secret: int) -> None:
        key = self.cancel_keys.get((pid, secret))
        if key is None:
            return
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(key.instance.host, key.instance.port), 10
            )
        except (OSError, TimeoutError):
            return
        writer.write(
            wire.int32(16)
            + wire.int32(wire.CANCEL_REQUEST)
            + wire.int32(key.pid)
            + key.secret.to_bytes(4, "big")
        )
        try:
            await writer.drain()
        finally:
            writer.close()


def _forget_on_close(writer: asyncio.StreamWriter, forget: Callable[[], Any]) -> None:
    """Drop the session's cancel key once its connection is gone."""

    async def wait() -> None:
        with contextlib.suppress(Exception):  # closing with an error is still closed
            await writer.wait_closed()
        forget()

    task = asyncio.get_running_loop().create_task(wait())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


async def _refuse(writer: asyncio.StreamWriter, sqlstate: str, text: str) -> None:
    try:
        writer.write(wire.error_response(sqlstate, text, "FATAL"))
        await writer.drain()
    except (ConnectionError, RuntimeError):
        pass
    writer.close()


def _loopback(address: str | None) -> bool:
    if address is None:  # a Unix socket
        return True
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _server_context(config: Config) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert or "", config.tls_key)
    return context
