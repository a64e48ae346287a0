"""Web pages for policy admins."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from guardian.shortcuts import get_objects_for_user

from masking.models import Column, Project


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    """Browse columns of the projects the person may administer or audit, with suggestions."""
    projects = get_objects_for_user(
        request.user,
        ["masking.administer_policy", "masking.view_audit", "masking.request_unmask"],
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
    return render(request, "masking/catalog.html", {"page": page, "query": query})
