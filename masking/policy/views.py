"""Policy admin pages: review and confirm, versions, pending changes, policy as code, settings.

Every edit, whichever page it starts on, ends here: `review` diffs the proposed document against
the live policy and shows it with a message box; `review_confirm` submits it through
`policy_submit` (applied as one version, or held for a second person). The proposed document
travels between the two signed, so the diff confirmed is the diff reviewed; if the policy moved in
between, the review is shown again with the new diff.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit.models import Channel
from identity.models import User
from identity.services import actor_for
from masking.checks import coverage, default_min_level, drift
from masking.models import ChangeState, Column, PolicyChange, PolicyVersion, ProjectPolicySettings
from masking.policy.access import (
    administered_projects,
    administers_any,
    columns_scope,
    may_administer,
    needs_second_person,
)
from masking.policy.diff import diff_documents, plan_against_live
from masking.policy.document import (
    DocumentError,
    dump_yaml,
    export_document,
    load_source,
    parse_document,
    sections,
)
from masking.policy.edits import upsert_item
from masking.policy.forms import (
    DecisionNoteForm,
    PolicyItemForm,
    PolicySourceForm,
    ProjectSettingsForm,
    ReviewForm,
)
from masking.policy.scope import confined_document, readable_change, scoped_document
from masking.policy.unclassified import unclassified_answers, veil_default_text
from masking.selectors import discovery_throttles, load_policy, principal_collisions, read_epochs
from masking.services.policy_changes import (
    ChangeError,
    NotAllowed,
    StalePolicy,
    policy_change_approve,
    policy_change_reject,
    policy_submit,
)
from masking.services.versions import current_version

REVIEW_SALT = "veil.policy.review"
REVIEW_MAX_AGE_S = 24 * 3600


def person(request: HttpRequest) -> User:
    return cast(User, request.user)


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "masking/forbidden.html", {"reason": reason}, status=403)


def policy_admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in and administering policy in at least one project (each change is checked again,
    for what it touches, when it is submitted)."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not administers_any(person(request)):
            return forbidden(request, "You do not administer masking policy in any project.")
        return view(request, *args, **kwargs)

    return wrapped


def can_edit_global(user: User) -> bool:
    return may_administer(user, (), is_global=True)


# --- Review and confirm ------------------------------------------------------------------------


def review(
    request: HttpRequest,
    document: dict[str, Any],
    *,
    heading: str,
    back: str,
    rollback_of: int | None = None,
    form: forms.Form | None = None,
    form_page: tuple[str, dict[str, Any]] | None = None,
    notice: str = "",
    message: str = "",
    source_file: bool = False,
) -> HttpResponse:
    """Show the diff of `document` against the live policy and ask for a message to confirm.

    An invalid document goes back to the form it came from, the error next to the field it is
    about (`rules[2].condition` -> `condition`), or, without a form, to `back` with a message.
    Errors are worded for the page (`explain_error`), except for a policy file the admin wrote
    (`source_file`), whose errors keep the document paths that point into it.
    """
    live = export_document()
    try:
        parsed = parse_document(document)
        plan = plan_against_live(parsed)
    except DocumentError as error:
        if source_file:
            messages.error(request, str(error))
            return redirect(back)
        explained = explain_error(error, document, live)
        if form is not None and form_page is not None:
            field = explained.field if explained.field in form.fields else None
            form.add_error(field, explained.message if field else explained.sentence)
            return render(request, form_page[0], {**form_page[1], "form": form})
        messages.error(request, explained.sentence)
        return redirect(back)
    payload = signing.dumps(
        {
            "document": parsed,
            "base": current_version(),
            "rollback_of": rollback_of,
            "back": back,
            "heading": heading,
            "source_file": source_file,
        },
        salt=REVIEW_SALT,
        compress=True,
    )
    review_form = ReviewForm(initial={"payload": payload, "message": message})
    if request.method == "POST" and message:
        review_form = ReviewForm({"payload": payload, "message": message})
    return render(
        request,
        "masking/review.html",
        {
            "heading": heading,
            "plan": plan,
            "back": back,
            "review_form": review_form,
            "notice": notice,
            "yaml_diff": yaml_diff(live, {**live, **parsed}),
            "held": plan.has_changes and needs_second_person(plan.projects, is_global=plan.is_global),
        },
    )


# How the pages name an item of each section, and the form field that names it.
ITEM_NAMES: dict[str, tuple[str, str]] = {
    "projects": ("project", "key"),
    "semantic_types": ("semantic type", "key"),
    "roles": ("role", "name"),
    "rules": ("rule", "title"),
    "exemptions": ("exemption", "reason"),
    "approval_policies": ("approval policy", "title"),
}
_ITEM_PATH = re.compile(r"(?P<section>\w+)\[(?P<index>\d+)\](?:\.(?P<field>\w+))?")


@dataclass(frozen=True)
class ExplainedError:
    """A refused document as an admin at a page reads it: no `rules[2].semantic_type` paths.

    `field` is the form field it belongs next to (None: the form as a whole); `message` reads
    well next to that field, `sentence` on its own (a banner after a delete or a move).
    """

    field: str | None
    message: str
    context: str = ""

    @property
    def sentence(self) -> str:
        return f"{self.context}: {self.message}" if self.context else self.message


def explain_error(
    error: DocumentError, document: Mapping[str, Any], live: Mapping[str, list[dict[str, Any]]]
) -> ExplainedError:
    """Word a `DocumentError` for the policy pages, which edit the live document one item at a time.

    The document paths in the shared messages (`duplicate 'Phones' (also rules[2])`, `rules[0].
    semantic_type: unknown semantic type 'email'`) point into a file; on a page there is no file,
    so the item is named instead. A name the live policy defines but the document no longer does
    was deleted or renamed by this change: the message names the item still using it. The YAML
    API and `manage.py policy` keep the shared messages; so does the policy-as-code page.
    """
    match = _ITEM_PATH.fullmatch(error.path)
    known = {s.name: s for s in sections()}
    if match is None or match["section"] not in known:
        title = error.path.replace("_", " ").capitalize()
        return ExplainedError(None, error.message, title if error.path in known else error.path)
    name, index, field = match["section"], int(match["index"]), match["field"]
    sec = known[name]
    noun, key_field = ITEM_NAMES.get(name, (name.replace("_", " "), ""))
    try:
        item = document[name][index]
        key = sec.key(item)
    except (KeyError, IndexError, TypeError):
        return ExplainedError(field, error.message, str(error.path))
    if error.reason == "duplicate":
        return ExplainedError(key_field or None, _duplicate(name, noun, key, item))
    ref = (
        next((r for r in sec.references(item) if r.field == field), None)
        if error.reason == "unknown"
        else None
    )
    if ref is not None:
        kind, missing = ref.kind.replace("_", " "), error.name
        if any(
            p.provides == ref.kind and missing in map(p.key, live.get(p.name, [])) for p in known.values()
        ):
            used_by = f"is used by {noun} {key!r}; delete or change that {noun} first."
            return ExplainedError(None, f"{kind.capitalize()} {missing!r} {used_by}")
        return ExplainedError(field, f"There is no {kind} {missing!r}.")
    context = f"{noun.capitalize()} {key!r}" + (f", {field}" if field else "")
    return ExplainedError(field, error.message, context)


def _duplicate(section: str, noun: str, key: str, item: Mapping[str, Any]) -> str:
    if section == "exemptions":
        return f"Project {item['project']!r} already has an exemption with this reason; make it specific."
    if section == "approval_policies":
        return f"Project {item['project']!r} already has an approval policy titled {item['title']!r}."
    if section == "rules":
        return f"A rule titled {key!r} already exists."
    if section == "semantic_types":
        return f"A semantic type with the key {key!r} already exists."
    return f"There is already a {noun} {key!r}."


def item_form_page(
    request: HttpRequest,
    form: PolicyItemForm,
    page: tuple[str, dict[str, Any]],
    *,
    live: dict[str, Any],
    section: str,
    replacing: str | None,
    heading: Callable[[dict[str, Any]], str],
    back: str,
) -> HttpResponse:
    """The page of one item's form (`page`: template and context). A valid POST saves the item
    into the live document (in place of the item keyed `replacing`) and sends that to review,
    which brings a refused document back to this page with the error next to its field."""
    if request.method == "POST" and form.is_valid():
        item = form.item()
        return review(
            request,
            upsert_item(live, section, item, replacing=replacing),
            heading=heading(item),
            back=back,
            form=form,
            form_page=page,
        )
    return render(request, page[0], {**page[1], "form": form})


@policy_admin_required
@require_POST
def review_confirm(request: HttpRequest) -> HttpResponse:
    """Submit a reviewed change: applied as one version, or held for a second person."""
    form = ReviewForm(request.POST)
    try:
        payload = signing.loads(request.POST.get("payload", ""), salt=REVIEW_SALT, max_age=REVIEW_MAX_AGE_S)
    except signing.BadSignature:
        return HttpResponseBadRequest("This review expired or was altered; start the change again.")
    again = {
        "heading": payload["heading"],
        "back": payload["back"],
        "rollback_of": payload["rollback_of"],
        "source_file": payload.get("source_file", False),
    }
    if not form.is_valid():
        messages.error(request, "Say what the change is for.")
        return review(request, payload["document"], **again)
    user = person(request)
    try:
        submission = policy_submit(
            document=payload["document"],
            message=form.cleaned_data["message"],
            actor=actor_for(user),
            channel=Channel.WEB,
            author=user,
            base_version=payload["base"],
            rollback_of=payload["rollback_of"],
        )
    except StalePolicy as stale:
        if _already_live(payload["document"]):  # confirmed twice (back button, double click)
            messages.info(
                request, f"Nothing to apply: this change is already in policy version {current_version()}."
            )
            return redirect(payload["back"])
        notice = f"The policy changed while you reviewed ({stale}). Here is the diff against it now."
        return review(
            request, payload["document"], notice=notice, message=form.cleaned_data["message"], **again
        )
    except DocumentError as error:
        if again["source_file"]:
            messages.error(request, str(error))
        else:
            messages.error(request, explain_error(error, payload["document"], export_document()).sentence)
        return redirect(payload["back"])
    except NotAllowed as refusal:
        return forbidden(request, str(refusal))
    if submission.status == "pending" and submission.change is not None:
        messages.warning(
            request,
            f"Change #{submission.change.pk} waits for a second person's approval; "
            "it has no effect until then.",
        )
        return redirect("policy:change", pk=submission.change.pk)
    if submission.status == "applied" and submission.version is not None:
        messages.success(request, f"Saved as policy version {submission.version.number}.")
    else:
        messages.info(request, "Nothing changed.")
    return redirect(payload["back"])


def _already_live(document: dict[str, Any]) -> bool:
    try:
        return not plan_against_live(document).has_changes
    except DocumentError:
        return False


def yaml_diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A unified diff of the two documents as YAML, for readers who prefer the file view."""
    lines = difflib.unified_diff(
        dump_yaml(before).splitlines(), dump_yaml(after).splitlines(), "before", "after", lineterm="", n=2
    )
    return "\n".join(list(lines)[2:])


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
