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
* :func:`crossovers`: entry and exit signals where one series crosses another, for many
  column pairs at once (the usual input of a sweep).
* :func:`sweep_signals`: many columns of entry and exit signals on one asset (one column per
  parameter set), their metrics in one frame. With fills at the close (the default model, with
  any fees and slippage) it runs one fused kernel over all columns on all cores, keeping no
  logs; otherwise each column is a :func:`backtest_signals` run. Both give the same numbers
  (tested).

Signals and targets are NumPy arrays of shape ``(T,)`` (one asset) or ``(T, N)`` (time ×
assets, in the order of :attr:`BarData.symbols`), or names of columns of ``bars``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from numba import njit, prange

from ntlab.backtest.engine import BarData, bar_data
from ntlab.backtest.results import Result
from ntlab.backtest.sweep import SweepResult
from ntlab.exceptions import ConfigError, DataError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.execution.orders import ExecutionModel
from ntlab.kernels._common import _PAR
from ntlab.strategy import verbs as v

__all__ = ["backtest_signals", "backtest_targets", "crossovers", "sweep_signals"]

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


# ---------------------------------------------------------------------------------------------
# Sweeps of signal columns

# Columns of the fused kernel's output, one row per signal column
(_S_END, _S_FIRST, _S_WORST, _S_TRADES, _S_WINS, _S_PNL, _S_FEES, _S_EXPOSED, _S_N, _S_MEAN, _S_M2, _S_ABS) = range(12)
_S_WIDTH = 12


@njit(**_PAR)
def _sweep_nb(close: np.ndarray, entries: np.ndarray, exits: np.ndarray, size: float, cash: float, params: np.ndarray, rf_step: float, out: np.ndarray) -> None:
    """Long-only signals of every column of ``entries``/``exits`` (bool[T, K]) on one asset whose
    closes are all finite, market orders filling at the signal bar's close: the broker's
    arithmetic (:func:`ntlab.execution.broker._fill_nb` and ``_account_nb``) in registers,
    and the equity curve's statistics kept as it goes instead of a log."""
    slip = params[o.P_SLIPPAGE_BPS] * 1e-4
    fee_bps, fee_fixed = params[o.P_FEE_BPS], params[o.P_FEE_FIXED]
    for k in prange(entries.shape[1]):
        money, q, avg, entry_fee = cash, 0.0, 0.0, 0.0
        peak, worst, previous = -np.inf, 0.0, np.nan
        trades, wins, pnl_sum, fees, exposed = 0.0, 0.0, 0.0, 0.0, 0.0
        n, mean, m2, abs_sum, first = 0.0, 0.0, 0.0, 0.0, np.nan
        for t in range(close.shape[0]):
            c = close[t]
            if q == 0.0 and entries[t, k]:
                price = c * (1.0 + slip)
                fee = abs(size) * price * fee_bps * 1e-4 + fee_fixed
                money -= size * price + fee
                avg = (avg * abs(q) + price * abs(size)) / abs(q + size)
                q, entry_fee = size, fee
                fees += fee
            elif q > 0.0 and exits[t, k]:
                dq = -q
                price = c * (1.0 - slip)
                fee = abs(dq) * price * fee_bps * 1e-4 + fee_fixed
                money -= dq * price + fee
                closing = min(abs(dq), abs(q))
                realised = 0.0 + closing * (price - avg) * 1.0
                pnl = realised - (entry_fee + fee * (closing / abs(dq)))
                trades += 1.0
                wins += 1.0 if pnl > 0.0 else 0.0
                pnl_sum += pnl
                fees += fee
                q, avg = 0.0, 0.0
            value = 0.0
            if q != 0.0:
                value += q * c
                exposed += 1.0 if abs(q * c) > 0.0 else 0.0
            equity = money + value
            if t == 0:
                first = equity
            else:  # Welford's running mean and squared deviations of the excess returns
                x = (equity / previous - 1.0) - rf_step
                n += 1.0
                delta = x - mean
                mean += delta / n
                m2 += delta * (x - mean)
                abs_sum += abs(x)
            previous = equity
            peak = max(peak, equity)
            worst = min(worst, equity / peak - 1.0)
        row = out[k]
        row[_S_END], row[_S_FIRST], row[_S_WORST] = previous, first, worst
        row[_S_TRADES], row[_S_WINS], row[_S_PNL], row[_S_FEES], row[_S_EXPOSED] = trades, wins, pnl_sum, fees, exposed
        row[_S_N], row[_S_MEAN], row[_S_M2], row[_S_ABS] = n, mean, m2, abs_sum


@njit(**_PAR)
def _crossovers_nb(fast: np.ndarray, slow: np.ndarray, fi: np.ndarray, si: np.ndarray, entries: np.ndarray, exits: np.ndarray) -> None:
    for k in prange(fi.shape[0]):
        f, s = fi[k], si[k]
        prev = np.nan
        for t in range(fast.shape[0]):
            d = fast[t, f] - slow[t, s]
            entries[t, k] = d > 0.0 and prev <= 0.0  # False while either side is NaN
            exits[t, k] = d < 0.0 and prev >= 0.0
            prev = d


def crossovers(fast: Any, slow: Any, *, pairs: Sequence[tuple[int, int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where ``fast`` crosses above ``slow`` (entries) and below it (exits).

    With ``d = fast - slow``: an entry at ``t`` when ``d[t] > 0 >= d[t-1]``, an exit when
    ``d[t] < 0 <= d[t-1]`` (never at the first row or next to a NaN), as the NumPy expressions
    ``(d > 0) & (prev <= 0)`` and ``(d < 0) & (prev >= 0)`` give them.

    Parameters
    ----------
    fast, slow
        Arrays of shape ``(T,)`` or ``(T, K)`` (e.g. :func:`ntlab.features.grid` of moving
        averages, ``.to_numpy()``).
    pairs
        Column pairs ``(i, j)``: output column ``k`` compares ``fast[:, i]`` with ``slow[:, j]``
        (every fast window against every slow one, in one pass over the data). Default: column
        ``k`` with column ``k`` (a single column is compared with each of the other side's).

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        ``entries, exits``, bool ``(T, K)`` in column-major order (what :func:`sweep_signals`
        reads fastest).
    """
    f, s = (np.asarray(x, dtype=np.float64) for x in (fast, slow))
    f, s = (x[:, None] if x.ndim == 1 else x for x in (f, s))
    if f.ndim != 2 or s.ndim != 2 or f.shape[0] != s.shape[0]:
        raise DataError(f"fast {np.shape(fast)} and slow {np.shape(slow)} need the same number of rows, as (T,) or (T, K) arrays")
    if pairs is None:
        k = max(f.shape[1], s.shape[1])
        if f.shape[1] not in (1, k) or s.shape[1] not in (1, k):
            raise DataError(f"fast has {f.shape[1]} columns and slow {s.shape[1]}; give the same number, one column, or pairs=")
        fi = np.arange(k) if f.shape[1] == k else np.zeros(k, dtype=np.int64)
        si = np.arange(k) if s.shape[1] == k else np.zeros(k, dtype=np.int64)
    else:
        index = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        bad = index[(index[:, 0] < 0) | (index[:, 0] >= f.shape[1]) | (index[:, 1] < 0) | (index[:, 1] >= s.shape[1])]
        if bad.size:
            raise DataError(f"pair {tuple(bad[0].tolist())} is out of range: fast has {f.shape[1]} columns, slow {s.shape[1]}")
        fi, si = np.ascontiguousarray(index[:, 0]), np.ascontiguousarray(index[:, 1])
    entries = np.empty((f.shape[0], fi.shape[0]), dtype=np.bool_, order="F")
    exits = np.empty_like(entries, order="F")
    _crossovers_nb(f, s, fi, si, entries, exits)
    return entries, exits


_SWEEP_COLUMNS = ("n_trades", "win_rate", "pnl", "total_fees", "end_equity", "total_return", "max_drawdown", "sharpe", "exposure")


def _fast_path(data: BarData, model: ExecutionModel) -> bool:
    """Whether the fused kernel computes what the broker would: one asset with every close
    finite, market orders filling whole at the signal bar's close, no leverage check."""
    p = model.params()
    return (
        len(data.symbols) == 1
        and p[o.P_FILL_ON] == 0.0
        and p[o.P_LATENCY] == 0.0
        and p[o.P_VOLUME_LIMIT] == 0.0
        and p[o.P_MAX_LEVERAGE] == 0.0
        and bool(np.all(np.isfinite(data.ohlcv[:, 0, b.CLOSE])))
    )


def sweep_signals(
    bars: pl.DataFrame | BarData,
    entries: Any,
    exits: Any,
    *,
    size: float = 1.0,
    cash: float = 1_000_000.0,
    model: ExecutionModel | None = None,
    labels: pl.DataFrame | Sequence[Any] | None = None,
    periods_per_year: float | None = None,
    risk_free: float = 0.0,
) -> SweepResult:
    """Metrics of many long-only signal columns on one asset: a parameter sweep in one call.

    Parameters
    ----------
    bars
        One asset's bars (or a :class:`BarData` of one symbol).
    entries, exits
        bool (or 0/1) arrays of shape ``(T, K)``: column ``k`` is one run of
        :func:`backtest_signals`; a ``(T,)`` array is the same for every column.
    size, cash, model
        As in :func:`backtest_signals` (one size for every column).
    labels
        What identifies each column in the result: a frame of K rows (e.g. the parameters:
        ``fast``, ``slow``) whose columns lead the result, or K values of a ``column`` column;
        default ``column = 0..K-1``.
    periods_per_year, risk_free
        For the Sharpe ratio, as in :func:`ntlab.backtest.metrics.summary`.

    Returns
    -------
    SweepResult
        As :func:`ntlab.backtest.sweep.sweep` gives (``best``, ``heatmap``, ``frame``): one row
        per column, the labels, then ``n_trades, win_rate, pnl`` (sum of the round trips' P&L
        after fees), ``total_fees, end_equity, total_return, max_drawdown, sharpe, exposure``
        (Float64), each as :func:`~ntlab.backtest.metrics.summary` computes it from
        :func:`backtest_signals`' result for that column.
    """
    from ntlab.backtest import metrics as m

    model = model or ExecutionModel()
    data = bar_data(bars)
    if len(data.symbols) != 1:
        raise ConfigError(f"sweep_signals runs signal columns on one asset; these bars hold {len(data.symbols)} symbols {data.symbols[:5]}; filter one")
    a, z = (_columns(x, data.ts.size, name) for x, name in ((entries, "entries"), (exits, "exits")))
    k = max(a.shape[1], z.shape[1])
    if a.shape[1] not in (1, k) or z.shape[1] not in (1, k):
        raise DataError(f"entries have {a.shape[1]} columns and exits {z.shape[1]}; give both K columns (or one of them a single column)")
    a, z = np.broadcast_to(a, (data.ts.size, k)), np.broadcast_to(z, (data.ts.size, k))
    if not (math.isfinite(size) and size > 0):
        raise ConfigError(f"size={size!r} must be a number > 0")
    if not (math.isfinite(cash) and cash >= 0):
        raise ConfigError(f"cash={cash!r} must be a finite number >= 0")
    head = _labels(labels, k)
    ppy = m._resolve_periods_per_year(data.ts, periods_per_year)
    rf_step = m._per_step_rate(risk_free, ppy) if math.isfinite(ppy) else 0.0
    if _fast_path(data, model):
        out = np.zeros((k, _S_WIDTH))
        # column-major signals: each column's run reads contiguous memory
        _sweep_nb(data.ohlcv[:, 0, b.CLOSE].copy(), np.asfortranarray(a), np.asfortranarray(z), float(size), float(cash), model.params(), rf_step, out)
        std = np.sqrt(out[:, _S_M2] / np.maximum(out[:, _S_N] - 1.0, 1.0))
        flat = (out[:, _S_N] < 2) | (std <= m._ZERO_VOLATILITY_RTOL * out[:, _S_ABS] / np.maximum(out[:, _S_N], 1.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            rows = {
                "n_trades": out[:, _S_TRADES],
                "win_rate": np.where(out[:, _S_TRADES] > 0, out[:, _S_WINS] / out[:, _S_TRADES], np.nan),
                "pnl": out[:, _S_PNL],
                "total_fees": out[:, _S_FEES],
                "end_equity": out[:, _S_END],
                "total_return": out[:, _S_END] / out[:, _S_FIRST] - 1.0,
                "max_drawdown": out[:, _S_WORST],
                "sharpe": np.where(flat, np.nan, out[:, _S_MEAN] / std * math.sqrt(ppy)),
                "exposure": out[:, _S_EXPOSED] / data.ts.size,
            }
    else:
        per_column = []
        for j in range(k):
            r = backtest_signals(data, a[:, j], z[:, j], size=size, cash=cash, model=model)
            s = r.metrics(periods_per_year=periods_per_year, risk_free=risk_free)
            per_column.append([s["n_trades"], s["win_rate"], float(r.trades["pnl"].sum()), s["total_fees"], s["end_equity"],
                               s["total_return"], s["max_drawdown"], s["sharpe"], s["exposure"]])  # fmt: skip
        values = np.array(per_column, dtype=np.float64).reshape(k, len(_SWEEP_COLUMNS))
        rows = {name: values[:, i] for i, name in enumerate(_SWEEP_COLUMNS)}
    metrics = pl.DataFrame({name: np.asarray(rows[name], dtype=np.float64) for name in _SWEEP_COLUMNS})
    frame = pl.concat([head, metrics, pl.DataFrame({"error": pl.Series([None] * k, dtype=pl.String)})], how="horizontal")
    return SweepResult(frame=frame, params=tuple(head.columns), metrics=_SWEEP_COLUMNS)


def _columns(values: Any, rows: int, name: str) -> np.ndarray:
    if isinstance(values, pl.Series):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise DataError(f"{name} has shape {arr.shape}; it needs one row per bar ({rows}) and one column per run")
    return arr if arr.dtype == np.bool_ else np.nan_to_num(arr.astype(np.float64)) != 0


def _labels(labels: pl.DataFrame | Sequence[Any] | None, k: int) -> pl.DataFrame:
    if labels is None:
        return pl.DataFrame({"column": np.arange(k)})
    frame = labels if isinstance(labels, pl.DataFrame) else pl.DataFrame({"column": list(labels)})
    if frame.height != k:
        raise DataError(f"labels have {frame.height} rows for {k} signal columns; give one per column")
    clash = sorted(set(frame.columns) & {*_SWEEP_COLUMNS, "error"})
    if clash:
        raise ConfigError(f"label columns {clash} clash with the metric names; rename them")
    return frame
