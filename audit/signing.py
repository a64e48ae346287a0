"""Veil's signatures on checkpoints, archive boundaries and export manifests.

Ed25519, with the private key derived (HKDF-SHA256) from `settings.VEIL_SIGNING_KEY`, which is kept
outside the database. Ed25519 rather than an HMAC so that an auditor can check a manifest with the
public key alone (`manage.py audit public-key`) and could not forge one with it. The key id is the
first 16 hex digits of the SHA-256 of the raw public key; keys in
`settings.AUDIT_PREVIOUS_SIGNING_KEYS` still verify what they signed before a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

ALGORITHM = "Ed25519"


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey
    public: Ed25519PublicKey

    @property
    def public_b64(self) -> str:
        return base64.b64encode(_raw_public(self.public)).decode()

    @property
    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


@lru_cache(maxsize=8)
def _derive(secret: str) -> SigningKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"veil-audit-signing/v1", info=b"ed25519").derive(
        secret.encode()
    )
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key()
    return SigningKey(key_id_of(public), private, public)


def current_key() -> SigningKey:
    """The key new signatures are made with (read from settings at call time, never at import)."""
    return _derive(settings.VEIL_SIGNING_KEY)


def verification_keys() -> dict[str, Ed25519PublicKey]:
    """Every public key a signature may have been made with: the current one and previous ones."""
    keys = [_derive(secret) for secret in settings.AUDIT_PREVIOUS_SIGNING_KEYS]
    keys.append(current_key())
    return {key.key_id: key.public for key in keys}


@lru_cache(maxsize=8)
def _mac_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"veil-audit-event-mac/v1", info=b"hmac").derive(
        secret.encode()
    )


def event_mac(seq: int, event_hash: str) -> str:
    """HMAC-SHA256 of an event's position and chained hash, with a key derived from the signing key.

    The chain's SHA-256 proves order and content only to someone who cannot recompute it; a role
    that can rewrite rows can also re-chain them. The MAC cannot be recomputed without the key kept
    outside the database, so a rewritten, re-chained event is found at the first one changed.
    """
    return hmac.new(_mac_key(settings.VEIL_SIGNING_KEY), f"{seq}:{event_hash}".encode(), "sha256").hexdigest()


def event_mac_matches(seq: int, event_hash: str, mac: str) -> bool:
    """True if `mac` was made for (seq, hash) with the current key or a previous one."""
    message = f"{seq}:{event_hash}".encode()
    secrets = [settings.VEIL_SIGNING_KEY, *settings.AUDIT_PREVIOUS_SIGNING_KEYS]
    return any(
        hmac.compare_digest(hmac.new(_mac_key(secret), message, "sha256").hexdigest(), mac)
        for secret in secrets
    )


def public_key_from_b64(value: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"not a base64 Ed25519 public key: {exc}") from exc


def sign(message: bytes) -> tuple[str, str]:
    """Sign with the current key. Returns (key_id, base64 signature)."""
    key = current_key()
    return key.key_id, base64.b64encode(key.private.sign(message)).decode()


def verify(
    message: bytes, *, key_id: str, signature: str, keys: dict[str, Ed25519PublicKey] | None = None
) -> bool:
    """True if `signature` over `message` was made by the key `key_id` among `keys` (default: ours)."""
    public = (keys if keys is not None else verification_keys()).get(key_id)
    if public is None:
        return False
    try:
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
