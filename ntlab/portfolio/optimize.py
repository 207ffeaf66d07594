"""Portfolio optimisation on Polars price frames, through PyPortfolioOpt.

This module converts Polars price frames (wide: ``ts`` + one column per asset; long: ``ts``/``date``,
``symbol``, ``close``) into the pandas objects PyPortfolioOpt expects, calls PyPortfolioOpt, and turns
its failures into ntlab errors that say what to try. It does not reimplement any optimiser, except
HRP's recursive bisection and the correlation feeding it, redone with NumPy and Numba for speed and
checked against ``HRPOpt`` (see ``_optimize_hrp``).

Annualisation: expected returns and covariances are annualised with ``frequency`` periods per year
(252 for daily bars): mean returns are compounded (``(1 + r).prod() ** (frequency / n) - 1`` for
``"mean"``, PyPortfolioOpt's default) and covariances are multiplied by ``frequency``.
"""

from __future__ import annotations

import html
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cvxpy
import numpy as np
import pandas as pd
import polars as pl
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as ssd
from numba import njit
from pypfopt import (
    BlackLittermanModel,
    DiscreteAllocation,
    EfficientCVaR,
    EfficientFrontier,
    HRPOpt,
    objective_functions,
    risk_models,
)
from pypfopt import base_optimizer as _pfo_base
from pypfopt import exceptions as _pfo_exc
from pypfopt import expected_returns as _pfo_mu
from pypfopt.black_litterman import market_implied_prior_returns

from ntlab.exceptions import ConfigError, DataError, NtlabError, SchemaError

__all__ = [
    "OBJECTIVES",
    "OptimizationError",
    "Weights",
    "black_litterman",
    "discrete_allocation",
    "expected_returns",
    "optimize",
    "prices_to_pandas",
    "returns_from_prices",
    "risk_model",
]

OBJECTIVES = ("max_sharpe", "min_volatility", "efficient_risk", "efficient_return", "hrp", "cvar")
_MU_METHODS = ("mean", "ema", "capm")
_COV_METHODS = ("sample", "ledoit_wolf", "exp", "semicovariance")
_TIME_COLUMNS = ("ts", "date")
_SOLVER_ERRORS = (_pfo_exc.OptimizationError, cvxpy.error.SolverError, ValueError)


class OptimizationError(NtlabError, RuntimeError):
    """A portfolio optimisation that could not be solved (infeasible constraints, solver failure...)."""


@dataclass(frozen=True)
class Weights:
    """Optimised portfolio weights.

    Attributes
    ----------
    frame : pl.DataFrame
        Columns ``symbol`` (str) and ``weight`` (f64), sorted by weight, largest first.
    performance : dict[str, float]
        ``expected_return``, ``volatility`` and ``sharpe`` (annualised) from PyPortfolioOpt's
        ``portfolio_performance``; for ``"cvar"``, ``expected_return`` and ``cvar``.
    objective : str
        The objective that produced the weights.
    """

    frame: pl.DataFrame
    performance: dict[str, float] = field(default_factory=dict)
    objective: str = ""

    def to_dict(self) -> dict[str, float]:
        """Return the weights as ``{symbol: weight}``."""
        return dict(zip(self.frame["symbol"].to_list(), self.frame["weight"].to_list()))

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(str(s))}</td><td>{w:.4f}</td></tr>"
            for s, w in zip(self.frame["symbol"], self.frame["weight"])
        )
        perf = ", ".join(f"{html.escape(k)}={v:.4f}" for k, v in self.performance.items())
        return (
            f"<div><b>Weights ({html.escape(self.objective)})</b><br/>{perf}"
            f"<table><tr><th>symbol</th><th>weight</th></tr>{rows}</table></div>"
        )


# ----------------------------------------------------------------------------- inputs
def prices_to_pandas(prices: pl.DataFrame | pd.DataFrame) -> pd.DataFrame:
    """Convert a wide or long price frame into a validated wide pandas frame indexed by time.

    Parameters
    ----------
    prices : pl.DataFrame or pd.DataFrame
        Wide (a ``ts`` or ``date`` column + one float column per asset) or long (``ts``/``date``,
        ``symbol``, ``close``). A pandas frame is taken as wide, indexed by time.

    Returns
    -------
    pd.DataFrame
        One column per asset, index sorted by time.

    Raises
    ------
    SchemaError
        No time column, or a long frame without ``close``.
    DataError
        Fewer than 2 assets, an all-NaN column, a non-positive price or unsorted timestamps.
    """
    if isinstance(prices, pd.DataFrame):
        wide = prices.astype(float)
    elif isinstance(prices, pl.DataFrame):
        wide = _polars_to_wide(prices)
    else:
        raise SchemaError(f"prices must be a Polars or pandas DataFrame, got {type(prices).__name__}")
    _validate_wide(wide)
    return wide


def _polars_to_wide(prices: pl.DataFrame) -> pd.DataFrame:
    time_col = next((c for c in _TIME_COLUMNS if c in prices.columns), None)
    if time_col is None:
        raise SchemaError(f"prices need a time column (one of {_TIME_COLUMNS}); got columns {prices.columns}")
    if "symbol" in prices.columns:
        if "close" not in prices.columns:
            raise SchemaError(f"a long price frame needs a 'close' column; got columns {prices.columns}")
        if not prices.group_by("symbol").agg(pl.col(time_col).is_sorted().alias("ok"))["ok"].all():
            raise DataError(f"timestamps in column {time_col!r} are not sorted within each symbol; sort them first")
        prices = prices.pivot(on="symbol", index=time_col, values="close", aggregate_function="last").sort(time_col)
    elif not prices[time_col].is_sorted():
        raise DataError(f"timestamps in column {time_col!r} are not sorted; sort the frame by {time_col!r} first")
    assets = [c for c in prices.columns if c != time_col]
    values = prices.select(pl.col(assets).cast(pl.Float64)).to_numpy()
    index = pd.Index(prices[time_col].to_list(), name=time_col)
    return pd.DataFrame(values, index=index, columns=assets)


def _validate_wide(wide: pd.DataFrame) -> None:
    if wide.shape[1] < 2:
        raise DataError(f"portfolio optimisation needs at least 2 assets; got {list(wide.columns)}")
    values = wide.to_numpy(dtype=float)  # whole-frame checks: per-column pandas loops cost 0.1 s at 500 assets
    columns = np.asarray(wide.columns, dtype=object)
    empty = columns[np.isnan(values).all(axis=0)].tolist()
    if empty:
        raise DataError(f"price columns with no values (all NaN/null): {empty}; drop them")
    with np.errstate(invalid="ignore"):
        bad = columns[(values <= 0).any(axis=0)].tolist()
    if bad:
        raise DataError(f"prices must be positive; non-positive prices in {bad}")
    if not wide.index.is_monotonic_increasing:
        raise DataError("timestamps are not sorted; sort the frame by time first")


def returns_from_prices(
    prices: pl.DataFrame | pd.DataFrame, *, frequency: int = 252, log: bool = False
) -> pd.DataFrame:
    """Per-period returns of each asset, as the pandas frame PyPortfolioOpt takes.

    Returns are *not* annualised (one row per bar); ``frequency`` is only validated here and is the
    number of bars per year used by the annualising functions of this module.

    Parameters
    ----------
    prices : pl.DataFrame or pd.DataFrame
        Wide or long price frame (see :func:`prices_to_pandas`).
    frequency : int
        Bars per year (252 daily).
    log : bool
        Log returns ``log(p_t / p_{t-1})`` instead of simple returns.

    Returns
    -------
    pd.DataFrame
        Returns with rows that are all NaN dropped.
    """
    _check_frequency(frequency)
    return _pfo_mu.returns_from_prices(prices_to_pandas(prices), log_returns=log)


def _check_frequency(frequency: int) -> None:
    if not isinstance(frequency, (int, np.integer)) or frequency <= 0:
        raise ConfigError(f"frequency must be a positive integer (bars per year), got {frequency!r}")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {list(allowed)}")


def expected_returns(
    prices: pl.DataFrame | pd.DataFrame,
    method: Literal["mean", "ema", "capm"] = "mean",
    frequency: int = 252,
    **kw: Any,
) -> pd.Series:
    """Annualised expected returns via ``pypfopt.expected_returns``.

    Parameters
    ----------
    prices : pl.DataFrame or pd.DataFrame
        Wide or long price frame.
    method : {"mean", "ema", "capm"}
        ``mean_historical_return``, ``ema_historical_return`` or ``capm_return``.
    frequency : int
        Bars per year.
    **kw
        Passed to the PyPortfolioOpt function (``span``, ``compounding``...).

    Returns
    -------
    pd.Series
        Expected annual return per asset.
    """
    _check_choice("expected-returns method", method, _MU_METHODS)
    _check_frequency(frequency)
    px = prices_to_pandas(prices)
    func = {
        "mean": _pfo_mu.mean_historical_return,
        "ema": _pfo_mu.ema_historical_return,
        "capm": _pfo_mu.capm_return,
    }[method]
    return func(px, frequency=frequency, **kw)


def risk_model(
    prices: pl.DataFrame | pd.DataFrame,
    method: Literal["sample", "ledoit_wolf", "exp", "semicovariance"] = "ledoit_wolf",
    frequency: int = 252,
    **kw: Any,
) -> pd.DataFrame:
    """Annualised covariance matrix via ``pypfopt.risk_models``.

    Parameters
    ----------
    prices : pl.DataFrame or pd.DataFrame
        Wide or long price frame.
    method : {"sample", "ledoit_wolf", "exp", "semicovariance"}
        ``sample_cov``, ``CovarianceShrinkage(...).ledoit_wolf()``, ``exp_cov`` or ``semicovariance``.
    frequency : int
        Bars per year.
    **kw
        Passed to the PyPortfolioOpt function (``span``, ``benchmark``, ``shrinkage_target``...).

    Returns
    -------
    pd.DataFrame
        Covariance matrix, assets on both axes.
    """
    _check_choice("risk-model method", method, _COV_METHODS)
    _check_frequency(frequency)
    px = prices_to_pandas(prices)
    if method == "ledoit_wolf":
        return risk_models.CovarianceShrinkage(px, frequency=frequency).ledoit_wolf(**kw)
    func = {"sample": risk_models.sample_cov, "exp": risk_models.exp_cov, "semicovariance": risk_models.semicovariance}
    return func[method](px, frequency=frequency, **kw)


# ----------------------------------------------------------------------------- helpers
def _weights_from(raw: Mapping[str, float], objective: str, performance: dict[str, float]) -> Weights:
    frame = pl.DataFrame(
        {"symbol": [str(k) for k in raw], "weight": [float(v) for v in raw.values()]},
        schema={"symbol": pl.String, "weight": pl.Float64},
    ).sort("weight", descending=True, maintain_order=True)
    return Weights(frame=frame, performance=performance, objective=objective)


def _mv_performance(perf: tuple[float, ...]) -> dict[str, float]:
    return {"expected_return": float(perf[0]), "volatility": float(perf[1]), "sharpe": float(perf[2])}


def _hint(objective: str, mu: pd.Series | None, risk_free_rate: float) -> str:
    tips = ["relax weight_bounds or sector caps", "try objective='min_volatility'", "add l2_gamma (e.g. 0.1)"]
    if objective == "max_sharpe" and mu is not None:
        tips.insert(
            0, f"lower risk_free_rate ({risk_free_rate}) below the best expected return ({float(mu.max()):.4f})"
        )
    return "; ".join(tips)


def _check_feasible(
    symbols: list[str],
    weight_bounds: tuple[float | None, float | None],
    sector_mapper: Mapping[str, str] | None,
    sector_upper: Mapping[str, float] | None,
    sector_lower: Mapping[str, float] | None,
    market_neutral: bool,
) -> None:
    """Raise OptimizationError early for bounds and sector caps that cannot sum to the budget."""
    if market_neutral:
        return
    n = len(symbols)
    lo, hi = weight_bounds
    if hi is not None and hi * n < 1 - 1e-12:
        raise OptimizationError(
            f"infeasible weight_bounds: upper bound {hi} x {n} assets = {hi * n:.4g} < 1, so the weights cannot "
            f"sum to 1; raise the upper bound to at least {1 / n:.4g}"
        )
    if lo is not None and lo * n > 1 + 1e-12:
        raise OptimizationError(
            f"infeasible weight_bounds: lower bound {lo} x {n} assets = {lo * n:.4g} > 1; lower it below {1 / n:.4g}"
        )
    if sector_mapper and sector_upper:
        sectors = {sector_mapper.get(s) for s in symbols}
        if None not in sectors and sectors <= set(sector_upper):
            total = sum(sector_upper[s] for s in sectors)
            if total < 1 - 1e-12:
                raise OptimizationError(
                    f"infeasible sector caps: sector_upper sums to {total:.4g} < 1 over sectors {sorted(sectors)}; "
                    "raise the caps so they can hold the whole budget"
                )
    if sector_lower and sum(sector_lower.values()) > 1 + 1e-12:
        raise OptimizationError(f"infeasible sector floors: sector_lower sums to {sum(sector_lower.values()):.4g} > 1")


def _add_constraints(
    opt: Any,
    *,
    l2_gamma: float,
    sector_mapper: Mapping[str, str] | None,
    sector_upper: Mapping[str, float] | None,
    sector_lower: Mapping[str, float] | None,
    current_weights: Mapping[str, float] | None,
    cost: float,
) -> None:
    if l2_gamma:
        opt.add_objective(objective_functions.L2_reg, gamma=l2_gamma)
    if cost:
        if current_weights is None:
            raise ConfigError("cost > 0 needs current_weights (the portfolio held now) to measure turnover against")
        w_prev = np.array([float(current_weights.get(t, 0.0)) for t in opt.tickers])
        opt.add_objective(objective_functions.transaction_cost, w_prev=w_prev, k=cost)
    if sector_mapper is not None:
        missing = [t for t in opt.tickers if t not in sector_mapper]
        if missing:
            raise ConfigError(f"sector_mapper has no sector for {missing}")
        opt.add_sector_constraints(dict(sector_mapper), dict(sector_lower or {}), dict(sector_upper or {}))
    elif sector_upper or sector_lower:
        raise ConfigError("sector_upper/sector_lower need a sector_mapper {symbol: sector}")


def _check_target(objective: str, target: float | None) -> None:
    if objective in ("efficient_risk", "efficient_return") and target is None:
        what = "volatility" if objective == "efficient_risk" else "return"
        raise ConfigError(f"objective {objective!r} needs target= (the annual {what} to aim for)")


# ----------------------------------------------------------------------------- optimise
def optimize(
    prices: pl.DataFrame | pd.DataFrame,
    objective: Literal[
        "max_sharpe", "min_volatility", "efficient_risk", "efficient_return", "hrp", "cvar"
    ] = "max_sharpe",
    *,
    target: float | None = None,
    risk_free_rate: float = 0.02,
    weight_bounds: tuple[float | None, float | None] = (0, 1),
    l2_gamma: float = 0.0,
    sector_mapper: Mapping[str, str] | None = None,
    sector_upper: Mapping[str, float] | None = None,
    sector_lower: Mapping[str, float] | None = None,
    market_neutral: bool = False,
    current_weights: Mapping[str, float] | None = None,
    cost: float = 0.0,
    mu_method: str = "mean",
    cov_method: str = "ledoit_wolf",
    frequency: int = 252,
) -> Weights:
    """Optimise portfolio weights with PyPortfolioOpt.

    Parameters
    ----------
    prices : pl.DataFrame or pd.DataFrame
        Wide or long price frame.
    objective : str
        ``"max_sharpe"``, ``"min_volatility"``, ``"efficient_risk"`` (target = volatility),
        ``"efficient_return"`` (target = return) via ``EfficientFrontier``; ``"hrp"`` via ``HRPOpt`` on
        returns (no constraints); ``"cvar"`` via ``EfficientCVaR`` (``min_cvar``, or
        ``efficient_return(target)`` when ``target`` is given).
    target : float, optional
        Target annual volatility or return.
    risk_free_rate : float
        Annual risk-free rate for max-Sharpe and the reported Sharpe ratio.
    weight_bounds : tuple
        Bounds on each weight; ``(None, None)`` allows any short position.
    l2_gamma : float
        L2 regularisation (``objective_functions.L2_reg``), pushing towards more non-zero weights.
    sector_mapper, sector_upper, sector_lower : mapping, optional
        ``{symbol: sector}`` and per-sector caps / floors on the summed weights.
    market_neutral : bool
        Weights sum to 0 (``efficient_risk``, ``efficient_return`` and ``cvar`` with target only;
        needs negative lower bounds).
    current_weights : mapping, optional
        Weights held now, for the turnover penalty.
    cost : float
        Transaction-cost coefficient ``k`` of ``objective_functions.transaction_cost`` (turnover penalty).
    mu_method, cov_method : str
        Methods of :func:`expected_returns` and :func:`risk_model`.
    frequency : int
        Bars per year.

    Returns
    -------
    Weights

    Raises
    ------
    ConfigError
        Unknown objective/method, missing target, options the objective does not support.
    OptimizationError
        Infeasible constraints or a solver failure; the message says what to try.
    """
    _check_choice("objective", objective, OBJECTIVES)
    _check_choice("expected-returns method", mu_method, _MU_METHODS)
    _check_choice("risk-model method", cov_method, _COV_METHODS)
    _check_target(objective, target)
    px = prices_to_pandas(prices)
    if objective == "hrp":
        return _optimize_hrp(px, risk_free_rate, frequency, l2_gamma, sector_mapper, market_neutral, cost)
    if market_neutral and not (objective in ("efficient_risk", "efficient_return") or target is not None):
        raise ConfigError(
            f"market_neutral is not supported by objective {objective!r}; use efficient_risk, efficient_return "
            "or cvar with a target"
        )
    _check_feasible(list(px.columns), weight_bounds, sector_mapper, sector_upper, sector_lower, market_neutral)
    mu = expected_returns(px, mu_method, frequency)
    extras = {
        "l2_gamma": l2_gamma,
        "sector_mapper": sector_mapper,
        "sector_upper": sector_upper,
        "sector_lower": sector_lower,
        "current_weights": current_weights,
        "cost": cost,
    }
    if objective == "cvar":
        return _optimize_cvar(px, mu, target, weight_bounds, market_neutral, extras)
    cov = risk_model(px, cov_method, frequency)
    ef = EfficientFrontier(mu, cov, weight_bounds=weight_bounds)
    _add_constraints(ef, **extras)
    try:
        if objective == "max_sharpe":
            raw = ef.max_sharpe(risk_free_rate=risk_free_rate)
        elif objective == "min_volatility":
            raw = ef.min_volatility()
        elif objective == "efficient_risk":
            raw = ef.efficient_risk(target, market_neutral=market_neutral)
        else:
            raw = ef.efficient_return(target, market_neutral=market_neutral)
    except _SOLVER_ERRORS as exc:
        raise OptimizationError(
            f"{objective} failed: {exc or type(exc).__name__}. Try: {_hint(objective, mu, risk_free_rate)}"
        ) from exc
    perf = _mv_performance(ef.portfolio_performance(risk_free_rate=risk_free_rate))
    return _weights_from(raw, objective, perf)


def _optimize_hrp(
    px: pd.DataFrame,
    risk_free_rate: float,
    frequency: int,
    l2_gamma: float,
    sector_mapper: Mapping[str, str] | None,
    market_neutral: bool,
    cost: float,
) -> Weights:
    """HRP weights and performance equal to PyPortfolioOpt 1.6's ``HRPOpt(returns).optimize()`` and
    ``.portfolio_performance(risk_free_rate, frequency)``.

    PyPortfolioOpt's steps, in its order: correlation and covariance of the returns (pandas, pairwise
    complete observations), distance ``sqrt(clip((1 - corr) / 2, 0, 1))``, ``squareform(checks=False)``,
    single linkage, quasi-diagonal order (``HRPOpt._get_quasi_diag``), recursive bisection with
    inverse-variance cluster variances, weights keyed by sorted ticker; performance by
    ``base_optimizer.portfolio_performance`` with ``mean * frequency`` and ``cov * frequency``.
    The bisection is ours (``_hrp_bisection``, on a NumPy covariance with integer positions) because
    PyPortfolioOpt's pandas ``.loc`` indexing in it took ~90 % of HRP's time at 500 assets;
    and, without NaN in the returns, so is the correlation (``_corr_like_pandas``: pandas' own Welford
    loop, bit-for-bit equal to ``DataFrame.corr()``, which alone is over the 0.2 s goal at 500 assets).
    The tests check the weights and the performance against ``HRPOpt`` to 1e-10 on real data.
    """
    if l2_gamma or sector_mapper or market_neutral or cost:
        raise ConfigError("objective 'hrp' takes no l2_gamma, sector constraints, market_neutral or cost")
    _check_frequency(frequency)
    returns = _pfo_mu.returns_from_prices(px)
    corr, cov = _corr_like_pandas(returns), returns.cov()
    dist = ssd.squareform(np.sqrt(np.clip((1.0 - corr) / 2.0, a_min=0.0, a_max=1.0)), checks=False)
    order = HRPOpt._get_quasi_diag(sch.linkage(dist, "single"))
    w = _hrp_bisection(cov.to_numpy(), order)
    raw = OrderedDict(pd.Series(w, index=returns.columns).sort_index())
    perf = _pfo_base.portfolio_performance(w, returns.mean() * frequency, cov * frequency, False, risk_free_rate)
    return _weights_from(raw, "hrp", _mv_performance(perf))


def _corr_like_pandas(returns: pd.DataFrame) -> np.ndarray:
    """``returns.corr().to_numpy()`` bit for bit; fast when every return is finite.

    pandas' ``nancorr`` runs Welford's updates for each pair of columns. With no missing value every
    pair sees the same rows, so a column's running mean and sum of squares are the same in all its
    pairs: they are computed once per column here, and only the cross sums go through the compiled
    ``_welford_cross``; then pandas' ``covxy / sqrt(ssqx * ssqy)`` clipped to [-1, 1], NaN where the
    divisor is 0. Returns with NaN or inf keep pandas' pairwise-complete ``DataFrame.corr()``.
    """
    x = returns.to_numpy(dtype=float)
    if not np.isfinite(x).all():
        return returns.corr().to_numpy()
    n, k = x.shape
    before = np.empty_like(x)  # v - mean before the row's update (pandas' dx, dy)
    after = np.empty_like(x)  # v - mean after it
    mean, ssq = np.zeros(k), np.zeros(k)
    for i in range(n):
        before[i] = x[i] - mean
        mean = mean + 1.0 / (i + 1) * before[i]
        after[i] = x[i] - mean
        ssq = ssq + after[i] * before[i]
    lower = np.tril(_welford_cross(after, before))  # pandas fills [xi, yi], yi <= xi, then mirrors
    covxy = lower + np.tril(lower, -1).T
    with np.errstate(divide="ignore", invalid="ignore"):
        divisor = np.sqrt(np.multiply.outer(ssq, ssq))
        return np.clip(np.where(divisor != 0, covxy / divisor, np.nan), -1.0, 1.0)


@njit(cache=True, nogil=True)
def _welford_cross(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``out[x, y] = sum_i after[i, x] * before[i, y]`` added in row order, one rounding per product and
    per sum (no BLAS, no FMA), as pandas accumulates ``covxy``; only ``y <= x`` is used. Rows are done in
    blocks of 16 so the block stays in cache; vectorised so it also runs under ``NUMBA_DISABLE_JIT``."""
    n, k = after.shape
    out = np.zeros((k, k))
    for x0 in range(0, k, 16):
        x1 = min(x0 + 16, k)
        block = out[x0:x1, :x1]
        for i in range(n):
            block += after[i, x0:x1, None] * before[i, None, :x1]
    return out


def _hrp_bisection(cov: np.ndarray, order: list[int]) -> np.ndarray:
    """``HRPOpt._raw_hrp_allocation`` on positions: the same halving of the quasi-diagonal order, the same
    pairs in the same order, ``alpha = 1 - v1 / (v1 + v2)``; weights by column position."""
    w = np.ones(cov.shape[0])
    clusters = [np.asarray(order, dtype=np.intp)]
    while clusters:
        clusters = [c[j:k] for c in clusters for j, k in ((0, len(c) // 2), (len(c) // 2, len(c))) if len(c) > 1]
        for first, second in zip(clusters[::2], clusters[1::2]):
            v1, v2 = _cluster_var(cov, first), _cluster_var(cov, second)
            alpha = 1 - v1 / (v1 + v2)
            w[first] *= alpha
            w[second] *= 1 - alpha
    return w


def _cluster_var(cov: np.ndarray, items: np.ndarray) -> float:
    """``HRPOpt._get_cluster_var``: variance of the inverse-variance portfolio of the assets ``items``."""
    sub = cov[np.ix_(items, items)]
    ivp = 1 / np.diag(sub)
    ivp /= ivp.sum()
    return float(np.linalg.multi_dot((ivp, sub, ivp)))


def _optimize_cvar(
    px: pd.DataFrame,
    mu: pd.Series,
    target: float | None,
    weight_bounds: tuple[float | None, float | None],
    market_neutral: bool,
    extras: dict[str, Any],
) -> Weights:
    ecv = EfficientCVaR(mu, _pfo_mu.returns_from_prices(px).dropna(), weight_bounds=weight_bounds)
    _add_constraints(ecv, **extras)
    try:
        raw = ecv.min_cvar() if target is None else ecv.efficient_return(target, market_neutral=market_neutral)
    except _SOLVER_ERRORS as exc:
        raise OptimizationError(
            f"cvar failed: {exc or type(exc).__name__}. Try a lower target (the best expected return is "
            f"{float(mu.max()):.4f}) or relax weight_bounds/sector caps"
        ) from exc
    ret, cvar = ecv.portfolio_performance()
    return _weights_from(raw, "cvar", {"expected_return": float(ret), "cvar": float(cvar)})


# ----------------------------------------------------------------------------- Black-Litterman
def black_litterman(
    prices: pl.DataFrame | pd.DataFrame,
    views: Mapping[str, float],
    confidences: Mapping[str, float] | None = None,
    market_caps: Mapping[str, float] | None = None,
    risk_aversion: float | None = None,
    *,
    use: Literal["max_sharpe", "bl_weights"] = "max_sharpe",
    risk_free_rate: float = 0.02,
    weight_bounds: tuple[float | None, float | None] = (0, 1),
    cov_method: str = "ledoit_wolf",
    frequency: int = 252,
) -> Weights:
    """Black-Litterman posterior through ``pypfopt.BlackLittermanModel``, then max-Sharpe or BL weights.

    Parameters
    ----------
    prices : pl.DataFrame or pd.DataFrame
        Wide or long price frame.
    views : mapping
        Absolute views ``{symbol: expected annual return}``.
    confidences : mapping, optional
        ``{symbol: confidence in [0, 1]}`` for every view; uses Idzorek's method when given,
        else the default (He-Litterman) uncertainty.
    market_caps : mapping, optional
        Market capitalisations; the prior is then ``market_implied_prior_returns(market_caps,
        risk_aversion, cov, risk_free_rate)``. Without them the prior is equal returns.
    risk_aversion : float, optional
        Market risk aversion (delta); defaults to 1.
    use : {"max_sharpe", "bl_weights"}
        Max-Sharpe on the posterior returns/covariance, or ``bl.bl_weights(risk_aversion)``.
    risk_free_rate, weight_bounds, cov_method, frequency
        As in :func:`optimize`.

    Returns
    -------
    Weights
        With ``objective`` ``"black_litterman"``.
    """
    _check_choice("Black-Litterman use", use, ("max_sharpe", "bl_weights"))
    px = prices_to_pandas(prices)
    cov = risk_model(px, cov_method, frequency)
    unknown = [s for s in views if s not in cov.index]
    if not views or unknown:
        raise DataError(f"views must name assets in the prices; unknown: {unknown or 'no views given'}")
    delta = 1.0 if risk_aversion is None else float(risk_aversion)
    kwargs: dict[str, Any] = {"absolute_views": dict(views), "risk_aversion": delta}
    if confidences is not None:
        if set(confidences) != set(views) or not all(0 <= c <= 1 for c in confidences.values()):
            raise ConfigError(f"confidences need one value in [0, 1] per view {sorted(views)}; got {dict(confidences)}")
        kwargs.update(omega="idzorek", view_confidences=[confidences[s] for s in views])
    if market_caps is not None:
        pi = market_implied_prior_returns(pd.Series(market_caps), delta, cov, risk_free_rate)
    else:
        pi = "equal"
    bl = BlackLittermanModel(cov, pi=pi, **kwargs)
    if use == "bl_weights":
        raw = bl.bl_weights(delta)
        perf = bl.portfolio_performance(risk_free_rate=risk_free_rate)
        return _weights_from(raw, "black_litterman", _mv_performance(perf))
    ef = EfficientFrontier(bl.bl_returns(), bl.bl_cov(), weight_bounds=weight_bounds)
    try:
        raw = ef.max_sharpe(risk_free_rate=risk_free_rate)
    except _SOLVER_ERRORS as exc:
        raise OptimizationError(
            f"black_litterman max_sharpe failed: {exc}. Try: {_hint('max_sharpe', bl.bl_returns(), risk_free_rate)}"
        ) from exc
    return _weights_from(
        raw, "black_litterman", _mv_performance(ef.portfolio_performance(risk_free_rate=risk_free_rate))
    )


# ----------------------------------------------------------------------------- discrete allocation
def _latest_prices(latest_prices: Mapping[str, float] | pl.DataFrame) -> pd.Series:
    if isinstance(latest_prices, pl.DataFrame):
        if "symbol" in latest_prices.columns:
            last = latest_prices.group_by("symbol", maintain_order=True).agg(pl.col("close").last())
            return pd.Series(dict(zip(last["symbol"], last["close"])), dtype=float)
        row = latest_prices.drop([c for c in _TIME_COLUMNS if c in latest_prices.columns]).tail(1)
        return pd.Series(row.row(0, named=True), dtype=float)
    return pd.Series(dict(latest_prices), dtype=float)


def discrete_allocation(
    weights: Weights,
    latest_prices: Mapping[str, float] | pl.DataFrame,
    total_value: float,
    method: Literal["lp", "greedy"] = "lp",
) -> tuple[pl.DataFrame, float]:
    """Whole-share allocation via ``pypfopt.DiscreteAllocation``.

    Parameters
    ----------
    weights : Weights
        Target weights.
    latest_prices : mapping or pl.DataFrame
        ``{symbol: price}``, a wide price frame (last row used) or a long one (last close per symbol).
    total_value : float
        Money to allocate.
    method : {"lp", "greedy"}
        ``lp_portfolio`` (mixed-integer program) or ``greedy_portfolio``.

    Returns
    -------
    tuple[pl.DataFrame, float]
        Frame ``symbol``, ``shares`` (i64), ``value`` (f64) and the leftover cash.
    """
    _check_choice("allocation method", method, ("lp", "greedy"))
    if not total_value > 0:
        raise ConfigError(f"total_value must be positive, got {total_value!r}")
    prices = _latest_prices(latest_prices)
    w = {s: v for s, v in weights.to_dict().items() if abs(v) > 1e-10}
    missing = [s for s in w if s not in prices.index or not np.isfinite(prices[s]) or prices[s] <= 0]
    if missing:
        raise DataError(f"no positive latest price for {missing}")
    da = DiscreteAllocation(w, prices[list(w)], total_portfolio_value=total_value)
    try:
        alloc, leftover = da.lp_portfolio() if method == "lp" else da.greedy_portfolio()
    except _SOLVER_ERRORS as exc:
        raise OptimizationError(f"discrete allocation ({method}) failed: {exc}; try method='greedy'") from exc
    symbols = sorted(alloc, key=lambda s: -alloc[s] * prices[s])
    frame = pl.DataFrame(
        {
            "symbol": symbols,
            "shares": [int(alloc[s]) for s in symbols],
            "value": [float(alloc[s] * prices[s]) for s in symbols],
        },
        schema={"symbol": pl.String, "shares": pl.Int64, "value": pl.Float64},
    )
    return frame, float(leftover)
