"""`manage.py audit ...`: verify the log, export it, check an export, archive old events.

audit verify [--checkpoints FILE]  whole-log verification; exit 1 naming the first broken event
audit export --format csv|jsonl|pdf [--report R] [--from D --to D filters...] --out FILE
                                  (a PDF is the summary, or the agents report with --report agents)
audit verify-export FILE MANIFEST [--public-key B64]
audit report R [filters...]       print a report as text (the same selectors as the web)
audit archive --before DATE [--out-dir DIR]
audit seal | audit checkpoint     run the periodic tasks' work once
audit public-key                  the key auditors check manifests with
audit db-roles --runtime ROLE [--owner ROLE] [--apply]
                                  the runtime role's grants (append-only audit tables: no UPDATE/DELETE)
audit streams list|add|disable|enable|replay|rotate-secret|remove
                                  destinations the log is streamed to (audit/streams/cli.py)
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from audit import services, signing
from audit.archive import ArchiveError, archive_before
from audit.db_roles import RoleError, runtime_grants_sql, runtime_role_problems
from audit.exports import ExportError, cli_actor, csv_cell, pdf_report, verify_export, write_export
from audit.filters import (
    EVERYTHING,
    FILTER_NAMES,
    AuditFilter,
    FilterError,
    checked_filter,
    events_matching,
    parse_seq,
)
from audit.models import Channel, ExportFormat
from audit.published import PublishedCheckpointError, read_published
from audit.reports import REPORTS
from audit.selectors import verify_chain
from audit.streams import cli as streams_cli


def _add_filters(parser: CommandParser) -> None:
    parser.add_argument("--from", dest="from", help="Start of the period (YYYY-MM-DD or ISO date-time).")
    parser.add_argument("--to", dest="to", help="End of the period, inclusive of a bare date.")
    parser.add_argument("--at", help="Moment for the in-force report (default: end of period, else now).")
    parser.add_argument("--person", help="Actor or principal (id, or part of the name).")
    parser.add_argument("--role", help="Veil role named in an exemption's members.")
    parser.add_argument("--project", help="Project key.")
    parser.add_argument("--instance", help="Instance key.")
    parser.add_argument("--database", help="Database name.")
    parser.add_argument("--column", help="Column (or table.column).")
    parser.add_argument("--action", "--event-type", dest="action", help="Event type, or a prefix like grant.")


class _Progress:
    """A plain-text progress line on stderr: rewritten in place on a terminal, every 10% otherwise."""

    def __init__(self, total: int | None, stream: Any) -> None:
        self.total, self.stream = total, stream
        self.started = self.last = time.monotonic()
        self.tty = stream.isatty()
        self.next_percent = 10

    def __call__(self, done: int) -> None:
        if self.total:
            done = min(done, self.total)  # a CSV cell holding a newline can make a COPY count run ahead
        now = time.monotonic()
        percent = int(100 * done / self.total) if self.total else None
        if self.tty and now - self.last < 0.3 and done != self.total:
            return
        if not self.tty and (percent is None or percent < self.next_percent) and done != self.total:
            return
        self.last = now
        if percent is not None:
            self.next_percent = percent // 10 * 10 + 10
        bar = ""
        if percent is not None:
            filled = percent // 4
            bar = f"[{'#' * filled}{'.' * (25 - filled)}] {percent:3d}% "
        total = f"/{self.total:,}" if self.total else ""
        line = f"{bar}{done:,}{total} rows, {now - self.started:.1f} s"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")


class Command(BaseCommand):
    help = (
        "Audit log tools: verify, export, verify-export, report, archive, seal, checkpoint, public-key, "
        "streams."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        verify = sub.add_parser("verify", help="Verify the chain, checkpoints, seals and archive boundary.")
        verify.add_argument(
            "--expect",
            action="append",
            default=[],
            metavar="SEQ:HASH",
            help="An event hash held outside the database (a logged checkpoint, an old manifest's "
            "last_seq and last_hash) that must still be in the chain. Repeatable.",
        )
        verify.add_argument(
            "--checkpoints",
            action="append",
            default=[],
            metavar="FILE",
            help="Published checkpoints (AUDIT_CHECKPOINT_PATH, or log lines holding them): each must "
            "still be in the chain. Repeatable.",
        )

        export = sub.add_parser("export", help="Write an export and its signed manifest.")
        export.add_argument("--format", choices=ExportFormat.values, required=True)
        export.add_argument(
            "--report",
            choices=[*REPORTS, "summary"],
            default="events",
            help="With --format pdf: summary (any report but agents) or agents.",
        )
        export.add_argument("--out", required=True, help="File to write; the manifest goes next to it.")
        _add_filters(export)

        check = sub.add_parser("verify-export", help="Check a file against its signed manifest.")
        check.add_argument("file")
        check.add_argument("manifest")
        check.add_argument(
            "--public-key", help="Base64 Ed25519 key (from `audit public-key`) instead of ours."
        )

        report = sub.add_parser("report", help="Print a report as text.")
        report.add_argument("report", choices=list(REPORTS))
        report.add_argument("--limit", type=int, default=100)
        _add_filters(report)

        archive = sub.add_parser("archive", help="Archive and remove events before a date (past retention).")
        archive.add_argument("--before", required=True, help="YYYY-MM-DD: events before this day go.")
        archive.add_argument(
            "--out-dir", help=f"Where the archive goes (default {settings.AUDIT_ARCHIVE_DIR})."
        )

        sub.add_parser("seal", help="Seal new decision records and access events into the chain now.")
        sub.add_parser("checkpoint", help="Sign a checkpoint of the chain head now.")
        sub.add_parser("public-key", help="Print the public key that verifies manifests and checkpoints.")

        roles = sub.add_parser("db-roles", help="Print (or apply) the runtime database role's grants.")
        roles.add_argument("--runtime", required=True, help="The role web, workers and beat connect as.")
        roles.add_argument(
            "--owner", help="The role that runs migrations and owns the tables (default: you)."
        )
        roles.add_argument(
            "--apply", action="store_true", help="Run the statements now (as the owner or a superuser)."
        )
        streams_cli.add_arguments(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        handler = getattr(self, f"_{options['subcommand'].replace('-', '_')}")
        try:
            handler(options)
        except (FilterError, ExportError, ArchiveError, RoleError, PublishedCheckpointError) as exc:
            raise CommandError(str(exc)) from exc

    def _filter(self, options: dict[str, Any]) -> AuditFilter:
        return checked_filter(
            {name: options.get(name) for name in FILTER_NAMES}, EVERYTHING, options["report"]
        )

    def _verify(self, options: dict[str, Any]) -> None:
        expect = {}
        for item in options["expect"]:
            raw_seq, _, digest = item.partition(":")
            seq = parse_seq(raw_seq)
            if seq is None or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise CommandError(f"--expect {item!r}: give SEQ:HASH (a number and 64 hex digits)")
            expect[seq] = digest.lower()
        for path in options["checkpoints"]:
            try:
                published = read_published(Path(path))
            except OSError as exc:
                raise CommandError(f"--checkpoints: cannot read {path}: {exc.strerror or exc}") from exc
            for seq, digest in published.items():
                expect.setdefault(seq, digest)
        result = verify_chain(expect=expect)
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if not result.ok:
            for problem in sorted(result.breaks, key=lambda b: b.seq)[1:]:
                self.stderr.write(f"also: event #{problem.seq}: {problem.reason}")
            raise CommandError(result.summary())
        self.stdout.write(result.summary())

    def _export(self, options: dict[str, Any]) -> None:
        flt = self._filter(options)
        fmt, report = options["format"], options["report"]
        if fmt == ExportFormat.PDF:
            report = pdf_report(report)
        elif report == "summary":
            raise CommandError("the summary report is a PDF: use --format pdf")
        total = events_matching(flt, EVERYTHING).count() if report == "events" else None
        progress = _Progress(total, sys.stderr) if fmt != ExportFormat.PDF else None
        out_path = Path(options["out"])
        if out_path.is_dir():
            raise CommandError(f"--out: {out_path} is a directory; give the file to write")
        self.stderr.write("verifying the log before exporting…")
        try:
            result = write_export(
                report=report,
                fmt=fmt,
                flt=flt,
                scope=EVERYTHING,
                out_path=out_path,
                actor=cli_actor(),
                channel=Channel.CLI,
                progress=progress,
            )
        except OSError as exc:
            raise CommandError(f"--out: cannot write {out_path}: {exc.strerror or exc}") from exc
        if progress:
            progress.finish()
        self.stdout.write(
            f"wrote {result.path} ({result.rows:,} rows, {result.bytes:,} bytes, sha256 {result.sha256})\n"
            f"manifest {result.manifest_path}\n{result.verification.summary()}"
        )

    def _verify_export(self, options: dict[str, Any]) -> None:
        problems = verify_export(
            Path(options["file"]), Path(options["manifest"]), public_key=options["public_key"]
        )
        if problems:
            raise CommandError("export does not verify: " + "; ".join(problems))
        self.stdout.write(f"{options['file']} matches its manifest and the signature is valid")

    def _report(self, options: dict[str, Any]) -> None:
        spec = REPORTS[options["report"]]
        rows = list(itertools.islice(spec.rows(self._filter(options), EVERYTHING), options["limit"]))
        self.stdout.write(f"{spec.title} ({len(rows)} rows shown, limit {options['limit']})")
        self.stdout.write("\t".join(spec.columns))
        for row in rows:
            self.stdout.write("\t".join(str(csv_cell(v)).replace("\n", " ") for v in row))

    def _archive(self, options: dict[str, Any]) -> None:
        try:
            before = AuditFilter.from_mapping({"from": options["before"]}).date_from
        except FilterError as exc:
            raise CommandError(f"--before: {exc.message}") from exc
        if before is None:
            raise CommandError("--before: give a date (YYYY-MM-DD)")
        out_dir = Path(options["out_dir"] or settings.AUDIT_ARCHIVE_DIR)
        result = archive_before(
            before=before, out_dir=out_dir, actor=cli_actor(), channel=Channel.CLI, progress=None
        )
        self.stdout.write(
            f"archived {result.events_removed} events, {result.decision_records_removed} decision records"
            f" and {result.access_events_removed} access events\n"
            f"  {result.events_export.path}\n  {result.rows_export.path}\n"
            f"the chain now starts at #{result.boundary.first_seq} (links to {result.boundary.prev_hash})"
        )

    def _seal(self, options: dict[str, Any]) -> None:
        sealed = 0
        while (event := services.seal_decisions()) is not None:
            sealed += 1
            self.stdout.write(f"sealed into event #{event.seq}: {event.detail}")
        if not sealed:
            self.stdout.write("nothing new to seal")

    def _checkpoint(self, options: dict[str, Any]) -> None:
        made = services.checkpoint_create()
        self.stdout.write(f"checkpoint at #{made.seq} {made.hash}" if made else "no new checkpoint needed")

    def _db_roles(self, options: dict[str, Any]) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("db-roles is for PostgreSQL (DATABASE_URL is not)")
        runtime, owner = options["runtime"], options["owner"]
        if owner is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_user")
                owner = cursor.fetchone()[0]
        statements = runtime_grants_sql(runtime=runtime)
        if not options["apply"]:
            self.stdout.write(
                f"-- Veil's runtime role {runtime}: run as {owner} (or a superuser) after every migrate.\n"
                f"-- {runtime} must own nothing; if it ran migrations before, first, as a superuser:\n"
                f"--   REASSIGN OWNED BY {runtime} TO {owner};"
            )
            self.stdout.write(";\n".join(statements) + ";")
            return
        with transaction.atomic():
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
            # Checked before committing: a role that could get past its grants gets none of them.
            if problems := runtime_role_problems(runtime=runtime, owner=owner):
                raise CommandError(f"{runtime} could get past any grant: " + "; ".join(problems))
        self.stdout.write(
            f"applied {len(statements)} statements: {runtime} owns nothing, and cannot change or "
            "delete the append-only tables"
        )

    def _streams(self, options: dict[str, Any]) -> None:
        streams_cli.handle(options, self.stdout.write)

    def _public_key(self, options: dict[str, Any]) -> None:
        key = signing.current_key()
        self.stdout.write(
            f"key id {key.key_id} ({signing.ALGORITHM})\nbase64 {key.public_b64}\n{key.public_pem}"
        )
