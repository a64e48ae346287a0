"""Asking from Slack: `/veil`, the shortcut, the modal's suggestions and its submission, status and
help. Commands and payloads are signed with Slack's scheme and posted to the real endpoints; the
modal is opened, updated and the DM sent through the real slack-sdk against the fake Slack."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from jitaccess.models import AccessRequest, SlackLinkMethod, SlackUserLink
from jitaccess.selectors.scopes import access_settings
from jitaccess.services.requests import request_approve
from jitaccess.slack.check import manifest_findings
from jitaccess.slack.linking import UNLINKED_EXPLANATION
from jitaccess.slack.services import slack_user_link
from jitaccess.states import State
from masking.models import Column, Database, Table
from tests.factories import catalog_payload, make_project
from tests.slack.conftest import APPROVALS, deliver_outbox, sign

pytestmark = pytest.mark.django_db
TEAM = {"id": "T0ACME", "domain": "acme"}


def signed_post(client, path: str, body: str, *, team_secret: str | None = None):
    timestamp = int(time.time())
    headers = {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(body, timestamp, *([team_secret] if team_secret else [])),
    }
    return replay_to(client, path, body, headers), headers


def replay_to(client, path: str, body: str, headers: dict[str, str]):
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded", headers=headers)


def command(client, fake_slack, text: str = "", *, user: str = "UALICE", team: str = "T0ACME", app="A0VEIL"):
    """`/veil <text>` as Slack posts a slash command: form fields, not a JSON payload."""
    body = urlencode(
        {
            "token": "legacy",
            "team_id": team,
            "team_domain": "acme",
            "channel_id": "D0ALICE",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/veil",
            "text": text,
            "api_app_id": app,
            "response_url": fake_slack.hook_url(uuid.uuid4().hex),
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
        }
    )
    return signed_post(client, "/slack/commands", body)[0]


def payload_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def shortcut(user: str = "UALICE") -> dict[str, Any]:
    """A global shortcut's payload: Slack names no app in it."""
    return {
        "type": "shortcut",
        "token": "legacy",
        "action_ts": f"{time.time():.6f}",
        "team": TEAM,
        "user": {"id": user, "username": user.lower(), "team_id": "T0ACME"},
        "callback_id": "request_unmask",
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
    }


def state(**chosen: Any) -> dict[str, Any]:
    """The modal's `state.values` for what is chosen (selects by value, text inputs by text)."""
    values: dict[str, Any] = {}
    for name, value in chosen.items():
        if name == "columns":
            element = {"type": "multi_external_select", "selected_options": [{"value": v} for v in value]}
        elif name in ("reason", "ticket"):
            element = {"type": "plain_text_input", "value": value}
        else:
            element = {"type": "static_select", "selected_option": {"value": value} if value else None}
        values[name] = {name: element}
    return {"values": values}


def suggestion(action_id: str, typed: str = "", *, user: str = "UALICE", **chosen: Any) -> dict[str, Any]:
    return {
        "type": "block_suggestion",
        "user": {"id": user, "username": user.lower(), "team_id": "T0ACME"},
        "container": {"type": "view", "view_id": "V1"},
        "api_app_id": "A0VEIL",
        "token": "legacy",
        "action_id": action_id,
        "block_id": action_id,
        "value": typed,
        "team": TEAM,
        "view": {"id": "V1", "type": "modal", "callback_id": "request_modal", "state": state(**chosen)},
    }


def submission(user: str = "UALICE", view_id: str = "V1", **chosen: Any) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": TEAM,
        "user": {"id": user, "username": user.lower(), "team_id": "T0ACME"},
        "api_app_id": "A0VEIL",
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "view": {"id": view_id, "type": "modal", "callback_id": "request_modal", "state": state(**chosen)},
    }


def link(person, slack_user_id: str) -> None:
    slack_user_link(
        slack_user_id=slack_user_id,
        user=person,
        method=SlackLinkMethod.ADMIN,
        actor=SYSTEM,
        channel=Channel.CLI,
    )


def columns_of(world, *names: str) -> list[str]:
    found = Column.objects.filter(table__schema__database=world.database, name__in=names)
    return [f"column:{c.pk}" for c in found]


def customers(world) -> str:
    return f"table:{Table.objects.get(schema__database=world.database, name='customers').pk}"


def valid(world, **overrides: Any) -> dict[str, Any]:
    chosen = {
        "project": "shop",
        "database": str(world.database.pk),
        "table": customers(world),
        "columns": columns_of(world, "email"),
        "duration": "4",
        "reason": "INC-4711 refund mismatch",
        "ticket": "https://tickets.example/INC-4711",
    }
    return chosen | overrides


@pytest.fixture
def crm(slack):
    """A second project Alice may not request in, with a column of its own."""
    from masking.services.catalog import catalog_upsert

    make_project("crm", title="CRM")
    payload = catalog_payload(
        instance="crm-pg", project="crm", columns=[{"name": "secret_note", "data_type": "text"}]
    )
    catalog_upsert(
        instance_spec=payload["instance"],
        databases=payload["databases"],
        prune=False,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    return Database.objects.get(instance__key="crm-pg")


def option_texts(response) -> list[str]:
    return [o["text"]["text"] for o in json.loads(response.content)["options"]]


# --- opening the modal -------------------------------------------------------------------------


def test_veil_opens_the_request_modal_for_a_linked_person(slack, client, fake_slack, after_ack):
    link(slack.alice, "UALICE")

    response = command(client, fake_slack)

    assert (response.status_code, response.content) == (200, b"")
    [opened] = fake_slack.views
    view = opened["view"]
    assert view["callback_id"] == "request_modal"
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert [o["value"] for o in blocks["project"]["element"]["options"]] == ["shop"]
    assert blocks["columns"]["element"]["type"] == "multi_external_select"
    assert {"database", "table", "columns", "duration", "reason", "ticket"} <= set(blocks)
    after_ack.run()
    assert fake_slack.calls_to("views.update") == []


def test_the_shortcut_checks_who_asks_after_the_ack_and_then_shows_the_form(
    slack, client, fake_slack, after_ack
):
    response, _ = signed_post(client, "/slack/interactions", payload_body(shortcut()))

    assert response.status_code == 200
    assert "Checking who you are" in json.dumps(fake_slack.views[0]["view"])
    after_ack.run()
    assert fake_slack.views[0]["view"]["callback_id"] == "request_modal"
    assert SlackUserLink.objects.get(slack_user_id="UALICE").user == slack.alice  # found by email


def test_someone_veil_cannot_link_is_told_how_to_link(slack, client, fake_slack, after_ack):
    signed_post(client, "/slack/interactions", payload_body(shortcut(user="UZED")))
    after_ack.run()

    shown = json.dumps(fake_slack.views[0]["view"])
    assert UNLINKED_EXPLANATION in shown
    assert "request_modal" not in shown

    command(client, fake_slack, "status", user="UZED")
    after_ack.run()
    [answer] = fake_slack.responses
    assert UNLINKED_EXPLANATION in answer["text"] and answer["response_type"] == "ephemeral"
    assert not SlackUserLink.objects.filter(slack_user_id="UZED").exists()


def test_someone_with_no_project_to_request_in_is_told_so(slack, client, fake_slack):
    link(slack.eve, "UEVE")

    command(client, fake_slack, user="UEVE")

    assert "You may not ask for unmask in any project" in json.dumps(fake_slack.views[0]["view"])


# --- suggestions ---------------------------------------------------------------------------------


def test_suggestions_are_columns_of_projects_the_person_may_request_in(slack, client, crm):
    link(slack.alice, "UALICE")

    response, _ = signed_post(client, "/slack/options", payload_body(suggestion("columns")))

    texts = option_texts(response)
    assert texts == [
        "prod-pg/shop/public.customers.id (in clear for you)",
        "prod-pg/shop/public.customers.email",
        "prod-pg/shop/public.customers.phone",
    ]
    assert not any("secret_note" in t or "crm-pg" in t for t in texts)
    databases, _ = signed_post(client, "/slack/options", payload_body(suggestion("database")))
    assert option_texts(databases) == ["prod-pg/shop (shop)"]


def test_suggestions_follow_what_is_typed_and_chosen(slack, client):
    link(slack.alice, "UALICE")
    chosen = {"project": "shop", "database": str(slack.database.pk), "table": customers(slack)}

    typed, _ = signed_post(client, "/slack/options", payload_body(suggestion("columns", "pho", **chosen)))
    tables, _ = signed_post(
        client,
        "/slack/options",
        payload_body(suggestion("table", project="shop", database=str(slack.database.pk))),
    )
    again, _ = signed_post(client, "/slack/options", payload_body(suggestion("columns", "pho", **chosen)))

    assert option_texts(typed) == ["public.customers.phone"]
    assert option_texts(tables) == ["Whole database prod-pg/shop", "public.customers"]
    assert option_texts(again) == option_texts(typed), "the same text typed again is served again"


def test_someone_not_linked_or_not_allowed_is_suggested_nothing(slack, client, crm):
    link(slack.eve, "UEVE")

    for user in ("UEVE", "UZED"):
        response, _ = signed_post(client, "/slack/options", payload_body(suggestion("columns", user=user)))
        assert option_texts(response) == []


# --- submitting ----------------------------------------------------------------------------------


def test_a_valid_submission_files_the_request_posts_it_and_dms_its_link(slack, client, fake_slack, after_ack):
    link(slack.alice, "UALICE")

    response, _ = signed_post(client, "/slack/interactions", payload_body(submission(**valid(slack))))

    answer = json.loads(response.content)
    request = AccessRequest.objects.get()
    assert answer["response_action"] == "update"
    assert f"https://veil.example/requests/{request.pk}/|{request.ref}" in json.dumps(answer["view"])
    assert (request.requester, request.table_name, request.column_names) == (
        slack.alice,
        "customers",
        ["email"],
    )
    assert (request.duration, request.ticket_url, request.state) == (
        timedelta(hours=4),
        "https://tickets.example/INC-4711",
        State.PENDING,
    )
    assert AuditEvent.objects.get(action="request.created").channel == Channel.SLACK
    deliver_outbox()
    assert len(fake_slack.in_channel(APPROVALS)) == 1, "announced for approval as a web request is"
    after_ack.run()
    [dm] = [m for m in fake_slack.posts() if m.channel == "DALICE"]
    assert f"<https://veil.example/requests/{request.pk}/|{request.ref}>" in dm.text


def test_the_same_submission_replayed_files_one_request(slack, client, after_ack):
    link(slack.alice, "UALICE")
    body = payload_body(submission(**valid(slack)))
    first, headers = signed_post(client, "/slack/interactions", body)

    again = replay_to(client, "/slack/interactions", body, headers)

    assert json.loads(first.content)["response_action"] == "update"
    assert (again.status_code, again.content) == (200, b"")
    assert AccessRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "block", "message"),
    [
        (
            {"columns": ["column:999999"]},
            "columns",
            "1 of the columns chosen are not columns of prod-pg/shop",
        ),
        ({"columns": ["id"]}, "columns", "Nothing in this scope is masked for you"),
        ({"table": "table:999999"}, "table", "Not a table of prod-pg/shop"),
        ({"database": "999999"}, "database", "Choose a database from the list."),
        ({"duration": "168"}, "duration", "At most 1 day in this project (you asked 7 days)."),
        ({"reason": "   "}, "reason", "Say why you need to see these values."),
        ({"ticket": "not a link"}, "ticket", "'not a link' is neither a link (https://…) nor an issue key"),
    ],
)
def test_an_invalid_submission_is_answered_in_the_modal_fields(slack, client, change, block, message):
    link(slack.alice, "UALICE")
    project_settings = access_settings(slack.project)
    project_settings.max_duration = timedelta(days=1)
    project_settings.save()
    chosen = valid(slack, **change)
    if change.get("columns") == ["id"]:
        chosen["columns"] = columns_of(slack, "id")

    response, _ = signed_post(client, "/slack/interactions", payload_body(submission(**chosen)))

    answer = json.loads(response.content)
    assert answer["response_action"] == "errors"
    assert message in answer["errors"][block]
    assert not AccessRequest.objects.exists()


def test_columns_of_a_project_the_person_may_not_request_in_are_refused(slack, client, crm):
    link(slack.alice, "UALICE")
    secret = Column.objects.get(name="secret_note")
    chosen = valid(
        slack, database=str(crm.pk), table=f"table:{secret.table_id}", columns=[f"column:{secret.pk}"]
    )

    response, _ = signed_post(client, "/slack/interactions", payload_body(submission(**chosen)))

    assert json.loads(response.content)["errors"] == {"database": "Choose a database from the list."}
    assert not AccessRequest.objects.exists()


# --- status and help ---------------------------------------------------------------------------


def test_status_lists_pending_requests_and_live_grants(slack, client, fake_slack, after_ack):
    link(slack.alice, "UALICE")
    pending = slack.request("email")
    granted = slack.request("phone")
    request_approve(request_id=granted.pk, approver=slack.bob, channel=Channel.WEB)

    response = command(client, fake_slack, "status")
    assert (response.status_code, response.content) == (200, b"")
    after_ack.run()

    [answer] = fake_slack.responses
    text = answer["text"]
    assert "*Pending requests* (1)" in text and f"|{pending.ref}>" in text
    assert "0 of 1 approval(s)" in text
    assert "*Live grants* (1)" in text and f"|{granted.ref}>" in text
    assert text.index(pending.ref) < text.index("*Live grants*") < text.index(granted.ref)


def test_status_with_nothing_says_how_to_ask(slack, client, fake_slack, after_ack):
    link(slack.alice, "UALICE")

    command(client, fake_slack, "status")
    after_ack.run()

    assert "You have no pending requests and no live grants" in fake_slack.responses[0]["text"]


def test_help_says_what_is_possible_and_an_unknown_word_gets_it_too(slack, client, fake_slack):
    helped = json.loads(command(client, fake_slack, "help").content)
    unknown = json.loads(command(client, fake_slack, "frobnicate").content)

    assert "`/veil status` lists your pending requests and live grants" in helped["text"]
    assert helped["response_type"] == "ephemeral"
    assert unknown["text"].startswith("Veil does not know `/veil frobnicate`.")
    assert fake_slack.views == []


# --- signatures --------------------------------------------------------------------------------


def test_commands_and_suggestions_are_verified_like_clicks(slack, client, fake_slack):
    link(slack.alice, "UALICE")
    body = urlencode({"command": "/veil", "text": "help", "team_id": "T0ACME", "api_app_id": "A0VEIL"})

    forged, _ = signed_post(client, "/slack/commands", body, team_secret="not-the-secret")
    elsewhere = command(client, fake_slack, "help", team="T0OTHER")
    other_app = command(client, fake_slack, "help", app="A0OTHER")
    options, _ = signed_post(
        client, "/slack/options", payload_body(suggestion("columns")), team_secret="not-the-secret"
    )
    named_app = shortcut() | {"api_app_id": "A0OTHER"}
    shortcut_of_other_app, _ = signed_post(client, "/slack/interactions", payload_body(named_app))

    assert [r.status_code for r in (forged, elsewhere, other_app, options, shortcut_of_other_app)] == [
        401
    ] * 5
    assert fake_slack.views == []


# --- the manifest and `slack check` ----------------------------------------------------------------


def test_the_manifest_declares_the_command_the_shortcut_and_the_options_url(slack):
    manifest = yaml.safe_load((Path(django_settings.BASE_DIR) / "slack-app-manifest.yml").read_text())

    assert "commands" in manifest["oauth_config"]["scopes"]["bot"]
    out = StringIO()
    call_command("slack", "check", stdout=out)
    assert (
        "ok    slash command: Slack must post /veil to https://veil.example/slack/commands" in out.getvalue()
    )
    assert "ok    shortcut: global shortcut with callback ID request_unmask" in out.getvalue()
    assert "Slack must post the request modal to https://veil.example/slack/options" in out.getvalue()


def test_check_fails_for_a_manifest_missing_them(slack, tmp_path):
    manifest = tmp_path / "manifest.yml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "features": {
                    "slash_commands": [{"command": "/veil", "url": "https://veil.example/slack/interactions"}]
                },
                "settings": {"interactivity": {"request_url": "https://veil.example/slack/interactions"}},
            }
        )
    )

    findings = {f.subject: f for f in manifest_findings(manifest)}

    assert not any(f.ok for f in findings.values())
    assert (
        "points at https://veil.example/slack/interactions, not Veil's /slack/commands"
        in findings["slash command"].message
    )
    assert "not declared" in findings["shortcut"].message
    assert "not declared" in findings["options load URL"].message
