"""The audit log's read API, `GET /api/v1/audit/events`, for SIEMs and compliance tooling.

Events come in chain order after a cursor (`after_seq`), filtered as on the event search page
(`audit.filters`), each with every hashed field plus `prev_hash` and `hash`, so a consumer can
recompute the chain (`audit/chain.py`) from the API's output alone. `docs/audit.md` says how to
poll it.

Who may read:

- a service-account token carrying the scope `audit:read` reads every project;
- a signed-in person reads what the audit pages show them (`audit.access.audit_scope_for`).

`audit` imports no other Veil app (`identity` imports `audit`), so the scope check cannot use
`identity.models.Scope` or `identity.authentication.TokenScope`. It reads what DRF put on the
request instead: the default authentication classes (settings `REST_FRAMEWORK`) set `request.auth`
to the `ApiToken` for a bearer token and to None for a session, and a token's `scopes` is a list of
scope strings. `AUDIT_READ_SCOPE` is the literal `identity.models.Scope.AUDIT_READ` (a test keeps
the two equal).

Reads are not recorded in the log: a poller would add an event per poll, which its next poll reads
(see "The read API" in docs/audit.md for the reasoning and what is recorded instead).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import permissions, serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.access import audit_scope_for, project_exists
from audit.display import ACTION_LABELS, action_label
from audit.filters import (
    EVERYTHING,
    FILTER_NAMES,
    AuditFilter,
    AuditScope,
    FilterError,
    check_action,
    check_project,
    events_matching,
)
from audit.models import ActorType, Channel
from audit.selectors import EVENT_FIELDS
from shared.api import QuerySerializer
from shared.schema import error_response

AUDIT_READ_SCOPE = "audit:read"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The largest seq the column holds (a BIGINT): beyond it the query would fail, not find nothing.
MAX_SEQ = 2**63 - 1


def _token_scopes(request: Request) -> list[str] | None:
    """The scopes of the token that authenticated the request, or None for a person (session)."""
    scopes = getattr(request.auth, "scopes", None)
    return None if scopes is None else list(scopes)


class AuditReader(permissions.BasePermission):
    """A token with `audit:read`, or a signed-in person (whose audit scope the view works out).
    Anyone else is not authenticated: DRF answers 401 with `WWW-Authenticate: Bearer`."""

    message = f"This token lacks the scope {AUDIT_READ_SCOPE!r}, which reading the audit log needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        scopes = _token_scopes(request)
        if scopes is not None:
            return AUDIT_READ_SCOPE in scopes
        user = request.user
        return bool(user is not None and user.is_authenticated)


def reader_scope(request: Request) -> AuditScope:
    """The projects the caller may audit: every one for a token, the person's audit scope else."""
    if _token_scopes(request) is not None:
        return EVERYTHING
    scope = audit_scope_for(request.user)
    if scope is None:
        raise PermissionDenied(
            "You may not read the audit log: it needs the permission 'view_audit', globally or "
            "on a project. Ask a Veil administrator."
        )
    return scope


def _text_filter(max_length: int, help_text: str) -> serializers.CharField:
    """An optional filter of the event search, as text (parsed and checked by `_filter`): no
    control character anywhere (the search refuses them, and would between words once it strips
    the ends), so that the schema's pattern says exactly what is refused."""
    return serializers.RegexField(
        r"^[^\x00-\x08\x0b-\x1f\x7f]+\Z",
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=max_length,
        help_text=help_text,
        error_messages={"invalid": "contains a control character; type the value as plain text"},
    )


@extend_schema_field(
    {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}, {"maxLength": 0}]}
)
class MomentFilterField(serializers.CharField):
    """An optional date or date-time filter, as text (parsed by `audit.filters`, which also refuses
    a period that ends before it starts, and moments outside 1970-01-01..8999-12-31)."""

    def __init__(self, help_text: str) -> None:
        super().__init__(
            required=False, allow_blank=True, max_length=40, trim_whitespace=False, help_text=help_text
        )


class AuditEventsQuery(QuerySerializer):
    """The query string. Unknown parameters are refused, so a misspelt filter is not ignored."""

    after_seq = serializers.IntegerField(
        min_value=0,
        max_value=MAX_SEQ,
        default=0,
        help_text="Return events with a larger seq (chain position). 0, the default, starts at the "
        "beginning of the log; pass the previous answer's `next_after_seq` to poll.",
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_LIMIT,
        default=DEFAULT_LIMIT,
        help_text=f"At most this many events (default {DEFAULT_LIMIT}, maximum {MAX_LIMIT}).",
    )
    # `from` is declared below the class: it is a Python keyword.
    to = MomentFilterField(
        "Events before this moment: an ISO date-time, or a date (YYYY-MM-DD) to include that whole day (UTC)."
    )
    person = _text_filter(
        255, "An actor or principal id (`local:3`, `user:alice`), or part of a person's name."
    )
    role = _text_filter(255, "A Veil role named in the event.")
    project = _text_filter(64, "A project key; a person may name only projects they audit.")
    instance = _text_filter(1000, "Part of an instance key.")
    database = _text_filter(1000, "Part of a database name.")
    column = _text_filter(
        1000, "Part of a column label `instance/database/schema.table.column`, or `table.column`."
    )
    action = _text_filter(64, "An event type (`request.approved`) or a prefix (`request` or `request.`).")


# `from` is a Python keyword, so it cannot be a class attribute; DRF reads `_declared_fields`.
AuditEventsQuery._declared_fields["from"] = MomentFilterField(
    "Events at or after this moment: an ISO date-time, or a date (YYYY-MM-DD, from 00:00 UTC)."
)


class AuditEventOut(serializers.Serializer):
    """One event. The fields from `seq` to `detail` are exactly the ones hashed (`audit/chain.py`)."""

    seq = serializers.IntegerField(
        help_text="Position in the chain, from 1; gaps where filters or the reader's scope leave events out"
    )
    occurred_at = serializers.CharField(
        help_text="UTC, ISO 8601 with microseconds and `+00:00`, exactly as hashed"
    )
    actor_type = serializers.ChoiceField(choices=ActorType.values)
    actor_id = serializers.CharField(help_text="`local:3`, a service account name, `veil`; may be empty")
    actor_name = serializers.CharField()
    action = serializers.CharField(help_text="The event type, such as `request.approved`")
    target_type = serializers.CharField(
        help_text="What the event is about (`request`, `grant`); may be empty"
    )
    target_id = serializers.CharField()
    target_repr = serializers.CharField(help_text="The target as people read it")
    project = serializers.CharField(help_text="The project key; empty for events of no project")
    channel = serializers.ChoiceField(choices=Channel.values)
    detail = serializers.JSONField(help_text="Facts of the event (an object); hashed as it is")
    prev_hash = serializers.CharField(
        help_text="The hash of the event at seq - 1 (64 zeros before the first event ever)"
    )
    hash = serializers.CharField(
        help_text="SHA-256, hex, of prev_hash followed by the canonical JSON of the hashed fields"
    )
    action_label = serializers.CharField(help_text="The event type in words (not hashed)")


class AuditEventsOut(serializers.Serializer):
    events = AuditEventOut(many=True)
    next_after_seq = serializers.IntegerField(
        help_text="Pass as `after_seq` to get what follows: the last event's seq, or the `after_seq` "
        "asked for when no event followed it"
    )
    has_more = serializers.BooleanField(
        help_text="More events matched than `limit`: ask again at once rather than after the poll interval"
    )


def _query(request: Request) -> dict[str, Any]:
    query = AuditEventsQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


def _filter(data: dict[str, Any], scope: AuditScope) -> AuditFilter:
    """The filter of the query, checked as the event search checks it, except that an event type or
    project that has no event yet is not an error: a poller asks before it happens."""
    try:
        flt = AuditFilter.from_mapping({name: data.get(name, "") for name in FILTER_NAMES})
        try:
            check_project(flt, scope)
        except FilterError:
            if not (scope.is_everything and project_exists(flt.project)):
                raise
        try:
            check_action(flt, "events", scope)
        except FilterError:
            if not known_action(flt.action):
                raise
    except FilterError as exc:
        raise ValidationError({name: [exc.message] for name in exc.fields}) from exc
    return flt


def known_action(action: str) -> bool:
    """An event type Veil records (or a prefix of one), whether or not the log holds one yet."""
    if action.endswith(".") or "." not in action:
        prefix = action.rstrip(".")
        return any(code == prefix or code.startswith(f"{prefix}.") for code in ACTION_LABELS)
    return action in ACTION_LABELS


def event_out(row: dict[str, Any]) -> dict[str, Any]:
    """An event as the API gives it: the hashed fields as hashed, the chain fields, the label."""
    out = dict(row)
    out["occurred_at"] = row["occurred_at"].astimezone(UTC).isoformat(timespec="microseconds")
    out["action_label"] = action_label(row["action"])
    return out


class AuditEventsApi(APIView):
    """Read the audit log in chain order, a page at a time, for SIEMs and compliance tooling."""

    permission_classes = [AuditReader]
    token_scope = AUDIT_READ_SCOPE  # for the schema: `AuditReader` checks it

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.scope = reader_scope(request)

    @extend_schema(
        operation_id="audit_events_list",
        summary="Audit events after a cursor, in chain order",
        description=(
            "Needs a service-account token with the scope `audit:read` (every project) or a "
            "signed-in person who may read the audit log (the projects they audit). Start with "
            "`after_seq=0`, then pass each answer's `next_after_seq`; ask again at once while "
            "`has_more`. Filters are those of the event search page; one that cannot match (a "
            "project outside your scope, a period that ends before it starts, an unknown event type) "
            "is a 400 naming it. Every event carries `prev_hash` and `hash`: "
            "`hash = sha256(prev_hash + canonical JSON of seq..detail)`, see docs/audit.md."
        ),
        parameters=[AuditEventsQuery],
        responses={
            200: AuditEventsOut,
            400: error_response(
                "A parameter is invalid, given twice or unknown, or a filter cannot match (a project "
                "outside your scope, a period that ends before it starts, an unknown event type); "
                "`error.fields` names it"
            ),
            403: error_response("A token without `audit:read`, or a person who may not read the audit log"),
        },
        examples=[
            OpenApiExample(
                "A page",
                response_only=True,
                value={
                    "events": [
                        {
                            "seq": 42,
                            "occurred_at": "2026-11-23T05:17:57.123456+00:00",
                            "actor_type": "user",
                            "actor_id": "local:2",
                            "actor_name": "Bob Approver",
                            "action": "request.approved",
                            "target_type": "request",
                            "target_id": "7",
                            "target_repr": "REQ-7 shop/public.customers (email)",
                            "project": "shop",
                            "channel": "web",
                            "detail": {"request": "REQ-7"},
                            "prev_hash": "5f0c…",
                            "hash": "a91e…",
                            "action_label": "Request approved",
                        }
                    ],
                    "next_after_seq": 42,
                    "has_more": False,
                },
            )
        ],
    )
    def get(self, request: Request) -> Response:
        data = _query(request)
        flt = _filter(data, self.scope)
        after, limit = data["after_seq"], data["limit"]
        rows = list(events_matching(flt, self.scope).filter(seq__gt=after).values(*EVENT_FIELDS)[: limit + 1])
        page = [event_out(row) for row in rows[:limit]]
        body = {
            "events": page,
            "next_after_seq": page[-1]["seq"] if page else after,
            "has_more": len(rows) > limit,
        }
        # Audit records are not for shared caches, and a poller must never be answered from one.
        return Response(body, headers={"Cache-Control": "no-store"})
