"""What the data path's inference guard reports: a query refused (or, in audit mode, run anyway)
because it used a column masked for its principal outside a plain result column.

Written as chained audit events, so compliance finds refusals among the denied attempts; the
access event of the same query (row count 0 when refused) is stored beside it as usual.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.models import ActorType, Channel, PrincipalKind
from audit.services import Actor, Target, record_event
from masking.models import Database

GUARD_REFUSED = "query.refused"
GUARD_AUDITED = "query.guard_audited"


def _project_of(columns: list[dict[str, str]]) -> str:
    """The project of the first catalogued database named (audit scopes are per project)."""
    for column in columns:
        database = (
            Database.objects.filter(instance__key=column["instance"], name=column["database"])
            .select_related("project")
            .first()
        )
        if database is not None:
            return database.project.key
    return ""


@transaction.atomic
def record_guard_outcomes(*, service_account: str, events: list[dict[str, Any]]) -> int:
    """One audit event per reported guard outcome. ``events`` are access events as the API
    validated them; those without a ``guard`` object are skipped. Returns how many were written."""
    written = 0
    for event in events:
        guard = event.get("guard")
        if not guard:
            continue
        principal = event["principal"]
        name = principal.get("user") or principal.get("service_account")
        kind = ActorType.USER if "user" in principal else ActorType.SERVICE_ACCOUNT
        columns = event["masked_columns"]
        record_event(
            action=GUARD_REFUSED if guard["outcome"] == "refused" else GUARD_AUDITED,
            actor=Actor(type=kind, id=name, name=name),
            channel=Channel.API,
            target=Target(type="query", id=event["query_id"] or "-", repr=guard["clause"]),
            project=_project_of(columns),
            detail={
                "data_access_layer": service_account,
                "query_id": event["query_id"],
                "clause": guard["clause"],
                "message": guard["message"],
                "columns": [
                    f"{c['instance']}/{c['database']}/{c['schema']}.{c['table']}.{c['column']}"
                    for c in columns
                ],
                "principal_kind": PrincipalKind.of(principal, event.get("tool_call")).value,
                **({"fingerprint": event["fingerprint"]} if event.get("fingerprint") else {}),
                **({"tool_call": event["tool_call"]} if event.get("tool_call") else {}),
            },
        )
        written += 1
    return written
