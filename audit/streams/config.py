"""What an audit stream's destination may be, and how its secrets are kept.

Bad configuration is refused when it is made, with a `StreamConfigError` naming the field, rather
than discovered as failed deliveries later:

- `url`: https, no credentials or fragment, resolving only to public addresses (loopback, private,
  link-local and reserved addresses are where an attacker who can configure a webhook would aim:
  the metadata service, the database, the admin site). Addresses in
  `AUDIT_STREAM_ALLOWED_NETWORKS` are allowed, and may use http (a collector inside the network).
  The check runs again at every send, and the client connects to the address it checked (`http`).
- `secret`: a Standard Webhooks secret, `whsec_` and base64 of 24 to 64 random bytes.
- the filter: an event type Veil records (or a prefix of one), a project the catalog knows.

Secrets (the signing secret and the destination's own auth header value) are stored encrypted
(Fernet) with a key derived from VEIL_SIGNING_KEY, which never reaches the database: a dump or a
replica of the database does not hand out the means to forge a stream or read a SIEM's token. Keys
in AUDIT_PREVIOUS_SIGNING_KEYS still decrypt, so rotating the signing key keeps streams working.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from audit.access import project_exists
from audit.apis import known_action
from audit.filters import AuditFilter, FilterError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Headers Veil sets itself; an auth header must not replace them.
RESERVED_HEADERS = {"host", "content-type", "content-length", "user-agent", "webhook-id", "webhook-timestamp"}
RESERVED_HEADERS |= {"webhook-signature", "transfer-encoding", "connection"}
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


class StreamConfigError(ValueError):
    """A stream setting that cannot work; `field` names it (the admin form and the CLI show it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Target:
    """A destination URL, checked: where to connect (`address`) and what to ask for there."""

    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n) for n in settings.AUDIT_STREAM_ALLOWED_NETWORKS]


def _allowed(address: IPAddress) -> bool:
    return any(address in network for network in allowed_networks())


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve_target(url: str) -> Target:
    """Check `url` and resolve it to the one address Veil will connect to. Raises StreamConfigError
    naming `url`. Every address the name resolves to must pass, so no answer of a round-robin (or a
    rebinding) name can point inside the network."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StreamConfigError("url", f"not a URL: {exc}") from exc
    if parts.scheme not in {"https", "http"}:
        raise StreamConfigError("url", "give an https:// URL")
    if not parts.hostname:
        raise StreamConfigError("url", "names no host")
    if parts.username or parts.password:
        raise StreamConfigError("url", "must not hold credentials; use the auth header instead")
    if parts.fragment:
        raise StreamConfigError("url", "must not have a #fragment")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise StreamConfigError("url", f"{parts.hostname} does not resolve ({exc})") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
        if _allowed(address):
            continue
        if not _public(address):
            raise StreamConfigError(
                "url",
                f"{parts.hostname} resolves to {address}, a loopback, private or reserved address; "
                "Veil streams only to public addresses unless AUDIT_STREAM_ALLOWED_NETWORKS lists it",
            )
        if parts.scheme != "https":
            raise StreamConfigError(
                "url", "http:// is allowed only inside AUDIT_STREAM_ALLOWED_NETWORKS; give an https:// URL"
            )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(parts.scheme, parts.hostname, port, path, addresses[0])


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for (its base64 part, decoded). Raises StreamConfigError."""
    if not secret.startswith(SECRET_PREFIX):
        raise StreamConfigError(
            "secret", f"must start with {SECRET_PREFIX!r} (or leave it out to have one made)"
        )
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StreamConfigError("secret", f"the part after {SECRET_PREFIX!r} is not base64") from exc
    if not 24 <= len(key) <= 64:
        raise StreamConfigError("secret", f"must hold 24 to 64 random bytes, not {len(key)}")
    return key


def check_filter(*, action: str, project: str) -> None:
    """Refuse a filter that can only match nothing: an event type Veil never records, a project the
    catalog does not know (either would silently stream nothing)."""
    try:
        AuditFilter.from_mapping({"action": action, "project": project})
    except FilterError as exc:
        raise StreamConfigError(exc.field, exc.message) from exc
    if action and not known_action(action):
        raise StreamConfigError("action", f"Veil records no event of type {action!r} (nor one it prefixes)")
    if project and not project_exists(project):
        raise StreamConfigError("project", f"no project {project!r} in the catalog")


def check_auth_header(name: str, value: str) -> None:
    if not name:
        if value:
            raise StreamConfigError("auth_header", "name the header the auth value goes in")
        return
    if not HEADER_NAME.fullmatch(name) or name.lower() in RESERVED_HEADERS:
        raise StreamConfigError("auth_header", f"{name!r} is not a header name Veil can send it in")
    if not value or any(ch in value for ch in "\r\n\0"):
        raise StreamConfigError("auth_value", "give the header's value on one line")


@lru_cache(maxsize=8)
def _fernet_key(signing_key: str) -> bytes:
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"veil-audit-stream-secret/v1", info=b"fernet"
    ).derive(signing_key.encode())
    return base64.urlsafe_b64encode(raw)


def _fernet() -> MultiFernet:
    keys = [settings.VEIL_SIGNING_KEY, *reversed(settings.AUDIT_PREVIOUS_SIGNING_KEYS)]
    return MultiFernet([Fernet(_fernet_key(key)) for key in keys])


def seal_secret(value: str) -> str:
    """Encrypt a secret for the database (empty stays empty)."""
    return _fernet().encrypt(value.encode()).decode() if value else ""


class SecretUnreadable(Exception):
    """A stored secret no current or previous signing key decrypts."""


def open_secret(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "the stream's secrets cannot be decrypted: VEIL_SIGNING_KEY changed without the old one in "
            "AUDIT_PREVIOUS_SIGNING_KEYS; set a new secret (admin site, or "
            "manage.py audit streams rotate-secret NAME)"
        ) from exc
