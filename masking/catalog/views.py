"""Web pages for policy admins."""

from __future__ import annotations

from typing import cast
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from guardian.shortcuts import get_objects_for_user

from audit.models import Channel
from identity.models import User
from identity.services import actor_for
from masking.models import ClassificationLevel, Column, Project
from masking.permissions import ADMINISTER_POLICY, REQUEST_UNMASK, VIEW_AUDIT
from masking.policy.access import administered_projects, may_administer
from masking.policy.review import forbidden
from masking.services.catalog import column_classify


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    """Browse columns of the projects the person may administer or audit, with suggestions.

    A policy administrator of a column's project may confirm the suggested level of an
    unclassified column, or choose its level (POST, `confirm_suggestion`). Columns only seen in
    decision requests (`discovered_by_decision`) are not offered: the engine does not know them
    until a catalog push registers them, so a level would change nothing."""
    if request.method == "POST":
        return confirm_suggestion(request)
    projects = get_objects_for_user(
        request.user,
        [ADMINISTER_POLICY, VIEW_AUDIT, REQUEST_UNMASK],
        klass=Project,
        any_perm=True,
        accept_global_perms=True,
    )
    columns = (
        Column.objects.filter(table__schema__database__project__in=projects)
        .select_related(
            "table__schema__database__instance", "table__schema__database__project", "semantic_type"
        )
        .order_by(
            "table__schema__database__instance__key",
            "table__schema__database__name",
            "table__name",
            "position",
        )
    )
    query = request.GET.get("q", "").strip()
    if query:
        columns = columns.filter(
            Q(name__icontains=query)
            | Q(table__name__icontains=query)
            | Q(table__schema__database__name__icontains=query)
            | Q(table__schema__database__instance__key__icontains=query)
        )
    page = Paginator(columns, 100).get_page(request.GET.get("page"))
    user = cast(User, request.user)
    return render(
        request,
        "masking/catalog.html",
        {
            "page": page,
            "query": query,
            "administered": administered_projects(user),
            "levels": ClassificationLevel.choices,
        },
    )


def confirm_suggestion(request: HttpRequest) -> HttpResponse:
    """Apply the level suggested for an unclassified column, or the level chosen from the list
    (`choose=1`), as its project's policy administrator.

    The form carries the level the page showed: if the suggestion has changed since, nothing is
    written and the page says so (the person confirms what they saw, not what is there now).
    """
    user = cast(User, request.user)
    column_id = request.POST.get("column", "")
    column = get_object_or_404(
        Column.objects.select_related(
            "table__schema__database__instance", "table__schema__database__project"
        ),
        pk=int(column_id) if column_id.isdigit() else 0,
    )
    project = column.table.schema.database.project
    if not may_administer(user, [project.key], is_global=False):
        reason = f"Only a policy administrator of project {project.key!r} can classify its columns."
        return forbidden(request, reason)
    label = str(column)
    shown = request.POST.get("level", "")
    chosen = request.POST.get("choose") == "1"  # a level picked from the list, not the suggestion
    if chosen and shown not in {str(level) for level in ClassificationLevel.values}:
        messages.error(request, f"Choose a classification level for {label}. Nothing changed.")
    elif column.classification_level is not None:
        messages.info(
            request,
            f"{label} is already classified: {column.get_classification_level_display()}. Nothing changed.",
        )
    elif column.discovered_by_decision:
        messages.error(
            request,
            f"{label} was only seen in a query: it is not in the catalog, so decisions treat it as an "
            "unknown column (masked in full) whatever its level. Register it by pushing the catalog, "
            "then classify it. Nothing changed.",
        )
    elif chosen:
        column_classify(
            column=column,
            level=int(shown),
            actor=actor_for(user),
            channel=Channel.WEB,
            detail={"source": "chosen", "suggested_category": column.suggested_category},
        )
        messages.success(request, f"{label} classified as {column.get_classification_level_display()}.")
    elif column.suggested_level is None or shown != str(column.suggested_level):
        messages.error(
            request, f"The suggestion for {label} has changed since the page was shown. Nothing changed."
        )
    else:
        column_classify(
            column=column,
            level=column.suggested_level,
            actor=actor_for(user),
            channel=Channel.WEB,
            detail={"source": "suggestion", "suggested_category": column.suggested_category},
        )
        messages.success(request, f"{label} classified as {column.get_classification_level_display()}.")
    back = {k: v for k in ("q", "page") if (v := request.POST.get(k, "").strip())}
    return redirect(reverse("masking:catalog") + (f"?{urlencode(back)}" if back else ""))
