"""Finding 9 (part): the ID token's issuer was checked only when OIDC_OP_ISSUER happened to be set.
It is now required whenever OIDC is on, and an unset issuer refuses every token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import SuspiciousOperation

from identity.oidc import VeilOIDCBackend

ROOT = Path(__file__).resolve().parent.parent.parent
IDP = "https://idp.example.com"


def check(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")}
    base.update(
        OIDC_RP_CLIENT_ID="veil",
        OIDC_RP_CLIENT_SECRET="s3cret",
        OIDC_OP_AUTHORIZATION_ENDPOINT=f"{IDP}/auth",
        OIDC_OP_TOKEN_ENDPOINT=f"{IDP}/token",
        OIDC_OP_USER_ENDPOINT=f"{IDP}/me",
        OIDC_OP_JWKS_ENDPOINT=f"{IDP}/jwks",
        **env,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_veil_refuses_to_start_with_oidc_on_and_no_issuer_and_names_it():
    result = check()

    assert result.returncode != 0
    assert "OIDC_OP_ISSUER is required when OIDC is on" in result.stderr


def test_veil_starts_with_oidc_on_and_an_issuer():
    assert check(OIDC_OP_ISSUER=IDP).returncode == 0


@pytest.fixture
def backend(settings) -> VeilOIDCBackend:
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = "veil", "s3cret"
    settings.OIDC_OP_TOKEN_ENDPOINT, settings.OIDC_OP_USER_ENDPOINT = f"{IDP}/token", f"{IDP}/me"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{IDP}/jwks"
    return VeilOIDCBackend()


@pytest.mark.parametrize("configured", ["", IDP])
def test_a_token_from_another_issuer_is_refused_before_userinfo_is_read(backend, settings, configured):
    settings.OIDC_OP_ISSUER = configured
    token = {"iss": "https://attacker.example", "aud": "veil", "sub": "alice"}

    with pytest.raises(SuspiciousOperation, match="iss mismatch"):
        backend.get_userinfo("access-token", "id-token", token)  # would call the IdP's userinfo next
