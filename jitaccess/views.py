"""Web pages for engineers and approvers."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from guardian.shortcuts import get_objects_for_user

from masking.models import Project


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: what the signed-in person can do, per project."""
    perms = {
        "request": "masking.request_unmask",
        "approve": "masking.approve_request",
        "administer": "masking.administer_policy",
        "audit": "masking.view_audit",
    }
    projects = {
        key: get_objects_for_user(request.user, perm, klass=Project, accept_global_perms=True)
        for key, perm in perms.items()
    }
    return render(request, "jitaccess/home.html", {"projects": projects})
