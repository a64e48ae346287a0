"""Every model has a working admin page; admin saves go through the audited services."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.http import HttpRequest
from django.urls import reverse
from django.utils.duration import duration_string

from audit.models import AuditEvent
from identity.models import Role, ServiceAccount, User
from jitaccess.models import ProjectAccessSettings
from jitaccess.policy.matching import PolicyConditionError, check_request_condition
from masking.models import DecisionEpoch, MaskingRule, SemanticType

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    call_command("demo_data", allow_public_passwords=True)
    client.login(
        request=HttpRequest(), username="admin", password="veil-demo"
    )  # django-axes wants the request
    return client


def test_every_registered_model_lists_and_opens(admin_client):
    for model in admin.site._registry:
        opts = model._meta
        changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200, f"{opts.label} changelist"
        first = model._default_manager.first()
        if first is not None:
            change = admin_client.get(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
            )
            assert change.status_code == 200, f"{opts.label} change page"


def test_a_rule_with_a_bad_condition_is_refused_and_a_good_one_is_audited(admin_client):
    url = reverse("admin:masking_maskingrule_add")
    email = SemanticType.objects.get(key="email")
    epoch = DecisionEpoch.objects.get().policy

    bad = admin_client.post(
        url,
        {
            "title": "x",
            "condition": "resource.colour == 'red'",
            "semantic_type": email.pk,
            "position": 5,
            "enabled": "on",
        },
    )
    assert bad.status_code == 200 and "unknown field" in bad.content.decode()
    good = admin_client.post(
        url,
        {
            "title": "Emails in staging",
            "condition": "resource.environment_id == 'staging'",
            "semantic_type": email.pk,
            "position": 5,
            "enabled": "on",
        },
    )

    assert good.status_code == 302
    assert MaskingRule.objects.filter(title="Emails in staging").exists()
    assert AuditEvent.objects.filter(action="rule.created", target_repr="Emails in staging").exists()
    assert DecisionEpoch.objects.get().policy > epoch


def test_a_bulk_delete_goes_through_the_service_for_each_rule(admin_client):
    rules = list(MaskingRule.objects.order_by("pk")[:2])
    epoch = DecisionEpoch.objects.get().policy

    response = admin_client.post(
        reverse("admin:masking_maskingrule_changelist"),
        {"action": "delete_selected", "_selected_action": [r.pk for r in rules], "post": "yes"},
    )

    assert response.status_code == 302
    assert not MaskingRule.objects.filter(pk__in=[r.pk for r in rules]).exists()
    deleted = AuditEvent.objects.filter(action="rule.deleted").values_list("target_id", flat=True)
    assert sorted(deleted) == sorted(str(r.pk) for r in rules)
    assert DecisionEpoch.objects.get().policy > epoch


def test_a_semantic_type_with_an_invalid_algorithm_is_refused(admin_client):
    response = admin_client.post(
        reverse("admin:masking_semantictype_add"),
        {"key": "bad", "title": "Bad", "algorithm": '{"type": "show_last", "n": -1}'},
    )

    assert response.status_code == 200
    assert "n:" in response.content.decode()
    assert not SemanticType.objects.filter(key="bad").exists()


@pytest.mark.parametrize(
    "condition", ["request.environment_id ==", "resource.column_name == 'x'", "request.duration_hours"]
)
def test_approval_policy_conditions_are_checked(condition):
    with pytest.raises(PolicyConditionError):
        check_request_condition(condition)


def test_a_visitor_signs_in_through_veils_login_page_and_comes_back(client):
    response = client.get("/admin/masking/maskingrule/")
    assert response.status_code == 302
    admin_login = response["Location"]
    assert admin_login.startswith("/admin/login/")
    response = client.get(admin_login)
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/admin/masking/maskingrule/"


def test_someone_who_is_not_staff_is_told_why_instead_of_shown_a_password_form(client):
    call_command("demo_data", allow_public_passwords=True)
    client.login(request=HttpRequest(), username="alice", password="veil-demo")
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    assert "The admin site is for Veil&#x27;s staff" in response.content.decode()
    assert b'name="password"' not in response.content


def test_staff_signed_in_go_straight_to_the_admin(admin_client):
    response = admin_client.get("/admin/login/?next=/admin/masking/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/masking/"
    assert b"Veil administration" in admin_client.get("/admin/").content


def test_the_admin_login_does_not_redirect_off_site(admin_client):
    response = admin_client.get("/admin/login/?next=https://evil.example/")
    assert response["Location"] == "/admin/"


def test_access_settings_saved_in_the_admin_site_are_recorded_with_what_changed(admin_client):
    settings = ProjectAccessSettings.objects.get(project__key="shop")
    url = reverse("admin:jitaccess_projectaccesssettings_change", args=[settings.pk])
    admins = Role.objects.create(name="dba-oncall")

    response = admin_client.post(
        url,
        {
            "project": settings.project_id,
            "max_duration": duration_string(settings.max_duration),
            "pending_timeout": duration_string(settings.pending_timeout),
            "breakglass_roles": [admins.pk],
            "breakglass_max_duration": "04:00:00",
            "security_emails": settings.security_emails,
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="project.access_settings_updated")
    assert event.project == "shop"
    before, after = event.detail["before"], event.detail["after"]
    assert before == {"breakglass_max_duration": "1 hour", "breakglass_roles": ["security-oncall"]}
    assert after == {"breakglass_max_duration": "4 hours", "breakglass_roles": ["dba-oncall"]}
    delete = reverse("admin:jitaccess_projectaccesssettings_delete", args=[settings.pk])
    assert admin_client.get(delete).status_code == 403


def test_a_service_account_owner_changed_in_the_admin_site_is_recorded(admin_client):
    account = ServiceAccount.objects.get(name="sql-proxy")
    ada = User.objects.get(username="admin")

    response = admin_client.post(
        reverse("admin:identity_serviceaccount_change", args=[account.pk]),
        {
            "description": account.description,
            "owner": ada.pk,
            "tokens-TOTAL_FORMS": "0",
            "tokens-INITIAL_FORMS": "0",
            "tokens-MIN_NUM_FORMS": "0",
            "tokens-MAX_NUM_FORMS": "1000",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.owner == ada
    event = AuditEvent.objects.get(action="service_account.updated")
    assert event.detail == {"before": {"owner": None}, "after": {"owner": ada.canonical_subject}}
