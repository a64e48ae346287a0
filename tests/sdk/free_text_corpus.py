"""A labelled corpus of support notes, generated (seeded, so every run sees the same text).

Each note is built from sentence templates a support agent or a log line might write, with slots
filled by personal data of the kinds ``redact_text`` detects, each in several real-world formats,
and by look-alikes it must leave alone (order numbers, dates, times, amounts, versions, IP
addresses, UUIDs, commit hashes, card numbers with a wrong Luhn digit, IBANs with a wrong
checksum, never-issued social security numbers). The labels are the exact spans of the
personal data, so recall and precision are computed, not eyeballed. Nothing is downloaded.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

KINDS = ("email", "phone", "card", "national_id", "iban", "secret")


@dataclass(frozen=True)
class Note:
    text: str
    spans: tuple[tuple[str, int, int], ...]  # (kind, start, end)


def _luhn_digit(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


_CARD_SHAPES = [
    ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16),
    ("4", 13), ("35", 16), ("62", 19),
]  # fmt: skip


def _card_digits(rng: random.Random, *, valid: bool = True) -> str:
    prefix, length = rng.choice(_CARD_SHAPES)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = _luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def _grouped(digits: str, separator: str) -> str:
    if len(digits) == 15:  # Amex 4-6-5
        return separator.join((digits[:4], digits[4:10], digits[10:]))
    return separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def card(rng: random.Random, *, valid: bool = True) -> str:
    return _grouped(_card_digits(rng, valid=valid), rng.choice(["", " ", "-"]))


def email(rng: random.Random) -> str:
    first = rng.choice(["jo", "maria", "li.wei", "o'neil", "sam_k", "anna-lena", "x", "dev+ops"])
    local = first.replace("'", "") + rng.choice(["", str(rng.randint(1, 999)), ".smith"])
    domain = rng.choice(["example.com", "mail.example.co.uk", "example.org", "corp-mail.example.net"])
    return f"{local}@{domain}".upper() if rng.random() < 0.05 else f"{local}@{domain}"


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    return rng.choice(
        [
            f"+1-{d(3)}-{d(3)}-{d(4)}",
            f"+1 ({d(3)}) {d(3)}-{d(4)}",
            f"({d(3)}) {d(3)}-{d(4)}",
            f"{rng.randint(2, 9)}{d(2)}-{d(3)}-{d(4)}",
            f"{rng.randint(2, 9)}{d(2)}.{d(3)}.{d(4)}",
            f"+44 20 {d(4)} {d(4)}",
            f"+44 7{d(3)} {d(6)}",
            f"020 {d(4)} {d(4)}",
            f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+49 30 {d(8)}",
            f"+1-555-01{d(2)}",
        ]
    )


def ssn(rng: random.Random, *, valid: bool = True) -> str:
    if valid:
        area = rng.choice([n for n in range(1, 900) if n != 666])
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    never_issued = [
        f"000-{rng.randint(10, 99)}-1234",
        f"666-12-{rng.randint(1000, 9999)}",
        "123-00-4567",
        f"9{rng.randint(10, 99)}-12-3456",
    ]
    return rng.choice(never_issued)


def nino(rng: random.Random) -> str:
    letters = "ABCEGHJKLMNPRSTWXYZ"
    first = rng.choice(letters)
    second = rng.choice(letters.replace("O", ""))
    if first + second in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        first, second = "A", "B"
    digits = [f"{rng.randint(0, 99):02d}" for _ in range(3)]
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second} {' '.join(digits)} {suffix}"
    return f"{first}{second}{''.join(digits)}{suffix}"


_IBAN_FORMS = {
    "GB": "4a14n",
    "DE": "18n",
    "FR": "10n11c2n",
    "NL": "4a10n",
    "ES": "20n",
    "IT": "1a10n12c",
    "BE": "12n",
}


def iban(rng: random.Random, *, valid: bool = True) -> str:
    country = rng.choice(list(_IBAN_FORMS))
    bban = ""
    spec = _IBAN_FORMS[country]
    for count, kind in ((int(part[:-1]), part[-1]) for part in _split_spec(spec)):
        alphabet = {
            "a": string.ascii_uppercase,
            "n": string.digits,
            "c": string.ascii_uppercase + string.digits,
        }[kind]
        bban += "".join(rng.choice(alphabet) for _ in range(count))
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - number % 97
    if not valid:
        check = (check + rng.randint(1, 50)) % 97 or 2
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


def _split_spec(spec: str) -> list[str]:
    parts, current = [], ""
    for char in spec:
        current += char
        if char.isalpha():
            parts.append(current)
            current = ""
    return parts


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def secret(rng: random.Random) -> tuple[str, str]:
    """(text, the labelled part): a labelled assignment keeps its name in clear."""
    b64 = string.ascii_letters + string.digits + "_-"
    choice = rng.randrange(10)
    if choice == 0:
        return ("AKIA" + _token(rng, 16, string.ascii_uppercase + string.digits),) * 2
    if choice == 1:
        return ("ghp_" + _token(rng, 36),) * 2
    if choice == 2:
        return (
            "xoxb-" + "-".join(_token(rng, 12, string.digits) for _ in range(2)) + "-" + _token(rng, 24),
        ) * 2
    if choice == 3:
        return ("sk_live_" + _token(rng, 24),) * 2
    if choice == 4:
        return ("AIza" + _token(rng, 35, b64),) * 2
    if choice == 5:
        return (
            "eyJ" + _token(rng, 20, b64) + ".eyJ" + _token(rng, 40, b64) + "." + _token(rng, 43, b64),
        ) * 2
    if choice == 6:
        return ("veil_" + _token(rng, 8) + "_" + _token(rng, 32, b64),) * 2
    value = _token(rng, rng.randint(12, 40), b64)
    if choice == 7:
        return f"Bearer {value}", value
    name = rng.choice(["password", "api_key", "API-KEY", "token", "client_secret", "access_token"])
    return f"{name}={value}" if choice == 8 else f'{name}: "{value}"', value


def _uuid(rng: random.Random) -> str:
    return "-".join(_token(rng, n, "abcdef0123456789") for n in (8, 4, 4, 4, 12))


def lookalike(rng: random.Random) -> str:
    """Text that resembles personal data but is not."""
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    return rng.choice(
        [
            lambda: f"order {d(rng.randint(5, 12))}",
            lambda: f"on {rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            lambda: f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
            lambda: f"for ${rng.randint(1, 9999)}.{d(2)}",
            lambda: f"version {rng.randint(1, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
            lambda: f"from 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            lambda: f"ticket {_uuid(rng)}",
            lambda: f"commit {_token(rng, 40, 'abcdef0123456789')}",
            lambda: f"card {card(rng, valid=False)} was declined as mistyped",
            lambda: f"IBAN {iban(rng, valid=False)} failed validation",
            lambda: f"SSN {ssn(rng, valid=False)} is not a real one",
            lambda: f"tracking {rng.choice(['1Z', 'JD'])}{d(16)}",
            lambda: f"{rng.randint(2, 40)} items, {rng.randint(1, 999)} tokens left",
            lambda: f"the password reset link expired after {rng.randint(2, 48)} hours",
            lambda: f"SKU {_token(rng, 3, string.ascii_uppercase)}-{d(4)}-{d(2)}",
            lambda: "reference ABCD 1234 EFGH",
            lambda: f"call between 9 and {rng.randint(3, 6)} on weekdays",
        ]
    )()


_OPENERS = [
    "Customer called about a refund.",
    "Escalated to tier 2.",
    "User says the app crashes at checkout.",
    "Follow-up needed next week.",
    "2026-03-04T10:22:01Z ERROR payment failed:",
    "Chat transcript:",
]
_SLOTS = {
    "email": ["Reach them at {}.", "Email {} bounced.", "from: {}", "contact <{}>"],
    "phone": ["Call back on {}.", "Phone: {}", "they gave {} as a number", "tel {}"],
    "card": ["Paid with card {}.", "card_number={}", "the card {} was charged twice"],
    "national_id": ["SSN on file {}.", "NI number {} confirmed", "id: {}"],
    "iban": ["Refund to IBAN {}.", "account {} for the transfer", "IBAN: {}"],
    "secret": ["Pasted {} into the chat.", "header {} was logged", "config had {}"],
}


def note(rng: random.Random) -> Note:
    """One note: an opener, one to four pieces of personal data and one to three look-alikes."""
    parts: list[str] = [rng.choice(_OPENERS)]
    spans: list[tuple[str, int, int]] = []
    pieces: list[tuple[str | None, str, str]] = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(KINDS)
        if kind == "secret":
            text, labelled = secret(rng)
        else:
            text = {"email": email, "phone": phone, "card": card, "iban": iban}.get(
                kind, lambda r: ssn(r) if r.random() < 0.5 else nino(r)
            )(rng)
            labelled = text
        pieces.append((kind, rng.choice(_SLOTS[kind]), text + "\0" + labelled))
    for _ in range(rng.randint(1, 3)):
        pieces.append((None, "Also noted {}.", lookalike(rng) + "\0"))
    rng.shuffle(pieces)
    for kind, template, payload in pieces:
        text, labelled = payload.split("\0")
        before, after = template.split("{}")
        offset = sum(len(p) + 1 for p in parts)
        parts.append(before + text + after)
        if kind is not None:
            start = offset + len(before) + text.index(labelled)
            spans.append((kind, start, start + len(labelled)))
    return Note(" ".join(parts), tuple(spans))


def corpus(count: int, seed: int = 21) -> list[Note]:
    rng = random.Random(seed)
    return [note(rng) for _ in range(count)]
