"""Exports: exact CSV and JSON Lines, a PDF for auditors, and a signed manifest that catches tampering."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import zlib
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit import signing
from audit.exports import csv_cell, csv_line, export_job_create, verify_export, write_export
from audit.filters import EVERYTHING, AuditFilter
from audit.models import AuditEvent, Channel, ExportJob, ExportState
from audit.services import SYSTEM, Actor, Target, checkpoint_create, record_event
from audit.tasks import run_export
from tests.audit.conftest import rehash
from tests.factories import grant_project_perm, make_project, make_user

pytestmark = pytest.mark.django_db

AWKWARD = [
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\tstarts with a tab",
    "\rstarts with a carriage return",
    'comma, "quote" and\nnewline',
    "plain",
    "ünïcödé ✓",
]


def _awkward_events() -> None:
    for i, value in enumerate(AWKWARD):
        record_event(
            action="test.awkward",
            actor=Actor(type="user", id=f"local:{i}", name=value),
            channel=Channel.WEB,
            target=Target("thing", str(i), value),
            project="shop",
            detail={"value": value, "n": i},
        )


def _export(tmp_path: Path, fmt: str, report: str = "events", **filters) -> Path:
    out = tmp_path / f"out.{fmt}"
    call_command(
        "audit",
        "export",
        "--format",
        fmt,
        "--report",
        report,
        "--out",
        str(out),
        *[f"--{k}={v}" for k, v in filters.items()],
    )
    return out


def test_csv_cells_that_start_a_formula_are_neutralised():
    assert [csv_cell(v) for v in AWKWARD[:6]] == ["'" + v for v in AWKWARD[:6]]
    assert csv_cell('comma, "quote"') == 'comma, "quote"'
    assert csv_cell(-5) == -5, "numbers stay numbers"
    assert csv_cell({"a": "=x"}) == '{"a":"=x"}'


def test_csv_lines_are_exactly_what_the_csv_module_writes():
    row = (1, "a,b", 'q"uote', "multi\nline", "\rcr", None, 1.5, True, {"k": "v,w"}, ["x"], "", "=1", -3)
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\r\n").writerow([csv_cell(v) for v in row])

    # The csv module quotes a lone CR only when CR is in its line terminator; we always do, as COPY.
    assert csv_line(row) == expected.getvalue().removesuffix("\r\n") + "\n"
    assert next(csv.reader(io.StringIO(csv_line(row), newline=""))) == [
        "1",
        "a,b",
        'q"uote',
        "multi\nline",
        "'\rcr",
        "",
        "1.5",
        "True",
        '{"k":"v,w"}',
        '["x"]',
        "",
        "'=1",
        "-3",
    ]


def test_postgresql_copies_the_events_export_exactly_as_python_would_write_it():
    from django.db.models import TextField
    from django.db.models.functions import Cast

    from audit.exports import encode_rows, report_chunks
    from audit.filters import events_matching
    from audit.reports import EVENT_COLUMNS, event_rows

    _awkward_events()
    record_event(action="test.awkward", actor=SYSTEM, channel=Channel.WEB, detail={})  # empty cells
    flt = AuditFilter(action="test.awkward")

    copied = b"".join(report_chunks("events", "csv", flt, EVERYTHING)).decode()
    python_rows = (
        events_matching(flt, EVERYTHING)
        .annotate(detail_json=Cast("detail", TextField()))
        .values_list(*[c if c != "detail" else "detail_json" for c in EVENT_COLUMNS])
    )
    assert copied == csv_line(EVENT_COLUMNS) + "".join(csv_line(row) for row in python_rows)
    copied_jsonl = b"".join(report_chunks("events", "jsonl", flt, EVERYTHING)).decode()
    python_jsonl = b"".join(encode_rows("jsonl", EVENT_COLUMNS, event_rows(flt, EVERYTHING))).decode()
    assert [json.loads(line) for line in copied_jsonl.splitlines()] == [
        json.loads(line) for line in python_jsonl.splitlines()
    ]


def test_other_reports_export_through_the_python_encoder(tmp_path):
    record_event(
        action="request.denied",
        actor=Actor(type="user", id="x", name="=HYPERLINK(1)"),
        channel=Channel.WEB,
        project="shop",
        detail={"reason": "-no ticket"},
    )

    out = _export(tmp_path, "csv", report="denied")

    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    assert [r["actor_name"] for r in rows] == ["'=HYPERLINK(1)"]
    assert json.loads(rows[0]["detail"]) == {"reason": "-no ticket"}


def test_a_csv_export_keeps_awkward_values_and_defuses_formulas(tmp_path):
    _awkward_events()

    out = _export(tmp_path, "csv", action="test.awkward")

    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    assert [r["actor_name"] for r in rows] == ["'" + v for v in AWKWARD[:6]] + AWKWARD[6:]
    assert [r["target_repr"] for r in rows][6] == 'comma, "quote" and\nnewline'
    assert json.loads(rows[0]["detail"]) == {"value": "=cmd|' /C calc'!A0", "n": 0}
    assert rows[0]["hash"] == AuditEvent.objects.get(action="test.awkward", target_id="0").hash


def test_a_json_lines_export_round_trips_to_the_chain_hashes(tmp_path):
    _awkward_events()

    out = _export(tmp_path, "jsonl", action="test.awkward")

    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(AWKWARD)
    for line in lines:
        event = json.loads(line)
        assert event["actor_name"] in AWKWARD, "JSON Lines keeps values exact"
        assert rehash(event) == event["hash"]


def _pdf_pages_and_text(data: bytes) -> tuple[int, str]:
    """Without a PDF library (pypdf and poppler are not installed here): count page objects and
    inflate the content streams, where reportlab writes text as literal strings."""
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", data, re.S)]
    counts += [int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", data, re.S)]
    assert counts and counts[0] == pages, "the page tree agrees with the page objects"
    text = []
    for head, stream in re.findall(rb"<<((?:(?!<<).)*?)>>\s*stream\r?\n(.*?)\s*endstream", data, re.S):
        if b"ASCII85Decode" in head:
            stream = base64.a85decode(stream.strip().removesuffix(b"~>"))
        if b"FlateDecode" in head:
            stream = zlib.decompress(stream)
        text.append(stream.decode("latin-1"))
    return pages, "\n".join(text)


def test_the_pdf_summary_has_every_section_and_the_verification(tmp_path):
    _awkward_events()
    checkpoint_create()

    out = _export(tmp_path, "pdf", **{"from": "2000-01-01"})

    pages, text = _pdf_pages_and_text(out.read_bytes())
    assert pages < 5, "short sections flow on, not a page each"
    for heading in (
        "Veil audit summary",
        "Chain verification",
        "INTACT",
        "Who saw unmasked data",
        "Grants and exemptions in force",
        "Policy changes",
        "Break-glass reviews",
        "Denied and unauthorized attempts",
        f"Page {pages}",
    ):
        assert heading in text, heading
    assert verify_export(out, Path(f"{out}.manifest.json")) == []
    assert json.loads(Path(f"{out}.manifest.json").read_text())["pages"] == pages


def test_the_manifest_names_the_file_filters_and_verification(tmp_path):
    _awkward_events()

    out = _export(tmp_path, "csv", action="test.awkward", project="shop")

    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["file"] == "out.csv" and manifest["rows"] == len(AWKWARD)
    assert manifest["filters"] == {
        "project": "shop",
        "action": "test.awkward",
        "through_seq": len(AWKWARD),
    }
    assert manifest["verification"]["ok"] is True
    assert manifest["key_id"] == signing.current_key().key_id
    exported = AuditEvent.objects.filter(action="audit.exported").get()
    assert exported.detail["sha256"] == manifest["sha256"] and exported.channel == Channel.CLI


def test_a_tampered_export_fails_verify_export(tmp_path):
    _awkward_events()
    out = _export(tmp_path, "csv")
    manifest_path = Path(f"{out}.manifest.json")
    call_command("audit", "verify-export", str(out), str(manifest_path))

    out.write_bytes(out.read_bytes().replace(b"plain", b"PLAIN"))

    with pytest.raises(CommandError, match=r"SHA-256 .* does not match"):
        call_command("audit", "verify-export", str(out), str(manifest_path))


def test_a_manifest_rewritten_to_match_a_tampered_file_fails_its_signature(tmp_path):
    _awkward_events()
    out = _export(tmp_path, "jsonl")
    manifest_path = Path(f"{out}.manifest.json")
    out.write_bytes(out.read_bytes().replace(b"plain", b"PLAIN"))
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = __import__("hashlib").sha256(out.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))

    problems = verify_export(out, manifest_path)

    assert problems == ["manifest signature is invalid (altered, or signed with another key)"]


def test_an_auditor_verifies_with_the_public_key_alone(tmp_path, settings):
    _awkward_events()
    out = _export(tmp_path, "csv")
    public = signing.current_key().public_b64
    settings.VEIL_SIGNING_KEY = "some-other-installation"

    assert verify_export(out, Path(f"{out}.manifest.json")) != []
    call_command("audit", "verify-export", str(out), f"{out}.manifest.json", "--public-key", public)


def test_an_export_of_a_broken_log_is_made_and_says_so(tmp_path):
    from tests.audit.conftest import raw_sql

    _awkward_events()
    raw_sql("UPDATE audit_auditevent SET actor_name = 'x' WHERE seq = 2")

    result = write_export(
        report="events",
        fmt="csv",
        flt=AuditFilter(),
        scope=EVERYTHING,
        out_path=tmp_path / "x.csv",
        actor=SYSTEM,
        channel=Channel.CLI,
    )

    assert result.manifest["verification"]["ok"] is False
    assert result.manifest["verification"]["first_break"]["seq"] == 2


def test_the_cli_shows_progress_on_stderr(tmp_path, capsys):
    _awkward_events()

    _export(tmp_path, "jsonl")

    err = capsys.readouterr().err
    assert "rows" in err and "100%" in err


def test_a_web_export_runs_as_a_celery_task_and_is_audited(tmp_path, django_capture_on_commit_callbacks):
    shop = make_project("shop")
    dave = make_user("dave", display_name="Dave Compliance")
    grant_project_perm(dave, "view_audit", shop)
    _awkward_events()
    record_event(action="test.awkward", actor=SYSTEM, channel=Channel.WEB, project="elsewhere")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = export_job_create(
            user=dave, report="events", fmt="jsonl", flt=AuditFilter(action="test.awkward")
        )
    assert len(callbacks) == 1, "enqueued once the job row is committed"
    assert job.state == ExportState.PENDING

    run_export(job.pk)
    run_export(job.pk)  # a redelivered message does nothing

    job.refresh_from_db()
    assert job.state == ExportState.DONE and job.rows == len(AWKWARD), "only the projects dave audits"
    exported = AuditEvent.objects.filter(action="audit.exported").get()
    assert (exported.actor_name, exported.channel, exported.detail["export_job"]) == (
        "Dave Compliance",
        Channel.WEB,
        job.pk,
    )
    assert exported.detail["scope"] == {"projects": ["shop"]}


def test_an_export_job_of_someone_who_lost_access_fails(django_capture_on_commit_callbacks):
    shop = make_project("shop")
    erin = make_user("erin")
    grant_project_perm(erin, "view_audit", shop)
    with django_capture_on_commit_callbacks(execute=False):
        job = export_job_create(user=erin, report="denied", fmt="csv", flt=AuditFilter())
    from guardian.shortcuts import remove_perm

    remove_perm("masking.view_audit", erin, shop)
    run_export(job.pk)

    job.refresh_from_db()
    assert job.state == ExportState.FAILED and "may no longer read" in job.error
    assert not ExportJob.objects.filter(state=ExportState.DONE).exists()


def test_an_export_the_broker_never_received_is_run_by_the_sweep(django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from audit.tasks import run_pending_exports

    shop = make_project("shop")
    dave = make_user("dave")
    grant_project_perm(dave, "view_audit", shop)
    with django_capture_on_commit_callbacks(execute=False):  # the message is lost
        job = export_job_create(user=dave, report="policy", fmt="csv", flt=AuditFilter())

    assert run_pending_exports() == 0, "a fresh job may still be on its way to a worker"
    ExportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    assert run_pending_exports() == 1
    assert run_pending_exports() == 0

    job.refresh_from_db()
    assert job.state == ExportState.DONE
