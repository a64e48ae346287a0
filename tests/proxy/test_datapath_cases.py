"""Every masking and guard case of the data path, through veil-proxy: the tables of
tests/datapath/test_guard.py (REFUSED, ALLOWED) and tests/datapath/test_lineage.py (CASES), sent by
psql (the simple protocol) and psycopg (the extended protocol) to a real proxy in front of the
demo company's shop, with the live Veil deciding and checking bob's personal token.

Values are compared as the text the server sends (psycopg's raw result, psql's output) against
the same query run straight against the source database: a masked value is text whatever the
column's type, so a typed client would fail to decode it, which is the point.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.datapath.conftest import LiveVeil, db, live_veil, scratch_db, shop_db  # noqa: F401 - fixtures
from tests.datapath.shop_source import dsn
from tests.datapath.test_guard import ALLOWED, REFUSED
from tests.datapath.test_lineage import CASES, CLEAR, MASKED
from tests.proxy.conftest import FakeClock, RunningProxy, personal_token, text_rows

pytestmark = [db, pytest.mark.timeout(300)]

Rows = list[tuple[str | None, ...]]


@dataclass
class Shop:
    """veil-proxy in front of a shop source database, as the demo's people log in to it."""

    proxy: RunningProxy
    dbname: str
    tokens: dict[str, str]

    def token(self, person: str) -> str:
        if person not in self.tokens:
            self.tokens[person] = personal_token(person)
        return self.tokens[person]

    def dsn(self, person: str = "bob") -> str:
        return self.proxy.dsn(user=person, password=self.token(person), dbname=self.dbname)


@pytest.fixture
def shop_proxy(
    live_veil: LiveVeil,  # noqa: F811
    veil_proxy: Callable[..., RunningProxy],
) -> Callable[..., Shop]:
    """Start veil-proxy in front of a shop source database, Veil's demo catalog renamed to name it
    (bob holds no grant in the shop; the demo's own grants were approved for `shop` and do not
    apply to the renamed database). ``veil`` options go to the proxy's configuration
    (``guard_mode``), ``client`` options to its Veil client (a test's clock)."""
    from masking.models import Database
    from masking.selectors import decision_caches

    def start(dbname: str, *, client: dict[str, Any] | None = None, **veil: Any) -> Shop:
        Database.objects.filter(instance__key="prod-pg", name="shop").update(name=dbname)
        decision_caches.clear()
        proxy = veil_proxy(live_veil.url, live_veil.token, dbname, client=client, veil=veil)
        return Shop(proxy, dbname, {})

    return start


@pytest.fixture
def bob(shop_proxy: Callable[..., Shop], shop_db: str) -> Shop:  # noqa: F811
    return shop_proxy(shop_db)


def direct(shop_db: str, query: str) -> Rows:  # noqa: F811
    with psycopg.connect(dsn(shop_db), autocommit=True) as conn:
        return text_rows(conn, query)


def psql(shop: Shop, query: str, person: str = "bob") -> subprocess.CompletedProcess[str]:
    """psql through the proxy as ``person``: unaligned rows, fields split by \\x1f; errors with
    their SQLSTATE (VERBOSITY verbose)."""
    env = {**os.environ, "PGPASSWORD": shop.token(person), "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(
        [
            *("psql", "-X", "-h", "127.0.0.1", "-p", str(shop.proxy.port), "-U", person, "-d", shop.dbname),
            *("-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-A", "-t", "-F", "\x1f", "-c", query),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def nothing_ran(shop_db: str) -> bool:  # noqa: F811
    """The refused writes would have made a table, added notes or a customer."""
    counts = (
        "SELECT to_regclass('stolen') IS NULL, (SELECT count(*) FROM support_notes), count(*) FROM customers"
    )
    return direct(shop_db, counts) == [("t", "12", "12")]


def test_every_refused_case_answers_42501_through_psycopg_and_nothing_runs(
    bob: Shop,
    live_veil: LiveVeil,  # noqa: F811
    shop_db: str,  # noqa: F811
) -> None:
    wrong = []
    with psycopg.connect(bob.dsn(), autocommit=True) as conn:
        for why, query, column in REFUSED:
            try:
                conn.execute(query)
            except psycopg.Error as error:
                if error.sqlstate != "42501" or column not in str(error):
                    wrong.append(f"wrong refusal for {why}: {error.sqlstate} {error}")
                elif live_veil.url + "/requests/new/" not in str(error) and "cannot check" not in str(error):
                    wrong.append(f"no link to ask for access for {why}: {error}")
            else:
                wrong.append(f"ran: {why}: {query}")
    assert not wrong, "\n".join(wrong)
    assert nothing_ran(shop_db)


def test_every_refused_case_answers_42501_through_psql(
    bob: Shop,
    shop_db: str,  # noqa: F811
) -> None:
    wrong = []
    for why, query, column in REFUSED:
        result = psql(bob, query)
        if result.returncode == 0:
            wrong.append(f"ran: {why}: {query}")
        elif not result.stderr.startswith("ERROR:  42501: ") or column not in result.stderr:
            wrong.append(f"wrong refusal for {why}: {result.stderr}")
    assert not wrong, "\n".join(wrong)
    assert nothing_ran(shop_db)


def test_every_allowed_case_runs_through_psycopg_and_psql(
    bob: Shop,
    shop_db: str,  # noqa: F811
) -> None:
    wrong = []
    with psycopg.connect(bob.dsn(), autocommit=True) as conn:
        for why, query in ALLOWED:
            try:
                conn.execute(query)
            except psycopg.Error as error:
                wrong.append(f"psycopg: refused: {why}: {error}")
            result = psql(bob, query)
            if result.returncode != 0:
                wrong.append(f"psql: refused: {why}: {result.stderr}")
    assert not wrong, "\n".join(wrong)


def masked_as(rows: Rows, raw: Rows, expected: list[str], query: str) -> str | None:
    """What is wrong with ``rows`` against the direct ``raw`` rows, or None."""
    if len(rows) != len(raw) or not raw:
        return f"{len(rows)} rows, {len(raw)} directly"
    if "UNION" in query:  # the server's row order; no value may pass as is
        leaked = {value for (value,) in rows} & {value for (value,) in raw}
        return f"values passed as is: {sorted(leaked, key=str)[:3]}" if leaked else None
    for got, original in zip(rows, raw, strict=True):
        for position, (value, before, want) in enumerate(zip(got, original, expected, strict=True)):
            if want == CLEAR and value != before:
                return f"column {position} should pass as is: {value!r} != {before!r}"
            if want == MASKED and value == before:
                return f"column {position} should be masked: {value!r}"
    return None


def test_every_lineage_case_is_masked_as_its_source_is_through_psycopg_and_psql(
    bob: Shop,
    shop_db: str,  # noqa: F811
) -> None:
    wrong = []
    with psycopg.connect(bob.dsn(), autocommit=True) as conn:
        for why, query, expected in CASES:
            raw = direct(shop_db, query)
            if (problem := masked_as(text_rows(conn, query), raw, expected, query)) is not None:
                wrong.append(f"psycopg: {why}: {problem}")
            result = psql(bob, query)
            if result.returncode != 0:
                wrong.append(f"psql: {why}: {result.stderr}")
                continue
            # psql prints NULL as an empty field; so does the direct side here.
            printed = [tuple(line.split("\x1f")) for line in result.stdout.splitlines() if line]
            as_printed = [tuple("" if v is None else v for v in row) for row in raw]
            if (problem := masked_as(printed, as_printed, expected, query)) is not None:
                wrong.append(f"psql: {why}: {problem}")
    assert not wrong, "\n".join(wrong)


def test_server_errors_that_may_quote_a_masked_value_are_withheld(
    shop_proxy: Callable[..., Shop],
    live_veil: LiveVeil,  # noqa: F811
    scratch_db: str,  # noqa: F811
) -> None:
    """A failed cast names the value it failed on, a duplicate key the existing one: while email
    is masked for bob the proxy keeps the SQLSTATE and withholds the message; once a grant lets
    him see it, he gets the server's own. Audit mode lets the probes run."""
    from audit.models import Channel
    from jitaccess.selectors.scopes import Scope
    from jitaccess.services.requests import request_approve, request_create
    from masking.models import Database

    with psycopg.connect(dsn(scratch_db), autocommit=True) as owner:
        owner.execute("CREATE UNIQUE INDEX ON customers (email)")
    clock = FakeClock()
    shop = shop_proxy(scratch_db, guard_mode="audit", client={"clock": clock})
    cast = "SELECT email::int FROM customers"
    duplicate = "UPDATE customers SET email = 'customer1@example.net' WHERE id = 2"

    with psycopg.connect(shop.dsn("bob"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as failed_cast:
            conn.execute(cast)
        with pytest.raises(psycopg.errors.UniqueViolation) as failed_write:
            conn.execute(duplicate)
        with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
            conn.execute("SELECT 1 / 0")  # reads no masked column: the server's message
        by_psql = psql(shop, cast)

        for error in (failed_cast.value, failed_write.value):
            assert "withheld" in str(error) and "customer" not in str(error)
            assert error.diag.message_detail is None
        assert by_psql.stderr.startswith("ERROR:  22P02: Veil withheld"), by_psql.stderr
        assert "customer" not in by_psql.stderr

        people = live_veil.people
        request = request_create(
            requester=people["bob"],
            scope=Scope(Database.objects.get(name=scratch_db), "public", "customers", ("email",)),
            duration=timedelta(hours=1),
            reason="INC-2 duplicate customers",
            channel=Channel.WEB,
        )
        request_approve(request_id=request.pk, approver=people["erin"], channel=Channel.WEB)
        clock.now += 1  # the data path re-asks a mask answer after 1 s

        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="customer"):
            conn.execute(cast)  # it reads only email, now in clear for bob: the server's own text
        # A failed write may quote the whole row ("Failing row contains ..."), and customers has
        # columns still masked for bob (phone, birth date): the write's message stays withheld.
        with pytest.raises(psycopg.errors.UniqueViolation) as seen:
            conn.execute(duplicate)
    assert "withheld" in str(seen.value) and seen.value.diag.message_detail is None
