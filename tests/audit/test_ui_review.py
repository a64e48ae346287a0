"""Findings of the UI review of the compliance pages: what grant events are about, words instead of
codes in the reports and the PDF, the PDF's scope and layout, the dashboard bars and the JSON Lines
download."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit.display import event_rows, filters_text, seconds_text, value_text
from audit.filters import EVERYTHING, AuditFilter, AuditScope
from audit.models import ActorType, AuditEvent, Channel, ExportJob, ExportState
from audit.reports import unmask_summary
from audit.reports.dashboard import short_column_label
from audit.services import (
    SYSTEM,
    Actor,
    Target,
    record_access_events,
    record_event,
    record_unmask_decisions,
)
from tests.audit.conftest import CAROL, ERIN
from tests.audit.conftest import page as _page

pytestmark = pytest.mark.django_db

ALICE = Actor(ActorType.USER, "local:2", "Alice Example")


def _granted(ref: int, grant_id: int, who: Actor = ALICE) -> None:
    """A request as jitaccess records it, and its grant as masking records it."""
    record_event(
        action="request.created",
        actor=who,
        channel=Channel.WEB,
        target=Target("request", str(ref), f"REQ-{ref} prod-pg/shop/public.orders (email)"),
        project="shop",
        detail={"scope": "prod-pg/shop/public.orders (email)", "reason": "INC-4711 refund mismatch"},
    )
    record_event(
        action="grant.created",
        actor=ERIN,
        channel=Channel.WEB,
        target=Target("grant", str(grant_id), f"REQ-{ref}"),
        project="shop",
        detail={"principal": "user:2", "request": f"REQ-{ref}", "condition": "true"},
    )


def _grant_revoked(ref: int, grant_id: int, actor: Actor) -> AuditEvent:
    """What masking's exemption_revoke records for a grant: its reason (the request's) as the name."""
    return record_event(
        action="grant.revoked",
        actor=actor,
        channel=Channel.WEB,
        target=Target("grant", str(grant_id), "INC-4711 refund mismatch"),
        project="shop",
        detail={"request": f"REQ-{ref}"},
    )


def _request_ended(ref: int, verb: str, actor: Actor) -> AuditEvent:
    return record_event(
        action=f"request.{verb}",
        actor=actor,
        channel=Channel.WEB,
        target=Target("request", str(ref), f"REQ-{ref} prod-pg/shop/public.orders (email)"),
        project="shop",
        detail={},
    )


# --- 1. what grant events are about ----------------------------------------------------------------


def test_a_revoked_grant_reads_as_the_grant_and_its_request_not_the_reason(client, people):
    _granted(4, 12)
    revoked = _grant_revoked(4, 12, ALICE)
    relinquished = _request_ended(4, "relinquished", ALICE)

    page = _page(client, people["dave"], "audit:events")

    assert '<td class="cell" title="INC-4711 refund mismatch">grant #12 (REQ-4)</td>' in page
    assert ">INC-4711 refund mismatch<" not in page, "the reason is not the object"
    assert '<td class="cell">grant #12 (REQ-4)</td>' in page, "grant.created too"
    row = page[page.index(f">{revoked.seq}</a>") :].split("</tr>")[0]
    assert f'(through <a href="/audit/events/{relinquished.seq}/">#{relinquished.seq}</a>' in row
    assert "access given up early" in row


def test_a_grant_revoked_by_someone_else_is_not_tied_to_a_later_relinquish():
    _granted(4, 12)
    direct = _grant_revoked(4, 12, ERIN)  # an administrator ends the grant itself
    _request_ended(4, "relinquished", ALICE)  # the requester gives up the request later
    _granted(5, 13)
    through = _grant_revoked(5, 13, ERIN)
    revoked = _request_ended(5, "revoked", ERIN)

    rows = {row.event.seq: row for row in event_rows(list(AuditEvent.objects.order_by("-seq")))}

    assert rows[direct.seq].ended_by is None
    assert rows[through.seq].ended_by == revoked
    assert rows[through.seq].target.text == "grant #13 (REQ-5)"


# --- 2. words instead of codes ---------------------------------------------------------------------


def _breakglass(ref: int, grant_id: int) -> None:
    """Break-glass as jitaccess records it: no request.created; the grant is made by Veil."""
    record_event(
        action="breakglass.taken",
        actor=ALICE,
        channel=Channel.WEB,
        target=Target("request", str(ref), f"REQ-{ref} prod-pg/shop/public.orders (email)"),
        project="shop",
        detail={"scope": "prod-pg/shop/public.orders (email)", "duration_s": 3600, "reason": "INC-9 outage"},
    )
    record_event(
        action="grant.created",
        actor=SYSTEM,
        channel=Channel.WEB,
        target=Target("grant", str(grant_id), f"REQ-{ref}"),
        project="shop",
        detail={
            "principal": "user:6",
            "request": f"REQ-{ref}",
            "condition": "true",
            "expires_at": (timezone.now() + timedelta(hours=1)).isoformat(),
        },
    )


def test_a_breakglass_grant_in_force_names_its_requester_reason_and_how_it_was_made(client, people):
    _breakglass(6, 30)

    page = _page(client, people["dave"], "audit:report", "in_force")

    assert '<td title="user:6">Alice Example <code class="muted code">user:6</code></td>' in page
    assert "key only" not in page
    assert "INC-9 outage" in page and "given for REQ-6" in page
    assert "Break-glass by Alice Example" in page and "no approver" in page


def test_the_policy_report_reads_object_types_durations_and_positions_in_words(client, people):
    record_event(
        action="approval_policy.updated",
        actor=ERIN,
        channel=Channel.WEB,
        target=Target("approval_policy", "3", "Prod PII"),
        project="shop",
        detail={"before": {"max_duration_s": 86400}, "after": {"max_duration_s": 5400}},
    )
    record_event(
        action="rule.updated",
        actor=ERIN,
        channel=Channel.WEB,
        target=Target("masking_rule", "7", "Emails"),
        detail={"before": {"position": 2}, "after": {"position": 0, "title": "Emails"}},
    )

    page = _page(client, people["staff"], "audit:report", "policy")

    assert "Approval policy <code" in page and "Masking rule <code" in page
    assert "max duration: 1 day" in page and "max duration: 1 hour 30 minutes" in page
    assert "position: first" in page and "position: third" in page
    assert "max_duration_s" not in page and "position: 0" not in page


def test_durations_and_positions_in_details():
    assert seconds_text(86400) == "1 day"
    assert seconds_text(90) == "1 minute 30 seconds"
    assert value_text({"position": 11, "enabled": True}) == "position: 12th; enabled: yes"


def test_the_denied_report_names_the_actor_and_the_channel(client, people):
    record_event(action="auth.sign_in", actor=CAROL, channel=Channel.WEB)
    record_event(
        action="auth.sign_in_failed",
        actor=Actor(ActorType.USER, "local:3", ""),  # a failed sign-in may record no name
        channel=Channel.WEB,
        project="shop",
    )
    record_event(action="request.denied", actor=CAROL, channel=Channel.SLACK, project="shop")

    page = _page(client, people["staff"], "audit:report", "denied")

    assert page.count('<td title="local:3">Carol Support <code class="muted code">local:3</code></td>') == 2
    assert '<td title="web">Web <code class="muted code">web</code></td>' in page
    assert '<td title="slack">Slack' in page
    assert "<td>local:3</td>" not in page and "<td>web</td>" not in page


def test_the_pdf_counts_events_by_readable_family(tmp_path, people):
    from tests.audit.test_exports import _pdf_pages_and_text

    record_event(action="approval_policy.created", actor=ERIN, channel=Channel.WEB, project="shop")
    out = tmp_path / "summary.pdf"

    call_command("audit", "export", "--format", "pdf", "--out", str(out))

    _, text = _pdf_pages_and_text(out.read_bytes())
    assert "Approval policy events" in text
    assert "approval_policy.* events" not in text


# --- 3. the PDF summary and the exports list -------------------------------------------------------


def test_the_pdf_names_the_filtered_project_and_lets_sections_flow(tmp_path, people):
    from tests.audit.test_exports import _pdf_pages_and_text

    _granted(4, 12)
    out = tmp_path / "summary.pdf"

    call_command("audit", "export", "--format", "pdf", "--project", "shop", "--out", str(out))

    pages, text = _pdf_pages_and_text(out.read_bytes())
    assert re.search(r"\(\s*shop\s*\) Tj", text) and "analytics" not in text
    assert pages <= 2, "five short sections are not five pages"


def test_the_pdf_projects_line_is_the_filter_or_else_the_readers_scope():
    from audit.pdf import _projects_text

    two = AuditScope(projects=frozenset({"analytics", "shop"}))

    assert _projects_text(AuditFilter(project="shop"), two) == "shop"
    assert _projects_text(AuditFilter(), two) == "analytics, shop"
    assert _projects_text(AuditFilter(), EVERYTHING) == "all"


def test_rows_returned_is_unknown_not_zero_until_reported():
    column = "prod-pg/shop/public.orders.email"

    def unmasked(query_id: str, row_count: int | None = None) -> None:
        """A decision that unmasked for Alice, and the proxy's report of the rows it returned."""
        record_unmask_decisions(
            service_account="sql-proxy",
            principal_type="user",
            principal_id="2",
            principal_name="Alice Example",
            query_id=query_id,
            policy_version=1,
            asserted_groups=[],
            unmasked=[{"column": column, "reason": "grant", "id": 1}],
        )
        if row_count is not None:
            record_access_events(
                service_account="sql-proxy",
                events=[
                    {
                        "occurred_at": timezone.now(),
                        "principal_type": "user",
                        "principal": "alice",
                        "query_id": query_id,
                        "unmasked_columns": [column],
                        "masked_columns": [],
                        "row_count": row_count,
                    }
                ],
            )

    unmasked("q-1")
    assert unmask_summary(AuditFilter(), EVERYTHING)[0][3] is None

    unmasked("q-2", row_count=0)
    unmasked("q-3", row_count=5)
    assert unmask_summary(AuditFilter(), EVERYTHING)[0][3] == 5


def test_exported_periods_read_as_dates():
    stored = {"from": "2026-11-01T00:00:00+00:00", "to": "2026-12-01T00:00:00+00:00", "project": "shop"}

    assert filters_text(stored) == "From 1 Nov 2026, To 30 Nov 2026, Project shop"
    assert filters_text({"from": "2026-11-01T09:30:00+00:00"}) == "From 1 Nov 2026 09:30 UTC"


def test_the_exports_list_gives_a_pdfs_pages_not_zero_rows(client, people):
    dave = people["dave"]
    common = {"requested_by_pk": dave.pk, "requested_by": str(dave), "report": "summary", "format": "pdf"}
    ExportJob.objects.create(**common, state=ExportState.DONE, rows=0, manifest={"pages": 3})
    ExportJob.objects.create(
        **common, state=ExportState.PENDING, filters={"from": "2026-11-01T00:00:00+00:00"}
    )

    page = _page(client, dave, "audit:exports")

    assert "<td>3 pages</td>" in page and "<td>—</td>" in page
    assert "<td>0</td>" not in page
    assert "From 1 Nov 2026" in page and "2026-11-01T00:00" not in page


# --- 4. dashboard bars -----------------------------------------------------------------------------


def test_short_column_labels_keep_what_tells_them_apart():
    assert short_column_label("prod-pg/shop/public.orders.email") == "orders.email"
    assert short_column_label("prod-pg/shop/public.orders (email, phone)") == "orders (email, phone)"
    assert short_column_label("email") == "email"


def test_dashboard_bars_show_table_and_column_with_the_full_label_as_title(client, people):
    for column in ("prod-pg/shop/public.orders.email", "prod-pg/shop/public.customers.phone"):
        record_event(
            action="request.created",
            actor=ALICE,
            channel=Channel.WEB,
            target=Target("request", column[-5:], column),
            project="shop",
            detail={"columns": [column]},
        )

    page = _page(client, people["dave"], "audit:dashboard")

    assert '<span class="label" title="prod-pg/shop/public.orders.email">orders.email</span>' in page
    assert '<span class="label" title="prod-pg/shop/public.customers.phone">customers.phone</span>' in page


# --- 5. the JSON Lines download --------------------------------------------------------------------


def test_a_jsonl_export_downloads_as_ndjson_with_its_extension(client, people, settings):
    dave = people["dave"]
    job = ExportJob.objects.create(
        requested_by_pk=dave.pk,
        requested_by=str(dave),
        report="events",
        format="jsonl",
        state=ExportState.DONE,
        file_name="veil-audit-events-1.jsonl",
    )
    settings.AUDIT_EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    (settings.AUDIT_EXPORT_DIR / job.file_name).write_text('{"seq": 1}\n')
    client.force_login(dave)

    response = client.get(reverse("audit:export-download", args=[job.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert 'filename="veil-audit-events-1.jsonl"' in response["Content-Disposition"]
