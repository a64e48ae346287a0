"""What a person sees of each catalog column right now, and why, in words.

The request form shows it next to each column, so a person asks only for what is masked and knows
what masks it (a rule, the column's semantic type, its classification) or what already shows it
(their grant, a standing exemption and which of their roles or groups it names, nothing
sensitive). The answer is the decision path's own (`scopes.column_decisions_for`): the page never
guesses what the data path would do.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from identity.models import User
from identity.selectors import role_names_of_user
from jitaccess.formatting import moment_label
from jitaccess.selectors.scopes import column_decisions_for
from masking.decisions.engine import Decision
from masking.models import Column, Database, Exemption


@dataclass(frozen=True)
class ColumnAccess:
    visible: bool  # the person already sees it in clear: nothing to ask for
    why: str  # what masks it, or what shows it, e.g. "rule “Card numbers”", "your grant REQ-1 …"


REASON_SHOWN_CHARS = 120  # an exemption's reason, quoted next to a column: its gist, not an essay
UNKNOWN_TO_VEIL = ColumnAccess(False, "Veil does not know you as a principal yet, so everything is masked")


def column_access(user: User, database: Database, columns: Sequence[Column]) -> dict[int, ColumnAccess]:
    """Each of `database`'s `columns` (table and schema loaded) as the person sees it now, by id."""
    decisions = column_decisions_for(user, database, columns)
    exemption_ids = {
        d.reason_id for d in decisions.values() if d.unmask and d.reason_kind == "exemption" and d.reason_id
    }
    through = _exemption_memberships(user, exemption_ids)
    return {
        c.pk: ColumnAccess(d.unmask, _why(d, through)) if (d := decisions.get(c.pk)) else UNKNOWN_TO_VEIL
        for c in columns
    }


def _why(decision: Decision, exemptions: Mapping[int, str]) -> str:
    kind, title = decision.reason_kind, decision.reason_title
    if decision.unmask:
        if decision.request_ref:
            until = _until(decision.expires_at)
            return f"your grant {decision.request_ref}{f' until {until}' if until else ''}"
        if kind == "exemption":
            return exemptions.get(decision.reason_id or 0, "a standing exemption")
        if kind == "not_sensitive":
            return "not sensitive: no rule, semantic type or classification masks it"
        return kind.replace("_", " ")
    if kind == "rule":
        return f"rule “{title}”" + (
            f" (semantic type “{decision.semantic_type}”)" if decision.semantic_type else ""
        )
    if kind == "semantic_type":
        return f"its semantic type “{title}”"
    return title or kind.replace("_", " ")


def _exemption_memberships(user: User, ids: Iterable[int]) -> dict[int, str]:
    """ "a standing exemption for your role “support-agents” (“Support confirms callers …”)", by
    exemption id: which of the person's memberships it names, and the reason it was given."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    roles, groups = role_names_of_user(user), set(user.groups.values_list("name", flat=True))
    said = {}
    for exemption in Exemption.objects.filter(pk__in=wanted).prefetch_related("users", "roles", "groups"):
        if any(member.pk == user.pk for member in exemption.users.all()):
            member = "you"
        elif named := sorted(r.name for r in exemption.roles.all() if r.name in roles):
            member = f"your role “{named[0]}”"
        elif named := sorted(g.name for g in exemption.groups.all() if g.name in groups):
            member = f"your group “{named[0]}”"
        else:
            member = "you"
        reason = textwrap.shorten(exemption.reason, REASON_SHOWN_CHARS, placeholder=" …")
        said[exemption.pk] = f"a standing exemption for {member}" + (f" (“{reason}”)" if reason else "")
    return said


def _until(epoch_seconds: float | None) -> str:
    return moment_label(datetime.fromtimestamp(epoch_seconds, UTC)) if epoch_seconds is not None else ""
