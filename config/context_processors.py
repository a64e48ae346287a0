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
            ("Break-glass review", "jitaccess:breakglass-reviews"),
            ("Admin site", "admin:index"),
        ],
    ),
    ("Developers", [("API docs", "api-docs")]),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    return {"navigation": NAVIGATION}
