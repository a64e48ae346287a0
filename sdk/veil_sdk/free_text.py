"""Find personal data inside free text (support notes, comments, logs) and replace it.

A text column rarely holds one kind of value: a support note says "call me on +44 20 7946 0958
or mail jo@example.com, card 4111 1111 1111 1111". Masking the whole note hides what the note is
about; leaving it whole hands every detail to whoever reads it (an analyst, an AI agent's prompt).
The ``redact_text`` algorithm (``veil_sdk.algorithms``) replaces only what is found, with a typed
placeholder (``<EMAIL>``) or a keyed pseudonym (``<EMAIL:3f2a9c1d07be>``: the same address gives
the same token everywhere, so joins and counts still work, while nobody without the key can
confirm a guessed value).

Detection is one compiled regular expression (one pass over the text) plus a check per
candidate that a pattern alone cannot make: the Luhn digit of a card number and its issuer
prefix, the ISO 7064 mod-97 checksum and length of an IBAN, the reserved ranges of a US social
security number and a UK national insurance number, the digit count of a phone number. It is
deterministic (no model, no locale guessing) and runs where the values are, in the data-access
layer: Veil never sees them. Its recall and precision are measured on a generated, labelled
corpus (tests/sdk/test_free_text.py) and its speed in bench/free_text.py.

What it does not find: names, postal addresses, dates of birth, and phone numbers written as a
bare run of digits (indistinguishable from order numbers); a column holding those needs a whole-
value algorithm.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

__all__ = ["DETECTORS", "PLACEHOLDERS", "find", "redactor"]

DETECTORS: Mapping[str, str] = MappingProxyType(
    {
        "email": "Email addresses.",
        "phone": "Phone numbers written with a + country code, an area code in brackets or separators.",
        "card": "Payment card numbers (13-19 digits, a known issuer prefix, a valid Luhn digit).",
        "national_id": "US social security numbers (123-45-6789) and UK national insurance numbers.",
        "iban": "IBANs (country code, valid length and ISO 7064 mod-97 checksum).",
        "secret": "API keys and tokens: AWS, GitHub, Slack, Stripe, Google, JWTs, Veil tokens, "
        "bearer tokens and values assigned to a key/token/secret/password name.",
    }
)
"""Every detector ``redact_text`` accepts in ``detect``, with what it finds."""

PLACEHOLDERS: Mapping[str, str] = MappingProxyType({kind: f"<{kind.upper()}>" for kind in DETECTORS})

# Each alternative is a named group; a group named ``<kind>_v`` inside it marks the part to
# replace when the match carries a label that should stay readable ("password: <SECRET>").
_PATTERNS: Mapping[str, str] = {
    "secret": r"""
        (?:AKIA|ASIA)[0-9A-Z]{16}\b
      | gh[pousr]_[A-Za-z0-9]{36,255}\b
      | github_pat_[A-Za-z0-9_]{22,255}\b
      | xox[abposr]-[A-Za-z0-9-]{10,}
      | [sr]k_(?:live|test)_[A-Za-z0-9]{16,}
      | AIza[0-9A-Za-z_-]{35}
      | eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
      | veil_[A-Za-z0-9]{4,}_[A-Za-z0-9_-]{16,}""",
    # The label's last word starts the match (api_key, access_token, client_secret end in one),
    # so the pattern opens with a character class, which Python's re scans for quickly; a letter
    # just before it means another word ("monkey: ...").
    "labelled_secret": r"""
        [BbKkTtSsPp](?<![A-Za-z][A-Za-z])
        (?i:(?<=b)earer\s+
          | (?:(?<=k)ey|(?<=t)oken|(?<=s)ecret|(?<=p)(?:assw(?:or)?d|wd))["']?\s*[:=]\s*["']?)
        (?P<value>[A-Za-z0-9._~+/=-]{11,}[A-Za-z0-9_~+/=-]
          | (?<![Bb][Ee][Aa][Rr][Ee][Rr]\s)[^\s"',;]{7,}[^\s"',;.])""",
    "email": r"""
        [A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b""",
    "iban": r"""
        \b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b""",
    "national_id": r"""
        (?<![\w-])(?:[0-9]{3}-[0-9]{2}-[0-9]{4}
          | [A-CEGHJ-PR-TW-Z]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[A-D])(?![\w-])""",
    "card": r"""
        [0-9](?<![\w+-][0-9])(?:[ -]?[0-9]){12,18}(?![\w-])""",
    "phone": r"""
        (?<![\w+])(?<![0-9][ .-])(?:
            \+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,4}
          | \([0-9]{2,4}\)[ .-]?[0-9]{3,4}[ .-]?[0-9]{3,4}
          | [0-9]{3}[.-][0-9]{3}[.-][0-9]{4}
          | 0[0-9]{1,4}[ ][0-9]{3,4}[ ][0-9]{3,4}
          | 0[0-9](?:[ .][0-9]{2}){4}
        )(?![\w-])(?![ .][0-9])""",
}
_COMPILED = {name: re.compile(pattern, re.VERBOSE) for name, pattern in _PATTERNS.items()}

# Cheap tests that rule a detector out for a whole text before its pattern runs: most text holds
# no personal data, and Python's re engine is fastest when it need not run at all.
_DIGIT_RUN = re.compile(r"[0-9](?:[ ().-]{0,2}[0-9]){6}")  # 7 digits: phone, card, SSN
_CODE = re.compile(r"[A-Z]{2}[ ]?[0-9]{2}")  # IBAN, NI number
_SECRET_PREFIXES = ("AKIA", "ASIA", "gh", "xox", "k_live_", "k_test_", "AIza", "eyJ", "veil_")
_SECRET_LABELS = ("bearer", "key", "token", "secret", "passw", "pwd")
_GATES: Mapping[str, Callable[[str], object]] = {
    "secret": lambda text: any(prefix in text for prefix in _SECRET_PREFIXES),
    "labelled_secret": lambda text: any(label in text.lower() for label in _SECRET_LABELS),
    "email": lambda text: "@" in text,
    "iban": _CODE.search,
    "national_id": lambda text: _CODE.search(text) or _DIGIT_RUN.search(text),
    "card": _DIGIT_RUN.search,
    "phone": _DIGIT_RUN.search,
}
_DETECTED_BY = {"secret": ("secret", "labelled_secret")}

# IBAN lengths by country (the ISO 13616 registry); a country code not listed is no IBAN.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6011|64[4-9]|65|62")
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_NOT_DIGIT = re.compile(r"[^0-9]")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(text: str) -> str | None:
    digits = _NOT_DIGIT.sub("", text)
    if not 13 <= len(digits) <= 19 or not _CARD_PREFIX.match(digits):
        return None
    separators = set(_NOT_DIGIT.findall(text))
    if len(separators) > 1:  # "1234 5678-..." is a list of numbers, not one card
        return None
    return digits if _luhn(digits) else None


def _iban(text: str) -> tuple[str, int] | None:
    """(compact IBAN, how much of ``text`` it spans): a spaced IBAN followed by a word in capitals
    ("GB82 WEST ... 32 IBAN: ...") is matched too long by the pattern, so groups are dropped from
    the end until the length is the country's."""
    expected = _IBAN_LENGTHS.get(text[:2])
    if expected is None:
        return None
    compact = text.replace(" ", "")
    while len(compact) > expected and " " in text:
        text = text.rsplit(" ", 1)[0]
        compact = text.replace(" ", "")
    if len(compact) != expected:
        return None
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return (compact, len(text)) if int(number) % 97 == 1 else None


def _national_id(text: str) -> str | None:
    if "-" in text:  # US SSN: area 000, 666 and 900-999, group 00 and serial 0000 are never issued
        area, group, serial = text.split("-")
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            return None
        return text
    compact = text.replace(" ", "")
    if compact[:2] in _NINO_BAD_PREFIXES or compact[1] == "O":
        return None
    return compact


def _phone(text: str) -> str | None:
    digits = _NOT_DIGIT.sub("", text)
    return ("+" if text.startswith("+") else "") + digits if 7 <= len(digits) <= 15 else None


# Each check answers the value's normal form (what a pseudonym is computed from, so that
# "4111 1111 1111 1111" and "4111-1111-1111-1111" are one card) or None for no match.
_CHECKS: Mapping[str, Callable[[str], str | None]] = {  # and _iban, which may shorten the match
    "secret": lambda text: text,
    "email": lambda text: text.lower(),
    "national_id": _national_id,
    "card": _card,
    "phone": _phone,
}


Hit = tuple[str, str, int, int]
"""(kind, normal form, start, end) of one piece of personal data."""


def _hits(text: str, kinds: tuple[str, ...]) -> list[Hit]:
    """Every piece found, overlaps merged (into the longest piece's kind), in text order.

    Each detector scans the text on its own (a single alternation of them all is several times
    slower in Python's re); pieces two detectors both claim ("token: 4111 1111 1111 1111") are
    replaced as one, so no part of either is left in clear.
    """
    found: list[Hit] = []
    for kind in kinds:
        for pattern_name in _DETECTED_BY.get(kind, (kind,)):
            if not _GATES[pattern_name](text):
                continue
            for match in _COMPILED[pattern_name].finditer(text):
                hit = _check(kind, match)
                if hit is not None:
                    found.append(hit)
    if len(found) < 2:
        return found
    found.sort(key=lambda hit: hit[2])
    merged = [found[0]]
    for hit in found[1:]:
        last = merged[-1]
        if hit[2] < last[3]:
            longest = max(last, hit, key=lambda h: h[3] - h[2])
            merged[-1] = (longest[0], longest[1], last[2], max(last[3], hit[3]))
        else:
            merged.append(hit)
    return merged


def _check(kind: str, match: re.Match[str]) -> Hit | None:
    start, end = match.span("value") if "value" in match.re.groupindex else match.span()
    if kind == "iban":
        checked = _iban(match.string[start:end])
        if checked is None:
            return None
        return kind, checked[0], start, start + checked[1]
    normal = _CHECKS[kind](match.string[start:end])
    return None if normal is None else (kind, normal, start, end)


def find(text: str, kinds: tuple[str, ...] = tuple(DETECTORS)) -> list[tuple[str, int, int]]:
    """The (kind, start, end) of every piece of personal data found in ``text``, in order.

    For tests and tools that show what would be replaced; ``redactor`` replaces.
    """
    return [(kind, start, end) for kind, _, start, end in _hits(text, kinds)]


def redactor(
    kinds: tuple[str, ...],
    *,
    key: bytes | None = None,
    length: int = 12,
) -> Callable[[str], str]:
    """A function replacing every piece of ``kinds`` found in a text.

    Without ``key`` each piece becomes its placeholder (``<EMAIL>``); with ``key`` it becomes
    ``<EMAIL:`` + ``length`` hex digits of HMAC-SHA256(key, kind + NUL + normal form) + ``>``.
    Text without anything to replace is returned as the same object (no copy).
    """
    unknown = set(kinds) - set(DETECTORS)
    if unknown:
        raise ValueError(f"unknown detectors: {', '.join(sorted(unknown))}")
    ordered = tuple(kind for kind in DETECTORS if kind in kinds)
    keyed = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None

    def token(kind: str, normal: str) -> str:
        if keyed is None:
            return PLACEHOLDERS[kind]
        digest = keyed.copy()
        digest.update(f"{kind}\0{normal}".encode("utf-8", "surrogatepass"))
        return f"<{kind.upper()}:{digest.hexdigest()[:length]}>"

    def redact(text: str) -> str:
        hits = _hits(text, ordered)
        if not hits:
            return text
        parts: list[str] = []
        kept_from = 0
        for kind, normal, start, end in hits:
            parts += (text[kept_from:start], token(kind, normal))
            kept_from = end
        parts.append(text[kept_from:])
        return "".join(parts)

    return redact
