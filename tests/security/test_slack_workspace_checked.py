"""Finding 9 (part): Slack's `team_id` and `api_app_id` were not checked, so a click signed with
Veil's app secret but sent from another workspace (the app installed there too) was processed.
Payloads must now name SLACK_TEAM_ID and SLACK_APP_ID, which are required when Slack is on."""

# ruff: noqa: F811  (the Slack fixtures are imported, then used as arguments)
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.failures import failure_tallies_fold
from jitaccess.models import Approval
from jitaccess.states import State
from tests.jitaccess.conftest import world  # noqa: F401
from tests.slack.conftest import _no_broker, after_ack, click, fake_slack, post_interaction, slack  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent.parent


def untouched(request) -> bool:
    request.refresh_from_db()
    return request.state == State.PENDING and not Approval.objects.filter(request=request).exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"team": {"id": "T0EVIL", "domain": "evil"}}, "payload from another workspace (T0EVIL)"),
        ({"api_app_id": "A0OTHER"}, "payload for another app (A0OTHER)"),
        (
            {"team": None, "user": {"id": "UBOB", "team_id": "T0EVIL"}},
            "payload from another workspace (T0EVIL)",
        ),
    ],
)
def test_a_validly_signed_click_from_another_workspace_or_app_is_refused(
    slack,
    client,
    after_ack,
    fake_slack,
    change,
    reason,
):
    request = slack.request("email")
    payload = {**click("approve", request.pk, user="UBOB"), **change}

    response, _, _ = post_interaction(client, payload)

    assert response.status_code == 401
    after_ack.run()
    assert untouched(request)
    assert fake_slack.ephemerals == []
    (event,) = failure_tallies_fold(now=timezone.now() + timedelta(hours=1))
    assert (event.action, event.detail["sources"][0]["reason"]) == ("slack.forged_request", reason)


def test_the_same_click_from_veils_own_workspace_is_processed(slack, client, after_ack):
    request = slack.request("email")

    response, _, _ = post_interaction(client, click("approve", request.pk, user="UBOB"))
    after_ack.run()

    assert response.status_code == 200
    assert not untouched(request)


@pytest.mark.parametrize("missing", ["SLACK_TEAM_ID", "SLACK_APP_ID"])
def test_slack_on_without_the_workspace_or_app_refuses_to_start_and_names_it(missing):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(
        SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", SLACK_TEAM_ID="T0ACME", SLACK_APP_ID="A0VEIL"
    )
    del env[missing]

    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert f"{missing} is required when Slack is on" in result.stderr
