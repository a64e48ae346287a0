"""Veil's client SDK: masking algorithms and the decision client, with no Django dependency."""

from veil_sdk.algorithms import AlgorithmError
from veil_sdk.client import (
    DEGRADED,
    FULL_ALGORITHM,
    ClientStats,
    Column,
    ColumnDecision,
    Principal,
    Row,
    RowMasker,
    VeilClient,
    service_account,
    user,
)

__all__ = [
    "DEGRADED",
    "FULL_ALGORITHM",
    "AlgorithmError",
    "ClientStats",
    "Column",
    "ColumnDecision",
    "Principal",
    "Row",
    "RowMasker",
    "VeilClient",
    "service_account",
    "user",
]
