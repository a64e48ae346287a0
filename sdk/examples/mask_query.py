"""Ask Veil how to return a few columns to someone, mask some rows locally, print them and report
the query, as a data-access layer would.

    .venv/bin/python sdk/examples/mask_query.py --url http://localhost:8000 --token veil_xxxx_yyyy

Any Python 3.10+ runs it too: the SDK is standard library only, and a checkout's `sdk/` is used
when `veil_sdk` is not installed.

``--url`` and ``--token`` default to the environment variables VEIL_URL and VEIL_TOKEN. The token
needs the scopes ``decisions`` and ``access-events``. The columns are
``prod-pg/shop/public.customers`` ``id``, ``email`` and ``phone`` unless told otherwise; columns
Veil's catalog does not know come back masked (reason ``unknown_column``).

Exit status: 0 when Veil answered and took the access event, 1 when the client had to fail
closed (Veil unreachable or refusing the token: every column masked) or the event was not
delivered, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

try:
    from veil_sdk import Column, VeilClient, service_account, user
except ModuleNotFoundError:  # run from a checkout with a Python that has not installed the SDK
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from veil_sdk import Column, VeilClient, service_account, user

SAMPLE_ROWS: list[dict[str, Any]] = [
    {"id": 1, "email": "alice@example.com", "phone": "+33 6 12 34 56 78"},
    {"id": 2, "email": "bob.martin@example.org", "phone": "+1 415 555 0100"},
    {"id": 3, "email": None, "phone": None},
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("VEIL_URL"), help="Veil's base URL (or VEIL_URL)")
    parser.add_argument("--token", default=os.environ.get("VEIL_TOKEN"), help="service token (or VEIL_TOKEN)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", default="alice@example.com", help="the person the data is for")
    who.add_argument("--service-account", help="or the service account the data is for")
    parser.add_argument("--instance", default="prod-pg")
    parser.add_argument("--database", default="shop")
    parser.add_argument("--schema", default="public")
    parser.add_argument("--table", default="customers")
    parser.add_argument("--timeout", type=float, default=2.0, help="decision timeout in seconds")
    args = parser.parse_args(argv)
    if not args.url or not args.token:
        parser.error("give --url and --token, or set VEIL_URL and VEIL_TOKEN")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    principal = service_account(args.service_account) if args.service_account else user(args.user)
    columns = [Column(args.instance, args.database, args.schema, args.table, name) for name in SAMPLE_ROWS[0]]
    query_id = f"example-{uuid.uuid4().hex[:12]}"

    client = VeilClient(args.url, args.token, timeout=args.timeout)
    try:
        decisions = client.decide(principal, columns, query_id=query_id)
        print(f"Decisions for {principal.id} (query {query_id}):")
        rows = [_cells(d) for d in decisions]
        widths = [max(len(text) for text in texts) for texts in zip(*rows, strict=True)]
        for cells in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())

        print("Masked rows:")
        for row in client.mask_rows(SAMPLE_ROWS, decisions):
            print(f"  {row}")

        # Returns at once; the event is posted in the background...
        client.report_decisions(principal, query_id, decisions, row_count=len(SAMPLE_ROWS))
    finally:
        # ...and close() waits (here up to 5 s) for it to be delivered before stopping that thread.
        delivered = client.close(timeout=5.0)

    degraded = any(d.degraded for d in decisions)
    print(f"Access event {'delivered' if delivered else 'NOT delivered'}.")
    if degraded:
        print("Veil gave no decisions (see the warning): every column was masked in full (fail closed).")
    return 0 if delivered and not degraded else 1


def _cells(decision: Any) -> tuple[str, str, str, str]:
    """Column, action, reason kind (unknown_principal is the longest) and the algorithm applied."""
    how = f"with {dict(decision.algorithm)}" if decision.algorithm else ""
    return decision.column.label(), decision.action, decision.reason_kind, how


if __name__ == "__main__":
    raise SystemExit(main())
