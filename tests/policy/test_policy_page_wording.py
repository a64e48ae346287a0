"""What the policy pages show an admin: algorithms and durations in words, no salt, no document
paths in error messages, and no rule that silently gets the first semantic type listed."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import yaml
from django.urls import reverse

from audit.models import Channel
from audit.services import SYSTEM
from jitaccess.policy.services import approval_policy_save
from masking.models import MaskingRule, PolicyVersion, SemanticType
from masking.services.policy import semantic_type_save
from tests.policy.conftest import confirm

pytestmark = pytest.mark.django_db


def diff_list(page: str) -> str:
    """The change table of a review or version page (the YAML view beside it is policy as code)."""
    found = re.search(r'<ul class="diff">.*?</ul>', page, re.S)
    assert found, "no diff on the page"
    return found.group(0)


def test_semantic_types_show_their_algorithm_in_words_and_never_the_salt(polly_client):
    semantic_type_save(
        key="card",
        title="Card number",
        algorithm={"type": "md5", "salt": "demo-salt"},
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    page = polly_client.get(reverse("policy:semantic-types")).content.decode()

    assert "MD5 with salt" in page
    assert "Show last 2, &#x27;*&#x27; for the rest" in page
    assert "Email: first character and domain" in page
    assert "demo-salt" not in page and "{&#x27;type&#x27;" not in page


def test_the_review_and_version_diffs_describe_algorithms_and_name_a_changed_salt(polly_client):
    semantic_type_save(
        key="card",
        title="Card",
        algorithm={"type": "md5", "salt": "old-salt"},
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    form = {"key": "card", "title": "Card", "description": ""}

    review = polly_client.post(
        reverse("policy:semantic-type", args=["card"]),
        {**form, "algorithm": '{"type": "md5", "salt": "new-salt"}'},
    )
    diff = diff_list(review.content.decode())
    assert (
        "<del>MD5 with salt (salt changed)</del>" in diff
        and "<ins>MD5 with salt (salt changed)</ins>" in diff
    )
    assert "old-salt" not in diff and "new-salt" not in diff

    confirm(polly_client, review)
    version = PolicyVersion.objects.first()
    stored = diff_list(polly_client.get(reverse("policy:version", args=[version.number])).content.decode())
    assert "MD5 with salt (salt changed)" in stored and "new-salt" not in stored

    review = polly_client.post(
        reverse("policy:semantic-type", args=["card"]),
        {**form, "algorithm": '{"type": "show_first", "n": 4}'},
    )
    diff = diff_list(review.content.decode())
    assert "<del>MD5 with salt</del>" in diff
    assert "<ins>Show first 4, &#x27;*&#x27; for the rest</ins>" in diff


def test_approval_policies_show_their_max_duration_in_words(polly_client, policy_world):
    approval_policy_save(
        project=policy_world.project,
        title="A day",
        condition="true",
        max_duration=timedelta(days=1),
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    approval_policy_save(
        project=policy_world.project,
        title="Half a day",
        condition="true",
        max_duration=timedelta(hours=12),
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    page = polly_client.get(reverse("policy:approval-policies")).content.decode()

    assert "<td>4 hours</td>" in page and "<td>1 day</td>" in page and "<td>12 hours</td>" in page
    assert "<td>project cap</td>" in page, "Everything else has no cap of its own"
    assert "0:00" not in page


def test_a_new_rule_must_choose_its_semantic_type(polly_client):
    url = reverse("policy:rule-new")
    blank = '<option value="" selected>— choose a semantic type —</option>'
    assert blank in polly_client.get(url).content.decode()

    response = polly_client.post(
        url, {"title": "Phones", "condition": 'resource.column_name == "phone"', "enabled": "on"}
    )

    assert response.status_code == 200
    assert response.templates[0].name == "masking/rule_form.html"
    assert response.context["form"].errors["semantic_type"] == ["Choose a semantic type."]
    assert not MaskingRule.objects.filter(title="Phones").exists()


def test_editing_a_rule_keeps_its_semantic_type_selected(polly_client):
    rule = MaskingRule.objects.get()

    page = polly_client.get(reverse("policy:rule", args=[rule.pk])).content.decode()

    assert '<option value="email" selected>' in page
    assert '<option value="" selected>' not in page


@pytest.mark.parametrize(
    ("url_name", "form", "field", "message"),
    [
        (
            "policy:rule-new",
            {
                "title": "Emails",
                "condition": 'resource.column_name == "mail"',
                "semantic_type": "email",
                "enabled": "on",
            },
            "title",
            "A rule titled 'Emails' already exists.",
        ),
        (
            "policy:semantic-type-new",
            {"key": "phone", "title": "Another phone", "description": "", "algorithm": '{"type": "full"}'},
            "key",
            "A semantic type with the key 'phone' already exists.",
        ),
    ],
    ids=["rule-title", "semantic-type-key"],
)
def test_a_duplicate_key_is_worded_for_the_form(polly_client, url_name, form, field, message):
    response = polly_client.post(reverse(url_name), form)

    assert response.context["form"].errors[field] == [message]
    assert "also rules[" not in response.content.decode()
    assert "also semantic_types[" not in response.content.decode()


def test_deleting_a_semantic_type_a_rule_uses_names_the_rule(polly_client):
    response = polly_client.post(reverse("policy:semantic-type-delete", args=["email"]), follow=True)

    page = html.unescape(response.content.decode())
    assert "Semantic type 'email' is used by rule 'Emails'; delete or change that rule first." in page
    assert "rules[0]" not in page
    assert SemanticType.objects.filter(key="email").exists()


def test_renaming_a_semantic_type_a_rule_uses_is_refused_on_the_form(polly_client):
    response = polly_client.post(
        reverse("policy:semantic-type", args=["email"]),
        {"key": "e-mail", "title": "Email", "description": "", "algorithm": '{"type": "email"}'},
    )

    assert response.context["form"].non_field_errors() == [
        "Semantic type 'email' is used by rule 'Emails'; delete or change that rule first."
    ]


def test_the_policy_file_page_keeps_the_paths_that_point_into_the_file(polly_client):
    document = yaml.safe_load(polly_client.get(reverse("policy:export")).content.decode())
    document["semantic_types"] = [t for t in document["semantic_types"] if t["key"] != "email"]

    response = polly_client.post(
        reverse("policy:code"), {"source": yaml.safe_dump(document), "source_format": "veil"}, follow=True
    )

    assert "rules[0].semantic_type: unknown semantic type &#x27;email&#x27;" in response.content.decode()
