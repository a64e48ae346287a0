"""Finding 5: the application's own database role could bypass the append-only audit log.

Each test creates two roles in PostgreSQL (names unique to the run): an owner that owns every table
(as if it had run the migrations) and a runtime role set up only by `manage.py audit db-roles`.
The runtime role connects with psycopg and tries every bypass the review used; each must be refused
by PostgreSQL. Veil itself then runs as that role (record, seal, checkpoint), and a DBA's rewrite
or deletion behind its back is named by `audit verify` at the event it touched.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pgtrigger
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from audit.chain import canonical_event, chain_hash
from audit.models import AuditEvent, ChainHead, Checkpoint, DecisionRecord
from audit.selectors import verify_chain
from audit.services import SYSTEM, checkpoint_create, record_event, record_unmask_decisions, seal_decisions

pytestmark = pytest.mark.django_db(transaction=True)

APPEND_ONLY = (
    "audit_auditevent",
    "audit_decisionrecord",
    "audit_accessevent",
    "audit_checkpoint",
    "audit_archiveboundary",
    "masking_policyversion",
)


@pytest.fixture
def roles(transactional_db) -> Iterator[tuple[str, str]]:
    suffix = secrets.token_hex(4)
    owner, runtime = f"veil_owner_{suffix}", f"veil_app_{suffix}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {owner} NOLOGIN")
        cursor.execute(f"CREATE ROLE {runtime} LOGIN")
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'ALTER TABLE "{table}" OWNER TO {owner}')
        cursor.execute(f"ALTER FUNCTION audit_committed_watermark(text) OWNER TO {owner}")
    call_command("audit", "db-roles", "--runtime", runtime, "--owner", owner, "--apply", stdout=io.StringIO())
    try:
        yield owner, runtime
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            cursor.execute(f"REASSIGN OWNED BY {owner} TO CURRENT_USER")
            cursor.execute(f"DROP OWNED BY {runtime}, {owner}")
            cursor.execute(f"DROP ROLE {runtime}")
            cursor.execute(f"DROP ROLE {owner}")


def _connect(role: str) -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"], user=role)


@contextmanager
def as_role(role: str) -> Iterator[None]:
    """Veil's own code on Veil's connection, with the runtime role's privileges."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {role}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def _triggers(cursor, table: str) -> str:
    cursor.execute(
        "SELECT string_agg(tgname, ',') FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
        [table],
    )
    return "{" + cursor.fetchone()[0] + "}"


def _bypasses(cursor, table: str) -> dict[str, str]:
    ignore = _triggers(cursor, table)
    return {
        "update ignoring the trigger": f"SET LOCAL pgtrigger.ignore = '{ignore}'; UPDATE {table} SET id = id",
        "delete ignoring the trigger": f"SET LOCAL pgtrigger.ignore = '{ignore}'; DELETE FROM {table}",
        "disable the triggers": f"ALTER TABLE {table} DISABLE TRIGGER ALL",
        "drop a trigger": f"DROP TRIGGER {ignore[1:-1].split(',')[0]} ON {table}",
        "truncate": f"TRUNCATE {table}",
        "replica mode, then delete": f"SET LOCAL session_replication_role = replica; DELETE FROM {table}",
    }


def _seed() -> None:
    for i in range(3):
        record_event(action="test.event", actor=SYSTEM, channel="system", detail={"i": i})
    record_unmask_decisions(
        service_account="proxy",
        principal_type="user",
        principal_id="1",
        principal_name="alice",
        query_id="q",
        policy_version=1,
        asserted_groups=[],
        unmasked=[{"column": "shop.users.email", "reason": "grant"}],
    )
    seal_decisions()
    checkpoint_create()


def test_the_owner_role_could_bypass_the_triggers_the_runtime_role_cannot(roles):
    owner, runtime = roles
    _seed()
    # The finding, reproduced: the table's owner gets past the trigger with one setting.
    with transaction.atomic(), connection.cursor() as cursor:
        ignore = _triggers(cursor, "audit_auditevent")
        cursor.execute(f"SET LOCAL ROLE {owner}")
        cursor.execute(f"SET LOCAL pgtrigger.ignore = '{ignore}'")
        cursor.execute("UPDATE audit_auditevent SET detail = '{}' WHERE seq = 1")
        assert cursor.rowcount == 1
        transaction.set_rollback(True)

    refused = {}
    with _connect(runtime) as conn, conn.cursor() as cursor:
        for table in APPEND_ONLY:
            for name, sql in _bypasses(cursor, table).items():
                try:
                    cursor.execute(sql)
                except psycopg.errors.InsufficientPrivilege:
                    refused[table, name] = True
                else:
                    refused[table, name] = False
                conn.rollback()
        # It can still do its work: append, and move the chain head.
        cursor.execute("SELECT count(*) FROM audit_auditevent")
        assert cursor.fetchone()[0] >= 4
        cursor.execute("UPDATE audit_chainhead SET seq = seq WHERE id = 1")
        conn.rollback()

    assert {key for key, ok in refused.items() if not ok} == set()


def test_veil_runs_as_the_runtime_role_and_its_grants_are_printed(roles):
    owner, runtime = roles
    with as_role(runtime):
        _seed()
        assert verify_chain().ok
    out = io.StringIO()
    call_command("audit", "db-roles", "--runtime", runtime, "--owner", owner, stdout=out)
    printed = out.getvalue()
    assert f'GRANT SELECT, INSERT ON TABLE public."audit_auditevent" TO "{runtime}"' in printed
    assert "TRUNCATE" not in printed.replace("REVOKE ALL", "")


def test_a_runtime_role_that_owns_a_table_is_refused(roles):
    owner, runtime = roles
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE audit_checkpoint OWNER TO {runtime}")
    with pytest.raises(CommandError, match="owns"):
        call_command(
            "audit", "db-roles", "--runtime", runtime, "--owner", owner, "--apply", stdout=io.StringIO()
        )
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE audit_checkpoint OWNER TO {owner}")


def _rewrite_from(seq: int) -> None:
    """A DBA (superuser) edits event `seq` and re-chains every later event and the head, as anyone
    with the code and the database can: only the key outside the database is missing."""
    with transaction.atomic(), pgtrigger.ignore("audit.AuditEvent:audit_no_update_delete"):
        prev = AuditEvent.objects.get(seq=seq - 1).hash
        for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
            if event.seq == seq:
                event.detail = {"i": "rewritten"}
            fields = {f: getattr(event, f) for f in ("seq", "occurred_at", "actor_type", "actor_id")}
            fields |= {f: getattr(event, f) for f in ("actor_name", "action", "target_type", "target_id")}
            fields |= {f: getattr(event, f) for f in ("target_repr", "project", "channel", "detail")}
            digest = chain_hash(prev, canonical_event(**fields))
            AuditEvent.objects.filter(pk=event.pk).update(detail=event.detail, prev_hash=prev, hash=digest)
            prev = digest
        ChainHead.objects.filter(id=1).update(hash=prev)


@pytest.mark.parametrize("covered", [False, True], ids=["no-checkpoint-covers-it", "checkpoint-covers-it"])
def test_a_rewritten_re_chained_tail_is_named_at_the_first_event_changed(roles, covered):
    _, runtime = roles
    with as_role(runtime):
        for i in range(4):
            record_event(action="test.event", actor=SYSTEM, channel="system", detail={"i": i})
        checkpoint_create()
        for i in range(4, 7):
            record_event(action="test.event", actor=SYSTEM, channel="system", detail={"i": i})
        if covered:
            checkpoint_create()
    assert verify_chain().ok

    _rewrite_from(5)

    result = verify_chain()
    assert not result.ok and result.first_break.seq == 5, result.breaks
    with pytest.raises(CommandError, match="broken at event #5"):
        call_command("audit", "verify", stdout=io.StringIO(), stderr=io.StringIO())


def test_a_decision_record_deleted_before_its_seal_is_named(roles):
    _, runtime = roles
    with as_role(runtime):
        ids = [
            record_unmask_decisions(
                service_account="proxy",
                principal_type="user",
                principal_id="1",
                principal_name="alice",
                query_id=f"q{i}",
                policy_version=1,
                asserted_groups=[],
                unmasked=[{"column": "shop.users.email", "reason": "grant"}],
            )
            for i in range(3)
        ]
    with pgtrigger.ignore("audit.DecisionRecord:decisionrecord_append_only"):
        DecisionRecord.objects.filter(id=ids[1]).delete()

    with as_role(runtime):
        seal = seal_decisions()
    assert seal is not None

    result = verify_chain()
    assert not result.ok and result.first_break.seq == seal.seq
    assert f"decision_records #{ids[1]} missing" in result.first_break.reason


def test_a_cut_tail_is_found_from_the_published_checkpoints(roles, settings, tmp_path):
    _, runtime = roles
    settings.AUDIT_CHECKPOINT_PATH = str(tmp_path / "checkpoints.jsonl")
    with as_role(runtime):
        for i in range(5):
            record_event(action="test.event", actor=SYSTEM, channel="system", detail={"i": i})
        made = checkpoint_create()
    assert made is not None
    published = json.loads((tmp_path / "checkpoints.jsonl").read_text().splitlines()[-1])
    assert (published["seq"], published["hash"]) == (5, made.hash)

    # The DBA removes the tail, the checkpoint that named it, and rolls the head back.
    with (
        transaction.atomic(),
        pgtrigger.ignore(
            "audit.AuditEvent:audit_no_update_delete", "audit.Checkpoint:checkpoint_append_only"
        ),
    ):
        Checkpoint.objects.all().delete()
        AuditEvent.objects.filter(seq__gte=4).delete()
        last = AuditEvent.objects.get(seq=3)
        ChainHead.objects.filter(id=1).update(seq=3, hash=last.hash)

    result = verify_chain()
    assert not result.ok and result.first_break.seq == 5
    assert "outside the database" in result.first_break.reason
