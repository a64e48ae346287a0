"""What a compliance reader meets searching the log: values the database cannot take are filter
errors, the role and column filters find the events that name them the way producers write them,
an exemption's change is its state in the reports, and pages link only to events the reader may
open."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audit.filters import EVERYTHING, AuditFilter, AuditScope, FilterError, events_matching, parse_seq
from audit.models import Channel, ExportJob
from audit.reports import in_force_rows, unmask_rows
from audit.services import SYSTEM, Target, checkpoint_create, record_event, record_unmask_decisions
from tests.audit.conftest import CAROL, ERIN

pytestmark = pytest.mark.django_db

TEXT_FILTERS = ("person", "role", "project", "instance", "database", "column", "action")
PAGES = [
    ("audit:events", ()),
    *(("audit:report", (key,)) for key in ("unmasks", "in_force", "policy", "breakglass", "denied")),
]


@pytest.mark.parametrize(("name", "args"), PAGES)
@pytest.mark.parametrize("field", TEXT_FILTERS)
def test_a_nul_in_a_filter_is_named_not_a_server_error(client, people, name, args, field):
    """PostgreSQL refuses NUL in text: the page says which filter holds it instead of failing."""
    client.force_login(people["staff"])

    response = client.get(reverse(name, args=args), {field: "shop\x00"})

    assert response.status_code == 200
    assert f"{field}: contains a control character" in response.content.decode()


def test_a_nul_in_an_export_filter_starts_nothing(client, people):
    client.force_login(people["dave"])

    response = client.post(
        reverse("audit:exports"), {"report": "events", "format": "csv", "person": "a\x00b"}, follow=True
    )

    assert "Export not started: person: contains a control character" in response.content.decode()
    assert not ExportJob.objects.exists()


@pytest.mark.parametrize("before", ["²", "99999999999999999999999999", "-3", "abc"])
def test_a_page_cursor_that_is_no_event_number_is_ignored(client, people, before):
    record_event(action="grant.created", actor=SYSTEM, channel=Channel.WEB, target=Target("grant", "1"))
    client.force_login(people["staff"])

    response = client.get(reverse("audit:events"), {"before": before})

    assert response.status_code == 200 and "grant #1" in response.content.decode()


def test_event_numbers_parse_only_from_ascii_digits_that_fit():
    assert parse_seq("42") == 42 and parse_seq(" 7 ") == 7
    assert parse_seq("²") is None and parse_seq("٣") is None and parse_seq("1" * 19) is None
    assert AuditFilter.from_mapping({"through_seq": "²"}).through_seq is None


def test_the_cli_names_a_bad_expect_and_a_bad_archive_date(people):
    with pytest.raises(CommandError, match="give SEQ:HASH"):
        call_command("audit", "verify", "--expect", "²:" + "0" * 64)
    with pytest.raises(CommandError, match="give SEQ:HASH"):
        call_command("audit", "verify", "--expect", "1:" + "z" * 64)
    with pytest.raises(CommandError, match=r"^--before: 'soon' is not a date"):
        call_command("audit", "archive", "--before", "soon")
    with pytest.raises(CommandError, match="person: contains a control character"):
        call_command("audit", "report", "events", "--person", "a\x00b")


def test_filter_errors_keep_the_message_apart_from_the_field():
    with pytest.raises(FilterError) as caught:
        AuditFilter.from_mapping({"to": "never"})

    assert (
        caught.value.field == "to"
        and caught.value.message == "'never' is not a date (YYYY-MM-DD) or an ISO date-time"
    )


# --- the role and column filters, on what the producers really record ----------------------------------


@pytest.fixture
def policy_log(people, shop):
    """A role, an approval policy naming it, an exemption for support agents that is then changed
    to name the role and expire, and Alice's request and grant on customers.email."""
    from identity.models import Role
    from jitaccess.policy.services import approval_policy_save
    from masking.services.policy import exemption_create, exemption_update
    from masking.services.roles import role_save

    approvers = role_save(name="pii-approvers", users=[people["dave"]], actor=ERIN, channel=Channel.WEB)
    support = Role.objects.create(name="support-agents")
    approval_policy_save(
        project=shop,
        title="Production PII",
        condition="true",
        approver_roles=[approvers],
        actor=ERIN,
        channel=Channel.WEB,
    )
    exemption = exemption_create(
        project=shop,
        reason="Support confirms callers",
        condition='resource.column_name == "phone"',
        roles=[support],
        created_by=None,
        actor=ERIN,
        channel=Channel.WEB,
    )
    exemption_update(
        exemption=exemption,
        reason="Support confirms callers",
        condition='resource.column_name == "phone" && resource.table_name == "customers"',
        roles=[approvers],
        expires_at=timezone.now() + timedelta(days=1),
        actor=ERIN,
        channel=Channel.WEB,
    )
    record_event(
        action="request.created",
        actor=CAROL,
        channel=Channel.WEB,
        target=Target("request", "1", "REQ-1 prod-pg/shop/public.customers (email, birth_date)"),
        project="shop",
        detail={"scope": "prod-pg/shop/public.customers (email, birth_date)", "reason": "INC-1"},
    )
    record_event(
        action="grant.created",
        actor=ERIN,
        channel=Channel.WEB,
        target=Target("grant", "9", "REQ-1"),
        project="shop",
        detail={
            "principal": "user:3",
            "request": "REQ-1",
            "condition": 'resource.table_name == "customers"'
            ' && resource.column_name in ["birth_date", "email"]',
        },
    )
    record_event(
        action="request.created",
        actor=CAROL,
        channel=Channel.WEB,
        target=Target("request", "2", "REQ-2 prod-pg/shop/public.orders (email_opt_in)"),
        project="shop",
        detail={"scope": "prod-pg/shop/public.orders (email_opt_in)", "reason": "INC-2"},
    )
    return exemption


def _actions(**filters) -> list[str]:
    return [e.action for e in events_matching(AuditFilter(**filters), EVERYTHING)]


def test_the_role_filter_finds_every_event_that_names_the_role(policy_log):
    assert _actions(role="pii-approvers") == ["role.created", "approval_policy.created", "exemption.updated"]
    assert _actions(role="support-agents") == ["exemption.created", "exemption.updated"]
    assert _actions(role="nobody") == []


def test_the_column_filter_finds_a_table_column_named_in_parts(policy_log):
    assert _actions(column="customers.email") == ["request.created", "grant.created"]
    assert _actions(column="prod-pg/shop/public.customers.email") == ["request.created"]
    assert _actions(column="orders.email") == ["request.created"], "REQ-2 names orders and email_opt_in"


def test_the_column_filter_on_the_events_page(client, people, policy_log):
    client.force_login(people["dave"])

    page = client.get(reverse("audit:events"), {"column": "customers.email"}).content.decode()

    assert "REQ-1 prod-pg/shop/public.customers" in page and "REQ-2" not in page


def test_a_changed_exemption_is_in_force_as_changed(policy_log):
    rows = [r for r in in_force_rows(AuditFilter(), EVERYTHING) if r[0] == "exemption"]

    assert len(rows) == 1
    _kind, _id, _project, _principal, members, condition, _reason, _req, _at, _by, expires = rows[0]
    assert members["roles"] == ["pii-approvers"]
    assert condition == 'resource.column_name == "phone" && resource.table_name == "customers"'
    assert expires is not None
    assert [r[0] for r in in_force_rows(AuditFilter(role="pii-approvers"), EVERYTHING)] == ["exemption"]
    assert list(in_force_rows(AuditFilter(role="support-agents"), EVERYTHING)) == []
    later = AuditFilter(at=timezone.now() + timedelta(days=2))
    assert [r for r in in_force_rows(later, EVERYTHING) if r[0] == "exemption"] == [], "it expired"


def test_an_unmask_through_a_changed_exemption_shows_its_members_and_expiry_after_the_change(policy_log):
    record_unmask_decisions(
        service_account="sql-proxy",
        principal_type="user",
        principal_id="4",
        principal_name="Dan Support",
        query_id="q1",
        policy_version=1,
        asserted_groups=[],
        unmasked=[
            {"column": "prod-pg/shop/public.customers.phone", "reason": "exemption", "id": str(policy_log.pk)}
        ],
    )

    assert [r[1] for r in unmask_rows(AuditFilter(role="pii-approvers"), EVERYTHING)] == ["Dan Support"]
    assert list(unmask_rows(AuditFilter(role="support-agents"), EVERYTHING)) == []
    (row,) = unmask_rows(AuditFilter(), EVERYTHING)
    assert row[16] is not None, "the expiry the change set"


# --- links only to events the reader may open ------------------------------------------------------------


def test_neighbours_and_checkpoints_outside_the_readers_projects_are_named_not_linked(client, people):
    for project in ("shop", "analytics", "shop"):
        record_event(
            action="grant.created",
            actor=SYSTEM,
            channel=Channel.WEB,
            target=Target("grant", project),
            project=project,
        )
    record_event(
        action="grant.created",
        actor=SYSTEM,
        channel=Channel.WEB,
        target=Target("grant", "x"),
        project="analytics",
    )
    checkpoint_create()
    client.force_login(people["dave"])

    event = client.get(reverse("audit:event", args=[1])).content.decode()
    middle = client.get(reverse("audit:event", args=[3])).content.decode()
    dashboard = client.get(reverse("audit:dashboard")).content.decode()
    staff = client.force_login(people["staff"]) or client.get(reverse("audit:dashboard")).content.decode()

    assert reverse("audit:event", args=[2]) not in event
    assert '#2 <span class="muted">(outside the projects you audit)</span>' in event
    assert reverse("audit:event", args=[4]) not in middle and "#4 <span" in middle
    assert reverse("audit:event", args=[2]) not in middle
    assert reverse("audit:event", args=[4]) not in dashboard and "event #4," in dashboard
    assert reverse("audit:event", args=[4]) in staff


def test_a_neighbour_in_scope_stays_a_link(client, people):
    for name in ("a", "b"):
        record_event(
            action="grant.created",
            actor=SYSTEM,
            channel=Channel.WEB,
            target=Target("grant", name),
            project="shop",
        )
    client.force_login(people["dave"])

    event = client.get(reverse("audit:event", args=[1])).content.decode()

    assert f'href="{reverse("audit:event", args=[2])}"' in event


def test_a_project_reader_cannot_search_into_another_project_with_a_label(people):
    record_event(
        action="request.created",
        actor=CAROL,
        channel=Channel.WEB,
        target=Target("request", "7", "REQ-7 warehouse/analytics/public.events (ip)"),
        project="analytics",
        detail={"scope": "warehouse/analytics/public.events (ip)"},
    )

    assert list(events_matching(AuditFilter(column="events.ip"), AuditScope(frozenset({"shop"})))) == []
    assert len(list(events_matching(AuditFilter(column="events.ip"), EVERYTHING))) == 1


def test_the_exports_page_gives_auditors_the_key_that_checks_a_manifest(client, people, tmp_path):
    from audit import signing
    from audit.exports import cli_actor, write_export

    key = signing.current_key()
    client.force_login(people["dave"])

    page = client.get(reverse("audit:exports")).content.decode()

    assert key.key_id in page and key.public_b64 in page
    record_event(action="grant.created", actor=SYSTEM, channel=Channel.WEB, target=Target("grant", "1"))
    out = tmp_path / "events.csv"
    written = write_export(
        report="events",
        fmt="csv",
        flt=AuditFilter(),
        scope=EVERYTHING,
        out_path=out,
        actor=cli_actor(),
        channel=Channel.CLI,
    )
    call_command(
        "audit", "verify-export", str(out), str(written.manifest_path), "--public-key", key.public_b64
    )


def test_the_in_force_page_says_which_moment_it_shows(client, people):
    client.force_login(people["dave"])

    by_day = client.get(reverse("audit:report", args=["in_force"]), {"at": "2026-03-01"}).content.decode()
    by_period = client.get(
        reverse("audit:report", args=["in_force"]), {"from": "2026-01-01", "to": "2026-01-31"}
    ).content.decode()
    now = client.get(reverse("audit:report", args=["in_force"])).content.decode()
    bad = client.get(reverse("audit:report", args=["in_force"]), {"at": "soon"}).content.decode()

    assert 'In force at 2026-03-02 00:00 UTC</strong> <span class="muted">(the end of 2026-03-01)' in by_day
    assert (
        'In force at 2026-02-01 00:00 UTC</strong> <span class="muted">(the end of the period;' in by_period
    )
    assert "<strong>In force at 20" in now and "(now;" in now
    assert "<strong>In force at" not in bad and "at: &#x27;soon&#x27; is not a date" in bad


@pytest.mark.parametrize(
    ("name", "args"), [("audit:events", ()), ("audit:report", ("policy",)), ("audit:report", ("denied",))]
)
def test_an_event_type_no_event_has_is_named_with_the_closest_one(client, people, name, args):
    record_event(action="request.denied", actor=SYSTEM, channel=Channel.WEB, target=Target("request", "1"))
    client.force_login(people["staff"])

    typo = client.get(reverse(name, args=args), {"action": "request.deny"}).content.decode()
    prefix = client.get(reverse(name, args=args), {"action": "request"}).content.decode()

    assert "action: no event of type &#x27;request.deny&#x27; in the audit log; did you mean" in typo
    assert "&#x27;request.denied&#x27;?" in typo
    assert "Filter error" not in prefix


def test_the_action_of_the_unmask_and_break_glass_reports_is_not_an_event_type(client, people):
    client.force_login(people["staff"])

    for key, value in (("unmasks", "grant"), ("breakglass", "pending"), ("in_force", "exemption")):
        page = client.get(reverse("audit:report", args=[key]), {"action": value}).content.decode()
        assert "Filter error" not in page, key


def test_an_export_or_cli_report_for_an_unknown_event_type_starts_nothing(client, people):
    client.force_login(people["dave"])

    response = client.post(
        reverse("audit:exports"), {"report": "events", "format": "csv", "action": "grant.creatd"}, follow=True
    )

    assert "Export not started: action: no event of type" in response.content.decode()
    assert not ExportJob.objects.exists()
    with pytest.raises(CommandError, match=r"no event of type 'nothing\.here'"):
        call_command("audit", "report", "events", "--action", "nothing.here")


def test_the_field_a_filter_error_names_is_marked_invalid(client, people):
    client.force_login(people["staff"])

    page = client.get(reverse("audit:events"), {"action": "nothing.here", "person": "bob"}).content.decode()

    assert 'name="action" value="nothing.here" aria-invalid="true"' in page
    assert 'name="person" value="bob" placeholder' in page


@pytest.mark.parametrize(
    ("key", "good", "bad", "choices"),
    [
        ("unmasks", "grant", "request.denied", "&#x27;grant&#x27; or &#x27;exemption&#x27;"),
        ("in_force", "exemption", "rule", "&#x27;grant&#x27; or &#x27;exemption&#x27;"),
        ("breakglass", "pending", "open", "&#x27;pending&#x27; or &#x27;reviewed&#x27;"),
    ],
)
def test_reports_whose_action_is_no_event_type_offer_and_check_their_own_choices(
    client, people, key, good, bad, choices
):
    client.force_login(people["staff"])

    fine = client.get(reverse("audit:report", args=[key]), {"action": good}).content.decode()
    wrong = client.get(reverse("audit:report", args=[key]), {"action": bad}).content.decode()

    assert "Filter error" not in fine and f'<option value="{good}" selected>' in fine
    assert 'list="event-types"' not in fine
    assert f"action: &#x27;{bad}&#x27; is not {choices}, what this report filters on" in wrong


def test_a_dotted_column_search_still_reads_the_trigram_indexes(policy_log):
    """Each part of `table.column` is a trigram-indexed test, like the whole value: a label found
    nowhere must not read the whole log (sequential scans priced out, as in test_reports)."""
    from django.db import connection

    flt = AuditFilter(column="nowhere-table.nowhere-column")
    sql, params = events_matching(flt, EVERYTHING).order_by("-seq")[:51].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "auditevent_detail_trgm" in plan and "auditevent_target_id_trgm" in plan, plan
    assert "Seq Scan on audit_auditevent" not in plan, plan


def test_the_cli_export_names_an_out_path_it_cannot_write_and_leaves_nothing(tmp_path, people):
    from audit.models import AuditEvent

    record_event(action="grant.created", actor=SYSTEM, channel=Channel.WEB, target=Target("grant", "1"))
    (tmp_path / "taken").mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with pytest.raises(CommandError, match=r"--out: .*taken is a directory"):
        call_command("audit", "export", "--format", "csv", "--out", str(tmp_path / "taken"))
    with pytest.raises(CommandError, match=r"--out: cannot write .*file/x\.csv"):
        call_command("audit", "export", "--format", "csv", "--out", str(blocker / "x.csv"))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_a_failed_write_removes_its_partial_file(tmp_path, people, monkeypatch):
    from audit import exports

    record_event(action="grant.created", actor=SYSTEM, channel=Channel.WEB, target=Target("grant", "1"))

    def broken(*args, **kwargs):
        yield b"seq,occurred_at\n"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exports, "report_chunks", broken)
    with pytest.raises(CommandError, match="No space left on device"):
        call_command("audit", "export", "--format", "csv", "--out", str(tmp_path / "out.csv"))

    assert list(tmp_path.iterdir()) == []
