"""Template filters for the audit pages. The words come from `audit.display`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template
from django.utils.html import format_html

from audit.display import action_label, filters_text, report_title

register = template.Library()


@register.filter
def audit_action(code: str) -> str:
    """An event type as words, with its code muted beside it (and as the title) for searching."""
    label = action_label(code)
    if label == code:
        return format_html('<code title="Event type">{}</code>', code)
    return format_html('<span title="{}">{}</span> <code class="muted code">{}</code>', code, label, code)


@register.filter
def audit_action_text(code: str) -> str:
    """An event type as words only (for a page title)."""
    return action_label(code)


@register.filter
def audit_report_title(key: str) -> str:
    return report_title(key)


@register.filter
def audit_filters(filters: Mapping[str, Any] | None) -> str:
    return filters_text(filters or {})


@register.filter
def audit_export_size(job: Any) -> str:
    """An export's size as people count it: rows for CSV and JSON Lines, pages for a PDF (which has
    no rows), "—" while it is not written or when its manifest does not say."""
    if job.state != "done":
        return "—"
    if job.format == "pdf":
        pages = (job.manifest or {}).get("pages")
        return f"{pages} page{'' if pages == 1 else 's'}" if isinstance(pages, int) else "—"
    return "—" if job.rows is None else str(job.rows)
