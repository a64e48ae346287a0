"""Django's admin site, with Veil's own sign-in in front of it.

Django's admin answers anyone who is not staff with its own password form, which offers no
company sign-in and tells a signed-in engineer only that they are "not authorized". Here a
visitor who is not signed in goes to Veil's login page (OpenID Connect included) and comes back,
and a signed-in person who is not staff gets Veil's 403 page saying why.

Nothing changes on the admin site unaudited: every model page is an `AuditedAdmin` (writes go
through audited services) or a `ReadOnlyAdmin` (audit/admin.py). Any other registration, such as
one a library makes for its own models, is made read-only when it is registered.

The admin site is one more way into the services, never around them. Every model page is an
`AuditedAdmin` (each add, change and delete is one call to an audited service, in the admin's
transaction) or a `ReadOnlyAdmin` (`audit/admin.py`); `VeilAdminSite.register` makes any other
registration (a library's own models, such as django-axes') read-only. What it allows:

- People: profile fields and `is_active` by anyone with `identity.change_user`; `is_staff`,
  `is_superuser`, groups, model permissions and passwords by superusers only, and a superuser's
  record by superusers only (`user_update`, `user_password_set`; privileges are logged as
  `user.privileges_changed`). Username, email, `email_verified` and the IdP subject come from the
  IdP and are read-only; people are deactivated, never deleted. IdP groups: superusers add them
  and change their permissions (`group_save`); not deleted here.
- Projects: added and renamed (the key is fixed); never deleted. Who may do what in a project
  (django-guardian's user-manage and group-manage pages) is changed by superusers only, through
  `object_permissions_set` (`permissions.changed`), and not while the project has the two-person
  rule on. Slack routes are saved through `slack_route_set`, read-only under the two-person rule;
  Slack links are only removed (`slack_user_unlink`).
- Policy (rules, semantic types, roles, exemptions) as on the policy pages, read-only under the
  two-person rule; the catalog read-only but for a column's level; requests, grants, approval
  policies, the outbox, Slack messages, tokens and the audit log read-only (tokens and failed
  notifications have their audited list actions).

`tests/security/test_admin_edits_audited.py` walks every registered page, as a superuser and as
staff with the model's permissions, and fails on any add, change or delete that is neither refused
nor in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models.base import ModelBase
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


class VeilAdminSite(admin.AdminSite):
    site_header = "Veil administration"
    site_title = "Veil admin"
    index_title = "Records"

    def register(
        self,
        model_or_iterable: ModelBase | Iterable[ModelBase],
        admin_class: type[admin.ModelAdmin] | None = None,
        **options: Any,
    ) -> None:
        """Register as Django does, but a page that is neither audited nor read-only is made
        read-only: an edit the audit log does not show is never offered."""
        from audit.admin import AuditedAdmin, ReadOnlyAdmin  # imported while this site is being built

        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditedAdmin | ReadOnlyAdmin):
            admin_class = type(admin_class.__name__, (ReadOnlyAdmin, admin_class), {})
        super().register(model_or_iterable, admin_class, **options)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        target = request.GET.get("next", "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = reverse("admin:index", current_app=self.name)
        if not request.user.is_authenticated:
            return redirect_to_login(target, resolve_url(settings.LOGIN_URL))
        if not self.has_permission(request):
            raise PermissionDenied(
                "The admin site is for Veil's staff (policy administrators). Your account is not staff."
            )
        return HttpResponseRedirect(target)
