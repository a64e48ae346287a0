"""Veil's masking algorithms, checked against Bytebase's own test vectors where Bytebase defines
the behaviour (bytebase/bytebase backend/component/masker/masker_test.go) and against fixed
input/output pairs and properties elsewhere. None of these tests needs the database."""

import hashlib
import hmac
import math
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from veil_sdk import algorithms
from veil_sdk.algorithms import ALGORITHM_TYPES, FULL_MASK, AlgorithmError, apply, compile, validate

SDK_DIR = Path(__file__).resolve().parents[2] / "sdk"

KEYS = {"k1": b"first key", "k2": b"second key"}

# Outer masking with zero margins shows the whole text form: a public way to observe it.
text_form = compile({"type": "outer", "prefix_len": 0, "suffix_len": 0})


def range_algorithm(*slices: tuple[int, int, str]) -> dict:
    return {
        "type": "range",
        "slices": [{"start": s, "end": e, "substitution": sub} for s, e, sub in slices],
    }


# --- Bytebase test vectors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "slices", "expected"),
    [
        # TestRangeMask, case by case.
        ("012345678", [(1, 3, "###")], "0###345678"),  # single slice
        ("012345678", [(1, -1, "***")], "0***"),  # only keep 1st raw value
        ("012345678", [(-4, -1, "***")], "012345***"),  # mask last 3 values
        ("012345678", [(1, 3, "###"), (5, 7, "***")], "0###34***78"),  # multiple slices
        ("012345678", [(0, 2, "###"), (-2, -1, "***")], "###234567***"),
        ("0123", [(1, 2, "#"), (4, 10, "***")], "0#23"),  # slices out of data range
        ("😂😠😡😊😂", [(1, 4, "😂😂😂")], "😂😂😂😂😂"),  # emoji
    ],
)
def test_range_matches_bytebase(value, slices, expected):
    assert apply(range_algorithm(*slices), value) == expected


@pytest.mark.parametrize(
    ("value", "kind", "prefix", "suffix", "substitution", "expected"),
    [
        # TestInnerOuterMask, case by case (the bool case is from its earlier revision).
        ("012345678", "outer", 1, 3, "#", "#12345###"),
        (1, "outer", 2, 3, "*", "1"),  # margins exceed the length: unchanged
        (True, "outer", 2, 3, "*", "******"),
        (123.4567, "outer", 1, 2, "*", "*23.45**"),
        (27865874362589245, "inner", 6, 3, "*", "278658********245"),
        ("😂😠😡😊😂", "inner", 1, 1, "xx", "😂xxxxxx😂"),  # substitution repeated per code point
        (None, "inner", 1, 2, "*", "******"),
        ("1234", "inner", 1000, 10000, "*", "1234"),
        ("Love this LMG", "inner", -1, 1, "*", None),  # a negative margin gives NULL
    ],
)
def test_inner_outer_match_bytebase(value, kind, prefix, suffix, substitution, expected):
    algorithm = {
        "type": kind,
        "prefix_len": prefix,
        "suffix_len": suffix,
        "substitution": substitution,
    }
    assert apply(algorithm, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # TestMiddle_Byte and TestMiddle_Rune, wrapped in the ** padding of DefaultRangeMasker.
        ("12", "**2**"),
        ("123", "**2**"),
        ("12345678", "**3456**"),
        (12345678, "**3456**"),  # Bytebase takes the middle of an integer's digits
        ("🥲🤣🥲🤣", "**🤣🥲**"),
        ("abcdefghijklmnopqrstuvwxyzabcdef", "**ijklmnopqrstuvwx**"),
        # Short values: the middle is empty, then a single code point.
        ("", "****"),
        ("a", "****"),
        ("abcde", "**bc**"),  # cut to four code points, then their middle half
        (None, FULL_MASK),
        (False, FULL_MASK),
    ],
)
def test_default_partial_matches_bytebase(value, expected):
    assert apply({"type": "default_partial"}, value) == expected


# --- Text forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Go's strconv.FormatFloat(f, 'f', -1, 64): shortest digits, no exponent, no ".0".
        (1.0, "1"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (-0.0, "-0"),
        (1e-7, "0.0000001"),
        (2.5e-5, "0.000025"),
        (1e16, "10000000000000000"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123.4567, "123.4567"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (-42, "-42"),
        (2**70, "1180591620717411303424"),
        (b"abc", "abc"),
        (b"\xffab", "\ufffdab"),  # invalid UTF-8 becomes U+FFFD
        (bytearray(b"xyz"), "xyz"),
        (memoryview(b"mv"), "mv"),
        (Decimal("123.4500"), "123.4500"),
        (Decimal("1E-7"), "0.0000001"),
        (date(1990, 5, 17), "1990-05-17"),
        # Bytebase's timestamp formats: naive with microseconds, aware as RFC 3339 nano.
        (datetime(1990, 5, 17, 10, 0), "1990-05-17 10:00:00.000000"),
        (datetime(1990, 5, 17, 10, 0, 0, 120000, tzinfo=UTC), "1990-05-17T10:00:00.12Z"),
        (
            datetime(1990, 5, 17, 10, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            "1990-05-17T10:00:00-05:30",
        ),
    ],
)
def test_values_are_masked_through_their_text_form(value, expected):
    assert text_form(value) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_form_round_trips_without_exponent(number):
    text = text_form(number)
    assert "e" not in text
    assert float(text) == number
    assert math.copysign(1, float(text)) == math.copysign(1, number)


def test_positions_count_code_points():
    show_last_one = compile({"type": "show_last", "n": 1})
    assert show_last_one("e\u0301t\u00e9") == "***\u00e9"  # a combining accent is a code point
    assert show_last_one("中文字符") == "***符"
    assert show_last_one("👩‍💻x") == "***x"  # a ZWJ emoji sequence is three code points
    assert apply(range_algorithm((0, 1, "#")), "👍🏽ok") == "#🏽ok"


# --- Other types --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["secret", "", None, True, 0, 1.5, b"raw", date(2000, 1, 1)])
def test_full_replaces_everything(value):
    assert apply({"type": "full"}, value) == FULL_MASK
    assert apply({"type": "full", "substitution": "[hidden]"}, value) == "[hidden]"


@pytest.mark.parametrize(
    ("algorithm", "value", "expected"),
    [
        ({"type": "md5"}, "abc", "900150983cd24fb0d6963f7d28e17f72"),
        ({"type": "md5"}, "", "d41d8cd98f00b204e9800998ecf8427e"),
        ({"type": "md5", "salt": "c"}, "ab", "900150983cd24fb0d6963f7d28e17f72"),  # value + salt
        ({"type": "md5", "salt": "3"}, 12, "202cb962ac59075b964b07152d234b70"),  # md5("123")
        ({"type": "md5"}, 1.0, "c4ca4238a0b923820dcc509a6f75849b"),  # md5("1")
        ({"type": "md5"}, None, FULL_MASK),
        ({"type": "md5"}, True, FULL_MASK),
    ],
)
def test_md5(algorithm, value, expected):
    assert apply(algorithm, value) == expected


def test_md5_hashes_raw_bytes():
    invalid_utf8 = b"\xff\xfe-id"
    expected = hashlib.md5(invalid_utf8 + b"s", usedforsecurity=False).hexdigest()
    assert apply({"type": "md5", "salt": "s"}, invalid_utf8) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.com", "a****@example.com"),
        ("bo@x.org", "b****@x.org"),  # fixed-length mask: the local part's length does not leak
        ("élodie@exemple.fr", "é****@exemple.fr"),
        ('"a@b"@example.com', '"****@example.com'),  # the domain follows the last @
        ("@example.com", "****@example.com"),
        ("alice@", "a****@"),
        ("not an email", FULL_MASK),
        ("", FULL_MASK),
        (None, FULL_MASK),
        (False, FULL_MASK),
    ],
)
def test_email(value, expected):
    assert apply({"type": "email"}, value) == expected


@pytest.mark.parametrize(
    ("algorithm", "value", "expected"),
    [
        ({"type": "show_last", "n": 4}, "4111111111111111", "************1111"),
        ({"type": "show_first", "n": 4}, "4111111111111111", "4111************"),
        ({"type": "show_first", "n": 2, "substitution": "#"}, "secret", "se####"),
        ({"type": "show_last", "n": 0}, "abc", "***"),
        # n >= length: the whole value is masked rather than shown.
        ({"type": "show_last", "n": 4}, "1234", "****"),
        ({"type": "show_first", "n": 10}, "short", "*****"),
        ({"type": "show_first", "n": 1}, "", ""),
        ({"type": "show_last", "n": 2}, 5551234, "*****34"),
        ({"type": "show_last", "n": 2}, None, FULL_MASK),
        ({"type": "show_first", "n": 2}, True, FULL_MASK),
    ],
)
def test_show_first_and_last(algorithm, value, expected):
    assert apply(algorithm, value) == expected


@pytest.mark.parametrize("value", ["x", "", None, False, 42, b"bytes"])
def test_null_returns_none(value):
    assert apply({"type": "null"}, value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(1990, 5, 17), "1990"),
        (datetime(1990, 5, 17, 23, 59, tzinfo=UTC), "1990"),
        ("1990-05-17", "1990"),
        ("1990-05-17T10:00:00Z", "1990"),
        ("1990-12-31T23:00:00-05:00", "1990"),  # the year as written, not converted to UTC
        (" 1990-05-17 10:00:00 ", "1990"),
        ("0099-01-01", "0099"),
        ("1990-13-01", FULL_MASK),
        ("17/05/1990", FULL_MASK),
        ("", FULL_MASK),
        (19900517, FULL_MASK),
        (None, FULL_MASK),
        (True, FULL_MASK),
    ],
)
def test_date_year(value, expected):
    assert apply({"type": "date_year"}, value) == expected


def test_range_merges_overlapping_and_adjacent_slices_under_the_first_substitution():
    assert apply(range_algorithm((1, 3, "A"), (3, 5, "B")), "0123456") == "0A56"
    assert apply(range_algorithm((1, 4, "A"), (2, 6, "B")), "0123456") == "0A6"


def test_range_never_unmasks_a_nested_or_out_of_order_slice():
    # Bytebase would let the later, nested slice shrink the merged one and reveal "456".
    assert apply(range_algorithm((1, 8, "#"), (2, 3, "*")), "0123456789") == "0#89"
    assert apply(range_algorithm((5, 7, "*"), (1, 3, "#")), "012345678") == "0#34*78"


def test_range_edge_cases():
    assert apply(range_algorithm((5, 2, "#")), "0123456") == "01234#6"  # reversed: one code point
    assert apply(range_algorithm((-100, 2, "#")), "0123") == "#23"  # clamped at the start
    assert apply(range_algorithm((0, 2, "#")), "") == ""
    assert apply(range_algorithm((1, 2, "#")), 12.5) == "1#.5"
    assert apply(range_algorithm((0, 1, "#")), None) == FULL_MASK
    assert apply(range_algorithm((0, 1, "#")), True) == FULL_MASK


def test_inner_outer_edge_cases():
    outer = {"type": "outer", "prefix_len": 2, "suffix_len": 2, "substitution": "#"}
    assert apply(outer, "abcd") == "####"  # margins equal to the length mask everything
    assert apply(outer, None) == "######"  # NULL: the substitution six times, as Bytebase
    inner = {"type": "inner", "prefix_len": 2, "suffix_len": 2}
    assert apply(inner, "abcd") == "abcd"
    assert apply(inner, "abcdef") == "ab**ef"
    # Bytebase checks the margins' sum before their sign.
    assert apply({**inner, "prefix_len": -1, "suffix_len": 100}, "short") == "short"
    assert apply({**inner, "prefix_len": -1, "suffix_len": 1}, "short") is None


# --- Pseudonym ----------------------------------------------------------------------------------


def test_pseudonym_is_hmac_sha256_truncated_with_prefix():
    # RFC 4231 test case 2.
    keys = {"jefe": b"Jefe"}
    full = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    algorithm = {"type": "pseudonym", "key_id": "jefe", "length": 64}
    assert apply(algorithm, "what do ya want for nothing?", keys=keys) == full
    short = {"type": "pseudonym", "key_id": "jefe", "prefix": "cust_"}
    assert apply(short, "what do ya want for nothing?", keys=keys) == "cust_" + full[:16]
    assert apply(short, None, keys=keys) == FULL_MASK


def test_pseudonym_needs_its_key_at_compile_time_only():
    algorithm = {"type": "pseudonym", "key_id": "k1", "length": 16}
    validate(algorithm)  # admins save it without ever seeing the key
    with pytest.raises(AlgorithmError, match=r"^pseudonym: key 'k1' is not available$"):
        compile(algorithm)
    with pytest.raises(AlgorithmError, match="not available"):
        compile(algorithm, keys={"other": b"x"})
    with pytest.raises(AlgorithmError, match="must be non-empty bytes"):
        compile(algorithm, keys={"k1": b""})


def test_pseudonym_hashes_raw_bytes():
    key = KEYS["k1"]
    expected = hmac.new(key, b"\x00\xff", hashlib.sha256).hexdigest()[:16]
    assert apply({"type": "pseudonym", "key_id": "k1"}, b"\x00\xff", keys=KEYS) == expected


@given(value=st.text() | st.integers() | st.binary())
def test_pseudonym_is_deterministic_and_key_dependent(value):
    algorithm = {"type": "pseudonym", "key_id": "k1", "length": 64}
    first = compile(algorithm, keys=KEYS)(value)
    assert first == compile(algorithm, keys=KEYS)(value)
    assert first != compile(algorithm, keys={"k1": KEYS["k2"]})(value)


@given(st.text(), st.text())
def test_pseudonym_separates_distinct_values(left, right):
    assume(left != right)
    mask = compile({"type": "pseudonym", "key_id": "k1", "length": 64}, keys=KEYS)
    assert mask(left) != mask(right)


# --- Masks never return the raw value -----------------------------------------------------------

raw_values = st.none() | st.booleans() | st.text() | st.integers() | st.floats() | st.binary() | st.dates()


@given(raw_values, st.text())
def test_full_never_returns_the_value(value, substitution):
    assume(value != substitution)  # the one value a full mask reproduces is its substitution
    assert apply({"type": "full", "substitution": substitution}, value) == substitution


@given(raw_values, st.text())
def test_md5_never_returns_the_value(value, salt):
    masked = apply({"type": "md5", "salt": salt}, value)
    assert masked != value
    if not (value is None or isinstance(value, bool)):
        assert masked != text_form(value)
        assert len(masked) == 32


@given(st.text(), st.text(), st.booleans())
def test_email_never_returns_the_value(local, domain, with_at):
    value = f"{local}@{domain}" if with_at else local.replace("@", "")
    # The only values an email mask reproduces are ones already in masked form.
    assume(value.rpartition("@")[0][1:] != "****" and value != FULL_MASK)
    assert apply({"type": "email"}, value) != value


@given(raw_values.filter(lambda value: value is not None))
def test_null_never_returns_the_value(value):
    assert apply({"type": "null"}, value) is None


@given(st.text(), st.integers(min_value=0, max_value=20), st.booleans())
def test_show_reveals_at_most_n_code_points(value, n, first):
    masked = apply({"type": "show_first" if first else "show_last", "n": n}, value)
    assert len(masked) == len(value)
    assert sum(1 for a, b in zip(masked, value, strict=True) if a == b and a != "*") <= n


# --- Validation ---------------------------------------------------------------------------------


def test_every_listed_type_compiles():
    minimal = {
        "range": {"slices": [{"start": 0, "end": 1}]},
        "inner": {"prefix_len": 1, "suffix_len": 1},
        "outer": {"prefix_len": 1, "suffix_len": 1},
        "show_first": {"n": 1},
        "show_last": {"n": 1},
        "pseudonym": {"key_id": "k1"},
    }
    for kind, description in ALGORITHM_TYPES.items():
        assert description
        masker = compile({"type": kind, **minimal.get(kind, {})}, keys=KEYS)
        value = "mail value@example.com" if kind == "redact_text" else "value"  # masks what it finds
        assert masker(value) != value


@pytest.mark.parametrize(
    ("algorithm", "message"),
    [
        (["full"], "algorithm: must be a JSON object"),
        ({}, "type: is required"),
        ({"type": 3}, "type: must be a string"),
        ({"type": "bogus"}, "type: unknown algorithm type 'bogus' (known: full, range, "),
        ({"type": "full", "substitution": None}, "substitution: must be a string"),
        ({"type": "full", "subsitution": "#"}, "subsitution: unknown field for type 'full' (accepted: "),
        ({"type": "email", "n": 1}, "n: unknown field for type 'email' (accepted: type)"),
        ({"type": "md5", "salt": 1}, "salt: must be a string"),
        ({"type": "range"}, "slices: is required"),
        ({"type": "range", "slices": []}, "slices: must be a non-empty list"),
        ({"type": "range", "slices": "0-2"}, "slices: must be a non-empty list"),
        ({"type": "range", "slices": [1]}, "slices[0]: must be a JSON object"),
        (
            {"type": "range", "slices": [{"start": 0, "end": 1}, {"start": "1", "end": 2}]},
            "slices[1].start: must be an integer",
        ),
        ({"type": "range", "slices": [{"start": 0, "end": 1.0}]}, "slices[0].end: must be an integer"),
        ({"type": "range", "slices": [{"start": True, "end": 1}]}, "slices[0].start: must be an integer"),
        ({"type": "range", "slices": [{"start": 0}]}, "slices[0].end: is required"),
        (
            {"type": "range", "slices": [{"start": 0, "end": 1, "sub": "#"}]},
            "slices[0].sub: unknown field for a range slice (accepted: end, start, substitution)",
        ),
        ({"type": "inner", "suffix_len": 1}, "prefix_len: is required"),
        ({"type": "outer", "prefix_len": 1, "suffix_len": "2"}, "suffix_len: must be an integer"),
        (
            {"type": "inner", "prefix_len": 1, "suffix_len": 1, "substitution": ""},
            "substitution: must be a non-empty string",
        ),
        ({"type": "show_first"}, "n: is required"),
        ({"type": "show_last", "n": -1}, "n: must be an integer >= 0"),
        ({"type": "show_last", "n": 2.5}, "n: must be an integer"),
        ({"type": "pseudonym"}, "key_id: is required"),
        ({"type": "pseudonym", "key_id": ""}, "key_id: must be a non-empty string"),
        ({"type": "pseudonym", "key_id": "k1", "length": 4}, "length: must be an integer between 8 and 64"),
        ({"type": "pseudonym", "key_id": "k1", "length": 65}, "length: must be an integer between 8 and 64"),
        ({"type": "pseudonym", "key_id": "k1", "key": "s3cret"}, "key: unknown field for type 'pseudonym'"),
    ],
)
def test_validate_names_the_offending_field(algorithm, message):
    with pytest.raises(AlgorithmError) as error:
        validate(algorithm)
    assert str(error.value).startswith(message)
    with pytest.raises(AlgorithmError):
        compile(algorithm, keys=KEYS)


def test_algorithm_error_is_a_value_error():
    assert issubclass(AlgorithmError, ValueError)


def test_compiled_masker_ignores_later_edits_to_the_algorithm():
    algorithm = {"type": "show_first", "n": 1}
    mask = compile(algorithm)
    algorithm["n"] = 5
    assert mask("secret") == "s*****"


def test_range_resolves_negative_indexes_per_length():
    mask = compile(range_algorithm((1, -2, "#")))
    # At length 2 the slice is the empty [1, 1): Bytebase still inserts the substitution.
    assert [mask("x" * length) for length in range(6)] == ["", "x", "x#x", "x#x", "x#x", "x#x"]
    assert mask("abcdef") == "a#f"


# --- No Django ----------------------------------------------------------------------------------


def test_module_imports_and_works_with_the_standard_library_only():
    # -I ignores the environment and user site, -S skips site-packages: only the stdlib and sdk/.
    code = (
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {str(SDK_DIR)!r})\n"
        "import veil_sdk.algorithms as algorithms\n"
        "assert importlib.util.find_spec('django') is None, 'django is importable'\n"
        "assert 'django' not in sys.modules\n"
        "print(algorithms.apply({'type': 'email'}, 'alice@example.com'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "a****@example.com"
    assert algorithms.__file__ is not None
    assert Path(algorithms.__file__).resolve().is_relative_to(SDK_DIR)
