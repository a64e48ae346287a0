"""An md5 salt is a secret of the data-access side: it never reaches the audit log, whose readers
(compliance) are not policy admins and whose rows can never be removed."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent, Channel
from audit.selectors import verify_chain
from audit.services import SYSTEM
from masking.algorithms import redact, secrets_changed
from masking.models import SemanticType
from masking.services.policy import semantic_type_delete, semantic_type_save

pytestmark = pytest.mark.django_db


def _save(salt: str, title: str = "IP") -> SemanticType:
    return semantic_type_save(
        key="ip", title=title, algorithm={"type": "md5", "salt": salt}, actor=SYSTEM, channel=Channel.WEB
    )


def test_no_salt_is_written_to_the_audit_log_and_a_changed_one_is_named():
    semantic_type = _save("FIRST-SALT")
    _save("SECOND-SALT")
    _save("SECOND-SALT", title="IP address")
    semantic_type_delete(
        semantic_type=SemanticType.objects.get(pk=semantic_type.pk), actor=SYSTEM, channel=Channel.WEB
    )

    events = list(AuditEvent.objects.filter(action__startswith="semantic_type.").order_by("seq"))
    logged = json.dumps([e.detail for e in events])

    assert "FIRST-SALT" not in logged and "SECOND-SALT" not in logged
    assert events[1].detail["after"]["algorithm"] == {"type": "md5", "salt": "(secret)"}
    assert events[1].detail["secrets_changed"] == ["salt"]
    assert "secrets_changed" not in events[2].detail, "only the title changed"
    assert SemanticType.objects.count() == 0 and verify_chain().ok
    assert _save("KEPT").algorithm["salt"] == "KEPT", "the policy itself keeps the salt"


def test_redact_and_secrets_changed():
    assert redact({"type": "md5", "salt": ""}) == {"type": "md5", "salt": ""}, "an empty salt is no secret"
    assert redact({"type": "full", "substitution": "x"}) == {"type": "full", "substitution": "x"}
    assert secrets_changed(None, {"type": "md5", "salt": "s"}) == ["salt"]
    assert secrets_changed({"type": "md5", "salt": "s"}, {"type": "md5", "salt": "s"}) == []
