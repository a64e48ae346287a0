from django.urls import path

from identity import database_access_views as views

app_name = "database-access"

urlpatterns = [
    path("", views.database_access, name="index"),
    path("tokens/<int:pk>/revoke/", views.personal_token_revoke, name="token-revoke"),
]
