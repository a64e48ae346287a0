"""Finding 2: on the admin site, staff who may change users cannot give themselves or anyone
privileges, cannot re-point someone's verified email (which let another person approve in Slack as
them), and every change to a person is in the audit log, privileges and passwords by superusers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from audit.models import AuditEvent
from identity.models import User
from tests.factories import make_user
from tests.security.admin_forms import form_fields, post_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def hr():
    """Staff who may change users, and nothing else."""
    user = make_user("hr", is_staff=True, email_verified=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="identity", codename__in=["change_user", "view_user"]
        )
    )
    return user


@pytest.fixture
def bob():
    user = make_user("bob", email="bob@example.com", email_verified=True, oidc_subject="idp-bob")
    user.groups.add(Group.objects.create(name="approvers"))
    return user


@pytest.fixture
def root():
    return make_user("root", is_staff=True, is_superuser=True, email_verified=True)


def change_form(client, user: User) -> dict[str, list[str]]:
    """What the browser posts from the person's admin page, as it stands."""
    page = client.get(reverse("admin:identity_user_change", args=[user.pk]))
    assert page.status_code == 200
    return post_data(form_fields(page.content.decode(), "user_form"))


def post_change(client, user: User, **changes: object):
    data = {**change_form(client, user), **changes}
    return client.post(reverse("admin:identity_user_change", args=[user.pk]), data)


def events(*actions: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__in=actions).order_by("seq"))


def test_staff_who_may_change_users_cannot_make_themselves_superuser(client, hr):
    client.force_login(hr)
    superuser = Permission.objects.get(codename="delete_user")

    post_change(
        client,
        hr,
        is_superuser="on",
        is_staff="on",
        groups=[Group.objects.create(name="security").pk],
        user_permissions=[superuser.pk],
    )

    hr.refresh_from_db()
    assert not hr.is_superuser
    assert list(hr.groups.all()) == []
    assert list(hr.user_permissions.values_list("codename", flat=True).order_by("codename")) == [
        "change_user",
        "view_user",
    ]


def test_staff_cannot_re_point_a_verified_email_or_the_subject(client, hr, bob):
    client.force_login(hr)

    post_change(client, bob, email="mallory@example.com", email_verified="on", oidc_subject="idp-mallory")

    bob.refresh_from_db()
    assert (bob.email, bob.email_verified, bob.oidc_subject) == ("bob@example.com", True, "idp-bob")


def test_identity_from_the_idp_is_read_only_for_superusers_too(client, root, bob):
    client.force_login(root)

    post_change(client, bob, email="mallory@example.com", username="bob2")

    bob.refresh_from_db()
    assert (bob.email, bob.username) == ("bob@example.com", "bob")


def test_staff_cannot_change_group_membership(client, hr, bob):
    client.force_login(hr)

    post_change(client, bob, groups=[])

    assert list(bob.groups.values_list("name", flat=True)) == ["approvers"]


def test_staff_cannot_change_a_superuser_or_set_anyones_password(client, hr, root, bob):
    client.force_login(hr)

    superuser_page = client.post(
        reverse("admin:identity_user_change", args=[root.pk]), {"first_name": "Pwned", "is_active": ""}
    )
    password = client.post(
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {"password1": "Xy7-correct-horse", "password2": "Xy7-correct-horse", "usable_password": "true"},
    )

    assert (superuser_page.status_code, password.status_code) == (403, 403)
    root.refresh_from_db()
    bob.refresh_from_db()
    assert root.is_active and root.first_name != "Pwned"
    assert not bob.check_password("Xy7-correct-horse")


def test_every_change_staff_make_to_a_person_is_audited_with_before_and_after(client, hr, bob):
    client.force_login(hr)

    response = post_change(client, bob, display_name="Robert", is_active="")

    assert response.status_code == 302, response.content.decode()[:3000]
    bob.refresh_from_db()
    assert bob.display_name == "Robert" and not bob.is_active
    [event] = events("user.updated", "user.privileges_changed")
    assert event.action == "user.updated"
    assert event.actor_id == hr.canonical_subject and event.target_id == str(bob.pk)
    assert event.detail == {
        "before": {"display_name": "", "is_active": True},
        "after": {"display_name": "Robert", "is_active": False},
    }


def test_a_superuser_changes_privileges_and_each_change_is_audited(client, root, bob):
    client.force_login(root)
    security = Group.objects.create(name="security")

    response = post_change(client, bob, is_staff="on", groups=[security.pk])

    assert response.status_code == 302, response.content.decode()[:3000]
    bob.refresh_from_db()
    assert bob.is_staff and list(bob.groups.values_list("name", flat=True)) == ["security"]
    [event] = events("user.updated", "user.privileges_changed")
    assert event.action == "user.privileges_changed"
    assert event.detail == {
        "before": {"is_staff": False, "groups": ["approvers"]},
        "after": {"is_staff": True, "groups": ["security"]},
    }


def test_a_password_set_by_a_superuser_is_audited_without_the_secret(client, root, bob):
    client.force_login(root)

    response = client.post(
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {"password1": "Xy7-correct-horse", "password2": "Xy7-correct-horse", "usable_password": "true"},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    bob.refresh_from_db()
    assert bob.check_password("Xy7-correct-horse")
    [event] = events("user.password_set")
    assert event.detail == {"password_sign_in": True}
    assert "Xy7" not in str(event.detail)


def test_people_are_added_audited_and_never_deleted_on_the_admin_site(client, root, bob):
    client.force_login(root)

    added = client.post(
        reverse("admin:identity_user_add"),
        {
            "username": "carol",
            "password1": "Xy7-correct-horse",
            "password2": "Xy7-correct-horse",
            "usable_password": "true",
        },
    )
    deleted = client.post(reverse("admin:identity_user_delete", args=[bob.pk]), {"post": "yes"})

    assert added.status_code == 302, added.content.decode()[:3000]
    carol = User.objects.get(username="carol")
    assert not (carol.is_staff or carol.is_superuser)
    [event] = events("user.created")
    assert event.target_id == str(carol.pk) and event.actor_id == root.canonical_subject
    assert deleted.status_code == 403
    assert User.objects.filter(pk=bob.pk).exists()
