"""The review flow every policy page ends in, and what the pages that feed it share: masking's
own (`views`, `item_views`) and other apps' policy pages (jitaccess's approval policies and
insights), which import this module, never `views` or `forms`.

Every edit, whichever page it starts on, ends here: `review` diffs the proposed document against
the live policy and shows it with a message box; `review_confirm` submits it through
`policy_submit` (applied as one version, or held for a second person). The proposed document
travels between the two signed, so the diff confirmed is the diff reviewed; if the policy moved in
between, the review is shown again with the new diff. An item's page (`item_form_page`, with a
`PolicyItemForm`) saves the item into the live document and sends that to review.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from audit.models import Channel
from identity.models import User
from identity.services import actor_for
from masking.policy.access import administers_any, may_administer, needs_second_person
from masking.policy.diff import plan_against_live
from masking.policy.document import DocumentError, dump_yaml, export_document, parse_document, sections
from masking.policy.edits import upsert_item
from masking.services.policy_changes import NotAllowed, StalePolicy, policy_submit
from masking.services.versions import current_version

REVIEW_SALT = "veil.policy.review"
REVIEW_MAX_AGE_S = 24 * 3600


def person(request: HttpRequest) -> User:
    return cast(User, request.user)


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "masking/forbidden.html", {"reason": reason}, status=403)


def policy_admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in and administering policy in at least one project (each change is checked again,
    for what it touches, when it is submitted)."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not administers_any(person(request)):
            return forbidden(request, "You do not administer masking policy in any project.")
        return view(request, *args, **kwargs)

    return wrapped


def can_edit_global(user: User) -> bool:
    return may_administer(user, (), is_global=True)


# --- Review and confirm ------------------------------------------------------------------------


def review(
    request: HttpRequest,
    document: dict[str, Any],
    *,
    heading: str,
    back: str,
    rollback_of: int | None = None,
    form: forms.Form | None = None,
    form_page: tuple[str, dict[str, Any]] | None = None,
    notice: str = "",
    message: str = "",
    source_file: bool = False,
) -> HttpResponse:
    """Show the diff of `document` against the live policy and ask for a message to confirm.

    An invalid document goes back to the form it came from, the error next to the field it is
    about (`rules[2].condition` -> `condition`), or, without a form, to `back` with a message.
    Errors are worded for the page (`explain_error`), except for a policy file the admin wrote
    (`source_file`), whose errors keep the document paths that point into it.
    """
    live = export_document()
    try:
        parsed = parse_document(document)
        plan = plan_against_live(parsed)
    except DocumentError as error:
        if source_file:
            messages.error(request, str(error))
            return redirect(back)
        explained = explain_error(error, document, live)
        if form is not None and form_page is not None:
            field = explained.field if explained.field in form.fields else None
            form.add_error(field, explained.message if field else explained.sentence)
            return render(request, form_page[0], {**form_page[1], "form": form})
        messages.error(request, explained.sentence)
        return redirect(back)
    payload = signing.dumps(
        {
            "document": parsed,
            "base": current_version(),
            "rollback_of": rollback_of,
            "back": back,
            "heading": heading,
            "source_file": source_file,
        },
        salt=REVIEW_SALT,
        compress=True,
    )
    review_form = ReviewForm(initial={"payload": payload, "message": message})
    if request.method == "POST" and message:
        review_form = ReviewForm({"payload": payload, "message": message})
    return render(
        request,
        "masking/review.html",
        {
            "heading": heading,
            "plan": plan,
            "back": back,
            "review_form": review_form,
            "notice": notice,
            "yaml_diff": yaml_diff(live, {**live, **parsed}),
            "held": plan.has_changes and needs_second_person(plan.projects, is_global=plan.is_global),
        },
    )


# How the pages name an item of each section, and the form field that names it.
ITEM_NAMES: dict[str, tuple[str, str]] = {
    "projects": ("project", "key"),
    "semantic_types": ("semantic type", "key"),
    "roles": ("role", "name"),
    "rules": ("rule", "title"),
    "exemptions": ("exemption", "reason"),
    "approval_policies": ("approval policy", "title"),
}
_ITEM_PATH = re.compile(r"(?P<section>\w+)\[(?P<index>\d+)\](?:\.(?P<field>\w+))?")


@dataclass(frozen=True)
class ExplainedError:
    """A refused document as an admin at a page reads it: no `rules[2].semantic_type` paths.

    `field` is the form field it belongs next to (None: the form as a whole); `message` reads
    well next to that field, `sentence` on its own (a banner after a delete or a move).
    """

    field: str | None
    message: str
    context: str = ""

    @property
    def sentence(self) -> str:
        return f"{self.context}: {self.message}" if self.context else self.message


def explain_error(
    error: DocumentError, document: Mapping[str, Any], live: Mapping[str, list[dict[str, Any]]]
) -> ExplainedError:
    """Word a `DocumentError` for the policy pages, which edit the live document one item at a time.

    The document paths in the shared messages (`duplicate 'Phones' (also rules[2])`, `rules[0].
    semantic_type: unknown semantic type 'email'`) point into a file; on a page there is no file,
    so the item is named instead. A name the live policy defines but the document no longer does
    was deleted or renamed by this change: the message names the item still using it. The YAML
    API and `manage.py policy` keep the shared messages; so does the policy-as-code page.
    """
    match = _ITEM_PATH.fullmatch(error.path)
    known = {s.name: s for s in sections()}
    if match is None or match["section"] not in known:
        title = error.path.replace("_", " ").capitalize()
        return ExplainedError(None, error.message, title if error.path in known else error.path)
    name, index, field = match["section"], int(match["index"]), match["field"]
    sec = known[name]
    noun, key_field = ITEM_NAMES.get(name, (name.replace("_", " "), ""))
    try:
        item = document[name][index]
        key = sec.key(item)
    except (KeyError, IndexError, TypeError):
        return ExplainedError(field, error.message, str(error.path))
    if error.reason == "duplicate":
        return ExplainedError(key_field or None, _duplicate(name, noun, key, item))
    ref = (
        next((r for r in sec.references(item) if r.field == field), None)
        if error.reason == "unknown"
        else None
    )
    if ref is not None:
        kind, missing = ref.kind.replace("_", " "), error.name
        if any(
            p.provides == ref.kind and missing in map(p.key, live.get(p.name, [])) for p in known.values()
        ):
            used_by = f"is used by {noun} {key!r}; delete or change that {noun} first."
            return ExplainedError(None, f"{kind.capitalize()} {missing!r} {used_by}")
        return ExplainedError(field, f"There is no {kind} {missing!r}.")
    context = f"{noun.capitalize()} {key!r}" + (f", {field}" if field else "")
    return ExplainedError(field, error.message, context)


def _duplicate(section: str, noun: str, key: str, item: Mapping[str, Any]) -> str:
    if section == "exemptions":
        return f"Project {item['project']!r} already has an exemption with this reason; make it specific."
    if section == "approval_policies":
        return f"Project {item['project']!r} already has an approval policy titled {item['title']!r}."
    if section == "rules":
        return f"A rule titled {key!r} already exists."
    if section == "semantic_types":
        return f"A semantic type with the key {key!r} already exists."
    return f"There is already a {noun} {key!r}."


class PolicyItemForm(forms.Form):
    """A form for one item of a policy section; the page saves it with `item_form_page`."""

    def item(self) -> dict[str, Any]:
        """The cleaned data as the section's document item (checked again at review)."""
        raise NotImplementedError


def set_choices(form: forms.Form, name: str, choices: list[tuple[str, str]]) -> None:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    field.choices = choices


class ReviewForm(forms.Form):
    message = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        help_text="Why this change: recorded on the version and in the audit log",
    )
    payload = forms.CharField(widget=forms.HiddenInput)


def item_form_page(
    request: HttpRequest,
    form: PolicyItemForm,
    page: tuple[str, dict[str, Any]],
    *,
    live: dict[str, Any],
    section: str,
    replacing: str | None,
    heading: Callable[[dict[str, Any]], str],
    back: str,
) -> HttpResponse:
    """The page of one item's form (`page`: template and context). A valid POST saves the item
    into the live document (in place of the item keyed `replacing`) and sends that to review,
    which brings a refused document back to this page with the error next to its field."""
    if request.method == "POST" and form.is_valid():
        item = form.item()
        return review(
            request,
            upsert_item(live, section, item, replacing=replacing),
            heading=heading(item),
            back=back,
            form=form,
            form_page=page,
        )
    return render(request, page[0], {**page[1], "form": form})


@policy_admin_required
@require_POST
def review_confirm(request: HttpRequest) -> HttpResponse:
    """Submit a reviewed change: applied as one version, or held for a second person."""
    form = ReviewForm(request.POST)
    try:
        payload = signing.loads(request.POST.get("payload", ""), salt=REVIEW_SALT, max_age=REVIEW_MAX_AGE_S)
    except signing.BadSignature:
        return HttpResponseBadRequest("This review expired or was altered; start the change again.")
    again = {
        "heading": payload["heading"],
        "back": payload["back"],
        "rollback_of": payload["rollback_of"],
        "source_file": payload.get("source_file", False),
    }
    if not form.is_valid():
        messages.error(request, "Say what the change is for.")
        return review(request, payload["document"], **again)
    user = person(request)
    try:
        submission = policy_submit(
            document=payload["document"],
            message=form.cleaned_data["message"],
            actor=actor_for(user),
            channel=Channel.WEB,
            author=user,
            base_version=payload["base"],
            rollback_of=payload["rollback_of"],
        )
    except StalePolicy as stale:
        if _already_live(payload["document"]):  # confirmed twice (back button, double click)
            messages.info(
                request, f"Nothing to apply: this change is already in policy version {current_version()}."
            )
            return redirect(payload["back"])
        notice = f"The policy changed while you reviewed ({stale}). Here is the diff against it now."
        return review(
            request, payload["document"], notice=notice, message=form.cleaned_data["message"], **again
        )
    except DocumentError as error:
        if again["source_file"]:
            messages.error(request, str(error))
        else:
            messages.error(request, explain_error(error, payload["document"], export_document()).sentence)
        return redirect(payload["back"])
    except NotAllowed as refusal:
        return forbidden(request, str(refusal))
    if submission.status == "pending" and submission.change is not None:
        messages.warning(
            request,
            f"Change #{submission.change.pk} waits for a second person's approval; "
            "it has no effect until then.",
        )
        return redirect("policy:change", pk=submission.change.pk)
    if submission.status == "applied" and submission.version is not None:
        messages.success(request, f"Saved as policy version {submission.version.number}.")
    else:
        messages.info(request, "Nothing changed.")
    return redirect(payload["back"])


def _already_live(document: dict[str, Any]) -> bool:
    try:
        return not plan_against_live(document).has_changes
    except DocumentError:
        return False


def yaml_diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A unified diff of the two documents as YAML, for readers who prefer the file view."""
    lines = difflib.unified_diff(
        dump_yaml(before).splitlines(), dump_yaml(after).splitlines(), "before", "after", lineterm="", n=2
    )
    return "\n".join(list(lines)[2:])
