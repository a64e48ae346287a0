"""What every report shares: the spec, chunking, and reading refs, times and durations from events."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit.filters import AuditFilter, AuditScope

Row = tuple[Any, ...]
CHUNK = 2000
_REF = re.compile(r"^[A-Za-z]+-(\d+)$")


@dataclass(frozen=True)
class ReportSpec:
    """A report: its columns and rows. `export_copy`, when set, may return a COPY statement that
    writes the export in a format itself; None means encode `rows` in Python."""

    key: str
    title: str
    description: str
    columns: tuple[str, ...]
    rows: Callable[[AuditFilter, AuditScope], Iterator[Row]]
    export_copy: Callable[[str, AuditFilter, AuditScope], tuple[str, Sequence[Any]] | None] | None = None


def chunks(rows: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def ref_key(ref: Any) -> str:
    """A request's identity whichever way an event names it: `REQ-42` (a grant's `detail.request`)
    and `42` (a request event's `target_id`) are the same request."""
    text = str(ref or "").strip()
    match = _REF.match(text)
    return match.group(1) if match else text


def request_key(event: Mapping[str, Any]) -> str:
    """The request an event is about: its target when that is a request, else `detail.request`."""
    detail = event["detail"] if isinstance(event["detail"], dict) else {}
    if event.get("target_type") == "request":
        return ref_key(event["target_id"])
    return ref_key(detail.get("request"))


def current_state(detail: Any) -> dict[str, Any]:
    """What a grant or exemption is after an event: a change (`exemption.updated`) records
    `{"before": …, "after": …}`, a creation the state itself."""
    if not isinstance(detail, dict):
        return {}
    if "after" in detail and "before" in detail:
        return detail["after"] if isinstance(detail["after"], dict) else {}
    return detail


def parse_time(value: Any) -> datetime | None:
    """A time as events store it: ISO text (DjangoJSONEncoder) or epoch seconds (decision records)."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration_text(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None or end < start:
        return ""
    minutes = round((end - start).total_seconds() / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours}h {mins:02d}m"
