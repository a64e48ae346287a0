"""Real Celery workers and a private Redis broker for the tests that need them.

The broker is a redis-server of the test's own on a free port, so a test can have it down and
then up without touching the shared Redis, and workers run as separate processes against the
test database, exactly as in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_redis(port: int) -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server, "redis-server is needed for the worker tests"
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _accepts(port), timeout=10, what="redis-server to listen")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def worker_env(broker_url: str, **extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=broker_url,
        SWEEP_INTERVAL_S="1",
        **extra,
    )
    return env


@contextmanager
def celery_worker(env: dict[str, str], *, beat: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    """One worker process (with the beat schedule when `beat`), killed at the end."""
    proc = start_worker(env, beat=beat)
    try:
        yield proc
    finally:
        stop(proc)


def start_worker(env: dict[str, str], *, beat: bool = True) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--concurrency",
        "1",
        "--pool",
        "solo",
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "WARNING",
    ]
    if beat:
        args += ["--beat", "--schedule", env["VEIL_VAR_DIR"] + "/beat-schedule"]
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll a condition (bounded); the failure message says what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finished(broker_url: str, task_ids: list[str]) -> bool:
    """Whether no message of these tasks is left on the broker: not queued, and not delivered but
    unacknowledged. Tasks acknowledge late (CELERY_TASK_ACKS_LATE), so gone means they have run."""
    import redis

    client = redis.Redis.from_url(broker_url)
    payloads: list[bytes] = list(client.hvals("unacked"))
    for key in client.scan_iter():
        if client.type(key) == b"list":
            payloads += client.lrange(key, 0, -1)
    return not any(task_id.encode() in payload for payload in payloads for task_id in task_ids)


@contextmanager
def publishing_to(broker_url: str) -> Iterator[None]:
    """Make this process's Celery app publish to `broker_url` (its pools are rebuilt lazily)."""
    from config.celery import app

    previous = app.conf.broker_url
    _reset_pools(app)
    app.conf.broker_url = broker_url
    try:
        yield
    finally:
        _reset_pools(app)
        app.conf.broker_url = previous


def _reset_pools(app) -> None:  # type: ignore[no-untyped-def]
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
