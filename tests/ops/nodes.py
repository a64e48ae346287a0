"""Veil as several nodes on loopback, started as production starts them, for the several-nodes test.

Each node is a process group of its own: a gunicorn server (`gunicorn.conf.py`, two workers), a
Celery worker, or the one beat. They share the test's database and a redis-server of the test's
own (`tests.jitaccess.workers.private_redis`), which the test stops and starts again. PostgreSQL is
shared with other people's tests and cannot be restarted, so the nodes reach it through a
`TcpRelay` the test controls: stopping the relay refuses new connections and cuts the open ones,
which is what the nodes see when PostgreSQL restarts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60  # two cores shared with other tests: a cold Django start can take a while
_http = urllib3.PoolManager(maxsize=16)  # gunicorn's sync workers close every connection anyway


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], object], *, timeout: float, what: str, every: float = 0.1) -> None:
    """Poll a condition (bounded); the failure names what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class TcpRelay:
    """Forwards connections from a loopback port to `target` (PostgreSQL), byte for byte.

    `stop()` closes the listening socket and cuts every open connection, as a server restart
    would; `start()` listens again on the same port. Threads, one pair per connection: the nodes
    hold a few dozen connections at most.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            cut, self._open = list(self._open), set()
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


class RedisServer:
    """A redis-server of the test's own on a fixed loopback port, stopped and started at will
    (nothing is persisted: a restart comes back empty, as a failed-over cache would)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed for the several-nodes test"
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._accepts, timeout=10, what="redis-server to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def _accepts(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


@dataclass
class Node:
    """One process group: a command, its environment and its log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    ready: Callable[[Node], bool]
    url: str = ""  # a server's, where it answers HTTP
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Node:
        with self.log.open("ab") as log:
            log.write(f"\n--- {self.name} started at {time.time():.3f}\n".encode())
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,  # gunicorn reads gunicorn.conf.py from here, as in the image
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}")
            return self.ready(self)

        wait_until(up, timeout=timeout, what=f"{self.name} to be ready", every=0.2)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group (gunicorn's master and workers alike) and reap the leader."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):  # orphans of a killed master
                os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def node_env(*, database_url: str, redis_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment every node gets: production settings (DEBUG=0), the test's services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DEBUG="0",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        VEIL_VAR_DIR=str(var_dir),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def gunicorn_server(name: str, env: dict[str, str], tmp: Path) -> Node:
    port = free_port()
    metrics = tmp / f"{name}-metrics"
    metrics.mkdir(exist_ok=True)
    args = [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi:application"]
    args += ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--graceful-timeout", "5"]
    args += ["--no-control-socket"]  # its default path is per user: servers would take each other's
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    return Node(name, args, env, tmp / f"{name}.log", _answers_healthz, url=f"http://127.0.0.1:{port}")


def _answers_healthz(node: Node) -> bool:
    try:
        return _http.request("GET", f"{node.url}/healthz", timeout=1, retries=False).status == 200
    except urllib3.exceptions.HTTPError:
        return False


def celery_worker(name: str, env: dict[str, str], tmp: Path) -> Node:
    ready_file = tmp / f"{name}.ready"
    args = [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", f"{name}@%h"]
    args += ["--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]

    def ready(node: Node) -> bool:
        assert node.process is not None
        return ready_file.exists() and ready_file.read_text() == str(node.process.pid)

    return Node(name, args, {**env, "VEIL_WORKER_READY_FILE": str(ready_file)}, tmp / f"{name}.log", ready)


def celery_beat(env: dict[str, str], tmp: Path) -> Node:
    args = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"]
    args += ["--schedule", str(tmp / "beat-schedule")]
    return Node("beat", args, env, tmp / "beat.log", lambda node: True)


@dataclass
class Reply:
    """What a client got: a status and JSON body, or the connection error instead."""

    status: int | None
    body: Any
    error: str = ""


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float = 15) -> Reply:
    """One POST, never retried: a dead server is an error here, not a wait."""
    return _request("POST", url, body=body, headers=headers, timeout=timeout)


def get(url: str, *, timeout: float = 15) -> Reply:
    return _request("GET", url, body=None, headers={}, timeout=timeout)


def _request(method: str, url: str, *, body: bytes | None, headers: dict[str, str], timeout: float) -> Reply:
    try:
        response = _http.request(
            method, url, body=body, headers=headers, timeout=timeout, retries=False, redirect=False
        )
    except urllib3.exceptions.HTTPError as exc:
        return Reply(None, None, f"{type(exc).__name__}: {exc}")
    try:
        data = response.json() if response.data else None
    except ValueError:
        data = response.data.decode(errors="replace")
    return Reply(response.status, data)


def form(payload: str) -> bytes:
    return urllib.parse.urlencode({"payload": payload}).encode()
