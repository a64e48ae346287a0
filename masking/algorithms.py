"""Masking algorithms as people read them: `describe` turns a stored algorithm into a short label.

The algorithms themselves (validation, masking) live in `veil_sdk.algorithms`, shared with the
data-access layers; this module only words them for the policy pages. It is pure Python (no
Django). A label never contains a secret: an `md5` salt shows only as "with salt", and a
`pseudonym` names neither its key nor the key's id, so a page listing semantic types leaks
nothing that helps confirm a guessed value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from veil_sdk.algorithms import FULL_MASK, AlgorithmError
from veil_sdk.algorithms import validate as validate_algorithm

__all__ = ["SECRET_FIELDS", "describe", "redact", "secrets_changed"]

# Fields whose value is a secret of the data-access side: an `md5` salt lets anyone confirm a
# guessed value. They are never written to the audit log or shown outside the policy editor.
SECRET_FIELDS = frozenset({"salt"})
REDACTED = "(secret)"


def redact(algorithm: Mapping[str, Any]) -> dict[str, Any]:
    """The algorithm with its secret fields replaced by a marker (kept only when set)."""
    return {k: (REDACTED if k in SECRET_FIELDS and v else v) for k, v in algorithm.items()}


def secrets_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """The secret fields whose value differs between two versions of an algorithm."""
    old, new = before or {}, after or {}
    return sorted(f for f in SECRET_FIELDS if old.get(f) != new.get(f))


def _quoted(text: str) -> str:
    return f"'{text}'"


def _position(index: int) -> str:
    """A range index as written in a slice: -1 is the end, -2 one before it, and so on."""
    if index >= 0:
        return str(index)
    if index == -1:
        return "end"
    return f"end-{-index - 1}"


def _full(a: Mapping[str, Any]) -> str:
    substitution = a.get("substitution", FULL_MASK)
    return f"Full: {substitution}" if substitution else "Full: empty text"


def _range(a: Mapping[str, Any]) -> str:
    slices = [
        f"[{_position(s['start'])}, {_position(s['end'])}) with {_quoted(s.get('substitution', '*'))}"
        for s in a["slices"]
    ]
    return "Range: mask " + ", ".join(slices)


def _md5(a: Mapping[str, Any]) -> str:
    return "MD5 with salt" if a.get("salt") else "MD5 without salt"


def _inner(a: Mapping[str, Any]) -> str:
    substitution = _quoted(a.get("substitution", "*"))
    return f"Keep first {a['prefix_len']} and last {a['suffix_len']}, {substitution} between"


def _outer(a: Mapping[str, Any]) -> str:
    substitution = _quoted(a.get("substitution", "*"))
    return f"Mask first {a['prefix_len']} and last {a['suffix_len']} with {substitution}, keep the middle"


def _show(which: str) -> Callable[[Mapping[str, Any]], str]:
    def label(a: Mapping[str, Any]) -> str:
        return f"Show {which} {a['n']}, {_quoted(a.get('substitution', '*'))} for the rest"

    return label


def _pseudonym(a: Mapping[str, Any]) -> str:
    digits = f"{a.get('length', 16)} hex digits"
    prefix = a.get("prefix", "")
    token = f"{_quoted(prefix)} + {digits}" if prefix else digits
    return f"Pseudonym: {token} (keyed HMAC-SHA256)"


def _redact_text(a: Mapping[str, Any]) -> str:
    found = ", ".join(a.get("detect") or ["all detectors"])
    if a.get("replace") == "pseudonym":
        return f"Free text: {found} replaced by keyed pseudonyms"
    return f"Free text: {found} replaced by placeholders"


_LABELS: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "full": _full,
    "range": _range,
    "md5": _md5,
    "inner": _inner,
    "outer": _outer,
    "default_partial": lambda _a: "Default partial: the middle half between ** and **",
    "email": lambda _a: "Email: first character and domain (a****@example.com)",
    "show_first": _show("first"),
    "show_last": _show("last"),
    "null": lambda _a: "NULL",
    "date_year": lambda _a: "Year only",
    "pseudonym": _pseudonym,
    "redact_text": _redact_text,
}


def describe(algorithm: Mapping[str, Any]) -> str:
    """A short human label for a masking algorithm, e.g. "Show last 4, '*' for the rest".

    Never raises: an algorithm that does not validate (a row saved before validation existed)
    is labelled as invalid with the reason, which names fields but never their values.
    """
    try:
        validate_algorithm(algorithm)
    except AlgorithmError as exc:
        return f"Invalid algorithm ({exc})"
    kind = str(algorithm["type"])
    label = _LABELS.get(kind)
    return label(algorithm) if label is not None else kind  # a type newer than this module
