"""A receiver of audit streams on loopback, checking what it gets as a real receiver would.

It verifies the Standard Webhooks signature and the timestamp of every request, every event's
hash, and that each new event links to the one before it (`prev_hash` equals the stored `hash`);
it stores events by `seq`, so a duplicate (a retried or replayed batch) is recognised and dropped
after checking it is the same event. What it finds wrong goes to `problems`, which a test asserts
empty. `verify_request` is the snippet of docs/audit.md ("Streaming"), standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GENESIS = "0" * 64


def verify_request(secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: int = 300) -> None:
    """Raise ValueError unless Veil signed this request with `secret` in the last five minutes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        raise ValueError("timestamp too old or in the future")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    if not any(hmac.compare_digest(expected, signature) for signature in given):
        raise ValueError("signature does not match")


def event_hash_matches(event: dict[str, Any]) -> bool:
    """The event's hash is SHA-256 of prev_hash and the canonical JSON of its hashed fields."""
    hashed = {k: v for k, v in event.items() if k not in ("prev_hash", "hash", "action_label")}
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((event["prev_hash"] + canonical).encode()).hexdigest() == event["hash"]


class Receiver:
    """Modes: `ok` (200), `fail` (500), `redirect` (302 to `redirect_to`), `hang` (answers only when
    released, after the sender gave up)."""

    def __init__(
        self, secret: str, *, port: int = 0, anchor: tuple[int, str] = (0, GENESIS), contiguous: bool = True
    ) -> None:
        self.secret = secret
        self.contiguous = contiguous  # False for a filtered stream: seqs increase, with gaps
        self.mode = "ok"
        self.redirect_to = ""
        self.events: dict[int, dict[str, Any]] = {}
        self.arrivals: list[int] = []  # seqs of new events, in the order they arrived
        self.duplicates = 0
        self.requests = 0
        self.problems: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.head_seq, self.head_hash = anchor
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/veil"

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self.released.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers["Content-Length"]))
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, location = self._answer(dict(request.headers.items()), body)
        finally:
            with self._lock:
                self.in_flight -= 1
        request.send_response(status)
        if location:
            request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _answer(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        if self.mode == "fail":
            return 500, ""
        if self.mode == "redirect":
            return 302, self.redirect_to
        if self.mode == "hang":
            self.released.wait(30)
            return 200, ""
        if self.mode == "slow":
            time.sleep(0.1)  # so that senders not kept apart would overlap here
        headers = {k.lower(): v for k, v in headers.items()}
        try:
            verify_request(self.secret, headers, body)
        except (ValueError, KeyError) as exc:
            self.problems.append(f"request refused: {exc}")
            return 401, ""
        batch = json.loads(body)
        with self._lock:
            for event in batch["events"]:
                self._take(event)
        return 200, ""

    def _take(self, event: dict[str, Any]) -> None:
        seq = event["seq"]
        if not event_hash_matches(event):
            self.problems.append(f"#{seq} does not match its hash")
        if seq in self.events:
            self.duplicates += 1
            if self.events[seq] != event:
                self.problems.append(f"#{seq} came twice, differently")
            return
        if seq <= self.head_seq or (self.contiguous and seq != self.head_seq + 1):
            self.problems.append(f"#{seq} arrived after #{self.head_seq}: a gap or out of order")
        elif self.contiguous and event["prev_hash"] != self.head_hash:
            self.problems.append(f"#{seq} does not link to #{self.head_seq}")
        self.events[seq] = event
        self.arrivals.append(seq)
        self.head_seq, self.head_hash = seq, event["hash"]


@contextmanager
def receiving(secret: str, **kwargs: Any) -> Iterator[Receiver]:
    receiver = Receiver(secret, **kwargs).start()
    try:
        yield receiver
    finally:
        receiver.stop()
