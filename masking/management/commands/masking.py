"""`manage.py masking check` and `manage.py masking drift`: CI gates on the live policy.

Both exit 1 when they find something and 0 otherwise, and print one line per column (or JSON with
`--format json`), so a pipeline step fails with the list of what to fix. See docs/policy.md.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from masking.checks import DEFAULT_SENSITIVE_TAGS, coverage, default_min_level, drift
from masking.selectors import load_policy, read_epochs


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class Command(BaseCommand):
    help = "Check the policy: coverage of sensitive columns, drift between environments."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        check = sub.add_parser("check", help="Fail when a sensitive column is not masked for everyone.")
        check.add_argument(
            "--min-level",
            type=int,
            default=None,
            help="Columns classified at or above this level must be masked (default: the masking level)",
        )
        check.add_argument(
            "--sensitive-tags",
            type=_csv,
            default=list(DEFAULT_SENSITIVE_TAGS),
            help="Comma-separated tags that make a column sensitive (default: sensitive,pii)",
        )
        check.add_argument(
            "--require-rule",
            action="store_true",
            help="A full mask from the classification default does not count: a rule must cover it",
        )
        check.add_argument("--environment", type=_csv, default=[], help="Only these environments")
        check.add_argument("--format", choices=("text", "json"), default="text")
        drift_parser = sub.add_parser(
            "drift", help="Fail when a column is masked differently across environments."
        )
        drift_parser.add_argument(
            "--environments", type=_csv, default=[], help="e.g. prod,staging (default: all)"
        )
        drift_parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        policy = load_policy(read_epochs().policy)
        now = timezone.now().timestamp()
        if options["subcommand"] == "check":
            min_level = options["min_level"]
            report = coverage(
                policy,
                min_level=default_min_level(policy) if min_level is None else min_level,
                sensitive_tags=options["sensitive_tags"],
                require_rule=options["require_rule"],
                environments=options["environment"],
                now=now,
            )
            if options["format"] == "json":
                self.stdout.write(json.dumps(report.as_json(), indent=2))
            else:
                for f in report.uncovered:
                    self.stdout.write(f"UNCOVERED  {f.column.key.label()}  ({f.column.environment}): {f.why}")
                for f in report.unreviewed:
                    self.stdout.write(f"UNREVIEWED {f.column.key.label()}  ({f.column.environment}): {f.why}")
                in_clear = [f for f in report.unclassified if f.decision.unmask]
                for f in in_clear:
                    self.stdout.write(
                        f"UNCLASSIFIED {f.column.key.label()}  ({f.column.environment}): {f.why}"
                    )
                masked = len(report.unclassified) - len(in_clear)
                counts = (
                    f"{len(report.uncovered)} uncovered, {len(report.unreviewed)} to review, "
                    f"{len(in_clear)} unclassified in clear ({masked} more masked by default)"
                )
                self.stdout.write(f"{counts}, of {len(policy.columns)} columns.")
            if not report.ok:
                sys.exit(1)
            return
        found = drift(policy, environments=options["environments"], now=now)
        if options["format"] == "json":
            self.stdout.write(json.dumps({"ok": not found, "drift": [d.as_json() for d in found]}, indent=2))
        else:
            for item in found:
                self.stdout.write(f"DRIFT {item.label}: {item.describe()}")
            self.stdout.write(f"{len(found)} column(s) drift between environments.")
        if found:
            sys.exit(1)
