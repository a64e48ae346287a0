"""Veil's masking algorithms: validate an algorithm once, then mask many values fast.

An algorithm is a JSON object such as ``{"type": "show_last", "n": 4}``. An admin stores one on a
semantic type (``validate`` guards that save) and data-access layers apply it to millions of
values (``compile`` does the parsing once and returns a plain function). The module needs nothing
beyond the standard library, so clients without Django can mask locally.

``full``, ``range``, ``md5``, ``inner``, ``outer`` and ``default_partial`` reproduce Bytebase's
maskers (bytebase/bytebase, backend/component/masker/masker.go) so that a value masked by Veil
reads the same as in Bytebase; the few deliberate deviations are noted where they occur.

Values are turned into text first, the way Bytebase renders them:

* ``str`` as is, ``int`` in base 10;
* ``float`` like Go's ``strconv.FormatFloat(f, 'f', -1, 64)``: shortest round-trip digits, never
  an exponent (``1.0`` -> ``1``, ``1e20`` -> ``100000000000000000000``, ``-0.0`` -> ``-0``,
  NaN -> ``NaN``, infinities -> ``+Inf``/``-Inf``);
* ``bytes`` decoded as UTF-8, invalid sequences becoming U+FFFD. Bytebase masks bytes byte by
  byte and answers bytes; Veil answers text, so positions count code points for bytes too (the
  results agree for ASCII). ``md5`` and ``pseudonym`` hash the raw bytes, exactly as Bytebase's
  md5 does;
* a naive ``datetime`` as ``YYYY-MM-DD HH:MM:SS.ffffff``, an aware one as RFC 3339 with the
  fraction's trailing zeros trimmed and ``Z`` for UTC (Bytebase's two timestamp formats);
* ``Decimal`` in positional notation (as PostgreSQL prints ``numeric``), anything else (dates,
  UUIDs, IP addresses) with ``str()``.

NULL (``None``) and booleans have no meaningful partial mask: every type except ``full`` and
``null`` masks them as ``******`` (``inner``/``outer`` repeat their substitution six times, as
Bytebase does). Positions and lengths count Unicode code points (Go runes), not bytes or
user-perceived characters.
"""

import hashlib
import hmac
import math
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from types import MappingProxyType
from typing import Any, TypeAlias

from veil_sdk import free_text

__all__ = [
    "ALGORITHM_TYPES",
    "EMAIL_MASK",
    "FULL_ALGORITHM",
    "FULL_MASK",
    "AlgorithmError",
    "Keys",
    "Masker",
    "apply",
    "compile",
    "validate",
]

Masker: TypeAlias = Callable[[object], str | None]
"""Masks one value; returns ``None`` where the masked value is SQL NULL."""

Keys: TypeAlias = Mapping[str, bytes]
"""Secret keys by id. They live on the data-access side, never in an algorithm's JSON."""

FULL_MASK = "******"
"""Bytebase's default full mask; also what NULL and booleans become under partial masks."""

FULL_ALGORITHM: Mapping[str, Any] = MappingProxyType({"type": "full", "substitution": FULL_MASK})
"""The full mask as an algorithm: what a column is masked with when nothing better is known (the
client's fallback, every fail-closed answer of Veil's engine)."""

EMAIL_MASK = "****"
"""Fixed-length stand-in for an email's local part, so the mask does not leak its length."""

_Build: TypeAlias = Callable[[Keys | None], Masker]
"""Second stage of compiling: only ``pseudonym`` needs keys, and ``validate`` never has them."""


class AlgorithmError(ValueError):
    """An algorithm is malformed or cannot be compiled; the message names the offending field."""


class _Fields:
    """Typed reads of an algorithm's fields, remembering them so any other field is rejected.

    Rejecting unknown fields catches typos (``"prefixlen"``) that would otherwise silently fall
    back to a default, and keeps secrets such as a pseudonym key out of stored algorithms.
    """

    def __init__(self, values: Mapping[str, object], path: str = "") -> None:
        self._values = values
        self._path = path
        self._known: set[str] = set()

    def error(self, name: str, problem: str) -> AlgorithmError:
        return AlgorithmError(f"{self._path}{name}: {problem}")

    def _get(self, name: str, default: object) -> object:
        """The field's value, or ``default``; a ``None`` default makes the field required."""
        self._known.add(name)
        if name in self._values:
            return self._values[name]
        if default is None:
            raise self.error(name, "is required")
        return default

    def string(self, name: str, default: str | None = None, *, non_empty: bool = False) -> str:
        value = self._get(name, default)
        if not isinstance(value, str) or (non_empty and not value):
            raise self.error(name, "must be a non-empty string" if non_empty else "must be a string")
        return value

    def integer(
        self,
        name: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self._get(name, default)
        # JSON has no separate integer type, so 1.0 is rejected rather than silently truncated.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, "must be an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            limits = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise self.error(name, f"must be an integer {limits}")
        return value

    def objects(self, name: str) -> list["_Fields"]:
        """A required, non-empty list of JSON objects, each read through its own ``_Fields``."""
        items = self._get(name, None)
        if not isinstance(items, list | tuple) or not items:
            raise self.error(name, "must be a non-empty list")
        nested = []
        for index, item in enumerate(items):
            path = f"{self._path}{name}[{index}]"
            if not isinstance(item, Mapping):
                raise AlgorithmError(f"{path}: must be a JSON object")
            nested.append(_Fields(item, f"{path}."))
        return nested

    def reject_unknown(self, owner: str) -> None:
        for name in self._values:
            if name not in self._known:
                accepted = ", ".join(sorted(self._known))
                raise self.error(str(name), f"unknown field for {owner} (accepted: {accepted})")


# --- Text forms -------------------------------------------------------------------------------


def _text(value: object) -> str:
    """Text form of a non-NULL, non-boolean value, as Bytebase renders it before masking."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return _go_timestamp(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _go_float(number: float) -> str:
    """Go's ``strconv.FormatFloat(number, 'f', -1, 64)``, which Bytebase masks floats through.

    ``repr`` already gives the shortest digits that round-trip (Go picks the same ones); only the
    notation differs: Go never uses an exponent and never adds a ``.0``.
    """
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    text = repr(number)
    if "e" in text:
        return format(Decimal(text), "f")
    return text.removesuffix(".0")


def _go_timestamp(moment: datetime) -> str:
    """Bytebase's timestamp text: ``2006-01-02 15:04:05.000000`` when naive, else Go's
    ``time.RFC3339Nano`` (fraction without trailing zeros, ``Z`` for a zero offset)."""
    offset = moment.utcoffset()
    if offset is None:
        return moment.isoformat(sep=" ", timespec="microseconds")
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    seconds = int(offset.total_seconds())
    if not seconds:
        return f"{text}Z"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{text}{'-' if seconds < 0 else '+'}{hours:02d}:{minutes:02d}"


def _hash_input(value: object) -> bytes:
    """Bytes to hash: raw bytes as given (as Bytebase does), else the UTF-8 text form.

    ``surrogatepass`` keeps distinct strings distinct and never raises on a lone surrogate,
    which a masker on the hot path must not do.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return _text(value).encode("utf-8", "surrogatepass")


def _is_null_or_bool(value: object) -> bool:
    return value is None or isinstance(value, bool)


def _text_masker(mask_text: Callable[[str], str | None], null_mask: str = FULL_MASK) -> Masker:
    """Masker applying ``mask_text`` to a value's text form; NULL and booleans get ``null_mask``."""

    def mask(value: object) -> str | None:
        if type(value) is str:  # the common case first: this runs once per masked value
            return mask_text(value)
        if _is_null_or_bool(value):
            return null_mask
        return mask_text(_text(value))

    return mask


def _hash_masker(digest: Callable[[bytes], str]) -> Masker:
    """Masker hashing a value's bytes with ``digest``; NULL and booleans become ``******``."""

    def mask(value: object) -> str:
        if _is_null_or_bool(value):
            return FULL_MASK
        return digest(_hash_input(value))

    return mask


def _keyless(masker: Masker) -> _Build:
    return lambda _keys: masker


# --- Algorithm types --------------------------------------------------------------------------
# Each parser reads (and thereby validates) its fields and returns the build step.


def _full(fields: _Fields) -> _Build:
    substitution = fields.string("substitution", FULL_MASK)
    return _keyless(lambda _value: substitution)


def _null(fields: _Fields) -> _Build:
    return _keyless(lambda _value: None)


def _range(fields: _Fields) -> _Build:
    """Bytebase's RangeMasker: slices are ``[start, end)`` in code points, -1 meaning the end.

    Deviation: Bytebase merges slices in the order given and lets the later slice set the merged
    end, so a slice nested in an earlier one (or slices given out of order) unmasks characters an
    earlier slice covers. Here slices are sorted by start first and a merged slice ends where the
    furthest one does, which agrees with Bytebase whenever Bytebase masks every sliced character.
    An empty slice list, which Bytebase treats as "show the value", is rejected.
    """
    slices = []
    for item in fields.objects("slices"):
        slices.append((item.integer("start"), item.integer("end"), item.string("substitution", "*")))
        item.reject_unknown("a range slice")

    @lru_cache(maxsize=256)  # negative indexes depend on the length, which repeats a lot
    def spans(length: int) -> tuple[tuple[int, int, str], ...]:
        resolved = []
        for given_start, given_end, substitution in slices:
            start, end = _resolve(given_start, length), _resolve(given_end, length)
            if start > end:  # Bytebase's rule: a reversed slice masks the code point at start
                end = start + 1
            resolved.append((start, end, substitution))
        resolved.sort(key=itemgetter(0))
        merged: list[tuple[int, int, str]] = []
        for start, end, substitution in resolved:
            if merged and merged[-1][1] >= start:  # overlapping or adjacent: one substitution
                first_start, first_end, first_substitution = merged[-1]
                merged[-1] = (first_start, max(first_end, end), first_substitution)
            else:
                merged.append((start, end, substitution))
        return tuple(merged)

    def mask_text(text: str) -> str:
        length = len(text)
        parts: list[str] = []
        kept_from = 0
        for start, end, substitution in spans(length):
            if start >= length:  # slices starting at or past the end are dropped
                break
            parts += (text[kept_from:start], substitution)
            kept_from = min(end, length)
        parts.append(text[kept_from:])
        return "".join(parts)

    return _keyless(_text_masker(mask_text))


def _resolve(index: int, length: int) -> int:
    """Bytebase's index rule: negative indexes count from one past the end, clamped at 0."""
    return index if index >= 0 else max(length + index + 1, 0)


def _md5(fields: _Fields) -> _Build:
    """Bytebase's MD5Masker: ``md5(text + salt)``. Deviation: Bytebase answers the middle of a
    timestamptz instead of its hash (a bug that leaks it); here every value is hashed."""
    salt = fields.string("salt", "").encode("utf-8", "surrogatepass")

    def digest(data: bytes) -> str:
        return hashlib.md5(data + salt, usedforsecurity=False).hexdigest()

    return _keyless(_hash_masker(digest))


def _inner_outer(*, outer: bool) -> Callable[[_Fields], _Build]:
    """MySQL's mask_inner / mask_outer as Bytebase implements them.

    Margins whose sum exceeds the length leave the value unchanged; otherwise a negative margin
    gives NULL. Bytebase checks the sum first, so ``prefix_len=-1, suffix_len=100`` returns a
    short value unchanged rather than NULL; that order is kept. The substitution is repeated once
    per masked code point.
    """

    def parse(fields: _Fields) -> _Build:
        prefix = fields.integer("prefix_len")
        suffix = fields.integer("suffix_len")
        substitution = fields.string("substitution", "*", non_empty=True)
        negative = prefix < 0 or suffix < 0

        def mask_text(text: str) -> str | None:
            if prefix + suffix > len(text):
                return text
            if negative:
                return None
            hidden = len(text) - prefix - suffix
            if outer:
                return substitution * prefix + text[prefix : prefix + hidden] + substitution * suffix
            return text[:prefix] + substitution * hidden + text[prefix + hidden :]

        return _keyless(_text_masker(mask_text, null_mask=substitution * 6))

    return parse


def _default_partial(fields: _Fields) -> _Build:
    """Bytebase's bb.default-partial (DefaultRangeMasker): ``**`` + middle + ``**``.

    The middle is empty for 0-1 code points, the single middle one for 2-3, and otherwise the
    middle half of the value cut down to a multiple of four: ``text[q:3q]`` with ``q = len // 4``.
    """

    def mask_text(text: str) -> str:
        length = len(text)
        if length < 2:
            middle = ""
        elif length < 4:
            middle = text[length // 2]
        else:
            quarter = length // 4
            middle = text[quarter : 3 * quarter]
        return f"**{middle}**"

    return _keyless(_text_masker(mask_text))


def _email(fields: _Fields) -> _Build:
    """First code point of the local part, a fixed ``****``, then the whole domain.

    The domain is kept because it is rarely personal and useful for analysis; the fixed-length
    mask hides how long the local part is. A value without ``@`` is masked as ``******``.
    """

    def mask_text(text: str) -> str:
        # The domain is whatever follows the last @: local parts may contain a quoted @.
        local, at, domain = text.rpartition("@")
        if not at:
            return FULL_MASK
        return f"{local[:1]}{EMAIL_MASK}@{domain}"

    return _keyless(_text_masker(mask_text))


def _show(*, first: bool) -> Callable[[_Fields], _Build]:
    """Keep the first/last ``n`` code points, one substitution per other code point.

    A value of ``n`` code points or fewer is masked entirely (fail closed): showing all of a short
    value would silently turn the rule into no masking at all.
    """

    def parse(fields: _Fields) -> _Build:
        shown = fields.integer("n", minimum=0)
        substitution = fields.string("substitution", "*", non_empty=True)

        def mask_text(text: str) -> str:
            hidden = len(text) - shown
            if hidden <= 0:
                return substitution * len(text)
            if first:
                return text[:shown] + substitution * hidden
            return substitution * hidden + text[hidden:]

        return _keyless(_text_masker(mask_text))

    return parse


def _date_year(fields: _Fields) -> _Build:
    """The year alone (four digits) supports age bands without identifying a birth date.

    Anything that does not parse as a date is masked as ``******`` rather than shown.
    """

    def mask(value: object) -> str:
        if isinstance(value, date):  # datetime included
            return f"{value.year:04d}"
        if isinstance(value, str):
            try:
                return f"{_parse_iso(value).year:04d}"
            except ValueError:
                pass
        return FULL_MASK

    return _keyless(mask)


def _parse_iso(text: str) -> datetime:
    text = text.strip()
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not accept Z
        text = f"{text[:-1]}+00:00"
    return datetime.fromisoformat(text)


def _pseudonym(fields: _Fields) -> _Build:
    """Keyed, deterministic tokens: equal values give equal tokens, so joins across tables still
    work, while without the key nobody can confirm a guessed value (unlike ``md5``).

    Fewer than 8 hex digits would collide too often for joins on millions of values.
    """
    key_id = fields.string("key_id", non_empty=True)
    length = fields.integer("length", 16, minimum=8, maximum=64)
    prefix = fields.string("prefix", "")

    def build(keys: Keys | None) -> Masker:
        key = (keys or {}).get(key_id)
        if key is None:
            raise AlgorithmError(f"pseudonym: key {key_id!r} is not available")
        if not isinstance(key, bytes) or not key:
            raise AlgorithmError(f"pseudonym: key {key_id!r} must be non-empty bytes")

        keyed = hmac.new(key, digestmod=hashlib.sha256)  # the key schedule, once per compile

        def digest(data: bytes) -> str:
            token = keyed.copy()  # much cheaper than keying a fresh HMAC for every value
            token.update(data)
            return prefix + token.hexdigest()[:length]

        return _hash_masker(digest)

    return build


def _redact_text(fields: _Fields) -> _Build:
    """Personal data found inside free text replaced, the rest of the text kept (``free_text``).

    ``detect`` lists the detectors (all of them by default); ``replace`` is ``placeholder``
    (``<EMAIL>``) or ``pseudonym`` (``<EMAIL:`` + ``length`` hex digits of a keyed HMAC + ``>``,
    keyed like ``pseudonym`` by ``key_id``, so equal values give equal tokens).
    """
    detect = fields._get("detect", list(free_text.DETECTORS))
    if not isinstance(detect, list | tuple) or not detect:
        raise fields.error("detect", "must be a non-empty list")
    for index, kind in enumerate(detect):
        if kind not in free_text.DETECTORS:
            known = ", ".join(free_text.DETECTORS)
            raise fields.error(f"detect[{index}]", f"unknown detector {kind!r} (known: {known})")
    if len(set(detect)) != len(detect):
        raise fields.error("detect", "names a detector twice")
    kinds = tuple(detect)
    replace = fields.string("replace", "placeholder")
    if replace not in ("placeholder", "pseudonym"):
        raise fields.error("replace", "must be 'placeholder' or 'pseudonym'")
    if replace == "placeholder":
        if "key_id" in fields._values or "length" in fields._values:
            name = "key_id" if "key_id" in fields._values else "length"
            raise fields.error(name, "is only accepted with replace 'pseudonym'")
        return _keyless(_text_masker(free_text.redactor(kinds)))
    key_id = fields.string("key_id", non_empty=True)
    length = fields.integer("length", 12, minimum=8, maximum=64)

    def build(keys: Keys | None) -> Masker:
        key = (keys or {}).get(key_id)
        if key is None:
            raise AlgorithmError(f"redact_text: key {key_id!r} is not available")
        if not isinstance(key, bytes) or not key:
            raise AlgorithmError(f"redact_text: key {key_id!r} must be non-empty bytes")
        return _text_masker(free_text.redactor(kinds, key=key, length=length))

    return build


_TYPES: Mapping[str, tuple[str, Callable[[_Fields], _Build]]] = {
    "full": ("Replace every value, NULL included, with `substitution` (default ******).", _full),
    "range": (
        "Replace each code-point slice [start, end) with its `substitution`; -1 is the end.",
        _range,
    ),
    "md5": (
        "Lowercase hex MD5 of the value then `salt`; unkeyed, so guessable values can be confirmed.",
        _md5,
    ),
    "inner": (
        "MySQL mask_inner: keep `prefix_len` and `suffix_len` code points, mask those between.",
        _inner_outer(outer=False),
    ),
    "outer": (
        "MySQL mask_outer: mask `prefix_len` leading and `suffix_len` trailing code points.",
        _inner_outer(outer=True),
    ),
    "default_partial": (
        "Bytebase's default partial mask: the middle half of the value between ** and **.",
        _default_partial,
    ),
    "email": (
        "Keep the local part's first character and the domain: a****@example.com.",
        _email,
    ),
    "show_first": (
        "Keep the first `n` code points and mask the rest; shorter values are fully masked.",
        _show(first=True),
    ),
    "show_last": (
        "Keep the last `n` code points and mask the rest; shorter values are fully masked.",
        _show(first=False),
    ),
    "null": ("Replace every value with NULL.", _null),
    "date_year": (
        "Keep only the year of a date, datetime or ISO-8601 string; anything else is ******.",
        _date_year,
    ),
    "pseudonym": (
        "Keyed token: `prefix` + `length` hex digits of HMAC-SHA256 under the key `key_id`.",
        _pseudonym,
    ),
    "redact_text": (
        "Personal data inside free text (`detect`: email, phone, card, national_id, iban, secret)"
        " replaced by `<EMAIL>` placeholders, or keyed pseudonyms with `replace` 'pseudonym'.",
        _redact_text,
    ),
}

ALGORITHM_TYPES: Mapping[str, str] = MappingProxyType(
    {name: description for name, (description, _) in _TYPES.items()}
)
"""Every supported ``type`` with a one-line description, for documentation and admin UIs."""


def _parse(algorithm: Mapping[str, object]) -> _Build:
    if not isinstance(algorithm, Mapping):
        raise AlgorithmError("algorithm: must be a JSON object")
    fields = _Fields(algorithm)
    kind = fields.string("type")
    if kind not in _TYPES:
        raise fields.error("type", f"unknown algorithm type {kind!r} (known: {', '.join(_TYPES)})")
    build = _TYPES[kind][1](fields)
    fields.reject_unknown(f"type {kind!r}")
    return build


def validate(algorithm: Mapping[str, object]) -> None:
    """Reject a malformed algorithm before it is saved, rather than when data is first masked.

    Keys are not needed: a ``pseudonym`` algorithm only names its key. Raises ``AlgorithmError``
    naming the offending field, e.g. ``slices[1].start: must be an integer``.
    """
    _parse(algorithm)


def compile(algorithm: Mapping[str, object], *, keys: Keys | None = None) -> Masker:
    """Validate ``algorithm`` once and return a function masking one value at a time.

    Compile once per column and reuse the result: masking is on the hot path of data-access
    layers. The masker keeps its own copy of the parameters, so later edits to ``algorithm`` do
    not affect it.

    Raises ``AlgorithmError`` for a malformed algorithm, and for a ``pseudonym`` whose key is not
    in ``keys``. Callers that must fail closed catch it and mask with ``compile({"type":
    "full"})`` instead of leaving the column unmasked.
    """
    return _parse(algorithm)(keys)


def apply(algorithm: Mapping[str, object], value: object, *, keys: Keys | None = None) -> str | None:
    """Mask a single value; prefer ``compile`` when masking more than one."""
    return compile(algorithm, keys=keys)(value)
