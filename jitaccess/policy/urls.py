"""Routes of the policy pages `jitaccess` owns (approval policies, the feedback-loop insights),
mounted by `config.urls` in the `policy:` namespace beside masking's (`masking.policy.urls`)."""

from django.urls import path

from jitaccess.policy import views as jit

urlpatterns = [
    path("policy/approval-policies/", jit.approval_policies, name="approval-policies"),
    path("policy/approval-policies/new/", jit.approval_policy_edit, name="approval-policy-new"),
    path("policy/approval-policies/check", jit.approval_condition_check, name="approval-condition-check"),
    path("policy/approval-policies/<int:pk>/", jit.approval_policy_edit, name="approval-policy"),
    path(
        "policy/approval-policies/<int:pk>/delete/", jit.approval_policy_delete, name="approval-policy-delete"
    ),
    path(
        "policy/approval-policies/<int:pk>/move/<slug:direction>/",
        jit.approval_policy_move,
        name="approval-policy-move",
    ),
    path("policy/insights/", jit.insights_dashboard, name="insights"),
    path("policy/insights/draft-exemption", jit.draft_exemption, name="draft-exemption"),
    path("policy/insights/draft-rule-change", jit.draft_rule_change, name="draft-rule-change"),
]
