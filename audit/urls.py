"""Compliance pages, mounted at /audit/ by config/urls.py."""

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("verify/", views.verify, name="verify"),
    path("events/", views.events, name="events"),
    path("events/<int:seq>/", views.event_detail, name="event"),
    path("reports/<slug:key>/", views.report, name="report"),
    path("exports/", views.exports, name="exports"),
    path("exports/<int:pk>/download", views.export_download, name="export-download"),
    path("exports/<int:pk>/manifest", views.export_manifest, name="export-manifest"),
]
