"""The HTTP bench's WSGI entry point: `/bare` is a plain WSGI function, everything else is Veil.

`/bare` reads the request body (as Veil must) and answers with a precomputed JSON body of the
same size as Veil's 20-column decision response: the file named by BENCH_BARE_BODY_FILE, which
the bench writes from a real response before timing. Run by gunicorn as `bench.wsgi:application`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from config.wsgi import application as veil_application

_body: bytes | None = None


def _bare_body() -> bytes:
    global _body
    if _body is None:
        path = os.environ.get("BENCH_BARE_BODY_FILE", "")
        _body = Path(path).read_bytes() if path and os.path.exists(path) else b'{"decisions":[]}'
    return _body


def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    body = _bare_body()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/bare":
        return bare(environ, start_response)
    return veil_application(environ, start_response)
