"""The pure decision engine: precedence, scope, expiry to the second, fail-closed defaults."""

from __future__ import annotations

import orjson
import pytest

from masking.decisions.engine import (
    DEGRADED,
    CatalogColumn,
    ColumnKey,
    ExemptionView,
    Policy,
    Principal,
    RuleView,
    SemanticTypeView,
)

EMAIL = ColumnKey("prod-pg", "shop", "public", "customers", "email")
PHONE = ColumnKey("prod-pg", "shop", "public", "customers", "phone")
NOTE = ColumnKey("prod-pg", "shop", "public", "customers", "note")
ID = ColumnKey("prod-pg", "shop", "public", "customers", "id")
STAGING_EMAIL = ColumnKey("staging-pg", "shop", "public", "customers", "email")
ALICE = Principal("user", "1", "alice", frozenset({"engineering"}), frozenset({"engineers"}))
BOB = Principal("user", "2", "bob", frozenset({"support"}), frozenset())
ETL = Principal("service_account", "etl", "etl", frozenset(), frozenset({"pipelines"}))
NOW = 1_800_000_000.0

TYPES = {
    "email": SemanticTypeView("email", "Email", {"type": "email"}),
    "phone": SemanticTypeView("phone", "Phone", {"type": "show_last", "n": 2}),
    "full": SemanticTypeView("full", "Full", {"type": "full"}),
}


def _column(
    key: ColumnKey, level: int | None, semantic_type: str | None = None, env: str = "prod"
) -> CatalogColumn:
    return CatalogColumn(key, "shop", env, level, ("pii",) if level and level >= 3 else (), semantic_type)


CATALOG = {
    EMAIL: _column(EMAIL, 3),
    PHONE: _column(PHONE, 3, "phone"),
    NOTE: _column(NOTE, 2),
    ID: _column(ID, 1),
    STAGING_EMAIL: _column(STAGING_EMAIL, 3, env="staging"),
}


def _policy(rules=(), exemptions=(), **kwargs) -> Policy:
    return Policy(1, CATALOG, TYPES, list(rules), list(exemptions), **kwargs)


def _grant(
    id: int, expires_at: float, condition: str = 'resource.column_name == "email"', **kw
) -> ExemptionView:
    return ExemptionView(
        id, "grant", "shop", condition, expires_at, users=frozenset({"1"}), request_ref=f"REQ-{id}", **kw
    )


def test_first_matching_rule_wins():
    policy = _policy(
        rules=[
            RuleView(
                1,
                "emails in prod",
                'resource.column_name == "email" && resource.environment_id == "prod"',
                "email",
            ),
            RuleView(2, "all pii", '"pii" in resource.tags', "full"),
        ]
    )

    email, staging_email = policy.decide(ALICE, [EMAIL, STAGING_EMAIL], now=NOW)

    assert (email.action, email.semantic_type, email.reason_kind, email.reason_id) == (
        "mask",
        "email",
        "rule",
        1,
    )
    assert email.algorithm == {"type": "email"}
    assert (staging_email.semantic_type, staging_email.reason_id) == ("full", 2)


def test_a_rule_beats_the_columns_own_semantic_type_which_beats_classification():
    policy = _policy(
        rules=[
            RuleView(
                1, "pii", 'resource.classification_level == "3" && resource.column_name == "email"', "full"
            )
        ]
    )

    email, phone, note, id_ = policy.decide(ALICE, [EMAIL, PHONE, NOTE, ID], now=NOW)

    assert email.reason_kind == "rule"
    assert (phone.reason_kind, phone.semantic_type, phone.algorithm) == (
        "semantic_type",
        "phone",
        TYPES["phone"].algorithm,
    )
    assert (note.action, note.reason_kind) == ("unmask", "not_sensitive"), "level 2 is below the default"
    assert (id_.action, id_.reason_kind) == ("unmask", "not_sensitive")


def test_a_classified_column_with_nothing_masking_it_is_masked_in_full():
    (email,) = _policy().decide(ALICE, [EMAIL], now=NOW)

    assert (email.action, email.reason_kind, email.algorithm["type"]) == ("mask", "classification", "full")


def test_exemption_beats_rules_within_its_cel_scope_and_project():
    rules = [RuleView(1, "pii", '"pii" in resource.tags', "full")]
    support = ExemptionView(
        7, "exemption", "shop", 'resource.column_name == "phone"', None, groups=frozenset({"support"})
    )
    other_project = ExemptionView(8, "exemption", "billing", "", None, groups=frozenset({"support"}))
    policy = _policy(rules, [support, other_project])

    bob_email, bob_phone = policy.decide(BOB, [EMAIL, PHONE], now=NOW)
    (alice_phone,) = policy.decide(ALICE, [PHONE], now=NOW)

    assert bob_email.action == "mask", (
        "the exemption's condition covers phone only; billing's covers another project"
    )
    assert (bob_phone.action, bob_phone.reason_kind, bob_phone.reason_id) == ("unmask", "exemption", 7)
    assert bob_phone.algorithm is None
    assert alice_phone.action == "mask", "alice is not in support"


@pytest.mark.parametrize(
    ("principal", "member"),
    [
        (ALICE, {"users": frozenset({"1"})}),
        (ALICE, {"groups": frozenset({"engineering"})}),
        (ALICE, {"roles": frozenset({"engineers"})}),
        (ETL, {"service_accounts": frozenset({"etl"})}),
        (ETL, {"roles": frozenset({"pipelines"})}),
    ],
)
def test_exemption_members_are_users_groups_roles_and_service_accounts(principal, member):
    exemption = ExemptionView(3, "exemption", "shop", "", None, **member)

    (email,) = _policy(exemptions=[exemption]).decide(principal, [EMAIL], now=NOW)

    assert email.action == "unmask"


def test_a_grant_is_honoured_until_the_second_it_expires_and_never_after():
    grant = _grant(5, expires_at=NOW + 60)
    policy = _policy()

    (before,) = policy.decide(ALICE, [EMAIL], [grant], now=NOW + 59.999)
    (at_expiry,) = policy.decide(ALICE, [EMAIL], [grant], now=NOW + 60)
    (after,) = policy.decide(ALICE, [EMAIL], [grant], now=NOW + 61)

    assert (before.action, before.reason_kind, before.request_ref) == ("unmask", "grant", "REQ-5")
    assert at_expiry.action == "mask" and after.action == "mask"


def test_the_ttl_of_an_unmask_never_reaches_past_the_expiry():
    grant = _grant(5, expires_at=NOW + 4)
    (decision,) = _policy().decide(ALICE, [EMAIL], [grant], now=NOW)

    body = decision.as_json(NOW, default_ttl_s=10)

    assert body["ttl_s"] == 4
    assert body["reason"] == {
        "kind": "grant",
        "id": 5,
        "expires_at": "2027-01-15T08:00:04Z",
        "request": "REQ-5",
    }


def test_an_answer_is_encoded_once_unless_its_ttl_counts_down_to_an_expiry():
    grant = _grant(5, expires_at=NOW + 4)
    masked, unmasked = _policy().decide(ALICE, [PHONE, EMAIL], [grant], now=NOW)

    def encoded(decision, now, ttl):
        return orjson.loads(orjson.dumps([decision.encoded(now, ttl)]))[0]

    assert encoded(masked, NOW, 10) == masked.as_json(NOW, 10)
    assert masked.encoded(NOW, 10) is masked.encoded(NOW + 3, 10), "encoded once"
    assert encoded(masked, NOW, 30)["ttl_s"] == 30, "a new default TTL is encoded anew"
    assert encoded(unmasked, NOW, 10)["ttl_s"] == 4
    assert encoded(unmasked, NOW + 3, 10)["ttl_s"] == 1, "counted down on every call"
    assert DEGRADED.as_json(NOW, 10)["ttl_s"] == 0 == encoded(DEGRADED, NOW, 10)["ttl_s"]


def test_an_extension_is_not_honoured_before_it_starts_and_the_mask_is_not_cached_past_its_start():
    base = _grant(1, expires_at=NOW + 60)
    extension = _grant(2, expires_at=NOW + 3600, starts_at=NOW + 60)
    policy = _policy()

    (while_base,) = policy.decide(ALICE, [EMAIL], [base, extension], now=NOW)
    (only_extension,) = policy.decide(BOB, [EMAIL], [], now=NOW)  # another principal's memo, same table
    (base_revoked,) = _policy().decide(ALICE, [EMAIL], [extension], now=NOW + 59)
    (started,) = _policy().decide(ALICE, [EMAIL], [extension], now=NOW + 60)
    (continues,) = policy.decide(ALICE, [EMAIL], [base, extension], now=NOW + 60)

    assert (while_base.reason_id, while_base.valid_until) == (1, NOW + 60), "the base, not the longer one"
    assert only_extension.action == "mask"
    assert base_revoked.action == "mask" and base_revoked.as_json(NOW + 59, 300)["ttl_s"] == 1
    assert (started.action, started.reason_id) == ("unmask", 2)
    assert (continues.action, continues.reason_id) == ("unmask", 2), "memo entry expired with the base"


def test_a_standing_exemption_is_preferred_over_a_grant_and_the_longest_grant_over_a_shorter():
    short, long_ = _grant(1, NOW + 60), _grant(2, NOW + 600)
    standing = ExemptionView(9, "exemption", "shop", "", None, users=frozenset({"1"}))

    (with_grants,) = _policy().decide(ALICE, [EMAIL], [short, long_], now=NOW)
    (with_standing,) = _policy(exemptions=[standing]).decide(ALICE, [EMAIL], [short, long_], now=NOW)

    assert with_grants.reason_id == 2
    assert with_standing.reason_id == 9


def test_unknown_columns_and_principals_are_masked():
    policy = _policy()
    unknown = ColumnKey("prod-pg", "shop", "public", "customers", "ssn")

    (col,) = policy.decide(ALICE, [unknown], now=NOW)
    nobody = policy.decide(None, [ID, EMAIL], now=NOW)

    assert (col.action, col.reason_kind) == ("mask", "unknown_column")
    assert [d.reason_kind for d in nobody] == ["unknown_principal", "unknown_principal"]
    assert all(d.action == "mask" for d in nobody), "even a column that is not sensitive"


def test_an_unclassified_column_that_looks_sensitive_is_masked_until_reviewed():
    looks_like_phone = ColumnKey("prod-pg", "shop", "public", "customers", "mobile")
    catalog = {
        **CATALOG,
        looks_like_phone: CatalogColumn(looks_like_phone, "shop", "prod", None, (), None, 3),
    }

    (mobile,) = Policy(1, catalog, TYPES, [], []).decide(ALICE, [looks_like_phone], now=NOW)

    assert (mobile.action, mobile.reason_kind) == ("mask", "classification")
    assert "unreviewed" in mobile.reason_title


def test_unknown_columns_can_be_configured_to_pass():
    (col,) = _policy(unknown_columns_masked=False).decide(
        ALICE, [ColumnKey("a", "b", "c", "d", "e")], now=NOW
    )

    assert col.action == "unmask"


def test_a_rule_that_fails_to_evaluate_masks_in_full():
    policy = _policy(rules=[RuleView(1, "broken", "resource.column_name > 3", "email")])

    (email,) = policy.decide(ALICE, [EMAIL], now=NOW)

    assert (email.action, email.algorithm["type"]) == ("mask", "full")


def test_an_exemption_that_fails_to_evaluate_does_not_unmask():
    broken = ExemptionView(3, "exemption", "shop", "resource.column_name > 3", None, users=frozenset({"1"}))

    (email,) = _policy(exemptions=[broken]).decide(ALICE, [EMAIL], now=NOW)

    assert email.action == "mask"


def test_warm_decisions_come_from_the_principal_table_and_stay_correct():
    policy = _policy(rules=[RuleView(1, "email", 'resource.column_name == "email"', "email")])
    first = policy.decide(ALICE, [EMAIL, ID], now=NOW)
    second = policy.decide(ALICE, [EMAIL, ID], now=NOW + 1)

    assert [d.action for d in first] == [d.action for d in second] == ["mask", "unmask"]
    assert second[0] is first[0], "the same decision object is reused while valid"
