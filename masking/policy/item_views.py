"""Policy admin pages for semantic types, masking rules and exemptions, and their live helpers.

Saving any of them edits the live document and goes to review (`masking.policy.review`). The two
helpers answer as the admin types and store nothing: `condition_check` compiles a CEL condition
and lists the catalog columns it matches; `semantic_type_preview` masks sample values with an
algorithm in Python (`veil_sdk.algorithms.apply`, the code data-access layers run; nothing is
ported to JavaScript). Samples are never written to the database, the audit log or a log line.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from veil_sdk.algorithms import AlgorithmError
from veil_sdk.algorithms import apply as apply_algorithm

from identity.models import User
from masking.decisions.cel import ConditionError, check_condition
from masking.decisions.engine import RuleView
from masking.models import Column, Exemption, ExemptionKind, MaskingRule, SemanticType
from masking.policy.access import administered_projects, columns_scope, readable_items
from masking.policy.document import export_document
from masking.policy.edits import find_item, move_item, remove_item
from masking.policy.forms import ExemptionForm, RuleForm, SemanticTypeForm
from masking.policy.insights import columns_matching, live_policy, rule_usage
from masking.policy.review import can_edit_global, item_form_page, person, policy_admin_required, review

PREVIEW_MAX_SAMPLES = 20
PREVIEW_MAX_LENGTH = 500
MATCHES_SHOWN = 50


# --- Semantic types ----------------------------------------------------------------------------


@policy_admin_required
def semantic_types(request: HttpRequest) -> HttpResponse:
    types = SemanticType.objects.order_by("key")
    rules = _count(MaskingRule.objects.all())
    columns = _count(Column.objects.all())  # counted by the database: the catalog has thousands
    rows = [{"type": st, "rules": rules.get(st.key, 0), "columns": columns.get(st.key, 0)} for st in types]
    return render(
        request, "masking/semantic_types.html", {"rows": rows, "can_edit": can_edit_global(person(request))}
    )


def _count(items: QuerySet[Any]) -> dict[str, int]:
    """How many of `items` (rules or columns) name each semantic type, by its key."""
    counts = items.filter(semantic_type__isnull=False).values("semantic_type__key").annotate(n=Count("pk"))
    return {row["semantic_type__key"]: row["n"] for row in counts.order_by()}


@policy_admin_required
def semantic_type_edit(request: HttpRequest, key: str | None = None) -> HttpResponse:
    live = export_document()
    current = find_item(live, "semantic_types", key) if key else None
    if key and current is None:
        raise Http404("No such semantic type.")
    form = SemanticTypeForm(
        request.POST or None, initial=SemanticTypeForm.initial_for(current) if current else None
    )
    page = (
        "masking/semantic_type_form.html",
        {"key": key, "preview_url": reverse("policy:semantic-type-preview")},
    )
    return item_form_page(
        request,
        form,
        page,
        live=live,
        section="semantic_types",
        replacing=key,
        heading=lambda item: f"Save semantic type {item['key']}",
        back=reverse("policy:semantic-types"),
    )


@policy_admin_required
@require_POST
def semantic_type_delete(request: HttpRequest, key: str) -> HttpResponse:
    get_object_or_404(SemanticType, key=key)
    return review(
        request,
        remove_item(export_document(), "semantic_types", key),
        heading=f"Delete semantic type {key}",
        back=reverse("policy:semantic-types"),
    )


@sensitive_post_parameters("samples")
@never_cache
@policy_admin_required
@require_POST
def semantic_type_preview(request: HttpRequest) -> JsonResponse:
    """Mask the admin's sample values with an algorithm and answer them; nothing is kept.

    A `pseudonym` needs a key only data-access layers hold, so the preview uses a random one for
    this request: the shape of the token is right, its value is not the production one.
    """
    try:
        algorithm = json.loads(request.POST.get("algorithm", ""))
    except ValueError as exc:
        return JsonResponse({"ok": False, "error": f"algorithm: not JSON ({exc})"})
    samples = [s for s in request.POST.get("samples", "").splitlines() if s.strip()][:PREVIEW_MAX_SAMPLES]
    keys = None
    if (
        isinstance(algorithm, dict)
        and algorithm.get("type") == "pseudonym"
        and isinstance(algorithm.get("key_id"), str)
    ):
        keys = {algorithm["key_id"]: secrets.token_bytes(32)}
    try:
        results = [
            {
                "input": s[:PREVIEW_MAX_LENGTH],
                "output": apply_algorithm(algorithm, s[:PREVIEW_MAX_LENGTH], keys=keys),
            }
            for s in samples
        ]
    except AlgorithmError as exc:
        return JsonResponse({"ok": False, "error": str(exc)})
    return JsonResponse({"ok": True, "results": results, "throwaway_key": keys is not None})


# --- Rules -------------------------------------------------------------------------------------


@policy_admin_required
def rules(request: HttpRequest) -> HttpResponse:
    usage = {u.rule.id: u for u in rule_usage(live_policy())}
    rows = [
        {"rule": rule, "usage": usage.get(rule.pk)}
        for rule in MaskingRule.objects.select_related("semantic_type").order_by("position", "id")
    ]
    return render(request, "masking/rules.html", {"rows": rows, "can_edit": can_edit_global(person(request))})


def _earlier_rules(rule: MaskingRule | None) -> list[RuleView]:
    """Enabled rules evaluated before `rule` (all of them for a new rule)."""
    enabled = live_policy().rules
    if rule is None:
        return list(enabled)
    before = set(
        MaskingRule.objects.filter(
            Q(position__lt=rule.position) | Q(position=rule.position, pk__lt=rule.pk)
        ).values_list("pk", flat=True)
    )
    return [r for r in enabled if r.id in before]


@policy_admin_required
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    rule = get_object_or_404(MaskingRule, pk=pk) if pk else None
    live = export_document()
    current = find_item(live, "rules", rule.title) if rule else None
    form = RuleForm(request.POST or None, initial=current or {"enabled": True})
    condition = (form.data.get("condition") if form.is_bound else (current or {}).get("condition")) or ""
    matches = _safe_matches(condition, _earlier_rules(rule), _projects_shown(person(request)))
    page = (
        "masking/rule_form.html",
        {
            "rule": rule,
            "matches": matches[:MATCHES_SHOWN],
            "match_count": len(matches),
            "check_url": reverse("policy:condition-check"),
        },
    )
    return item_form_page(
        request,
        form,
        page,
        live=live,
        section="rules",
        replacing=rule.title if rule else None,
        heading=lambda item: f"Save rule {item['title']!r}",
        back=reverse("policy:rules"),
    )


def _safe_matches(condition: str, earlier: list[RuleView], projects: set[str] | None) -> list[Any]:
    try:
        check_condition(condition)
    except ConditionError:
        return []
    return columns_matching(condition, earlier_rules=earlier, projects=projects) if condition.strip() else []


def _projects_shown(user: User, project: str = "") -> set[str] | None:
    """Whose columns a preview lists: `project`'s, or those of every project the person
    administers (None: all, for someone who administers policy everywhere). Other projects'
    column names are not the person's to browse, as on the Checks page."""
    mine = columns_scope(user)
    if not project:
        return mine
    return {project} if mine is None or project in mine else set()


@policy_admin_required
@require_POST
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(MaskingRule, pk=pk)
    return review(
        request,
        remove_item(export_document(), "rules", rule.title),
        heading=f"Delete rule {rule.title!r}",
        back=reverse("policy:rules"),
    )


@policy_admin_required
@require_POST
def rule_move(request: HttpRequest, pk: int, direction: str) -> HttpResponse:
    """Move a rule one place up or down: first match wins, so its place is policy."""
    rule = get_object_or_404(MaskingRule, pk=pk)
    if direction not in ("up", "down"):
        raise Http404("Move up or down.")
    return review(
        request,
        move_item(export_document(), "rules", rule.title, -1 if direction == "up" else 1),
        heading=f"Move rule {rule.title!r} {direction}",
        back=reverse("policy:rules"),
        message=f"Move rule {rule.title!r} {direction}",
    )


@never_cache
@policy_admin_required
@require_POST
def condition_check(request: HttpRequest) -> JsonResponse:
    """Validate a condition as it is typed and list the catalog columns it matches right now."""
    condition = request.POST.get("condition", "")
    kind = request.POST.get("kind", "rule")
    try:
        check_condition(condition)
    except ConditionError as exc:
        return JsonResponse({"ok": False, "error": str(exc)})
    if kind == "rule" and not condition.strip():
        return JsonResponse({"ok": False, "error": "is required (a rule that matches everything is `true`)"})
    rule_id = request.POST.get("rule", "")
    rule = MaskingRule.objects.filter(pk=int(rule_id)).first() if rule_id.isdigit() else None
    earlier = _earlier_rules(rule) if kind == "rule" else []
    project = request.POST.get("project", "")
    shown = _projects_shown(person(request), project)
    if shown == set() and project:
        return JsonResponse({"ok": False, "error": f"project: you do not administer {project!r}"}, status=403)
    matches = columns_matching(condition or "true", earlier_rules=earlier, projects=shown)
    return JsonResponse(
        {
            "ok": True,
            "count": len(matches),
            "taken": sum(1 for m in matches if m.taken_by),
            "matches": [m.as_json() for m in matches[:MATCHES_SHOWN]],
        }
    )


# --- Exemptions --------------------------------------------------------------------------------


@policy_admin_required
def exemptions(request: HttpRequest) -> HttpResponse:
    user = person(request)
    mine = administered_projects(user)
    rows = (
        readable_items(Exemption.objects.filter(kind=ExemptionKind.EXEMPTION, revoked_at__isnull=True), user)
        .select_related("project")
        .prefetch_related("users", "groups", "roles", "service_accounts")
        .order_by("project__key", "reason")
    )
    return render(request, "masking/exemptions.html", {"rows": rows, "mine": mine})


@policy_admin_required
def exemption_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    user = person(request)
    exemption = (
        get_object_or_404(
            readable_items(Exemption.objects.all(), user),
            pk=pk,
            kind=ExemptionKind.EXEMPTION,
            revoked_at__isnull=True,
        )
        if pk
        else None
    )
    live = export_document()
    key = f"{exemption.project.key}: {exemption.reason.strip()}" if exemption else None
    current = find_item(live, "exemptions", key) if key else None
    projects = sorted(administered_projects(user) | ({exemption.project.key} if exemption else set()))
    initial = dict(current) if current else {}
    if current and current["expires_at"]:
        initial["expires_at"] = exemption.expires_at if exemption else None
    form = ExemptionForm(request.POST or None, initial=initial, projects=projects)
    if exemption is not None:
        form.fields["project"].disabled = True
        form.fields["reason"].help_text = "Changing the reason replaces the exemption with a new one"
    # Unbound, the project shown is the one the select starts on (its first choice): the preview
    # is for that project, as the live check (which reads the select) is.
    unbound_project = projects[0] if projects else ""
    project = (
        exemption.project.key
        if exemption
        else (form.data.get("project", "") if form.is_bound else unbound_project)
    )
    condition = (form.data.get("condition") if form.is_bound else initial.get("condition")) or "true"
    matches = _safe_matches(condition, [], _projects_shown(user, project)) if project else []
    page = (
        "masking/exemption_form.html",
        {
            "exemption": exemption,
            "check_url": reverse("policy:condition-check"),
            "matches": matches[:MATCHES_SHOWN],
            "match_count": len(matches),
        },
    )
    return item_form_page(
        request,
        form,
        page,
        live=live,
        section="exemptions",
        replacing=key,
        heading=lambda item: f"Save exemption in {item['project']}",
        back=reverse("policy:exemptions"),
    )


@policy_admin_required
@require_POST
def exemption_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    exemption = get_object_or_404(
        readable_items(Exemption.objects.all(), person(request)),
        pk=pk,
        kind=ExemptionKind.EXEMPTION,
        revoked_at__isnull=True,
    )
    return review(
        request,
        remove_item(export_document(), "exemptions", f"{exemption.project.key}: {exemption.reason.strip()}"),
        heading=f"Revoke exemption #{exemption.pk} in {exemption.project.key}",
        back=reverse("policy:exemptions"),
    )
