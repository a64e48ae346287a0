"""The Database access page: every signed-in person creates, sees and revokes their own tokens for
veil-proxy, and gets ready psql and JDBC connection strings.

A token's secret appears once, in the answer to the POST that created it (never cached: the
answer is no-store), as on the service-account pages. A person only ever sees and revokes their
own tokens; anyone else's is a 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from audit.models import Channel
from identity import selectors, services
from identity.forms import PersonalTokenForm
from identity.models import ApiToken, PersonalScope, User
from identity.proxy_connection import ProxyConnection


@login_required
@never_cache
def database_access(request: HttpRequest) -> HttpResponse:
    """The person's tokens and how to connect (GET); create a token and show it once (POST)."""
    user: User = request.user  # type: ignore[assignment]
    login = selectors.decision_login(user)
    connection = ProxyConnection.for_login(login or user.username)
    form = PersonalTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            token, plaintext = services.personal_token_create(
                user=user,
                name=form.cleaned_data["name"],
                scopes=[PersonalScope.QUERY],
                created_by=user,
                channel=Channel.WEB,
                expires_at=form.expires_at(),
            )
        except services.TokenError as exc:
            form.add_error(None, str(exc))
        else:
            context = {
                "token": token,
                "plaintext": plaintext,
                "connection": connection,
                "pgpass_line": connection.pgpass_line(plaintext),
            }
            return render(request, "identity/database_access_token_created.html", context)
    context = {
        "form": form,
        "connection": connection,
        "tokens": selectors.personal_tokens_of(user),
        "ambiguous": login is None,
        "now": timezone.now(),
    }
    return render(request, "identity/database_access.html", context)


@login_required
def personal_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm first (GET), then revoke (POST). Only the person's own tokens: others' are a 404."""
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if request.method == "POST":
        services.token_revoke(token=token, revoked_by=request.user, channel=Channel.WEB)  # type: ignore[arg-type]
        messages.success(
            request, f"Token {token.name} ({token.prefix}) revoked: the proxy refuses it within a minute."
        )
        return redirect("database-access:index")
    return render(request, "identity/database_access_revoke.html", {"token": token})
