"""Sign-in (the company IdP when configured, local passwords on the embedded default), and the
service-account pages where administrators create and revoke the tokens data-access layers use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from audit.models import Channel
from identity import selectors, services
from identity.forms import ServiceAccountForm, TokenForm
from identity.models import ApiToken, ServiceAccount


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.LOCAL_LOGIN_ENABLED:
            return HttpResponseNotAllowed(["GET"], "Password sign-in is disabled; use single sign-on.")
        return super().post(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "oidc_enabled": settings.OIDC_ENABLED,
            "local_login_enabled": settings.LOCAL_LOGIN_ENABLED,
        }


def _require(request: HttpRequest, perm: str, what: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"{what} is for Veil's administrators; ask one if you need it.")


@login_required
@require_GET
def service_accounts(request: HttpRequest) -> HttpResponse:
    _require(request, "identity.view_serviceaccount", "The list of service accounts")
    user = request.user
    return render(
        request,
        "identity/service_accounts.html",
        {
            "accounts": selectors.service_accounts_with_tokens(),
            "now": timezone.now(),
            "may_add_account": user.has_perm("identity.add_serviceaccount"),
            "may_add_token": user.has_perm("identity.add_apitoken"),
            "may_revoke": user.has_perm("identity.change_apitoken"),
            "may_deactivate": user.has_perm("identity.change_serviceaccount"),
        },
    )


@login_required
def service_account_new(request: HttpRequest) -> HttpResponse:
    _require(request, "identity.add_serviceaccount", "Adding a service account")
    form = ServiceAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        account = services.service_account_create(
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            owner=form.cleaned_data["owner"],
            created_by=request.user,  # type: ignore[arg-type]
            channel=Channel.WEB,
        )
        messages.success(request, f"Service account {account.name} added. Create a token for it next.")
        return redirect("identity:token-new", account.pk)
    return render(request, "identity/service_account_new.html", {"form": form})


@login_required
@require_POST
def service_account_active(request: HttpRequest, pk: int) -> HttpResponse:
    """Deactivate or reactivate (the `active` field): reversible, so no confirmation page."""
    _require(request, "identity.change_serviceaccount", "Deactivating service accounts")
    account = get_object_or_404(ServiceAccount, pk=pk)
    active = request.POST.get("active")
    if active not in ("0", "1"):
        return HttpResponseBadRequest("active: must be 0 (deactivate) or 1 (reactivate)")
    account = services.service_account_set_active(
        account=account,
        active=active == "1",
        changed_by=request.user,  # type: ignore[arg-type]
        channel=Channel.WEB,
    )
    if account.is_active:
        messages.success(request, f"{account.name} is active again: its live tokens work again.")
    else:
        messages.success(request, f"{account.name} is deactivated: its tokens are refused and it is masked.")
    return redirect(f"{reverse('identity:service-accounts')}#sa-{account.pk}")


@login_required
@never_cache
def token_new(request: HttpRequest, pk: int) -> HttpResponse:
    """Create a token; the answer to the POST is the only page that ever shows its secret."""
    _require(request, "identity.add_apitoken", "Creating API tokens")
    account = get_object_or_404(ServiceAccount, pk=pk)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            token, plaintext = services.token_create(
                service_account=account,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                created_by=request.user,  # type: ignore[arg-type]
                channel=Channel.WEB,
                expires_at=form.expires_at(),
            )
        except services.TokenError as exc:
            form.add_error(None, str(exc))
        else:
            context = {"token": token, "plaintext": plaintext, "site_url": settings.SITE_URL}
            return render(request, "identity/token_created.html", context)
    return render(request, "identity/token_new.html", {"account": account, "form": form})


@login_required
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm first (GET), then revoke (POST): every request with the token is refused from then on."""
    _require(request, "identity.change_apitoken", "Revoking API tokens")
    # Service accounts' tokens: people revoke their own on the Database access page.
    token = get_object_or_404(ApiToken.objects.select_related("service_account"), pk=pk, user__isnull=True)
    account = token.service_account
    assert account is not None  # the check constraint: a token without a person has an account
    if request.method == "POST":
        services.token_revoke(token=token, revoked_by=request.user, channel=Channel.WEB)  # type: ignore[arg-type]
        messages.success(request, f"Token {token.name} ({token.prefix}) of {account} revoked.")
        return redirect(f"{reverse('identity:service-accounts')}#sa-{account.pk}")
    return render(request, "identity/token_revoke.html", {"token": token})
