"""Approval policies: which one applies to a request (CEL over the request, first match wins)."""

from __future__ import annotations

import logging
from typing import Any

from jitaccess.models import ApprovalPolicy
from masking.cel import compile_condition
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


class PolicyConditionError(ValueError):
    pass


def check_request_condition(expression: str) -> None:
    """Refuse a condition that does not compile or does not give a bool on a sample request."""
    try:
        program = compile_condition(expression)
    except ValueError as exc:
        raise PolicyConditionError(f"does not compile: {str(exc).splitlines()[0]}") from exc
    unknown = [v for v in program.variables() if v != "request"]
    if unknown:
        raise PolicyConditionError(f"unknown variable(s) {', '.join(unknown)}; only `request` is available")
    try:
        result = program.execute({"request": REQUEST_FIELDS})
    except Exception as exc:  # the CEL runtime raises several exception types
        raise PolicyConditionError(f"cannot be evaluated: {str(exc).splitlines()[0]}") from exc
    if not isinstance(result, bool):
        raise PolicyConditionError("must evaluate to true or false")


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
