"""The client side of the password exchanges PostgreSQL asks for: SCRAM-SHA-256 (RFC 5802 /
RFC 7677, without channel binding) and md5.

Written on hashlib and hmac: the SCRAM client is about forty lines, and the libraries that carry
one (psycopg's libpq, asyncpg) do not expose it apart from their own connections.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata


class AuthenticationError(Exception):
    """The server's side of the exchange is wrong (a forged or broken server)."""


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """The answer to AuthenticationMD5Password."""
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()  # noqa: S324 - the protocol's
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()  # noqa: S324


def _saslprep(password: str) -> str:
    """A light SASLprep: NFKC, as PostgreSQL's own client does; a password it cannot prepare is
    used as is (PostgreSQL falls back the same way)."""
    try:
        return unicodedata.normalize("NFKC", password)
    except (TypeError, ValueError):
        return password


class ScramSha256:
    """One SCRAM-SHA-256 exchange: ``first()``, ``final(server_first)``, ``verify(server_final)``."""

    MECHANISM = "SCRAM-SHA-256"

    def __init__(self, password: str) -> None:
        self._password = _saslprep(password).encode()
        self._nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._first_bare = f"n=,r={self._nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        """client-first-message (gs2 header 'n,,': this client does not use channel binding)."""
        return ("n,," + self._first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attributes = _attributes(server_first)
        try:
            nonce, salt, iterations = attributes["r"], base64.b64decode(attributes["s"]), int(attributes["i"])
        except (KeyError, ValueError) as exc:
            raise AuthenticationError("malformed SCRAM server-first-message") from exc
        if not nonce.startswith(self._nonce) or iterations < 1:
            raise AuthenticationError("the server's SCRAM nonce or iteration count is wrong")
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        attributes = _attributes(server_final)
        if "e" in attributes:
            raise AuthenticationError(f"SCRAM refused: {attributes['e']}")
        try:
            signature = base64.b64decode(attributes["v"])
        except (KeyError, ValueError) as exc:
            raise AuthenticationError("malformed SCRAM server-final-message") from exc
        if not self._server_signature or not hmac.compare_digest(signature, self._server_signature):
            raise AuthenticationError("the server's SCRAM signature is wrong")


def _attributes(message: bytes) -> dict[str, str]:
    try:
        text = message.decode()
    except UnicodeDecodeError as exc:
        raise AuthenticationError("SCRAM message is not UTF-8") from exc
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)
