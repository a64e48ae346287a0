"""The access review settings form and the answer form. They check what was typed; the services
check the rest and name the field at fault (`ReviewError`)."""

from __future__ import annotations

from typing import Any

from django import forms

from jitaccess.reviews.models import AccessReviewSettings, OnDeadline
from jitaccess.reviews.services import KEEP, NOTE_LIMIT, REMOVE


class _PlainForm(forms.Form):
    """Labels without Django's trailing colon, like the rest of Veil's pages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class ReviewSettingsForm(_PlainForm):
    enabled = forms.BooleanField(required=False, label="Review this project's unmask access on a schedule")
    every_days = forms.IntegerField(
        min_value=2, max_value=3660, label="Days between reviews", help_text="91 is quarterly."
    )
    answer_days = forms.IntegerField(min_value=1, max_value=365, label="Days reviewers have to answer")
    on_deadline = forms.ChoiceField(choices=OnDeadline.choices, label="What nobody answered by the deadline")
    unused_days = forms.IntegerField(
        min_value=0,
        max_value=3660,
        label="Propose removal after this many days without an unmask",
        help_text="0: never propose.",
    )
    next_campaign_at = forms.DateTimeField(
        required=False,
        label="Next review opens",
        help_text="Empty: at once when turned on (within a minute).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    @classmethod
    def for_settings(cls, settings: AccessReviewSettings) -> ReviewSettingsForm:
        return cls(
            initial={
                "enabled": settings.enabled,
                "every_days": settings.every_days,
                "answer_days": settings.answer_days,
                "on_deadline": settings.on_deadline,
                "unused_days": settings.unused_days,
                "next_campaign_at": settings.next_campaign_at,
            }
        )


class AnswerForm(_PlainForm):
    decision = forms.ChoiceField(choices=[(KEEP, "Keep"), (REMOVE, "Remove")])
    note = forms.CharField(required=False, max_length=NOTE_LIMIT, strip=True)
