from __future__ import annotations

import pytest

from masking.selectors import decision_caches
from tests.factories import make_shop_policy, make_user


@pytest.fixture
def world(db, shop):
    """prod-pg/shop/public.customers (id, email level 3, phone level 3) and an email rule."""
    make_shop_policy()
    decision_caches.clear()
    return make_user("alice", email="alice@example.com")
