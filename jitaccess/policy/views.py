"""Policy admin pages that need `jitaccess`: approval policies and the feedback-loop insights.

They reuse `masking`'s review flow, so an approval policy saved here, or a draft taken from the
insights, is diffed, confirmed and versioned like every other policy change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from jitaccess.models import ApprovalPolicy
from jitaccess.policy import insights
from jitaccess.policy.activity import principal_activity, totals_by_kind
from jitaccess.policy.forms import ApprovalPolicyForm
from jitaccess.policy.matching import PolicyConditionError, check_request_condition
from masking.checks import ORDINARY_PRINCIPAL
from masking.decisions.engine import ColumnKey, Decision, Policy
from masking.models import MaskingRule
from masking.policy.access import administered_projects, readable_items
from masking.policy.document import export_document
from masking.policy.edits import find_item, move_item, remove_item, upsert_item
from masking.policy.insights import exemptions_never_used, live_policy, rule_usage
from masking.policy.review import can_edit_global, item_form_page, person, policy_admin_required, review

WINDOW_DAYS = 90
ACTIVITY_SHOWN = 20  # principals listed under "People and agents"; the totals count everyone


@policy_admin_required
def approval_policies(request: HttpRequest) -> HttpResponse:
    user = person(request)
    mine = administered_projects(user)
    policies = (
        readable_items(ApprovalPolicy.objects.all(), user)
        .select_related("project")
        .prefetch_related("approver_roles", "stages__approver_roles")
        .order_by("project__key", "position", "id")
    )
    rows = list(policies)
    # Order is per project: the first of a project cannot move up, nor its last down.
    for index, policy in enumerate(rows):
        project_id = policy.project_id
        policy.can_move_up = index > 0 and rows[index - 1].project_id == project_id  # type: ignore[attr-defined]
        policy.can_move_down = index + 1 < len(rows) and rows[index + 1].project_id == project_id  # type: ignore[attr-defined]
    return render(request, "masking/approval_policies.html", {"policies": rows, "mine": mine})


def _key(policy: ApprovalPolicy) -> str:
    return f"{policy.project.key}: {policy.title.strip()}"


@policy_admin_required
def approval_policy_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    policy = (
        get_object_or_404(
            readable_items(ApprovalPolicy.objects.select_related("project"), person(request)), pk=pk
        )
        if pk
        else None
    )
    live = export_document()
    current = find_item(live, "approval_policies", _key(policy)) if policy else None
    projects = sorted(administered_projects(person(request)) | ({policy.project.key} if policy else set()))
    initial: dict[str, Any] = (
        dict(current) if current else {"condition": "true", "approvals_required": 1, "enabled": True}
    )
    form = ApprovalPolicyForm(request.POST or None, initial=initial, projects=projects)
    if policy is not None:
        form.fields["project"].disabled = True
    page = (
        "masking/approval_policy_form.html",
        {"policy": policy, "check_url": reverse("policy:approval-condition-check")},
    )
    return item_form_page(
        request,
        form,
        page,
        live=live,
        section="approval_policies",
        replacing=_key(policy) if policy else None,
        heading=lambda item: f"Save approval policy {item['title']!r} of {item['project']}",
        back=reverse("policy:approval-policies"),
    )


@policy_admin_required
@require_POST
def approval_policy_delete(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(
        readable_items(ApprovalPolicy.objects.select_related("project"), person(request)), pk=pk
    )
    return review(
        request,
        remove_item(export_document(), "approval_policies", _key(policy)),
        heading=f"Delete approval policy {policy.title!r} of {policy.project.key}",
        back=reverse("policy:approval-policies"),
    )


@policy_admin_required
@require_POST
def approval_policy_move(request: HttpRequest, pk: int, direction: str) -> HttpResponse:
    policy = get_object_or_404(
        readable_items(ApprovalPolicy.objects.select_related("project"), person(request)), pk=pk
    )
    if direction not in ("up", "down"):
        raise Http404("Move up or down.")
    return review(
        request,
        move_item(export_document(), "approval_policies", _key(policy), -1 if direction == "up" else 1),
        heading=f"Move approval policy {policy.title!r} {direction}",
        back=reverse("policy:approval-policies"),
        message=f"Move approval policy {policy.title!r} {direction}",
    )


@never_cache
@policy_admin_required
@require_POST
def approval_condition_check(request: HttpRequest) -> JsonResponse:
    try:
        check_request_condition(request.POST.get("condition", "") or "true")
    except PolicyConditionError as exc:
        return JsonResponse({"ok": False, "error": str(exc)})
    return JsonResponse({"ok": True})


# --- Insights ----------------------------------------------------------------------------------


@policy_admin_required
def insights_dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    since = now - timedelta(days=WINDOW_DAYS)
    user = person(request)
    # Requests (who asked for which columns, who was denied) are shown for the projects the person
    # administers, as the Checks page shows their columns; failed sign-ins only to someone who
    # administers every project.
    projects = None if can_edit_global(user) else administered_projects(user)
    policy = live_policy()
    requested = insights.requested_columns(since, projects=projects)
    rules_by_id = {r.pk: r for r in MaskingRule.objects.all()}
    rows = []
    for item in requested:
        decision = None
        if item.column is not None and item.table is not None:
            key = ColumnKey(item.instance, item.database, item.schema or "", item.table, item.column)
            decision = _base_decision(policy, key, now)
        masked_by = decision.reason_id if decision is not None and decision.reason_kind == "rule" else None
        rows.append({"c": item, "rule": rules_by_id.get(masked_by) if masked_by else None})
    activity = principal_activity(now - timedelta(days=28), projects=projects)
    return render(
        request,
        "masking/insights.html",
        {
            "window_days": WINDOW_DAYS,
            "requested": rows,
            "requested_bars": _bars([(r.label, r.requests) for r in requested]),
            "roles": insights.role_load(since, projects=projects),
            "attempts": [
                _sparkline(series)
                for series in insights.attempts(now - timedelta(days=28), now, projects=projects)
            ],
            "latency": insights.latency(since, now, projects=projects),
            "activity": activity[:ACTIVITY_SHOWN],
            "activity_more": max(0, len(activity) - ACTIVITY_SHOWN),
            "activity_totals": totals_by_kind(activity),
            "rules": [u for u in rule_usage(policy) if u.status],
            "idle_exemptions": exemptions_never_used(since),
        },
    )


def _base_decision(policy: Policy, key: ColumnKey, now: datetime) -> Decision | None:
    """What an ordinary principal gets for the column, or None when the catalog lacks it."""
    if key not in policy.columns:
        return None
    return policy.decide(ORDINARY_PRINCIPAL, [key], now=now.timestamp())[0]


def _bars(values: list[tuple[str, int]]) -> list[dict[str, Any]]:
    top = max((v for _, v in values), default=0) or 1
    return [{"label": label, "value": value, "percent": round(100 * value / top)} for label, value in values]


def _sparkline(series: insights.PrincipalAttempts) -> dict[str, Any]:
    """An inline SVG's bars: one per day, spikes drawn in the alert colour."""
    top = max((count for _, count, _ in series.days), default=0) or 1
    width = 6
    bars = [
        {
            "x": index * width,
            "height": round(28 * count / top, 1),
            "y": round(30 - 28 * count / top, 1),
            "spike": spike,
            "title": f"{day:%d %b}: {count}",
        }
        for index, (day, count, spike) in enumerate(series.days)
    ]
    return {"series": series, "bars": bars, "width": width * len(bars), "bar_width": width - 1}


def _missing(data: Any, *names: str) -> HttpResponse | None:
    """A 400 naming the first of `names` absent or blank from the POST: the insights page always
    sends them, so only a stale page or a hand-written request gets here."""
    for name in names:
        if not data.get(name, "").strip():
            return HttpResponseBadRequest(
                f"The parameter '{name}' is missing or empty: draft from the insights page again.",
                content_type="text/plain; charset=utf-8",
            )
    return None


@policy_admin_required
@require_POST
def draft_exemption(request: HttpRequest) -> HttpResponse:
    """One click from a frequently requested column to a standing exemption for the role asking,
    shown as a diff for review (nothing is applied until confirmed)."""
    data = request.POST
    if refused := _missing(data, "project", "role", "label", "condition"):
        return refused
    label, role, project = data["label"].strip(), data["role"].strip(), data["project"].strip()
    requests = data.get("requests", "").strip()
    if requests and not requests.isdigit():
        return HttpResponseBadRequest(
            f"The parameter 'requests' must be a whole number, not {requests[:40]!r}.",
            content_type="text/plain; charset=utf-8",
        )
    asked = f"requested {requests} times" if requests else "requested often"
    item = {
        "project": project,
        "reason": f"Standing access for {role} to {label}: {asked} in {WINDOW_DAYS} days, none denied",
        "condition": data["condition"].strip(),
        "users": [],
        "groups": [],
        "roles": [role],
        "service_accounts": [],
        "expires_at": None,
    }
    return review(
        request,
        upsert_item(export_document(), "exemptions", item, replacing=None),
        heading=f"Draft: standing exemption for {role}",
        back=reverse("policy:insights"),
        message=f"Standing exemption for {role} on {label} (from insights)",
    )


@policy_admin_required
@require_POST
def draft_rule_change(request: HttpRequest) -> HttpResponse:
    """One click from a column everyone asks for to the rule that masks it, narrowed to leave the
    column out; the reviewer sees exactly which condition changes."""
    if refused := _missing(request.POST, "rule", "condition"):
        return refused
    raw_rule = request.POST["rule"].strip()
    if not raw_rule.isdigit():
        return HttpResponseBadRequest(
            f"The parameter 'rule' must be a rule's id (a whole number), not {raw_rule[:40]!r}.",
            content_type="text/plain; charset=utf-8",
        )
    rule = get_object_or_404(MaskingRule, pk=int(raw_rule))
    live = export_document()
    current = find_item(live, "rules", rule.title)
    if current is None:
        raise Http404("No such rule.")
    excluded = request.POST["condition"].strip()
    label = request.POST.get("label", "").strip()
    item = {**current, "condition": f"({current['condition']}) && !({excluded})"}
    return review(
        request,
        upsert_item(live, "rules", item, replacing=rule.title),
        heading=f"Draft: stop rule {rule.title!r} masking {label or 'this column'}",
        back=reverse("policy:insights"),
        message=f"Leave {label or 'a column'} out of rule {rule.title!r} (from insights)",
    )
