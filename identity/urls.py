from django.urls import path

from identity import views

app_name = "identity"

urlpatterns = [
    path("", views.service_accounts, name="service-accounts"),
    path("new/", views.service_account_new, name="service-account-new"),
    path("<int:pk>/active/", views.service_account_active, name="service-account-active"),
    path("<int:pk>/tokens/new/", views.token_new, name="token-new"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
]
