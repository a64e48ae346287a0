"""Input a policy admin or a pipeline can send that cannot be applied: refused with the field named,
never a server error and never a half-written or undecidable change."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import Channel
from identity.services import actor_for
from jitaccess.models import ApprovalPolicy
from masking.models import ChangeState, PolicyChange, PolicyVersion, ProjectPolicySettings
from masking.policy.document import export_document, parse_document
from masking.services.policy_changes import policy_submit

pytestmark = pytest.mark.django_db


APPROVAL_POLICY = """\
approval_policies:
- project: shop
  title: Everything else
  condition: 'true'
  {field}
"""


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("approvals_required: 40000", "must be an integer from 1 to 32767"),
        ("approvals_required: 99999999999999999999", "must be an integer from 1 to 32767"),
        ("max_duration: 9999999999d", "must be at most 3650d"),
        ("max_duration: 3651d", "must be at most 3650d"),
    ],
)
def test_an_out_of_range_number_in_a_file_is_refused_by_the_api_with_its_path(ci, field, message):
    versions = PolicyVersion.objects.count()
    policy = APPROVAL_POLICY.format(field=field)
    path = f"approval_policies[0].{field.split(':')[0]}"

    for endpoint, body in (("policy:api-plan", {}), ("policy:api-apply", {"message": "Typo"})):
        response = ci.post(reverse(endpoint), {"policy": policy, **body}, format="json")

        assert response.status_code == 400, response.content
        assert response.json()["error"]["fields"] == {path: [message]}
    assert PolicyVersion.objects.count() == versions
    assert ApprovalPolicy.objects.get(title="Everything else").approvals_required == 1


def test_an_out_of_range_duration_pasted_on_the_policy_as_code_page_is_shown_next_to_the_text(
    client, policy_world
):
    client.force_login(policy_world.polly)

    response = client.post(
        reverse("policy:code"),
        {"source": APPROVAL_POLICY.format(field="max_duration: 9999999999d"), "source_format": "veil"},
    )

    assert response.status_code == 200
    assert "approval_policies[0].max_duration: must be at most 3650d" in response.content.decode()


def test_an_uploaded_policy_file_is_read_whole_or_refused(client, policy_world):
    client.force_login(policy_world.polly)
    exported = client.get(reverse("policy:export")).content

    latin1 = client.post(
        reverse("policy:code"),
        {
            "upload": SimpleUploadedFile("p.yaml", exported + "# Zoë\n".encode("latin-1")),
            "source_format": "veil",
        },
    )
    assert latin1.context["form"].errors["upload"][0].startswith("The file is not UTF-8 text")

    too_big = client.post(
        reverse("policy:code"),
        {"upload": SimpleUploadedFile("p.yaml", exported + b"#" * 5_000_000), "source_format": "veil"},
    )
    assert "a policy file may be at most 5,000,000 bytes" in too_big.context["form"].errors["upload"][0]

    with_bom = client.post(
        reverse("policy:code"),
        {"upload": SimpleUploadedFile("p.yaml", b"\xef\xbb\xbf" + exported), "source_format": "veil"},
    )
    assert with_bom.status_code == 200 and "No changes." in with_bom.content.decode()


def test_approving_a_pending_change_that_names_someone_since_removed_closes_it_with_the_reason(
    client, policy_world, django_user_model
):
    ProjectPolicySettings.objects.create(project=policy_world.project, two_person_rule=True)
    leaver = django_user_model.objects.create(username="leaver")
    document = export_document()
    document["exemptions"].append(
        {"project": "shop", "reason": "Leaver checks refunds", "users": ["leaver"], "condition": ""}
    )
    submitted = policy_submit(
        document=parse_document(document),
        message="Leaver needs refunds",
        actor=actor_for(policy_world.polly),
        channel=Channel.WEB,
        author=policy_world.polly,
    )
    leaver.delete()  # offboarded before the second person looked
    versions = PolicyVersion.objects.count()
    client.force_login(policy_world.quinn)

    response = client.post(
        reverse("policy:change-decide", args=[submitted.change.pk, "approve"]), follow=True
    )

    change = PolicyChange.objects.get()
    assert change.state == ChangeState.SUPERSEDED
    assert "unknown user 'leaver'" in change.decision_note
    assert "was not applied and is closed" in response.content.decode()
    assert "unknown user" in response.content.decode()
    assert PolicyVersion.objects.count() == versions


def test_deciding_a_change_that_does_not_exist_is_not_found(client, policy_world):
    client.force_login(policy_world.quinn)

    response = client.post(reverse("policy:change-decide", args=[999, "approve"]))

    assert response.status_code == 404


def test_confirming_a_review_twice_says_it_is_already_applied(client, policy_world):
    client.force_login(policy_world.polly)
    review = client.post(
        reverse("policy:semantic-type", args=["email"]),
        {"key": "email", "title": "Email address", "description": "", "algorithm": '{"type": "email"}'},
    )
    payload = review.context["review_form"]["payload"].value()
    client.post(reverse("policy:review-confirm"), {"payload": payload, "message": "Clearer title"})
    versions = PolicyVersion.objects.count()

    again = client.post(
        reverse("policy:review-confirm"), {"payload": payload, "message": "Clearer title"}, follow=True
    )

    page = again.content.decode()
    assert "Nothing to apply: this change is already in policy version" in page
    assert "The policy changed while you reviewed" not in page
    assert PolicyVersion.objects.count() == versions
