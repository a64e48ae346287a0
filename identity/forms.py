"""Forms of the token pages: a service account, its tokens with the least scope they need, and a
person's own token for veil-proxy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from identity.models import Scope, ServiceAccount, User

MAX_TOKEN_DAYS = 3650


def expiry_in_days(days: int | None) -> datetime | None:
    """When a token given `days` to live expires; None (until revoked) without."""
    return timezone.now() + timedelta(days=days) if days else None


class ServiceAccountForm(forms.ModelForm):
    class Meta:
        model = ServiceAccount
        fields = ["name", "description", "owner"]
        help_texts = {
            "name": "What the data-access layer, job or agent is called: letters, digits, - and _. "
            "Exemptions and the audit log name it so.",
            "owner": "The person accountable for it; requests it makes are attributed to them too.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = self.fields["owner"]
        assert isinstance(owner, forms.ModelChoiceField)
        owner.queryset = User.objects.filter(is_active=True).order_by("username")


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="Where it is used, to tell tokens apart (for example prod-proxy-1)."
    )
    scopes = forms.MultipleChoiceField(
        choices=[(scope.value, f"{scope.label} ({scope.value})") for scope in Scope],
        widget=forms.CheckboxSelectMultiple,
        help_text="Give it only what it needs: a SQL proxy needs decisions and access-events.",
    )
    expires_in_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_TOKEN_DAYS,
        label="Expires in (days)",
        help_text="Leave empty for a token that lasts until it is revoked.",
    )

    def expires_at(self) -> datetime | None:
        return expiry_in_days(self.cleaned_data.get("expires_in_days"))


class PersonalTokenForm(forms.Form):
    """A person's own token for veil-proxy: it always has the scope `query`, and nothing more."""

    name = forms.CharField(
        max_length=100, help_text="Where you use it, to tell your tokens apart (for example psql or dbeaver)."
    )
    expires_in_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_TOKEN_DAYS,
        label="Expires in (days)",
        help_text="Leave empty for a token that lasts until you revoke it.",
    )

    def expires_at(self) -> datetime | None:
        return expiry_in_days(self.cleaned_data.get("expires_in_days"))
