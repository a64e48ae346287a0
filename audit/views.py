"""Web pages for compliance: dashboard, event search and detail, reports, exports.

Every page goes through `audit_reader`, which works out the reader's scope (the projects they may
audit) once and refuses everyone else with 403. The pages only call selectors and services; what
people read (event names, headings, names instead of keys) comes from `audit.display`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from audit import signing
from audit.access import audit_scope_for
from audit.display import event_rows, event_types, present, report_title
from audit.exports import ExportError, export_job_create, export_path
from audit.filters import (
    FILTER_NAMES,
    AuditFilter,
    AuditScope,
    FilterError,
    checked_filter,
    events_matching,
    parse_seq,
)
from audit.models import ExportFormat, ExportJob, ExportState, VerificationState
from audit.reports import REPORTS
from audit.reports.dashboard import dashboard as dashboard_counts
from audit.selectors import event_position, latest_checkpoint
from audit.verification import verification_run_request, verification_status

PAGE_SIZE = 50
REPORT_PREVIEW_ROWS = 200

# Media types by export format (`mimetypes` knows no `.jsonl`, and would serve octet-stream).
DOWNLOAD_TYPES: dict[str, str] = {
    ExportFormat.JSONL: "application/x-ndjson",
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.PDF: "application/pdf",
}

View = Callable[..., HttpResponseBase]


def audit_reader(view: View) -> View:
    """Sign-in required; then staff, a global `view_audit`, or `view_audit` on some project."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        scope = audit_scope_for(request.user)
        if scope is None:
            raise PermissionDenied("You may not read the audit log.")
        return view(request, scope, *args, **kwargs)

    return wrapper


def _filter_from(
    request: HttpRequest, scope: AuditScope, report: str
) -> tuple[AuditFilter, FilterError | None]:
    """The filter of the query string, or the error naming what is wrong with it (a page with a
    filter error shows no rows rather than rows the reader did not ask for)."""
    try:
        flt = checked_filter(request.GET, scope, report)
    except FilterError as exc:
        return AuditFilter(), exc
    return flt, None


def _context(request: HttpRequest, scope: AuditScope, **extra: Any) -> dict[str, Any]:
    values = {name: request.GET.get(name, "") for name in FILTER_NAMES}
    problem = extra.pop("filter_error", None)
    return {
        "scope": scope,
        "projects": sorted(scope.projects) if scope.projects is not None else None,
        "filter_values": values,
        "error": str(problem) if problem else "",
        "error_fields": problem.fields if problem else (),
        "reports": REPORTS.values(),
        "event_types": event_types(),
        # Where `action` is not an event type: what allowed an unmask, and a break-glass review state.
        "action_choices": (("grant", "Grants"), ("exemption", "Exemptions")),
        "review_choices": (("pending", "Pending review"), ("reviewed", "Reviewed")),
        "formats": ExportFormat.choices,
        **extra,
    }


@audit_reader
def dashboard(request: HttpRequest, scope: AuditScope) -> HttpResponse:
    checkpoint, checkpoint_ok = latest_checkpoint()
    return render(
        request,
        "audit/dashboard.html",
        _context(
            request,
            scope,
            board=dashboard_counts(scope),
            checkpoint=checkpoint,
            checkpoint_ok=checkpoint_ok,
            checkpoint_readable=checkpoint is not None
            and events_matching(AuditFilter(), scope).filter(seq=checkpoint.seq).exists(),
            verification=verification_status(),
            section="dashboard",
        ),
    )


@require_POST
@audit_reader
def verify(request: HttpRequest, scope: AuditScope) -> HttpResponse:
    """Queue a verification of the whole log (`verify_chain`, what `manage.py audit verify` runs)
    for a Celery worker; the dashboard shows the result. Any audit reader may ask: the verification
    reads the whole log but shows only counts, hashes and the event numbers where it breaks."""
    run, created = verification_run_request(user=request.user)
    if created:
        messages.success(
            request,
            "Verification of the whole log queued. It takes about 20 seconds per million events: "
            "reload this page to see the result.",
        )
    elif run.state == VerificationState.RUNNING:
        messages.info(request, f"A verification is already running (asked by {run.requested_by}).")
    else:
        messages.info(request, f"A verification is already queued (asked by {run.requested_by}).")
    return redirect(reverse("audit:dashboard") + "#h-chain")


@audit_reader
def events(request: HttpRequest, scope: AuditScope) -> HttpResponse:
    """Newest first, a page at a time by sequence number (no COUNT over the whole log)."""
    flt, problem = _filter_from(request, scope, "events")
    found = events_matching(flt, scope).order_by("-seq")
    before = parse_seq(request.GET.get("before"))
    if before is not None:
        found = found.filter(seq__lt=before)
    page = [] if problem else list(found[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    query = request.GET.copy()
    query.pop("before", None)
    next_url = ""
    if more:
        query["before"] = str(page[-1].seq)
        next_url = f"?{query.urlencode()}"
    return render(
        request,
        "audit/events.html",
        _context(
            request,
            scope,
            page=event_rows(page),
            next_url=next_url,
            filter_error=problem,
            report_key="events",
            section="events",
        ),
    )


@audit_reader
def event_detail(request: HttpRequest, scope: AuditScope, seq: int) -> HttpResponse:
    if not events_matching(AuditFilter(), scope).filter(seq=seq).exists():
        raise Http404("No such event in the projects you audit.")
    position = event_position(seq)
    if position is None:
        raise Http404("No such event.")
    detail_json = json.dumps(position.event.detail, indent=2, sort_keys=True, ensure_ascii=False)
    # A neighbour outside the reader's projects is named, not linked: its page would be a 404.
    neighbours = [e.seq for e in (position.previous, position.next) if e is not None]
    readable = set(
        events_matching(AuditFilter(), scope).filter(seq__in=neighbours).values_list("seq", flat=True)
    )
    return render(
        request,
        "audit/event_detail.html",
        _context(
            request,
            scope,
            pos=position,
            detail_json=detail_json,
            previous_readable=position.previous is not None and position.previous.seq in readable,
            next_readable=position.next is not None and position.next.seq in readable,
            section="events",
        ),
    )


@audit_reader
def report(request: HttpRequest, scope: AuditScope, key: str) -> HttpResponse:
    spec = REPORTS.get(key)
    if spec is None or key == "events":
        raise Http404("No such report.")
    flt, problem = _filter_from(request, scope, key)
    if key == "in_force" and not problem and flt.at is None:
        # Pin the moment the report reconstructs, so the page can say which one it shows.
        flt = replace(flt, at=flt.date_to or timezone.now())
    rows = [] if problem else list(itertools.islice(spec.rows(flt, scope), REPORT_PREVIEW_ROWS + 1))
    return render(
        request,
        "audit/report.html",
        _context(
            request,
            scope,
            spec=spec,
            table=present(key, spec.columns, rows[:REPORT_PREVIEW_ROWS]),
            truncated=len(rows) > REPORT_PREVIEW_ROWS,
            preview_rows=REPORT_PREVIEW_ROWS,
            as_of=flt.at if key == "in_force" and not problem else None,
            filter_error=problem,
            report_key=key,
            section=key,
        ),
    )


@require_http_methods(["GET", "POST"])
@audit_reader
def exports(request: HttpRequest, scope: AuditScope) -> HttpResponse:
    """POST queues an export (written by a Celery worker); GET lists the reader's exports."""
    if request.method == "POST":
        report_key = request.POST.get("report", "events")
        try:
            flt = checked_filter(request.POST, scope, report_key)
            job = export_job_create(
                user=request.user,
                report=report_key,
                fmt=request.POST.get("format", ""),
                flt=flt,
            )
        except (FilterError, ExportError) as exc:
            messages.error(request, f"Export not started: {exc}")
        else:
            messages.success(
                request, f"Export {job.pk} ({report_title(job.report)}) queued. It appears below when ready."
            )
        return redirect(reverse("audit:exports"))
    jobs = ExportJob.objects.filter(requested_by_pk=request.user.pk)[:50]
    return render(
        request,
        "audit/exports.html",
        _context(request, scope, jobs=jobs, signing_key=signing.current_key(), section="exports"),
    )


def _finished_job(request: HttpRequest, pk: int) -> ExportJob:
    job = ExportJob.objects.filter(pk=pk, requested_by_pk=request.user.pk, state=ExportState.DONE).first()
    if job is None:
        raise Http404("No such finished export of yours.")
    return job


@audit_reader
def export_download(request: HttpRequest, scope: AuditScope, pk: int) -> FileResponse:
    """Streams the file from disk in chunks (FileResponse is a StreamingHttpResponse)."""
    job = _finished_job(request, pk)
    path = export_path(job)
    if not path.exists():
        raise Http404("The export file is no longer on disk.")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=job.file_name,
        content_type=DOWNLOAD_TYPES.get(job.format) or None,
    )


@audit_reader
def export_manifest(request: HttpRequest, scope: AuditScope, pk: int) -> FileResponse:
    job = _finished_job(request, pk)
    path = export_path(job).with_name(job.file_name + ".manifest.json")
    if not path.exists():
        raise Http404("The manifest is no longer on disk.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
