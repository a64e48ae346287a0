"""The audit event types `identity` writes, with the words the log shows for them."""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    # Sign-in and API tokens
    "auth.sign_in": "Signed in",
    "auth.sign_out": "Signed out",
    "auth.sign_in_failed": "Sign-in failed",
    "auth.locked_out": "Sign-in locked out after repeated failures",
    "auth.lockout_cleared": "Sign-in lockout cleared",
    "proxy.login_failed": "Database login failed (veil-proxy)",
    "token.created": "API token created",
    "token.revoked": "API token revoked",
    "service_account.created": "Service account added",
    "service_account.updated": "Service account changed",
    "service_account.deactivated": "Service account deactivated",
    "service_account.reactivated": "Service account reactivated",
    # People, groups and permissions (the admin site)
    "user.created": "Person added",
    "user.updated": "Person changed",
    "user.privileges_changed": "Person's privileges changed",
    "user.password_set": "Person's password set",
    "group.created": "Group added",
    "group.updated": "Group changed",
    "permissions.changed": "Project permissions changed",
    # Directory sync (SCIM)
    "directory.user_created": "Person provisioned by the directory",
    "directory.user_updated": "Person changed by the directory",
    "directory.user_deactivated": "Person deactivated by the directory",
    "directory.user_reactivated": "Person reactivated by the directory",
    "directory.group_created": "Group provisioned by the directory",
    "directory.group_updated": "Group changed by the directory",
    "directory.group_deleted": "Group removed by the directory",
}
