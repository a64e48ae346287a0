"""Veil's benchmarks: `python -m bench` (or `make bench`). Not a test suite; pytest never collects it.

The benches own one PostgreSQL database, `BENCH_DATABASE_URL` (default
postgresql://postgres@127.0.0.1:5432/veil_bench), which they drop and recreate; they refuse any
database whose name does not start with `veil_bench`, and never read `DATABASE_URL`.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/veil_bench")

# What the server runs with in the HTTP bench, and what this process uses for Django.
SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": BENCH_DATABASE_URL,
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "0",
    "ALLOWED_HOSTS": "127.0.0.1",
    "STATIC_MANIFEST": "0",
}

_ready = False


def django_setup() -> None:
    """Configure Django for this process against the bench database (idempotent)."""
    global _ready
    if _ready:
        return
    os.environ.update(SERVER_ENV)
    import django

    django.setup()
    _ready = True
