"""The inference guard: a query that uses a column masked for its principal anywhere but as a
plain result column is refused before it runs (SQLSTATE 42501), because its answer would reveal
the values (a LIKE probe, a sort order, group counts, a join to a copy, an error or a row count).

Bob has no grant in the shop: customers.email, phone, birth_date, payments.card_number and
orders.ip_address are masked for him; ids, totals, statuses and timestamps are not.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.datapath.conftest import db, raw_rows
from tests.datapath.shop_source import dsn

pytestmark = db

REFUSED = [
    # (why it must be refused, query, the column named in the refusal)
    (
        "LIKE probes a value letter by letter",
        "SELECT id FROM customers WHERE email LIKE 'c%'",
        "customers.email",
    ),
    (
        "equality confirms a guessed value",
        "SELECT id FROM payments WHERE card_number = '4111 1111 1111 1001'",
        "payments.card_number",
    ),
    (
        "sorting by a masked column ranks its values",
        "SELECT id FROM customers ORDER BY birth_date",
        "customers.birth_date",
    ),
    (
        "sorting by its position in the select list",
        "SELECT email FROM customers ORDER BY 1",
        "customers.email",
    ),
    (
        "group counts reconstruct the values",
        "SELECT count(*) FROM payments GROUP BY card_number",
        "payments.card_number",
    ),
    (
        "a join on a masked key to an unmasked copy",
        "SELECT c.id, n.body FROM customers c JOIN support_notes n ON n.body = c.email",
        "customers.email",
    ),
    (
        "a join USING a masked column",
        "SELECT id FROM customers JOIN customers c2 USING (email)",
        "customers.email",
    ),
    ("regexp_match on masked text", "SELECT regexp_match(email, '^c') FROM customers", "customers.email"),
    ("position() on masked text", "SELECT position('@' in email) FROM customers", "customers.email"),
    ("substring() in the select list", "SELECT substring(email, 1, 1) FROM customers", "customers.email"),
    ("length() in the select list", "SELECT length(phone) FROM customers", "customers.phone"),
    (
        "HAVING over a masked column",
        "SELECT status FROM payments GROUP BY status HAVING max(card_number) > '4'",
        "payments.card_number",
    ),
    ("DISTINCT ON a masked column", "SELECT DISTINCT ON (email) id FROM customers", "customers.email"),
    (
        "a window partitioned by a masked column",
        "SELECT id, count(*) OVER (PARTITION BY birth_date) FROM customers",
        "customers.birth_date",
    ),
    (
        "a window ordered by a masked column",
        "SELECT id, rank() OVER (ORDER BY email) FROM customers",
        "customers.email",
    ),
    (
        "a subquery filtering on a masked column",
        "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE email LIKE 'c%')",
        "customers.email",
    ),
    (
        "EXISTS with a masked predicate",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM customers WHERE phone = '+1-555-0101')",
        "customers.phone",
    ),
    (
        "CASE in the select list",
        "SELECT CASE WHEN email LIKE 'c%' THEN 1 END FROM customers",
        "customers.email",
    ),
    (
        "a CTE's filter",
        "WITH x AS (SELECT id FROM customers WHERE birth_date < '1990-01-01') SELECT * FROM x",
        "customers.birth_date",
    ),
    (
        "an aggregate's FILTER",
        "SELECT count(*) FILTER (WHERE email LIKE 'c%') FROM customers",
        "customers.email",
    ),
    (
        "UNION (distinct) with a guessed row counts matches",
        "SELECT email FROM customers UNION SELECT 'customer1@example.net'",
        "customers.email",
    ),
    (
        "INTERSECT confirms a guessed value",
        "SELECT email FROM customers INTERSECT SELECT 'customer1@example.net'",
        "customers.email",
    ),
    (
        "EXPLAIN ANALYZE reports the matching rows",
        "EXPLAIN ANALYZE SELECT id FROM customers WHERE email = 'x'",
        "customers.email",
    ),
    ("a whole row in an expression reads every column", "SELECT to_jsonb(c) FROM customers c", "customers."),
    (
        "UPDATE's row count answers its WHERE",
        "UPDATE payments SET status = status WHERE card_number LIKE '4%'",
        "payments.card_number",
    ),
    (
        "copying masked values into a table",
        "CREATE TABLE stolen AS SELECT email FROM customers",
        "customers.email",
    ),
    (
        "INSERT ... SELECT copies masked values",
        "INSERT INTO support_notes (body) SELECT email FROM customers",
        "customers.email",
    ),
    (
        "writing a guessed value into a masked column probes its constraints",
        "INSERT INTO customers (id, email) VALUES (99, 'customer1@example.net')",
        "customers.email",
    ),
    (
        "a lateral subquery's filter",
        "SELECT o.id FROM orders o, "
        "LATERAL (SELECT 1 FROM customers c WHERE c.email LIKE 'c%' AND c.id = o.id) l",
        "customers.email",
    ),
    (
        "a column resolved through a subquery alias",
        "SELECT s.id FROM (SELECT id, email AS e FROM customers) s WHERE s.e LIKE 'c%'",
        "customers.email",
    ),
]

ALLOWED = [
    # (why it may run, query)
    (
        "a masked column as a plain output, filtered on an unmasked one",
        "SELECT email FROM customers WHERE id = 1",
    ),
    (
        "a filter on unmasked columns",
        "SELECT id FROM customers WHERE created_at > now() - interval '10 years'",
    ),
    ("count(*) reads no column", "SELECT count(*) FROM customers"),
    ("grouping by an unmasked column", "SELECT status, count(*) FROM payments GROUP BY status"),
    (
        "a join on unmasked keys with a masked output",
        "SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id",
    ),
    ("DISTINCT over an unmasked column", "SELECT DISTINCT status FROM payments"),
    (
        "UNION ALL does not compare values",
        "SELECT email FROM customers UNION ALL SELECT email FROM customers",
    ),
    ("sorting by an unmasked column", "SELECT email, id FROM customers ORDER BY id DESC LIMIT 3"),
    (
        "a window over unmasked columns",
        "SELECT id, sum(total_cents) OVER (PARTITION BY customer_id) FROM orders",
    ),
    (
        "a CTE filtered on unmasked columns",
        "WITH recent AS (SELECT * FROM orders WHERE total_cents > 1000) "
        "SELECT id, shipping_address FROM recent",
    ),
    ("built-in functions over unmasked columns", "SELECT upper(status), length(status) FROM payments"),
    ("EXPLAIN without masked predicates", "EXPLAIN SELECT email FROM customers WHERE id = 1"),
    ("a transaction statement", "BEGIN; SELECT 1; COMMIT"),
    ("SET and SHOW", "SET application_name = 'veil-test'; SHOW application_name"),
]


def _refusal(conn, query):
    try:
        conn.execute(query)
    except psycopg.errors.InsufficientPrivilege as error:
        return error
    return None


def test_every_known_probe_is_refused_before_it_runs(connect_as, live_veil):
    conn = connect_as("bob")
    wrong = []
    for why, query, column in REFUSED:
        error = _refusal(conn, query)
        if error is None:
            wrong.append(f"ran: {why}: {query}")
        elif (
            error.sqlstate != "42501"
            or column not in str(error)
            or live_veil.url + "/requests/new/" not in str(error)
        ):
            wrong.append(f"wrong refusal for {why}: {error}")
    assert not wrong, "\n".join(wrong)
    # Nothing ran: the copy and the update would have changed the source database.
    assert raw_rows(conn.info.dbname, "SELECT to_regclass('stolen') IS NULL") == [(True,)]


def test_harmless_queries_run(connect_as):
    conn = connect_as("bob")
    wrong = []
    for why, query in ALLOWED:
        try:
            conn.execute(query)
        except psycopg.Error as error:
            wrong.append(f"refused: {why}: {error}")
    assert not wrong, "\n".join(wrong)


def test_a_grant_lifts_the_guard_for_its_columns(connect_as, shop_db):
    rows = connect_as("alice").execute(
        "SELECT email FROM customers WHERE email LIKE 'customer1%' ORDER BY email"
    )
    assert rows.fetchall() == raw_rows(
        shop_db, "SELECT email FROM customers WHERE email LIKE 'customer1%' ORDER BY email"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"customers\.phone"):
        connect_as("alice").execute("SELECT id FROM customers WHERE phone LIKE '+1%'")


def test_a_query_that_cannot_be_parsed_is_refused_never_passed_through(connect_as):
    with pytest.raises(psycopg.errors.SyntaxError, match="Veil cannot parse"):
        connect_as("bob").execute("SELEC email FROM customers")


def test_user_defined_functions_and_code_blocks_are_refused_outside_the_select_list(connect_as, scratch_db):
    with psycopg.connect(dsn(scratch_db), autocommit=True) as owner:
        owner.execute(
            "CREATE FUNCTION first_letter(bigint) RETURNS text LANGUAGE sql "
            "AS $$ SELECT left(email, 1) FROM customers WHERE id = $1 $$"
        )
    conn = connect_as("bob", dbname=scratch_db)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="first_letter"):
        conn.execute("SELECT id FROM customers WHERE first_letter(id) = 'c'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="DO"):
        conn.execute("DO $$ BEGIN RAISE NOTICE '%', (SELECT email FROM customers LIMIT 1); END $$")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="query_to_xml"):
        conn.execute(
            "SELECT 1 WHERE query_to_xml('SELECT email FROM customers', true, false, '') IS NOT NULL"
        )
    # In the select list a user's function may run, but what it returns is untraceable: masked.
    rows = conn.execute("SELECT id, first_letter(id) FROM customers ORDER BY id").fetchall()
    assert rows and all(letter == "******" for _, letter in rows)


def test_copy_to_is_refused_when_it_would_return_a_masked_column(connect_as):
    conn = connect_as("bob")
    cursor = conn.cursor()
    for statement in ("COPY customers TO STDOUT", "COPY (SELECT id, email FROM customers) TO STDOUT"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="COPY"), cursor.copy(statement):
            pass
    with cursor.copy("COPY (SELECT id, status FROM payments) TO STDOUT") as copy:
        assert len(list(copy.rows())) > 0


def test_refusals_are_recorded_for_compliance_as_denied_attempts(connect_as, live_veil):
    from audit.filters import AuditFilter, AuditScope
    from audit.models import AuditEvent
    from audit.reports import denied_rows

    client = live_veil.client()
    conn = connect_as("bob", client=client)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT id FROM customers WHERE email LIKE 'c%'")
    assert client.flush(timeout=10)
    event = AuditEvent.objects.get(action="query.refused")
    assert event.actor_id == "bob@example.com"
    assert event.project == "shop"
    assert event.detail["clause"] == "WHERE"
    assert event.detail["columns"] == ["prod-pg/shop/public.customers.email"]
    denied = list(denied_rows(AuditFilter(), AuditScope()))
    assert any(row[2] == "query.refused" for row in denied)


def test_audit_mode_runs_the_query_masked_and_records_the_attempt(connect_as, live_veil, shop_db):
    from audit.models import AuditEvent

    client = live_veil.client()
    conn = connect_as("bob", client=client, guard_mode="audit")
    rows = conn.execute(
        "SELECT id, email FROM customers WHERE email LIKE 'customer1%' ORDER BY id"
    ).fetchall()
    raw = raw_rows(shop_db, "SELECT id, email FROM customers WHERE email LIKE 'customer1%' ORDER BY id")
    assert [r[0] for r in rows] == [r[0] for r in raw]
    assert all(got[1] != before[1] for got, before in zip(rows, raw, strict=True))
    assert client.flush(timeout=10)
    event = AuditEvent.objects.get(action="query.guard_audited")
    assert event.detail["clause"] == "WHERE"


def test_the_projects_guard_setting_applies_unless_the_connection_names_one(connect_as, live_veil, shop_db):
    from audit.models import AuditEvent, Channel
    from audit.services import SYSTEM
    from masking.models import Project
    from masking.services.projects import project_update

    probe = "SELECT id FROM customers WHERE email LIKE 'customer1%' ORDER BY id"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect_as("bob").execute(probe)  # the default: refuse
    shop = Project.objects.get(key="shop")
    project_update(
        project=shop,
        title=shop.title,
        description=shop.description,
        inference_guard="audit",
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    client = live_veil.client()
    ran = connect_as("bob", client=client).execute(probe).fetchall()
    assert [r[0] for r in ran] == [r[0] for r in raw_rows(shop_db, probe)]
    assert client.flush(timeout=10)
    assert AuditEvent.objects.filter(action="query.guard_audited").exists()
    assert AuditEvent.objects.get(action="project.updated").detail["after"] == {"inference_guard": "audit"}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # a connection may insist on refusing
        connect_as("bob", guard_mode="refuse").execute(probe)


def test_the_refusals_link_opens_the_request_form_with_the_column_ticked(connect_as, live_veil, client):
    import re
    import urllib.parse

    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        connect_as("bob").execute("SELECT id FROM customers WHERE email LIKE 'c%'")
    link = re.search(r"Ask for access: (\S+)", str(refused.value)).group(1)
    path = urllib.parse.urlsplit(link)
    client.force_login(live_veil.people["bob"])
    page = client.get(f"{path.path}?{path.query}")
    assert page.status_code == 200
    form = page.context["form"]
    assert form is not None and form.database.name == "shop"
    email = next(c for c in form.columns if c.table.name == "customers" and c.name == "email")
    assert form["scope"].value() == [f"column:{email.pk}"]


def test_server_errors_that_may_quote_a_masked_value_are_withheld(connect_as, scratch_db):
    # Audit mode runs the cast, which fails on the first email it meets and names it.
    conn = connect_as("bob", dbname=scratch_db, guard_mode="audit")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as cast:
        conn.execute("SELECT email::int FROM customers")
    assert "customer" not in str(cast.value) and "withheld" in str(cast.value)
    with psycopg.connect(dsn(scratch_db), autocommit=True) as owner:
        owner.execute("CREATE UNIQUE INDEX ON customers (email)")
    # A duplicate key quotes the existing value (an existence oracle). Refused mode refuses the
    # write to a masked column before it runs; audit mode runs it and withholds the message.
    probe = "UPDATE customers SET email = 'customer1@example.net' WHERE id = 2 RETURNING id"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"UPDATE \.\.\. SET"):
        connect_as("bob", dbname=scratch_db).execute(probe)
    with pytest.raises(psycopg.errors.UniqueViolation) as duplicate:
        conn.execute(probe)
    assert "customer1@example.net" not in str(duplicate.value)
    # A failed write quotes the whole row ("Failing row contains (...)"), masked columns included,
    # even when the statement itself reads only unmasked ones.
    with psycopg.connect(dsn(scratch_db), autocommit=True) as owner:
        owner.execute("ALTER TABLE customers ALTER COLUMN id SET NOT NULL")
    with pytest.raises(psycopg.errors.NotNullViolation) as failing:
        connect_as("bob", dbname=scratch_db).execute("UPDATE customers SET id = NULL WHERE id = 1")
    assert "customer1@example.net" not in str(failing.value) and "withheld" in str(failing.value)
    # Someone who sees the column in clear gets the server's own message.
    alice = connect_as("alice", dbname=scratch_db, guard_mode="audit")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="customer"):
        alice.execute("SELECT email::int FROM customers")
