"""On-call tests: Veil's real HTTP client against fake PagerDuty and Opsgenie on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitaccess.oncall import OnCallProvider
from tests.jitaccess.conftest import World, world  # noqa: F401  (the personas)
from tests.oncall.fake_oncall import OPSGENIE_KEY, PAGERDUTY_TOKEN, FakeOpsgenie, FakePagerDuty

SCHEDULE = "PSCHED1"  # a PagerDuty schedule ID
OTHER_SCHEDULE = "PSCHED2"
OPSGENIE_SCHEDULE = "d875a1f4-9b4e-4219-a1f3-0c26936d18de"


@pytest.fixture
def fake_pagerduty():
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_opsgenie():
    fake = FakeOpsgenie().start()
    yield fake
    fake.stop()


@pytest.fixture
def providers(settings, fake_pagerduty, fake_opsgenie):
    """Both providers configured against their fakes, with a one-second timeout."""
    settings.PAGERDUTY_API_TOKEN, settings.PAGERDUTY_API_URL = PAGERDUTY_TOKEN, fake_pagerduty.url
    settings.OPSGENIE_API_KEY, settings.OPSGENIE_API_URL = OPSGENIE_KEY, fake_opsgenie.url
    settings.ONCALL_API_TIMEOUT_S = 1
    return fake_pagerduty, fake_opsgenie


@pytest.fixture
def oncall_world(world, providers) -> World:  # noqa: F811
    """The JIT world whose approval policy names a PagerDuty schedule and approves the responder
    on call at once for up to an hour. Everyone's IdP email is verified (that is how on-call
    people are matched)."""
    for person in (world.alice, world.bob, world.carol, world.dave, world.eve):
        person.email_verified = True
        person.save(update_fields=["email_verified"])
    world.policy.oncall_provider = OnCallProvider.PAGERDUTY
    world.policy.oncall_schedule_id = SCHEDULE
    world.policy.oncall_responder_auto_approve = True
    world.policy.oncall_responder_max_duration = timedelta(hours=1)
    world.policy.save()
    return world
