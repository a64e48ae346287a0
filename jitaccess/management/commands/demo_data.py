"""`manage.py demo_data`: load the demo company (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jitaccess.demo import DEMO_PASSWORD, load_demo_data


class Command(BaseCommand):
    help = "Load a small demo company: projects, prod/staging catalog, people, groups, roles, permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        usernames = load_demo_data()
        self.stdout.write(f"demo data ready; users {', '.join(usernames)} (password {DEMO_PASSWORD!r})")
