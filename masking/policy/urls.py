"""Routes of the policy pages and the policy API, mounted at the site root by `config.urls` in the
`policy:` namespace (with jitaccess's approval-policy and insights routes): pages under /policy/,
the API under /api/v1/policy/."""

from django.urls import path

from masking.policy import apis, review
from masking.policy import item_views as items
from masking.policy import views as pages

urlpatterns = [
    path("policy/", pages.overview, name="overview"),
    path("policy/semantic-types/", items.semantic_types, name="semantic-types"),
    path("policy/semantic-types/new/", items.semantic_type_edit, name="semantic-type-new"),
    path("policy/semantic-types/preview", items.semantic_type_preview, name="semantic-type-preview"),
    path("policy/semantic-types/<slug:key>/", items.semantic_type_edit, name="semantic-type"),
    path("policy/semantic-types/<slug:key>/delete/", items.semantic_type_delete, name="semantic-type-delete"),
    path("policy/rules/", items.rules, name="rules"),
    path("policy/rules/new/", items.rule_edit, name="rule-new"),
    path("policy/rules/<int:pk>/", items.rule_edit, name="rule"),
    path("policy/rules/<int:pk>/delete/", items.rule_delete, name="rule-delete"),
    path("policy/rules/<int:pk>/move/<slug:direction>/", items.rule_move, name="rule-move"),
    path("policy/conditions/check", items.condition_check, name="condition-check"),
    path("policy/exemptions/", items.exemptions, name="exemptions"),
    path("policy/exemptions/new/", items.exemption_edit, name="exemption-new"),
    path("policy/exemptions/<int:pk>/", items.exemption_edit, name="exemption"),
    path("policy/exemptions/<int:pk>/revoke/", items.exemption_revoke, name="exemption-revoke"),
    path("policy/review/confirm", review.review_confirm, name="review-confirm"),
    path("policy/versions/", pages.versions, name="versions"),
    path("policy/versions/compare", pages.version_compare, name="compare"),
    path("policy/versions/<int:number>/", pages.version_detail, name="version"),
    path("policy/versions/<int:number>/rollback/", pages.version_rollback, name="rollback"),
    path("policy/changes/", pages.changes, name="changes"),
    path("policy/changes/<int:pk>/", pages.change_detail, name="change"),
    path("policy/changes/<int:pk>/<slug:decision>/", pages.change_decide, name="change-decide"),
    path("policy/code/", pages.code, name="code"),
    path("policy/export.yaml", pages.export_yaml, name="export"),
    path("policy/settings/", pages.settings_page, name="settings"),
    path("policy/checks/", pages.checks, name="checks"),
    path("api/v1/policy/export", apis.PolicyExportApi.as_view(), name="api-export"),
    path("api/v1/policy/plan", apis.PolicyPlanApi.as_view(), name="api-plan"),
    path("api/v1/policy/apply", apis.PolicyApplyApi.as_view(), name="api-apply"),
    path("api/v1/policy/coverage", apis.PolicyCoverageApi.as_view(), name="api-coverage"),
    path("api/v1/policy/drift", apis.PolicyDriftApi.as_view(), name="api-drift"),
]
