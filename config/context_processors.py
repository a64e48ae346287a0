"""Navigation for the four audiences, trimmed to what the signed-in person may open.

Each link names the check its area makes, and the checks are the areas' own: `administers_any` (the
policy pages' `policy_admin_required`), `audit_scope_for` (the audit pages' `audit_reader`) and the
admin site's `has_permission`. The menu is built lazily, only when a template shows it, at most once
a request and each check at most once: an engineer's menu costs two queries (the global model
permissions are usually already loaded by the page), a superuser's none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from audit.access import audit_scope_for
from jitaccess.selectors.requests import may_approve_somewhere, may_request_somewhere
from masking.policy.access import administers_any

Check = Callable[[HttpRequest], bool]


def signed_in(request: HttpRequest) -> bool:
    """My access, my requests, database access and the API docs: for everyone signed in (everyone
    may hold their own database tokens)."""
    return bool(request.user.is_authenticated)


def requester(request: HttpRequest) -> bool:
    return may_request_somewhere(request.user)  # type: ignore[arg-type]


def approver(request: HttpRequest) -> bool:
    return may_approve_somewhere(request.user)  # type: ignore[arg-type]


def policy_admin(request: HttpRequest) -> bool:
    return administers_any(request.user)  # type: ignore[arg-type]


def audit_reader(request: HttpRequest) -> bool:
    return audit_scope_for(request.user) is not None


def service_account_viewer(request: HttpRequest) -> bool:
    return bool(request.user.has_perm("identity.view_serviceaccount"))


def admin_site_user(request: HttpRequest) -> bool:
    return bool(admin.site.has_permission(request))


NAVIGATION: list[tuple[str, list[tuple[str, str, Check]]]] = [
    (
        "Engineer",
        [
            ("My access", "home", signed_in),
            ("Request access", "jitaccess:request-new", requester),
            ("My requests", "jitaccess:requests", signed_in),
            ("Database access", "database-access:index", signed_in),
        ],
    ),
    (
        "Approver",
        [
            ("Approvals", "jitaccess:approvals", approver),
            ("Access reviews", "jitaccess:access-reviews", approver),
        ],
    ),
    (
        "Policy admin",
        [
            ("Catalog", "masking:catalog", policy_admin),
            ("Policy", "policy:overview", policy_admin),
            ("Rules", "policy:rules", policy_admin),
            ("Policy versions", "policy:versions", policy_admin),
            ("Policy insights", "policy:insights", policy_admin),
            ("Break-glass review", "jitaccess:breakglass-reviews", policy_admin),
            ("Access review settings", "jitaccess:access-review-settings-list", policy_admin),
            ("Request settings", "jitaccess:request-settings-list", policy_admin),
            ("Admin site", "admin:index", admin_site_user),
        ],
    ),
    (
        "Compliance",
        [
            ("Audit", "audit:dashboard", audit_reader),
            ("Audit events", "audit:events", audit_reader),
            ("Audit exports", "audit:exports", audit_reader),
        ],
    ),
    (
        "Developers",
        [
            ("Service accounts", "identity:service-accounts", service_account_viewer),
            ("API docs", "api-docs", signed_in),
        ],
    ),
]

Menu = list[tuple[str, list[tuple[str, str]]]]


def menu_for(request: HttpRequest) -> Menu:
    """The sections and (label, URL name) links the person may use; sections left empty are dropped."""
    if not request.user.is_authenticated:
        return []
    verdicts: dict[Check, bool] = {}
    menu: Menu = []
    for section, links in NAVIGATION:
        allowed = []
        for label, url_name, check in links:
            if check not in verdicts:
                verdicts[check] = check(request)
            if verdicts[check]:
                allowed.append((label, url_name))
        if allowed:
            menu.append((section, allowed))
    return menu


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The menu, built when a template first shows it and kept on the request for later renders."""
    menu = getattr(request, "_veil_menu", None)
    if menu is None:
        menu = SimpleLazyObject(lambda: menu_for(request))
        request._veil_menu = menu  # type: ignore[attr-defined]
    return {"navigation": menu}
