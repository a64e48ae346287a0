from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from audit import apis as audit_apis
from identity import apis as identity_apis
from identity.views import LoginView
from jitaccess import apis as jit_apis
from jitaccess.policy import urls as jit_policy_urls
from jitaccess.views import home
from masking import datapath_apis
from masking.catalog import apis as masking_apis
from masking.catalog import views as masking_views
from masking.decisions import apis as decision_apis
from masking.policy import urls as masking_policy_urls
from shared import api

api_v1 = [
    # The API's shape is public; every operation in it still needs a token or a session.
    path("schema", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="api-schema"),
    path(
        "docs",
        # The split view serves its start-up script as a file: no inline script. Swagger UI's page
        # keeps an inline <style>, so this one page allows inline styles (never scripts).
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema", permission_classes=[AllowAny])
        ),
        name="api-docs",
    ),
    path("catalog", masking_apis.CatalogUpsertApi.as_view(), name="catalog-upsert"),
    path("decisions", decision_apis.DecisionsApi.as_view(), name="decisions"),
    path("access-events", decision_apis.AccessEventsApi.as_view(), name="access-events"),
    path("data-path/settings", datapath_apis.DataPathSettingsApi.as_view(), name="data-path-settings"),
    path("query-logins", identity_apis.QueryLoginsApi.as_view(), name="query-logins"),
    path("requests", jit_apis.RequestListCreateApi.as_view(), name="requests"),
    path("requests/<int:request_id>", jit_apis.RequestDetailApi.as_view(), name="request-detail"),
    path(
        "requests/<int:request_id>/<str:action>", jit_apis.RequestActionApi.as_view(), name="request-action"
    ),
    path("breakglass", jit_apis.BreakGlassApi.as_view(), name="breakglass"),
    path("audit/events", audit_apis.AuditEventsApi.as_view(), name="audit-events"),
]

masking_pages = (
    [path("catalog/", masking_views.catalog, name="catalog")],
    "masking",
)

# The policy pages and API: masking's and jitaccess's routes in one `policy:` namespace.
policy_routes = ([*masking_policy_urls.urlpatterns, *jit_policy_urls.urlpatterns], "policy")

urlpatterns = [
    path("", home, name="home"),
    path("", include("config.ops_urls")),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("admin/", admin.site.urls),
    path("service-accounts/", include("identity.urls")),
    path("database-access/", include("identity.database_access_urls")),
    path("api/v1/", include(api_v1)),
    path("policy/", include(masking_pages)),
    path("", include("jitaccess.urls")),
    path("audit/", include("audit.urls")),
    path("", include(policy_routes)),
    path("slack/", include("jitaccess.slack.urls")),
    path("scim/v2/", include("django_scim.urls", namespace="scim")),
]

handler404 = api.not_found
handler500 = api.server_error
