"""Vectorised backtests: whole arrays of signals or target positions in, a :class:`Result` out.

The orders go through the same compiled broker as the event engine (same fills, fees,
slippage, rejections), so a vectorised run equals the event-driven run of a strategy that reads
the same signals bar by bar (tested). It is fast because bars where nothing can happen (no
signal, no open order) skip the broker: one loop marks the books and writes the equity row
from local variables.

* :func:`backtest_signals`: long-only entries and exits. At a bar's close, a flat asset with an
  entry signal buys ``size``; a long asset with an exit signal sells its whole position.
* :func:`backtest_targets`: a target position (units) per bar and asset; the difference to the
  current position is sent as a market order; NaN keeps the position as it is.

Signals and targets are NumPy arrays of shape ``(T,)`` (one asset) or ``(T, N)`` (time ×
assets, in the order of :attr:`BarData.symbols`), or names of columns of ``bars``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from numba import njit

from ntlab.backtest.engine import BarData, bar_data
from ntlab.backtest.results import Result
from ntlab.exceptions import ConfigError, DataError
from ntlab.execution import broker as b
from ntlab.execution.orders import ExecutionModel
from ntlab.strategy import verbs as v

__all__ = ["backtest_signals", "backtest_targets"]

SIGNALS = 0
TARGETS = 1


@njit(nogil=True, error_model="numpy")
def _vector_loop_nb(ctx: b.Ctx, ts: np.ndarray, ohlcv: np.ndarray, a: np.ndarray, z: np.ndarray, size: np.ndarray, mode: int, start: int) -> int:
    """Run bars ``start..T-1``; returns where it stopped (T, or a bar the logs lack room for).

    mode SIGNALS: ``a`` entries, ``z`` exits (bool); mode TARGETS: ``a`` targets (NaN: none).
    """
    features = ohlcv[:, :, :0]
    # Fields read once: each read of a field of ctx costs a reference count.
    position, mark, cash, equity, n_orders = ctx.position, ctx.mark, ctx.cash, ctx.equity, ctx.n_orders
    n = position.shape[0]
    for t in range(start, ts.shape[0]):
        act = n_orders[0] > 0
        for k in range(n):
            if mode == SIGNALS:
                act = act or (a[t, k] != 0 and position[k] == 0.0) or (z[t, k] != 0 and position[k] > 0.0)
            else:
                act = act or (not np.isnan(a[t, k]) and a[t, k] != position[k])
        if act:
            if not b.has_room_nb(ctx):
                return t
            b.begin_bar_nb(ctx, t, ts, ohlcv, features)
            for k in range(n):
                q = position[k]
                if mode == SIGNALS:
                    if a[t, k] != 0 and q == 0.0:
                        v.submit(ctx, k, size[k])
                    elif z[t, k] != 0 and q > 0.0:
                        v.submit(ctx, k, -q)
                elif not np.isnan(a[t, k]) and a[t, k] != q:
                    v.submit(ctx, k, a[t, k] - q)
            b.end_bar_nb(ctx)
            continue
        value, gross = 0.0, 0.0  # a quiet bar: mark and write the equity row, as end_bar_nb does
        for k in range(n):
            close = ohlcv[t, k, b.CLOSE]
            if np.isfinite(close):
                mark[k] = close
            if position[k] != 0.0:
                x = position[k] * mark[k]
                value += x
                gross += abs(x)
        row = equity[t]
        row[b.Q_BAR] = t
        row[b.Q_CASH] = cash[0]
        row[b.Q_POSITION_VALUE] = value
        row[b.Q_GROSS] = gross
        row[b.Q_EQUITY] = cash[0] + value
        row[b.Q_TRADED] = 0.0
        row[b.Q_FEES] = 0.0
    return ts.shape[0]


def _matrix(values: Any, data: BarData, frame: pl.DataFrame | None, name: str) -> np.ndarray:
    """``values`` as a [T, N] array aligned with ``data``: bool kept (no copy), else float64."""
    if isinstance(values, str):
        if frame is None or values not in frame.columns:
            msg = f"{name}={values!r} names no column of bars; give an array or one of the columns"
            raise ConfigError(msg)
        return bar_data(frame, [values]).features[:, :, 0]
    if isinstance(values, pl.Series):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.dtype != np.bool_:
        arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape != (data.ts.size, len(data.symbols)):
        msg = f"{name} has shape {np.shape(values)}; it needs one row per bar time and one column per symbol: ({data.ts.size}, {len(data.symbols)})"
        raise DataError(msg)
    return np.ascontiguousarray(arr)


def _run(bars: pl.DataFrame | BarData, a: Any, z: Any, size: Any, mode: int, cash: float, model: ExecutionModel | None, names: Sequence[str]) -> Result:
    model = model or ExecutionModel()
    frame = None if isinstance(bars, BarData) else bars
    data = bar_data(bars)
    first = _matrix(a, data, frame, names[0])
    second = _matrix(z, data, frame, names[1]) if z is not None else first
    sizes = np.broadcast_to(np.asarray(size, dtype=np.float64), (len(data.symbols),)).copy()
    if mode == SIGNALS:
        first, second = (x if x.dtype == np.bool_ else np.nan_to_num(x) != 0 for x in (first, second))
        if not np.all(np.isfinite(sizes) & (sizes > 0)):
            msg = f"size={size!r} must be > 0 (one number, or one per symbol)"
            raise ConfigError(msg)
    if not (np.isfinite(cash) and cash >= 0):
        msg = f"cash={cash!r} must be a finite number >= 0"
        raise ConfigError(msg)
    ctx = b.new_ctx(len(data.symbols), data.ts.size, model.params(), cash=cash, max_open_orders=model.max_open_orders)
    t = 0
    while t < data.ts.size:
        t = _vector_loop_nb(ctx, data.ts, data.ohlcv, first, second, sizes, mode, t)
        if t < data.ts.size:
            ctx = b.grown(ctx)
    return Result.from_ctx(ctx, data, model=model, cash=cash, params={})


def backtest_signals(
    bars: pl.DataFrame | BarData,
    entries: Any,
    exits: Any,
    *,
    size: float | Sequence[float] = 1.0,
    cash: float = 1_000_000.0,
    model: ExecutionModel | None = None,
) -> Result:
    """Long-only backtest of entry and exit signals (true/non-zero = signal at that bar's close).

    A flat asset with an entry buys ``size`` units; a long asset with an exit sells all. Orders
    fill by ``model`` (default: at the signal bar's close, no costs).
    """
    return _run(bars, entries, exits, size, SIGNALS, cash, model, ("entries", "exits"))


def backtest_targets(
    bars: pl.DataFrame | BarData,
    targets: Any,
    *,
    cash: float = 1_000_000.0,
    model: ExecutionModel | None = None,
) -> Result:
    """Backtest of target positions in units (NaN: keep the position); negative targets are
    shorts. The difference to the position is a market order at the bar's close (by ``model``)."""
    return _run(bars, targets, None, 1.0, TARGETS, cash, model, ("targets", "targets"))
