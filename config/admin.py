"""Django's admin site, with Veil's own sign-in in front of it.

Django's admin answers anyone who is not staff with its own password form, which offers no
company sign-in and tells a signed-in engineer only that they are "not authorized". Here a
visitor who is not signed in goes to Veil's login page (OpenID Connect included) and comes back,
and a signed-in person who is not staff gets Veil's 403 page saying why.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


class VeilAdminSite(admin.AdminSite):
    site_header = "Veil administration"
    site_title = "Veil admin"
    index_title = "Records"

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
