"""What of the policy document a person who administers only some projects may read and send.

Rules, semantic types and roles are global and every policy admin reads them. Exemptions, approval
policies and project settings belong to one project each: a person reads those of the projects
they administer (`masking.policy.access.columns_scope`), in the export (API, `export.yaml`) and
the pages, and a file they send is planned against those projects only (`confined_document`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from masking.policy.document import DocumentError, Section, sections


def _outside(sec: Section, item: Mapping[str, Any], projects: Collection[str]) -> bool:
    project = sec.project_of(item)
    return project is not None and project not in projects


def scoped_document(
    document: Mapping[str, list[dict[str, Any]]], projects: Collection[str] | None
) -> dict[str, list[dict[str, Any]]]:
    """What a reader who administers only `projects` may see of `document` (None: everything):
    the global items (rules, semantic types, roles, which mask every project) and the items of
    those projects. Another project's exemptions, approval policies and settings are left out."""
    known = {s.name: s for s in sections()}
    return {
        name: [item for item in items if projects is None or not _outside(known[name], item, projects)]
        for name, items in document.items()
    }


def readable_change(projects_touched: Collection[str], projects: Collection[str] | None) -> bool:
    """Whether a held or decided policy change may be shown to a reader of `projects`: when every
    project it touches is theirs (its diff shows those projects' items before and after)."""
    return projects is None or set(projects_touched) <= set(projects)


def confined_document(
    target: Mapping[str, list[dict[str, Any]]],
    projects: Collection[str] | None,
    live: Mapping[str, list[dict[str, Any]]],
) -> dict[str, list[dict[str, Any]]]:
    """A file from someone who administers only `projects` (None: every project), made whole.

    Such a person exports `scoped_document`, so their file lacks the other projects' items; a
    section present in a file deletes what it does not list, so those items are kept from `live`
    instead. An item of another project in the file is refused (DocumentError at the item): it
    could only be a change they may not make, and planning it would show them that project's
    item. The result plans and applies to exactly their projects and the global items.
    """
    if projects is None:
        return dict(target)
    result: dict[str, list[dict[str, Any]]] = {}
    for sec in sections():
        if sec.name not in target:
            continue
        for index, item in enumerate(target[sec.name]):
            if _outside(sec, item, projects):
                raise DocumentError(
                    f"{sec.name}[{index}]",
                    f"belongs to project {sec.project_of(item)!r}, which you do not administer",
                )
        kept = [item for item in live.get(sec.name, []) if _outside(sec, item, projects)]
        result[sec.name] = [*target[sec.name], *kept]
    return result
