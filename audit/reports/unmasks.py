"""Who saw unmasked data: decision records joined with the grant, exemption and request events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q, Sum, TextField
from django.db.models.functions import Cast

from audit.filters import AuditFilter, AuditScope, report_action
from audit.models import AccessEvent, AuditEvent, DecisionRecord
from audit.reports.common import (
    CHUNK,
    Row,
    chunks,
    current_state,
    duration_text,
    parse_time,
    ref_key,
    request_key,
)

AUTHORISATION_ACTIONS = ("grant.created", "exemption.created", "exemption.updated")
# A break-glass request has no `request.created`: this event says who took it, when and why.
BREAKGLASS_TAKEN = "breakglass.taken"


@dataclass
class Authorisation:
    """A grant or an exemption as the log knows it."""

    kind: str
    id: str
    project: str = ""
    request: str = ""
    reason: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    roles: list[str] = field(default_factory=list)


@dataclass
class RequestInfo:
    """What the `request.*` events say about one request."""

    key: str
    ref: str = ""
    requested_by: str = ""
    requested_at: datetime | None = None
    reason: str = ""
    approvers: list[str] = field(default_factory=list)
    approved_at: datetime | None = None
    auto_approved: bool = False
    breakglass: bool = False

    @property
    def approved_by(self) -> str:
        if self.breakglass:  # taken without approval; its review is in the break-glass report
            return "break-glass (no approval)"
        names = list(dict.fromkeys(self.approvers))
        if self.auto_approved:
            names.append("auto-approved")
        return ", ".join(names)


class _LogIndex:
    """Looks up authorisations and requests in the log, a chunk of decisions at a time.

    Bounded: the caches are dropped when they grow past `limit` entries, so a report over millions
    of decisions holds only what one chunk refers to.
    """

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.authorisations: dict[str, Authorisation] = {}
        self.requests: dict[str, RequestInfo] = {}

    def load(self, auth_ids: set[str], request_refs: set[str]) -> None:
        if len(self.authorisations) > self.limit or len(self.requests) > self.limit:
            self.authorisations, self.requests = {}, {}
        missing = sorted(auth_ids - self.authorisations.keys())
        if missing:
            events = (
                AuditEvent.objects.filter(action__in=AUTHORISATION_ACTIONS, target_id__in=missing)
                .order_by("seq")
                .values("action", "target_id", "target_repr", "project", "occurred_at", "detail")
            )
            for event in events:
                self._add_authorisation(event)
            for auth_id in missing:
                self.authorisations.setdefault(auth_id, Authorisation(kind="", id=auth_id))
        raw = {r for r in request_refs if r}
        raw |= {self.authorisations[a].request for a in auth_ids if self.authorisations[a].request}
        missing_keys = sorted({ref_key(r) for r in raw} - self.requests.keys())
        if missing_keys:
            named = sorted({r for r in raw if ref_key(r) in missing_keys} | set(missing_keys))
            request_events = (
                AuditEvent.objects.filter(Q(action__startswith="request.") | Q(action=BREAKGLASS_TAKEN))
                .filter(Q(target_type="request", target_id__in=missing_keys) | Q(detail__request__in=named))
                .order_by("seq")
                .values(
                    "action", "target_type", "target_id", "target_repr", "actor_name", "occurred_at", "detail"
                )
            )
            for request_event in request_events:
                self._add_request_event(request_event)
            for key in missing_keys:
                self.requests.setdefault(key, RequestInfo(key))

    def request(self, ref: str) -> RequestInfo:
        return self.requests.get(ref_key(ref)) or RequestInfo(ref_key(ref), ref=ref)

    def _add_authorisation(self, event: Mapping[str, Any]) -> None:
        kind = event["action"].split(".", 1)[0]
        detail = current_state(event["detail"])
        auth = self.authorisations.get(event["target_id"]) or Authorisation(kind=kind, id=event["target_id"])
        auth.project = event["project"] or auth.project
        if kind == "grant":
            auth.request = str(detail.get("request") or event["target_repr"] or "")
        else:
            auth.reason = event["target_repr"] or auth.reason
        auth.created_at = auth.created_at or event["occurred_at"]
        if kind == "exemption":  # created or changed: the state after it, whole
            auth.expires_at = parse_time(detail.get("expires_at"))
            auth.roles = list((detail.get("members") or {}).get("roles") or [])
        else:
            auth.expires_at = parse_time(detail.get("expires_at")) or auth.expires_at
            auth.roles = list((detail.get("members") or {}).get("roles") or auth.roles)
        self.authorisations[auth.id] = auth

    def _add_request_event(self, event: Mapping[str, Any]) -> None:
        key = request_key(event)
        if not key:
            return
        info = self.requests.setdefault(key, RequestInfo(key))
        detail = event["detail"] if isinstance(event["detail"], dict) else {}
        verb = event["action"].split(".", 1)[1]
        info.breakglass = info.breakglass or event["action"] == BREAKGLASS_TAKEN
        if event["action"] in ("request.created", BREAKGLASS_TAKEN):
            info.requested_by = event["actor_name"]
            info.requested_at = event["occurred_at"]
            info.reason = str(detail.get("reason") or "")
            info.ref = info.ref or str(event["target_repr"]).split(" ", 1)[0]
        elif verb in ("approval_recorded", "approved"):
            if detail.get("auto_approved"):
                info.auto_approved = True
            elif event["actor_name"]:
                info.approvers.append(event["actor_name"])
            if verb == "approved":
                info.approved_at = info.approved_at or event["occurred_at"]


UNMASK_COLUMNS = (
    "recorded_at",
    "person",
    "principal_type",
    "principal_id",
    "service_account",
    "query_id",
    "project",
    "columns",
    "reason",
    "authorisation_id",
    "request",
    "request_reason",
    "requested_at",
    "approved_by",
    "approved_at",
    "duration",
    "expires_at",
    "rows_returned",
    "record_id",
)


def _decision_records(flt: AuditFilter) -> Iterator[Row]:
    records = DecisionRecord.objects.order_by("id")
    if flt.date_from:
        records = records.filter(recorded_at__gte=flt.date_from)
    if flt.date_to:
        records = records.filter(recorded_at__lt=flt.date_to)
    if flt.person:
        records = records.filter(Q(principal_id__iexact=flt.person) | Q(principal_name__icontains=flt.person))
    column_values = [v for v in (flt.instance, flt.database, flt.column) if v]
    if column_values:
        records = records.annotate(unmasked_text=Cast("unmasked", TextField()))
        for value in column_values:
            records = records.filter(unmasked_text__icontains=value)
    return records.values_list(
        "id",
        "recorded_at",
        "principal_type",
        "principal_id",
        "principal_name",
        "service_account",
        "query_id",
        "unmasked",
    ).iterator(chunk_size=CHUNK)


def unmask_rows(flt: AuditFilter, scope: AuditScope) -> Iterator[Row]:
    """One row per decision record and authorisation: who saw which columns unmasked, when, under
    which grant or exemption, approved by whom, for what reason, and how many rows were returned
    (summed from the access events reported for the same query)."""
    index = _LogIndex()
    kind_filter = report_action(flt, "unmasks")
    for chunk in chunks(_decision_records(flt)):
        auth_ids = {str(e.get("id")) for record in chunk for e in record[7] if e.get("id") is not None}
        request_refs = {str(e["request"]) for record in chunk for e in record[7] if e.get("request")}
        index.load(auth_ids, request_refs)
        query_ids = sorted({record[6] for record in chunk if record[6]})
        returned: dict[tuple[str, str], int] = {}
        if query_ids:
            for item in (
                AccessEvent.objects.filter(query_id__in=query_ids)
                .values("query_id", "service_account")
                .annotate(rows=Sum("row_count"))
            ):
                returned[(item["query_id"], item["service_account"])] = item["rows"]
        for record_id, recorded_at, p_type, p_id, p_name, service_account, query_id, unmasked in chunk:
            groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            for entry in unmasked:
                if flt.column_label_matches(str(entry.get("column", ""))):
                    groups[(str(entry.get("reason", "")), str(entry.get("id", "")))].append(entry)
            for (reason, auth_id), entries in groups.items():
                auth = index.authorisations.get(auth_id) or Authorisation(kind=reason, id=auth_id)
                if not scope.allows_project(auth.project) or (flt.project and auth.project != flt.project):
                    continue
                if (flt.role and flt.role not in auth.roles) or (kind_filter and reason != kind_filter):
                    continue
                ref = auth.request or str(entries[0].get("request") or "")
                request = index.request(ref) if ref else RequestInfo("")
                expires = auth.expires_at or parse_time(entries[0].get("expires_at"))
                yield (
                    recorded_at,
                    p_name,
                    p_type,
                    p_id,
                    service_account,
                    query_id,
                    auth.project,
                    [str(e.get("column", "")) for e in entries],
                    reason,
                    auth_id,
                    ref,
                    request.reason or auth.reason,
                    request.requested_at,
                    request.approved_by,
                    request.approved_at,
                    duration_text(auth.created_at, expires) if reason == "grant" else "",
                    expires,
                    returned.get((query_id, service_account)) if query_id else None,
                    record_id,
                )


SUMMARY_COLUMNS = ("person", "decisions", "columns", "rows_returned", "first", "last")


def unmask_summary(flt: AuditFilter, scope: AuditScope) -> list[Row]:
    """Per person: how many unmask decisions, which columns, rows returned (None when no decision
    of theirs has a reported row count), first and last."""
    people: dict[str, dict[str, Any]] = {}
    for row in unmask_rows(flt, scope):
        person = people.setdefault(
            row[1], {"records": set(), "columns": set(), "rows": None, "first": row[0], "last": row[0]}
        )
        person["records"].add(row[18])
        person["columns"].update(row[7])
        if row[17] is not None:  # rows returned is unknown (None) until the proxy reports it
            person["rows"] = (person["rows"] or 0) + row[17]
        person["first"], person["last"] = min(person["first"], row[0]), max(person["last"], row[0])
    return [
        (name, len(p["records"]), sorted(p["columns"]), p["rows"], p["first"], p["last"])
        for name, p in sorted(people.items(), key=lambda item: -len(item[1]["records"]))
    ]
