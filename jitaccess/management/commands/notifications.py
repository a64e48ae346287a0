"""`manage.py notifications ...`: what the outbox could not deliver, and sending it again.

notifications check            counts per state and channel, each failed row with its error; exit 1 when
                               any notification gave up (for monitoring)
notifications retry [ID ...]   put failed notifications (all, or the ids given) back in the outbox
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from jitaccess.delivery import retry_failed
from jitaccess.models import DeliveryState, Notification
from jitaccess.services.notifications import enqueue_deliveries

SHOWN = 50  # failed rows listed by `check`; the admin lists them all


class Command(BaseCommand):
    help = "Show notifications the outbox could not deliver (exit 1 if any) and retry them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser(
            "check", help="Count the outbox by state and channel; exit 1 if any notification failed."
        )
        retry = sub.add_parser(
            "retry", help="Put failed notifications back in the outbox with fresh attempts."
        )
        retry.add_argument("ids", nargs="*", type=int, help="Notification ids; all failed ones when omitted.")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['subcommand']}")(options)

    def _check(self, options: dict[str, Any]) -> None:
        counts = (
            Notification.objects.values_list("state", "channel")
            .annotate(n=Count("pk"))
            .order_by("state", "channel")
        )
        for state, channel, n in counts:
            self.stdout.write(f"{state:8} {channel:6} {n}")
        failed = Notification.objects.filter(state=DeliveryState.FAILED).select_related(
            "request", "recipient"
        )
        total = failed.count()
        if not total:
            self.stdout.write(self.style.SUCCESS("ok    no notification failed"))
            return
        for row in failed.order_by("created_at")[:SHOWN]:
            self.stdout.write(
                f"{self.style.ERROR('FAIL')}  #{row.pk} {row.request.ref} {row.get_kind_display()} "
                f"by {row.channel} to {row.recipient or row.destination}, "
                f"{row.created_at:%Y-%m-%d %H:%M %Z}, {row.attempts} attempts: {row.last_error}"
            )
        if total > SHOWN:
            self.stdout.write(f"... and {total - SHOWN} more (Django admin, Notifications, state Failed)")
        raise CommandError(
            f"{total} notification(s) not delivered; fix the channel, then `manage.py notifications retry`"
        )

    def _retry(self, options: dict[str, Any]) -> None:
        ids: list[int] = options["ids"]
        retried = retry_failed(ids=ids or None)
        enqueue_deliveries(retried)
        self.stdout.write(f"{len(retried)} notification(s) put back in the outbox")
        if ids and (left := sorted(set(ids) - set(retried))):
            raise CommandError(
                f"not failed (or no such notification), left alone: {', '.join(map(str, left))}"
            )
