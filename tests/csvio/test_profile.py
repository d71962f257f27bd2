"""The column profile (csvault/csvio/profile.py): each rule, the C implementation
against the Python reference (exactly equal, estimates included), blocks against rows,
and the facts of a public dataset."""

from __future__ import annotations

import csv
import math
import random
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csvault.csvio.blocks import grid_block, row_list_block
from csvault.csvio.fastcsv import FastBlocks
from csvault.csvio.limits import CsvLimits
from csvault.csvio.profile import (
    C_AVAILABLE,
    TOKENS,
    Profiler,
    _hash64,
    c_profiler,
    distinct_bound,
    py_profiler,
)
from tests.csvio.examples import examples

DATA = Path(__file__).parent / "data"
needs_c = pytest.mark.skipif(
    not C_AVAILABLE, reason="C fast path not built (CI fails on this: CSVAULT_TEST_EXPECT)"
)
Make = Callable[..., Profiler]


def _c(width: int, *, decimal_comma: bool) -> Profiler:
    profiler = c_profiler(width, decimal_comma=decimal_comma)
    assert profiler is not None
    return profiler


@pytest.fixture(params=[pytest.param(py_profiler, id="python"), pytest.param(_c, id="c")])
def make(request: pytest.FixtureRequest) -> Make:
    if request.param is _c and not C_AVAILABLE:
        pytest.skip("C fast path not built (CI fails on this: CSVAULT_TEST_EXPECT)")
    return request.param


def grid(rows: Sequence[Sequence[str]]) -> bytes:
    block = grid_block(rows)
    assert block is not None
    return block


def column(make: Make, values: Sequence[str], *, decimal_comma: bool = False) -> dict[str, Any]:
    """The result for one column of ``values``, fed as grid blocks of 3 rows."""
    profiler = make(1, decimal_comma=decimal_comma)
    rows = [[value] for value in values]
    profiler.feed_blocks([grid(rows[i : i + 3]) for i in range(0, len(rows), 3)])
    result: dict[str, Any] = profiler.result(["c"])[0]
    assert result["count"] + result["nulls"] == len(values)
    return result


def summary(result: dict[str, Any]) -> tuple[object, ...]:
    return result["type"], result["count"], result["nulls"], result["min"], result["max"]


# --- the rules, one by one ------------------------------------------------------------


def test_the_default_profiler_is_the_c_one_when_it_is_built() -> None:
    profiler = Profiler(2, decimal_comma=False)
    assert profiler.native == C_AVAILABLE
    assert not py_profiler(2, decimal_comma=False).native


@pytest.mark.parametrize("token", TOKENS)
def test_a_token_is_null_in_a_numeric_column(make, token) -> None:
    result = column(make, ["1", token, "", "3", token])
    assert summary(result) == ("integer", 2, 3, 1, 3)
    assert (result["distinct"], result["examples"]) == (2, ["1", "3"])
    assert summary(column(make, ["1.5", token])) == ("number", 1, 1, 1.5, 1.5)


@pytest.mark.parametrize("token", TOKENS)
def test_a_token_is_text_in_another_column_or_alone(make, token) -> None:
    result = column(make, ["x", token, ""])
    assert summary(result) == ("text", 2, 1, None, None)
    assert (result["distinct"], result["examples"]) == (2, ["x", token])
    for values in ([token, token], ["true", token], ["2020-01-01", token], ["1", "x", token]):
        result = column(make, values)
        assert (result["type"], result["nulls"]) == ("text", 0)
        assert result["distinct"] == len(set(values))


@pytest.mark.parametrize("value", ["na", "Null", "nan", "NAN", "n/a", "--", " NA", "None"])
def test_tokens_are_exact_and_case_sensitive(make, value) -> None:
    assert summary(column(make, ["1", value])) == ("text", 2, 0, None, None)


def test_empty_values_are_null_and_an_empty_column_is_text(make) -> None:
    assert summary(column(make, ["", "", ""])) == ("text", 0, 3, None, None)
    result = column(make, ["", "5", ""])
    assert summary(result) == ("integer", 1, 2, 5, 5)
    assert result["distinct"] == 1


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["0", "-7", "+12", "007"], ("integer", 4, 0, -7, 12)),
        (
            ["999999999999999999", "-999999999999999999"],
            ("integer", 2, 0, -(10**18 - 1), 10**18 - 1),
        ),
        (["1234567890123456789"], ("number", 1, 0, 1234567890123456789.0, 1234567890123456789.0)),
        (["1", "2.5"], ("number", 2, 0, 1.0, 2.5)),
        ([".5", "5.", "1e5", "-2E-3", "+1.5e+2"], ("number", 5, 0, -0.002, 100000.0)),
        (["1" * 400], ("text", 1, 0, None, None)),  # inf as a double
        (["1e999"], ("text", 1, 0, None, None)),
        (["1e-999", "2"], ("number", 2, 0, 0.0, 2.0)),
        (["1", "inf"], ("text", 2, 0, None, None)),
        (["1", " 1"], ("text", 2, 0, None, None)),
        (["1", "1_000"], ("text", 2, 0, None, None)),  # Python's float() would take it
        (["1", "1,000"], ("text", 2, 0, None, None)),
        (["1", "١٢"], ("text", 2, 0, None, None)),  # digits, not ASCII ones
        (["+"], ("text", 1, 0, None, None)),
        (["."], ("text", 1, 0, None, None)),
        (["1e"], ("text", 1, 0, None, None)),
        (["e5"], ("text", 1, 0, None, None)),
        (["0x10"], ("text", 1, 0, None, None)),
    ],
)
def test_integers_and_numbers(make, values, expected) -> None:
    assert summary(column(make, values)) == expected


def test_numbers_are_correctly_rounded_doubles(make) -> None:
    values = ["0.1", "2.2250738585072011e-308", "9007199254740993", "123456789012345678", "1e23"]
    for value in values:
        result = column(make, [value, "1e300"])
        assert result["min"] == float(value)


def test_a_decimal_comma_is_a_number_only_when_asked(make) -> None:
    assert summary(column(make, ["1,5", "-2,25", "3"], decimal_comma=True)) == (
        "number", 3, 0, -2.25, 3.0,
    )  # fmt: skip
    assert summary(column(make, ["1,5", "3"])) == ("text", 2, 0, None, None)
    assert summary(column(make, ["1.5"], decimal_comma=True)) == ("number", 1, 0, 1.5, 1.5)
    for value in ("1,5e3", ",5", "5,", "1,2,3"):
        assert column(make, [value], decimal_comma=True)["type"] == "text"


def test_booleans_in_any_case(make) -> None:
    result = column(make, ["true", "FALSE", "Yes", "nO", "TrUe"])
    assert summary(result) == ("boolean", 5, 0, None, None)
    assert result["distinct"] == 5  # distinct as text
    assert column(make, ["true", "t"])["type"] == "text"
    assert column(make, ["true", "1"])["type"] == "text"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2020-02-29", "date"),
        ("2000-02-29", "date"),
        ("2019-02-29", "text"),
        ("1900-02-29", "text"),
        ("0001-01-01", "date"),
        ("9999-12-31", "date"),
        ("0000-01-01", "text"),
        ("2020-13-01", "text"),
        ("2020-04-31", "text"),
        ("2020-1-01", "text"),
        ("2020-01-01T00:00", "datetime"),
        ("2020-01-01 23:59:59", "datetime"),
        ("2020-01-01T23:59:59.123456789Z", "datetime"),
        ("2020-01-01T10:00:00.1234567890", "text"),
        ("2020-01-01T10:00:00.", "text"),
        ("2020-01-01T10:00.5", "text"),
        ("2020-01-01T10:00+05:30", "datetime"),
        ("2020-01-01T10:00:00-23:59", "datetime"),
        ("2020-01-01T10:00+24:00", "text"),
        ("2020-01-01T10:00Z+01:00", "text"),
        ("2020-01-01T24:00", "text"),
        ("2020-01-01T10:60", "text"),
        ("2020-01-01T10:00:60", "text"),
        ("2020-01-01t10:00", "text"),
        ("2020-01-01T10", "text"),
        ("2020-02-30T10:00", "text"),
    ],
)
def test_dates_and_datetimes(make, value, kind) -> None:
    result = column(make, [value])
    assert result["type"] == kind
    if kind != "text":
        assert result["min"] == result["max"] == value


def test_dates_are_datetimes_and_compare_as_text(make) -> None:
    result = column(make, ["2020-01-02", "2020-01-01T10:00", "2019-12-31 23:00", "2020-01-02"])
    assert summary(result) == ("datetime", 4, 0, "2019-12-31 23:00", "2020-01-02")
    assert column(make, ["2020-01-01", "2020-01-01T00:00"])["max"] == "2020-01-01T00:00"


def test_the_first_of_integer_number_boolean_date_datetime_wins(make) -> None:
    assert column(make, ["1"])["type"] == "integer"
    assert column(make, ["1", "1.0"])["type"] == "number"
    assert column(make, ["1", "true"])["type"] == "text"
    assert column(make, ["2020-01-01", "1"])["type"] == "text"


def test_a_tie_keeps_the_first_value_seen(make) -> None:
    for values, sign in ((["0.0", "-0.0"], 1.0), (["-0.0", "0.0"], -1.0), (["-0", "0.0"], -1.0)):
        result = column(make, values)
        assert result["type"] == "number"
        assert math.copysign(1.0, result["min"]) == math.copysign(1.0, result["max"]) == sign


def test_examples_are_the_first_five_distinct_values_cut_to_64_characters(make) -> None:
    long_e, long_smile, long_ascii = "é" * 70, "😀" * 65, "x" * 64
    values = ["b", "", "a", "b", long_e, "NA", long_smile, "a", long_ascii, "c", "d"]
    result = column(make, values)
    assert result["examples"] == ["b", "a", "é" * 64, "NA", "😀" * 64]
    assert result["distinct"] == 8
    numbers = column(make, ["NA", "1", "-", "2", "N/A", "3", "4", "1", "5", "6"])
    assert numbers["examples"] == ["1", "2", "3", "4", "5"]
    assert (numbers["type"], numbers["nulls"], numbers["distinct"]) == ("integer", 3, 6)


def test_distinct_values_are_exact_up_to_the_bound() -> None:
    assert [distinct_bound(w) for w in (1, 8, 100, 101, 200, 1000, 4000)] == [
        10_000, 10_000, 10_000, 9_900, 5_000, 1_000, 256,
    ]  # fmt: skip


def test_the_hash_of_values_is_the_documented_one() -> None:
    # Values of up to 8 bytes and equal length never collide.
    assert len({_hash64(bytes([a, b])) for a in range(256) for b in range(256)}) == 65536
    assert _hash64(b"ab") != _hash64(b"ab\x00")
    assert _hash64(b"12345678") == 0x20F3193EA3200383


# --- what is refused ---------------------------------------------------------------------


def _header(rows: int, width: int) -> bytes:
    return bytes([2]) + rows.to_bytes(4, "big") + width.to_bytes(4, "big")


BAD_BLOCKS = [
    pytest.param(_header(1, 3) + b"a\x00b\x00c", id="another width"),
    pytest.param(_header(0, 2) + b"", id="no rows"),
    pytest.param(_header(2, 2) + b"a\x00b\x00c", id="too few values"),
    pytest.param(_header(1, 2) + b"a\x00b\x00c", id="too many values"),
    pytest.param(_header(1, 2) + b"a\x00\xff", id="not UTF-8"),
    pytest.param(_header(1, 2) + b"a\x00\xed\xa0\x80", id="a surrogate"),
    pytest.param(_header(1, 2)[:7], id="short header"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\x05abc", id="unknown format"),
]


@pytest.mark.parametrize("block", BAD_BLOCKS)
def test_a_malformed_block_is_a_value_error_and_the_profiler_is_spent(make, block) -> None:
    profiler = make(2, decimal_comma=False)
    profiler.feed_blocks([grid([["1", "2"]])])
    with pytest.raises(ValueError):  # noqa: PT012 - several blocks
        profiler.feed_blocks([grid([["3", "4"]]), block])
        profiler.result(["a", "b"])


def test_rows_of_another_width_or_type_are_refused_and_change_nothing(make) -> None:
    profiler = make(2, decimal_comma=False)
    profiler.feed_rows([["1", "2"]])
    with pytest.raises(ValueError):
        profiler.feed_rows([["1", "2"], ["3"]])
    with pytest.raises(TypeError):
        profiler.feed_rows([["1", 2]])
    with pytest.raises(TypeError):
        profiler.feed_rows(["12"])
    assert profiler.rows == 1
    assert profiler.result(["a", "b"])[0]["count"] == 1
    with pytest.raises(ValueError):
        profiler.feed_rows([["\ud800", "x"]])  # a lone surrogate: no UTF-8
    with pytest.raises(ValueError):
        profiler.feed_rows([["1", "2"]])


def test_the_width_must_be_positive(make) -> None:
    with pytest.raises(ValueError):
        make(0, decimal_comma=False)


def test_the_names_must_match_the_width(make) -> None:
    with pytest.raises(ValueError):
        make(2, decimal_comma=False).result(["a"])


# --- C against Python -----------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.integers(0, 999).map(lambda i: f"+{i:05d}"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-1e6, 1e6).map(lambda f: f"{f:.2f}"),
    st.floats(allow_nan=False).map(lambda f: f"{f:e}"),
    st.from_regex(r"[+-]?[0-9]{1,6},[0-9]{1,4}", fullmatch=True),
    st.from_regex(
        r"[+-]?([0-9]{0,25}\.[0-9]{0,25}|[0-9]{1,3})([eE][+-]?[0-9]{1,4})?", fullmatch=True
    ),
    st.sampled_from(["1e999", "-0.0", "0.0", "1" * 19, ".5", "5.", "1e-400", "0e0"]),
)
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=8)
VALUES = {
    "numbers": NUMBERS,
    "booleans": st.sampled_from(["true", "FALSE", "Yes", "no", "TrUe", "N0"]),
    "dates": st.dates().map(lambda d: d.isoformat()),
    "datetimes": st.tuples(st.datetimes(), st.sampled_from(["T", " "]), st.booleans()).map(
        lambda t: t[0].isoformat(t[1]) + ("Z" if t[2] else "")
    ),
    "bad dates": st.sampled_from(["2021-02-29", "2020-13-01", "2020-01-01T24:00", "2020-1-1"]),
    "tokens": st.sampled_from(TOKENS),
    "empty": st.just(""),
    "text": TEXT,
    "long": st.text(st.sampled_from("ab é€😀"), min_size=60, max_size=90),
}


@st.composite
def tables(draw: st.DrawFn) -> list[list[str]]:
    """Rows of 1-4 columns, each column mostly of one kind of value with some others."""
    width = draw(st.integers(1, 4))
    kinds = [draw(st.sampled_from(sorted(VALUES))) for _ in range(width)]
    noise = st.one_of(VALUES["tokens"], VALUES["empty"], VALUES["numbers"], VALUES["text"])
    count = draw(st.integers(0, 40))
    columns = [
        draw(
            st.lists(
                st.one_of(VALUES[kind], VALUES[kind], VALUES[kind], noise),
                min_size=count,
                max_size=count,
            )
        )
        for kind in kinds
    ]
    return [list(row) for row in zip(*columns, strict=True)]


def cut(rows: list[list[str]], sizes: list[int]) -> list[list[list[str]]]:
    """``rows`` in consecutive pieces of the given sizes, cycled."""
    pieces, start, k = [], 0, 0
    while start < len(rows):
        size = sizes[k % len(sizes)]
        pieces.append(rows[start : start + size])
        start += size
        k += 1
    return pieces


def feed_mixed(profiler: Profiler, rows: list[list[str]], sizes: list[int], how: list[int]) -> None:
    """Pieces of ``rows`` as grid blocks, row-list blocks, or rows."""
    for k, piece in enumerate(cut(rows, sizes)):
        way = how[k % len(how)]
        if way == 0:
            profiler.feed_blocks([grid(piece)])
        elif way == 1:
            profiler.feed_blocks([row_list_block(piece)])
        else:
            profiler.feed_rows(piece)


@needs_c
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=tables(),
    decimal_comma=st.booleans(),
    sizes=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    how=st.lists(st.integers(0, 2), min_size=1, max_size=4),
)
def test_c_and_python_give_the_same_profile_whether_fed_blocks_or_rows(
    rows, decimal_comma, sizes, how
) -> None:
    if not rows:
        return
    width = len(rows[0])
    names = [f"c{i}" for i in range(width)]
    results = []
    for make in (py_profiler, _c):
        as_rows = make(width, decimal_comma=decimal_comma)
        as_rows.feed_rows(rows)
        blocks = make(width, decimal_comma=decimal_comma)
        blocks.feed_blocks([grid(piece) for piece in cut(rows, sizes)])
        mixed = make(width, decimal_comma=decimal_comma)
        feed_mixed(mixed, rows, sizes, how)
        assert as_rows.state() == blocks.state() == mixed.state()
        assert as_rows.rows == blocks.rows == mixed.rows == len(rows)
        results.append((as_rows.state(), as_rows.result(names)))
    assert results[0] == results[1]
    counts: list[dict[str, Any]] = results[0][1]
    for result in counts:
        assert result["count"] + result["nulls"] == len(rows)


@needs_c
@pytest.mark.parametrize(("width", "distinct"), [(200, 6_500), (200, 5_001), (1, 20_000)])
def test_past_the_bound_both_estimate_the_same_within_5_percent(width, distinct) -> None:
    rng = random.Random(distinct)
    words = {
        "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 12))) for _ in range(distinct)
    }
    while len(words) < distinct:
        words.add(str(len(words)) + "é")
    values = sorted(words)
    rng.shuffle(values)
    values += rng.choices(values, k=len(values) // 3)  # repeats
    rows = [[value] + [""] * (width - 1) for value in values]
    states, results = [], []
    for make in (py_profiler, _c):
        profiler = make(width, decimal_comma=False)
        for piece in cut(rows, [64, 1, 1000]):
            profiler.feed_blocks([grid(piece)])
        states.append(profiler.state())
        results.append(profiler.result([f"c{i}" for i in range(width)]))
    assert states[0] == states[1]
    assert results[0] == results[1]
    first = results[0][0]
    assert first["distinct_exact"] is (distinct <= distinct_bound(width))
    assert abs(first["distinct"] - distinct) <= 0.05 * distinct
    assert all(other["distinct"] == 0 for other in results[0][1:])


@needs_c
def test_the_c_profile_refuses_what_the_python_one_refuses() -> None:
    for block in BAD_BLOCKS:
        for make in (py_profiler, _c):
            profiler = make(2, decimal_comma=False)
            with pytest.raises(ValueError):
                profiler.feed_blocks([block.values[0]])  # type: ignore[list-item]


# --- a public dataset ------------------------------------------------------------------


def test_airquality_has_its_known_profile(make) -> None:
    """R's airquality (tests/csvio/data/README.md): 153 days, NA for missing values, and
    an unnamed first column of row names."""
    data = (DATA / "airquality.csv").read_bytes()
    with open(DATA / "airquality.csv", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    assert header == ["", "Ozone", "Solar.R", "Wind", "Temp", "Month", "Day"]
    assert len(rows) == 153
    by_rows = make(len(header), decimal_comma=False)
    by_rows.feed_rows(rows)
    expected = by_rows.result(header)
    if make is _c:  # the file through the C parser, as the ingest reads it
        fast = FastBlocks([data], delimiter=",", width=len(header), limits=CsvLimits())
        assert fast.skip_header(header)
        by_blocks = make(len(header), decimal_comma=False)
        while (got := fast.read(50)) is not None and got[1]:
            by_blocks.feed_blocks(got[0])
        assert fast.finished
        assert by_blocks.result(header) == expected
    facts = {
        r["name"]: (r["type"], r["nulls"], r["min"], r["max"], r["distinct"]) for r in expected
    }
    assert facts == {
        "": ("integer", 0, 1, 153, 153),
        "Ozone": ("integer", 37, 1, 168, 67),
        "Solar.R": ("integer", 7, 7, 334, 117),
        "Wind": ("number", 0, 1.7, 20.7, 31),
        "Temp": ("integer", 0, 56, 97, 40),
        "Month": ("integer", 0, 5, 9, 5),
        "Day": ("integer", 0, 1, 31, 31),
    }
    ozone = expected[1]
    assert (ozone["count"], ozone["examples"]) == (116, ["41", "36", "12", "18", "28"])
    assert all(r["distinct_exact"] for r in expected)
