"""Routes for operators' machines rather than people: probes (and, below, metrics and directory sync)."""

from django.urls import path

from config import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
