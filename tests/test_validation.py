"""Every validation rule, triggered, with each fix mode."""

from __future__ import annotations

import math

import polars as pl
import pytest

from ntlab.data.schemas import TS, conform, schema
from ntlab.data.validation import validate
from ntlab.exceptions import ConfigError, DataError, SchemaError

NS = 1_000_000_000


def _frame(kind: str, **cols: list) -> pl.DataFrame:
    frame = pl.DataFrame(cols)
    if "ts" in frame.columns:
        frame = frame.with_columns(pl.col("ts").cast(pl.Int64).cast(TS))
    return conform(frame, kind)


def trades(**over: list) -> pl.DataFrame:
    cols = {"ts": [0, NS, 2 * NS], "symbol": ["X"] * 3, "price": [10.0, 10.5, 10.25], "size": [1.0, 2.0, 3.0]}
    return _frame("trades", **{**cols, **over})


def bars(**over: list) -> pl.DataFrame:
    cols = {
        "ts": [0, 60 * NS, 120 * NS],
        "symbol": ["X"] * 3,
        "open": [10.0, 10.2, 10.1],
        "high": [10.5, 10.4, 10.3],
        "low": [9.8, 10.0, 9.9],
        "close": [10.2, 10.1, 10.0],
        "volume": [5.0, 6.0, 7.0],
    }
    return _frame("bars", **{**cols, **over})


def test_clean_frame_passes_untouched() -> None:
    frame = trades()
    out, report = validate(frame, "trades")
    assert out.equals(frame)
    assert report.ok and report.rows_in == report.rows_out == 3
    assert "no issues" in str(report)
    assert report.to_frame().is_empty()


@pytest.mark.parametrize(
    ("kind", "frame", "rule", "shown"),
    [
        ("trades", lambda: trades(ts=[0, 2 * NS, NS]), "unsorted_timestamp", "row 2"),
        ("trades", lambda: trades(price=[10.0, math.nan, 10.0]), "bad_price", "price=nan"),
        ("trades", lambda: trades(price=[10.0, -1.0, 10.0]), "bad_price", "price=-1.0"),
        ("trades", lambda: trades(price=[10.0, 0.0, 10.0]), "bad_price", "price=0.0"),
        ("trades", lambda: trades(size=[1.0, 0.0, 2.0]), "bad_size", "size=0.0"),
        ("trades", lambda: trades(size=[1.0, None, 2.0]), "bad_size", "size=None"),
        ("bars", lambda: bars(high=[10.5, 10.15, 10.3]), "high_below_open_close", "high=10.15"),
        ("bars", lambda: bars(low=[9.8, 10.15, 9.9]), "low_above_open_close", "low=10.15"),
        ("bars", lambda: bars(high=[10.5, 9.9, 10.3], low=[9.8, 10.0, 9.9], open=[10.0, 9.95, 10.1], close=[10.2, 9.95, 10.0]), "high_below_open_close", "high=9.9"),
        ("bars", lambda: bars(ts=[0, 60 * NS, 60 * NS]), "duplicate_bar", "row 2"),
        ("bars", lambda: bars(volume=[5.0, -6.0, 7.0]), "bad_volume", "volume=-6.0"),
        ("bars", lambda: bars(open=[10.0, math.inf, 10.1]), "bad_open", "open=inf"),
    ],
)
def test_rule_raises_naming_rows_and_values(kind, frame, rule, shown) -> None:
    with pytest.raises(DataError, match=rf"{rule}.*{shown}.*Pass fix="):
        validate(frame(), kind)


def test_null_timestamp() -> None:
    frame = trades().with_columns(pl.when(pl.int_range(3) == 1).then(None).otherwise(pl.col("ts")).alias("ts"))
    with pytest.raises(DataError, match=r"null_timestamp.*row 1"):
        validate(frame, "trades")


def test_duplicate_trade_id_kept_first_on_repair() -> None:
    frame = trades().with_columns(pl.Series("trade_id", [7, 8, 7]))
    with pytest.raises(DataError, match=r"duplicate_trade_id.*row 2.*trade_id=7"):
        validate(frame, "trades")
    out, report = validate(frame, "trades", fix="repair")
    assert out["trade_id"].to_list() == [7, 8]
    assert report.issues[0].action.startswith("dropped")


def test_null_trade_ids_are_not_duplicates() -> None:
    frame = trades().with_columns(pl.Series("trade_id", [None, None, 7], dtype=pl.Int64))
    out, report = validate(frame, "trades")
    assert report.ok and out.height == 3


def test_a_bad_level_drops_its_whole_depth_message() -> None:
    frame = _frame(
        "depth",
        ts=[0, 0, 0, 1],
        symbol=["X"] * 4,
        side=[1, -1, -1, 1],
        price=[1.0, 1.1, -1.2, 1.0],
        size=[1.0, 2.0, 3.0, 0.0],
        update_id=[5, 5, 5, 6],
        first_update_id=[3, 3, 3, 6],
    )
    out, report = validate(frame, "depth", fix="drop")
    assert out["update_id"].to_list() == [6]  # message 5 dropped whole, not just its bad level
    assert report.issues[0].rows == 3


def test_identical_trades_without_ids_are_legitimate() -> None:
    # Two real ES prints can share ts, price and size; without a trade id they are kept.
    frame = trades(ts=[0, 0, NS], price=[10.0, 10.0, 10.0], size=[1.0, 1.0, 1.0])
    out, report = validate(frame, "trades")
    assert out.height == 3 and report.ok


def test_unsorted_drop_leaves_a_sorted_frame() -> None:
    frame = trades(ts=[NS, 5 * NS, 2 * NS], price=[1.0, 2.0, 3.0])
    frame = pl.concat([frame, trades(ts=[3 * NS, 6 * NS, 7 * NS])])
    out, report = validate(frame, "trades", fix="drop")
    assert out["ts"].is_sorted()
    assert report.rows_dropped == 2  # 2 s and 3 s come after 5 s
    repaired, rep2 = validate(frame, "trades", fix="repair")
    assert repaired.height == frame.height and repaired["ts"].is_sorted()
    assert rep2.issues[0].action == "sorted by ts (stable)"


def test_sorting_is_checked_per_symbol() -> None:
    frame = _frame("trades", ts=[5 * NS, NS, 6 * NS], symbol=["A", "B", "A"], price=[1.0, 1.0, 1.0], size=[1.0, 1.0, 1.0])
    assert validate(frame, "trades")[1].ok


def test_ohlc_repair_widens_envelope_and_reports() -> None:
    frame = bars(high=[10.5, 10.15, 10.3], low=[9.8, 10.0, 10.05])
    out, report = validate(frame, "bars", fix="repair")
    assert out["high"].to_list() == [10.5, 10.2, 10.3]
    assert out["low"].to_list() == [9.8, 10.0, 10.0]
    assert [i.rule for i in report.issues] == ["high_below_open_close", "low_above_open_close"]
    assert all(i.rows == 1 for i in report.issues)
    text = str(report)
    assert "1 row repaired" in text and "3 rows in, 3 rows out" in text
    html = report._repr_html_()
    assert "<table>" in html and "high_below_open_close" in html


def test_drop_mode_counts_rows() -> None:
    frame = bars(high=[10.5, 10.15, 10.3], volume=[5.0, 6.0, -1.0])
    out, report = validate(frame, "bars", fix="drop")
    assert out.height == 1
    assert report.rows_dropped == 2
    assert report.to_frame()["rows"].to_list() == [1, 1]


def quotes(**over: list) -> pl.DataFrame:
    cols = {"ts": [0, NS], "symbol": ["X", "X"], "bid_price": [1.0, 1.1], "ask_price": [1.2, 1.3], "bid_size": [1.0, 2.0], "ask_size": [3.0, 4.0]}
    return _frame("quotes", **{**cols, **over})


@pytest.mark.parametrize(
    ("over", "rule"),
    [
        ({"bid_price": [1.0, 1.4]}, "crossed_quote"),
        ({"bid_price": [0.0, 1.1]}, "bad_bid"),
        ({"ask_price": [1.2, math.nan]}, "bad_ask"),
        ({"bid_size": [-1.0, 2.0]}, "bad_bid_size"),
        ({"ask_size": [1.0, math.nan]}, "bad_ask_size"),
    ],
)
def test_quote_rules(over, rule) -> None:
    with pytest.raises(DataError, match=rule):
        validate(quotes(**over), "quotes")
    out, report = validate(quotes(**over), "quotes", fix="repair")
    assert out.height == 1 and report.issues[0].action == "dropped"


def test_locked_quote_is_allowed() -> None:
    assert validate(quotes(bid_price=[1.2, 1.1]), "quotes")[1].ok


def depth(**over: list) -> pl.DataFrame:
    cols = {"ts": [0, 0], "symbol": ["X", "X"], "side": [1, -1], "price": [1.0, 1.1], "size": [0.0, 2.0], "update_id": [5, 5], "first_update_id": [3, 3]}
    return _frame("depth", **{**cols, **over})


@pytest.mark.parametrize(
    ("over", "rule"),
    [({"side": [1, 0]}, "bad_side"), ({"price": [-1.0, 1.1]}, "bad_price"), ({"size": [-0.5, 2.0]}, "bad_size")],
)
def test_depth_rules(over, rule) -> None:
    assert validate(depth(), "depth")[1].ok  # size 0 removes a level: allowed
    empty_message = depth(side=[1, 0], price=[1.0, None], size=[0.0, None])
    assert validate(empty_message, "depth")[1].ok  # placeholder row of a message without levels
    with pytest.raises(DataError, match=rule):
        validate(depth(**over), "depth")


def test_prices_rules_and_null_before_listing() -> None:
    frame = _frame("prices", ts=[0, NS, 2 * NS], A=[None, 2.0, 3.0], B=[1.0, -2.0, 3.0])
    with pytest.raises(DataError, match=r"bad_price\[B\].*B=-2.0"):
        validate(frame, "prices")
    out, report = validate(frame, "prices", fix="repair")
    assert out["B"].to_list() == [1.0, None, 3.0]
    assert out["A"].null_count() == 1  # null before listing is not an issue
    assert [i.rule for i in report.issues] == ["bad_price[B]"]
    repeated = _frame("prices", ts=[0, NS, NS], A=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match=r"duplicate_timestamp.*row 2"):
        validate(repeated, "prices")
    assert validate(repeated, "prices", fix="repair")[0]["A"].to_list() == [1.0, 2.0]
    shuffled = _frame("prices", ts=[NS, 5 * NS, 2 * NS, 3 * NS], A=[1.0, 2.0, 3.0, 4.0])
    dropped, report = validate(shuffled, "prices", fix="drop")
    assert dropped["ts"].is_sorted() and report.rows_dropped == 2  # 2 s and 3 s come after 5 s
    repaired, _ = validate(shuffled, "prices", fix="repair")
    assert repaired["A"].to_list() == [1.0, 3.0, 4.0, 2.0]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match=r"fix='fixit' is not allowed"):
        validate(trades(), "trades", fix="fixit")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"unknown data kind 'ticks'"):
        validate(trades(), "ticks")


def test_conform_errors() -> None:
    with pytest.raises(SchemaError, match=r"lacks required column\(s\) \['size'\]"):
        conform(trades().drop("size"), "trades")
    with pytest.raises(SchemaError, match=r"unknown column\(s\) \['venue'\]"):
        conform(trades().with_columns(venue=pl.lit("x")), "trades")
    naive = trades().with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(SchemaError, match="naive datetime"):
        conform(naive, "trades")
    with pytest.raises(SchemaError, match="cannot be cast"):
        conform(trades().with_columns(price=pl.lit("abc")), "trades")
    chicago = trades().with_columns(pl.col("ts").dt.convert_time_zone("America/Chicago").dt.cast_time_unit("ms"))
    assert conform(chicago, "trades")["ts"].dtype == TS
    assert list(schema("bars").columns)[:6] == ["ts", "symbol", "open", "high", "low", "close"]
