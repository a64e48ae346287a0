"""The data path: enforce Veil's decisions on real PostgreSQL queries.

``Enforcer`` (one per target database) traces each result column to its source columns, refuses
queries that would use a masked column to infer its values (the inference guard), and masks what
Veil says to mask. The psycopg adapter (``veil_sdk.psycopg``) and ``veil-proxy`` are built on it.
Needs the ``datapath`` extra (psycopg and pglast).
"""

from veil_sdk.datapath.enforce import (
    GUARD_MODES,
    UNTRACEABLE,
    Check,
    Enforcer,
    Field,
    GuardRefusal,
    Planning,
    ResultPlan,
    Session,
)

__all__ = [
    "GUARD_MODES",
    "UNTRACEABLE",
    "Check",
    "Enforcer",
    "Field",
    "GuardRefusal",
    "Planning",
    "ResultPlan",
    "Session",
]
