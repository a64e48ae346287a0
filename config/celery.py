"""The Celery app. Tasks are interfaces: they take ids, load, and call one service function."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("veil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def refuse_unsafe_production(**kwargs: Any) -> None:
    """Workers and beat sign the audit log: with DEBUG=0 they need a real VEIL_SIGNING_KEY."""
    from config.checks import refuse_unsafe_production

    refuse_unsafe_production(names=("VEIL_SIGNING_KEY",))


@worker_ready.connect
def announce_ready(**kwargs: Any) -> None:
    """`bin/veil-dev` prints its banner once the worker consumes: VEIL_WORKER_READY_FILE tells it."""
    path = os.environ.get("VEIL_WORKER_READY_FILE")
    if path:
        with open(path, "w") as ready:
            ready.write(str(os.getpid()))
