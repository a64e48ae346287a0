"""gunicorn's settings for Veil, read from the working directory whatever the command line says.

Prometheus multiprocess mode: each worker is its own process, so a scrape reaching one of them
would see only that worker's counters. Every worker writes its counters to files in
`PROMETHEUS_MULTIPROC_DIR` instead, and `/metrics` merges them (config/metrics.py). The directory
must be set before a worker imports prometheus-client (here, in the master, before it forks), and
emptied at start: files left by an earlier run would be counted again.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="veil-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _dir
Path(_dir).mkdir(parents=True, exist_ok=True)
for _stale in Path(_dir).glob("*.db"):
    _stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges would linger; its counters are kept (they stay true)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
