"""The compliance pages read as a product for people: event names instead of codes, human headings,
names instead of keys, a policy history that covers every policy change, verifying the log from the
web, and filters that say what is wrong with them."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.display import ACTION_LABELS, action_label, column_label, members_text
from audit.filters import EVERYTHING, AuditFilter, AuditScope, FilterError
from audit.models import (
    ActorType,
    AuditEvent,
    Channel,
    ExportJob,
    ExportState,
    VerificationRun,
    VerificationState,
)
from audit.reports import policy_rows
from audit.selectors import ChainVerification
from audit.services import SYSTEM, Actor, Target, checkpoint_create, record_event
from audit.tasks import run_verification, verify_log
from tests.audit.conftest import CAROL, ERIN, raw_sql, record_approved_request, record_grant
from tests.audit.conftest import page as _page
from tests.jitaccess.workers import (
    celery_worker,
    free_port,
    private_redis,
    publishing_to,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.django_db

ANN = Actor(ActorType.USER, "local:1", "Ann")


def _exemption(exemption_id: int, members: dict | None) -> None:
    record_event(
        action="exemption.created",
        actor=ERIN,
        channel=Channel.WEB,
        target=Target("exemption", str(exemption_id), f"support exemption {exemption_id}"),
        project="shop",
        detail={
            "condition": 'resource.column_name == "email"',
            "expires_at": None,
            **({"members": members} if members is not None else {}),
        },
    )


def _policy_event(action: str, project: str = "", **detail) -> None:
    kind = action.split(".")[0]
    record_event(
        action=action,
        actor=ERIN,
        channel=Channel.WEB,
        target=Target(kind, f"{kind}-{project or 'global'}", f"{kind} of {project or 'everyone'}"),
        project=project,
        detail=detail or {"before": None, "after": {"title": "x"}},
    )


# --- 1. words for people --------------------------------------------------------------------------


def test_the_event_list_names_events_in_words_and_keeps_the_code_beside_them(client, people):
    record_approved_request(5, ANN)
    record_event(action="custom.thing_happened", actor=SYSTEM, channel=Channel.SYSTEM, project="shop")

    page = _page(client, people["dave"], "audit:events")

    assert "Approval recorded" in page and "Access requested" in page
    assert '<span title="request.approval_recorded">Approval recorded</span>' in page
    assert '<code class="muted code">request.approval_recorded</code>' in page, "searchable by code"
    assert '<code title="Event type">custom.thing_happened</code>' in page, "unknown: the code itself"


def test_the_event_page_heading_names_the_event(client, people):
    record_approved_request(5, ANN)

    page = _page(client, people["dave"], "audit:event", 1)

    assert "<title>Event #1: Access requested" in page
    assert re.search(r"<h1>Event #1: <span[^>]*>Access requested</span>", page)


def test_every_action_the_apps_record_has_words():
    recorded = [
        "request.approval_recorded",
        "exemption.created",
        "approval_policy.created",
        "approval_policy.deleted",
        "role.updated",
        "project.policy_settings_updated",
        "policy_change.submitted",
        "slack.route_changed",
        "audit.decisions_sealed",
    ]
    assert all(action_label(a) != a for a in recorded)
    assert action_label("never.heard_of") == "never.heard_of"
    written = {
        (match.group(1), str(path))
        for app in ("audit", "identity", "masking", "jitaccess")
        for path in (Path(settings.BASE_DIR) / app).rglob("*.py")
        if "migrations" not in path.parts
        for match in re.finditer(r'action\s*=\s*"([a-z_]+\.[a-z_]+)"', path.read_text())
    }
    assert len(written) > 30, "the scan finds the apps' literal actions"
    assert [(action, path) for action, path in written if action not in ACTION_LABELS] == []
    assert len(set(ACTION_LABELS.values())) == len(ACTION_LABELS), "no two events read the same"


def test_report_tables_have_human_headings_and_keep_the_export_name_as_a_hint(client, people):
    _policy_event("rule.updated")

    page = _page(client, people["staff"], "audit:report", "policy")

    headings = re.findall(r'<th scope="col" title="Export column: (\w+)">([^<]+)</th>', page)
    assert ("target_repr", "Object") in headings and ("actor_name", "By") in headings
    assert ("seq", "#") in headings and ("occurred_at", "When (UTC)") in headings
    for raw in ("Target repr", "Actor name", ">Seq<", "Occurred at"):
        assert raw not in page
    assert column_label("rows_returned") == "Rows returned"
    assert column_label("something_new") == "Something new", "unknown columns still read as words"


def test_in_force_members_read_as_text_and_principals_as_names(client, people):
    record_event(action="auth.sign_in", actor=CAROL, channel=Channel.WEB)
    _exemption(10, {"users": ["local:3"], "groups": [], "roles": ["support-agents"], "service_accounts": []})
    _exemption(11, None)
    record_approved_request(5, ANN)
    record_grant(21, 5, "user:1")
    record_grant(22, 77, "user:9")  # its request is not in the log
    record_grant(23, 5, "sa:etl-loader")

    page = _page(client, people["dave"], "audit:report", "in_force")

    assert "roles: support-agents; users: Carol Support (local:3)" in page
    assert '{"users"' not in page and "{}" not in page, "no raw JSON"
    assert re.search(r"<td>—</td>", page), "an exemption without members"
    assert '<td title="user:1">Ann <code class="muted code">user:1</code></td>' in page
    assert 'user:9 <span class="muted note">(key only: the log holds no name for it)</span>' in page
    assert 'etl-loader <code class="muted code">sa:etl-loader</code>' in page
    assert ">Grant<" in page and ">Exemption<" in page


def test_members_text_says_nothing_plainly():
    assert members_text({}) == "—"
    assert members_text({"users": [], "roles": []}) == "—"
    assert members_text({"groups": ["data"], "roles": ["a", "b"]}) == "roles: a, b; groups: data"


def test_the_exports_table_names_the_report_and_its_filters(client, people):
    dave = people["dave"]
    for report, fmt, filters in (("policy", "csv", {"action": "grant"}), ("summary", "pdf", {})):
        ExportJob.objects.create(
            requested_by_pk=dave.pk,
            requested_by=str(dave),
            report=report,
            format=fmt,
            filters=filters,
            state=ExportState.PENDING,
        )

    page = _page(client, dave, "audit:exports")

    assert "<td>Policy change history</td>" in page and "<td>Audit summary</td>" in page
    assert "<td>policy</td>" not in page and "<td>summary</td>" not in page
    assert "Event type grant" in page and "action=grant" not in page


def test_the_pdf_uses_names_and_words(tmp_path, people):
    from tests.audit.test_exports import _pdf_pages_and_text

    record_approved_request(5, ANN)
    record_grant(21, 5, "user:1")
    _policy_event("role.created")
    out = tmp_path / "summary.pdf"

    call_command("audit", "export", "--format", "pdf", "--out", str(out))

    _, text = _pdf_pages_and_text(out.read_bytes())
    assert re.search(r"\(Ann ?\) Tj", text), "the grant's principal by name"
    assert "Role created" in text and "Since \\(UTC\\)" in text


# --- 2. the policy history covers every policy change ----------------------------------------------


def test_policy_history_includes_approval_policies_roles_and_project_settings(people):
    for action in ("approval_policy.created", "approval_policy.updated", "approval_policy.deleted"):
        _policy_event(action, "shop")
    _policy_event("approval_policy.created", "analytics")
    _policy_event("role.updated")
    _policy_event("project.policy_settings_updated", "shop", two_person_rule=True)
    _policy_event("slack.route_changed", "shop", channel="#approvals")
    _policy_event("policy_change.submitted", projects=["shop"], summary={})
    _policy_event("policy.version_created", number=3)
    record_approved_request(5, ANN)  # not a policy change

    everything = [r[2] for r in policy_rows(AuditFilter(), EVERYTHING)]
    shop = [r[2] for r in policy_rows(AuditFilter(), AuditScope(frozenset({"shop"})))]

    assert everything == [
        "approval_policy.created",
        "approval_policy.updated",
        "approval_policy.deleted",
        "approval_policy.created",
        "role.updated",
        "project.policy_settings_updated",
        "slack.route_changed",
        "policy_change.submitted",
        "policy.version_created",
    ]
    assert shop == [
        "approval_policy.created",
        "approval_policy.updated",
        "approval_policy.deleted",
        "role.updated",  # roles are global: they decide every project's exemptions and approvers
        "project.policy_settings_updated",
        "slack.route_changed",
    ]


def test_policy_history_shows_what_the_policy_services_really_record(people, shop):
    from identity.models import Role
    from jitaccess.policy.services import approval_policy_delete, approval_policy_save
    from masking.services.policy import project_policy_settings_save
    from masking.services.roles import role_save

    role = role_save(name="pii-approvers", users=[people["dave"]], actor=ERIN, channel=Channel.WEB)
    policy = approval_policy_save(
        project=shop,
        title="prod PII",
        condition="true",
        approver_roles=[role],
        actor=ERIN,
        channel=Channel.WEB,
    )
    approval_policy_save(
        policy=policy,
        project=shop,
        title="prod PII",
        condition="true",
        approver_roles=[role],
        approvals_required=2,
        actor=ERIN,
        channel=Channel.WEB,
    )
    approval_policy_delete(policy=policy, actor=ERIN, channel=Channel.WEB)
    project_policy_settings_save(project=shop, two_person_rule=True, actor=ERIN, channel=Channel.WEB)
    assert Role.objects.filter(name="pii-approvers").exists()

    actions = {r[2] for r in policy_rows(AuditFilter(), AuditScope(frozenset({"shop"})))}

    assert {
        "role.created",
        "approval_policy.created",
        "approval_policy.updated",
        "approval_policy.deleted",
        "project.policy_settings_updated",
    } <= actions


def test_the_policy_page_shows_approval_policy_changes_in_words(client, people):
    _policy_event("approval_policy.deleted", "shop", before={"title": "prod PII"}, after=None)

    page = _page(client, people["dave"], "audit:report", "policy")

    assert "Approval policy deleted" in page and "title: prod PII" in page
    assert "approval policies" in page, "the description says what the report covers"


# --- 3. verifying the log from the web -------------------------------------------------------------


def _log_with_checkpoint() -> None:
    record_approved_request(5, ANN)
    checkpoint_create()


def test_a_reader_queues_a_verification_and_sees_its_result(
    client, people, django_capture_on_commit_callbacks
):
    client.force_login(people["dave"])  # records auth.sign_in: event #1
    _log_with_checkpoint()
    events_before = AuditEvent.objects.count()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("audit:verify"))

    assert response.status_code == 302 and response["Location"].endswith("/audit/#h-chain")
    assert len(callbacks) == 1, "handed to a worker once committed"
    run = VerificationRun.objects.get()
    assert (run.state, run.requested_by) == (VerificationState.PENDING, "Dave Compliance")
    queued = client.get(reverse("audit:dashboard")).content.decode()
    assert "Verification queued at" in queued and "disabled" in queued

    run_verification(run.pk)

    page = client.get(reverse("audit:dashboard")).content.decode()
    assert "Intact." in page
    assert "4 events (#1 to #4), 1 signed checkpoint and 0 decision seals checked." in page
    assert "asked by Dave Compliance" in page
    assert AuditEvent.objects.count() == events_before, "like the CLI, verifying appends nothing"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_verification_a_reader_asked_for(client, people, tmp_path):
    _log_with_checkpoint()
    with private_redis(free_port()) as broker, publishing_to(broker):
        client.force_login(people["dave"])
        client.post(reverse("audit:verify"))
        with celery_worker(worker_env(broker, VEIL_VAR_DIR=str(tmp_path)), beat=False):
            wait_until(
                lambda: VerificationRun.objects.get().state == VerificationState.DONE,
                timeout=30,
                what="a worker to run the verification",
            )

    assert VerificationRun.objects.get().ok is True
    assert "Intact." in client.get(reverse("audit:dashboard")).content.decode()


def test_a_broken_chain_is_named_on_the_dashboard(client, people):
    _log_with_checkpoint()
    raw_sql("UPDATE audit_auditevent SET actor_name = 'Mallory' WHERE seq = 2")
    client.force_login(people["staff"])
    client.post(reverse("audit:verify"))

    run_verification(VerificationRun.objects.get().pk)

    page = client.get(reverse("audit:dashboard")).content.decode()
    assert "Broken at event #2" in page and "content does not match its hash (edited)" in page
    assert "Intact." not in page
    assert VerificationRun.objects.get().ok is False


def test_one_verification_at_a_time_and_a_redelivered_message_runs_nothing(client, people):
    _log_with_checkpoint()
    client.force_login(people["dave"])
    client.post(reverse("audit:verify"))
    second = client.post(reverse("audit:verify"), follow=True).content.decode()

    assert VerificationRun.objects.count() == 1
    assert "A verification is already queued (asked by Dave Compliance)." in second
    run = VerificationRun.objects.get()
    run_verification(run.pk)
    finished = VerificationRun.objects.get().finished_at
    run_verification(run.pk)
    assert VerificationRun.objects.get().finished_at == finished


def test_a_verification_the_broker_never_got_says_so(client, people, django_capture_on_commit_callbacks):
    client.force_login(people["dave"])

    with (
        publishing_to(f"redis://127.0.0.1:{free_port()}/0"),  # nothing listens there: the broker is down
        django_capture_on_commit_callbacks(execute=True),
    ):
        client.post(reverse("audit:verify"))

    run = VerificationRun.objects.get()
    assert run.state == VerificationState.FAILED and "task queue could not be reached" in run.error
    page = client.get(reverse("audit:dashboard")).content.decode()
    assert "could not run: the task queue could not be reached" in page


def test_a_verification_no_worker_took_is_reported_and_can_be_asked_again(client, people):
    client.force_login(people["dave"])
    client.post(reverse("audit:verify"))
    VerificationRun.objects.update(created_at=timezone.now() - timedelta(hours=2))

    page = client.get(reverse("audit:dashboard")).content.decode()
    client.post(reverse("audit:verify"))

    assert "no background worker ran it" in page
    assert VerificationRun.objects.count() == 2


def test_the_daily_verification_shows_as_the_latest_result(client, people):
    _log_with_checkpoint()

    assert verify_log() is True

    page = _page(client, people["dave"], "audit:dashboard")
    assert "Intact." in page and "asked by Daily check" in page


def test_verifying_needs_a_post_with_csrf_from_an_audit_reader(client, people):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(people["dave"])
    client.force_login(people["alice"])

    assert csrf_client.post(reverse("audit:verify")).status_code == 403, "no CSRF token"
    assert client.post(reverse("audit:verify")).status_code == 403, "not an audit reader"
    client.force_login(people["dave"])
    assert client.get(reverse("audit:verify")).status_code == 405
    assert not VerificationRun.objects.exists()
    page = client.get(reverse("audit:dashboard")).content.decode()
    assert re.search(
        r'<form method="post" action="/audit/verify/"[^>]*>\s*'
        r'<input type="hidden" name="csrfmiddlewaretoken"',
        page,
    )
    assert "Verify the log now" in page


# --- 4. filters that say what is wrong -------------------------------------------------------------


def test_a_period_that_ends_before_it_starts_is_an_error_naming_both_ends():
    with pytest.raises(FilterError) as caught:
        AuditFilter.from_mapping({"from": "2026-03-02", "to": "2026-03-01"})

    assert caught.value.fields == ("from", "to")
    assert str(caught.value).startswith("from, to: the period starts (2026-03-02) after it ends (2026-03-01)")
    assert AuditFilter.from_mapping({"from": "2026-03-01", "to": "2026-03-01"}).date_from is not None


@pytest.mark.parametrize(("name", "args"), [("audit:events", ()), ("audit:report", ("policy",))])
def test_pages_show_the_period_error_and_no_rows(client, people, name, args):
    _policy_event("rule.updated", "shop")

    page = _page(client, people["dave"], name, *args, **{"from": "2026-03-02", "to": "2026-03-01"})

    assert "from, to: the period starts (2026-03-02) after it ends (2026-03-01)" in page
    assert len(re.findall(r'name="(?:from|to)"[^>]*aria-invalid="true"', page)) == 2
    shown = re.sub(
        r"<datalist.*?</datalist>", "", page, flags=re.S
    )  # the event-type choices name every event
    assert "rule of everyone" not in shown and "Masking rule changed" not in shown
    assert "Fix the filter above" in page
    assert 'name="format" value="csv"' not in page, "no export of a filter that is wrong"


def test_an_export_or_cli_report_with_a_backwards_period_is_refused(client, people):
    client.force_login(people["dave"])

    page = client.post(
        reverse("audit:exports"),
        {"report": "events", "format": "csv", "from": "2026-03-02", "to": "2026-03-01"},
        follow=True,
    ).content.decode()

    assert "Export not started: from, to: the period starts" in page
    assert not ExportJob.objects.exists()
    with pytest.raises(CommandError, match="the period starts"):
        call_command("audit", "report", "events", "--from", "2026-03-02", "--to", "2026-03-01")


@pytest.mark.parametrize("project", ["nope", "analytics"])
def test_a_project_outside_the_readers_scope_is_named(client, people, project):
    _policy_event("rule.updated", "analytics")

    page = _page(client, people["dave"], "audit:events", project=project)

    assert f"project: no project &#x27;{project}&#x27; in your scope (you audit shop)" in page
    assert 'aria-invalid="true"' in page


def test_an_unknown_project_for_a_reader_of_everything_is_named_with_a_hint(client, people):
    record_approved_request(5, ANN)
    staff = people["staff"]

    unknown = _page(client, staff, "audit:report", "in_force", project="nope")
    wrong_case = _page(client, staff, "audit:events", project="SHOP")
    known = _page(client, staff, "audit:events", project="shop")

    assert "no project &#x27;nope&#x27; in the audit log (no event names it)" in unknown
    assert "did you mean &#x27;shop&#x27;?" in wrong_case
    assert "Filter error" not in known and "Access requested" in known


def test_an_export_for_a_project_outside_the_scope_is_refused(client, people):
    client.force_login(people["dave"])

    page = client.post(
        reverse("audit:exports"), {"report": "events", "format": "csv", "project": "analytics"}, follow=True
    ).content.decode()

    assert "Export not started: project: no project &#x27;analytics&#x27; in your scope" in page
    assert not ExportJob.objects.exists()


# --- plurals ---------------------------------------------------------------------------------------


def test_the_verification_summary_counts_in_the_singular_when_there_is_one():
    one = ChainVerification(events_checked=1, breaks=[], checkpoints_checked=1, seals_checked=1)
    two = ChainVerification(events_checked=2, breaks=[], checkpoints_checked=2, seals_checked=0)

    assert one.summary() == "audit chain intact: 1 event verified, 1 signed checkpoint, 1 decision seal"
    assert two.summary() == "audit chain intact: 2 events verified, 2 signed checkpoints, 0 decision seals"


def test_the_dashboard_counts_one_approval_in_the_singular(client, people):
    record_approved_request(5, ANN)

    page = _page(client, people["dave"], "audit:dashboard")

    assert "1 approval ·" in page and "1 approvals" not in page
