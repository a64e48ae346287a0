"""A real pgbouncer (Debian's package) on a loopback port, for tests: as the floor the proxy is
measured against, and as a server that speaks PostgreSQL's protocol without being PostgreSQL
(its admin console). It refuses to run as root, so it runs as the `postgres` system user."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_pgbouncer(databases: dict[str, str], *, pool_mode: str = "transaction") -> Iterator[int]:
    """Start pgbouncer in front of 127.0.0.1:5432 with `databases` (name -> real database name),
    trust auth and `postgres` as admin; yield its port; stop it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="veil-pgbouncer-")
    os.chmod(folder, 0o777)  # noqa: S103 - the postgres user writes its log and pid here
    entries = "\n".join(
        f"{alias} = host=127.0.0.1 port=5432 dbname={real}" for alias, real in databases.items()
    )
    config = os.path.join(folder, "pgbouncer.ini")
    with open(config, "w") as f:
        f.write(
            f"[databases]\n{entries}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
            f"auth_type = trust\nauth_file = {folder}/users.txt\nadmin_users = postgres\n"
            f"pool_mode = {pool_mode}\nunix_socket_dir =\nmax_client_conn = 2000\ndefault_pool_size = 20\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
    with open(os.path.join(folder, "users.txt"), "w") as f:
        f.write('"postgres" ""\n')
    for name in ("pgbouncer.ini", "users.txt"):
        os.chmod(os.path.join(folder, name), 0o644)
    user = ["-u", "postgres"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *user, config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start (exit {process.poll()})")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
