"""What every sender of the outbox shares (`delivery` for the web inbox and email, `slack.delivery`
for Slack): how long a claim on a row holds, and the two ways a send fails."""

from __future__ import annotations

from datetime import timedelta

CLAIM = timedelta(seconds=60)


class DeliveryFailed(Exception):
    """The channel refused or could not be reached; worth another try later."""


class NotSent(Exception):
    """Nothing was sent, and retrying would not change that (the recipient has no account on the
    channel, or the notice is no longer true). The row says so instead of claiming it was sent."""
