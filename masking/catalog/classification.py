"""Guess a column's sensitivity from its name and type. Pure; a suggestion, never a fact.

The patterns look at name tokens (split on `_`, `-`, camelCase), so `customer_email` and
`billingAddress` match while `emailed_at` (a timestamp) does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TEXT_TYPES = ("char", "text", "string", "varchar", "citext", "clob", "nvarchar")
_DATE_TYPES = ("date", "timestamp")


@dataclass(frozen=True)
class Suggestion:
    category: str
    level: int


# (category, level, name patterns over the joined tokens, allowed type fragments or None for any)
_RULES: list[tuple[str, int, re.Pattern[str], tuple[str, ...] | None]] = [
    (
        "ssn",
        4,
        re.compile(r"(^|_)(ssn|social_security(_number)?|national_id|tax_id|sin|nino)($|_)"),
        None,
    ),
    (
        "card_number",
        4,
        re.compile(r"(^|_)(card_number|cc_number|credit_card|pan|card_no|cardnumber)($|_)"),
        None,
    ),
    ("email", 3, re.compile(r"(^|_)e?mail(_address)?($|_)"), _TEXT_TYPES),
    (
        "phone",
        3,
        re.compile(r"(^|_)(phone|mobile|tel|telephone|msisdn|fax)(_number|_no)?($|_)"),
        None,
    ),
    (
        "birth_date",
        3,
        re.compile(r"(^|_)(dob|birth_?date|date_of_birth|birthday|born_on)($|_)"),
        _DATE_TYPES + _TEXT_TYPES,
    ),
    (
        "address",
        3,
        re.compile(r"(^|_)(address|street|addr|zip|zip_code|postcode|postal_code|city)(_line_?\d)?($|_)"),
        _TEXT_TYPES,
    ),
    (
        "name",
        2,
        re.compile(r"(^|_)(first_name|last_name|full_name|given_name|family_name|surname)($|_)|^name$"),
        _TEXT_TYPES,
    ),
    ("ip_address", 2, re.compile(r"(^|_)(ip|ip_address|ipaddr|remote_addr|client_ip)($|_)"), None),
]


def _tokens(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")


def suggest_classification(column_name: str, data_type: str = "") -> Suggestion | None:
    """Return the most sensitive category the name and type suggest, or None."""
    joined = _tokens(column_name)
    dtype = data_type.lower()
    if dtype in {"inet", "cidr"}:
        return Suggestion("ip_address", 2)
    for category, level, pattern, types in _RULES:
        if pattern.search(joined) and (types is None or not dtype or any(t in dtype for t in types)):
            return Suggestion(category, level)
    return None
