"""The JIT web pages (the API's routes are in config/urls.py)."""

from django.urls import include, path

from jitaccess import settings_views, views

app_name = "jitaccess"
urlpatterns = [
    path("requests/", views.request_list, name="requests"),
    path("requests/new/", views.request_new, name="request-new"),
    path("requests/new/preview/", views.request_preview, name="request-preview"),
    path("requests/settings/", settings_views.request_settings_list, name="request-settings-list"),
    path("requests/settings/<slug:key>/", settings_views.request_settings, name="request-settings"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
    path("requests/<int:pk>/<slug:action>/", views.request_action, name="request-action"),
    path("requests/<int:pk>/<slug:action>/confirm/", views.request_end_confirm, name="request-end-confirm"),
    path("approvals/", views.approvals, name="approvals"),
    path("breakglass/", views.breakglass_new, name="breakglass"),
    path("breakglass/reviews/", views.breakglass_reviews, name="breakglass-reviews"),
    path("access-reviews/", include("jitaccess.reviews.urls")),
]
