"""The documented recipes run real ORM queries through the adapter: Django's ORM on a database
alias whose ENGINE is veil_sdk.contrib.django, and SQLAlchemy with veil_engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.datapath.conftest import db, raw_rows

pytestmark = db


def run_django_program(live_veil, shop_db, person):
    """The recipe's program in its own process (its own settings, its own Django), asking the
    live Veil of this test."""
    env = {
        **os.environ,
        "RECIPE_SHOP_DB": shop_db,
        "RECIPE_VEIL_URL": live_veil.url,
        "RECIPE_VEIL_TOKEN": live_veil.token,
        "DJANGO_SETTINGS_MODULE": "tests.datapath.django_recipe.settings",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.datapath.django_recipe.program", person],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_django_orm_query_is_masked_for_the_person_acting(live_veil, shop_db):
    raw = raw_rows(shop_db, "SELECT id, email FROM customers ORDER BY id")
    bob = run_django_program(live_veil, shop_db, "bob@example.com")
    assert [r[0] for r in bob["rows"]] == [r[0] for r in raw]
    assert all(got[1] != before[1] for got, before in zip(bob["rows"], raw, strict=True))
    assert bob["streamed"] == [r[1] for r in bob["rows"]], "iterator() reads a server-side cursor, masked too"
    assert bob["filtered"] == "42501", "a filter on a masked column is refused"
    assert bob["nobody"] == "42501", "with nobody acting, a query reading catalog columns is refused"
    alice = run_django_program(live_veil, shop_db, "alice@example.com")
    assert [tuple(r) for r in alice["rows"]] == raw
    assert alice["filtered"] == [r[0] for r in raw if r[1].startswith("c")]


def test_a_sqlalchemy_query_is_masked_for_the_person_acting(live_veil, shop_db):
    from sqlalchemy import column, select, table
    from veil_sdk import user
    from veil_sdk.contrib.sqlalchemy import veil_engine
    from veil_sdk.psycopg import acting_as

    from tests.datapath.shop_source import dsn

    engine = veil_engine(dsn(shop_db), client=live_veil.client(), instance="prod-pg", database="shop")
    customers = table("customers", column("id"), column("email"))
    raw = raw_rows(shop_db, "SELECT id, email FROM customers ORDER BY id")
    try:
        with acting_as(user("bob@example.com")), engine.connect() as conn:
            rows = conn.execute(select(customers.c.id, customers.c.email).order_by(customers.c.id)).all()
            assert [r[0] for r in rows] == [r[0] for r in raw]
            assert all(got[1] != before[1] for got, before in zip(rows, raw, strict=True))
        with acting_as(user("alice@example.com")), engine.connect() as conn:
            rows = conn.execute(select(customers.c.id, customers.c.email).order_by(customers.c.id)).all()
            assert [tuple(r) for r in rows] == raw
    finally:
        engine.dispose()
