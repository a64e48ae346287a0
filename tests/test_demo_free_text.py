"""The demo's support notes are free text: masked with `redact_text`, so the data path replaces
the customers' details inside them and keeps the rest readable."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from veil_sdk.algorithms import apply

from masking.decisions.engine import ColumnKey
from masking.selectors import load_policy, resolve_principal

pytestmark = pytest.mark.django_db


def test_support_notes_are_redacted_for_engineers_in_every_environment():
    call_command("demo_data", allow_public_passwords=True)
    policy = load_policy(1)
    alice = resolve_principal({"user": "alice"})
    notes = [ColumnKey(i, "shop", "public", "support_notes", "body") for i in ("prod-pg", "staging-pg")]

    decisions = policy.decide(alice, notes, now=0)

    assert [(d.action, d.semantic_type, d.reason_kind) for d in decisions] == [
        ("mask", "free-text", "semantic_type"),
        ("mask", "free-text", "semantic_type"),
    ]
    note = "Customer called from +1 415 555 0100, mail ann@example.net"
    assert apply(decisions[0].algorithm, note) == "Customer called from <PHONE>, mail <EMAIL>"
