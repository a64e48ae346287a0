"""What the policy pages show about columns nobody classified: per project and environment of the
catalog, whether they are masked, on whose say-so, and how many such columns there are."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, F

from masking.models import Column, Database
from masking.selectors import unclassified_defaults


@dataclass(frozen=True)
class UnclassifiedAnswer:
    project: str
    environment: str
    masked: bool
    why: str  # "Veil's default for prod", "shop's setting for staging"
    columns: int  # unclassified catalog columns (a rule or semantic type may still mask some)


def veil_default_text() -> str:
    """Veil's default in words, for the settings page's choice."""
    environments = ", ".join(settings.UNCLASSIFIED_MASKED_ENVIRONMENTS)
    return f"masked in {environments}, in clear elsewhere" if environments else "in clear everywhere"


def unclassified_answers(projects: Collection[str]) -> list[UnclassifiedAnswer]:
    """One row per project and environment its databases are in, as the decision engine answers
    an unclassified column there. Two queries."""
    defaults = unclassified_defaults()
    pairs = (
        Database.objects.filter(project__key__in=list(projects))
        .values_list("project__key", "instance__environment")
        .distinct()
    )
    counts = dict(
        ((row["project"], row["environment"]), row["n"])
        for row in Column.objects.filter(
            classification_level__isnull=True,
            discovered_by_decision=False,
            table__schema__database__project__key__in=list(projects),
        )
        .values(
            project=F("table__schema__database__project__key"),
            environment=F("table__schema__database__instance__environment"),
        )
        .annotate(n=Count("pk"))
    )
    answers = []
    for project, environment in sorted(set(pairs)):
        masked, why = defaults.masks(project, environment)
        answers.append(
            UnclassifiedAnswer(project, environment, masked, why, counts.get((project, environment), 0))
        )
    return answers
