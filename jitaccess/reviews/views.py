"""Access review pages: the person's list, a campaign, answering an item, the project settings.

Thin: reads through `selectors` (a campaign or item the person may not see is a 404), writes through
one service call. An item that is visible but not the person's to answer is a 403 saying why (and
the attempt is in the audit log); a bad answer is a 400 naming the field.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.access import audit_scope_for
from audit.models import Channel
from identity.services import actor_for
from jitaccess.formatting import moment_label
from jitaccess.reviews import selectors
from jitaccess.reviews.forms import AnswerForm, ReviewSettingsForm
from jitaccess.reviews.models import AccessReviewCampaign, AccessReviewItem, CampaignState
from jitaccess.reviews.services import (
    AlreadyAnswered,
    NotYourItem,
    ReviewError,
    campaign_open,
    review_item_answer,
    review_settings_save,
)
from jitaccess.views import redirect_back
from masking.models import Project
from masking.policy.review import forbidden, person


@login_required
def review_list(request: HttpRequest) -> HttpResponse:
    """What waits for the person's answer, the campaigns they may see, and (for policy
    administrators) their projects' schedules."""
    user = person(request)
    waiting = selectors.items_waiting_for(user)
    campaigns = list(selectors.campaigns_visible_to(user).order_by("-opened_at")[:30])
    return render(
        request,
        "jitaccess/reviews/list.html",
        {
            "waiting": [(item, _usage(item, item.campaign.unused_days)) for item in waiting],
            "campaigns": campaigns,
            "administers": selectors.projects_administered_by(user).exists(),
        },
    )


@login_required
def review_campaign(request: HttpRequest, pk: int) -> HttpResponse:
    user = person(request)
    try:
        campaign = selectors.campaign_for(user, pk)
    except AccessReviewCampaign.DoesNotExist:
        raise Http404("No such access review.") from None
    return _render_campaign(request, campaign)


def _render_campaign(
    request: HttpRequest, campaign: AccessReviewCampaign, *, error: str = "", status: int = 200
) -> HttpResponse:
    user = person(request)
    items = list(selectors.items_visible_in(campaign, user))
    scope = audit_scope_for(user)
    return render(
        request,
        "jitaccess/reviews/campaign.html",
        {
            "campaign": campaign,
            "rows": [
                (
                    item,
                    _usage(item, campaign.unused_days),
                    item.is_open and not selectors.answer_refusal(item, user),
                )
                for item in items
            ],
            "counts": selectors.open_counts(campaign),
            "evidence": scope is not None and scope.allows_project(campaign.project.key),
            "administers": selectors.administers(user, campaign.project),
            "error": error,
            "is_open": campaign.state == CampaignState.OPEN,
        },
        status=status,
    )


@login_required
@require_POST
def review_item_answer_view(request: HttpRequest, pk: int) -> HttpResponse:
    user = person(request)
    try:
        item = selectors.item_for(user, pk)
    except AccessReviewItem.DoesNotExist:
        raise Http404("No such review item.") from None
    form = AnswerForm(request.POST)
    if not form.is_valid():
        field, problems = next(iter(form.errors.as_data().items()))
        message = " ".join(m for problem in problems for m in problem.messages)
        return _render_campaign(request, item.campaign, error=f"{field}: {message}", status=400)
    try:
        answer = review_item_answer(
            item_id=item.pk,
            user=user,
            decision=form.cleaned_data["decision"],
            note=form.cleaned_data["note"],
            channel=Channel.WEB,
        )
    except NotYourItem as refusal:
        return forbidden(request, str(refusal))
    except AlreadyAnswered as stale:
        messages.info(request, str(stale))
    except ReviewError as error:
        return _render_campaign(request, item.campaign, error=str(error), status=400)
    else:
        done = answer.item
        if not answer.repeated:
            messages.success(
                request, f"{done.get_state_display()}: {done.member_label}, {done.access_label}."
            )
    return redirect_back(request, reverse("jitaccess:access-review", kwargs={"pk": item.campaign_id}))


@login_required
def review_settings_list(request: HttpRequest) -> HttpResponse:
    """The projects the person administers, with their review schedule."""
    user = person(request)
    projects = list(selectors.projects_administered_by(user))
    rows = [(project, selectors.review_settings_for(project)) for project in projects]
    return render(request, "jitaccess/reviews/settings_list.html", {"rows": rows})


@login_required
def review_settings(request: HttpRequest, key: str) -> HttpResponse:
    user = person(request)
    project = get_object_or_404(Project, key=key)
    if not selectors.administers(user, project):
        return forbidden(request, "Access review settings are for the project's policy administrators.")
    settings = selectors.review_settings_for(project)
    form = ReviewSettingsForm.for_settings(settings)
    status = 200
    if request.method == "POST":
        form = ReviewSettingsForm(request.POST)
        if form.is_valid():
            try:
                review_settings_save(
                    project=project, changed_by=user, channel=Channel.WEB, **form.cleaned_data
                )
            except ReviewError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, f"Access review settings of {project.key} saved.")
                return redirect("jitaccess:access-review-settings", key=project.key)
        status = 400
    return render(
        request,
        "jitaccess/reviews/settings.html",
        {"project": project, "form": form, "settings": settings},
        status=status,
    )


@login_required
@require_POST
def review_open_now(request: HttpRequest, key: str) -> HttpResponse:
    """Open a campaign now, whatever the schedule (it then moves on from today)."""
    user = person(request)
    project = get_object_or_404(Project, key=key)
    if not selectors.administers(user, project):
        return forbidden(request, "Opening an access review is for the project's policy administrators.")
    try:
        campaign = campaign_open(project=project, actor=actor_for(user), channel=Channel.WEB)
    except ReviewError as error:
        messages.error(request, f"No review opened: {error.message}.")
        return redirect("jitaccess:access-review-settings", key=project.key)
    messages.success(request, f"{campaign.ref} opened: {campaign.items.count()} item(s) to review.")
    return redirect("jitaccess:access-review", pk=campaign.pk)


def _usage(item: AccessReviewItem, unused_days: int) -> str:
    """What the decision records say of the item's use (the DM says the same in Slack's words)."""
    if not item.usage_tracked:
        return "Break-glass only: its use is not tracked here."
    if item.last_unmask_at is not None:
        return f"Last unmask {moment_label(item.last_unmask_at)}."
    if item.proposed_removal:
        return f"No unmask recorded in {unused_days} days: proposed for removal."
    return f"No unmask recorded in the last {unused_days} days." if unused_days else "Use not checked."
