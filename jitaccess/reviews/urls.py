"""Routes of the access review pages, included by `jitaccess.urls` (names in its `jitaccess:` namespace)."""

from django.urls import path

from jitaccess.reviews import views

urlpatterns = [
    path("", views.review_list, name="access-reviews"),
    path("<int:pk>/", views.review_campaign, name="access-review"),
    path("items/<int:pk>/answer/", views.review_item_answer_view, name="access-review-answer"),
    path("settings/", views.review_settings_list, name="access-review-settings-list"),
    path("settings/<slug:key>/", views.review_settings, name="access-review-settings"),
    path("settings/<slug:key>/open/", views.review_open_now, name="access-review-open"),
]
