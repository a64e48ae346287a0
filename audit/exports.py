"""Exports of the audit log for auditors: CSV, JSON Lines and PDF (the summary, and the agents report
in full), each with a signed manifest.

Rows stream from the database (`iterator(chunk_size)`) through an encoder that yields bytes a
chunk at a time, so memory stays flat however large the export. Every export is a file (written by
the CLI, the Celery export job or the archive) with a manifest beside it; the web streams the file
from disk.

A manifest is JSON naming the file, its SHA-256 and size, the report, the filters and the reader's
scope, when and by whom it was generated, and the result of verifying the whole log at that time;
it is signed with Veil's Ed25519 key (`audit.signing`). `verify_export` checks a file against one.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return) get a leading apostrophe. JSON Lines keeps values exact.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit import signing
from audit.access import audit_scope_for
from audit.chain import canonical_json
from audit.filters import AuditFilter, AuditScope, events_matching
from audit.models import ActorType, ChainHead, Channel, ExportFormat, ExportJob, ExportState
from audit.reports import REPORTS
from audit.selectors import ChainVerification, verify_chain
from audit.services import Actor, Target, record_event

logger = logging.getLogger(__name__)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MANIFEST_VERSION = 1
CHUNK_BYTES = 256 * 1024
STALE_AFTER = timedelta(hours=1)
Progress = Callable[[int], None]


class ExportError(ValueError):
    """An export that cannot be made (unknown report, bad format)."""


PDF_REPORTS = ("summary", "agents")
"""Reports with a PDF of their own; a PDF of any other report is the summary."""


def pdf_report(report: str) -> str:
    """The report a PDF asked for `report` renders."""
    return report if report in PDF_REPORTS else "summary"


# --- encoding ----------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_DANGER = frozenset(FORMULA_PREFIXES)


def csv_cell(value: Any) -> Any:
    """One CSV cell: text neutralised against formula injection, structures as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value[:1] in _DANGER else value
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    text = json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return "'" + text if text[:1] in _DANGER else text


_NEEDS_QUOTES = re.compile(r'[",\r\n]').search


def csv_line(row: Iterable[Any]) -> str:
    """One CSV record as `csv.writer` (QUOTE_MINIMAL) writes it, with cells neutralised, ending in LF
    as PostgreSQL's COPY does (csv readers take either line ending).

    Written out by hand because it runs once per row of a million-row export and the csv module's
    writer, fed through a list of neutralised cells, costs about four times as much.
    """
    cells = []
    for value in row:
        if type(value) is int:
            cells.append(str(value))
            continue
        if type(value) is str:
            text = "'" + value if value and value[0] in _DANGER else value
        else:
            cell = csv_cell(value)
            text = cell if type(cell) is str else str(cell)
        cells.append('"' + text.replace('"', '""') + '"' if _NEEDS_QUOTES(text) else text)
    return ",".join(cells) + "\n"


def encode_rows(
    fmt: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]], *, progress: Progress | None = None
) -> Iterator[bytes]:
    """Yield the encoded export in chunks of about CHUNK_BYTES (header first for CSV)."""
    if fmt == ExportFormat.CSV:
        lines: Iterable[str] = map(csv_line, rows)
    elif fmt == ExportFormat.JSONL:
        dumps = json.JSONEncoder(default=_json_default, ensure_ascii=False, separators=(",", ":")).encode
        lines = (dumps(dict(zip(columns, row, strict=True))) + "\n" for row in rows)
    else:
        raise ExportError(f"cannot stream {fmt!r}; use csv or jsonl")
    return encode_lines(fmt, columns, lines, progress=progress, terminated=True)


def encode_lines(
    fmt: str,
    columns: tuple[str, ...],
    lines: Iterable[str],
    *,
    progress: Progress | None = None,
    terminated: bool = False,
) -> Iterator[bytes]:
    """Yield records (one text each) in chunks, after the CSV header; `terminated` says whether
    they already end with their line ending (LF)."""
    buffer = io.StringIO()
    end = "" if terminated else "\n"
    if fmt == ExportFormat.CSV:
        buffer.write(csv_line(columns))
    count = 0
    for line in lines:
        buffer.write(line)
        if end:
            buffer.write(end)
        count += 1
        if buffer.tell() >= CHUNK_BYTES:
            yield _drain(buffer)
            if progress:
                progress(count)
    if buffer.tell():
        yield _drain(buffer)
    if progress:
        progress(count)


def report_chunks(
    report: str, fmt: str, flt: AuditFilter, scope: AuditScope, *, progress: Progress | None = None
) -> Iterator[bytes]:
    """A report encoded as CSV or JSON Lines, by the database's COPY where the report offers one."""
    spec = REPORTS[report]
    copy = spec.export_copy(fmt, flt, scope) if spec.export_copy else None
    if copy is not None:
        return _copy_chunks(*copy, header=fmt == ExportFormat.CSV, progress=progress)
    return encode_rows(fmt, spec.columns, spec.rows(flt, scope), progress=progress)


def _copy_chunks(
    statement: str, params: Sequence[Any], *, header: bool, progress: Progress | None
) -> Iterator[bytes]:
    """Stream a `COPY ... TO STDOUT` in chunks of about CHUNK_BYTES. Progress counts line ends
    (exact for JSON Lines; a quoted CSV cell with a newline in it counts twice)."""
    pending: list[bytes] = []
    size = lines = 0
    with connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        for data in copy:
            chunk = bytes(data)
            pending.append(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            if size >= CHUNK_BYTES:
                yield b"".join(pending)
                pending, size = [], 0
                if progress:
                    progress(lines - header)
    if pending:
        yield b"".join(pending)
    if progress:
        progress(lines - header)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


# --- manifests ---------------------------------------------------------------------------------


def manifest_message(manifest: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in manifest.items() if k != "signature"})


def sign_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    key = signing.current_key()
    unsigned = {
        **manifest,
        "manifest_version": MANIFEST_VERSION,
        "algorithm": signing.ALGORITHM,
        "key_id": key.key_id,
        "public_key": key.public_b64,
    }
    key_id, signature = signing.sign(manifest_message(unsigned))
    return {**unsigned, "key_id": key_id, "signature": signature}


def file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_export(file_path: Path, manifest_path: Path, *, public_key: str | None = None) -> list[str]:
    """Check a file against its manifest. Returns the problems found (empty: it verifies).

    The signature is checked with Veil's own keys, or with `public_key` (base64) for an auditor
    who has only that; never with the key written in the manifest, which anyone could replace.
    """
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return [f"manifest cannot be read: {exc}"]
    problems = []
    if public_key:
        try:
            public = signing.public_key_from_b64(public_key)
        except ValueError as exc:
            return [str(exc)]
        keys = {signing.key_id_of(public): public}
    else:
        keys = signing.verification_keys()
    if not signing.verify(
        manifest_message(manifest),
        key_id=str(manifest.get("key_id", "")),
        signature=str(manifest.get("signature", "")),
        keys=keys,
    ):
        problems.append("manifest signature is invalid (altered, or signed with another key)")
    try:
        sha256, size = file_sha256(file_path)
    except OSError as exc:
        return [*problems, f"file cannot be read: {exc}"]
    if sha256 != manifest.get("sha256"):
        problems.append(f"file SHA-256 {sha256} does not match the manifest's {manifest.get('sha256')}")
    if size != manifest.get("bytes"):
        problems.append(f"file is {size} bytes, the manifest says {manifest.get('bytes')}")
    return problems


# --- writing exports -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest_path: Path
    rows: int  # 0 for a PDF (its manifest gives "pages")
    bytes: int
    sha256: str
    manifest: dict[str, Any]
    verification: ChainVerification


def cli_actor() -> Actor:
    """Who ran a management command: the operating-system account (there is no Veil sign-in)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(type=ActorType.SYSTEM, id=f"os:{user}", name=f"{user} (manage.py)")


def write_export(
    *,
    report: str,
    fmt: str,
    flt: AuditFilter,
    scope: AuditScope,
    out_path: Path,
    actor: Actor,
    channel: str,
    progress: Progress | None = None,
    verification: ChainVerification | None = None,
    extra: dict[str, Any] | None = None,
    source: tuple[tuple[str, ...], Iterable[tuple[Any, ...]]] | None = None,
) -> ExportResult:
    """Write one export and its signed manifest (`<file>.manifest.json`), and record `audit.exported`.

    The whole log is verified first (unless the caller just did) and the result goes into the
    manifest: an export of a broken log is still made (it is evidence) but says so. `source`
    (columns, rows) replaces the named report's rows; the archive uses it.
    """
    if source is None and report not in REPORTS and not (fmt == ExportFormat.PDF and report in PDF_REPORTS):
        raise ExportError(f"unknown report {report!r}; choose from {', '.join(REPORTS)}")
    if fmt not in ExportFormat.values:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(ExportFormat.values)}")
    verification = verification or verify_chain()
    generated_at = timezone.now()
    exact_rows = None
    if report == "events" and source is None:
        # The chain as it is now: later events are not half in the file, and the count is exact.
        head = ChainHead.objects.filter(id=1).values_list("seq", flat=True).first() or 0
        flt = replace(flt, through_seq=min(head, flt.through_seq or head))
        exact_rows = events_matching(flt, scope).count()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    digest, size, rows = hashlib.sha256(), 0, 0
    tmp_path = out_path.with_name(out_path.name + ".part")
    try:
        with tmp_path.open("wb") as out:
            if fmt == ExportFormat.PDF:
                # reportlab loads only when a PDF is asked for
                if report == "agents":
                    from audit.agents_pdf import render_agents as render
                else:
                    from audit.pdf import render_summary as render

                data, pages = render(
                    flt=flt,
                    scope=scope,
                    verification=verification,
                    generated_at=generated_at,
                    generated_by=actor.name,
                )
                extra = {**(extra or {}), "pages": pages}
                chunks: Iterable[bytes] = [data]
            else:
                counter = _Counter(progress)
                if source is not None:
                    chunks = encode_rows(fmt, source[0], source[1], progress=counter)
                else:
                    chunks = report_chunks(report, fmt, flt, scope, progress=counter)
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if fmt != ExportFormat.PDF:
            rows = exact_rows if exact_rows is not None else counter.count
        tmp_path.replace(out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)  # no half-written file left behind
        raise
    manifest = sign_manifest(
        {
            "file": out_path.name,
            "format": fmt,
            "report": report,
            "sha256": digest.hexdigest(),
            "bytes": size,
            "rows": rows,
            "filters": flt.as_dict(),
            "scope": scope.as_dict(),
            "generated_at": generated_at.isoformat(),
            "generated_by": actor.name,
            "verification": verification.as_dict(),
            **(extra or {}),
        }
    )
    manifest_path = out_path.with_name(out_path.name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    record_event(
        action="audit.exported",
        actor=actor,
        channel=channel,
        target=Target("export", out_path.name, f"{report} as {fmt}"),
        detail={
            "report": report,
            "format": fmt,
            "filters": flt.as_dict(),
            "scope": scope.as_dict(),
            "rows": rows,
            "bytes": size,
            "sha256": manifest["sha256"],
            "verification_ok": verification.ok,
            **(extra or {}),
        },
    )
    return ExportResult(out_path, manifest_path, rows, size, manifest["sha256"], manifest, verification)


class _Counter:
    def __init__(self, progress: Progress | None) -> None:
        self.count = 0
        self.progress = progress

    def __call__(self, count: int) -> None:
        self.count = count
        if self.progress:
            self.progress(count)


# --- export jobs (the web) ---------------------------------------------------------------------------


def user_actor(user: Any) -> Actor:
    """Describe a signed-in person without importing the app that owns users."""
    subject = getattr(user, "canonical_subject", None) or f"local:{user.pk}"
    return Actor(type=ActorType.USER, id=str(subject), name=str(user))


def export_job_create(*, user: Any, report: str, fmt: str, flt: AuditFilter) -> ExportJob:
    """Queue an export for a signed-in reader; a Celery worker writes it (`audit.run_export`)."""
    if fmt == ExportFormat.PDF:
        report = pdf_report(report)
    elif report not in REPORTS:
        raise ExportError(f"unknown report {report!r}")
    if fmt not in ExportFormat.values:
        raise ExportError(f"unknown format {fmt!r}")
    actor = user_actor(user)
    job = ExportJob.objects.create(
        requested_by_pk=user.pk,
        requested_by=actor.name,
        actor_id=actor.id,
        report=report,
        format=fmt,
        filters=flt.as_dict(),
    )
    transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    """Hand the job to a worker. If the broker is unreachable the job stays pending and
    `audit.tasks.run_pending_exports` picks it up: the reader gets no error page."""
    from audit.tasks import run_export

    try:
        run_export.delay(job_id)
    except Exception:
        logger.warning("audit export job %s not enqueued (broker unreachable); the sweep will run it", job_id)


def jobs_to_sweep(*, now: datetime | None = None) -> list[int]:
    """Jobs no worker has: pending for over a minute (never enqueued), or running for longer than
    `STALE_AFTER` (the worker died; with late acks the message may also come back)."""
    now = now or timezone.now()
    return list(
        ExportJob.objects.filter(
            Q(state=ExportState.PENDING, created_at__lt=now - timedelta(minutes=1))
            | Q(state=ExportState.RUNNING, started_at__lt=now - STALE_AFTER)
        ).values_list("pk", flat=True)
    )


def export_path(job: ExportJob) -> Path:
    return Path(settings.AUDIT_EXPORT_DIR) / job.file_name


def export_job_run(*, job_id: int) -> ExportJob:
    """Write the export of one job. Idempotent: only a pending job (or one whose worker died, running
    for longer than `STALE_AFTER`) is claimed, by a conditional update, so a redelivered task or a
    sweep finds it claimed and does nothing.

    The reader's scope is worked out again now, from their current permissions: someone who lost
    access between asking and the worker starting gets nothing.
    """
    now = timezone.now()
    claimed = (
        ExportJob.objects.filter(pk=job_id)
        .filter(Q(state=ExportState.PENDING) | Q(state=ExportState.RUNNING, started_at__lt=now - STALE_AFTER))
        .update(state=ExportState.RUNNING, started_at=now)
    )
    job = ExportJob.objects.get(pk=job_id)
    if not claimed:
        return job
    try:
        user = (
            get_user_model().objects.filter(pk=job.requested_by_pk).first() if job.requested_by_pk else None
        )
        scope = audit_scope_for(user)
        if scope is None:
            raise ExportError(f"{job.requested_by} may no longer read the audit log")
        extension = "jsonl" if job.format == ExportFormat.JSONL else job.format
        job.file_name = f"veil-audit-{job.report}-{job.pk}-{timezone.now():%Y%m%dT%H%M%SZ}.{extension}"
        result = write_export(
            report=job.report,
            fmt=job.format,
            flt=AuditFilter.from_mapping(job.filters),
            scope=scope,
            out_path=export_path(job),
            actor=Actor(type=ActorType.USER, id=job.actor_id, name=job.requested_by),
            channel=Channel.WEB,
            extra={"export_job": job.pk},
        )
    except Exception as exc:
        logger.exception("audit export job %s failed", job_id)
        if job.file_name:
            export_path(job).with_name(job.file_name + ".part").unlink(missing_ok=True)
        job.state, job.error, job.finished_at = ExportState.FAILED, str(exc)[:2000], timezone.now()
        job.save(update_fields=["state", "error", "finished_at", "file_name"])
        return job
    job.state, job.finished_at = ExportState.DONE, timezone.now()
    job.rows, job.bytes, job.sha256, job.manifest = result.rows, result.bytes, result.sha256, result.manifest
    job.save(update_fields=["state", "finished_at", "rows", "bytes", "sha256", "manifest", "file_name"])
    return job
