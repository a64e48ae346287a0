"""The request form, table first, and its approval preview, through Django's test client: the
tables say how much of each is masked for the person, the chosen table's columns say why, and the
preview (the page's and /requests/new/preview/'s) says what sending the request would lead to, as
`request_create` then does. The browser journey is tests/e2e/test_request_form.py."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.test import Client

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from identity.models import Role
from jitaccess.models import AccessRequest, ApprovalPolicy
from jitaccess.selectors.approval_preview import approval_preview
from jitaccess.selectors.approvers import eligible_approvers
from jitaccess.selectors.scopes import Scope
from jitaccess.services.requests import request_approve, request_create
from masking.models import Column, Database, Exemption, Table
from masking.services.catalog import catalog_upsert
from masking.services.policy import exemption_create
from tests.factories import catalog_payload, grant_project_perm, make_project, make_user
from tests.jitaccess.stages import DATA_OWNER, SECURITY, staged_world

pytestmark = pytest.mark.django_db
NEW = "/requests/new/"
PREVIEW = "/requests/new/preview/"


@pytest.fixture
def orders(world) -> Table:
    """A second table in prod-pg/shop: public.orders (id, total_cents, shipping_address)."""
    payload = catalog_payload()
    payload["databases"][0]["schemas"][0]["tables"] = [
        {
            "name": "orders",
            "columns": [
                {"name": "id", "data_type": "bigint", "classification_level": 1},
                {"name": "total_cents", "data_type": "integer", "classification_level": 1},
                {"name": "shipping_address", "data_type": "text", "classification_level": 3},
            ],
        }
    ]
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    return Table.objects.get(name="orders")


@pytest.fixture
def billing(world) -> Database:
    """Another project's database, with a policy and approvers of its own that alice must never see."""
    project = make_project("billing")
    payload = catalog_payload(instance="billing-pg", project="billing")
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    treasurers = Role.objects.create(name="treasurers")
    treasurers.users.add(make_user("tess", display_name="Tess Treasurer"))
    secret = ApprovalPolicy.objects.create(project=project, title="Billing vault", condition="true")
    secret.approver_roles.add(treasurers)
    return Database.objects.get(instance__key="billing-pg")


def _as(client: Client, user) -> Client:
    client.force_login(user)
    return client


def _column(name: str, table: str = "customers") -> Column:
    return Column.objects.get(name=name, table__name=table, table__schema__database__instance__key="prod-pg")


def _scope(name: str, table: str = "customers") -> str:
    return f"column:{_column(name, table).pk}"


def _row(body: str, column: str) -> str:
    """The column's row of the chosen table's list."""
    start = body.rindex("<tr", 0, body.index(f"<code>{column}</code>"))
    return body[start : body.index("</tr>", start)]


def _preview(client: Client, world, *scope: str, **params: str):
    return client.get(PREVIEW, {"database": world.database.pk, "scope": list(scope), **params})


# Table first


def test_each_table_says_how_much_of_it_is_masked_for_the_person(world, orders, client):
    """customers: email (a rule) and phone (unreviewed, looks sensitive) masked, id not sensitive;
    orders: only shipping_address (classified 3) masked. Her grant on email then shows it."""
    page = _as(client, world.alice).get(NEW, {"database": world.database.pk}).content.decode()

    assert "2 of 3 columns masked for you" in page and "1 of 3 columns masked for you" in page
    assert "3 of 6 columns masked for you" in page, "the whole database"
    assert 'name="scope"' not in page, "no columns to tick before a table is chosen"

    granted = world.request("email")
    request_approve(request_id=granted.pk, approver=world.bob, channel=Channel.WEB)
    page = _as(client, world.alice).get(NEW, {"database": world.database.pk}).content.decode()
    assert "1 of 3 columns masked for you" in page and "2 of 6 columns masked for you" in page


def test_a_chosen_table_lists_its_columns_saying_why_each_is_masked_or_visible(world, orders, client):
    granted = world.request("email")
    request_approve(request_id=granted.pk, approver=world.bob, channel=Channel.WEB)
    customers = _column("email").table

    page = _as(client, world.alice).get(NEW, {"database": world.database.pk, "table": customers.pk})

    body = page.content.decode()
    assert "What to unmask in public.customers" in body
    assert "Visible to you" in _row(body, "email") and f"your grant {granted.ref} until" in _row(
        body, "email"
    )
    assert "disabled" in _row(body, "email"), "a column in clear cannot be ticked"
    assert "Visible to you" in _row(body, "id") and "not sensitive" in _row(body, "id")
    assert "Masked" in _row(body, "phone") and "looks like level 3" in _row(body, "phone")
    assert "disabled" not in _row(body, "phone")
    assert "shipping_address" not in body.split("What to unmask")[1], "only the chosen table's columns"


def test_a_column_shown_by_a_standing_exemption_names_the_role_and_its_reason(world, client):
    support = Role.objects.create(name="support-agents")
    support.users.add(world.alice)
    exemption_create(
        project=world.project,
        reason="Support confirms callers by phone number",
        condition='resource.column_name == "phone"',
        roles=[support],
        created_by=None,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    assert Exemption.objects.count() == 1

    page = _as(client, world.alice).get(NEW, {"database": world.database.pk}).content.decode()

    assert (
        "a standing exemption for your role “support-agents” (“Support confirms callers by phone number”)"
        in _row(page, "phone")
    )
    assert "Masked" in _row(page, "email") and "rule “emails” (semantic type “email”)" in _row(page, "email")


def test_the_filter_narrows_the_table_list_without_javascript(world, orders, client):
    page = _as(client, world.alice).get(NEW, {"database": world.database.pk, "q": "total"})

    listed = [t.label for t in page.context["picker"].tables]
    assert listed == ["public.orders"], "a column's name finds its table"


def test_a_big_database_lists_a_capped_number_of_tables_and_says_so(world, orders, client, monkeypatch):
    monkeypatch.setattr("jitaccess.forms.TABLES_LISTED", 1)

    page = _as(client, world.alice).get(NEW, {"database": world.database.pk})

    assert "Showing 1 of 2 tables: filter to narrow the list." in page.content.decode()


def test_the_whole_database_is_a_choice_of_the_list(world, orders, client):
    page = _as(client, world.alice).get(NEW, {"database": world.database.pk, "table": "all"})

    body = page.content.decode()
    assert 'name="scope" value="database" checked' in body
    assert "Every table of <strong>prod-pg/shop</strong>" in body


def test_a_column_named_by_the_data_paths_refusal_chooses_its_table_and_ticks_it(world, orders, client):
    page = _as(client, world.alice).get(NEW, {"column": "prod-pg/shop/public.orders.shipping_address"})

    picker = page.context["picker"]
    assert picker.chosen.label == "public.orders"
    assert [c.column.name for c in picker.chosen.columns if c.checked] == ["shipping_address"]
    assert "prod PII" in page.content.decode(), "and the preview already names the policy"


# The approval preview


def test_the_preview_names_the_policy_who_is_asked_and_the_longest_duration(world, client):
    answer = _preview(_as(client, world.alice), world, _scope("phone"), duration="4")

    assert answer.status_code == 200
    body = answer.content.decode()
    assert "<strong>prod PII</strong>" in body
    assert "1 approval from the role “pii-approvers”" in body and "(Bob, Carol)" in body
    assert "At most 7 days in this project" in body


def test_the_preview_agrees_with_what_submission_then_does(world, client):
    """Policies that read the environment, the classification and the duration: for each scope and
    duration the preview's policy and approvers are those of the request then created."""
    world.policy.position = 9
    world.policy.save()
    owners = Role.objects.create(name="data-owners")
    owners.users.add(world.dave)
    long_ones = ApprovalPolicy.objects.create(
        project=world.project, title="Long PII", condition="request.duration_hours > 24.0", position=1
    )
    long_ones.approver_roles.add(owners)
    ApprovalPolicy.objects.create(
        project=world.project,
        title="Restricted email",
        condition="request.classification_level >= 3",
        position=2,
        approvals_required=2,
    ).approver_roles.add(Role.objects.get(name="pii-approvers"))
    cases = [("phone", "4"), ("phone", "168"), ("email", "4"), ("email", "24"), ("email", "168")]
    for column, hours in cases:
        body = _preview(_as(client, world.alice), world, _scope(column), duration=hours).content.decode()
        created = request_create(
            requester=world.alice,
            scope=world.scope(column),
            duration=timedelta(hours=int(hours)),
            reason="compare",
            channel=Channel.WEB,
        )
        assert f"<strong>{created.policy_title}</strong>" in body, (column, hours)
        names = ", ".join(sorted(str(p) for p in eligible_approvers(created)))
        assert f"{created.approvals_required} approval{'s' if created.approvals_required > 1 else ''}" in body
        assert f"({names})" in body, (column, hours)
        AccessRequest.objects.filter(pk=created.pk).update(state="cancelled")


def test_a_policy_in_stages_is_shown_stage_by_stage_in_order(world, client):
    staged_world(world, security_quorum=2)

    body = _preview(_as(client, world.alice), world, _scope("phone"), duration="1").content.decode()

    owner, security = body.index(DATA_OWNER), body.index(SECURITY)
    assert owner < security
    assert "1 approval from the role “pii-approvers”" in body and "(Bob, Carol)" in body
    assert "2 approvals from the role “security”" in body and "(Carol, Frank, Grace)" in body
    assert "once the stage before is approved" in body


def test_an_auto_approving_policy_says_approved_at_once(world, client):
    world.policy.auto_approve = True
    world.policy.save()

    body = _preview(_as(client, world.alice), world, _scope("phone"), duration="1").content.decode()

    assert "Approved at once" in body and "Who will be asked" not in body


def test_an_on_call_policy_names_its_schedule_without_asking_the_provider(world, client, caplog):
    world.policy.oncall_provider = "pagerduty"
    world.policy.oncall_schedule_id = "P123ABC"
    world.policy.oncall_responder_auto_approve = True
    world.policy.oncall_responder_max_duration = timedelta(hours=4)
    world.policy.save()

    with caplog.at_level(logging.WARNING, logger="jitaccess"):
        short = _preview(_as(client, world.alice), world, _scope("phone"), duration="1").content.decode()
        long = _preview(client, world, _scope("phone"), duration="24").content.decode()

    assert "Whoever is on call for PagerDuty schedule P123ABC may approve too." in short
    assert "a request of up to 4 hours is approved at once" in short
    assert "approved at once" not in long, "longer than the responder's maximum"
    assert not [r for r in caplog.records if "on-call" in r.getMessage()], "the provider was not asked"


def test_a_duration_over_the_policy_cap_is_pointed_out(world, client):
    world.policy.max_duration = timedelta(days=1)
    world.policy.save()

    body = _preview(_as(client, world.alice), world, _scope("phone"), duration="168").content.decode()

    assert "At most 1 day under the policy &#x27;prod PII&#x27; (you asked 7 days): choose a shorter" in body


def test_a_policy_reading_the_duration_waits_for_one(world, client):
    world.policy.condition = "request.duration_hours <= 8.0"
    world.policy.save()

    waiting = _preview(_as(client, world.alice), world, _scope("phone")).content.decode()
    custom = _preview(client, world, _scope("phone"), duration="custom", custom_hours="6").content.decode()

    assert "depends on how long you ask for: choose a duration" in waiting
    assert "<strong>prod PII</strong>" in custom


def test_no_matching_policy_names_the_project_administrators(world, client):
    world.policy.enabled = False
    world.policy.save()

    body = _preview(_as(client, world.alice), world, _scope("phone"), duration="1").content.decode()

    assert "None matches: a project administrator approves" in body
    assert "1 approval from the project&#x27;s administrators" in body and "(dave)" in body


def test_a_policy_nobody_can_approve_says_so(world, client):
    Role.objects.get(name="pii-approvers").users.clear()

    body = _preview(_as(client, world.alice), world, _scope("phone"), duration="1").content.decode()

    assert "nobody can approve it now: ask a project administrator" in body


def test_a_scope_with_nothing_masked_is_pointed_out(world, client):
    body = _preview(_as(client, world.alice), world, _scope("id"), duration="1").content.decode()

    assert "Nothing in this scope is masked for you" in body


def test_nothing_ticked_yet_asks_for_a_tick(world, client):
    answer = _preview(_as(client, world.alice), world)

    assert answer.status_code == 200
    assert "Tick what you need and choose a duration" in answer.content.decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"database": ""}, "database"),
        ({"database": "shop"}, "database"),
        ({"duration": "99"}, "duration"),
        ({"duration": "custom", "custom_hours": "two"}, "custom_hours"),
        ({"duration": "custom", "custom_hours": "0"}, "custom_hours"),
        ({"duration": "custom", "custom_hours": str(10**12)}, "custom_hours"),
        ({"scope": ["column:999999"]}, "scope"),
        ({"scope": ["database", "PHONE"]}, "scope"),
        ({"scope": ["PHONE", "SHIPPING"]}, "scope"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(world, orders, client, params, field):
    query = {"database": world.database.pk, "scope": ["PHONE"], "duration": "4", **params}
    names = {"PHONE": _scope("phone"), "SHIPPING": _scope("shipping_address", "orders")}
    query["scope"] = [names.get(value, value) for value in query["scope"]]

    answer = _as(client, world.alice).get(PREVIEW, query)

    assert answer.status_code == 400
    assert f'data-field="{field}"' in answer.content.decode()


def test_another_projects_database_is_a_404_and_its_policy_never_shows(world, billing, client):
    _as(client, world.alice)
    foreign_table = Table.objects.get(schema__database=billing)

    theirs = client.get(
        PREVIEW, {"database": billing.pk, "scope": f"table:{foreign_table.pk}", "duration": "1"}
    )
    mixed = client.get(PREVIEW, {"database": world.database.pk, "scope": f"table:{foreign_table.pk}"})

    assert theirs.status_code == 404
    assert mixed.status_code == 400 and 'data-field="scope"' in mixed.content.decode()
    for answer in (theirs, mixed):
        assert "Billing vault" not in answer.content.decode() and "Tess" not in answer.content.decode()


def test_someone_who_may_not_request_gets_a_404_and_a_stranger_the_sign_in_page(world, client):
    assert _preview(_as(client, world.eve), world, _scope("phone")).status_code == 404
    client.logout()
    assert _preview(client, world, _scope("phone")).status_code == 302


def test_an_extension_is_previewed_for_its_grant_and_only_by_its_requester(world, client):
    granted = world.request("email")
    request_approve(request_id=granted.pk, approver=world.bob, channel=Channel.WEB)
    grant_project_perm(world.carol, "request_unmask", world.project)

    mine = _preview(_as(client, world.alice), world, duration="4", extends=str(granted.pk))
    page = client.get(NEW, {"extends": granted.pk})
    theirs = _preview(_as(client, world.carol), world, duration="4", extends=str(granted.pk))

    assert mine.status_code == 200 and "<strong>prod PII</strong>" in mine.content.decode()
    assert "Nothing in this scope" not in mine.content.decode(), "an extension asks for more time"
    assert f'data-preview-url="{PREVIEW}?database={world.database.pk}&amp;extends={granted.pk}"' in (
        page.content.decode()
    )
    assert theirs.status_code in (403, 404)


def test_the_preview_changes_nothing_and_answers_only_a_get(world, client):
    _as(client, world.alice)
    events = AuditEvent.objects.count()

    _preview(client, world, _scope("phone"), duration="4")
    posted = client.post(PREVIEW, {"database": world.database.pk, "scope": _scope("phone"), "duration": "4"})

    assert posted.status_code == 405
    assert AuditEvent.objects.count() == events and not AccessRequest.objects.exists()


def test_without_javascript_the_preview_button_shows_it_and_sends_nothing(world, client):
    data = {"scope": [_scope("phone")], "duration": "4", "reason": "", "preview": "1"}

    page = _as(client, world.alice).post(f"{NEW}?database={world.database.pk}", data)

    body = page.content.decode()
    assert page.status_code == 200 and not AccessRequest.objects.exists()
    assert "<strong>prod PII</strong>" in body and "(Bob, Carol)" in body
    assert 'class="errorlist' not in body, "the empty reason is not judged yet"
    form, picker = page.context["form"], page.context["picker"]
    assert form["duration"].value() == "4", "what was chosen is shown again"
    assert [c.column.name for c in picker.chosen.columns if c.checked] == ["phone"]


def test_a_sent_form_with_errors_keeps_its_preview(world, client):
    data = {"scope": [_scope("phone")], "duration": "4", "reason": ""}

    page = _as(client, world.alice).post(f"{NEW}?database={world.database.pk}", data)

    body = page.content.decode()
    assert "Say why you need to see these values." in body
    assert "<strong>prod PII</strong>" in body
    assert not AccessRequest.objects.exists()


def test_the_preview_reads_the_scope_a_request_would_have(world):
    """The preview of a whole table is the request's for the whole table (the classification that
    decides is the table's highest)."""
    world.policy.position = 5
    world.policy.save()
    restricted = ApprovalPolicy.objects.create(
        project=world.project, title="Restricted", condition="request.classification_level >= 3", position=0
    )
    restricted.approver_roles.add(Role.objects.get(name="pii-approvers"))
    whole = approval_preview(
        requester=world.alice, scope=Scope(world.database, "public", "customers"), duration=None
    )
    phone = approval_preview(requester=world.alice, scope=world.scope("phone"), duration=None)

    assert (whole.policy_title, phone.policy_title) == ("Restricted", "prod PII")
