"""Navigation for the four audiences. Each app's pages join a section as they are built."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

NAVIGATION: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Engineer",
        [
            ("My access", "home"),
            ("Request access", "jitaccess:request-new"),
            ("My requests", "jitaccess:requests"),
        ],
    ),
    ("Approver", [("Approvals", "jitaccess:approvals")]),
    (
        "Policy admin",
        [
            ("Catalog", "masking:catalog"),
            ("Policy", "policy:overview"),
            ("Rules", "policy:rules"),
            ("Policy versions", "policy:versions"),
            ("Policy insights", "policy:insights"),
            ("Break-glass review", "jitaccess:breakglass-reviews"),
            ("Admin site", "admin:index"),
        ],
    ),
    (
        "Compliance",
        [("Audit", "audit:dashboard"), ("Audit events", "audit:events"), ("Audit exports", "audit:exports")],
    ),
    ("Developers", [("API docs", "api-docs")]),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    return {"navigation": NAVIGATION}
