"""The audit pages: for compliance readers only, and only the projects they audit."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from audit.models import Channel, ExportJob, ExportState
from audit.services import SYSTEM, Target, checkpoint_create, record_event, record_unmask_decisions
from audit.tasks import run_export
from tests.factories import grant_project_perm, make_project, make_user

pytestmark = pytest.mark.django_db

PAGES = [
    ("audit:dashboard", ()),
    ("audit:events", ()),
    ("audit:report", ("unmasks",)),
    ("audit:report", ("in_force",)),
    ("audit:report", ("policy",)),
    ("audit:report", ("breakglass",)),
    ("audit:report", ("denied",)),
    ("audit:exports", ()),
]


@pytest.fixture
def people(shop):
    analytics = make_project("analytics")
    dave = make_user("dave", display_name="Dave Compliance")
    grant_project_perm(dave, "view_audit", shop)
    alice = make_user("alice")
    grant_project_perm(alice, "request_unmask", shop)
    staff = make_user("sam", is_staff=True)
    for project, secret in (("shop", "shop-secret-target"), ("analytics", "analytics-secret-target")):
        record_event(
            action="grant.created",
            actor=SYSTEM,
            channel=Channel.WEB,
            target=Target("grant", project, secret),
            project=project,
            detail={"request": "REQ-1"},
        )
    record_unmask_decisions(
        service_account="p",
        principal_type="user",
        principal_id="1",
        principal_name="alice",
        query_id="q",
        policy_version=1,
        asserted_groups=[],
        unmasked=[{"column": "i/shop/s.t.email", "reason": "grant", "id": "shop"}],
    )
    checkpoint_create()
    return {"dave": dave, "alice": alice, "staff": staff, "analytics": analytics}


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_pages_render_for_a_compliance_reader(client, people, name, args):
    client.force_login(people["dave"])

    response = client.get(reverse(name, args=args))

    assert response.status_code == 200
    assert b"You audit: shop." in response.content


@pytest.mark.parametrize(("name", "args"), [*PAGES, ("audit:event", (1,))])
def test_pages_are_refused_to_an_engineer_without_view_audit(client, people, name, args):
    client.force_login(people["alice"])

    assert client.get(reverse(name, args=args)).status_code == 403


def test_pages_send_anonymous_visitors_to_sign_in(client, people):
    response = client.get(reverse("audit:dashboard"))

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_reader_sees_only_the_projects_they_audit(client, people):
    client.force_login(people["dave"])

    events = client.get(reverse("audit:events")).content.decode()
    report = client.get(reverse("audit:report", args=["unmasks"])).content.decode()

    assert "shop-secret-target" in events and "analytics-secret-target" not in events
    assert "i/shop/s.t.email" in report
    assert client.get(reverse("audit:event", args=[1])).status_code == 200
    assert client.get(reverse("audit:event", args=[2])).status_code == 404, "an analytics event"


def test_staff_see_every_project(client, people):
    client.force_login(people["staff"])

    events = client.get(reverse("audit:events")).content.decode()

    assert "shop-secret-target" in events and "analytics-secret-target" in events
    assert "You audit every project." in events


def test_the_event_page_shows_its_chain_position(client, people):
    client.force_login(people["dave"])

    page = client.get(reverse("audit:event", args=[1])).content.decode()

    assert "matches its hash" in page and "links" in page and "signature valid" in page


def test_filters_reach_the_event_search(client, people):
    client.force_login(people["staff"])

    page = client.get(reverse("audit:events"), {"project": "analytics"}).content.decode()
    bad = client.get(reverse("audit:events"), {"from": "yesterday"}).content.decode()

    assert "analytics-secret-target" in page and "shop-secret-target" not in page
    assert "from: &#x27;yesterday&#x27; is not a date" in bad


def test_a_far_future_date_is_a_message_on_every_page_that_takes_one(client, people):
    client.force_login(people["dave"])

    events = client.get(reverse("audit:events"), {"from": "9999-12-31", "to": "9999-12-31"})
    in_force = client.get(reverse("audit:report", args=["in_force"]), {"at": "9999-12-31"})
    export = client.post(
        reverse("audit:exports"), {"report": "events", "format": "csv", "to": "9999-12-31"}, follow=True
    )

    for response in (events, in_force, export):
        assert response.status_code in (200, 400)
        assert "must be between 1970-01-01 and 8999-12-31" in response.content.decode()
    assert not ExportJob.objects.exists()


def test_an_export_from_the_web_is_queued_then_downloaded_with_its_manifest(
    client, people, django_capture_on_commit_callbacks
):
    client.force_login(people["dave"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("audit:exports"), {"report": "events", "format": "csv", "action": "grant"}
        )
    assert response.status_code == 302 and len(callbacks) == 1
    job = ExportJob.objects.get()
    assert job.state == ExportState.PENDING and job.filters == {"action": "grant"}

    run_export(job.pk)
    listing = client.get(reverse("audit:exports")).content.decode()
    download = client.get(reverse("audit:export-download", args=[job.pk]))
    manifest = client.get(reverse("audit:export-manifest", args=[job.pk]))

    assert "Download" in listing
    body = b"".join(download.streaming_content).decode()
    assert "shop-secret-target" in body and "analytics-secret-target" not in body
    assert json.loads(b"".join(manifest.streaming_content))["sha256"] == ExportJob.objects.get().sha256
    client.force_login(people["staff"])
    assert client.get(reverse("audit:export-download", args=[job.pk])).status_code == 404, "not theirs"


def test_an_engineer_cannot_start_an_export(client, people):
    client.force_login(people["alice"])

    assert client.post(reverse("audit:exports"), {"report": "events", "format": "csv"}).status_code == 403
    assert not ExportJob.objects.exists()


def test_the_navigation_offers_the_audit_pages(client, people):
    client.force_login(people["dave"])

    page = client.get(reverse("audit:dashboard")).content.decode()

    assert reverse("audit:events") in page and "Compliance" in page


def test_the_event_type_filter_offers_every_known_event_by_name(client, people):
    client.force_login(people["dave"])

    page = client.get(reverse("audit:events")).content.decode()

    assert 'list="event-types"' in page
    assert '<option value="request.approved">' in page and '<option value="grant.revoked">' in page
