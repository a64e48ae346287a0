"""Request settings pages: what each project's requests must name as their ticket.

For a project's policy administrators (`administer_policy`), as the access review settings are.
Thin: the form checks what was typed, `ticket_rules_save` writes and records the change in the
audit log; a project the person does not administer is a 403 saying why.
"""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from audit.models import Channel
from identity.models import User
from jitaccess.forms import TicketRulesForm
from jitaccess.jira import jira_configured
from jitaccess.models import ProjectAccessSettings
from jitaccess.reviews.selectors import administers, projects_administered_by
from jitaccess.selectors.scopes import access_settings
from jitaccess.selectors.tickets import ticket_hint
from jitaccess.services.access_settings import ticket_rules_save
from masking.models import Project
from masking.policy.review import forbidden
from masking.services.policy import PolicyError


@login_required
def request_settings_list(request: HttpRequest) -> HttpResponse:
    """The projects the person administers, with what their requests' tickets must be."""
    projects = list(projects_administered_by(cast(User, request.user)))
    saved = {s.project_id: s for s in ProjectAccessSettings.objects.filter(project__in=projects)}
    rows = []
    for project in projects:
        rules = saved.get(project.pk) or ProjectAccessSettings(project=project)
        rows.append((project, rules, ticket_hint(rules)))
    return render(
        request, "jitaccess/request_settings_list.html", {"rows": rows, "jira_configured": jira_configured()}
    )


@login_required
def request_settings(request: HttpRequest, key: str) -> HttpResponse:
    user = cast(User, request.user)
    project = get_object_or_404(Project, key=key)
    if not administers(user, project):
        return forbidden(request, "Request settings are for the project's policy administrators.")
    form = TicketRulesForm.for_rules(access_settings(project))
    status = 200
    if request.method == "POST":
        form = TicketRulesForm(request.POST)
        if form.is_valid():
            try:
                ticket_rules_save(project=project, actor=user, channel=Channel.WEB, **form.cleaned_data)
            except PolicyError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, f"Request settings of {project.key} saved.")
                return redirect("jitaccess:request-settings", key=project.key)
        status = 400
    return render(
        request,
        "jitaccess/request_settings.html",
        {"project": project, "form": form, "jira_configured": jira_configured()},
        status=status,
    )
