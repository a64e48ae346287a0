"""Who a Slack account is in Veil, and which Slack account to DM a Veil user at.

A Slack click proves a Slack identity only. It is attributed to a Veil user through a
`SlackUserLink`: made by an administrator, or by users.lookupByEmail on the user's IdP-verified
email (Slack confirms its members' emails). Lookups are cached, misses briefly, so a burst of
clicks or DMs does not run into Slack's rate limits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.cache import cache
from slack_sdk.errors import SlackApiError

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import User
from jitaccess.models import AccessRequest, SlackLinkMethod
from jitaccess.services import eligible_approvers
from jitaccess.slack.client import slack_client, slack_error
from jitaccess.slack.selectors import linked_slack_id, linked_user
from jitaccess.slack.services import slack_user_link

FOUND_TTL_S = 24 * 3600
MISSING_TTL_S = 10 * 60
# What a clicker Veil cannot attribute is told, for request and policy-change buttons alike.
UNLINKED_EXPLANATION = (
    "Veil cannot tell which Veil account is yours: your Slack email must be the verified email "
    "of your Veil account (from the company sign-in), or an administrator links the two."
)


def slack_user_id_for(user: User) -> str:
    """The Slack user ID to DM `user` at, linking it on first use; "" when they have none.
    May call Slack: use from workers and lazy listeners, not inside the 3-second ack."""
    return linked_slack_id(user) or _link_by_email(user)


def clicker(slack_user_id: str, candidates: Iterable[User]) -> User | None:
    """The Veil user behind a click: a valid link, else the first of `candidates` (the people who
    may act on what was clicked; read only when there is no link) whose verified email Slack knows
    under this ID, who is then linked to it. A person who already has a link to another Slack
    account is linked to this one too: Slack vouches for the email now. None: unknown, nothing may
    change. Calls Slack: lazy listeners only."""
    user = linked_user(slack_user_id)
    if user is not None:
        return user
    for candidate in candidates:
        if slack_id_of_verified_email(candidate) == slack_user_id:
            return candidate if _link_by_email(candidate) else None
    return None


def people_on(request: AccessRequest) -> Iterator[User]:
    """Who may click on a request's message: its requester, then its eligible approvers."""
    yield request.requester
    yield from eligible_approvers(request)


def _link_by_email(user: User) -> str:
    slack_user_id = slack_id_of_verified_email(user)
    if not slack_user_id:
        return ""
    link = slack_user_link(
        slack_user_id=slack_user_id,
        user=user,
        method=SlackLinkMethod.EMAIL,
        email=user.email,
        actor=SYSTEM,
        channel=Channel.SLACK,
    )
    return slack_user_id if link is not None else ""


def slack_id_of_verified_email(user: User) -> str:
    if not (user.is_active and user.email and user.email_verified):
        return ""
    return _lookup_by_email(user.email)


def _lookup_by_email(email: str) -> str:
    digest = hashlib.sha256(f"{settings.SLACK_BOT_TOKEN}|{email.lower()}".encode()).hexdigest()
    key = f"slack:lookup:{digest}"
    cached = cache.get(key)
    if cached is not None:
        return str(cached)
    try:
        member = slack_client().users_lookupByEmail(email=email)["user"]
    except SlackApiError as exc:
        if slack_error(exc) != "users_not_found":
            raise
        cache.set(key, "", MISSING_TTL_S)
        return ""
    found = "" if member.get("deleted") or member.get("is_bot") else str(member["id"])
    cache.set(key, found, FOUND_TTL_S if found else MISSING_TTL_S)
    return found
