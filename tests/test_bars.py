"""Trades to bars: Polars bars equal streaming bars bit for bit; conventions; error paths.

Three implementations are compared: :func:`ntlab.data.bars.bars` (Polars),
:class:`ntlab.data.bars.StreamingBars` (Numba kernels, single updates, batches and a mix) and a
plain-Python reference written from the documented conventions. Time bars are also checked
against pandas ``resample`` on the real ES ticks.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numba
import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import ntlab.datasets
from ntlab.data.bars import Bar, StreamingBars, bars, frame_from_bars
from ntlab.data.schemas import TS, conform
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.kernels import bars as kb

NO_JIT = bool(numba.config.DISABLE_JIT)
NS = 1_000_000_000
FLOATS = ("open", "high", "low", "close", "volume", "notional")
PROPERTY = settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


# ---------------------------------------------------------------------------------------------
# Helpers


def make_trades(ts: list[int], price: list[float], size: list[float], symbol: str = "X") -> pl.DataFrame:
    frame = pl.DataFrame(
        {"ts": ts, "symbol": [symbol] * len(ts), "price": price, "size": size},
        schema={"ts": pl.Int64, "symbol": pl.String, "price": pl.Float64, "size": pl.Float64},
    )
    return conform(frame.with_columns(pl.col("ts").cast(TS)), "trades")


def arrays(trades: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        trades["ts"].to_physical().to_numpy(),
        trades["price"].to_numpy(),
        trades["size"].to_numpy(),
    )


def assert_identical(left: pl.DataFrame, right: pl.DataFrame) -> None:
    """Equal frames, floats compared by their bits (so -0.0 != 0.0 and no tolerance)."""
    assert_frame_equal(left, right, check_exact=True)
    for col in FLOATS:
        assert np.array_equal(left[col].to_numpy().view(np.int64), right[col].to_numpy().view(np.int64)), col


def stream_single(trades: pl.DataFrame, by: str, every: object) -> pl.DataFrame:
    symbol = trades["symbol"][0] if trades.height else "X"
    sb = StreamingBars(by=by, every=every, symbol=symbol)  # type: ignore[arg-type]
    out: list[Bar] = []
    for t, p, s in zip(*(a.tolist() for a in arrays(trades)), strict=True):
        bar = sb.update(t, p, s)
        if bar is not None:
            out.append(bar)
    last = sb.flush()
    if last is not None:
        out.append(last)
    return frame_from_bars(out)


def stream_mixed(trades: pl.DataFrame, by: str, every: object, cuts: list[int], modes: list[bool]) -> pl.DataFrame:
    """Feed chunks between ``cuts``, each by update_many (True) or single updates (False)."""
    symbol = trades["symbol"][0] if trades.height else "X"
    sb = StreamingBars(by=by, every=every, symbol=symbol)  # type: ignore[arg-type]
    ts, price, size = arrays(trades)
    bounds = [0, *sorted(c % (len(ts) + 1) for c in cuts), len(ts)]
    parts = []
    for (a, b), batch in zip(itertools.pairwise(bounds), itertools.cycle(modes or [True]), strict=False):
        if batch:
            parts.append(sb.update_many(ts[a:b], price[a:b], size[a:b]))
        else:
            done = [sb.update(int(ts[i]), float(price[i]), float(size[i])) for i in range(a, b)]
            parts.append(frame_from_bars([x for x in done if x is not None]))
    last = sb.flush()
    parts.append(frame_from_bars([last] if last is not None else []))
    return pl.concat(parts)


def kernel_bars(trades: pl.DataFrame, by: str, every: object) -> pl.DataFrame:
    codes = {"time": kb.KIND_TIME, "tick": kb.KIND_TICK, "volume": kb.KIND_VOLUME, "dollar": kb.KIND_DOLLAR}
    step = StreamingBars(by=by, every=every, symbol="X").every  # type: ignore[arg-type]
    *cols, status, row = kb.aggregate_trades_nb(*arrays(trades), codes[by], step)
    assert (status, row) == (kb.BAR_NONE, -1)
    names = ("ts", "open", "high", "low", "close", "volume", "notional", "trades")
    symbol = trades["symbol"][0] if trades.height else "X"
    frame = pl.DataFrame(dict(zip(names, cols, strict=True))).with_columns(pl.col("ts").cast(TS), symbol=pl.lit(symbol))
    return conform(frame, "bars")


def reference_bars(trades: pl.DataFrame, by: str, every: float | int) -> pl.DataFrame:
    """Plain Python straight from the documented conventions (``every`` already in ns/N/V)."""
    rows = trades.select("ts", "price", "size").with_columns(pl.col("ts").to_physical()).rows()
    keys = []
    clock = 0.0
    for i, (t, p, s) in enumerate(rows):
        if by == "time":
            keys.append((t // every) * every)
        elif by == "tick":
            keys.append(i // every)
        else:
            keys.append(math.floor(clock / every))
            clock = clock + (s if by == "volume" else p * s)
    out = []
    for key, grp in itertools.groupby(zip(keys, rows, strict=True), key=lambda kr: kr[0]):
        trs = [r for _, r in grp]
        volume, notional = trs[0][2], trs[0][1] * trs[0][2]
        for _, p, s in trs[1:]:
            volume += s
            notional += p * s
        prices = [p for _, p, _ in trs]
        ts = key if by == "time" else trs[0][0]
        out.append(Bar(ts, "X", prices[0], max(prices), min(prices), prices[-1], volume, notional, len(trs)))
    return frame_from_bars(out)


# ---------------------------------------------------------------------------------------------
# Random trades


@st.composite
def random_trades(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(0, 120))
    # Before and after 1970, sometimes on a minute boundary; steps that hit bucket edges too.
    start = draw(st.one_of(st.integers(-(10**12), 10**12), st.integers(-1000, 1000).map(lambda k: k * 60 * NS)))
    step = st.one_of(
        st.just(0),
        st.integers(1, 3),
        st.sampled_from([1_000, 1_000_000, NS, 60 * NS]),
        st.integers(0, 10**6),
        st.integers(0, 3 * 10**9),
        st.integers(0, 10**11),
    )
    ts = list(itertools.accumulate(draw(st.lists(step, min_size=n, max_size=n)), initial=start))[1:]
    price = st.one_of(
        st.sampled_from([0.5, 1.0, 3.0]),  # with the sizes below, clocks land on thresholds
        st.integers(1, 10**6).map(lambda k: k / 100),  # a cent grid
        st.floats(1e-3, 1e5, allow_nan=False, allow_infinity=False),  # full mantissas
    )
    size = st.one_of(
        st.integers(1, 5_000).map(lambda k: k / 1000),  # 0.001 lots: not exact in binary
        st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.7]),  # sums near thresholds: rounding decides
        st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False),
        st.just(0.0),
    )
    prices = draw(st.lists(price, min_size=n, max_size=n))
    sizes = draw(st.lists(size, min_size=n, max_size=n))
    return make_trades(ts, prices, sizes)


bar_specs = st.one_of(
    st.tuples(
        st.just("time"),
        st.sampled_from(["1ms", "1s", "7s", "1m", "1h", 1, 999_983, 3 * NS, dt.timedelta(seconds=90)]),
    ),
    st.tuples(st.just("tick"), st.integers(1, 25)),
    st.tuples(st.just("volume"), st.one_of(st.sampled_from([0.001, 0.1, 0.3, 0.6, 1.0, 2.5]), st.floats(1e-3, 50.0))),
    st.tuples(st.just("dollar"), st.one_of(st.sampled_from([0.1, 0.3, 1.0, 100.0, 1e4]), st.floats(1.0, 1e5))),
)


@PROPERTY
@given(trades=random_trades(), spec=bar_specs)
def test_streaming_single_updates_equal_polars_and_reference(trades: pl.DataFrame, spec: tuple[str, object]) -> None:
    by, every = spec
    expected = bars(trades, by=by, every=every)  # type: ignore[arg-type]
    assert_identical(stream_single(trades, by, every), expected)
    step = StreamingBars(by=by, every=every, symbol="X").every  # type: ignore[arg-type]
    assert_identical(reference_bars(trades, by, step), expected)


@PROPERTY
@given(
    trades=random_trades(),
    spec=bar_specs,
    cuts=st.lists(st.integers(0, 200), max_size=6),
    modes=st.lists(st.booleans(), max_size=4),
)
def test_streaming_batches_and_mixes_equal_polars(
    trades: pl.DataFrame, spec: tuple[str, object], cuts: list[int], modes: list[bool]
) -> None:
    by, every = spec
    expected = bars(trades, by=by, every=every)  # type: ignore[arg-type]
    assert_identical(stream_mixed(trades, by, every, [], [True]), expected)  # one batch
    assert_identical(stream_mixed(trades, by, every, cuts, modes), expected)
    assert_identical(kernel_bars(trades, by, every), expected)


@PROPERTY
@given(trades=random_trades(), spec=bar_specs, symbols=st.lists(st.sampled_from("ABC"), min_size=120, max_size=120))
def test_multi_symbol_frame_gives_each_symbols_bars(
    trades: pl.DataFrame, spec: tuple[str, object], symbols: list[str]
) -> None:
    by, every = spec
    mixed = trades.with_columns(symbol=pl.Series(symbols[: trades.height], dtype=pl.String))
    out = bars(mixed, by=by, every=every)  # type: ignore[arg-type]
    assert out.equals(out.sort("ts", "symbol", maintain_order=True))
    for sym in "ABC":
        one = mixed.filter(pl.col("symbol") == sym)
        mine = out.filter(pl.col("symbol") == sym)
        assert_identical(mine, bars(one, by=by, every=every))  # type: ignore[arg-type]
        if one.height:
            assert_identical(mine, stream_single(one, by, every))


# ---------------------------------------------------------------------------------------------
# Conventions, by hand


def test_volume_bars_keep_the_crossing_trade_and_stay_on_the_clock() -> None:
    # Clock before each trade: 0, .5, .75, 1.25, 4.25, 4.45; V = 1 gives keys 0, 0, 0, 1, 4, 4.
    trades = make_trades([0, 1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.5, 0.25, 0.5, 3.0, 0.2, 0.1])
    out = bars(trades, by="volume", every=1.0)
    assert out.select("ts", "volume", "trades").with_columns(pl.col("ts").to_physical()).rows() == [
        (0, 1.25, 3),
        (3, 3.0, 1),
        (4, 0.30000000000000004, 2),  # 0.2 + 0.1, sequential
    ]
    sb = StreamingBars(by="volume", every=1.0, symbol="X")
    got = [sb.update(t, p, s) for t, p, s in zip(*(a.tolist() for a in arrays(trades)), strict=True)]
    # A volume bar is emitted by the trade that completes it, not by the next one.
    assert [g is not None for g in got] == [False, False, True, True, False, False]
    assert sb.flush() == Bar(4, "X", 5.0, 6.0, 5.0, 6.0, 0.30000000000000004, 1.0 + 0.6000000000000001, 2)


def test_the_clock_is_the_sequential_sum_of_the_trades_before() -> None:
    # In floats 0.2 + 0.7 + 0.1 == 0.9999999999999999 < 1, so the fourth trade is still in bar 0
    # (an exclusive clock computed as cum_sum - size would give 1.2 - 0.2 == 1.0: bar 1).
    trades = make_trades([0, 1, 2, 3, 4], [1.0] * 5, [0.2, 0.7, 0.1, 0.2, 0.5])
    for by in ("volume", "dollar"):
        out = bars(trades, by=by, every=1.0)  # type: ignore[arg-type]
        assert out["trades"].to_list() == [4, 1]
        assert_identical(stream_single(trades, by, 1.0), out)


@PROPERTY
@given(
    sizes=st.lists(st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.7]), max_size=60),
    price=st.sampled_from([0.5, 1.0]),
    by=st.sampled_from(["volume", "dollar"]),
    every=st.sampled_from([0.1, 0.3, 0.6, 1.0]),
)
def test_clocks_near_thresholds(sizes: list[float], price: float, by: str, every: float) -> None:
    trades = make_trades(list(range(len(sizes))), [price] * len(sizes), sizes)
    expected = bars(trades, by=by, every=every)  # type: ignore[arg-type]
    assert_identical(reference_bars(trades, by, every), expected)
    assert_identical(stream_mixed(trades, by, every, [len(sizes) // 2], [True, False]), expected)


def test_fractional_sizes_are_summed_in_trade_order() -> None:
    sizes = [0.001] * 10 + [0.1, 0.2, 0.3]
    trades = make_trades(list(range(13)), [61_000.01] * 13, sizes)
    out = bars(trades, by="tick", every=13)
    acc = sizes[0]
    for s in sizes[1:]:
        acc += s
    assert out["volume"].item() == acc != math.fsum(sizes)
    assert stream_single(trades, "tick", 13)["volume"].item() == acc


def test_time_bars_floor_on_the_epoch_grid_and_skip_empty_buckets() -> None:
    trades = make_trades([-15, -1, 0, 9, 35], [1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 5)
    out = bars(trades, by="time", every=10)
    assert out["ts"].to_physical().to_list() == [-20, -10, 0, 30]
    assert out["trades"].to_list() == [1, 1, 2, 1]
    week = bars(make_trades([7 * 86_400 * NS + 5], [1.0], [1.0]), by="time", every="1w")
    assert week["ts"].dt.weekday().item() == 4  # a Thursday, like 1970-01-01
    micro = bars(trades.lazy(), by="time", every=dt.timedelta(microseconds=1))
    assert micro["ts"].to_physical().to_list() == [-1000, 0]


def test_streaming_time_bar_is_emitted_by_the_next_bucket_or_flush() -> None:
    sb = StreamingBars(by="time", every="1s", symbol="ES")
    assert sb.update(1 * NS, 10.0, 1.0) is None
    assert sb.update(int(1.9 * NS), 11.0, 1.0) is None
    bar = sb.update(5 * NS, 12.0, 2.0)
    assert bar == Bar(1 * NS, "ES", 10.0, 11.0, 10.0, 11.0, 2.0, 21.0, 2)
    assert sb.flush() == Bar(5 * NS, "ES", 12.0, 12.0, 12.0, 12.0, 2.0, 24.0, 1)
    assert sb.flush() is None
    # After a flush a trade of the same bucket opens a second bar with the same ts.
    assert sb.update(5 * NS + 1, 13.0, 1.0) is None
    assert sb.flush().ts == 5 * NS  # type: ignore[union-attr]


def test_tick_bars_hold_n_trades_and_reset_forgets_everything() -> None:
    sb = StreamingBars(by="tick", every=2, symbol="X")
    assert (sb.by, sb.every, sb.symbol) == ("tick", 2, "X")
    assert repr(sb) == "StreamingBars(by='tick', every=2, symbol='X')"
    assert sb.update(10, 1.0, 1.0) is None
    assert sb.update(11, 2.0, 1.0) == Bar(10, "X", 1.0, 2.0, 1.0, 2.0, 2.0, 3.0, 2)
    assert sb.update(12, 3.0, 1.0) is None
    sb.reset()
    assert sb.flush() is None
    assert sb.update(0, 1.0, 1.0) is None  # ts may go back after reset


def test_update_many_accepts_datetimes_and_returns_a_bars_frame() -> None:
    trades = make_trades([0, NS, 2 * NS, 3 * NS], [1.0, 2.0, 3.0, 4.0], [1.0] * 4)
    sb = StreamingBars(by="tick", every=2, symbol="X")
    out = sb.update_many(trades["ts"], trades["price"], trades["size"])
    assert out.columns == ["ts", "symbol", "open", "high", "low", "close", "volume", "notional", "trades"]
    assert_identical(out, bars(trades, by="tick", every=2))
    sb.reset()
    as_np = trades["ts"].dt.replace_time_zone(None).to_numpy()  # numpy datetime64[ns]
    assert_identical(sb.update_many(as_np, [1.0, 2.0, 3.0, 4.0], [1.0] * 4), out)
    sb.reset()
    local = trades["ts"].dt.convert_time_zone("America/Chicago").dt.cast_time_unit("us")
    assert_identical(sb.update_many(local, trades["price"], trades["size"]), out)
    assert sb.update_many([], [], []).is_empty()


def test_frame_from_bars_of_nothing_is_an_empty_bars_frame() -> None:
    empty = frame_from_bars([])
    assert empty.is_empty() and empty.schema == bars(make_trades([], [], []), by="tick", every=3).schema


# ---------------------------------------------------------------------------------------------
# Errors


def test_bad_arguments_raise_config_error() -> None:
    trades = make_trades([0], [1.0], [1.0])
    cases = [
        ({"by": "range", "every": 1}, r"by='range' is not a bar kind; use one of 'time'"),
        ({"by": "time", "every": "1mo"}, r"every='1mo' uses the calendar unit 'mo'"),
        ({"by": "time", "every": "5 minutes"}, r"every='5 minutes' is not a duration; use a Polars"),
        ({"by": "time", "every": "3i"}, r"counts rows \('i'\); for bars of N trades use by='tick'"),
        ({"by": "time", "every": "0s"}, r"every='0s' must be a positive duration"),
        ({"by": "time", "every": 1.5}, r"every=1.5 is not a duration for time bars"),
        ({"by": "tick", "every": 2.5}, r"every=2.5 must be an int number of trades"),
        ({"by": "tick", "every": True}, r"every=True must be an int number of trades"),
        ({"by": "tick", "every": 0}, r"every=0 must be a positive number of trades"),
        ({"by": "volume", "every": "1k"}, r"every='1k' must be a number, the size per volume bar"),
        ({"by": "dollar", "every": -5.0}, r"every=-5.0 must be a positive finite notional"),
        ({"by": "volume", "every": math.inf}, r"every=inf must be a positive finite size"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ConfigError, match=match):
            bars(trades, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=match):
            StreamingBars(**kwargs, symbol="X")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"symbol='' cannot name a catalog folder \(it is empty\)"):
        StreamingBars(by="tick", every=3, symbol="")


def test_non_trades_input_raises_schema_error() -> None:
    quotes = pl.DataFrame({"ts": [0], "symbol": ["X"], "bid_price": [1.0], "ask_price": [1.1]})
    with pytest.raises(SchemaError, match=r"trades frame lacks required column\(s\) \['price', 'size'\]"):
        bars(quotes, by="tick", every=3)
    with pytest.raises(SchemaError, match=r"must be a polars DataFrame or LazyFrame of kind 'trades'"):
        bars({"ts": [0]}, by="tick", every=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "by", "match"),
    [
        ({"price": [1.0, None, 1.0]}, "tick", r"trades hold nulls \{'price': 1\}"),
        ({"price": [1.0, math.nan, 1.0]}, "tick", r"trades row 1: price is not finite"),
        ({"size": [1.0, 1.0, math.inf]}, "tick", r"trades row 2: size is not finite"),
        ({"size": [1.0, -1.0, 1.0]}, "volume", r"trades row 1: size is negative"),
        ({"price": [1.0, 1.0, -2.0]}, "dollar", r"trades row 2: price is negative, which dollar bars"),
        ({"ts": [0, 2, 1]}, "time", r"trades row 2: ts is before the previous trade's ts"),
        ({"ts": [0, 2, 1], "symbol": ["A", "B", "B"]}, "time", r"row 2: ts is before the previous"),
    ],
)
def test_bad_trades_raise_data_error(change: dict[str, list], by: str, match: str) -> None:
    base = {"ts": [0, 1, 2], "symbol": ["X"] * 3, "price": [1.0, 1.0, 1.0], "size": [1.0, 1.0, 1.0]}
    frame = pl.DataFrame({**base, **change}, schema_overrides={"price": pl.Float64, "size": pl.Float64})
    frame = conform(frame.with_columns(pl.col("ts").cast(TS)), "trades")
    with pytest.raises(DataError, match=match):
        bars(frame, by=by, every=10 if by in ("time", "tick") else 1.0)  # type: ignore[arg-type]
    # Decreasing ts across symbols is fine: each symbol's own order counts.
    ok = conform(
        pl.DataFrame(base).with_columns(ts=pl.Series([5, 0, 1]).cast(TS), symbol=pl.Series(["A", "B", "B"])), "trades"
    )
    assert bars(ok, by="tick", every=1).height == 3


@pytest.mark.parametrize(
    ("by", "trade", "match"),
    [
        ("tick", (0, 1.0, 1.0), r"ts 0 is before the previous trade's ts 10"),
        ("tick", (20, math.nan, 1.0), r"price nan and size 1.0 must be finite"),
        ("volume", (20, 1.0, -1.0), r"size must not be negative \(price 1.0, size -1.0\)"),
        ("dollar", (20, -1.0, 1.0), r"price and size must not be negative"),
    ],
)
def test_rejected_trades_leave_the_stream_untouched(by: str, trade: tuple[int, float, float], match: str) -> None:
    sb = StreamingBars(by=by, every=2 if by == "tick" else 10.0, symbol="X")  # type: ignore[arg-type]
    sb.update(10, 1.0, 1.0)
    before = sb._state.copy()
    with pytest.raises(DataError, match=r"X trade rejected, state unchanged: " + match):
        sb.update(*trade)
    assert np.array_equal(sb._state, before) and sb.rejected == 1
    # A batch with a bad row is rejected whole.
    with pytest.raises(DataError, match=r"X trade at row 1 of the batch rejected, state unchanged: " + match):
        sb.update_many([10, trade[0]], [1.0, trade[1]], [1.0, trade[2]])
    assert np.array_equal(sb._state, before) and sb.rejected == 2
    sb.reset()
    assert sb.rejected == 0


def test_update_many_rejects_mismatched_or_non_integer_input() -> None:
    sb = StreamingBars(by="tick", every=2, symbol="X")
    with pytest.raises(DataError, match=r"ts, price and size must be 1-d arrays of one length; got shapes \(2,\), \(1,\)"):
        sb.update_many([1, 2], [1.0], [1.0, 1.0])
    with pytest.raises(DataError, match=r"ts must be int nanoseconds or datetimes, not dtype float64"):
        sb.update_many([1.5], [1.0], [1.0])
    naive = pl.Series([0], dtype=pl.Int64).cast(pl.Datetime("ns"))
    with pytest.raises(DataError, match=r"ts is a naive Datetime series; give it a time zone"):
        sb.update_many(naive, [1.0], [1.0])


def test_kernel_reports_the_first_rejected_row() -> None:
    ts = np.array([0, 1, 2, 1], dtype=np.int64)
    out_ts, *_, trades, status, row = kb.aggregate_trades_nb(ts, np.ones(4), np.ones(4), kb.KIND_TICK, 2)
    assert (status, row) == (kb.ERR_TS_BACKWARDS, 3)
    assert out_ts.tolist() == [0, 2] and trades.tolist() == [2, 1]  # the bars before it


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.fixture(scope="module")
def es_ticks() -> pl.DataFrame:
    """The 500k ES trades; the first 20k without JIT, where kernels run as plain Python."""
    frame = ntlab.datasets.load("es_ticks")
    return frame.head(20_000) if NO_JIT else frame


@pytest.fixture(scope="module")
def binance_trades() -> pl.DataFrame:
    btc = ntlab.datasets.load("binance_spot_btcusdt_trades")
    eth = ntlab.datasets.load("binance_spot_ethusdt_trades")
    return pl.concat([btc, eth]).sort("ts", maintain_order=True)


ES_SPECS = [("time", "1m"), ("time", "5s"), ("tick", 100), ("volume", 1000.0), ("dollar", 1e6)]


@pytest.mark.parametrize(("by", "every"), ES_SPECS)
def test_es_streaming_equals_polars(es_ticks: pl.DataFrame, by: str, every: object) -> None:
    expected = bars(es_ticks, by=by, every=every)  # type: ignore[arg-type]
    assert expected["trades"].sum() == es_ticks.height
    assert expected["volume"].sum() == es_ticks["size"].sum()
    assert_identical(stream_mixed(es_ticks, by, every, [], [True]), expected)
    assert_identical(stream_mixed(es_ticks, by, every, [1, 7_777, 12_345, 300_000], [True, False]), expected)
    if not NO_JIT:
        assert_identical(stream_single(es_ticks, by, every), expected)


def test_es_bars_follow_their_conventions(es_ticks: pl.DataFrame) -> None:
    tick = bars(es_ticks, by="tick", every=100)["trades"]
    assert (tick.head(-1) == 100).all() and 1 <= tick[-1] <= 100
    minute = bars(es_ticks, by="time", every="1m")
    assert (minute["ts"].to_physical() % (60 * NS) == 0).all() and minute["ts"].is_sorted()
    # ES sizes are integral, so these sums are exact: bar k starts in [k V, (k + 1) V).
    volume = bars(es_ticks, by="volume", every=1000.0)["volume"].to_numpy()
    start = np.concatenate([[0.0], np.cumsum(volume)[:-1]])
    key = np.floor(start / 1000.0)
    assert (np.diff(key) > 0).all()
    assert (np.floor((start + volume)[:-1] / 1000.0) > key[:-1]).all()  # every bar but the last is full
    assert (volume[:-1] >= 1000.0 - start[:-1] % 1000.0).all()


@pytest.mark.parametrize(("every", "rule"), [("1m", "1min"), ("5s", "5s"), ("1h", "1h")])
def test_es_time_bars_match_pandas_resample(every: str, rule: str) -> None:
    es = ntlab.datasets.load("es_ticks")  # full data: no kernel involved
    ours = bars(es, by="time", every=every)
    pdf = es.select("ts", "price", "size").with_columns(notional=pl.col("price") * pl.col("size")).to_pandas()
    res = pdf.set_index("ts").resample(rule, origin="epoch", label="left", closed="left")
    ref = pd.DataFrame(
        {
            "open": res["price"].first(),
            "high": res["price"].max(),
            "low": res["price"].min(),
            "close": res["price"].last(),
            "volume": res["size"].sum(),
            "notional": res["notional"].sum(),
            "trades": res["price"].count(),
        }
    )
    ref = pl.from_pandas(ref[ref["trades"] > 0].reset_index()).with_columns(pl.col("trades").cast(pl.Int64))
    # Prices on the 0.25 grid times integral sizes: every sum is exact, whatever the order.
    assert_frame_equal(ours.drop("symbol"), ref.select(ours.drop("symbol").columns), check_exact=True)


BINANCE_SPECS = [("time", "1s"), ("time", "10s"), ("tick", 7), ("volume", 0.37), ("dollar", 12_345.678)]


@pytest.mark.parametrize(("by", "every"), BINANCE_SPECS)
def test_binance_streaming_equals_polars_per_symbol(binance_trades: pl.DataFrame, by: str, every: object) -> None:
    both = bars(binance_trades, by=by, every=every)  # type: ignore[arg-type]
    for sym in ("BTCUSDT", "ETHUSDT"):
        one = binance_trades.filter(pl.col("symbol") == sym)
        expected = bars(one, by=by, every=every)  # type: ignore[arg-type]
        assert_identical(both.filter(pl.col("symbol") == sym), expected)
        assert_identical(stream_mixed(one, by, every, [3, 5_000, 9_999], [False, True]), expected)
        assert_identical(stream_single(one, by, every), expected)


def test_binance_sizes_do_exercise_summation_order(binance_trades: pl.DataFrame) -> None:
    """The exact-sum tests have teeth: Polars' own sum differs from sequential on real data."""
    btc = binance_trades.filter(pl.col("symbol") == "BTCUSDT")
    ours = bars(btc, by="time", every="1s")
    naive = (
        btc.group_by(pl.col("ts").dt.truncate("1s"), maintain_order=True)
        .agg((pl.col("price") * pl.col("size")).sum().alias("notional"))
        .sort("ts")
    )
    assert ours.height == naive.height
    assert (ours["notional"] != naive["notional"]).any()
    assert_identical(stream_mixed(btc, "time", "1s", [], [True]), ours)
