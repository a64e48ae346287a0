"""Access reviews end to end through the services and the pages: a campaign lists who holds standing
unmask access, each reviewer answers their own items, removals go through masking's services and
take effect on the next decision, the deadline removes or escalates, and the audit log alone gives
the evidence (the report, its CSV export and the PDF summary)."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.exports import verify_export, write_export
from audit.filters import EVERYTHING, AuditFilter
from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from jitaccess.reviews.models import AccessReviewCampaign, AccessReviewSettings, CampaignState, ItemState
from jitaccess.reviews.services import (
    AlreadyAnswered,
    NotYourItem,
    ReviewError,
    campaign_open,
    campaigns_open_due,
    campaigns_past_deadline,
    review_item_answer,
    review_settings_save,
)
from masking.models import PolicyVersion
from tests.audit.test_exports import _pdf_pages_and_text
from tests.factories import grant_project_perm, make_user
from tests.jitaccess.reviews import Reviewed, email_action, make_reviewed
from tests.test_accessibility import dangling_references, fetch, unlabelled_controls

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(world) -> Reviewed:
    return make_reviewed(world)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_a_campaign_lists_every_holding_and_never_gives_one_to_its_holder(reviewed):
    campaign = reviewed.open()
    exemption = f"exemption “Support reads customer contacts” (#{reviewed.exemption.pk})"

    shown = {
        (i.member_label, i.access_label.split(",")[0], i.reviewer.username) for i in campaign.items.all()
    }
    assert shown == {
        ("Alice Engineer (alice)", exemption, "bob"),
        ("role phone-readers", exemption, "dave"),
        ("Carol (carol)", "role phone-readers", "bob"),
        ("eve", "role phone-readers", "carol"),
    }, "balanced over bob, carol and dave; carol never reviews the role she is in, nor herself"
    [opened] = events("access_review.campaign_opened")
    assert opened.project == "shop" and opened.detail["campaign"] == campaign.ref
    assert {i["member"] for i in opened.detail["items"]} == {
        "Alice Engineer (alice)",
        "role phone-readers",
        "Carol (carol)",
        "eve",
    }
    assert opened.detail["reviewers"] == ["Bob", "Carol", "dave"], "approvers by role, the policy admin"


def test_access_unused_for_the_period_is_proposed_for_removal(reviewed):
    campaign = reviewed.open()

    alice = reviewed.item(campaign, "Alice")
    assert alice.last_unmask_at is not None and not alice.proposed_removal, "she used it yesterday"
    assert reviewed.item(campaign, "eve").proposed_removal
    assert reviewed.item(campaign, "role phone-readers").proposed_removal, "no member of the role used it"


def test_removing_takes_the_member_out_through_masking_and_the_next_decision_masks(reviewed):
    w = reviewed.world
    campaign = reviewed.open()
    alice = reviewed.item(campaign, "Alice")
    versions = PolicyVersion.objects.count()

    answer = review_item_answer(
        item_id=alice.pk, user=w.bob, decision="remove", note="left support", channel=Channel.WEB
    )

    assert answer.item.state == ItemState.REMOVED and answer.item.decided_by == w.bob
    assert list(reviewed.exemption.users.all()) == [], "alice is no longer named"
    assert list(reviewed.exemption.roles.all()) == [reviewed.readers], "the rest of the exemption stands"
    assert email_action("alice") == "mask"
    [changed] = events("exemption.updated")
    assert changed.actor_name == "Bob" and changed.detail["before"]["members"]["users"] != []
    [removed] = events("access_review.item_removed")
    assert removed.detail["note"] == "left support" and removed.detail["member"] == "Alice Engineer (alice)"
    assert removed.seq > changed.seq and removed.channel == Channel.WEB
    assert PolicyVersion.objects.count() == versions + 1, "a removal is a policy version"


def test_a_role_membership_is_removed_from_the_role(reviewed):
    w = reviewed.world
    campaign = reviewed.open()

    review_item_answer(
        item_id=reviewed.item(campaign, "Carol").pk, user=w.bob, decision="remove", channel=Channel.WEB
    )

    assert list(reviewed.readers.users.all()) == [w.eve]
    [changed] = events("role.updated")
    assert changed.target_id == "phone-readers"
    assert email_action("carol") == "mask" and email_action("eve") == "unmask"


def test_removing_the_last_member_revokes_the_exemption(reviewed):
    w = reviewed.world
    campaign = reviewed.open()

    review_item_answer(
        item_id=reviewed.item(campaign, "Alice").pk, user=w.bob, decision="remove", channel=Channel.WEB
    )
    role_item = reviewed.item(campaign, "role phone-readers")
    review_item_answer(item_id=role_item.pk, user=w.dave, decision="remove", channel=Channel.WEB)

    reviewed.exemption.refresh_from_db()
    assert reviewed.exemption.revoked_at is not None
    assert events("exemption.revoked")


def test_a_reviewer_answering_an_item_that_is_not_theirs_is_refused_and_it_is_recorded(reviewed):
    w = reviewed.world
    campaign = reviewed.open()
    alice = reviewed.item(campaign, "Alice")  # bob's

    with pytest.raises(NotYourItem, match="not yours to answer: it is Bob's"):
        review_item_answer(item_id=alice.pk, user=w.carol, decision="remove", channel=Channel.WEB)

    alice.refresh_from_db()
    assert alice.state == ItemState.PENDING and list(reviewed.exemption.users.all()) == [w.alice]
    [refused] = events("access_review.answer_refused")
    assert refused.actor_name == "Carol" and refused.detail["decision"] == "remove"
    assert not events("access_review.item_removed") and not events("exemption.updated")


def test_nobody_answers_for_their_own_access_even_as_an_administrator(reviewed):
    w = reviewed.world
    campaign = reviewed.open()
    w.dave.is_superuser = True  # may administer everything, still not review himself
    w.dave.save()
    reviewed.readers.users.add(w.dave)
    role_item = reviewed.item(campaign, "role phone-readers")  # dave's to review, but he is in it now

    with pytest.raises(NotYourItem, match="your own access"):
        review_item_answer(item_id=role_item.pk, user=w.dave, decision="keep", channel=Channel.WEB)


def test_the_same_answer_twice_changes_nothing_and_another_answer_is_refused(reviewed):
    w = reviewed.world
    campaign = reviewed.open()
    alice = reviewed.item(campaign, "Alice")

    first = review_item_answer(item_id=alice.pk, user=w.bob, decision="keep", channel=Channel.SLACK)
    again = review_item_answer(item_id=alice.pk, user=w.bob, decision="keep", channel=Channel.WEB)
    with pytest.raises(AlreadyAnswered, match="already kept by Bob"):
        review_item_answer(item_id=alice.pk, user=w.bob, decision="remove", channel=Channel.WEB)

    assert not first.repeated and again.repeated
    assert len(events("access_review.item_kept")) == 1
    assert list(reviewed.exemption.users.all()) == [w.alice]


def test_a_bad_answer_names_the_field(reviewed):
    campaign = reviewed.open()
    alice = reviewed.item(campaign, "Alice")

    with pytest.raises(ReviewError) as refused:
        review_item_answer(item_id=alice.pk, user=reviewed.world.bob, decision="maybe", channel=Channel.WEB)
    assert refused.value.field == "decision"
    with pytest.raises(ReviewError) as too_long:
        review_item_answer(
            item_id=alice.pk, user=reviewed.world.bob, decision="keep", note="x" * 2001, channel=Channel.WEB
        )
    assert too_long.value.field == "note"


def test_answering_everything_closes_the_campaign(reviewed):
    campaign = reviewed.open()
    for item in campaign.items.all():
        review_item_answer(item_id=item.pk, user=item.reviewer, decision="keep", channel=Channel.WEB)

    campaign.refresh_from_db()
    assert campaign.state == CampaignState.CLOSED and campaign.closed_at is not None
    [closed] = events("access_review.campaign_closed")
    assert closed.detail == {"campaign": campaign.ref, "kept": 4, "removed": 0}


def test_at_the_deadline_unanswered_items_are_removed_when_the_project_chose_so(reviewed):
    w = reviewed.world
    campaign = reviewed.open(on_deadline="remove")
    review_item_answer(
        item_id=reviewed.item(campaign, "Alice").pk, user=w.bob, decision="keep", channel=Channel.WEB
    )

    assert campaigns_past_deadline() == [], "not yet"
    with time_machine.travel(campaign.deadline + timedelta(minutes=1)):
        assert campaigns_past_deadline() == [campaign.pk]
        assert campaigns_past_deadline() == [], "applied once"

    campaign.refresh_from_db()
    assert campaign.state == CampaignState.CLOSED
    assert list(reviewed.exemption.users.all()) == [w.alice], "kept"
    assert list(reviewed.exemption.roles.all()) == [] and list(reviewed.readers.users.all()) == []
    removed = events("access_review.item_removed")
    assert len(removed) == 3 and {e.actor_name for e in removed} == {"Veil"}
    assert all(e.detail["deadline"] and e.detail["note"] == "No answer by the deadline" for e in removed)
    assert PolicyVersion.objects.filter(message__contains="removed at the deadline").count() == 1


def test_at_the_deadline_unanswered_items_escalate_to_the_policy_administrators(reviewed):
    w = reviewed.world
    campaign = reviewed.open(on_deadline="escalate")
    eve = reviewed.item(campaign, "eve")  # carol's

    with time_machine.travel(campaign.deadline + timedelta(minutes=1)):
        campaigns_past_deadline()

    campaign.refresh_from_db()
    eve.refresh_from_db()
    assert campaign.state == CampaignState.ESCALATED and eve.state == ItemState.ESCALATED
    [escalated] = events("access_review.items_escalated")
    assert len(escalated.detail["items"]) == 4
    with pytest.raises(NotYourItem, match="policy administrator"):
        review_item_answer(item_id=eve.pk, user=w.carol, decision="keep", channel=Channel.WEB)
    review_item_answer(item_id=eve.pk, user=w.dave, decision="remove", channel=Channel.WEB)
    assert list(reviewed.readers.users.all()) == [w.carol]
    [removed] = events("access_review.item_removed")
    assert removed.detail["escalated"] is True and removed.actor_name == "dave"


def test_campaigns_open_on_schedule_one_at_a_time(reviewed):
    w = reviewed.world
    review_settings_save(
        project=w.project,
        enabled=True,
        every_days=30,
        answer_days=7,
        on_deadline="escalate",
        unused_days=90,
        next_campaign_at=None,
        changed_by=w.dave,
        channel=Channel.WEB,
    )

    [first] = campaigns_open_due()
    assert campaigns_open_due() == [], "not due again until 30 days from now"
    settings = AccessReviewSettings.objects.get(project=w.project)
    assert settings.next_campaign_at > timezone.now() + timedelta(days=29)
    with pytest.raises(ReviewError, match=f"AR-{first} is still open"):
        campaign_open(project=w.project, actor=SYSTEM, channel=Channel.SYSTEM)
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert campaigns_open_due() == [], "the first is still open: it must end first"
        campaigns_past_deadline()
        [second] = campaigns_open_due()
    assert second != first
    [changed] = events("access_review.settings_changed")
    assert changed.detail["after"]["enabled"] is True and changed.actor_name == "dave"


@pytest.mark.parametrize(
    ("field", "value"),
    [("answer_days", 0), ("every_days", 10), ("on_deadline", "forget"), ("unused_days", 5000)],
)
def test_settings_refuse_bad_values_naming_the_field(reviewed, field, value):
    values = {
        "enabled": True,
        "every_days": 91,
        "answer_days": 14,
        "on_deadline": "remove",
        "unused_days": 90,
    }
    values[field] = value

    with pytest.raises(ReviewError) as refused:
        review_settings_save(
            project=reviewed.world.project,
            next_campaign_at=None,
            changed_by=reviewed.world.dave,
            channel="web",
            **values,
        )

    assert refused.value.field == field
    assert not AccessReviewSettings.objects.exists()


def test_the_audit_log_alone_gives_the_campaigns_outcome_as_csv_and_pdf(reviewed, tmp_path):
    w = reviewed.world
    campaign = reviewed.open(on_deadline="remove")
    review_item_answer(
        item_id=reviewed.item(campaign, "Alice").pk, user=w.bob, decision="keep", channel=Channel.WEB
    )
    review_item_answer(
        item_id=reviewed.item(campaign, "eve").pk, user=w.carol, decision="remove", channel=Channel.SLACK
    )
    with time_machine.travel(campaign.deadline + timedelta(minutes=1)):
        campaigns_past_deadline()
    AccessReviewCampaign.objects.all().delete()  # the evidence does not depend on the app's tables

    out = tmp_path / "reviews.csv"
    result = write_export(
        report="access_reviews",
        fmt="csv",
        flt=AuditFilter(project="shop"),
        scope=EVERYTHING,
        out_path=out,
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    rows = {r["member"]: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    assert result.rows == 4 and list(rows) == [
        "Alice Engineer (alice)",
        "role phone-readers",
        "Carol (carol)",
        "eve",
    ]
    assert (rows["Alice Engineer (alice)"]["outcome"], rows["Alice Engineer (alice)"]["decided_by"]) == (
        "kept",
        "Bob",
    )
    assert (rows["eve"]["outcome"], rows["eve"]["channel"], rows["eve"]["proposed_removal"]) == (
        "removed",
        "slack",
        "True",
    )
    assert (
        rows["Carol (carol)"]["outcome"] == "removed at the deadline"
        and rows["Carol (carol)"]["decided_by"] == "Veil"
    )
    assert verify_export(out, Path(f"{out}.manifest.json")) == []

    pdf = write_export(
        report="summary",
        fmt="pdf",
        flt=AuditFilter(project="shop"),
        scope=EVERYTHING,
        out_path=tmp_path / "s.pdf",
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    _, text = _pdf_pages_and_text(pdf.path.read_bytes())
    assert "Access reviews" in text and "removed at the deadline" in text and "Alice Engineer" in text


def test_the_command_opens_a_campaign_and_refuses_an_unknown_project(reviewed, capsys):
    call_command("access_reviews", "open", "shop")
    assert "AR-" in capsys.readouterr().out and AccessReviewCampaign.objects.count() == 1
    with pytest.raises(CommandError, match="no project has the key 'nope'"):
        call_command("access_reviews", "open", "nope")
    call_command("access_reviews", "list")
    assert "shop" in capsys.readouterr().out


# --- the pages -------------------------------------------------------------------------------------


def test_a_reviewer_sees_their_items_and_removes_one_on_the_web(reviewed, client):
    w = reviewed.world
    campaign = reviewed.open()
    alice = reviewed.item(campaign, "Alice")
    client.force_login(w.bob)

    page = client.get(reverse("jitaccess:access-reviews")).content.decode()
    assert "Alice Engineer (alice)" in page and "Carol (carol)" in page
    assert page.count('class="card queue-item"') == 2, "carol's item (eve) is not in bob's list"

    response = client.post(
        reverse("jitaccess:access-review-answer", args=[alice.pk]),
        {"decision": "remove", "note": "left support"},
    )

    assert response.status_code == 302
    assert list(reviewed.exemption.users.all()) == []
    assert "Removed: Alice Engineer (alice)" in client.get(response["Location"]).content.decode()


def test_the_answer_needs_the_csrf_token(reviewed):
    campaign = reviewed.open()
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewed.world.bob)

    response = client.post(
        reverse("jitaccess:access-review-answer", args=[reviewed.item(campaign, "Alice").pk]),
        {"decision": "remove"},
    )

    assert response.status_code == 403
    assert list(reviewed.exemption.users.all()) == [reviewed.world.alice]


def test_on_the_web_an_item_not_yours_is_refused_and_one_you_may_not_see_is_not_found(reviewed, client):
    w = reviewed.world
    campaign = reviewed.open()
    alice = reviewed.item(campaign, "Alice")  # bob's

    client.force_login(w.carol)  # sees the campaign (she is in the approver role), not bob's items
    assert (
        client.post(
            reverse("jitaccess:access-review-answer", args=[alice.pk]), {"decision": "remove"}
        ).status_code
        == 404
    )
    client.force_login(w.dave)  # oversees the project: sees every item, answers only his own
    refused = client.post(reverse("jitaccess:access-review-answer", args=[alice.pk]), {"decision": "remove"})
    assert refused.status_code == 403 and "not yours to answer" in refused.content.decode()
    client.force_login(w.eve)
    assert client.get(reverse("jitaccess:access-review", args=[campaign.pk])).status_code == 404

    assert list(reviewed.exemption.users.all()) == [w.alice]
    assert len(events("access_review.answer_refused")) == 1


def test_a_bad_answer_on_the_web_is_a_400_naming_the_field(reviewed, client):
    campaign = reviewed.open()
    client.force_login(reviewed.world.bob)

    response = client.post(
        reverse("jitaccess:access-review-answer", args=[reviewed.item(campaign, "Alice").pk]),
        {"decision": "later"},
    )

    assert response.status_code == 400
    assert "decision: Select a valid choice" in response.content.decode()


def test_policy_administrators_set_the_schedule_and_others_may_not(reviewed, client):
    w = reviewed.world
    url = reverse("jitaccess:access-review-settings", args=["shop"])
    client.force_login(w.bob)
    assert client.get(url).status_code == 403

    client.force_login(w.dave)
    bad = client.post(
        url,
        {
            "enabled": "on",
            "every_days": "7",
            "answer_days": "14",
            "on_deadline": "remove",
            "unused_days": "90",
        },
    )
    assert bad.status_code == 400 and "must be longer than the time to answer" in bad.content.decode()
    good = client.post(
        url,
        {
            "enabled": "on",
            "every_days": "91",
            "answer_days": "14",
            "on_deadline": "remove",
            "unused_days": "60",
        },
    )
    assert good.status_code == 302
    assert AccessReviewSettings.objects.get(project=w.project).unused_days == 60
    opened = client.post(reverse("jitaccess:access-review-open", args=["shop"]))
    assert opened.status_code == 302 and AccessReviewCampaign.objects.get().state == CampaignState.OPEN


def test_compliance_reads_the_outcome_on_the_audit_pages_and_exports_it_from_the_review(reviewed, client):
    w = reviewed.world
    campaign = reviewed.open()
    review_item_answer(
        item_id=reviewed.item(campaign, "Alice").pk, user=w.bob, decision="keep", channel=Channel.WEB
    )
    auditor = make_user("audrey")
    grant_project_perm(auditor, "view_audit", w.project)
    client.force_login(auditor)

    report = client.get(reverse("audit:report", args=["access_reviews"]), {"project": "shop"})
    assert report.status_code == 200
    assert "Alice Engineer (alice)" in report.content.decode() and "kept" in report.content.decode()
    page = client.get(reverse("jitaccess:access-review", args=[campaign.pk])).content.decode()
    assert 'name="report" value="access_reviews"' in page, "the evidence buttons"
    client.force_login(w.bob)
    assert (
        'value="access_reviews"'
        not in client.get(reverse("jitaccess:access-review", args=[campaign.pk])).content.decode()
    )


def test_the_review_pages_label_every_control_and_caption_every_table(reviewed, client):
    """The checks of tests/test_accessibility.py, on the access review pages."""
    w = reviewed.world
    campaign = reviewed.open()
    pages = [
        (w.bob, reverse("jitaccess:access-reviews")),
        (w.dave, reverse("jitaccess:access-review", args=[campaign.pk])),
        (w.dave, reverse("jitaccess:access-review-settings-list")),
        (w.dave, reverse("jitaccess:access-review-settings", args=["shop"])),
    ]
    controls = 0
    for person, url in pages:
        doc = fetch(client, person, url)
        controls += len(doc.controls())
        assert unlabelled_controls(doc) == [] and dangling_references(doc) == [], url
        for table in doc.tables:
            assert table["caption"] and all(a.get("scope") == "col" for a, _ in table["th"]), url
    assert controls > 5


def _at_once(*calls) -> list[str]:
    """Run the calls on threads released together; each outcome, or the refusal's class name."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call) -> None:
        barrier.wait()
        try:
            outcomes.append(call())
        except (AlreadyAnswered, NotYourItem) as refused:
            outcomes.append(type(refused).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


@pytest.mark.django_db(transaction=True)
def test_the_same_removal_sent_twice_at_once_removes_once(reviewed):
    w = reviewed.world
    alice = reviewed.item(reviewed.open(), "Alice")

    def remove(channel: str):
        return lambda: (
            "repeated"
            if review_item_answer(item_id=alice.pk, user=w.bob, decision="remove", channel=channel).repeated
            else "removed"
        )

    assert _at_once(remove(Channel.WEB), remove(Channel.SLACK)) == ["removed", "repeated"]
    assert len(events("access_review.item_removed")) == 1 and len(events("exemption.updated")) == 1


@pytest.mark.django_db(transaction=True)
def test_an_answer_racing_the_deadline_gets_one_outcome(reviewed):
    w = reviewed.world
    campaign = reviewed.open(on_deadline="remove")
    alice = reviewed.item(campaign, "Alice")
    AccessReviewCampaign.objects.filter(pk=campaign.pk).update(deadline=timezone.now())

    def keep():
        return review_item_answer(
            item_id=alice.pk, user=w.bob, decision="keep", channel=Channel.WEB
        ).item.state

    def deadline():
        return "deadline" if campaigns_past_deadline() else "nothing to do"

    outcome = _at_once(keep, deadline)
    alice.refresh_from_db()
    assert outcome in (["deadline", "kept"], ["AlreadyAnswered", "deadline"])
    answers = [
        e.detail["item"] for e in events("access_review.item_kept") + events("access_review.item_removed")
    ]
    assert answers.count(alice.pk) == 1, "kept by bob or removed at the deadline, never both"
    assert (alice.state == ItemState.KEPT) == (outcome == ["deadline", "kept"])
