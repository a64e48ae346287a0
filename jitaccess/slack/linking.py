"""Who a Slack account is in Veil, and which Slack account to DM a Veil user at.

A Slack click proves a Slack identity only. It is attributed to a Veil user through a
`SlackUserLink`: made by an administrator, or by users.lookupByEmail on the user's IdP-verified
email (Slack confirms its members' emails). Lookups are cached, misses briefly, so a burst of
clicks or DMs does not run into Slack's rate limits.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.cache import cache
from slack_sdk.errors import SlackApiError

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import User
from jitaccess.models import AccessRequest, SlackLinkMethod
from jitaccess.selectors.approvers import eligible_approvers
from jitaccess.slack.client import slack_client, slack_error
from jitaccess.slack.selectors import linked_slack_id, linked_user
from jitaccess.slack.services import slack_user_link

logger = logging.getLogger(__name__)
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
    under this ID, who is then linked to it, else whoever the clicker's Slack profile email names
    (`_clicker_by_profile`), so that someone who may not act is told that, not that Veil does not
    know them. A person who already has a link to another Slack account is linked to this one too:
    Slack vouches for the email now. None: unknown, nothing may change. Calls Slack: lazy
    listeners only."""
    user = linked_user(slack_user_id)
    if user is not None:
        return user
    for candidate in candidates:
        if slack_id_of_verified_email(candidate) == slack_user_id:
            return candidate if _link_by_email(candidate) else None
    return _clicker_by_profile(slack_user_id)


def _clicker_by_profile(slack_user_id: str) -> User | None:
    """The one active Veil user whose verified email is the clicker's Slack profile email, linked
    the way every email link is made: only if users.lookupByEmail on that email leads back to
    this Slack account."""
    email = _profile_email(slack_user_id)
    if not email:
        return None
    matches = list(User.objects.filter(email__iexact=email, email_verified=True, is_active=True)[:2])
    if len(matches) != 1 or slack_id_of_verified_email(matches[0]) != slack_user_id:
        return None
    return matches[0] if _link_by_email(matches[0]) else None


def _profile_email(slack_user_id: str) -> str:
    """The email of a Slack member's profile (users.info), cached like lookups; "" if none, or if
    Slack cannot say now: this only words a refusal better, so it never fails the click's answer."""
    key = _cache_key("profile", slack_user_id)
    cached = cache.get(key)
    if cached is not None:
        return str(cached)
    try:
        member = slack_client().users_info(user=slack_user_id)["user"]
    except SlackApiError as exc:
        if slack_error(exc) not in ("user_not_found", "users_not_found"):
            logger.warning("users.info on %s failed: %s", slack_user_id, exc)
            return ""
        member = {}
    except Exception as exc:
        logger.warning("users.info on %s failed: %s", slack_user_id, exc)
        return ""
    email = (member.get("profile") or {}).get("email") if _is_person(member) else ""
    return _remember(key, str(email or ""))


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
    key = _cache_key("lookup", email.lower())
    cached = cache.get(key)
    if cached is not None:
        return str(cached)
    try:
        member = slack_client().users_lookupByEmail(email=email)["user"]
    except SlackApiError as exc:
        if slack_error(exc) != "users_not_found":
            raise
        return _remember(key, "")
    return _remember(key, str(member["id"]) if _is_person(member) else "")


def _cache_key(kind: str, value: str) -> str:
    """Where a Slack lookup's answer is cached: per bot token (so per workspace), the value hashed."""
    return f"slack:{kind}:{hashlib.sha256(f'{settings.SLACK_BOT_TOKEN}|{value}'.encode()).hexdigest()}"


def _remember(key: str, found: str) -> str:
    """Cache a lookup's answer, an empty one ("not there") for less time, and return it."""
    cache.set(key, found, FOUND_TTL_S if found else MISSING_TTL_S)
    return found


def _is_person(member: dict[str, Any]) -> bool:
    return not (member.get("deleted") or member.get("is_bot"))
