"""Forms of the service-account pages: an account, and a token with the least scope it needs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from identity.models import Scope, ServiceAccount, User

MAX_TOKEN_DAYS = 3650


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

    def expires_at(self) -> Any:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None
