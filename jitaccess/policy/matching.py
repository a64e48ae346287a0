"""Approval policies: which one applies to a request (CEL over the request, first match wins)."""

from __future__ import annotations

import logging
from typing import Any

from jitaccess.models import ApprovalPolicy
from masking.decisions.cel import ConditionError, ConditionVariable, check_condition, compile_condition
from masking.models import Project

logger = logging.getLogger(__name__)

REQUEST_FIELDS = {
    "environment_id": "prod",
    "project_id": "shop",
    "instance_id": "prod-pg",
    "database_name": "shop",
    "table_name": "customers",
    "classification_level": 3,
    "duration_hours": 2.0,
    "requester_roles": ["engineers"],
    "requester_groups": ["engineering"],
}


# What an approval policy's condition reads: its fields (listed when a condition names another)
# and a sample request of the right types (what a field may be compared with).
REQUEST = ConditionVariable(
    "request",
    {
        "environment_id": "Environment of the database's instance, e.g. prod",
        "project_id": "Project key",
        "instance_id": "Instance id, e.g. prod-pg",
        "database_name": "Database name",
        "table_name": "Table name, '' when the request covers a whole database",
        "classification_level": "Highest classification level in scope (a number, -1 if none)",
        "duration_hours": "Requested duration in hours (a number)",
        "requester_roles": "The requester's Veil roles (a list of names)",
        "requester_groups": "The requester's IdP groups (a list of names)",
    },
    (REQUEST_FIELDS,),
)


class PolicyConditionError(ValueError):
    pass


def check_request_condition(expression: str) -> None:
    """Refuse, as rule conditions are refused (`masking.decisions.cel.check_condition`), a condition that does
    not compile, names an unknown field, compares a field with a literal of another type or does
    not give a bool on a sample request."""
    try:
        check_condition(expression, REQUEST)
    except ConditionError as exc:
        raise PolicyConditionError(str(exc)) from exc


def match_approval_policy(*, project: Project, variables: dict[str, Any]) -> ApprovalPolicy | None:
    """The first enabled policy of the project whose condition holds. A condition that fails to
    evaluate does not match (a stricter policy, or an administrator, then decides)."""
    for policy in ApprovalPolicy.objects.filter(project=project, enabled=True).order_by("position", "id"):
        try:
            if compile_condition(policy.condition or "true").execute({"request": variables}) is True:
                return policy
        except Exception:  # any CEL runtime error means no match
            logger.warning("approval policy %s failed to evaluate; skipped", policy.pk)
    return None
