"""Web pages for engineers, approvers and admins: thin views over `services` and `selectors`.
One module over 600 lines because the request pages (form, preview, detail, actions, extension,
break glass) share the scope, duration-limit, timeline and message helpers at its end; half of it
is those helpers, each a few lines.

Every request is read through `selectors`, so one the person may not see is a 404, never a 403.
Every write is one service call; its errors become something a person can read: a
`RequestError` next to the field it names, `NotAllowed` a 403 page saying why, and
`InvalidTransition` a message naming the request's current state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import get_objects_for_user

from audit.access import audit_scope_for
from audit.models import AuditEvent, Channel
from identity.models import User
from identity.selectors import role_names_of_user
from jitaccess import delivery
from jitaccess.demo import DEMO_TOKEN, demo_persona, demo_token_live, try_the_api
from jitaccess.errors import NotAllowed, RequestError
from jitaccess.events import BREAKGLASS_TIMELINE_LABELS, TIMELINE_LABELS
from jitaccess.formatting import directory_ending, duration_label, moment_label
from jitaccess.forms import (
    ApprovalPreviewForm,
    BreakGlassForm,
    DenyForm,
    EndGrantForm,
    ReviewForm,
    ScopeForm,
    UnmaskRequestForm,
)
from jitaccess.models import AccessRequest
from jitaccess.selectors.approval_preview import approval_preview
from jitaccess.selectors.approvers import (
    ApproverPools,
    can_approve,
    can_review_breakglass,
    can_revoke,
    eligible_approvers,
    end_refusal,
)
from jitaccess.selectors.column_access import column_access
from jitaccess.selectors.oncall import oncall_line
from jitaccess.selectors.requests import (
    approval_queue,
    columns_named,
    end_reason,
    end_reason_of,
    ended_by_directory,
    extensions_ending_with,
    grants_still_in_force_beside,
    inbox,
    live_extension_of,
    live_extensions,
    may_approve_somewhere,
    may_request_somewhere,
    request_for,
    requests_visible_to,
    unreviewed_breakglass,
)
from jitaccess.selectors.scopes import (
    DurationLimit,
    Scope,
    access_settings,
    duration_limit,
)
from jitaccess.selectors.stages import stage_progress
from jitaccess.services.breakglass import breakglass_review, breakglass_take
from jitaccess.services.grants import grant_end
from jitaccess.services.requests import request_approve, request_cancel, request_create, request_deny
from jitaccess.states import Action, InvalidTransition, State
from masking.models import Database, Project
from masking.permissions import ADMINISTER_POLICY, APPROVE_REQUEST, REQUEST_UNMASK, VIEW_AUDIT
from masking.policy.access import administers_any
from masking.policy.review import forbidden, person


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: what waits for the person, their live grants, and a card for each thing
    they can do (request, approve, administer policy, audit), none for what they cannot."""
    user = person(request)
    perms = {
        "request": REQUEST_UNMASK,
        "approve": APPROVE_REQUEST,
        "administer": ADMINISTER_POLICY,
        "audit": VIEW_AUDIT,
    }
    projects = {
        key: get_objects_for_user(user, perm, klass=Project, accept_global_perms=True)
        for key, perm in perms.items()
    }
    unreviewed, unreviewed_by_others = 0, 0
    if projects["administer"]:
        # The person's own break-glass grants wait for another administrator, not for them.
        taken_list = list(unreviewed_breakglass(user).filter(project__in=projects["administer"]))
        checker = _project_perms(user, taken_list)
        for taken in taken_list:
            if can_review_breakglass(taken, user, checker):
                unreviewed += 1
            else:
                unreviewed_by_others += 1
    # For operators (who may retry them in the admin): what the outbox gave up on.
    undelivered = delivery.failed_counts() if user.has_perm("jitaccess.change_notification") else {}
    pending_approvals = len(approval_queue(user))
    context = {
        "projects": projects,
        "project_cards": _project_cards(projects),
        "demo_persona": demo_persona(user),
        "can_approve": pending_approvals > 0 or may_approve_somewhere(user),
        "pending_approvals": pending_approvals,
        "active_grants": _active_grants(user),
        "unreviewed_breakglass": unreviewed,
        "unreviewed_by_others": unreviewed_by_others,
        "can_audit": audit_scope_for(user) is not None,
        "can_break_glass": _breakglass_databases(user).exists(),
        "undelivered": undelivered,
        "undelivered_total": sum(undelivered.values()),
        "now": timezone.now(),
        # The demo's public API token and the commands that use it, for whoever manages tokens.
        "demo_api": try_the_api(settings.SITE_URL)
        if user.has_perm("identity.add_apitoken") and demo_token_live()
        else [],
        "demo_token": DEMO_TOKEN,
    }
    return render(request, "jitaccess/home.html", context)


PROJECT_ROLES = [
    ("request", "Request"),
    ("approve", "Approve"),
    ("administer", "Policy"),
    ("audit", "Audit"),
]


def _project_cards(projects: dict[str, QuerySet[Project]]) -> list[dict[str, Any]]:
    """One card per project the person works in: what they may do there, and its databases."""
    roles: dict[int, list[str]] = {}
    for key, label in PROJECT_ROLES:
        for pk in projects[key].values_list("pk", flat=True):
            roles.setdefault(pk, []).append(label)
    listed = Project.objects.filter(pk__in=roles).annotate(database_count=Count("databases"))
    return [{"project": p, "roles": roles[p.pk]} for p in listed.order_by("title")]


@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    """The person's own requests and grants, and their web inbox."""
    user = person(request)
    mine = (
        requests_visible_to(user)
        .filter(requester=user)
        .annotate(end_reason=end_reason_of("pk"))
        .prefetch_related("approvals")[:100]
    )
    requestable = get_objects_for_user(user, REQUEST_UNMASK, klass=Project, accept_global_perms=True)
    context = {
        "active_grants": _active_grants(user),
        "can_request": may_request_somewhere(user),
        "can_break_glass": _breakglass_databases(user).exists(),
        "extendable_projects": set(requestable.values_list("pk", flat=True)),
        "requests": mine,
        "inbox": inbox(user),
        "now": timezone.now(),
    }
    return render(request, "jitaccess/request_list.html", context)


@login_required
def request_new(request: HttpRequest) -> HttpResponse:
    """Ask to unmask: pick a database and a table (GET), then columns, a duration and a reason
    (POST), seeing which approval policy applies and who will be asked before sending.

    `?extends=<id>` asks for more time on one of the person's active grants, same scope. A POST
    with `preview` (the form's button without JavaScript) only shows the approval preview."""
    user = person(request)
    databases = _databases_with(user, REQUEST_UNMASK)
    extended = None
    if raw_extends := request.GET.get("extends"):
        extended = _visible(user, raw_extends)
        if refusal := _extend_refusal(extended, user):
            return forbidden(request, refusal)
        if extended.state != State.APPROVED:
            messages.error(
                request,
                f"{extended.ref} is {extended.get_state_display().lower()}: only an active grant "
                "can be extended. Ask for access anew.",
            )
            return redirect("jitaccess:request-detail", pk=extended.pk)
        if (already := live_extension_of(extended)) is not None:
            messages.error(
                request, f"{already.ref} already extends {extended.ref}; extend {already.ref} instead."
            )
            return redirect("jitaccess:request-detail", pk=already.pk)
        database: Database | None = extended.database
    else:
        database = _chosen_database(databases, request.GET.get("database"))
    named = columns_named(databases, request.GET.getlist("column")) if not extended else {}
    if database is None and len(named) == 1:
        database = next(iter(named))  # the data path's refusal links here with the column it refused
    form, limit = None, None
    picked = [f"column:{column.pk}" for column in named.get(database, [])] if database else []
    if database is not None:
        fixed_scope = _scope_of(extended) if extended else None
        limit = _duration_limit(user, database, fixed_scope)
        previewing = request.method == "POST" and "preview" in request.POST
        form = UnmaskRequestForm(
            None if previewing else request.POST or None,
            database=database,
            fixed_scope=fixed_scope,
            limit=limit,
            initial=_as_initial(request.POST) if previewing else {"scope": picked} if picked else None,
        )
        if request.method == "POST" and not previewing and form.is_valid():
            data = form.cleaned_data
            try:
                created = request_create(
                    requester=user,
                    scope=data["scope"],
                    duration=data["duration"],
                    reason=data["reason"],
                    ticket=data["ticket"],
                    extends=extended,
                    channel=Channel.WEB,
                )
            except RequestError as error:
                form.add_service_error(error)
            except NotAllowed as error:
                return forbidden(request, str(error))
            else:
                messages.success(request, _created_message(created))
                return redirect("jitaccess:request-detail", pk=created.pk)
        if fixed_scope is None and (chosen := form.chosen_scope()) is not None:
            limit = _duration_limit(user, database, chosen)
            form.show_limit(limit)
    return render(
        request,
        "jitaccess/request_new.html",
        {
            **_picker_context(request, form, databases, database),
            **_preview_context(
                user, database, request.POST if request.method == "POST" else {"scope": picked}, extended
            ),
            "extended": extended,
            "duration_help": _duration_help(database, limit),
            "can_break_glass": _breakglass_databases(user).exists(),
        },
    )


@login_required
@require_GET
def request_preview(request: HttpRequest) -> HttpResponse:
    """The request form's approval preview for its fields so far (`database`, `scope`, `duration`,
    `custom_hours`; `extends` for an extension), as the fragment the page's script puts in place.

    A read that changes nothing, so a GET, and only this site's pages can read its answer (no
    CORS). A database outside the projects the person may request in is a 404, as for the form, so
    no other project's policies or approvers show; bad input is a 400 naming the field."""
    user = person(request)
    raw_database = request.GET.get("database", "")
    if not raw_database.isdigit():
        context = {"preview_problem": "Choose a database from the list.", "preview_field": "database"}
        return render(request, "jitaccess/_approval_preview.html", context, status=400)
    database = _databases_with(user, REQUEST_UNMASK).filter(pk=int(raw_database)).first()
    if database is None:
        raise Http404("No such database among those you may request in.")
    extended = None
    if raw_extends := request.GET.get("extends"):
        extended = _visible(user, raw_extends)
        if extended.database_id != database.pk:
            raise Http404("No such grant on this database.")
        if refusal := _extend_refusal(extended, user):
            return forbidden(request, refusal)
    context = _preview_context(user, database, request.GET, extended)
    status = 400 if context["preview_problem"] else 200
    return render(request, "jitaccess/_approval_preview.html", context, status=status)


@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, _visible(person(request), pk))


@login_required
@require_POST
def request_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """approve, deny (reason), cancel, relinquish, revoke, review (break-glass notes)."""
    user = person(request)
    target = _visible(user, pk)
    deny_form = DenyForm(request.POST) if action == Action.DENY else None
    review_form = ReviewForm(request.POST) if action == "review" else None
    end_form = EndGrantForm(request.POST) if action in (Action.RELINQUISH, Action.REVOKE) else None
    if end_form is not None and not end_form.is_valid():
        if "confirm" in end_form.errors:  # not sent from the confirmation page: show it
            return redirect("jitaccess:request-end-confirm", pk=target.pk, action=action)
        return _render_end_confirm(request, target, action, end_form)
    action_form = deny_form or review_form
    if action_form is not None and not action_form.is_valid():
        return _render_detail(request, target, deny_form=deny_form, review_form=review_form)
    try:
        if action == Action.APPROVE:
            result = request_approve(request_id=target.pk, approver=user, channel=Channel.WEB)
        elif action == Action.DENY and deny_form is not None:
            result = request_deny(
                request_id=target.pk,
                approver=user,
                reason=deny_form.cleaned_data["reason"],
                channel=Channel.WEB,
            )
        elif action == Action.CANCEL:
            result = request_cancel(request_id=target.pk, requester=user, channel=Channel.WEB)
        elif action in (Action.RELINQUISH, Action.REVOKE) and end_form is not None:
            result = grant_end(
                request_id=target.pk,
                user=user,
                action=action,
                channel=Channel.WEB,
                reason=end_form.cleaned_data["reason"] if action == Action.REVOKE else "",
            )
        elif action == "review" and review_form is not None:
            result = breakglass_review(
                request_id=target.pk,
                reviewer=user,
                notes=review_form.cleaned_data["notes"],
                channel=Channel.WEB,
            )
        else:
            raise Http404(f"Unknown action {action!r}.")
    except NotAllowed as error:
        return forbidden(request, str(error))
    except InvalidTransition as error:
        messages.error(request, f"{target.ref}: {error}.")
        return redirect("jitaccess:request-detail", pk=target.pk)
    except RequestError as error:
        if end_form is not None and error.field in end_form.fields:
            end_form.add_error(error.field, error.message)
            return _render_end_confirm(request, target, action, end_form)
        if action_form is not None and error.field in action_form.fields:
            action_form.add_error(error.field, error.message)
            return _render_detail(request, target, deny_form=deny_form, review_form=review_form)
        messages.error(request, f"{target.ref}: {error.field} {error.message}.")
        return redirect("jitaccess:request-detail", pk=target.pk)
    messages.success(request, _action_message(action, result))
    return redirect_back(request, reverse("jitaccess:request-detail", args=[target.pk]))


@login_required
@require_GET
def request_end_confirm(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Revoke or relinquish, step one: what ending the grant does, and (to revoke) a reason."""
    if action not in (Action.RELINQUISH, Action.REVOKE):
        raise Http404(f"Unknown action {action!r}.")
    user = person(request)
    target = _visible(user, pk)
    if refusal := end_refusal(target, user, action):
        return forbidden(request, refusal)
    if target.state != State.APPROVED:
        messages.error(request, f"{target.ref}: {InvalidTransition(target.state, action)}.")
        return redirect("jitaccess:request-detail", pk=target.pk)
    return _render_end_confirm(request, target, action, EndGrantForm())


@login_required
def approvals(request: HttpRequest) -> HttpResponse:
    """The approver's queue. Deciding here never needs Slack."""
    queue = approval_queue(person(request))
    return render(request, "jitaccess/approvals.html", {"queue": queue, "now": timezone.now()})


@login_required
def breakglass_new(request: HttpRequest) -> HttpResponse:
    """Immediate access in an incident, for the project's break-glass roles; security is alerted."""
    user = person(request)
    databases = _breakglass_databases(user)
    database = _chosen_database(databases, request.GET.get("database"))
    form = None
    if database is not None:
        cap = access_settings(database.project).breakglass_max_duration
        form = BreakGlassForm(request.POST or None, database=database, cap=cap)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                taken = breakglass_take(
                    requester=user,
                    scope=data["scope"],
                    duration=data["duration"],
                    reason=data["reason"],
                    channel=Channel.WEB,
                )
            except RequestError as error:
                form.add_service_error(error)
            except NotAllowed as error:
                return forbidden(request, str(error))
            else:
                messages.warning(
                    request,
                    f"Break-glass {taken.ref} is active until {moment_label(taken.expires_at)}. "
                    "Security has been alerted and an administrator will review it.",
                )
                return redirect("jitaccess:request-detail", pk=taken.pk)
    return render(
        request,
        "jitaccess/breakglass.html",
        {
            **_picker_context(request, form, databases, database),
            "duration_help": _duration_help(database, breakglass=True),
        },
    )


@login_required
def breakglass_reviews(request: HttpRequest) -> HttpResponse:
    """Break-glass grants nobody has reviewed yet, oldest first: for project administrators."""
    user = person(request)
    if not administers_any(user):
        return forbidden(request, "Break-glass reviews are for project administrators.")
    pending = list(unreviewed_breakglass(user).order_by("created_at"))
    perms = _project_perms(user, pending)
    reviewable = {r.pk for r in pending if can_review_breakglass(r, user, perms)}
    return render(
        request, "jitaccess/breakglass_reviews.html", {"pending": pending, "reviewable": reviewable}
    )


def _project_perms(user: User, requests: list[AccessRequest]) -> ObjectPermissionChecker:
    """The person's object permissions on the projects of `requests`, read in one go (two queries)
    instead of once per request."""
    perms = ObjectPermissionChecker(user)
    projects = list({r.project_id: r.project for r in requests}.values())
    if projects and not user.is_superuser:  # a superuser needs no lookup; guardian takes any iterable
        perms.prefetch_perms(cast("QuerySet[Project]", projects))
    return perms


def _render_end_confirm(
    request: HttpRequest, target: AccessRequest, action: str, form: EndGrantForm
) -> HttpResponse:
    extensions = extensions_ending_with(target)
    context = {
        "r": target,
        "action": action,
        "form": form,
        "extensions": extensions,
        "still_in_force": grants_still_in_force_beside(target, extensions),
        "now": timezone.now(),
    }
    return render(request, "jitaccess/request_end_confirm.html", context)


def _render_detail(
    request: HttpRequest,
    target: AccessRequest,
    *,
    deny_form: DenyForm | None = None,
    review_form: ReviewForm | None = None,
) -> HttpResponse:
    user = person(request)
    is_requester = target.requester_id == user.pk
    pending, approved = target.state == State.PENDING, target.state == State.APPROVED
    pools: ApproverPools = {}  # the on-call provider, if the request names one, is asked once
    actions = {
        "decide": pending and can_approve(target, user, pools),
        "cancel": pending and is_requester,
        "relinquish": approved and is_requester,
        "extend": approved and not _extend_refusal(target, user) and live_extension_of(target) is None,
        # The requester ends their own grant by relinquishing it: one button, not two that do the same.
        "revoke": approved and not is_requester and can_revoke(target, user),
        "review": target.is_breakglass and target.reviewed_at is None and can_review_breakglass(target, user),
    }
    approvals = list(target.approvals.select_related("approver"))
    labels = BREAKGLASS_TIMELINE_LABELS if target.is_breakglass else TIMELINE_LABELS
    if ended_by_directory(target):  # said plainly, not as an act of the directory's service account
        ended = f"Ended: {directory_ending(target.requester)}"
        labels = {**labels, "request.revoked": ended, "request.cancelled": ended}
    context = {
        "r": target,
        "now": timezone.now(),
        "approvals": approvals,
        "stages": stage_progress(target),
        "approvers": sorted(str(p) for p in eligible_approvers(target, pools)) if pending else [],
        "oncall": oncall_line(target),
        "timeline": [(event, labels.get(event.action, event.action)) for event in _timeline(target)],
        "end_reason": end_reason(target) if target.ended_at else "",
        "notifications": target.notifications.select_related("recipient").order_by("created_at"),
        "actions": actions,
        "deny_form": deny_form or DenyForm(),
        "review_form": review_form or ReviewForm(),
    }
    return render(request, "jitaccess/request_detail.html", context)


def _picker_context(
    request: HttpRequest, form: ScopeForm | None, databases: QuerySet[Database], database: Database | None
) -> dict[str, Any]:
    query = request.GET.get("q", "")
    picker = None
    if form is not None and form.fixed_scope is None and database is not None:
        access = column_access(person(request), database, form.columns)
        picker = form.picker(query, access, request.GET.get("table", ""))
    return {
        "form": form,
        "databases": databases,
        "database": database,
        "query": query,
        "picker": picker,
    }


def _preview_context(
    user: User, database: Database | None, data: Mapping[str, Any], extended: AccessRequest | None
) -> dict[str, Any]:
    """The approval preview for the request form's fields so far (`data`): `preview` (None until a
    scope is ticked), or `preview_problem` naming the field at fault (`preview_field`)."""
    context: dict[str, Any] = {"preview": None, "preview_problem": "", "preview_field": ""}
    if database is None:
        return context
    fixed_scope = _scope_of(extended) if extended else None
    form = ApprovalPreviewForm(data, database=database, fixed_scope=fixed_scope)
    if form.is_valid() and (scope := form.cleaned_data["scope"]) is not None:
        try:
            context["preview"] = approval_preview(
                requester=user, scope=scope, duration=form.cleaned_data["duration"], extends=extended
            )
        except RequestError as error:
            form.add_service_error(error)
    if form.errors:
        field, errors = next(iter(form.errors.items()))
        context.update(preview_problem=errors[0], preview_field=field)
    return context


def _as_initial(posted: QueryDict) -> dict[str, Any]:
    """A posted request form as the initial values of an unbound one (shown again, not judged)."""
    return {**posted.dict(), "scope": posted.getlist("scope")}


def _timeline(target: AccessRequest) -> list[AuditEvent]:
    """The request's audit events, and those of its grant (which name the request in `detail`), in
    the order a person tells it: approval writes the grant first (`request.approved` names it), so
    a `grant.created` directly followed by the `request.approved` naming that grant is shown after it."""
    events = list(
        AuditEvent.objects.filter(
            Q(target_type="request", target_id=str(target.pk))
            | Q(target_type="grant", detail__request=target.ref)
        ).order_by("seq")
    )
    for i in range(len(events) - 1):
        created, approved = events[i], events[i + 1]
        if (created.action, approved.action) == ("grant.created", "request.approved") and str(
            approved.detail.get("grant")
        ) == created.target_id:
            events[i], events[i + 1] = approved, created
    return events


def _active_grants(user: User) -> QuerySet[AccessRequest]:
    return (
        requests_visible_to(user)
        .filter(requester=user, state=State.APPROVED, expires_at__gt=timezone.now())
        .annotate(extended=Exists(live_extensions(OuterRef("pk"))))
        .order_by("expires_at")
    )


def _databases_with(user: User, perm: str) -> QuerySet[Database]:
    projects = get_objects_for_user(user, perm, klass=Project, accept_global_perms=True)
    return _databases(Database.objects.filter(project__in=projects))


def _breakglass_databases(user: User) -> QuerySet[Database]:
    """Databases of the projects where the person holds a break-glass role."""
    roles = role_names_of_user(user)
    return _databases(Database.objects.filter(project__access_settings__breakglass_roles__name__in=roles))


def _databases(queryset: QuerySet[Database]) -> QuerySet[Database]:
    return (
        queryset.select_related("instance", "project")
        .order_by("project__key", "instance__key", "name")
        .distinct()
    )


def _chosen_database(databases: QuerySet[Database], raw: str | None) -> Database | None:
    """The database named in the query string if the person may use it; the only one if there is one."""
    if raw:
        return databases.filter(pk=raw).first() if raw.isdigit() else None
    candidates = list(databases[:2])
    return candidates[0] if len(candidates) == 1 else None


def _duration_limit(user: User, database: Database, scope: Scope | None) -> DurationLimit:
    """The limit for the scope when it is known and valid, else the project's (not exact)."""
    if scope is not None:
        try:
            return duration_limit(requester=user, database=database, scope=scope)
        except RequestError:
            pass  # the scope itself is refused; the form says why
    return duration_limit(requester=user, database=database)


def _duration_help(
    database: Database | None, limit: DurationLimit | None = None, *, breakglass: bool = False
) -> str:
    if database is None:
        return ""
    if breakglass:
        cap = duration_label(access_settings(database.project).breakglass_max_duration)
        return f"Break-glass lasts at most {cap} in {database.project}."
    if limit is None:
        return ""
    longest = duration_label(limit.duration)
    if not limit.exact:
        return f"Up to {longest} in {database.project}, less where an approval policy says so."
    if limit.policy_title:
        return f"At most {longest} for this scope, under the approval policy '{limit.policy_title}'."
    return f"At most {longest} in {database.project}."


def _extend_refusal(extended: AccessRequest, user: User) -> str:
    """Why `user` may not ask for more time on the grant; "" when they may. An extension is a new
    request, so it needs `request_unmask` on the project (a break-glass grant's holder may lack it)."""
    if extended.requester_id != user.pk:
        return "Only the requester can extend a grant."
    if not user.has_perm(REQUEST_UNMASK, extended.project):
        return (
            f"You cannot request unmask in project {extended.project.key}, so {extended.ref} cannot be "
            "extended: ask a project administrator for the permission, or break the glass again."
            if extended.is_breakglass
            else f"You cannot request unmask in project {extended.project.key} any more, so "
            f"{extended.ref} cannot be extended."
        )
    return ""


def _scope_of(extended: AccessRequest) -> Scope:
    return Scope(extended.database, extended.schema_name, extended.table_name, tuple(extended.column_names))


def _visible(user: User, pk: int | str) -> AccessRequest:
    try:
        return request_for(user, int(pk))
    except (AccessRequest.DoesNotExist, ValueError):
        raise Http404("No such request.") from None


def redirect_back(request: HttpRequest, default: str) -> HttpResponse:
    """To the page the form came from (`next`, same site only), else to `default`."""
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(target if safe else default)


def _created_message(created: AccessRequest) -> str:
    if created.state == State.APPROVED:
        return f"{created.ref} was approved by policy: {_grant_period(created)}."
    return f"{created.ref} is waiting for approval."


def _action_message(action: str, result: AccessRequest) -> str:
    if action == Action.APPROVE:
        if result.state == State.APPROVED:
            return f"{result.ref} approved: {_grant_period(result)}."
        count, required = len(result.stage_approvals), result.approvals_required
        plural = "" if required == 1 else "s"
        if result.stages:
            return (
                f"Your approval of {result.ref} is recorded; it waits for {result.stage_label}: "
                f"{count} of {required} approval{plural}."
            )
        return f"Your approval of {result.ref} is recorded ({count} of {required} approval{plural})."
    messages_by_action: dict[str, str] = {
        Action.DENY: f"{result.ref} denied.",
        Action.CANCEL: f"{result.ref} cancelled.",
        Action.RELINQUISH: f"You gave up the grant of {result.ref}.{_still_in_force(result)}",
        Action.REVOKE: f"{result.ref} revoked.{_still_in_force(result)}",
        "review": f"Break-glass {result.ref} reviewed.",
    }
    return messages_by_action[action]


def _grant_period(request: AccessRequest) -> str:
    """ "the grant runs until 06:51 UTC, 23 Nov", naming its start when it starts later (an extension)."""
    until = f"runs until {moment_label(request.expires_at)}"
    if request.starts_at and request.starts_at > timezone.now():
        return f"the grant starts at {moment_label(request.starts_at)} and {until}"
    return f"the grant {until}"


def _still_in_force(ended: AccessRequest) -> str:
    """What still unmasks on the ended grant's database, so nobody reads "masked again" wrongly."""
    others = grants_still_in_force_beside(ended)
    if not others:
        return " It no longer unmasks anything (an exemption may still cover some columns)."
    listed = ", ".join(f"{r.ref} ({r.scope_label}, until {moment_label(r.expires_at)})" for r in others)
    return f" Still in force on {ended.database}: {listed}."
