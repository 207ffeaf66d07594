"""Rebalancing backtest: re-optimise a portfolio on a rolling window and hold it between rebalances.

Every ``every`` rows, the weights are chosen from the last ``lookback`` rows of prices (an
objective of :func:`~ntlab.portfolio.optimize.optimize`, ``"equal_weight"``, or your own
function of the window) and traded ``lag`` rows later at that row's close.

Accounting (all in cash terms, fractional shares):

* Only assets with a price on every row of the window take part in a decision (no look-ahead:
  a stock listed later, or with a gap, waits for a full window).
* At an execution row with equity ``V`` and current holdings value ``h_i``, the target holdings are
  ``w_i (V - c)`` where ``c = cost_bps / 1e4 * sum_i |w_i (V - c) - h_i|`` is the cost of the trades
  (solved by fixed-point iteration, so that a fully invested book keeps zero cash after costs).
  Assets without a price on the execution row are not traded that time.
* ``max_turnover`` caps turnover ``sum_i |trade_i| / V`` per rebalance: larger moves are scaled
  down towards the target, keeping their direction. The first investment from cash is not capped.
* Between rebalances the share counts are fixed (weights drift with prices). A missing price is
  carried forward from the last one; a stock that stops trading is held at its last price until
  the next rebalance sells it there.

The result's ``equity`` frame has the columns of :mod:`ntlab.backtest.metrics`, so metrics and
tear sheets come from the backtest layer.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.portfolio.optimize import OBJECTIVES, OptimizationError, Weights, optimize

__all__ = ["RebalanceResult", "compare", "rebalance"]

WeightFunction = Callable[[pl.DataFrame], "Mapping[str, float] | Weights"]
_COST_ITERATIONS = 8


@dataclass(frozen=True, repr=False, eq=False)
class RebalanceResult:
    """What :func:`rebalance` produced.

    Attributes
    ----------
    name : str
        The strategy's label (the objective's name unless given).
    equity : pl.DataFrame
        One row per price row from the first decision on: ``ts, equity, cash, position_value,
        gross_exposure, traded, fees``.
    weights : pl.DataFrame
        Long frame of the weights held right after each rebalance: ``ts, symbol, weight``.
    rebalances : pl.DataFrame
        One row per rebalance: ``decided`` (ts of the window's last row), ``ts`` (execution),
        ``assets`` (eligible), ``turnover``, ``cost``, ``capped`` (turnover limit hit),
        ``status`` (``"ok"`` or the optimiser's error when the book was held instead).
    """

    name: str
    equity: pl.DataFrame
    weights: pl.DataFrame
    rebalances: pl.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def final_equity(self) -> float:
        return float(self.equity["equity"][-1])

    @property
    def failures(self) -> int:
        """Rebalances whose weights could not be computed (the book was held)."""
        return int((self.rebalances["status"] != "ok").sum())

    def metrics(self, *, risk_free: float = 0.0) -> Any:
        """Performance metrics (:func:`ntlab.backtest.metrics.summary`, 252 periods per year)."""
        from ntlab.backtest.metrics import summary

        return summary(self.equity, periods_per_year=252, risk_free=risk_free)

    def tearsheet(self, path: str | Path | None = None, *, benchmark: pl.DataFrame | None = None) -> str:
        """The HTML tear sheet of :mod:`ntlab.backtest.tearsheet`; written to ``path`` when given."""
        from ntlab.backtest.tearsheet import tearsheet_html, write_tearsheet

        title = f"Rebalancing: {self.name}"
        if path is not None:
            write_tearsheet(path, self.equity, title=title, metrics=self.metrics(), benchmark=benchmark)
            return Path(path).read_text()
        return tearsheet_html(self.equity, title=title, metrics=self.metrics(), benchmark=benchmark)

    def plot_weights(self, *, top: int = 10, ax: Any = None) -> Any:
        """Weights over time (:func:`ntlab.portfolio.plots.plot_weights`)."""
        from ntlab.portfolio.plots import plot_weights

        return plot_weights(self.weights, top=top, ax=ax)

    def __repr__(self) -> str:
        start = float(self.equity["equity"][0])
        return (
            f"RebalanceResult({self.name!r}, {self.rebalances.height} rebalances, {self.failures} held on error, "
            f"mean turnover {float(self.rebalances['turnover'].mean() or 0):.1%}, "
            f"final equity {self.final_equity:,.2f} ({self.final_equity / start - 1:+.2%}))"
        )

    def _repr_html_(self) -> str:
        return f"<div><b>{html.escape(repr(self))}</b>{self.metrics()._repr_html_()}</div>"


def _wide(prices: pl.DataFrame) -> pl.DataFrame:
    """``ts`` + one Float64 column per asset, sorted by time (long frames are pivoted)."""
    if not isinstance(prices, pl.DataFrame):
        raise SchemaError(f"prices must be a Polars DataFrame, got {type(prices).__name__}")
    time_col = next((c for c in ("ts", "date") if c in prices.columns), None)
    if time_col is None:
        raise SchemaError(f"prices need a 'ts' or 'date' column; got {prices.columns}")
    if "symbol" in prices.columns:
        if "close" not in prices.columns:
            raise SchemaError(f"a long price frame needs a 'close' column; got {prices.columns}")
        prices = prices.pivot(on="symbol", index=time_col, values="close", aggregate_function="last")
    prices = prices.rename({time_col: "ts"}).sort("ts")
    if prices["ts"].n_unique() != prices.height:
        raise DataError("prices have duplicate timestamps; keep one row per time")
    assets = [c for c in prices.columns if c != "ts"]
    if len(assets) < 2:
        raise DataError(f"a rebalancing backtest needs at least 2 assets; got {assets}")
    frame = prices.select("ts", *(pl.col(a).cast(pl.Float64) for a in assets))
    values = frame.select(assets).to_numpy()
    bad = np.isfinite(values) & (values <= 0) | np.isinf(values)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise DataError(f"prices must be positive and finite; {assets[col]} is {float(values[row, col])!r} at {frame['ts'][row]}")
    return frame


def _check(name: str, value: float, low: float, what: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _target(
    strategy: str | WeightFunction,
    window: pl.DataFrame,
    current: dict[str, float],
    optimize_kwargs: dict[str, Any],
) -> dict[str, float]:
    assets = window.columns[1:]
    if strategy == "equal_weight":
        return {a: 1.0 / len(assets) for a in assets}
    if isinstance(strategy, str):
        kwargs = dict(optimize_kwargs)
        if kwargs.get("cost"):
            kwargs["current_weights"] = {a: current.get(a, 0.0) for a in assets}
        result: Any = optimize(window, strategy, **kwargs)
    else:
        result = strategy(window)
    raw = result.frame.select("symbol", "weight").rows() if isinstance(result, Weights) else dict(result).items()
    weights = {str(s): float(w) for s, w in raw}
    unknown = sorted(set(weights) - set(assets))
    if unknown:
        raise DataError(f"the weight function returned symbols outside the window: {unknown[:5]}")
    if not all(math.isfinite(w) for w in weights.values()):
        raise DataError(f"the weight function returned non-finite weights: {weights}")
    return weights


def rebalance(
    prices: pl.DataFrame,
    strategy: str | WeightFunction = "max_sharpe",
    *,
    lookback: int = 252,
    every: int = 21,
    lag: int = 1,
    cost_bps: float = 10.0,
    max_turnover: float | None = None,
    initial_cash: float = 1_000_000.0,
    on_error: str = "hold",
    name: str | None = None,
    progress: bool = True,
    **optimize_kwargs: Any,
) -> RebalanceResult:
    """Backtest periodic re-optimisation over a price history (see the module docstring).

    Parameters
    ----------
    prices : pl.DataFrame
        Closes, wide (``ts`` + one column per asset, nulls where not trading) or long
        (``ts``, ``symbol``, ``close``).
    strategy : str or callable
        An objective of :func:`~ntlab.portfolio.optimize.optimize` (``"max_sharpe"``, ``"hrp"``...),
        ``"equal_weight"``, or ``fn(window) -> {symbol: weight}`` (or a ``Weights``) where ``window``
        is the wide frame of eligible assets over the lookback.
    lookback : int
        Rows of prices each decision sees (252 = one year of days).
    every : int
        Rows between decisions (21 ≈ monthly on daily data).
    lag : int
        Rows between a decision and its trades (1 = trade at the next close; 0 = at the close the
        decision saw, which assumes you can compute and trade in the closing auction).
    cost_bps : float
        Cost per unit of traded notional, in basis points (commission + half-spread + impact).
    max_turnover : float, optional
        Cap on one-way turnover per rebalance, as a fraction of equity (0.2 = 20 %).
    initial_cash : float
        Starting equity.
    on_error : ``"hold"`` or ``"raise"``
        When the optimiser fails at a rebalance: keep the current book and record the error in
        ``rebalances.status`` (a warning gives the count at the end), or raise.
    name : str, optional
        Label for results and comparisons.
    progress : bool
        Show a tqdm progress bar over the rebalances.
    **optimize_kwargs
        Passed to :func:`~ntlab.portfolio.optimize.optimize` (``weight_bounds``, ``l2_gamma``,
        ``cov_method``...). With ``cost=k`` the current weights are passed as ``current_weights``
        so the optimiser penalises turnover.

    Returns
    -------
    RebalanceResult

    Raises
    ------
    ConfigError
        Bad parameters (unknown strategy, lookback < 2, negative costs...).
    DataError
        Fewer rows than ``lookback + lag``, non-positive prices, duplicate timestamps.
    OptimizationError
        With ``on_error="raise"``, the first failing rebalance (its time in the message).
    """
    if isinstance(strategy, str) and strategy != "equal_weight" and strategy not in OBJECTIVES:
        raise ConfigError(f"unknown strategy {strategy!r}; use 'equal_weight', one of {OBJECTIVES}, or a function")
    if not (isinstance(strategy, str) or callable(strategy)):
        raise ConfigError(f"strategy must be a name or a function of the window, got {type(strategy).__name__}")
    for key, low in (("lookback", 2), ("every", 1), ("lag", 0)):
        value = {"lookback": lookback, "every": every, "lag": lag}[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
    _check("cost_bps", cost_bps, 0.0, "a finite number >= 0")
    _check("initial_cash", initial_cash, 1e-9, "a finite number > 0")
    if max_turnover is not None:
        _check("max_turnover", max_turnover, 1e-12, "a finite number > 0 (or None for no cap)")
    if on_error not in ("hold", "raise"):
        raise ConfigError(f"on_error must be 'hold' or 'raise', got {on_error!r}")
    frame = _wide(prices)
    n = frame.height
    if n < lookback + lag:
        raise DataError(f"{n} rows of prices, fewer than lookback + lag = {lookback + lag}; use a shorter lookback")
    assets = frame.columns[1:]
    raw = frame.select(assets).to_numpy()
    present = np.isfinite(raw)
    mark = pl.DataFrame(raw, schema=assets).select(pl.all().forward_fill()).to_numpy()
    ts = frame["ts"]
    label = name or (strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "custom"))

    first = lookback - 1
    decisions = list(range(first, n - lag, every))
    # full windows: a running count of present prices per asset
    counts = np.vstack([np.zeros((1, len(assets)), dtype=np.int64), np.cumsum(present, axis=0)])
    shares = np.zeros(len(assets))
    cash = float(initial_cash)
    rate = cost_bps / 1e4
    equity = np.empty(n - first)
    cash_path = np.empty(n - first)
    position_value = np.empty(n - first)
    gross = np.empty(n - first)
    traded = np.zeros(n - first)
    fees = np.zeros(n - first)
    weight_rows: list[tuple[Any, str, float]] = []
    log: list[dict[str, Any]] = []
    executions = {d + lag: d for d in decisions}
    held = np.nan_to_num(mark, nan=0.0)
    failures: list[str] = []
    for row in tqdm(range(first, n), total=n - first, disable=not progress, desc=f"rebalance {label}", unit="row"):
        if row in executions:
            d = executions[row]
            full = (counts[d + 1] - counts[d + 1 - lookback]) == lookback
            eligible = [a for a, ok in zip(assets, full, strict=True) if ok]
            values = shares * held[row]
            value = cash + float(values.sum())
            current = {a: float(v / value) for a, v in zip(assets, values, strict=True) if v}
            status = "ok"
            try:
                if len(eligible) < 2:
                    raise DataError(f"{len(eligible)} asset(s) with a full {lookback}-row window; need 2")
                window = frame.slice(d + 1 - lookback, lookback).select("ts", *eligible)
                target = _target(strategy, window, current, optimize_kwargs)
            except (OptimizationError, DataError) as exc:
                if on_error == "raise":
                    raise type(exc)(f"rebalance decided at {ts[d]}: {exc}") from exc
                status = f"held: {exc}"
                failures.append(status)
                target = current
            w = np.array([target.get(a, 0.0) for a in assets])
            tradable = present[row]
            desired = np.where(tradable, w * value, values)
            trade = desired - values
            turnover = float(np.abs(trade).sum() / value)
            building = not values.any()  # the first investment from cash is never capped
            capped = max_turnover is not None and not building and turnover > max_turnover * (1 + 1e-12)
            scale = max_turnover / turnover if capped else 1.0
            cost = 0.0
            for _ in range(_COST_ITERATIONS):
                desired = np.where(tradable, values + scale * (w * (value - cost) - values), values)
                cost = rate * float(np.abs(desired - values).sum())
            trade = desired - values
            price = held[row]
            with np.errstate(divide="ignore", invalid="ignore"):
                shares = np.where(tradable, desired / np.where(tradable, price, 1.0), shares)
            notional = float(np.abs(trade).sum())
            cash = value - cost - float((shares * price).sum())
            i = row - first
            traded[i], fees[i] = notional, cost
            after = shares * price
            weight_rows.extend((ts[row], a, float(v / (value - cost))) for a, v in zip(assets, after, strict=True) if v)
            log.append({
                "decided": ts[d], "ts": ts[row], "assets": len(eligible), "turnover": notional / value,
                "cost": cost, "capped": bool(capped), "status": status,
            })
        i = row - first
        pos = shares * held[row]
        position_value[i] = float(pos.sum())
        cash_path[i] = cash
        equity[i] = cash + position_value[i]
        gross[i] = float(np.abs(pos).sum())
    if failures:
        warnings.warn(
            f"{len(failures)} of {len(decisions)} rebalances kept the previous book because the weights could not be "
            f"computed (first: {failures[0]}); see result.rebalances['status']",
            RuntimeWarning,
            stacklevel=2,
        )
    equity_frame = pl.DataFrame({
        "ts": ts.slice(first),
        "equity": equity,
        "cash": cash_path,
        "position_value": position_value,
        "gross_exposure": gross,
        "traded": traded,
        "fees": fees,
    })
    weights = pl.DataFrame(weight_rows, schema={"ts": ts.dtype, "symbol": pl.Utf8, "weight": pl.Float64}, orient="row")
    rebalances = pl.DataFrame(
        log,
        schema={
            "decided": ts.dtype, "ts": ts.dtype, "assets": pl.Int64, "turnover": pl.Float64, "cost": pl.Float64,
            "capped": pl.Boolean, "status": pl.Utf8,
        },
    )
    params = {"lookback": lookback, "every": every, "lag": lag, "cost_bps": cost_bps, "max_turnover": max_turnover, **optimize_kwargs}
    return RebalanceResult(str(label), equity_frame, weights, rebalances, params)


def compare(results: list[RebalanceResult], benchmark: pl.DataFrame | None = None) -> pl.DataFrame:
    """Metrics of several rebalancing results (and a benchmark price series) side by side.

    Parameters
    ----------
    results
        Results over the same period (e.g. max Sharpe, HRP and equal weight).
    benchmark
        ``ts`` and one price column (``ntlab.datasets.load("sp500_index")``), cut to the results' dates
        and treated as a buy-and-hold equity curve without costs.

    Returns
    -------
    pl.DataFrame
        One row per strategy: ``strategy, total_return, annualised_return, annualised_volatility, sharpe,
        sortino, max_drawdown, calmar, turnover, total_fees``.
    """
    from ntlab.backtest.metrics import summary

    if not results:
        raise ConfigError("compare needs at least one RebalanceResult")
    rows = []
    curves = [(r.name, r.equity) for r in results]
    if benchmark is not None:
        curves.append(_benchmark_curve(benchmark, results[0].equity["ts"]))
    for label, eq in curves:
        m = summary(eq, periods_per_year=252)
        rows.append({"strategy": label} | {k: float(m[k]) for k in (
            "total_return", "annualised_return", "annualised_volatility", "sharpe", "sortino", "max_drawdown",
            "calmar", "turnover", "total_fees",
        )})
    return pl.DataFrame(rows)


def _benchmark_curve(benchmark: pl.DataFrame, ts: pl.Series) -> tuple[str, pl.DataFrame]:
    columns = [c for c in benchmark.columns if c != "ts"]
    if "ts" not in benchmark.columns or len(columns) != 1:
        raise SchemaError(f"benchmark must have 'ts' and one price column; got {benchmark.columns}")
    name = columns[0]
    cut = (
        benchmark.select("ts", pl.col(name).cast(pl.Float64))
        .with_columns(pl.col("ts").cast(ts.dtype))
        .filter(pl.col("ts").is_between(ts.min(), ts.max()) & pl.col(name).is_not_null())
        .sort("ts")
    )
    if cut.height < 2:
        raise DataError(f"benchmark {name!r} has fewer than 2 prices between {ts.min()} and {ts.max()}")
    zeros = pl.lit(0.0)
    return name, cut.select("ts", equity=pl.col(name), gross_exposure=pl.col(name), traded=zeros, fees=zeros)
