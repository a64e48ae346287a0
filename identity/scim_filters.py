"""SCIM filters (`GET /Users?filter=userName eq "x"`) to SQL, by django-scim2's parser: the SCIM
attributes the IdPs search on, mapped to Veil's columns. Apart from `identity.scim` because
django-scim2's settings import these while its adapters module loads."""

from __future__ import annotations

from django_scim.filters import GroupFilterQuery, UserFilterQuery


class PersonFilter(UserFilterQuery):
    attr_map = {
        ("userName", None, None): "identity_user.username",
        ("externalId", None, None): "identity_user.scim_external_id",
        ("id", None, None): "identity_user.scim_id",
        ("emails", None, None): "identity_user.email",
        ("emails", "value", None): "identity_user.email",
        ("name", "familyName", None): "identity_user.last_name",
        ("name", "givenName", None): "identity_user.first_name",
        ("displayName", None, None): "identity_user.display_name",
        ("active", None, None): "identity_user.is_active",
    }


class DirectoryGroupFilter(GroupFilterQuery):
    attr_map = {
        ("displayName", None, None): "auth_group.name",
        ("externalId", None, None): "identity_directorygroup.scim_external_id",
        ("id", None, None): "identity_directorygroup.scim_id",
    }
    joins = ("JOIN auth_group ON auth_group.id = identity_directorygroup.group_id",)
