from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend


class PermissionsOnlyBackend(ModelBackend):
    """Django's model permissions without password sign-in (used when only the IdP may sign people in)."""

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        return None
