"""The event-driven backtest engine: bars in, one bar at a time, through the compiled broker.

:func:`backtest` runs a :class:`~ntlab.strategy.CompiledStrategy` inside one Numba loop (the
strategy's ``on_bar`` is compiled into it), or a Python :class:`~ntlab.strategy.Strategy` from a
Python loop that calls the same compiled broker once per bar. Both go through the phases of
:mod:`ntlab.execution.broker`, so the same rules give the same orders and fills.

Bars are a Polars frame with ``ts``, ``open``, ``high``, ``low``, ``close``, ``volume`` and, for
several assets, ``symbol`` (long format; an asset without a bar at some time has none then:
its orders wait and it is valued at its last close). Trade ticks (``ts, price, size``: the
``trades`` kind of :mod:`ntlab.data`) are taken as bars of one trade each: a market order
decided on a trade fills at its price (``fill_on="close"``) or at the next trade's, a limit
when a later trade reaches it, partial fills by the trades' sizes; trades with the same time
stamp form one bar (open = first price, close = last, volume = their sum).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numba import njit

from ntlab.backtest.results import Result
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.execution.orders import ExecutionModel
from ntlab.strategy.base import CompiledStrategy, Context, Fill, Strategy

__all__ = ["BarData", "backtest", "bar_data"]

OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class BarData:
    """Bars as the engine reads them: ``ts`` int64[T] (ns, UTC), ``ohlcv`` float64[T, N, 5],
    ``features`` float64[T, N, F], and the names of the N symbols and F features."""

    ts: np.ndarray
    ohlcv: np.ndarray
    features: np.ndarray
    symbols: list[str]
    feature_names: list[str]
    ticks: bool = False  # one-trade bars made from trade ticks


def bar_data(bars: pl.DataFrame | BarData, features: Sequence[str] = ()) -> BarData:
    """Check ``bars`` and lay them out for the engine (long frames pivoted by symbol)."""
    if isinstance(bars, BarData):
        return bars
    if isinstance(bars, pl.LazyFrame):
        bars = bars.collect()
    ticks = "open" not in bars.columns and {"price", "size"} <= set(bars.columns)
    if ticks:
        keys = ["symbol", "ts"] if "symbol" in bars.columns else ["ts"]
        bars = bars.group_by(keys, maintain_order=True).agg(  # trades stamped alike are one event
            pl.col("price").first().alias("open"), pl.col("price").max().alias("high"), pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"), pl.col("size").sum().alias("volume"), *[pl.col(f).last() for f in features],
        )
    needed = ["ts", *OHLCV, *features]
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        msg = f"bars lack column(s) {missing}; they need ts, open, high, low, close, volume (and symbol for several assets)"
        raise SchemaError(msg)
    if not isinstance(bars.schema["ts"], pl.Datetime):
        msg = f"bars 'ts' must be a Datetime column, got {bars.schema['ts']}"
        raise SchemaError(msg)
    if bars.height == 0:
        msg = "bars are empty: nothing to backtest"
        raise DataError(msg)
    value_columns = [*OHLCV, *features]
    frame = bars.with_columns(pl.col("ts").dt.convert_time_zone("UTC") if bars.schema["ts"].time_zone else pl.col("ts").dt.replace_time_zone("UTC"))
    frame = frame.with_columns(pl.col(value_columns).cast(pl.Float64))
    if "symbol" not in frame.columns:
        frame = frame.with_columns(symbol=pl.lit("asset"))
    frame = frame.sort("symbol", "ts", maintain_order=True)
    dup = frame.select(pl.struct("symbol", "ts").is_duplicated().arg_true().first()).item()
    if dup is not None:
        row = frame.row(dup, named=True)
        msg = f"bars hold two rows for symbol {row['symbol']!r} at {row['ts']}; one bar per symbol and time"
        raise DataError(msg)
    symbols = frame["symbol"].unique(maintain_order=True).to_list()
    ts_ns = frame["ts"].unique().sort().dt.epoch("ns").to_numpy()
    rows = np.searchsorted(ts_ns, frame["ts"].dt.epoch("ns").to_numpy())
    cols = frame["symbol"].replace_strict({s: i for i, s in enumerate(symbols)}, return_dtype=pl.Int64).to_numpy()
    data = np.full((ts_ns.size, len(symbols), len(value_columns)), np.nan)
    data[rows, cols] = frame.select(value_columns).to_numpy()
    return BarData(
        ts=np.ascontiguousarray(ts_ns, dtype=np.int64),
        ohlcv=np.ascontiguousarray(data[:, :, :5]),
        features=np.ascontiguousarray(data[:, :, 5:]),
        symbols=symbols,
        feature_names=list(features),
        ticks=ticks,
    )


# ---------------------------------------------------------------------------------------------
# Loops


@njit(nogil=True, error_model="numpy")
def _step_nb(ctx: b.Ctx, t: int, ts: np.ndarray, ohlcv: np.ndarray, features: np.ndarray) -> bool:
    """End bar ``t - 1`` (its requests, close fills, equity row) and begin bar ``t``; does
    nothing and returns False when the logs lack room for a bar (grow them and call again)."""
    if not b.has_room_nb(ctx):
        return False
    if t > 0:
        b.end_bar_nb(ctx)
    if t < ts.shape[0]:
        b.begin_bar_nb(ctx, t, ts, ohlcv, features)
    return True


_LOOPS: dict[Any, Any] = {}


def _compiled_loop(on_bar: Any) -> Any:
    """The engine loop with ``on_bar`` compiled in (compiled once per strategy function)."""
    loop = _LOOPS.get(on_bar)
    if loop is None:

        @njit(nogil=True, error_model="numpy")
        def loop(ctx, state, ts, ohlcv, features, start):  # noqa: ANN001, ANN202
            # Bars without open orders or requests (most) take a quiet path over arrays read
            # once here: each read of a field of ctx is a reference count (~10 ns).
            clock, current, feats, volume_left, flows = ctx.clock, ctx.bar, ctx.features, ctx.volume_left, ctx.flows
            equity, position, mark, cash = ctx.equity, ctx.position, ctx.mark, ctx.cash
            n_orders, n_requests, n_events, n_trades = ctx.n_orders, ctx.n_requests, ctx.n_events, ctx.n_trades
            room_events, room_trades = ctx.events.shape[0] - b.worst_case_nb(ctx), ctx.trades.shape[0] - b.worst_case_nb(ctx)
            limit = ctx.params[o.P_VOLUME_LIMIT]
            for t in range(start, ts.shape[0]):
                if n_events[0] > room_events or n_trades[0] > room_trades:  # the logs must grow
                    return t
                if n_orders[0] > 0:
                    b.begin_bar_nb(ctx, t, ts, ohlcv, features)
                else:
                    b.load_bar_nb(clock, current, feats, volume_left, flows, limit, t, ts, ohlcv, features)
                    b.mark_nb(current, mark)
                on_bar(ctx, state)
                if n_requests[0] > 0:
                    b.end_bar_nb(ctx)
                else:  # nothing asked for: no order can fill at this close
                    b.record_nb(equity, position, mark, cash, flows, t)
            return ts.shape[0]

        _LOOPS[on_bar] = loop
    return loop


def _run_compiled(strategy: CompiledStrategy, data: BarData, ctx: b.Ctx, state: np.ndarray) -> b.Ctx:
    loop = _compiled_loop(strategy.on_bar)
    t = 0
    while t < data.ts.size:
        t = loop(ctx, state, data.ts, data.ohlcv, data.features, t)
        if t < data.ts.size:
            ctx = b.grown(ctx)
    return ctx


def _run_python(strategy: Strategy, data: BarData, ctx: b.Ctx) -> b.Ctx:
    view = Context(ctx, data.symbols, data.feature_names)
    wants_fills = type(strategy).on_fill is not Strategy.on_fill
    on_event = strategy.on_trade if data.ticks and type(strategy).on_trade is not Strategy.on_trade else strategy.on_bar
    strategy.on_start(view)
    seen = 0
    for t in range(data.ts.size + 1):
        while not _step_nb(ctx, t, data.ts, data.ohlcv, data.features):
            ctx = b.grown(ctx)
            view._use(ctx)
        if wants_fills:
            seen = _deliver_fills(strategy, view, seen, data)
        if t < data.ts.size:
            on_event(view)
    strategy.on_stop(view)
    return ctx


def _deliver_fills(strategy: Strategy, view: Context, seen: int, data: BarData) -> int:
    """Call ``on_fill`` for the fill events logged since event number ``seen``."""
    n = int(view._a["n_events"][0])
    for e in view._a["events"][seen:n]:
        kind = int(e[o.E_KIND])
        if kind in (o.FILLED, o.PARTIALLY_FILLED):
            ts = dt.datetime.fromtimestamp(int(data.ts[int(e[o.E_BAR])]) / 1e9, tz=dt.UTC)
            fill = Fill(int(e[o.E_ORDER]), data.symbols[int(e[o.E_ASSET])], float(e[o.E_QTY]), float(e[o.E_PRICE]), float(e[o.E_FEE]), ts, kind == o.PARTIALLY_FILLED, float(e[o.E_TAG]))
            strategy.on_fill(view, fill)
    return n


def backtest(
    bars: pl.DataFrame | BarData,
    strategy: CompiledStrategy | Strategy,
    *,
    cash: float = 1_000_000.0,
    model: ExecutionModel | None = None,
    features: Sequence[str] = (),
    **params: Any,
) -> Result:
    """Run ``strategy`` over ``bars`` and return a :class:`~ntlab.backtest.Result`.

    Parameters
    ----------
    bars
        Polars frame with ``ts, open, high, low, close, volume`` (and ``symbol`` for several
        assets), or a :class:`BarData` prepared once for many runs.
    strategy
        A :class:`CompiledStrategy` (its ``init(**params)`` makes the state) or a
        :class:`Strategy` instance.
    cash
        Starting cash.
    model
        Fill rules, fees, slippage, limits (default: :class:`ExecutionModel()`).
    features
        Columns of ``bars`` the strategy reads from its context (current row only).
    **params
        Parameters of a compiled strategy's ``init``.
    """
    model = model or ExecutionModel()
    data = bar_data(bars, features)
    if not (np.isfinite(cash) and cash >= 0):
        msg = f"cash={cash!r} must be a finite number >= 0"
        raise ConfigError(msg)
    ctx = b.new_ctx(len(data.symbols), data.ts.size, model.params(), cash=cash, n_features=len(data.feature_names), max_open_orders=model.max_open_orders)
    if isinstance(strategy, CompiledStrategy):
        ctx = _run_compiled(strategy, data, ctx, strategy.state(params))
    elif isinstance(strategy, Strategy):
        if params:
            msg = f"parameters {sorted(params)} go to the Strategy's constructor for Python strategies, not to backtest()"
            raise ConfigError(msg)
        ctx = _run_python(strategy, data, ctx)
    else:
        msg = f"strategy must be a CompiledStrategy or a Strategy instance, got {type(strategy).__name__}"
        raise ConfigError(msg)
    return Result.from_ctx(ctx, data, model=model, cash=cash, params=params)
