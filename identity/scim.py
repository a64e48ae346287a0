"""SCIM 2.0 for django-scim2: Veil's adapters, its token check and where resources live.

django-scim2 routes `/scim/v2/`, parses filters (`identity.scim_filters`), pages lists and writes
SCIM error bodies; these adapters read its JSON into plain values and hand them to
`identity.directory`, which writes and audits. What the IdPs send that Veil does not keep
(phone numbers, the enterprise extension, roles) is accepted and ignored, so provisioning does not
stop on an attribute mapping Veil has no use for; malformed bodies and operations are refused.

Only IdP people are SCIM resources: local accounts (no OIDC subject, such as the break-glass
administrator) are invisible to the IdP, so it can neither read nor deactivate them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django_scim import constants, exceptions
from django_scim.adapters import SCIMGroup, SCIMUser
from django_scim.middleware import SCIMAuthCheckMiddleware
from django_scim.models import SCIMServiceProviderConfig

from identity.directory import (
    DirectoryError,
    PersonFields,
    group_create,
    group_unlink,
    group_update,
    person_create,
    person_fields,
    person_update,
)
from identity.models import DirectoryGroup, Scope, ServiceAccount, User
from identity.services import token_authenticate

USER_URN = constants.SchemaURI.USER.lower() + ":"
GROUP_URN = constants.SchemaURI.GROUP.lower() + ":"
MEMBER_FILTER = re.compile(r'^members\[\s*value\s+eq\s+"([^"]*)"\s*\]$', re.IGNORECASE)


def scim_error(status: int, detail: str, scim_type: str | None = None) -> HttpResponse:
    body = exceptions.SCIMException(detail, status=status, scim_type=scim_type).to_dict()
    return HttpResponse(json.dumps(body), status=status, content_type=constants.SCIM_CONTENT_TYPE)


class ScimTokenCheck(SCIMAuthCheckMiddleware):
    """Wraps every SCIM view: a live service-account token with the `scim` scope, or a SCIM error.
    Request bodies are never logged (they carry people's details)."""

    def should_log_request(self, request: HttpRequest) -> bool:
        return False

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        keyword, _, raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        token = token_authenticate(raw.strip()) if keyword == "Bearer" and raw.strip() else None
        if token is None:
            response = scim_error(401, "A valid bearer token (a Veil service-account token) is required.")
            response["WWW-Authenticate"] = 'Bearer realm="veil-scim"'
            return response
        if Scope.SCIM not in token.scopes:
            return scim_error(403, "This token lacks the scim scope.")
        request.scim_account = token.service_account  # type: ignore[attr-defined]
        return None


def base_location(request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> str:
    """Resources' `meta.location` is under SITE_URL, whatever Host header a request came with."""
    return str(settings.SITE_URL)


class ServiceProviderConfig(SCIMServiceProviderConfig):
    """What Veil supports: PATCH and filters (eq on the attributes in `scim_filters`), no
    password changes (people sign in through the IdP), no bulk, sort or ETags."""

    def to_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = super().to_dict()
        config["filter"] = {"supported": True, "maxResults": 50}
        config["changePassword"] = {"supported": False}
        return config


def local_accounts_excluded(model: type) -> Any:
    def exclude(request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"oidc_subject": None} if model is User else {}

    return exclude


def local_account_hidden(model: type) -> Any:
    def check(request: HttpRequest, obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, User) and obj.oidc_subject is None:
            raise exceptions.NotFoundError(str(obj.scim_id))
        return obj

    return check


def _account(request: HttpRequest) -> ServiceAccount:
    return request.scim_account  # type: ignore[attr-defined,no-any-return]


def _raise(error: DirectoryError) -> None:
    raise exceptions.SCIMException(error.detail, status=error.status, scim_type=error.scim_type) from error


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise exceptions.BadRequestError(f"{name} must be a string", scim_type="invalidValue")
    return value.strip()


def _boolean(value: Any, name: str) -> bool:
    """SCIM booleans; Entra ID sends "True"/"False" as strings in PATCH, so those count too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise exceptions.BadRequestError(f"{name} must be a boolean", scim_type="invalidValue")


def _email(value: Any) -> str:
    """The primary email of a SCIM `emails` list (else the first; a dict is taken as the one)."""
    if value in (None, []):
        return ""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise exceptions.BadRequestError("emails must be a list of objects", scim_type="invalidValue")
    chosen = next((e for e in value if e.get("primary") in (True, "true", "True")), value[0])
    address = _text(chosen.get("value"), "emails.value")
    if address:
        SCIMUser.validate_email(address)  # django-scim2's check: 400 'Invalid email value'
    return address


def _operations(body_ops: Any) -> list[tuple[str, str, Any]]:
    """(op, path, value) for each PATCH operation; a path-less add/replace whose value is an
    object (Okta's form) becomes one operation per key."""
    if not isinstance(body_ops, list):
        raise exceptions.BadRequestError("Operations must be a list", scim_type="invalidSyntax")
    result: list[tuple[str, str, Any]] = []
    for operation in body_ops:
        if not isinstance(operation, dict):
            raise exceptions.BadRequestError("each operation must be an object", scim_type="invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in constants.VALID_PATCH_OPS:
            raise exceptions.BadRequestError(
                f"op must be add, remove or replace, not {operation.get('op')!r}", scim_type="invalidSyntax"
            )
        path, value = operation.get("path"), operation.get("value")
        if path is not None and not isinstance(path, str):
            raise exceptions.BadRequestError("path must be a string", scim_type="invalidPath")
        if not path:
            if op == "remove":
                raise exceptions.BadRequestError("remove needs a path", scim_type="noTarget")
            if not isinstance(value, dict):
                raise exceptions.BadRequestError(
                    "an operation without a path needs an object value", scim_type="invalidValue"
                )
            result.extend((op, key, item) for key, item in value.items())
        else:
            result.append((op, path, value))
    return result


class PersonAdapter(SCIMUser):
    """A person as a SCIM User (RFC 7643 4.1), read from and written through `identity.directory`."""

    id_field = "scim_id"

    def __init__(self, obj: User, request: HttpRequest | None = None) -> None:
        super().__init__(obj, request)
        self.obj: User = obj
        self._fields: PersonFields | None = None

    @property
    def display_name(self) -> str:
        return self.obj.display_name or self.obj.get_full_name() or self.obj.username

    @property
    def emails(self) -> list[dict[str, Any]]:
        return [{"value": self.obj.email, "primary": True, "type": "work"}] if self.obj.email else []

    @property
    def groups(self) -> list[dict[str, Any]]:
        linked = DirectoryGroup.objects.filter(group__user=self.obj).select_related("group")
        return [{"value": str(d.scim_id), "display": d.group.name} for d in linked]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = super().to_dict()
        d["externalId"] = self.obj.scim_external_id or None
        d["name"].pop("formatted", None)
        return d

    def validate_dict(self, d: dict[str, Any]) -> None:
        if not isinstance(d, dict):
            raise exceptions.BadRequestError("the body must be a SCIM User object", scim_type="invalidSyntax")

    def from_dict(self, d: dict[str, Any]) -> None:
        """A whole User (POST, PUT). `active` left out keeps what the person is (true for a new one)."""
        name = d.get("name") or {}
        if not isinstance(name, dict):
            raise exceptions.BadRequestError("name must be an object", scim_type="invalidValue")
        self._fields = PersonFields(
            username=_text(d.get("userName"), "userName"),
            external_id=_text(d.get("externalId"), "externalId"),
            given_name=_text(name.get("givenName"), "name.givenName"),
            family_name=_text(name.get("familyName"), "name.familyName"),
            display_name=_text(d.get("displayName"), "displayName"),
            email=_email(d.get("emails")),
            active=_boolean(d["active"], "active")
            if "active" in d
            else (self.obj.pk is None or self.obj.is_active),
        )

    def save(self) -> None:
        assert self._fields is not None
        try:
            if self.obj.pk is None:
                self.obj = person_create(fields=self._fields, account=_account(self.request))
            else:
                self.obj = person_update(user=self.obj, fields=self._fields, account=_account(self.request))
        except DirectoryError as error:
            _raise(error)

    def delete(self) -> None:
        """An IdP deletes a person Veil must keep (their requests and the audit log name them):
        deletion deactivates."""
        self._fields = replace(person_fields(self.obj), active=False)
        self.save()

    def handle_operations(self, operations: Any) -> None:
        fields = person_fields(self.obj)
        for op, path, value in _operations(operations):
            fields = self._patched(fields, op, path, value)
        self._fields = fields
        self.save()

    def _patched(self, fields: PersonFields, op: str, path: str, value: Any) -> PersonFields:
        key = path.lower()
        if key.startswith(USER_URN):
            key = key[len(USER_URN) :]
        if op == "remove":
            value = None
        if key == "active":
            if value is None:
                raise exceptions.BadRequestError("active cannot be removed", scim_type="mutability")
            return replace(fields, active=_boolean(value, "active"))
        if key == "username":
            return replace(fields, username=_text(value, "userName"))
        if key == "externalid":
            return replace(fields, external_id=_text(value, "externalId"))
        if key == "displayname":
            return replace(fields, display_name=_text(value, "displayName"))
        if key == "name.givenname":
            return replace(fields, given_name=_text(value, "name.givenName"))
        if key == "name.familyname":
            return replace(fields, family_name=_text(value, "name.familyName"))
        if key == "name":
            name = value or {}
            if not isinstance(name, dict):
                raise exceptions.BadRequestError("name must be an object", scim_type="invalidValue")
            return replace(
                fields,
                given_name=_text(name.get("givenName"), "name.givenName"),
                family_name=_text(name.get("familyName"), "name.familyName"),
            )
        if key == "emails":
            return replace(fields, email=_email(value))
        if key.startswith("emails[") and key.endswith("].value"):
            return replace(fields, email=_email([{"value": value, "primary": True}] if value else None))
        return fields  # an attribute Veil does not keep (see the module docstring)


class GroupAdapter(SCIMGroup):
    """A directory group as a SCIM Group (RFC 7643 4.2): name and members live on Django's Group."""

    id_field = "scim_id"

    def __init__(self, obj: DirectoryGroup, request: HttpRequest | None = None) -> None:
        super().__init__(obj, request)
        self.obj: DirectoryGroup = obj
        self._whole: dict[str, Any] | None = None

    @property
    def display_name(self) -> str:
        return self.obj.group.name if self.obj.pk else ""

    @property
    def members(self) -> list[dict[str, Any]]:
        people: QuerySet[User] = self.obj.group.user_set.all() if self.obj.pk else User.objects.none()
        return [{"value": str(u.scim_id), "display": u.username} for u in people]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = super().to_dict()
        d["externalId"] = self.obj.scim_external_id or None
        return d

    def validate_dict(self, d: dict[str, Any]) -> None:
        if not isinstance(d, dict):
            raise exceptions.BadRequestError(
                "the body must be a SCIM Group object", scim_type="invalidSyntax"
            )

    def from_dict(self, d: dict[str, Any]) -> None:
        self._whole = {
            "name": _text(d.get("displayName"), "displayName"),
            "external_id": _text(d.get("externalId"), "externalId"),
            "members": _member_ids(d.get("members")),
        }

    def save(self) -> None:
        assert self._whole is not None
        account = _account(self.request)
        try:
            if self.obj.pk is None:
                self.obj = group_create(**self._whole, account=account)
            else:
                self.obj = group_update(directory=self.obj, **self._whole, account=account)
        except DirectoryError as error:
            _raise(error)

    def delete(self) -> None:
        group_unlink(directory=self.obj, account=_account(self.request))

    def handle_operations(self, operations: Any) -> None:
        """Okta: add members, remove `members[value eq "id"]`, replace {displayName}; Entra ID:
        Add/Remove members with a value list, Replace displayName."""
        changes: dict[str, Any] = {"add": [], "remove": []}
        for op, path, value in _operations(operations):
            key = path.lower()
            if key.startswith(GROUP_URN):
                key = key[len(GROUP_URN) :]
            single = MEMBER_FILTER.match(path)
            if single and op == "remove":
                changes["remove"].append(single.group(1))
            elif key == "members" and op == "remove" and value is None:
                changes["members"] = []
            elif key == "members" and op == "replace":
                changes["members"] = _member_ids(value)
            elif key == "members":
                changes[op].extend(_member_ids(value))
            elif key == "displayname" and op != "remove":
                changes["name"] = _text(value, "displayName")
            elif key == "externalid":
                changes["external_id"] = _text(value, "externalId")
            elif key in ("id", "schemas", "meta"):
                continue  # Okta repeats the id in a rename's value
            else:
                raise exceptions.BadRequestError(f"cannot {op} {path!r} of a group", scim_type="invalidPath")
        try:
            self.obj = group_update(directory=self.obj, account=_account(self.request), **changes)
        except DirectoryError as error:
            _raise(error)


def _member_ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, dict) and m.get("value") for m in value):
        raise exceptions.BadRequestError(
            "members must be a list of objects with a value (a user id)", scim_type="invalidValue"
        )
    return [str(m["value"]) for m in value]
