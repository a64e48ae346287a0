"""Finding 3: nothing changes on the admin site without the audit log saying so.

Walks every page registered on the admin site and, as a superuser and as staff holding the
model's permissions, tries to add, change and delete (one by one and with the bulk action), and,
on django-guardian pages, to change a user's and a group's object permissions. Each attempt must
be refused (403, or the bulk action not offered) or write an audit event in that request. A page
someone registers later is walked too: if the walk cannot exercise it, it fails and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Max, Model
from django.urls import reverse
from guardian.admin import GuardedModelAdminMixin

from audit.models import AuditEvent, Channel
from audit.services import SYSTEM
from identity.models import Role, User
from jitaccess.models import SlackLinkMethod
from jitaccess.slack.services import slack_route_set, slack_user_link
from masking.models import Project, SemanticType
from masking.services.policy import rule_save, semantic_type_save
from masking.services.roles import role_save
from tests.factories import make_token, make_user
from tests.security.admin_forms import PostData, form_fields, one_field_changed, post_data

pytestmark = pytest.mark.django_db

PAGES = sorted(admin.site._registry, key=lambda model: model._meta.label)
PASSWORD = "Xy7-correct-horse"
MISSING = 987654  # a key no row has


@pytest.fixture
def world(demo):
    """The demo company, with the rows it leaves out: a token, a Slack link and route."""
    make_token(["decisions"], "walk-agent")
    slack_user_link(
        slack_user_id="UWALK0",
        user=demo["alice"],
        method=SlackLinkMethod.ADMIN,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    slack_route_set(
        project=Project.objects.get(key="shop"),
        slack_channel="#shop-approvals",
        dm_approvers=False,
        escalation_channel="",
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    return demo


# What a new object looks like on the pages that offer adding. A page that offers adding and is
# missing here fails the walk: add it, and the walk checks that the add is audited.
ADD_EXAMPLES: dict[str, Callable[[], PostData]] = {
    "auth.Group": lambda: {"name": ["walk-group"], "permissions": []},
    "identity.User": lambda: {
        "username": ["walk-person"],
        "password1": [PASSWORD],
        "password2": [PASSWORD],
        "usable_password": ["true"],
    },
    "identity.Role": lambda: {"name": ["walk-role"], "description": ["walk"]},
    "masking.Project": lambda: {"key": ["walk-project"], "title": ["Walk"], "description": [""]},
    "masking.SemanticType": lambda: {
        "key": ["walk-type"],
        "title": ["Walk"],
        "description": [""],
        "algorithm": ['{"type": "email"}'],
    },
    "masking.MaskingRule": lambda: {
        "title": ["Walk rule"],
        "condition": ['resource.column_name == "walk"'],
        "semantic_type": [str(SemanticType.objects.first().pk)],  # type: ignore[union-attr]
        "position": ["50"],
        "enabled": ["on"],
    },
    "masking.Exemption": lambda: {
        "project": [str(Project.objects.get(key="analytics").pk)],
        "condition": ['resource.column_name == "walk"'],
        "reason": ["Walk exemption"],
        "roles": [str(Role.objects.get(name="support-agents").pk)],
        "expires_at_0": [""],
        "expires_at_1": [""],
    },
    "jitaccess.ProjectAccessSettings": lambda: {
        "project": [str(Project.objects.get(key="analytics").pk)],
        "max_duration": ["04:00:00"],
        "pending_timeout": ["1 00:00:00"],
        "breakglass_max_duration": ["01:00:00"],
        "security_emails": [""],
    },
    # A public address literal: nothing resolves names here, and no event is sent while walking.
    "audit.AuditStream": lambda: {
        "name": ["walk-siem"],
        "url": ["https://93.184.215.14/veil-events"],
        "format": ["veil"],
        "action": [""],
        "project": [""],
        "auth_header": [""],
        "secret_input": ["whsec_" + "A" * 43 + "="],
        "auth_value_input": [""],
    },
    "jitaccess.SlackRoute": lambda: {
        "project": [str(Project.objects.get(key="analytics").pk)],
        "channel": ["#attacker"],
        "escalation_channel": [""],
    },
}

# Fresh objects for the delete attempts, so a delete that is allowed deletes something nothing
# else needs. Pages that refuse deletes are tried on any row.
_spares = iter(range(1, 1000))
SPARES: dict[str, Callable[[], Model]] = {
    "identity.Role": lambda: role_save(name=f"spare-{next(_spares)}", actor=SYSTEM, channel=Channel.CLI),
    "masking.SemanticType": lambda: semantic_type_save(
        key=f"spare-{next(_spares)}",
        title="Spare",
        algorithm={"type": "email"},
        actor=SYSTEM,
        channel=Channel.CLI,
    ),
    "masking.MaskingRule": lambda: rule_save(
        title=f"Spare {next(_spares)}",
        condition='resource.column_name == "spare"',
        semantic_type=SemanticType.objects.first(),  # type: ignore[arg-type]
        actor=SYSTEM,
        channel=Channel.CLI,
    ),
    "jitaccess.SlackUserLink": lambda: slack_user_link(  # type: ignore[return-value]
        slack_user_id=f"USPARE{next(_spares)}",
        user=User.objects.get(username="bob"),
        method=SlackLinkMethod.ADMIN,
        actor=SYSTEM,
        channel=Channel.CLI,
    ),
}


def last_seq() -> int:
    return AuditEvent.objects.aggregate(seq=Max("seq"))["seq"] or 0


def person(kind: str, model: type[Model]) -> User:
    if kind == "superuser":
        return User.objects.get(username="admin")
    staff = make_user(f"staff-{model._meta.model_name}", is_staff=True, email_verified=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type=ContentType.objects.get_for_model(model))
    )
    return staff


def a_row(model: type[Model]) -> Any:
    """A row to change or delete; a key no row has when the table is empty (a page that offers
    nothing answers 403 before it looks the key up)."""
    row = model._default_manager.order_by("pk").last()
    return row.pk if row is not None else MISSING


class Walk:
    def __init__(self, client: Any, model: type[Model]) -> None:
        self.client, self.model, self.opts = client, model, model._meta

    def url(self, view: str, *args: Any) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", args=args)

    def attempt(self, what: str, url: str, data: PostData) -> str:
        """'refused' or 'audited'; anything else fails the walk with what happened."""
        before = last_seq()
        response = self.client.post(url, data)
        if response.status_code == 403:
            return "refused"
        assert response.status_code in (200, 302), f"{self.opts.label} {what}: {response.status_code}"
        if response.status_code == 302:
            assert last_seq() > before, f"{self.opts.label} {what}: saved without an audit event"
            return "audited"
        return "invalid"  # the form said no; nothing was written

    def add(self) -> str:
        example = ADD_EXAMPLES.get(self.opts.label)
        outcome = self.attempt("add", self.url("add"), example() if example else {})
        assert outcome != "invalid", f"{self.opts.label}: the page offers adding; add it to ADD_EXAMPLES"
        return outcome

    def change(self) -> str:
        url = self.url("change", a_row(self.model))
        page = self.client.get(url)
        if page.status_code == 403:
            return self.attempt("change", url, {})
        fields = form_fields(page.content.decode(), f"{self.opts.model_name}_form")
        tried = []
        for name, data in one_field_changed(fields):
            outcome = self.attempt(f"change of {name}", url, data)
            if outcome != "invalid":
                return outcome
            tried.append(name)
        outcome = self.attempt("change", url, post_data(fields))
        assert outcome != "invalid", f"{self.opts.label}: no change could be saved (tried {tried})"
        return outcome

    def delete(self) -> str:
        spare = SPARES.get(self.opts.label)
        pk = spare().pk if spare else a_row(self.model)
        outcome = self.attempt("delete", self.url("delete", pk), {"post": ["yes"]})
        assert outcome != "invalid", f"{self.opts.label}: the delete was not carried out; add it to SPARES"
        return outcome

    def bulk_delete(self) -> str:
        spare = SPARES.get(self.opts.label)
        pk = spare().pk if spare else a_row(self.model)
        before = last_seq()
        response = self.client.post(
            self.url("changelist"), {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}
        )
        if response.status_code == 403:
            return "refused"
        if last_seq() > before:
            return "audited"
        gone = pk != MISSING and not self.model._default_manager.filter(pk=pk).exists()
        assert not gone, f"{self.opts.label} bulk delete: deleted without an audit event"
        return "refused"  # the action is not offered: the list answers that no action was chosen

    def object_permissions(self, holder: str) -> str:
        project = a_row(self.model)
        if holder == "user":
            url = self.url("permissions_manage_user", project, User.objects.get(username="bob").pk)
        else:
            url = self.url("permissions_manage_group", project, Group.objects.get(name="support").pk)
        data = {"permissions": ["request_unmask", "approve_request", "administer_policy"]}
        outcome = self.attempt(f"{holder} object permissions", url, data)
        assert outcome != "invalid", f"{self.opts.label}: the object permissions form refused the data"
        return outcome


@pytest.mark.parametrize("kind", ["superuser", "staff"])
@pytest.mark.parametrize("model", PAGES, ids=[m._meta.label for m in PAGES])
def test_every_admin_edit_is_audited_or_refused(client, world, model, kind):
    client.force_login(person(kind, model))
    walk = Walk(client, model)

    outcomes = {
        "add": walk.add(),
        "change": walk.change(),
        "delete": walk.delete(),
        "bulk delete": walk.bulk_delete(),
    }
    if isinstance(admin.site._registry[model], GuardedModelAdminMixin):
        outcomes["user permissions"] = walk.object_permissions("user")
        outcomes["group permissions"] = walk.object_permissions("group")

    assert set(outcomes.values()) <= {"refused", "audited"}, outcomes
