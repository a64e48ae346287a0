"""A real OpenID provider for the sign-in tests: node's `oidc-provider` (tests/idp/idp.js) on loopback.

The IdP is started once per test module; its accounts live in a JSON file it re-reads at every
lookup, so a test can change an account's claims (e.g. groups) between two sign-ins. Nothing on
the OIDC path is mocked: mozilla-django-oidc exchanges the code over HTTP and checks the ID
token's signature against the IdP's JWKS.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IDP_DIR = Path(__file__).resolve().parents[1] / "idp"
IDP_SCRIPT = IDP_DIR / "idp.js"
IDP_START_TIMEOUT_S = 15
CLIENT_ID = "veil-test"
# One `kid` for every IdP instance started here: a second instance then publishes a key with the
# same id but different material, so a mismatch is caught by the signature check itself, not by
# the key lookup.
SIGNING_KEY_ID = "veil-test-signing-key"

ALICE: dict[str, Any] = {
    "sub": "a1b2c3-alice",
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice Example",
    "given_name": "Alice",
    "family_name": "Example",
    "groups": ["engineering", "oncall"],
}


@dataclass
class IdP:
    """One running IdP process."""

    port: int
    client_id: str
    client_secret: str
    accounts_file: Path
    log_file: Path
    process: subprocess.Popen[str] = field(repr=False)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/me"

    @property
    def jwks_endpoint(self) -> str:
        return f"{self.issuer}/jwks"

    def set_accounts(self, accounts: list[dict[str, Any]]) -> None:
        """Replace the IdP's accounts; takes effect at the next lookup (no restart)."""
        tmp = self.accounts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(accounts))
        tmp.replace(self.accounts_file)

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


def _require_idp_installed() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not on PATH; the OIDC sign-in tests run a real IdP on Node.js 20+.",
            pytrace=False,
        )
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            f"The test IdP's npm packages are not installed ({IDP_DIR / 'node_modules'} is missing).\n"
            "Run:  npm ci --prefix tests/idp",
            pytrace=False,
        )
    return node


def start_idp(*, workdir: Path, redirect_uri: str, accounts: list[dict[str, Any]]) -> IdP:
    node = _require_idp_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    accounts_file = workdir / "accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    log_file = workdir / "idp.log"
    client_secret = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "IDP_PORT": "0",
        "IDP_CLIENT": json.dumps(
            {
                "client_id": CLIENT_ID,
                "client_secret": client_secret,
                "redirect_uris": [redirect_uri],
            }
        ),
        "IDP_ACCOUNTS_FILE": str(accounts_file),
        "IDP_KEY_ID": SIGNING_KEY_ID,
    }
    with log_file.open("w") as stderr:
        process = subprocess.Popen(
            [node, str(IDP_SCRIPT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=IDP_DIR,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # keeps draining stdout so the IdP never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="idp-stdout", daemon=True).start()
    try:
        line = lines.get(timeout=IDP_START_TIMEOUT_S)
    except queue.Empty:
        line = None
    if line is None or not line.startswith("READY "):
        process.kill()
        process.wait()
        pytest.fail(
            f"The test IdP did not report READY within {IDP_START_TIMEOUT_S}s "
            f"(exit code {process.returncode}, first line {line!r}). Its stderr:\n{log_file.read_text()}",
            pytrace=False,
        )
    return IdP(
        port=int(line.split()[1]),
        client_id=CLIENT_ID,
        client_secret=client_secret,
        accounts_file=accounts_file,
        log_file=log_file,
        process=process,
    )


def stop_idp(idp: IdP) -> None:
    idp.process.terminate()
    try:
        idp.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        idp.process.kill()
        idp.process.wait()


@pytest.fixture(scope="module")
def idp_process(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdP]:
    idp = start_idp(
        workdir=tmp_path_factory.mktemp("idp"),
        redirect_uri=f"{live_server.url}/oidc/callback/",
        accounts=[ALICE],
    )
    yield idp
    stop_idp(idp)


@pytest.fixture
def idp(idp_process: IdP) -> IdP:
    """The module's IdP, with its accounts reset to the defaults for this test."""
    idp_process.set_accounts([ALICE])
    return idp_process


@pytest.fixture(scope="module")
def other_idp(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdP]:
    """A second, unrelated IdP: same key id, its own signing key."""
    idp = start_idp(
        workdir=tmp_path_factory.mktemp("other-idp"),
        redirect_uri=f"{live_server.url}/oidc/callback/",
        accounts=[ALICE],
    )
    yield idp
    stop_idp(idp)


@pytest.fixture
def oidc_settings(settings: Any, idp: IdP) -> IdP:
    """Point Veil at the IdP the way the OIDC_* environment variables would."""
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = idp.client_id
    settings.OIDC_RP_CLIENT_SECRET = idp.client_secret
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = idp.authorization_endpoint
    settings.OIDC_OP_TOKEN_ENDPOINT = idp.token_endpoint
    settings.OIDC_OP_USER_ENDPOINT = idp.userinfo_endpoint
    settings.OIDC_OP_JWKS_ENDPOINT = idp.jwks_endpoint
    settings.OIDC_OP_ISSUER = idp.issuer
    backends = [b for b in settings.AUTHENTICATION_BACKENDS if b != "identity.oidc.VeilOIDCBackend"]
    settings.AUTHENTICATION_BACKENDS = [backends[0], "identity.oidc.VeilOIDCBackend", *backends[1:]]
    return idp
