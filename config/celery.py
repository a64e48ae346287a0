"""The Celery app. Tasks are interfaces: they take ids, load, and call one service function."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("veil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
