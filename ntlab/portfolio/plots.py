"""The three portfolio plots a portfolio manager looks at: efficient frontier, weights over time, risk shares.

* :func:`plot_frontier`: the mean-variance efficient frontier of a price frame, with the assets, the
  max-Sharpe and min-volatility portfolios of :func:`~ntlab.portfolio.optimize.optimize` and the
  capital market line;
* :func:`plot_weights`: portfolio weights at each rebalance as a stacked step chart (longs stacked
  up from 0, shorts stacked down), the largest names shown and the rest summed as ``"other"``;
* :func:`plot_risk_contributions`: each name's share of portfolio risk next to its weight, from the
  frame of :func:`~ntlab.portfolio.risk.risk_contributions`.

Figures follow the conventions of :mod:`ntlab.backtest.tearsheet`: they are drawn on the Agg canvas
(pyplot is never imported), show themselves in Jupyter, and ``plot_*(..., ax=ax)`` draws on ``ax``
and returns its figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter
from pypfopt import EfficientFrontier

from ntlab.backtest.tearsheet import _BLUE, _GREEN, _GREY, _RED, _target
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.portfolio.optimize import (
    _SOLVER_ERRORS,
    OptimizationError,
    expected_returns,
    optimize,
    prices_to_pandas,
    risk_model,
)

__all__ = ["plot_frontier", "plot_risk_contributions", "plot_weights"]

_OTHER = "other"
_MAX_LABELLED_ASSETS = 25


# ----------------------------------------------------------------------------- frontier
def plot_frontier(
    prices: pl.DataFrame | pd.DataFrame,
    *,
    points: int = 40,
    risk_free_rate: float = 0.02,
    weight_bounds: tuple[float | None, float | None] = (0, 1),
    mu_method: str = "mean",
    cov_method: str = "ledoit_wolf",
    frequency: int = 252,
    show_assets: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Efficient frontier: annualised volatility (x) against expected annual return (y).

    The frontier is traced with PyPortfolioOpt's ``EfficientFrontier.efficient_return`` (a fresh
    optimiser per point) over ``points`` target returns evenly spaced from the min-volatility
    portfolio's return to just below (``1e-4``) the largest return the weight bounds allow; points
    whose solve fails are left out. The max-Sharpe (star) and min-volatility (diamond) portfolios
    are those of :func:`~ntlab.portfolio.optimize.optimize` with the same settings, and the capital
    market line runs from ``(0, risk_free_rate)`` through the max-Sharpe portfolio.

    Parameters
    ----------
    prices : pl.DataFrame or pd.DataFrame
        Wide or long price frame (see :func:`~ntlab.portfolio.optimize.prices_to_pandas`).
    points : int
        Number of target returns on the frontier (at least 2).
    risk_free_rate : float
        Annual risk-free rate: the max-Sharpe portfolio and the intercept of the capital market line.
    weight_bounds : tuple
        Bounds on each weight, as in :func:`~ntlab.portfolio.optimize.optimize`; ``None`` means
        PyPortfolioOpt's default of -1 (lower) or 1 (upper).
    mu_method, cov_method : str
        Methods of :func:`~ntlab.portfolio.optimize.expected_returns` and
        :func:`~ntlab.portfolio.optimize.risk_model`.
    frequency : int
        Bars per year (252 daily).
    show_assets : bool
        Draw each asset's own volatility and expected return (named when there are at most 25).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on. Its artists are labelled ``"efficient frontier"``, ``"assets"``,
        ``"max Sharpe"``, ``"min volatility"`` and ``"capital market line"``.

    Raises
    ------
    ConfigError
        ``points`` below 2, or an unknown method (from :func:`~ntlab.portfolio.optimize.optimize`).
    OptimizationError
        Infeasible weight bounds, a failed max-Sharpe/min-volatility solve, or fewer than 2
        frontier points solved.
    """
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
        raise ConfigError(f"points must be an integer >= 2 (target returns on the frontier), got {points!r}")
    px = prices_to_pandas(prices)
    settings: dict[str, Any] = {
        "risk_free_rate": risk_free_rate,
        "weight_bounds": weight_bounds,
        "mu_method": mu_method,
        "cov_method": cov_method,
        "frequency": frequency,
    }
    min_vol = optimize(px, "min_volatility", **settings).performance
    max_sharpe = optimize(px, "max_sharpe", **settings).performance
    mu = expected_returns(px, mu_method, frequency)
    cov = risk_model(px, cov_method, frequency)
    vols, rets = _frontier_points(mu, cov, weight_bounds, min_vol["expected_return"], int(points))

    figure, ax = _target(ax, height=5.0)
    ax.plot(vols, rets, color=_BLUE, linewidth=1.8, label="efficient frontier")
    asset_vols = np.sqrt(np.diag(cov.to_numpy()))
    if show_assets:
        ax.scatter(asset_vols, mu.to_numpy(), s=18, color=_GREY, alpha=0.8, label="assets", zorder=3)
        if len(mu) <= _MAX_LABELLED_ASSETS:
            for name, vol, ret in zip(mu.index, asset_vols, mu.to_numpy()):
                ax.annotate(str(name), (vol, ret), xytext=(3, 3), textcoords="offset points", fontsize=7, color="#444")
    ms_vol, ms_ret = max_sharpe["volatility"], max_sharpe["expected_return"]
    right = 1.05 * max([float(np.max(vols)), ms_vol, *(asset_vols if show_assets else [])])
    slope = (ms_ret - risk_free_rate) / ms_vol
    ax.plot(
        [0.0, right],
        [risk_free_rate, risk_free_rate + slope * right],
        color=_GREY,
        linestyle="--",
        linewidth=1.0,
        label="capital market line",
    )
    ax.scatter(
        [ms_vol],
        [ms_ret],
        marker="*",
        s=220,
        color=_RED,
        edgecolor="black",
        linewidth=0.5,
        zorder=5,
        label=f"max Sharpe ({max_sharpe['sharpe']:.2f})",
    )
    ax.scatter(
        [min_vol["volatility"]],
        [min_vol["expected_return"]],
        marker="D",
        s=60,
        color=_GREEN,
        edgecolor="black",
        linewidth=0.5,
        zorder=5,
        label="min volatility",
    )
    ax.set_xlim(left=0.0, right=right)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("volatility (annualised)")
    ax.set_ylabel("expected return (annualised)")
    ax.set_title("Efficient frontier", loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    return figure


def _frontier_points(
    mu: pd.Series,
    cov: pd.DataFrame,
    weight_bounds: tuple[float | None, float | None],
    low: float,
    points: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Volatilities and returns of the solved ``efficient_return`` portfolios, in target order."""
    high = _max_return(mu.to_numpy(), len(mu), weight_bounds) - 1e-4
    targets = np.unique(np.linspace(low, max(low, high), points))
    vols, rets = [], []
    for target in targets:
        ef = EfficientFrontier(mu, cov, weight_bounds=weight_bounds)
        try:
            ef.efficient_return(float(target))
        except _SOLVER_ERRORS:
            continue
        ret, vol, _ = ef.portfolio_performance()
        vols.append(float(vol))
        rets.append(float(ret))
    if len(vols) < 2:
        raise OptimizationError(
            f"only {len(vols)} of {targets.size} efficient-frontier points could be solved (target returns "
            f"{targets[0]:.4f} to {targets[-1]:.4f}); relax weight_bounds {weight_bounds} or use "
            "assets whose expected returns differ"
        )
    return np.asarray(vols), np.asarray(rets)


def _max_return(mu: np.ndarray, n: int, weight_bounds: tuple[float | None, float | None]) -> float:
    """Largest ``mu @ w`` with ``sum(w) = 1`` and each weight in the bounds (None as -1 / 1, as PyPortfolioOpt)."""
    lo = -1.0 if weight_bounds[0] is None else float(weight_bounds[0])
    hi = 1.0 if weight_bounds[1] is None else float(weight_bounds[1])
    w = np.full(n, lo)
    budget = 1.0 - lo * n
    for i in np.argsort(-mu, kind="stable"):
        add = min(hi - lo, budget)
        w[i] += add
        budget -= add
    return float(mu @ w)


# ----------------------------------------------------------------------------- weights
def plot_weights(weights: pl.DataFrame, *, top: int = 10, ax: Axes | None = None) -> Figure:
    """Portfolio weights over time as a stacked step chart.

    Each rebalance's weights are held until the next rebalance (a step chart); the last rebalance
    is drawn for one median interval between rebalances (one day when there is a single one). The
    ``top`` symbols by average absolute weight (a symbol missing at a rebalance counts as 0 there)
    are drawn largest first, nearest the zero line, and the others are summed, with their signs,
    into ``"other"``. Positive weights stack up from 0 and negative weights (shorts) stack down
    from 0, in the same colour for the same symbol, so the top edge is the long exposure and the
    bottom edge the short exposure; a black line shows the net weight (the sum of the weights) at
    each rebalance.

    Parameters
    ----------
    weights : pl.DataFrame
        Long frame with columns ``ts`` (Datetime or Date), ``symbol`` (str) and ``weight`` (number),
        one row per (rebalance time, symbol).
    top : int
        Number of symbols drawn on their own (at least 1).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on: one filled ``StepPatch`` per symbol group and sign (``get_data()``
        gives ``values`` = the far edge, ``baseline`` = the near edge of the layer), labelled with
        the symbol or ``"other"`` (the negative layer ``"_<symbol> short"``, out of the legend), and a
        line labelled ``"net"``.

    Raises
    ------
    SchemaError
        Not a Polars DataFrame, a missing column, or a column of the wrong type.
    DataError
        An empty frame, a null ``ts``/``symbol``, a null or non-finite ``weight``, or a
        (``ts``, ``symbol``) pair given twice.
    ConfigError
        ``top`` below 1.
    """
    _check_top(top)
    frame = _check_weights(weights)
    wide = frame.pivot(on="symbol", index="ts", values="weight", aggregate_function=None).sort("ts").fill_null(0.0)
    symbols = [c for c in wide.columns if c != "ts"]
    matrix = wide.select(symbols).to_numpy().astype(np.float64)
    names, layers = _group(symbols, matrix.T, np.mean(np.abs(matrix), axis=0), top)
    ts = wide["ts"].to_numpy()
    edges = np.concatenate([ts, [ts[-1] + (np.median(np.diff(ts)) if ts.size > 1 else np.timedelta64(1, "D"))]])

    figure, ax = _target(ax, height=4.0)
    colours = _colours(min(top, len(symbols)), len(symbols) > top)
    up = np.zeros(ts.size)
    down = np.zeros(ts.size)
    for name, layer, colour in zip(names, layers, colours):
        positive, negative = np.maximum(layer, 0.0), np.minimum(layer, 0.0)
        ax.stairs(up + positive, edges, baseline=up.copy(), fill=True, color=colour, linewidth=0, label=name)
        up += positive
        if np.any(negative < 0):
            ax.stairs(
                down + negative,
                edges,
                baseline=down.copy(),
                fill=True,
                color=colour,
                linewidth=0,
                label=f"_{name} short",
            )
            down += negative
    net = matrix.sum(axis=1)
    ax.stairs(net, edges, baseline=None, color="black", linewidth=1.0, label="net")
    if np.any(down < 0):
        ax.axhline(0.0, color="black", linewidth=0.6)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("weight")
    ax.set_title("Weights", loc="left")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.margins(x=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return figure


def _check_weights(weights: pl.DataFrame) -> pl.DataFrame:
    fix = "pass a long frame with one row per (ts, symbol): ts (Datetime), symbol (str), weight (f64)"
    if not isinstance(weights, pl.DataFrame):
        raise SchemaError(f"weights must be a Polars DataFrame, got {type(weights).__name__}; {fix}")
    missing = [c for c in ("ts", "symbol", "weight") if c not in weights.columns]
    if missing:
        raise SchemaError(
            f"weights frame is missing column(s) {missing} (got {weights.columns}); {fix}, e.g. from a wide frame "
            "wide.unpivot(index='ts', variable_name='symbol', value_name='weight')"
        )
    schema = weights.schema
    if not isinstance(schema["ts"], (pl.Datetime, pl.Date)):
        raise SchemaError(
            f"column 'ts' must be a Datetime or Date, got {schema['ts']}; parse it with str.to_datetime()"
        )
    if not (schema["weight"].is_numeric()):
        raise SchemaError(f"column 'weight' must be numeric, got {schema['weight']}; cast it to pl.Float64")
    if weights.height == 0:
        raise DataError(f"weights frame is empty; {fix}")
    frame = weights.select(pl.col("ts"), pl.col("symbol").cast(pl.String), pl.col("weight").cast(pl.Float64))
    for column in ("ts", "symbol"):
        nulls = frame[column].null_count()
        if nulls:
            raise DataError(f"column {column!r} has {nulls} null value(s); drop those rows")
    bad = frame.filter(pl.col("weight").is_null() | ~pl.col("weight").is_finite())
    if bad.height:
        first = bad.row(0, named=True)
        raise DataError(
            f"column 'weight' has {bad.height} null or non-finite value(s) (first: ts={first['ts']}, "
            f"symbol={first['symbol']!r}, weight={first['weight']}); fill them (e.g. .fill_nan(0.0)) or drop them"
        )
    dupes = frame.filter(pl.struct("ts", "symbol").is_duplicated())
    if dupes.height:
        first = dupes.row(0, named=True)
        raise DataError(
            f"weights has {dupes.height} rows sharing a (ts, symbol) pair (first: ts={first['ts']}, "
            f"symbol={first['symbol']!r}); keep one row per pair, e.g. group_by('ts', 'symbol').agg(pl.col('weight').sum())"
        )
    return frame


# ----------------------------------------------------------------------------- risk contributions
def plot_risk_contributions(contributions: pl.DataFrame, *, top: int = 20, ax: Axes | None = None) -> Figure:
    """Each symbol's share of portfolio risk next to its weight, as horizontal bars.

    For every symbol two bars are drawn side by side: its share of the portfolio variance
    (``percent``; red when it exceeds the weight, i.e. the name carries more risk than capital,
    blue otherwise) and its ``weight`` (grey). The ``top`` symbols with the largest absolute risk
    share are drawn, sorted by risk share, largest at the top; the rest are summed (risk share and
    weight) into a last bar ``"other"``. Symbols not held (weight and risk share both exactly 0, as
    an optimiser leaves most names) are left out.

    Parameters
    ----------
    contributions : pl.DataFrame
        The frame of :func:`~ntlab.portfolio.risk.risk_contributions`: at least ``symbol``,
        ``weight`` and ``percent`` (shares summing to 1), one row per symbol.
    top : int
        Number of symbols drawn on their own (at least 1).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on: two bar containers labelled ``"risk share"`` and ``"weight"``, with one
        bar per row, top row first.

    Raises
    ------
    SchemaError
        Not a Polars DataFrame, a missing column, or a non-numeric ``weight``/``percent``.
    DataError
        An empty frame, no row with a non-zero weight or risk share, a null symbol, a repeated symbol,
        or a null or non-finite ``weight``/``percent``.
    ConfigError
        ``top`` below 1.
    """
    _check_top(top)
    frame = _check_contributions(contributions)
    symbols = frame["symbol"].to_list()
    percent, weight = frame["percent"].to_numpy(), frame["weight"].to_numpy()
    names, grouped = _group(symbols, np.column_stack([percent, weight]), np.abs(percent), top)
    named = min(top, len(symbols))
    order = [*np.argsort(-grouped[:named, 0], kind="stable"), *range(named, len(names))]
    names = [names[i] for i in order]
    percent, weight = grouped[order, 0], grouped[order, 1]

    figure, ax = _target(ax, height=1.0 + 0.32 * len(names))
    rows = np.arange(len(names))
    height = 0.38
    over = percent > weight
    risk_colours = [_RED if o else _BLUE for o in over]
    ax.barh(rows - height / 2, percent, height=height, color=risk_colours, label="risk share")
    ax.barh(rows + height / 2, weight, height=height, color=_GREY, alpha=0.7, label="weight")
    ax.set_yticks(rows, names)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of portfolio risk / weight")
    ax.set_title("Risk contributions", loc="left")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(color=_RED, label="risk share > weight"),
        Patch(color=_BLUE, label="risk share <= weight"),
        Patch(color=_GREY, alpha=0.7, label="weight"),
    ]
    ax.legend(handles=handles, loc="lower right", frameon=False, fontsize=8)
    return figure


def _check_contributions(contributions: pl.DataFrame) -> pl.DataFrame:
    fix = "pass the frame returned by ntlab.portfolio.risk.risk_contributions(weights, cov, symbols)"
    if not isinstance(contributions, pl.DataFrame):
        raise SchemaError(f"contributions must be a Polars DataFrame, got {type(contributions).__name__}; {fix}")
    missing = [c for c in ("symbol", "weight", "percent") if c not in contributions.columns]
    if missing:
        raise SchemaError(f"contributions frame is missing column(s) {missing} (got {contributions.columns}); {fix}")
    for column in ("weight", "percent"):
        if not contributions.schema[column].is_numeric():
            raise SchemaError(
                f"column {column!r} must be numeric, got {contributions.schema[column]}; cast it to pl.Float64"
            )
    if contributions.height == 0:
        raise DataError(f"contributions frame is empty; {fix}")
    frame = contributions.select(
        pl.col("symbol").cast(pl.String), pl.col("weight").cast(pl.Float64), pl.col("percent").cast(pl.Float64)
    )
    if frame["symbol"].null_count():
        raise DataError(f"column 'symbol' has {frame['symbol'].null_count()} null value(s); name every row")
    repeated = frame.filter(pl.col("symbol").is_duplicated())["symbol"].unique(maintain_order=True).to_list()
    if repeated:
        raise DataError(f"column 'symbol' repeats {repeated}; keep one row per symbol")
    for column in ("weight", "percent"):
        bad = frame.filter(pl.col(column).is_null() | ~pl.col(column).is_finite())
        if bad.height:
            raise DataError(
                f"column {column!r} has {bad.height} null or non-finite value(s) (symbols {bad['symbol'].to_list()}); "
                "recompute the contributions from finite weights and covariance"
            )
    held = frame.filter((pl.col("weight") != 0.0) | (pl.col("percent") != 0.0))
    if held.height == 0:
        raise DataError("no symbol in contributions has a non-zero weight or risk share; nothing to plot")
    return held


# ----------------------------------------------------------------------------- helpers
def _check_top(top: int) -> None:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ConfigError(f"top must be an integer >= 1 (symbols drawn on their own), got {top!r}")


def _group(names: list[str], rows: np.ndarray, score: np.ndarray, top: int) -> tuple[list[str], np.ndarray]:
    """The ``top`` rows by ``score`` (ties by name), then the sum of the other rows as ``"other"``.

    ``rows[i]`` holds the values of ``names[i]``; returns the kept labels and their rows, stacked.
    """
    order = sorted(range(len(names)), key=lambda i: (-score[i], names[i]))
    keep, rest = order[:top], order[top:]
    labels = [names[i] for i in keep]
    kept = [rows[i] for i in keep]
    if rest:
        labels.append(_OTHER)
        kept.append(np.sum([rows[i] for i in rest], axis=0))
    return labels, np.asarray(kept, dtype=np.float64)


def _colours(named: int, other: bool) -> list[Any]:
    """A qualitative colour per named symbol (tab10, tab20 beyond 10), then grey for ``"other"``."""
    palette = colormaps["tab10" if named <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(named)] + ([_GREY] if other else [])
