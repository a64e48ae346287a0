"""SQLAlchemy over Veil's psycopg adapter: the engine's connections come from ``connect``.

    from sqlalchemy import create_engine
    from veil_sdk.contrib.sqlalchemy import veil_engine

    engine = veil_engine("host=db dbname=shop user=app", client=client, instance="prod-pg")
    with acting_as(user("alice@example.com")), engine.connect() as conn:
        rows = conn.execute(select(customers)).all()

Connections are pooled as usual and bound to no principal: each query runs for whoever
``veil_sdk.psycopg.acting_as`` names when it runs (a web request, a job), and a query that reads
a catalog column with nobody named is refused. ``principal=`` binds every connection to one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from veil_sdk.client import Principal, VeilClient
from veil_sdk.psycopg import connect

__all__ = ["veil_engine"]


def veil_engine(
    conninfo: str,
    *,
    client: VeilClient,
    instance: str,
    database: str | None = None,
    principal: Principal | Mapping[str, Any] | None = None,
    guard_mode: str | None = None,
    **engine_kwargs: Any,
) -> Engine:
    """A ``postgresql+psycopg`` engine whose connections enforce Veil's decisions."""

    def creator() -> Any:
        return connect(
            conninfo,
            client=client,
            principal=principal,
            instance=instance,
            database=database,
            guard_mode=guard_mode,
        )

    return create_engine("postgresql+psycopg://", creator=creator, **engine_kwargs)
