"""Columns nobody classified: masked in production by default, in clear elsewhere, and per project
and environment as its policy settings say; audited, versioned, in policy as code, on the pages and
in `masking check`, and answered so by the live decision endpoint."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from identity.models import Scope
from identity.services import actor_for
from masking.decisions.engine import (
    CatalogColumn,
    ColumnKey,
    Policy,
    Principal,
    ProjectUnclassified,
    RuleView,
    SemanticTypeView,
    UnclassifiedDefaults,
)
from masking.models import DecisionEpoch, PolicyVersion, ProjectPolicySettings
from masking.policy.diff import plan_against_live
from masking.policy.document import DocumentError, export_document, parse_document
from masking.selectors import decision_caches, load_policy, read_epochs
from masking.services.policy import PolicyError, project_policy_settings_save
from masking.services.policy_changes import policy_submit
from tests.factories import catalog_payload, make_project, make_token, make_user
from tests.policy.conftest import confirm
from tests.sdk.conftest import veil_url  # noqa: F401 - the live Veil

NOW = 1_800_000_000.0
ALICE = Principal("user", "1", "alice")
NOTES = [
    {"name": "id", "data_type": "bigint", "classification_level": 1},
    {"name": "body", "data_type": "text"},  # free text nobody classified; its name suggests nothing
]


def _key(instance: str, column: str = "body") -> ColumnKey:
    return ColumnKey(instance, "shop", "public", "support_notes", column)


def _engine_policy(unclassified: UnclassifiedDefaults | None = None, **kwargs) -> Policy:
    columns = {
        _key(instance): CatalogColumn(_key(instance), "shop", environment, None, (), None)
        for instance, environment in (
            ("prod-pg", "prod"),
            ("staging-pg", "staging"),
            ("live-pg", "production"),
        )
    }
    columns[_key("prod-pg", "id")] = CatalogColumn(_key("prod-pg", "id"), "shop", "prod", 1, (), None)
    extra = {"unclassified": unclassified} if unclassified is not None else {}
    return Policy(1, columns, {}, [], [], **extra, **kwargs)


def _answers(policy: Policy) -> list[tuple[str, str]]:
    keys = [_key("prod-pg"), _key("staging-pg"), _key("live-pg"), _key("prod-pg", "id")]
    return [(d.action, d.reason_kind) for d in policy.decide(ALICE, keys, now=NOW)]


# --- The engine --------------------------------------------------------------------------------


def test_an_unclassified_column_is_masked_in_production_and_in_clear_elsewhere_by_default():
    policy = _engine_policy()

    prod, staging, production, classified = _answers(policy)
    (decision,) = policy.decide(ALICE, [_key("prod-pg")], now=NOW)

    assert prod == production == ("mask", "unclassified")
    assert staging == ("unmask", "not_sensitive")
    assert classified == ("unmask", "not_sensitive"), "classified below the level: not the default's business"
    assert decision.algorithm == {"type": "full", "substitution": "******"}
    assert decision.reason_title == "not classified; masked by Veil's default for prod"
    assert decision.as_json(NOW, 10)["reason"] == {"kind": "unclassified", "title": decision.reason_title}


def test_a_projects_environment_override_beats_its_default_which_beats_veils():
    defaults = UnclassifiedDefaults(
        frozenset({"prod", "production"}),
        {"shop": ProjectUnclassified(default=True, environments={"prod": False})},
    )

    prod, staging, production, _ = _answers(_engine_policy(defaults))

    assert prod == ("unmask", "not_sensitive"), "shop's setting for prod"
    assert staging == production == ("mask", "unclassified"), "shop masks everywhere else"
    assert defaults.masks("shop", "staging") == (True, "shop's setting")
    assert defaults.masks("other", "staging") == (False, "Veil's default for staging")


def test_a_rule_or_a_semantic_type_still_decides_how_an_unclassified_column_is_masked():
    redact = SemanticTypeView("free-text", "Free text", {"type": "redact_text"})
    policy = Policy(
        1,
        {_key("prod-pg"): CatalogColumn(_key("prod-pg"), "shop", "prod", None, (), None)},
        {"free-text": redact},
        [RuleView(1, "notes", 'resource.column_name == "body"', "free-text")],
        [],
    )

    (decision,) = policy.decide(ALICE, [_key("prod-pg")], now=NOW)

    assert (decision.reason_kind, decision.algorithm) == ("rule", {"type": "redact_text"})


# --- Settings: the service, its audit event, the snapshot --------------------------------------


@pytest.fixture
def notes_world(db, shop):
    """shop's support_notes (id classified 1, body unclassified) in prod-pg and staging-pg."""
    from masking.services.catalog import catalog_upsert

    for instance, environment in (("prod-pg", "prod"), ("staging-pg", "staging")):
        payload = catalog_payload(instance=instance, environment=environment, columns=NOTES)
        payload["databases"][0]["schemas"][0]["tables"][0]["name"] = "support_notes"
        catalog_upsert(
            instance_spec=payload["instance"],
            databases=payload["databases"],
            prune=False,
            actor=SYSTEM,
            channel=Channel.CLI,
        )
    decision_caches.clear()
    yield shop
    decision_caches.clear()


def _live(column: ColumnKey) -> tuple[str, str]:
    (decision,) = load_policy(read_epochs().policy).decide(ALICE, [column], now=NOW)
    return decision.action, decision.reason_kind


def test_saving_an_override_is_audited_versioned_and_changes_the_next_snapshot(notes_world):
    admin = make_user("polly")
    epoch = read_epochs().policy
    assert (_live(_key("prod-pg")), _live(_key("staging-pg"))) == (
        ("mask", "unclassified"),
        ("unmask", "not_sensitive"),
    )

    project_policy_settings_save(
        project=notes_world,
        two_person_rule=False,
        unclassified_default="mask",
        unclassified_environments={"prod": "unmask"},
        actor=actor_for(admin),
        channel=Channel.WEB,
    )

    event = AuditEvent.objects.get(action="project.policy_settings_updated")
    assert (event.actor_name, event.project, event.channel) == (str(admin), "shop", Channel.WEB)
    assert event.detail == {
        "before": {"unclassified_default": "", "unclassified_environments": {}},
        "after": {"unclassified_default": "mask", "unclassified_environments": {"prod": "unmask"}},
    }
    assert read_epochs().policy > epoch, "decisions depend on it: the epoch moves"
    assert PolicyVersion.objects.filter(message="Policy settings of shop saved").exists()
    assert (_live(_key("prod-pg")), _live(_key("staging-pg"))) == (
        ("unmask", "not_sensitive"),
        ("mask", "unclassified"),
    )


def test_saving_the_same_settings_again_records_nothing(notes_world):
    for _ in range(2):
        project_policy_settings_save(
            project=notes_world,
            two_person_rule=False,
            unclassified_default="unmask",
            actor=SYSTEM,
            channel=Channel.CLI,
        )

    assert AuditEvent.objects.filter(action="project.policy_settings_updated").count() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"unclassified_default": "hide"}, "unclassified_default"),
        ({"unclassified_environments": {"prod": "maybe"}}, "unclassified_environments"),
        ({"unclassified_environments": {"pr od": "mask"}}, "unclassified_environments"),
        ({"unclassified_environments": ["prod"]}, "unclassified_environments"),
    ],
)
def test_bad_settings_are_refused_naming_the_field_and_nothing_is_written(notes_world, kwargs, field):
    with pytest.raises(PolicyError) as error:
        project_policy_settings_save(
            project=notes_world, two_person_rule=False, actor=SYSTEM, channel=Channel.CLI, **kwargs
        )

    assert error.value.field == field
    assert not ProjectPolicySettings.objects.exists()
    assert not AuditEvent.objects.filter(action="project.policy_settings_updated").exists()


# --- Policy as code ----------------------------------------------------------------------------


def test_the_setting_round_trips_through_the_policy_document(notes_world):
    make_project("analytics")
    document = export_document()
    document["projects"] = [
        {"key": "analytics", "unclassified": "unmask"},
        {"key": "shop", "unclassified_environments": {"staging": "mask", "prod": "unmask"}},
    ]

    policy_submit(
        document=parse_document(document),
        message="defaults",
        actor=SYSTEM,
        channel=Channel.CLI,
        author=None,
        authorize=False,
    )

    assert export_document()["projects"] == [
        {
            "key": "analytics",
            "two_person_rule": False,
            "unclassified": "unmask",
            "unclassified_environments": {},
        },
        {
            "key": "shop",
            "two_person_rule": False,
            "unclassified": "",
            "unclassified_environments": {"prod": "unmask", "staging": "mask"},
        },
    ]
    assert _live(_key("staging-pg")) == ("mask", "unclassified")

    document["projects"] = []
    policy_submit(
        document=parse_document(document),
        message="back",
        actor=SYSTEM,
        channel=Channel.CLI,
        author=None,
        authorize=False,
    )

    assert export_document()["projects"] == []
    assert _live(_key("staging-pg")) == ("unmask", "not_sensitive")
    assert not plan_against_live(parse_document(export_document())).has_changes


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"key": "shop", "unclassified": "hide"}, "projects[0].unclassified"),
        (
            {"key": "shop", "unclassified_environments": {"prod": "no"}},
            "projects[0].unclassified_environments",
        ),
        ({"key": "shop", "unclassified_environments": "prod"}, "projects[0].unclassified_environments"),
    ],
)
def test_a_policy_file_with_a_bad_setting_is_refused_naming_the_place(notes_world, item, path):
    with pytest.raises(DocumentError) as error:
        parse_document({**export_document(), "projects": [item]})

    assert error.value.path == path


# --- The pages and `masking check` -------------------------------------------------------------


def test_the_settings_page_shows_the_answers_and_saves_an_override_through_review(client, notes_world):
    from tests.factories import grant_project_perm

    polly = make_user("polly")
    grant_project_perm(polly, "administer_policy", notes_world)
    client.force_login(polly)
    page = client.get(reverse("policy:settings")).content.decode()
    assert "Veil&#x27;s default for prod" in page and "Veil&#x27;s default for staging" in page

    bad = client.post(reverse("policy:settings"), {"shop-unclassified_environments": "prod=perhaps"})
    assert bad.status_code == 200 and "write environment=mask or environment=unmask" in bad.content.decode()

    review = client.post(
        reverse("policy:settings"),
        {"shop-unclassified": "", "shop-unclassified_environments": "staging=mask"},
    )
    assert review.status_code == 200 and "1 to update" in review.content.decode()
    confirm(client, review, "Staging notes are real customers' data")

    assert ProjectPolicySettings.objects.get().unclassified_environments == {"staging": "mask"}
    assert _live(_key("staging-pg")) == ("mask", "unclassified")
    page = client.get(reverse("policy:settings")).content.decode()
    assert "shop&#x27;s setting for staging" in page


def test_checks_page_and_masking_check_list_unclassified_columns_in_clear(client, notes_world):
    from tests.factories import grant_project_perm

    polly = make_user("polly")
    grant_project_perm(polly, "administer_policy", notes_world)
    client.force_login(polly)

    page = client.get(reverse("policy:checks")).content.decode()
    out = StringIO()
    call_command("masking", "check", stdout=out)
    report = StringIO()
    call_command("masking", "check", "--format", "json", stdout=report)

    assert "staging-pg/shop/public.support_notes.body" in page
    assert "prod-pg/shop/public.support_notes.body" not in page, "masked by default: not listed"
    assert "1 such column is masked" in page
    lines = out.getvalue().splitlines()
    assert (
        "UNCLASSIFIED staging-pg/shop/public.support_notes.body  (staging): "
        "not classified; in clear by Veil's default for staging"
    ) in lines
    assert (
        lines[-1]
        == "0 uncovered, 0 to review, 1 unclassified in clear (1 more masked by default), of 4 columns."
    )
    unclassified = json.loads(report.getvalue())["unclassified"]
    assert [(f["column"], f["decision"], f["reason"]) for f in unclassified] == [
        ("prod-pg/shop/public.support_notes.body", "mask", "unclassified"),
        ("staging-pg/shop/public.support_notes.body", "unmask", "not_sensitive"),
    ]


# --- The live decision endpoint ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_live_endpoint_answers_unclassified_by_environment_and_follows_an_override(veil_url):  # noqa: F811
    import urllib.request

    from masking.services.catalog import catalog_upsert

    shop = make_project("shop", title="Shop")
    for instance, environment in (("prod-pg", "prod"), ("staging-pg", "staging")):
        payload = catalog_payload(instance=instance, environment=environment, columns=NOTES)
        catalog_upsert(
            instance_spec=payload["instance"],
            databases=payload["databases"],
            prune=False,
            actor=SYSTEM,
            channel=Channel.CLI,
        )
    make_user("alice", email="alice@example.com", email_verified=True)
    _, token = make_token([Scope.DECISIONS], account_name="sql-proxy")
    decision_caches.clear()

    def decide() -> list[tuple[str, str]]:
        columns = [
            {"instance": i, "database": "shop", "schema": "public", "table": "customers", "column": "body"}
            for i in ("prod-pg", "staging-pg")
        ]
        body = json.dumps({"principal": {"user": "alice@example.com"}, "query_id": "q", "columns": columns})
        request = urllib.request.Request(  # noqa: S310 - the loopback server's http URL
            f"{veil_url}/api/v1/decisions",
            data=body.encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answers = json.load(response)["decisions"]
        return [(a["action"], a["reason"]["kind"]) for a in answers]

    try:
        assert decide() == [("mask", "unclassified"), ("unmask", "not_sensitive")]

        project_policy_settings_save(
            project=shop,
            two_person_rule=False,
            unclassified_environments={"prod": "unmask", "staging": "mask"},
            actor=SYSTEM,
            channel=Channel.CLI,
        )

        assert decide() == [("unmask", "not_sensitive"), ("mask", "unclassified")]
        assert DecisionEpoch.objects.get().policy > 1
    finally:
        decision_caches.clear()
