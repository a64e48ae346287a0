"""Pages cost the same number of queries whatever the amount of data: 3 items or 30.

Each test loads a page with a few items, counts its queries, adds ten times as many items and
checks the count has not grown (pytest-django's `django_assert_max_num_queries`), and that the page
still shows every item. `bench/page_queries.py` finds such pages over the whole product.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import Role
from jitaccess.models import ProjectAccessSettings
from jitaccess.services.breakglass import breakglass_take
from jitaccess.services.requests import request_approve, request_deny
from masking.services.catalog import catalog_upsert
from tests.factories import catalog_payload, grant_project_perm, make_user

pytestmark = pytest.mark.django_db

_people = count()


def _queries(client, url: str) -> int:
    client.get(url)  # warm: the live policy and other per-process caches are built once
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def _requesters(world, n: int, *, role: Role | None = None, group: Group | None = None) -> list:
    people = []
    for _ in range(n):
        person = make_user(f"engineer{next(_people)}")
        grant_project_perm(person, "request_unmask", world.project)
        if role is not None:
            role.users.add(person)
        if group is not None:
            person.groups.add(group)
        people.append(person)
    return people


def _pending(world, n: int) -> list:
    """`n` pending requests, each by another person, all waiting for the pii-approvers."""
    return [world.request(requester=person) for person in _requesters(world, n)]


@pytest.mark.parametrize("url", ["/approvals/", "/"])
def test_the_approval_queue_costs_the_same_for_3_or_30_requests(
    world, client, django_assert_max_num_queries, url
):
    client.force_login(world.bob)
    _pending(world, 3)
    few = _queries(client, url)

    _pending(world, 27)
    with django_assert_max_num_queries(few):
        response = client.get(url)

    if url == "/approvals/":
        assert len(response.context["queue"]) == 30
    else:
        assert response.context["pending_approvals"] == 30


def test_the_approval_queue_still_judges_each_pool_of_approvers(world, client):
    """Requests whose approvers differ (a role, or the project's approvers by permission) are each
    judged against their own pool, not the pool of the request before them."""
    client.force_login(world.bob)
    by_role = _pending(world, 2)
    world.policy.approver_roles.clear()  # later requests: people with approve_request on the project
    by_perm = _pending(world, 2)

    queue = client.get("/approvals/").context["queue"]
    assert {r.pk for r in queue} == {r.pk for r in by_role}, "bob is in the role, not approve_request"

    grant_project_perm(world.bob, "approve_request", world.project)
    queue = client.get("/approvals/").context["queue"]
    assert {r.pk for r in queue} == {r.pk for r in by_role + by_perm}


@pytest.fixture
def oncall(world):
    role = Role.objects.create(name="security-oncall")
    access = ProjectAccessSettings.objects.create(
        project=world.project, breakglass_max_duration=timedelta(hours=1)
    )
    access.breakglass_roles.add(role)
    return role


def _broken_glass(world, role: Role, n: int) -> None:
    for person in _requesters(world, n, role=role):
        breakglass_take(
            requester=person,
            scope=world.scope("email"),
            duration=timedelta(minutes=30),
            reason="SEV1 checkout down",
            channel=Channel.WEB,
        )


@pytest.mark.parametrize("url", ["/breakglass/reviews/", "/"])
def test_break_glass_reviews_cost_the_same_for_3_or_30_grants(
    world, oncall, client, django_assert_max_num_queries, url
):
    """dave administers the project through an object permission (not a superuser): whether he
    may review each grant is read once for the page, not once per grant."""
    client.force_login(world.dave)
    _broken_glass(world, oncall, 3)
    few = _queries(client, url)

    _broken_glass(world, oncall, 27)
    with django_assert_max_num_queries(few):
        response = client.get(url)

    if url == "/":
        assert response.context["unreviewed_breakglass"] == 30
    else:
        assert len(response.context["reviewable"]) == len(response.context["pending"]) == 30


def _decided(world, n: int, role: Role, group: Group) -> None:
    """`n` requests, each by another person holding `role` directly or through `group`."""
    for index, person in enumerate(_requesters(world, n)):
        if index % 2:
            role.users.add(person)
        else:
            person.groups.add(group)
        created = world.request(requester=person)
        if index % 3:
            request_approve(request_id=created.pk, approver=world.bob, channel=Channel.WEB)
        else:
            request_deny(request_id=created.pk, approver=world.bob, reason="not needed", channel=Channel.WEB)


def test_policy_insights_cost_the_same_for_3_or_30_requesters(world, client, django_assert_max_num_queries):
    analysts = Group.objects.create(name="analysts")
    role = Role.objects.create(name="analysts")
    role.groups.add(analysts)
    client.force_login(world.dave)
    _decided(world, 3, role, analysts)
    few = _queries(client, "/policy/insights/")

    _decided(world, 27, role, analysts)
    with django_assert_max_num_queries(few):
        response = client.get("/policy/insights/")

    loads = {load.role: load for load in response.context["roles"]}
    assert (loads["analysts"].approved, loads["analysts"].denied) == (20, 10)
    (email,) = [row["c"] for row in response.context["requested"] if row["c"].column == "email"]
    assert email.requests == 30
    assert dict(email.role_counts) == {"analysts": 30}


def test_semantic_types_count_catalog_columns_in_the_database(world, client):
    """The page counts each type's columns with one aggregate, never by reading the catalog."""
    columns = [{"name": f"contact_{i}", "data_type": "text", "semantic_type": "email"} for i in range(40)]
    payload = catalog_payload(columns=[{"name": "id", "data_type": "bigint"}, *columns])
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    client.force_login(world.dave)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/policy/semantic-types/")

    rows = {row["type"].key: row for row in response.context["rows"]}
    assert (rows["email"]["columns"], rows["email"]["rules"]) == (40, 1)
    reads = [q["sql"] for q in ctx.captured_queries if 'FROM "masking_column"' in q["sql"]]
    assert reads and all("GROUP BY" in sql for sql in reads)
