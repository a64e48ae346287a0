"""Policy admin pages: overview, checks, versions, pending changes, policy as code, settings.

Every edit these pages start ends in the review flow (`masking.policy.review`)."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit.models import Channel
from masking.checks import coverage, default_min_level, drift
from masking.models import ChangeState, Column, PolicyChange, PolicyVersion, ProjectPolicySettings
from masking.policy.access import (
    administered_projects,
    columns_scope,
    may_administer,
)
from masking.policy.diff import diff_documents
from masking.policy.document import (
    DocumentError,
    dump_yaml,
    export_document,
    load_source,
)
from masking.policy.forms import (
    DecisionNoteForm,
    PolicySourceForm,
    ProjectSettingsForm,
)
from masking.policy.review import (
    can_edit_global,
    forbidden,
    person,
    policy_admin_required,
    review,
    yaml_diff,
)
from masking.policy.scope import confined_document, readable_change, scoped_document
from masking.policy.unclassified import unclassified_answers, veil_default_text
from masking.selectors import discovery_throttles, load_policy, principal_collisions, read_epochs
from masking.services.policy_changes import (
    ChangeError,
    NotAllowed,
    policy_change_approve,
    policy_change_reject,
)
from masking.services.versions import current_version

# --- Overview, versions, changes -------------------------------------------------------------


@policy_admin_required
def overview(request: HttpRequest) -> HttpResponse:
    user = person(request)
    return render(
        request,
        "masking/overview.html",
        {
            "version": PolicyVersion.objects.first(),
            "pending": PolicyChange.objects.filter(state=ChangeState.PENDING).count(),
            "guarded": list(
                ProjectPolicySettings.objects.filter(two_person_rule=True).values_list(
                    "project__key", flat=True
                )
            ),
            "projects": sorted(administered_projects(user)),
            "can_edit_global": can_edit_global(user),
        },
    )


@policy_admin_required
def checks(request: HttpRequest) -> HttpResponse:
    """Coverage and drift of the live policy, as `manage.py masking check` / `drift` and the API
    gates report them, limited to the projects the person administers."""
    mine = administered_projects(person(request))
    policy = load_policy(read_epochs().policy)
    now = timezone.now().timestamp()
    min_level = default_min_level(policy)
    report = coverage(policy, min_level=min_level, now=now)
    differing = [d for d in drift(policy, now=now) if any(e.column.project in mine for e in d.entries)]
    return render(
        request,
        "masking/checks.html",
        {
            "min_level": min_level,
            "uncovered": [f for f in report.uncovered if f.column.project in mine],
            "unreviewed": [f for f in report.unreviewed if f.column.project in mine],
            "unclassified_in_clear": [
                f for f in report.unclassified if f.column.project in mine and f.decision.unmask
            ],
            "unclassified_masked": sum(
                1 for f in report.unclassified if f.column.project in mine and not f.decision.unmask
            ),
            "discovered": discovered_columns(mine),
            "throttled": discovery_throttles(
                mine, since=timezone.now() - timedelta(seconds=settings.CATALOG_DISCOVERY_WINDOW_S)
            ),
            "drift": differing,
            "collisions": principal_collisions() if request.user.has_perm("identity.view_user") else None,
        },
    )


def discovered_columns(projects: set[str]) -> list[Column]:
    """Columns decision requests named that no catalog push or sync lists (`discovered_by_decision`).

    The decision engine does not know them: it answers `unknown_column` and masks them whatever
    their level or suggestion says, so the checks above (which ask the engine) never see them. A
    catalog push or sync registers them."""
    return list(
        Column.objects.filter(discovered_by_decision=True, table__schema__database__project__key__in=projects)
        .select_related("table__schema__database__instance", "table__schema__database__project")
        .order_by(
            "table__schema__database__instance__key",
            "table__schema__database__name",
            "table__schema__name",
            "table__name",
            "name",
        )
    )


@policy_admin_required
def versions(request: HttpRequest) -> HttpResponse:
    rows = PolicyVersion.objects.defer("snapshot")[:200]
    return render(request, "masking/versions.html", {"versions": rows})


@policy_admin_required
def version_detail(request: HttpRequest, number: int) -> HttpResponse:
    """One version: its diff and the whole policy at it, as far as the person may read them (for
    a single-project admin the diff is recomputed between the scoped snapshots)."""
    version = get_object_or_404(PolicyVersion, number=number)
    scope = columns_scope(person(request))
    snapshot = scoped_document(version.snapshot, scope)
    changes = version.changes
    if scope is not None:
        previous = PolicyVersion.objects.filter(number__lt=number).order_by("-number").first()
        before = scoped_document(previous.snapshot, scope) if previous else {}
        changes = [c.as_json() for c in diff_documents(before, snapshot).changes]
    return render(
        request,
        "masking/version_detail.html",
        {"version": version, "changes": changes, "yaml": dump_yaml(snapshot), "latest": current_version()},
    )


@policy_admin_required
def version_compare(request: HttpRequest) -> HttpResponse:
    """Two versions' diff. Without `a` and `b`, the latest version against the one before it (and
    without `a` alone, `b` against the one before); a number that is not a version is refused with
    a message naming the parameter (400), never replaced by another version."""
    numbers = list(PolicyVersion.objects.values_list("number", flat=True))  # newest first
    errors: list[str] = []
    chosen: dict[str, int | None] = {}
    for name in ("a", "b"):
        raw = request.GET.get(name, "").strip()
        chosen[name] = None
        if not raw:
            continue
        if not re.fullmatch(r"[vV]?\d{1,18}", raw):
            errors.append(f"Parameter {name}={raw!r} is not a version number.")
            continue
        chosen[name] = int(raw.lstrip("vV"))
        if chosen[name] not in numbers:
            errors.append(
                f"Parameter {name}={raw!r}: there is no version {chosen[name]} ({_known_versions(numbers)})."
            )
    a, b = chosen["a"], chosen["b"]
    if not errors:
        if b is None and numbers:
            b = numbers[0]
        if a is None and b is not None:
            a = next((n for n in numbers if n < b), None)
    older = PolicyVersion.objects.filter(number=a).first() if a is not None and not errors else None
    newer = PolicyVersion.objects.filter(number=b).first() if b is not None and not errors else None
    scope = columns_scope(person(request))
    before = scoped_document(older.snapshot, scope) if older else {}
    after = scoped_document(newer.snapshot, scope) if newer else {}
    plan = diff_documents(before, after) if older and newer else None
    return render(
        request,
        "masking/compare.html",
        {
            "numbers": numbers,
            "a": a,
            "b": b,
            "plan": plan,
            "errors": errors,
            "yaml_diff": yaml_diff(before, after) if older and newer else "",
        },
        status=400 if errors else 200,
    )


def _known_versions(numbers: list[int]) -> str:
    if not numbers:
        return "there are no versions yet"
    if len(numbers) == 1:
        return f"the only version is {numbers[0]}"
    if numbers == list(range(numbers[0], numbers[-1] - 1, -1)):
        return f"versions are {numbers[-1]} to {numbers[0]}"
    return f"the latest is {numbers[0]}"


@policy_admin_required
@require_POST
def version_rollback(request: HttpRequest, number: int) -> HttpResponse:
    """Restoring a version is a new change: reviewed, confirmed and versioned like any other. A
    person restores the global items and their projects' items; other projects' stay as they are."""
    version = get_object_or_404(PolicyVersion, number=number)
    scope = columns_scope(person(request))
    return review(
        request,
        confined_document(scoped_document(version.snapshot, scope), scope, export_document()),
        heading=f"Roll back to version {number}",
        back=reverse("policy:versions"),
        rollback_of=number,
        message=f"Roll back to version {number}",
    )


@policy_admin_required
def changes(request: HttpRequest) -> HttpResponse:
    """Held and recent decided changes, those touching only projects the person administers."""
    scope = columns_scope(person(request))
    pending = PolicyChange.objects.filter(state=ChangeState.PENDING).order_by("created_at")
    decided = PolicyChange.objects.exclude(state=ChangeState.PENDING).select_related("decided_by", "version")
    return render(
        request,
        "masking/changes.html",
        {
            "pending": [c for c in pending if readable_change(c.projects, scope)],
            "decided": [c for c in decided[:500] if readable_change(c.projects, scope)][:50],
        },
    )


@policy_admin_required
def change_detail(request: HttpRequest, pk: int, note_form: DecisionNoteForm | None = None) -> HttpResponse:
    change = get_object_or_404(PolicyChange.objects.select_related("decided_by", "version"), pk=pk)
    user = person(request)
    if not readable_change(change.projects, columns_scope(user)):
        raise Http404("No such change among the projects you administer.")
    is_author = user.canonical_subject == change.author_subject
    pending = change.state == ChangeState.PENDING
    return render(
        request,
        "masking/change_detail.html",
        {
            "change": change,
            "is_author": is_author,
            "may_decide": pending
            and not is_author
            and may_administer(user, change.projects, is_global=change.is_global),
            "may_withdraw": pending and is_author,
            "note_form": note_form or DecisionNoteForm(),
        },
    )


@policy_admin_required
@require_POST
def change_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    """approve (the second person) or reject (with a note; the author withdrawing needs none)."""
    user = person(request)
    form = DecisionNoteForm(request.POST)
    if not form.is_valid():
        return change_detail(request, pk, note_form=form)
    try:
        if decision == "approve":
            change = policy_change_approve(change_id=pk, approver=user, channel=Channel.WEB)
        elif decision == "reject":
            change = policy_change_reject(
                change_id=pk, user=user, note=form.cleaned_data["note"], channel=Channel.WEB
            )
        else:
            return HttpResponseBadRequest("Unknown decision.")
    except NotAllowed as refusal:
        return forbidden(request, str(refusal))
    except ChangeError as error:
        messages.error(request, str(error))
        return redirect("policy:change", pk=pk)
    except PolicyChange.DoesNotExist:
        raise Http404("No such policy change.") from None
    if change.state == ChangeState.APPLIED and change.version is not None:
        messages.success(request, f"Change #{pk} approved and applied as version {change.version.number}.")
    elif change.state == ChangeState.SUPERSEDED:
        messages.error(
            request,
            f"Change #{pk} was not applied and is closed: {change.decision_note}. "
            "Its author can submit it again.",
        )
    else:
        messages.info(request, f"Change #{pk} {change.get_state_display().lower()}.")
    return redirect("policy:change", pk=pk)


# --- Policy as code and settings ---------------------------------------------------------------


@policy_admin_required
def code(request: HttpRequest) -> HttpResponse:
    """Plan and apply a policy file from the browser, the same way `manage.py policy` does. The
    file is planned against the projects the person administers (`confined_document`)."""
    form = PolicySourceForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            document = confined_document(
                load_source(form.cleaned_data["source"], form.cleaned_data["source_format"]),
                columns_scope(person(request)),
                export_document(),
            )
        except DocumentError as error:
            form.add_error("source", str(error))
        else:
            return review(
                request,
                document,
                heading="Apply a policy file",
                back=reverse("policy:code"),
                source_file=True,
            )
    return render(request, "masking/code.html", {"form": form})


@policy_admin_required
def export_yaml(request: HttpRequest) -> HttpResponse:
    """The live policy as a file: the global items and those of the projects the person administers."""
    document = scoped_document(export_document(), columns_scope(person(request)))
    response = HttpResponse(dump_yaml(document), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="veil-policy-v{current_version()}.yaml"'
    return response


@policy_admin_required
def settings_page(request: HttpRequest) -> HttpResponse:
    """The two-person rule and the default for unclassified columns of the projects the person
    administers; other projects' settings stay as they are in the document reviewed."""
    user = person(request)
    projects = sorted(administered_projects(user))
    live = export_document()
    current = {item["key"]: item for item in live["projects"]}
    form = ProjectSettingsForm(
        request.POST or None, projects=projects, live=current, veil_default=veil_default_text()
    )
    if request.method == "POST" and form.is_valid():
        wanted = {key: item for key, item in current.items() if key not in projects} | form.items()
        document = {**live, "projects": [wanted[key] for key in sorted(wanted)]}
        return review(request, document, heading="Project policy settings", back=reverse("policy:settings"))
    return render(
        request, "masking/settings.html", {"form": form, "unclassified": unclassified_answers(projects)}
    )
