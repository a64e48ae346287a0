"""Journey 5 in headless Chromium: edit a rule (bad, then good condition), preview an algorithm,
review the diff, and a plan/apply round trip of a policy file.

Screenshots of each page go to the test's tmp_path (run with --basetemp to keep them)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from masking.models import MaskingRule, PolicyVersion, SemanticType
from masking.policy.document import dump_yaml, export_document
from tests.e2e.conftest import sign_in
from tests.policy.conftest import policy_world  # noqa: F401 - the catalogued shop and its policy admins

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_rule_edited_with_a_bad_then_a_good_condition_is_saved_after_its_diff(page, policy_world, tmp_path):  # noqa: F811
    sign_in(page, "polly")
    page.goto("/policy/rules/")
    page.get_by_role("link", name="Edit Emails").click()
    condition = page.get_by_label("Condition")
    status = page.get_by_role("status").filter(has_text=re.compile("condition|Valid"))

    condition.fill("resource.colour == 'red'")
    page.get_by_text("unknown field(s) resource.colour").wait_for()
    assert condition.get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(tmp_path / "rule-bad-condition.png"), full_page=True)

    condition.fill('resource.column_name in ["email", "phone"]')
    page.get_by_text("✓ Valid condition").wait_for()
    page.get_by_text("4 columns.", exact=True).wait_for()
    assert "staging-pg/shop/public.customers.phone" in page.locator("[data-match-list]").inner_text()
    assert status.count() == 1
    page.screenshot(path=str(tmp_path / "rule-good-condition.png"), full_page=True)

    page.get_by_role("button", name="Review change").click()
    expect(page.get_by_role("heading", name="Review: Save rule 'Emails'")).to_be_visible()
    diff = page.locator("ul.diff")
    assert 'resource.column_name == "email"' in diff.locator("del").inner_text()
    assert 'resource.column_name in ["email", "phone"]' in diff.locator("ins").inner_text()
    assert MaskingRule.objects.get().condition == 'resource.column_name == "email"', (
        "not saved before confirm"
    )
    page.screenshot(path=str(tmp_path / "rule-review.png"), full_page=True)

    page.get_by_label("Message").fill("Phones too")
    page.get_by_role("button", name="Apply change").click()

    page.wait_for_url("**/policy/rules/")
    version = PolicyVersion.objects.first()
    expect(page.get_by_text(f"Saved as policy version {version.number}.")).to_be_visible()
    assert MaskingRule.objects.get().condition == 'resource.column_name in ["email", "phone"]'
    assert version.message == "Phones too"


def test_the_algorithm_preview_masks_typed_samples(page, policy_world, tmp_path):  # noqa: F811
    sign_in(page, "polly")
    page.goto("/policy/semantic-types/phone/")

    page.get_by_label("Algorithm").fill('{"type": "show_last", "n": 4, "substitution": "#"}')
    page.get_by_label("Sample values").fill("+1 555 0100\n0044 20 7946 0018")
    page.get_by_role("button", name="Preview").click()

    results = page.locator("#preview-results table")
    results.wait_for()
    assert results.locator("tbody tr").nth(0).inner_text().split("\t") == ["+1 555 0100", "#######0100"]
    assert "0044 20 7946 0018\t#############0018" in results.inner_text()
    page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)
    assert SemanticType.objects.get(key="phone").algorithm == {"type": "show_last", "n": 2}, (
        "a preview saves nothing"
    )

    page.get_by_label("Algorithm").fill('{"type": "show_last"}')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-results").get_by_text("n: is required")).to_be_visible()


def test_a_policy_file_plan_and_apply_round_trip(page, policy_world, tmp_path):  # noqa: F811
    edited = dump_yaml(export_document()).replace("approvals_required: 2", "approvals_required: 3")
    sign_in(page, "polly")
    page.goto("/policy/code/")

    page.get_by_label("Source").fill(edited)
    page.get_by_role("button", name="Plan").click()
    expect(page.get_by_text("Plan: 0 to create, 1 to update, 0 to delete.")).to_be_visible()
    row = page.locator("ul.diff li").filter(has_text="shop: Prod PII")
    assert row.locator("del").inner_text() == "2" and row.locator("ins").inner_text() == "3"
    page.screenshot(path=str(tmp_path / "plan.png"), full_page=True)

    page.get_by_label("Message").fill("Three approvals for prod PII")
    page.get_by_role("button", name="Apply change").click()
    page.wait_for_url("**/policy/code/")
    expect(page.get_by_text(re.compile(r"Saved as policy version \d+\."))).to_be_visible()

    page.get_by_label("Source").fill(edited)
    page.get_by_role("button", name="Plan").click()
    expect(page.get_by_text("No changes.").first).to_be_visible()
    assert PolicyVersion.objects.first().message == "Three approvals for prod PII"
