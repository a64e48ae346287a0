"""The HTTP bench's WSGI entry point: `/bare` and `/bare-commit` are plain WSGI functions,
everything else is Veil.

`/bare` reads the request body (as Veil must) and answers with a precomputed JSON body of the
same size as Veil's 20-column decision response: the file named by BENCH_BARE_BODY_FILE, which
the bench writes from a real response before timing.

`/bare-commit` is what invariant 4 physically demands and nothing more: it reads the body, looks
it up among the bench's request bodies (BENCH_COMMIT_FILE, written by the bench from the records
Veil itself wrote for them), and, for a body whose principal Veil unmasks something for, commits
the same row through Veil's own writer (`audit.services.record_unmask_decisions`: one prepared
INSERT in autocommit) before answering with Veil's response to that body. No token, no parsing,
no policy. Run by gunicorn as `bench.wsgi:application`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from config.wsgi import application as veil_application

_body: bytes | None = None
# request body -> (Veil's response to it, the record Veil wrote for it or None)
_commit_table: dict[bytes, tuple[bytes, dict[str, Any] | None]] | None = None


def _bare_body() -> bytes:
    global _body
    if _body is None:
        path = os.environ.get("BENCH_BARE_BODY_FILE", "")
        _body = Path(path).read_bytes() if path and os.path.exists(path) else b'{"decisions":[]}'
    return _body


def _read(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    _read(environ)
    body = _bare_body()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _commits() -> dict[bytes, tuple[bytes, dict[str, Any] | None]]:
    global _commit_table
    if _commit_table is None:
        entries = json.loads(Path(os.environ["BENCH_COMMIT_FILE"]).read_text())
        _commit_table = {e["body"].encode(): (e["response"].encode(), e["record"]) for e in entries}
    return _commit_table


def bare_commit(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    from audit.services import record_unmask_decisions  # Django is set up by config.wsgi

    entry = _commits().get(_read(environ))
    if entry is None:  # not one of the bench's bodies: wrk counts the status as an error
        start_response("400 Bad Request", [("Content-Length", "0")])
        return [b""]
    body, record = entry
    if record is not None:
        record_unmask_decisions(**record)  # committed (autocommit) when it returns
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO")
    if path == "/bare":
        return bare(environ, start_response)
    if path == "/bare-commit":
        return bare_commit(environ, start_response)
    return veil_application(environ, start_response)
