"""The per-project permissions, as `has_perm` and django-guardian name them.

They are declared on `Project` (`masking/models/catalog.py`) and given per project to people and
IdP groups. `codename` is for the guardian calls that take the bare codename.
"""

from __future__ import annotations

REQUEST_UNMASK = "masking.request_unmask"
APPROVE_REQUEST = "masking.approve_request"
ADMINISTER_POLICY = "masking.administer_policy"
VIEW_AUDIT = "masking.view_audit"


def codename(permission: str) -> str:
    """`administer_policy` for `masking.administer_policy`."""
    return permission.partition(".")[2]
