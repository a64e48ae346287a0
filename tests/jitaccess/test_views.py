"""The JIT web pages, as each persona uses them, through Django's test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM, Target, record_event
from identity.models import Role
from jitaccess.models import AccessRequest, Notification, ProjectAccessSettings
from jitaccess.services.breakglass import breakglass_take
from jitaccess.services.grants import grant_end
from jitaccess.services.requests import request_approve, request_deny
from jitaccess.states import Action, State
from masking.models import Column, Database
from masking.services.catalog import catalog_upsert
from tests.factories import catalog_payload, grant_project_perm, make_project, make_user

pytestmark = pytest.mark.django_db
NEW = "/requests/new/"


def _as(client: Client, user) -> Client:
    client.force_login(user)
    return client


def _column(name: str) -> Column:
    """A column of prod-pg/shop/public.customers."""
    return Column.objects.get(name=name, table__schema__database__instance__key="prod-pg")


def _form(*scope: str, **overrides) -> dict:
    return {"scope": list(scope), "duration": "4", "reason": "INC-4711 refund mismatch", **overrides}


def _approved(world) -> AccessRequest:
    request = world.request("email")
    return request_approve(request_id=request.pk, approver=world.bob, channel=Channel.WEB)


def _action(client: Client, request: AccessRequest, action: str, **data):
    return client.post(f"/requests/{request.pk}/{action}/", data)


def _confirmed(client: Client, request: AccessRequest, action: str, **data):
    """Revoke or relinquish as the confirmation page posts it."""
    return _action(client, request, action, confirm="True", **data)


def _state(request: AccessRequest) -> str:
    return AccessRequest.objects.get(pk=request.pk).state


@pytest.fixture
def billing(world) -> Database:
    """Another project's database, with a stranger who approves and administers there."""
    make_project("billing")
    payload = catalog_payload(instance="billing-pg", project="billing")
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    return Database.objects.get(instance__key="billing-pg")


# The request form


def test_the_column_picker_says_which_columns_are_already_visible(world, client):
    """alice's live grant unmasks email; phone is masked until she asks, and id is not sensitive."""
    _approved(world)

    page = _as(client, world.alice).get(f"{NEW}?database={world.database.pk}").content.decode()

    def row(column: str) -> str:
        start = page.rindex("<tr", 0, page.index(f"<code>{column}</code>"))
        return page[start : page.index("</tr>", start)]

    assert "Visible to you" in row("email")
    assert "Visible to you" not in row("phone")


def test_the_request_form_offers_only_databases_the_person_may_request_in(world, billing, client):
    page = _as(client, world.alice).get(NEW)

    assert page.status_code == 200
    body = page.content.decode()
    assert "prod-pg/shop" in body and "billing-pg" not in body
    assert f'value="column:{_column("email").pk}"' in body, "the only database and table are chosen at once"
    assert "3 · Restricted (PII)" in body and "unclassified" in body
    assert "table=all" in body and f'value="table:{_column("email").table_id}"' in body


def test_a_database_of_another_project_cannot_be_chosen(world, billing, client):
    foreign = Column.objects.get(table__schema__database=billing, name="email")
    _as(client, world.alice)

    page = client.get(NEW, {"database": billing.pk})
    client.post(f"{NEW}?database={billing.pk}", _form(f"column:{foreign.pk}"))

    assert page.context["form"] is None and f"column:{foreign.pk}" not in page.content.decode()
    assert not AccessRequest.objects.exists()


def test_someone_without_the_permission_is_told_they_cannot_request(world, client):
    page = _as(client, world.eve).get(NEW)

    assert "You cannot request unmask in any project yet" in page.content.decode()


def test_requesting_columns_creates_a_pending_request_and_shows_who_can_approve(world, client):
    response = _as(client, world.alice).post(
        NEW,
        _form(
            f"column:{_column('email').pk}",
            f"column:{_column('phone').pk}",
            duration="custom",
            custom_hours="2",
            ticket="https://tickets.example.com/INC-4711",
        ),
        follow=True,
    )

    request = AccessRequest.objects.get()
    assert response.redirect_chain[-1][0] == f"/requests/{request.pk}/"
    assert (request.column_names, request.duration) == (["email", "phone"], timedelta(hours=2))
    assert request.ticket_url == "https://tickets.example.com/INC-4711"
    body = response.content.decode()
    assert f"{request.ref} is waiting for approval" in body
    assert "Who can approve: Bob, Carol" in body
    assert "0 of 1" in body


@pytest.mark.parametrize(
    ("pick", "expected"), [("table", ("public", "customers")), ("database", (None, None))]
)
def test_a_whole_table_or_the_whole_database_can_be_requested(world, client, pick, expected):
    value = f"table:{_column('email').table_id}" if pick == "table" else "database"

    _as(client, world.alice).post(NEW, _form(value))

    request = AccessRequest.objects.get()
    assert (request.schema_name, request.table_name, request.column_names) == (*expected, [])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scope": []}, "Choose columns, a whole table or the whole database."),
        ({"reason": "  "}, "Say why you need to see these values."),
        ({"duration": ""}, "Choose how long you need access."),
        ({"duration": "custom"}, "Enter the number of hours."),
        (
            {"duration": "custom", "custom_hours": "720"},
            "At most 7 days in this project (you asked 30 days).",
        ),
        (
            {"duration": "custom", "custom_hours": "100000"},
            "At most 7 days in this project (you asked 100000 hours).",
        ),
        ({"duration": "custom", "custom_hours": "0"}, "Ask for at least 1 hour."),
        ({"scope": ["column:ID"]}, "Nothing in this scope is masked for you"),
        ({"scope": ["database", "column:EMAIL"]}, "The whole database already covers every table"),
        ({"scope": ["column:999999"]}, "column:999999 is not a table or column of this database"),
        ({"ticket": "not a url"}, "&#x27;not a url&#x27; is neither a link (https://…) nor an issue key"),
    ],
)
def test_bad_input_shows_the_error_next_to_the_field_and_writes_nothing(world, client, overrides, message):
    data = _form(f"column:{_column('email').pk}")
    data.update(overrides)
    data["scope"] = [
        v.replace("ID", str(_column("id").pk)).replace("EMAIL", str(_column("email").pk))
        for v in data["scope"]
    ]

    page = _as(client, world.alice).post(NEW, data)

    assert page.status_code == 200
    assert message in page.content.decode()
    assert 'class="errorlist' in page.content.decode()
    assert not AccessRequest.objects.exists()


def test_an_extension_keeps_the_scope_and_names_the_grant_it_extends(world, client):
    grant = _approved(world)
    _as(client, world.alice)

    page = client.get(NEW, {"extends": grant.pk})
    client.post(f"{NEW}?extends={grant.pk}", {"duration": "1", "reason": "still digging"})

    assert f"Extend {grant.ref}" in page.content.decode()
    extension = AccessRequest.objects.exclude(pk=grant.pk).get()
    assert (extension.extends, extension.column_names, extension.state) == (grant, ["email"], State.PENDING)


def test_only_the_requester_extends_an_active_grant(world, client):
    grant = _approved(world)

    assert _as(client, world.bob).get(NEW, {"extends": grant.pk}).status_code == 403
    assert _as(client, world.eve).get(NEW, {"extends": grant.pk}).status_code == 404
    grant_end(request_id=grant.pk, user=world.alice, action=Action.RELINQUISH, channel=Channel.WEB)
    ended = _as(client, world.alice).get(NEW, {"extends": grant.pk}, follow=True)
    assert "only an active grant can be extended" in ended.content.decode()


# My requests, details and actions


def test_my_requests_show_a_countdown_on_active_grants_and_the_inbox(world, client):
    grant = _approved(world)

    page = _as(client, world.alice).get("/requests/")

    body = page.content.decode()
    assert "data-countdown" in body and grant.expires_at.isoformat()[:19] in body
    assert "Approved (grant active)" in body
    assert f"?extends={grant.pk}" in body
    assert 'class="kind kind-approved"' in body, "the inbox shows the approval"


def test_an_approved_extension_shows_as_scheduled_until_the_grant_it_extends_ends(world, client):
    grant = _approved(world)
    grant.refresh_from_db()
    extension = world.request("email", duration=timedelta(hours=1), extends=grant)
    request_approve(request_id=extension.pk, approver=world.bob, channel=Channel.WEB)

    listing = _as(client, world.alice).get("/requests/").content.decode()
    detail = client.get(f"/requests/{extension.pk}/").content.decode()

    starts = f"starts {timezone.localtime(grant.expires_at):%H:%M}"
    assert listing.count("state-scheduled") == 1 and starts in listing
    assert "state-scheduled" in detail and starts in detail


def test_a_grant_already_extended_offers_no_second_extension(world, client):
    grant = _approved(world)
    extension = world.request("email", duration=timedelta(hours=1), extends=grant)

    listing = _as(client, world.alice).get("/requests/").content.decode()
    detail = client.get(f"/requests/{grant.pk}/").content.decode()
    again = client.get(NEW, {"extends": grant.pk}, follow=True)

    assert f"?extends={grant.pk}" not in listing and f"?extends={grant.pk}" not in detail
    assert again.redirect_chain[-1][0] == f"/requests/{extension.pk}/"
    assert f"{extension.ref} already extends {grant.ref}" in again.content.decode()


def test_the_detail_shows_scope_policy_timeline_and_notifications(world, client):
    grant = _approved(world)
    grant_end(request_id=grant.pk, user=world.dave, action=Action.REVOKE, channel=Channel.WEB)

    body = _as(client, world.alice).get(f"/requests/{grant.pk}/").content.decode()

    assert "prod-pg/shop/public.customers (email)" in body and "prod PII" in body
    assert "1 of 1" in body
    for label in ("Requested", "Approval recorded", "Grant created", "Approved", "Grant revoked", "Revoked"):
        assert f"<strong>{label}</strong>" in body
    assert "Approval needed" in body and "Web inbox" in body


@pytest.mark.parametrize(
    ("persona", "state", "shown", "hidden"),
    [
        ("alice", "pending", ["Cancel request"], ["Approve</button>", "Revoke", "Relinquish now"]),
        ("bob", "pending", ["Approve</button>", "Deny</button>"], ["Cancel request"]),
        ("alice", "approved", ["Relinquish now", "Extend</a>"], ["Revoke", "Cancel request"]),
        ("dave", "approved", ["Revoke"], ["Relinquish now", "Extend</a>", "Approve</button>"]),
        ("bob", "approved", ["Revoke"], ["Relinquish now"]),
    ],
)
def test_action_buttons_show_only_to_whom_they_apply(world, client, persona, state, shown, hidden):
    request = _approved(world) if state == "approved" else world.request("email")

    body = _as(client, getattr(world, persona)).get(f"/requests/{request.pk}/").content.decode()

    assert all(text in body for text in shown), shown
    assert not any(text in body for text in hidden), hidden


def test_someone_who_may_not_see_a_request_gets_404_and_changes_nothing(world, billing, client):
    request = world.request("email")
    stranger = make_user("stranger")
    grant_project_perm(stranger, "approve_request", billing.project)
    grant_project_perm(stranger, "administer_policy", billing.project)

    for person in (stranger, world.eve):
        _as(client, person)
        assert client.get(f"/requests/{request.pk}/").status_code == 404
        assert _action(client, request, "approve").status_code == 404
        assert _action(client, request, "deny", reason="no").status_code == 404
        assert client.get(NEW, {"extends": request.pk}).status_code == 404
    assert _state(request) == State.PENDING


def test_an_approver_approves_from_the_queue(world, client):
    request = world.request("email")
    _as(client, world.bob)

    queue = client.get("/approvals/")
    response = client.post(f"/requests/{request.pk}/approve/", {"next": "/approvals/"}, follow=True)

    assert "INC-4711 refund mismatch" in queue.content.decode()
    assert response.redirect_chain[-1][0] == "/approvals/"
    assert _state(request) == State.APPROVED
    assert f"{request.ref} approved: the grant runs until" in response.content.decode()
    assert "Nothing waits for your decision" in response.content.decode()


def test_the_queue_never_offers_someone_their_own_request(world, client):
    world.alice.groups.first().veil_roles.add(world.policy.approver_roles.first())
    world.request("email")

    assert "Nothing waits for your decision" in _as(client, world.alice).get("/approvals/").content.decode()


def test_an_outside_redirect_after_an_action_is_ignored(world, client):
    request = world.request("email")

    response = _action(_as(client, world.bob), request, "approve", next="https://evil.example.com/")

    assert response["Location"] == f"/requests/{request.pk}/"


def test_a_denial_needs_a_reason_and_the_requester_reads_it(world, client):
    request = world.request("email")
    _as(client, world.bob)

    refused = _action(client, request, "deny", reason="")
    assert "the requester reads it" in refused.content.decode() and _state(request) == State.PENDING

    _action(client, request, "deny", reason="Use the staging copy")
    assert _state(request) == State.DENIED
    mine = _as(client, world.alice).get("/requests/").content.decode()
    assert "Use the staging copy" in mine and "Denied" in mine


def test_the_requester_cannot_approve_their_own_request(world, client):
    request = world.request("email")

    response = _action(_as(client, world.alice), request, "approve")

    assert response.status_code == 403
    assert "You cannot approve your own request." in response.content.decode()
    assert _state(request) == State.PENDING


def test_a_late_click_names_the_current_state(world, client):
    request = world.request("email")
    request_deny(request_id=request.pk, approver=world.carol, reason="no", channel=Channel.WEB)

    response = _action(_as(client, world.bob), request, "approve", next="/approvals/")

    assert response["Location"] == f"/requests/{request.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert f"{request.ref}: cannot approve: the request is denied." in page


def test_the_requester_cancels_a_pending_request_and_an_approver_cannot(world, client):
    request = world.request("email")

    assert _action(_as(client, world.bob), request, "cancel").status_code == 403
    _action(_as(client, world.alice), request, "cancel")

    assert _state(request) == State.CANCELLED


def test_the_requester_relinquishes_and_cannot_revoke(world, client):
    grant = _approved(world)
    _as(client, world.alice)

    assert client.get(f"/requests/{grant.pk}/revoke/confirm/").status_code == 403
    assert _confirmed(client, grant, "revoke").status_code == 403
    _confirmed(client, grant, "relinquish")

    assert _state(grant) == State.RELINQUISHED


@pytest.mark.parametrize("persona", ["bob", "dave"])
def test_an_approver_or_a_project_admin_revokes(world, client, persona):
    grant = _approved(world)

    _confirmed(_as(client, getattr(world, persona)), grant, "revoke")

    assert _state(grant) == State.REVOKED


def test_an_unknown_action_is_404(world, client):
    request = world.request("email")

    assert _action(_as(client, world.bob), request, "delete").status_code == 404


def test_every_action_needs_the_csrf_token(world):
    request = world.request("email")
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.bob)

    assert client.post(f"/requests/{request.pk}/approve/").status_code == 403
    assert client.post(NEW, _form(f"column:{_column('email').pk}")).status_code == 403
    assert _state(request) == State.PENDING and AccessRequest.objects.count() == 1


def test_pages_need_a_signed_in_person(world, client):
    for url in ("/requests/", NEW, "/approvals/", "/breakglass/", "/breakglass/reviews/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


# Break-glass


@pytest.fixture
def oncall(world) -> ProjectAccessSettings:
    role = Role.objects.create(name="oncall")
    role.users.add(world.alice)
    settings, _ = ProjectAccessSettings.objects.get_or_create(project=world.project)
    settings.breakglass_roles.add(role)
    return settings


def _break_glass(world, requester) -> AccessRequest:
    """`requester` breaks the glass on the email column for 30 minutes."""
    return breakglass_take(
        requester=requester,
        scope=world.scope("email"),
        duration=timedelta(minutes=30),
        reason="INC-9",
        channel=Channel.WEB,
    )


def test_break_glass_warns_grants_at_once_and_asks_for_review(world, oncall, client):
    _as(client, world.alice)
    page = client.get("/breakglass/")
    response = client.post(
        "/breakglass/",
        {"scope": [f"column:{_column('email').pk}"], "duration": "30", "reason": "INC-9 outage"},
        follow=True,
    )

    assert "Security is alerted at once" in page.content.decode()
    taken = AccessRequest.objects.get()
    assert (taken.is_breakglass, taken.state, taken.duration) == (True, State.APPROVED, timedelta(minutes=30))
    assert "Security has been alerted" in response.content.decode()


def test_break_glass_refuses_more_than_the_cap_and_a_missing_reason(world, oncall, client):
    _as(client, world.alice)
    column = f"column:{_column('email').pk}"

    too_long = client.post("/breakglass/", {"scope": [column], "duration": "120", "reason": "INC-9"})
    no_reason = client.post("/breakglass/", {"scope": [column], "duration": "60", "reason": ""})

    assert "break-glass needs a reason" in no_reason.content.decode()
    assert not AccessRequest.objects.exists()
    assert "Select a valid choice" not in too_long.content.decode()


@pytest.mark.parametrize("duration", ["9999", "abc", "120"])
def test_a_break_glass_duration_not_offered_names_the_durations_that_are(world, oncall, client, duration):
    oncall.breakglass_max_duration = timedelta(hours=1)
    oncall.save()
    column = f"column:{_column('email').pk}"

    page = _as(client, world.alice).post(
        "/breakglass/", {"scope": [column], "duration": duration, "reason": "INC-9"}
    )

    assert page.context["form"].errors["duration"] == [
        "Choose one of the durations offered: 15 minutes, 30 minutes or 1 hour "
        "(break-glass lasts at most 1 hour in Shop)."
    ]
    assert not AccessRequest.objects.exists()


def test_break_glass_on_columns_nobody_masks_is_refused_before_anyone_is_alerted(world, oncall, client):
    response = _as(client, world.alice).post(
        "/breakglass/", {"scope": [f"column:{_column('id').pk}"], "duration": "30", "reason": "INC-9"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["scope"] == [
        "Nothing in this scope is masked for you; there is nothing to break the glass for."
    ]
    assert not AccessRequest.objects.exists() and not Notification.objects.exists()


def test_a_break_glass_grant_reads_as_taken_not_approved(world, oncall, client):
    _as(client, world.alice).post(
        "/breakglass/", {"scope": [f"column:{_column('email').pk}"], "duration": "30", "reason": "INC-9"}
    )
    taken = AccessRequest.objects.get()

    page = client.get(f"/requests/{taken.pk}/")
    body = page.content.decode()
    timeline = [label for _, label in page.context["timeline"]]

    assert timeline == ["Break-glass taken", "Grant created"]
    assert "Approved" not in body, "neither the state badge, the timeline nor a notice says approved"
    assert "without an approval" in body and "Review pending" in body
    assert "Policy: Break-glass" not in body
    assert not Notification.objects.filter(recipient=world.alice).exists(), "the taker gets no notice"


def test_an_older_break_glass_grants_approval_event_is_not_shown_as_an_approval(world, oncall, client):
    taken = _break_glass(world, world.alice)
    # What `breakglass_take` used to write as well.
    record_event(
        action="request.approved",
        actor=SYSTEM,
        channel=Channel.WEB,
        target=Target("request", str(taken.pk), taken.ref),
        project="shop",
        detail={"approvers": [], "auto_approved": True},
    )

    page = _as(client, world.dave).get(f"/requests/{taken.pk}/")
    labels = [label for _, label in page.context["timeline"]]

    assert labels == ["Break-glass taken", "Grant created", "Access opened under break-glass"]


def test_someone_without_a_break_glass_role_is_told_so(world, oncall, client):
    page = _as(client, world.bob).get("/breakglass/")

    assert "You are not in a break-glass role of any project" in page.content.decode()


def test_a_break_glass_grant_offers_no_extension_to_someone_who_cannot_request(world, oncall, client):
    oncall.breakglass_roles.get().users.add(world.eve)  # on call, but no request_unmask anywhere
    taken = _break_glass(world, world.eve)
    _as(client, world.eve)

    detail = client.get(f"/requests/{taken.pk}/").content.decode()
    listing = client.get("/requests/").content.decode()
    page = client.get(NEW, {"extends": taken.pk})

    assert f"?extends={taken.pk}" not in detail and f"?extends={taken.pk}" not in listing
    assert "Relinquish now" in detail
    assert page.status_code == 403, "refused before the form is filled in, not after"
    assert "You cannot request unmask in project shop" in page.content.decode()
    assert "break the glass again" in page.content.decode()


def test_the_requester_ends_their_own_grant_by_relinquishing_not_revoking(world, client):
    grant_project_perm(world.dave, "request_unmask", world.project)
    mine = world.request("email", requester=world.dave)
    request_approve(request_id=mine.pk, approver=world.bob, channel=Channel.WEB)

    detail = _as(client, world.dave).get(f"/requests/{mine.pk}/").content.decode()

    assert "Relinquish now" in detail and "/revoke/confirm/" not in detail
    assert "/revoke/confirm/" in _as(client, world.bob).get(f"/requests/{mine.pk}/").content.decode()


def test_an_admin_reviews_break_glass_and_the_taker_cannot(world, oncall, client):
    taken = _break_glass(world, world.alice)

    assert _action(_as(client, world.alice), taken, "review", notes="fine").status_code == 403
    _as(client, world.dave)
    home = client.get("/").content.decode()
    queue = client.get("/breakglass/reviews/").content.decode()
    _action(client, taken, "review", notes="Incident confirmed", next="/breakglass/reviews/")

    assert "1</strong> break-glass grant to review" in home
    assert taken.ref in queue and "Record the review" in queue
    taken.refresh_from_db()
    assert (taken.reviewed_by, taken.review_notes) == (world.dave, "Incident confirmed")
    assert "No break-glass access waits for review" in client.get("/breakglass/reviews/").content.decode()


# Home


def test_home_shows_what_waits_and_what_is_live(world, client):
    world.request("phone")
    _approved(world)

    bob_home = _as(client, world.bob).get("/").content.decode()
    alice_home = _as(client, world.alice).get("/").content.decode()

    assert "1</strong> request waits for your decision" in bob_home
    assert "Your active grants" in alice_home and "data-countdown" in alice_home


# Durations: what is offered is what the policy allows


def _chips(page) -> list[str]:
    return [value for value, _ in page.context["form"].fields["duration"].choices]


@pytest.fixture
def one_day_policy(world):
    world.policy.max_duration = timedelta(days=1)
    world.policy.save()
    return world.policy


def test_before_the_scope_is_chosen_the_help_says_a_policy_may_allow_less(world, one_day_policy, client):
    page = _as(client, world.alice).get(NEW)

    body = page.content.decode()
    assert "Up to 7 days in Shop, less where an approval policy says so." in body
    assert "168" in _chips(page), "the project allows 7 days; the scope, not yet chosen, may not"


def test_without_a_tighter_policy_the_projects_cap_is_exact(world, client):
    world.policy.max_duration = timedelta(days=7)  # the project's own: not tighter
    world.policy.save()

    page = _as(client, world.alice).get(NEW)

    assert "At most 7 days in Shop." in page.content.decode()
    assert "less where" not in page.content.decode()


def test_a_duration_over_the_policys_cap_names_the_policy_and_the_chips_shrink(world, one_day_policy, client):
    page = _as(client, world.alice).post(NEW, _form(f"column:{_column('email').pk}", duration="168"))

    body = page.content.decode()
    assert "At most 1 day under the policy &#x27;prod PII&#x27; (you asked 7 days)." in body
    assert "At most 1 day for this scope, under the approval policy &#x27;prod PII&#x27;." in body
    assert _chips(page) == ["1", "4", "24", "custom"]
    assert not AccessRequest.objects.exists()


def test_the_projects_cap_removes_longer_chips_and_bounds_custom_hours(world, client):
    ProjectAccessSettings.objects.create(project=world.project, max_duration=timedelta(hours=12))
    _as(client, world.alice)

    page = client.get(NEW)
    refused = client.post(NEW, _form(f"column:{_column('email').pk}", duration="custom", custom_hours="13"))
    absurd = client.post(
        NEW, _form(f"column:{_column('email').pk}", duration="custom", custom_hours=str(10**15))
    )

    assert _chips(page) == ["1", "4", "custom"]
    assert "At most 12 hours in Shop." in page.content.decode()
    assert "At most 12 hours in this project (you asked 13 hours)." in refused.content.decode()
    assert "At most 12 hours in this project." in absurd.content.decode()
    assert "Ensure this value" not in absurd.content.decode() + refused.content.decode()
    assert not AccessRequest.objects.exists()


def test_an_extension_knows_its_scope_so_its_cap_is_exact(world, client):
    grant = _approved(world)
    world.policy.max_duration = timedelta(hours=4)
    world.policy.save()

    page = _as(client, world.alice).get(NEW, {"extends": grant.pk})

    assert "At most 4 hours for this scope, under the approval policy &#x27;prod PII&#x27;." in (
        page.content.decode()
    )
    assert _chips(page) == ["1", "4", "custom"]


# Wording


def test_the_approval_message_shows_the_time_as_the_pages_do(world, client):
    request = world.request("email")

    response = _action(_as(client, world.bob), request, "approve", next="/approvals/")
    page = client.get(response["Location"]).content.decode()

    request.refresh_from_db()
    until = timezone.localtime(request.expires_at).strftime("%H:%M %Z, %-d %b")
    assert f"{request.ref} approved: the grant runs until {until}." in page
    assert ".." not in page.split(request.ref + " approved")[1].split("</")[0]


def test_a_partial_approval_counts_approvals_in_words(world, client):
    world.policy.approvals_required = 2
    world.policy.save()
    request = world.request("email")
    _as(client, world.bob)

    queue = client.get("/approvals/").content.decode()
    response = _action(client, request, "approve", next="/approvals/")
    page = client.get(response["Location"]).content.decode()

    assert "0 of 2 approvals" in queue
    assert f"Your approval of {request.ref} is recorded (1 of 2 approvals)." in page


def test_one_required_approval_is_singular(world, client):
    world.request("email")

    queue = _as(client, world.bob).get("/approvals/").content.decode()

    assert "0 of 1 approval<" in queue and "1 approvals" not in queue


def test_the_inbox_says_just_now_then_how_long_ago(world, client):
    world.request("email")
    _as(client, world.bob)

    fresh = client.get("/requests/").content.decode()
    Notification.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    older = client.get("/requests/").content.decode()

    assert "just now" in fresh and "0\xa0minutes" not in fresh
    assert "5\xa0minutes ago" in older and "just now" not in older


def test_asking_for_what_a_grant_already_unmasks_names_the_grant(world, client):
    grant = _approved(world)
    grant.refresh_from_db()

    page = _as(client, world.alice).post(NEW, _form(f"column:{_column('email').pk}")).content.decode()

    until = timezone.localtime(grant.expires_at).strftime("%H:%M %Z, %-d %b")
    assert (
        f"Nothing in this scope is masked for you: your grant {grant.ref} already covers it until {until}"
        in (page)
    )
    assert AccessRequest.objects.count() == 1


def test_asking_for_what_is_not_masked_at_all_is_a_sentence(world, client):
    page = _as(client, world.alice).post(NEW, _form(f"column:{_column('id').pk}")).content.decode()

    assert "Nothing in this scope is masked for you; there is nothing to request." in page


# Revoke and relinquish: a confirmation first


def test_revoke_asks_for_confirmation_and_an_optional_reason(world, client):
    grant = _approved(world)
    _as(client, world.dave)

    detail = client.get(f"/requests/{grant.pk}/").content.decode()
    page = client.get(f"/requests/{grant.pk}/revoke/confirm/")
    bare = _action(client, grant, "revoke")

    assert f'<a class="button danger" href="/requests/{grant.pk}/revoke/confirm/">Revoke</a>' in detail
    assert 'method="get"' not in detail, "a link, not a GET form whose URL ends in a bare '?'"
    body = page.content.decode()
    assert f"Revoke {grant.ref}?" in body and "Alice Engineer loses" in body
    assert 'name="reason"' in body and 'name="confirm"' in body
    assert bare.status_code == 302 and bare["Location"] == f"/requests/{grant.pk}/revoke/confirm/"
    assert _state(grant) == State.APPROVED, "a POST without the confirmation changes nothing"


def test_the_revokers_reason_reaches_the_requester(world, client):
    grant = _approved(world)

    response = _confirmed(
        _as(client, world.dave), grant, "revoke", reason="Incident closed, access not needed"
    )

    assert response["Location"] == f"/requests/{grant.pk}/"
    assert _state(grant) == State.REVOKED
    event = AuditEvent.objects.get(action="request.revoked")
    assert event.detail["reason"] == "Incident closed, access not needed"
    _as(client, world.alice)
    inbox = client.get("/requests/").content.decode()
    detail = client.get(f"/requests/{grant.pk}/").content.decode()
    assert "was revoked by dave: “Incident closed, access not needed”" in inbox
    assert "Why it was revoked" in detail and "<q>Incident closed, access not needed</q>" in detail


def test_a_revocation_without_a_reason_says_nothing_more(world, client):
    grant = _approved(world)

    _confirmed(_as(client, world.dave), grant, "revoke")

    assert "reason" not in AuditEvent.objects.get(action="request.revoked").detail
    inbox = _as(client, world.alice).get("/requests/").content.decode()
    assert "was revoked by dave." in inbox


def test_a_too_long_revocation_reason_is_shown_on_the_confirmation_page(world, client):
    grant = _approved(world)

    page = _confirmed(_as(client, world.dave), grant, "revoke", reason="x" * 2001)

    assert page.status_code == 200 and f"Revoke {grant.ref}?" in page.content.decode()
    assert "at most 2000 characters" in page.content.decode()
    assert _state(grant) == State.APPROVED


def test_relinquish_asks_for_confirmation_and_names_the_extensions_that_end_too(world, client):
    grant = _approved(world)
    grant.refresh_from_db()
    extension = world.request("email", duration=timedelta(hours=1), extends=grant)
    _as(client, world.alice)

    page = client.get(f"/requests/{grant.pk}/relinquish/confirm/").content.decode()
    bare = _action(client, grant, "relinquish")

    detail = client.get(f"/requests/{grant.pk}/").content.decode()
    assert f'<a class="button" href="/requests/{grant.pk}/relinquish/confirm/">Relinquish now</a>' in detail
    assert f"Give up {grant.ref}?" in page and "You lose access" in page
    words = " ".join(page.split())
    assert (
        f'Its extension <a href="/requests/{extension.pk}/">{extension.ref}</a> (pending) ends too.' in words
    )
    assert 'name="reason"' not in page
    assert bare["Location"] == f"/requests/{grant.pk}/relinquish/confirm/"
    assert _state(grant) == State.APPROVED
    _confirmed(client, grant, "relinquish")
    assert (_state(grant), _state(extension)) == (State.RELINQUISHED, State.CANCELLED)


def test_the_confirmation_page_refuses_whom_the_action_is_not_for(world, client):
    grant = _approved(world)

    assert _as(client, world.bob).get(f"/requests/{grant.pk}/relinquish/confirm/").status_code == 403
    assert _as(client, world.eve).get(f"/requests/{grant.pk}/revoke/confirm/").status_code == 404
    assert _as(client, world.dave).get(f"/requests/{grant.pk}/approve/confirm/").status_code == 404


def test_the_confirmation_page_of_an_ended_grant_names_its_state(world, client):
    grant = _approved(world)
    grant_end(request_id=grant.pk, user=world.alice, action=Action.RELINQUISH, channel=Channel.WEB)

    response = _as(client, world.dave).get(f"/requests/{grant.pk}/revoke/confirm/", follow=True)

    assert f"{grant.ref}: cannot revoke: the request is relinquished." in response.content.decode()


# The approvals page


def test_an_extension_in_the_queue_says_which_grant_it_extends(world, client):
    grant = _approved(world)
    grant.refresh_from_db()
    extension = world.request("email", duration=timedelta(hours=1), extends=grant)

    queue = _as(client, world.bob).get("/approvals/").content.decode()

    ends = timezone.localtime(grant.expires_at).strftime("%H:%M %Z, %-d %b")
    assert f"{extension.ref}</a>: Alice Engineer asks for more time on" in queue
    assert f">{grant.ref}</a> (ends {ends})" in queue


def test_revoking_one_grant_names_the_grants_still_in_force_on_its_database(world, client):
    email = _approved(world)
    phone = request_approve(request_id=world.request("phone").pk, approver=world.bob, channel=Channel.WEB)
    _as(client, world.dave)

    confirm = client.get(f"/requests/{phone.pk}/revoke/confirm/").content.decode()
    first = client.post(f"/requests/{phone.pk}/revoke/", {"confirm": "1"}, follow=True).content.decode()
    last = client.post(f"/requests/{email.pk}/revoke/", {"confirm": "1"}, follow=True).content.decode()

    assert f"Still in force on {email.database} afterwards" in confirm and email.ref in confirm
    assert f"{phone.ref} revoked. Still in force on {email.database}: {email.ref}" in first
    assert f"{email.ref} revoked. It no longer unmasks anything" in last


def test_break_glass_reviews_are_refused_to_someone_who_administers_nothing(world, client):
    page = _as(client, world.alice).get("/breakglass/reviews/")

    assert page.status_code == 403
    assert "Break-glass reviews are for project administrators." in page.content.decode()
    assert _as(client, world.dave).get("/breakglass/reviews/").status_code == 200


def test_approving_an_extension_says_when_its_grant_starts(world, client):
    grant = _approved(world)
    grant.refresh_from_db()
    extension = world.request("email", duration=timedelta(hours=1), extends=grant)

    page = _as(client, world.bob).post(f"/requests/{extension.pk}/approve/", follow=True).content.decode()

    assert (
        f"{extension.ref} approved: the grant starts at {timezone.localtime(grant.expires_at):%H:%M}" in page
    )


def test_an_auto_approved_request_says_so_instead_of_counting_approvals(world, client):
    world.policy.auto_approve = True
    world.policy.save()
    request = world.request("email")

    page = _as(client, world.alice).get(f"/requests/{request.pk}/").content.decode()

    assert "Approved automatically" in page and "0 of 1" not in page


def test_an_extensions_page_says_it_asks_for_more_time_on_the_grant_it_extends(world, client):
    grant = _approved(world)
    _as(client, world.alice).post(f"{NEW}?extends={grant.pk}", {"duration": "1", "reason": "still digging"})
    extension = AccessRequest.objects.exclude(pk=grant.pk).get()

    body = _as(client, world.bob).get(f"/requests/{extension.pk}/").content.decode()

    assert "asks to unmask" not in body
    assert "asks for more time on <strong>prod-pg/shop/public.customers (email)</strong>: 1 hour more" in body
    assert f'extending the grant of <a href="/requests/{grant.pk}/">{grant.ref}</a>' in body


def test_my_requests_offers_request_access_only_to_someone_who_may_request(world, oncall, client):
    alice_page = _as(client, world.alice).get("/requests/").content.decode()
    eve_page = _as(client, world.eve).get("/requests/").content.decode()
    oncall.breakglass_roles.get().users.add(world.eve)
    eve_on_call = client.get("/requests/").content.decode()

    assert f'href="{NEW}">Request access</a>' in alice_page
    assert f'href="{NEW}"' not in eve_page
    assert "You cannot request unmask in any project yet" in eve_page
    assert f'href="{NEW}"' not in eve_on_call and 'href="/breakglass/">Break glass</a>' in eve_on_call


def _cards(page) -> list[str]:
    body = page.content.decode()
    return [h for h in ("Request access", "Approve", "Policy", "Compliance") if f'">{h}</h2>' in body]


def test_home_shows_a_card_only_for_what_the_person_can_do(world, client):
    auditor = make_user("audrey")
    grant_project_perm(auditor, "view_audit", world.project)

    assert _cards(_as(client, world.alice).get("/")) == ["Request access"]
    assert _cards(_as(client, world.bob).get("/")) == ["Approve"], "an approver by role, nothing pending"
    assert _cards(_as(client, world.dave).get("/")) == ["Policy"]
    assert _cards(_as(client, auditor).get("/")) == ["Compliance"]
    nobody = _as(client, world.eve).get("/").content.decode()
    assert _cards(client.get("/")) == [] and "You have no access role in Veil yet" in nobody
    assert "You administer no project" not in nobody and "You audit no project" not in nobody


def test_an_administrators_own_break_glass_is_not_counted_as_theirs_to_review(world, oncall, client):
    oncall.breakglass_roles.get().users.add(world.dave)
    _break_glass(world, world.dave)

    home = _as(client, world.dave).get("/").content.decode()

    assert "break-glass grant to review" not in home
    assert "1 break-glass grant of yours waits for another administrator's review." in home


@pytest.mark.parametrize("url", [NEW, "/breakglass/"])
def test_a_scope_not_in_the_database_is_named_without_djangos_stock_message(world, oncall, client, url):
    page = _as(client, world.alice).post(
        f"{url}?database={world.database.pk}", _form("column:999999", duration="30")
    )

    assert page.context["form"].errors["scope"] == [
        "column:999999 is not a table or column of this database: tick one from the list."
    ]
    assert not AccessRequest.objects.exists()
