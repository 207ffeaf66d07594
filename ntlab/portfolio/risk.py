"""Portfolio risk metrics on periodic simple returns.

Conventions
-----------
* Inputs are **periodic simple returns** ``r_t = P_t / P_{t-1} - 1`` (one value per period, e.g. daily),
  given as a NumPy array, a Polars series or a list. NaN / null values are errors (:class:`DataError`
  naming the first bad row); nothing is dropped silently.
* Annualised figures (:func:`volatility`, :func:`tracking_error`) scale the per-period sample standard
  deviation (``ddof=1``) by ``sqrt(periods_per_year)`` (252 for daily data, 52 weekly, 12 monthly).
* :func:`var` and :func:`cvar` are **one-period** figures reported as **positive loss fractions**
  (``0.02`` = a 2 % loss over one period); a negative value means even the tail is a gain.
* Skewness and excess kurtosis are the moment estimators ``g1``, ``g2`` (the defaults of
  ``scipy.stats.skew`` and ``scipy.stats.kurtosis(fisher=True)``, i.e. ``bias=True``).
* Drawdown depths are positive fractions of the running peak.
* Stress tests replay a historical window buy-and-hold on the given weights; an asset with a missing
  price in the window raises :class:`DataError` by default (``missing="exclude"`` instead holds its
  weight in cash at zero return and warns with :class:`DataQualityWarning`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import polars as pl
from numba import njit
from scipy import stats

from ntlab.exceptions import ConfigError, DataError, DataQualityWarning

__all__ = [
    "SCENARIOS",
    "StressResult",
    "beta",
    "cvar",
    "drawdowns",
    "max_drawdown",
    "portfolio_returns",
    "risk_contributions",
    "stress_scenarios",
    "stress_test",
    "tracking_error",
    "var",
    "volatility",
]

Method = Literal["historical", "parametric", "cornish_fisher"]
_METHODS = ("historical", "parametric", "cornish_fisher")
#: Number of midpoint-rule nodes used for the Cornish-Fisher expected shortfall.
_CF_GRID = 20_000

#: Named historical stress windows ``name -> (start, end)`` (ISO dates, both inclusive).
SCENARIOS: dict[str, tuple[str, str]] = {
    "dotcom_2000": ("2000-03-24", "2002-10-09"),
    "sept11_2001": ("2001-09-10", "2001-09-21"),
    "gfc_2008": ("2008-09-01", "2009-03-09"),
    "flash_crash_2010": ("2010-04-23", "2010-07-02"),
    "euro_debt_2011": ("2011-07-22", "2011-10-03"),
    "taper_tantrum_2013": ("2013-05-22", "2013-06-24"),
    "china_2015": ("2015-08-10", "2015-08-25"),
    "volmageddon_2018": ("2018-01-26", "2018-02-08"),
    "q4_2018": ("2018-09-20", "2018-12-24"),
    "covid_2020": ("2020-02-19", "2020-03-23"),
    "rates_2022": ("2022-01-03", "2022-10-12"),
}


# ----------------------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------------------
def _as_returns(
    returns: np.ndarray | pl.Series | Sequence[float], name: str = "returns", min_len: int = 1
) -> np.ndarray:
    """Return a 1-D float64 copy of ``returns``; raise on NaN/null (naming the row) or too few values."""
    if isinstance(returns, pl.Series):
        if returns.null_count():
            row = int(returns.is_null().arg_max())  # type: ignore[arg-type]
            raise DataError(f"{name} has a null at row {row}; fill or drop it first")
        arr = returns.cast(pl.Float64).to_numpy()
    else:
        arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{name} has a non-finite value ({arr[row]}) at row {row}; fill or drop it first")
    if arr.size < min_len:
        raise DataError(f"{name} needs at least {min_len} values, got {arr.size}")
    return np.array(arr, dtype=np.float64)


def _check_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise ConfigError(f"level must lie strictly in (0, 1), got {level!r} (e.g. 0.95 or 0.99)")
    return float(level)


def _check_ppy(periods_per_year: float) -> float:
    if not periods_per_year > 0:
        raise ConfigError(f"periods_per_year must be > 0, got {periods_per_year!r} (252 daily, 52 weekly, 12 monthly)")
    return float(periods_per_year)


def _check_method(method: str) -> str:
    if method not in _METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {_METHODS}")
    return method


def _pair(returns: np.ndarray | pl.Series | Sequence[float], benchmark: np.ndarray | pl.Series | Sequence[float]):
    r = _as_returns(returns, "returns", 2)
    b = _as_returns(benchmark, "benchmark", 2)
    if r.size != b.size:
        raise DataError(f"returns and benchmark must have the same length, got {r.size} and {b.size}; align them first")
    return r, b


# ----------------------------------------------------------------------------------------------------------------------
# dispersion and relative risk
# ----------------------------------------------------------------------------------------------------------------------
def volatility(returns: np.ndarray | pl.Series | Sequence[float], periods_per_year: float = 252) -> float:
    r"""Annualised volatility of periodic simple returns.

    .. math:: \sigma_{ann} = \sqrt{P}\, \sqrt{\tfrac{1}{n-1}\sum_t (r_t - \bar r)^2}

    with ``P = periods_per_year`` (252 for daily returns).
    """
    ppy = _check_ppy(periods_per_year)
    r = _as_returns(returns, min_len=2)
    return float(np.std(r, ddof=1) * math.sqrt(ppy))


def beta(
    returns: np.ndarray | pl.Series | Sequence[float], benchmark: np.ndarray | pl.Series | Sequence[float]
) -> float:
    r"""OLS beta of ``returns`` on ``benchmark`` (same periods, same frequency).

    .. math:: \beta = \frac{\operatorname{cov}(r, b)}{\operatorname{var}(b)}  \quad (\text{both } ddof=1)
    """
    r, b = _pair(returns, benchmark)
    vb = np.var(b, ddof=1)
    if np.ptp(b) == 0.0:
        raise DataError("benchmark has zero variance; beta is undefined")
    return float(np.cov(r, b, ddof=1)[0, 1] / vb)


def tracking_error(
    returns: np.ndarray | pl.Series | Sequence[float],
    benchmark: np.ndarray | pl.Series | Sequence[float],
    periods_per_year: float = 252,
) -> float:
    r"""Annualised tracking error: :math:`\sqrt{P}\,\operatorname{std}_{ddof=1}(r_t - b_t)`."""
    ppy = _check_ppy(periods_per_year)
    r, b = _pair(returns, benchmark)
    return float(np.std(r - b, ddof=1) * math.sqrt(ppy))


# ----------------------------------------------------------------------------------------------------------------------
# VaR / CVaR
# ----------------------------------------------------------------------------------------------------------------------
def _moments(r: np.ndarray) -> tuple[float, float, float, float]:
    """Sample mean, std (ddof=1), skew g1 and excess kurtosis g2 (0, 0 for a constant series)."""
    mu = float(np.mean(r))
    sd = float(np.std(r, ddof=1))
    if sd == 0.0 or float(np.std(r)) <= 1e-300:
        return mu, 0.0, 0.0, 0.0
    return mu, sd, float(stats.skew(r)), float(stats.kurtosis(r, fisher=True))


def _cf_z(z: np.ndarray | float, s: float, k: float) -> np.ndarray | float:
    r"""Cornish-Fisher modified quantile :math:`z + (z^2-1)S/6 + (z^3-3z)K/24 - (2z^3-5z)S^2/36`."""
    return z + (z**2 - 1.0) * s / 6.0 + (z**3 - 3.0 * z) * k / 24.0 - (2.0 * z**3 - 5.0 * z) * s**2 / 36.0


def _historical_quantile(r: np.ndarray, level: float) -> float:
    return float(np.quantile(r, 1.0 - level, method="lower"))


def var(
    returns: np.ndarray | pl.Series | Sequence[float],
    level: float = 0.95,
    method: Method = "historical",
) -> float:
    r"""One-period Value-at-Risk at confidence ``level``, as a positive loss fraction.

    With :math:`\alpha = 1 - \text{level}`:

    * ``"historical"``: :math:`-q_\alpha`, the empirical quantile with NumPy's ``method="lower"``
      (an observed return: the largest :math:`r_{(j)}` with :math:`j \le \alpha (n-1)`, 0-based order
      statistics).
    * ``"parametric"``: normal with sample mean/std (ddof=1): :math:`-(\mu + \sigma z_\alpha)`,
      :math:`z_\alpha = \Phi^{-1}(\alpha)`.
    * ``"cornish_fisher"`` (Favre & Galeano 2002): :math:`-(\mu + \sigma z_{cf})` with
      :math:`z_{cf} = z + (z^2-1)S/6 + (z^3-3z)K/24 - (2z^3-5z)S^2/36`, ``S`` the sample skewness and
      ``K`` the sample excess kurtosis (moment estimators, ``bias=True``).
    """
    level = _check_level(level)
    _check_method(method)
    r = _as_returns(returns, min_len=1 if method == "historical" else 2)
    alpha = 1.0 - level
    if method == "historical":
        return -_historical_quantile(r, level)
    mu, sd, s, k = _moments(r)
    z = float(stats.norm.ppf(alpha))
    if method == "cornish_fisher":
        z = float(_cf_z(z, s, k))
    return -(mu + sd * z)


def cvar(
    returns: np.ndarray | pl.Series | Sequence[float],
    level: float = 0.95,
    method: Method = "historical",
) -> float:
    r"""One-period Conditional VaR (expected shortfall) at ``level``, as a positive loss fraction.

    With :math:`\alpha = 1 - \text{level}`:

    * ``"historical"``: :math:`-\operatorname{mean}\{r_t : r_t \le q_\alpha\}` with :math:`q_\alpha` the
      ``"lower"`` empirical quantile of :func:`var` (so at least one return is averaged).
    * ``"parametric"``: normal closed form :math:`-(\mu - \sigma\, \varphi(z_\alpha) / \alpha)`.
    * ``"cornish_fisher"``: the mean of the modified quantile over the tail,
      :math:`-(\mu + \sigma\, \tfrac{1}{\alpha}\int_0^\alpha z_{cf}(\Phi^{-1}(p))\,dp)`, the integral by the
      midpoint rule on 20 000 nodes. If the Cornish-Fisher expansion is not monotone in the tail (very
      large skew/kurtosis) the result may fall below the VaR.
    """
    level = _check_level(level)
    _check_method(method)
    r = _as_returns(returns, min_len=1 if method == "historical" else 2)
    alpha = 1.0 - level
    if method == "historical":
        q = _historical_quantile(r, level)
        return -float(np.mean(r[r <= q]))
    mu, sd, s, k = _moments(r)
    if method == "parametric":
        z = float(stats.norm.ppf(alpha))
        return -(mu - sd * float(stats.norm.pdf(z)) / alpha)
    p = alpha * (np.arange(_CF_GRID) + 0.5) / _CF_GRID
    zbar = float(np.mean(_cf_z(stats.norm.ppf(p), s, k)))
    return -(mu + sd * zbar)


# ----------------------------------------------------------------------------------------------------------------------
# drawdowns
# ----------------------------------------------------------------------------------------------------------------------
def _equity(values: np.ndarray | pl.Series | Sequence[float], kind: str) -> np.ndarray:
    if kind == "returns":
        r = _as_returns(values, "returns", 1)
        if (r <= -1.0).any():
            row = int(np.argmax(r <= -1.0))
            raise DataError(f"returns has a value <= -100 % at row {row} ({r[row]}); equity would not stay positive")
        return np.concatenate(([1.0], np.cumprod(1.0 + r)))
    if kind == "equity":
        e = _as_returns(values, "equity", 1)
        if (e <= 0.0).any():
            row = int(np.argmax(e <= 0.0))
            raise DataError(f"equity must be > 0, got {e[row]} at row {row}")
        return e
    raise ConfigError(f"kind must be 'returns' or 'equity', got {kind!r}")


@njit(cache=True, nogil=True)
def _episodes_kernel(e: np.ndarray) -> np.ndarray:  # pragma: no cover - run through .py_func in the tests
    """Scan an equity curve; rows ``(start, trough, end, depth)``, ``end = -1`` when not recovered."""
    n = e.size
    out = np.empty((n, 4))
    m = 0
    peak = e[0]
    start = 0
    trough = 0
    in_dd = False
    for i in range(1, n):
        if e[i] >= peak:
            if in_dd:
                out[m, 0] = start
                out[m, 1] = trough
                out[m, 2] = i
                out[m, 3] = 1.0 - e[trough] / peak
                m += 1
                in_dd = False
            peak = e[i]
            start = i
        else:
            if not in_dd:
                in_dd = True
                trough = i
            elif e[i] < e[trough]:
                trough = i
    if in_dd:
        out[m, 0] = start
        out[m, 1] = trough
        out[m, 2] = -1
        out[m, 3] = 1.0 - e[trough] / peak
        m += 1
    return out[:m]


def drawdowns(
    values: np.ndarray | pl.Series | Sequence[float], kind: Literal["returns", "equity"] = "returns"
) -> pl.DataFrame:
    r"""Drawdown episodes of an equity curve, deepest first.

    ``kind="returns"`` builds the curve :math:`E_0 = 1,\ E_{t+1} = E_t (1 + r_t)` (so positions are
    ``0..n``; position ``k`` is the value after ``k`` returns); ``kind="equity"`` uses ``values`` as is
    (positions ``0..n-1``).

    Columns: ``start`` (position of the peak), ``trough`` (position of the minimum), ``end`` (first
    position back at or above the peak; null if not recovered), ``depth`` (:math:`1 - E_{trough}/E_{peak}`),
    ``length`` (``end - start``, or ``last - start`` when not recovered, in periods), ``recovered``.
    """
    e = _equity(values, kind)
    rows = _episodes_kernel(e)
    last = e.size - 1
    start = rows[:, 0].astype(np.int64)
    end = rows[:, 2].astype(np.int64)
    recovered = end >= 0
    frame = pl.DataFrame(
        {
            "start": start,
            "trough": rows[:, 1].astype(np.int64),
            "end": end,
            "depth": rows[:, 3],
            "length": np.where(recovered, end, last) - start,
            "recovered": recovered,
        },
        schema={
            "start": pl.Int64,
            "trough": pl.Int64,
            "end": pl.Int64,
            "depth": pl.Float64,
            "length": pl.Int64,
            "recovered": pl.Boolean,
        },
    ).with_columns(pl.when(pl.col("recovered")).then(pl.col("end")).otherwise(None).alias("end"))
    return frame.sort(["depth", "start"], descending=[True, False])


def max_drawdown(
    values: np.ndarray | pl.Series | Sequence[float], kind: Literal["returns", "equity"] = "returns"
) -> float:
    r"""Maximum drawdown :math:`\max_t (1 - E_t / \max_{s \le t} E_s)` as a positive fraction (0 if none).

    ``kind`` as in :func:`drawdowns`.
    """
    e = _equity(values, kind)
    return float(np.max(1.0 - e / np.maximum.accumulate(e)))


# ----------------------------------------------------------------------------------------------------------------------
# portfolio-level
# ----------------------------------------------------------------------------------------------------------------------
def _asset_columns(frame: pl.DataFrame, ts_column: str) -> list[str]:
    cols = [c for c in frame.columns if c != ts_column]
    if not cols:
        raise DataError(f"frame has no asset columns besides {ts_column!r}")
    return cols


def _resolve_weights(weights: np.ndarray | Sequence[float] | Mapping[str, float], assets: list[str]) -> np.ndarray:
    """Weights aligned to ``assets``: a mapping (symbols not named get 0) or a vector of the same length."""
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(assets))
        if unknown:
            raise DataError(f"weights name assets not in the frame: {unknown}")
        w = np.array([float(weights.get(a, 0.0)) for a in assets])
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size != len(assets):
            raise DataError(f"weights length {w.size} != number of assets {len(assets)} ({assets[:5]}...)")
    if not np.isfinite(w).all():
        raise DataError(f"weights must be finite, got {w.tolist()}")
    return w


def portfolio_returns(
    weights: np.ndarray | Sequence[float] | Mapping[str, float],
    returns_frame: pl.DataFrame,
    ts_column: str = "ts",
) -> pl.Series:
    r"""Portfolio returns :math:`r^p_t = \sum_i w_i r_{i,t}` of a wide frame of asset simple returns.

    Weights are constant (rebalanced every period); any ``ts_column`` is ignored, the other columns are the
    assets. ``weights`` is a vector in column order or a ``{symbol: weight}`` mapping (missing symbols = 0).
    Returns a Float64 series named ``"portfolio"``; a null/NaN in a weighted column raises :class:`DataError`.
    """
    assets = _asset_columns(returns_frame, ts_column)
    w = _resolve_weights(weights, assets)
    used = [a for a, wi in zip(assets, w, strict=True) if wi != 0.0]
    x = returns_frame.select(assets).cast(pl.Float64).to_numpy()
    for j, a in enumerate(assets):
        if a in used and not np.isfinite(x[:, j]).all():
            row = int(np.argmax(~np.isfinite(x[:, j])))
            raise DataError(f"returns column {a!r} has a missing/non-finite value at row {row}")
    x = np.where(np.isfinite(x), x, 0.0)
    return pl.Series("portfolio", x @ w)


def risk_contributions(
    weights: np.ndarray | Sequence[float],
    cov: np.ndarray,
    symbols: Sequence[str] | None = None,
) -> pl.DataFrame:
    r"""Euler decomposition of portfolio volatility :math:`\sigma = \sqrt{w^\top \Sigma w}`.

    * ``marginal``  :math:`= (\Sigma w)_i / \sigma` (:math:`\partial\sigma / \partial w_i`)
    * ``component`` :math:`= w_i (\Sigma w)_i / \sigma` (sums to :math:`\sigma`)
    * ``percent``   :math:`= w_i (\Sigma w)_i / \sigma^2` (sums to 1)

    ``cov`` is in whatever units (per period or annualised) the result should be in. Returns a frame with
    columns ``symbol`` (given names, else ``"0"``, ``"1"``...), ``weight``, ``marginal``, ``component``,
    ``percent``. Raises :class:`DataError` for a non-square, asymmetric, non-finite or non-PSD ``cov``
    (smallest eigenvalue below ``-1e-10 * max|eigenvalue|``), mismatched weights or zero portfolio variance.
    """
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise DataError(f"cov must be a square matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise DataError("cov has non-finite entries")
    n = c.shape[0]
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size != n:
        raise DataError(f"weights length {w.size} != number of assets {n} in cov")
    if not np.isfinite(w).all():
        raise DataError(f"weights must be finite, got {w.tolist()}")
    scale = float(np.max(np.abs(c))) or 1.0
    if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * scale):
        raise DataError("cov is not symmetric")
    eig = np.linalg.eigvalsh(c)
    if eig[0] < -1e-10 * max(float(np.max(np.abs(eig))), 1e-300):
        raise DataError(f"cov is not positive semi-definite (smallest eigenvalue {eig[0]:.3e}); repair or shrink it")
    if symbols is None:
        names = [str(i) for i in range(n)]
    else:
        names = [str(s) for s in symbols]
        if len(names) != n:
            raise DataError(f"symbols length {len(names)} != number of assets {n}")
    sw = c @ w
    variance = float(w @ sw)
    if variance <= 0.0:
        raise DataError("portfolio variance is zero; risk contributions are undefined")
    sigma = math.sqrt(variance)
    return pl.DataFrame(
        {
            "symbol": names,
            "weight": w,
            "marginal": sw / sigma,
            "component": w * sw / sigma,
            "percent": w * sw / variance,
        }
    )


# ----------------------------------------------------------------------------------------------------------------------
# stress tests
# ----------------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StressResult:
    """Outcome of :func:`stress_test`.

    Attributes
    ----------
    start, end : first and last dates in the data inside the window.
    cumulative_return : :math:`V_T - 1` of the buy-and-hold portfolio (:math:`\\sum_i w_i R_i`).
    max_drawdown : maximum drawdown of the daily portfolio value path :math:`V_t`.
    contributions : frame ``symbol, weight, asset_return, contribution`` (``contribution = w_i R_i``;
        sums to ``cumulative_return``).
    excluded : assets with missing prices held as cash (only with ``missing="exclude"``).
    """

    start: dt.date
    end: dt.date
    cumulative_return: float
    max_drawdown: float
    contributions: pl.DataFrame
    excluded: tuple[str, ...]


def _to_date(x: str | dt.date | dt.datetime, name: str) -> dt.date:
    if isinstance(x, dt.datetime):
        return x.date()
    if isinstance(x, dt.date):
        return x
    try:
        return dt.date.fromisoformat(str(x))
    except ValueError:
        raise ConfigError(f"{name} must be an ISO date (YYYY-MM-DD), got {x!r}") from None


def stress_test(
    weights: np.ndarray | Sequence[float] | Mapping[str, float],
    prices_wide: pl.DataFrame,
    start: str | dt.date | dt.datetime,
    end: str | dt.date | dt.datetime,
    ts_column: str = "ts",
    missing: Literal["raise", "exclude"] = "raise",
) -> StressResult:
    r"""Replay the window ``[start, end]`` (dates, inclusive) on today's weights, buy-and-hold.

    With :math:`P_{i,0}` the price on the first date in the window,
    :math:`V_t = 1 + \sum_i w_i (P_{i,t}/P_{i,0} - 1)` (any weight not invested, :math:`1 - \sum w`, is cash
    at zero return). Reports :math:`V_T - 1`, the max drawdown of :math:`V_t` and the per-asset
    contributions :math:`w_i (P_{i,T}/P_{i,0} - 1)`.

    The data must cover the window (first date ``<= start``, at least two rows inside). An asset with a
    non-zero weight and a null/non-positive price inside the window raises :class:`DataError`
    (``missing="raise"``), or with ``missing="exclude"`` is held as cash and reported in ``excluded`` with a
    :class:`DataQualityWarning`.
    """
    if missing not in ("raise", "exclude"):
        raise ConfigError(f"missing must be 'raise' or 'exclude', got {missing!r}")
    d0, d1 = _to_date(start, "start"), _to_date(end, "end")
    if d1 <= d0:
        raise ConfigError(f"end {d1} must be after start {d0}")
    if ts_column not in prices_wide.columns:
        raise DataError(f"prices_wide has no {ts_column!r} column")
    assets = _asset_columns(prices_wide, ts_column)
    w = _resolve_weights(weights, assets)
    frame = prices_wide.sort(ts_column)
    dates = frame[ts_column].cast(pl.Date) if frame[ts_column].dtype != pl.Date else frame[ts_column]
    first = dates.min()
    if first is None or first > d0:  # type: ignore[operator]
        raise DataError(f"prices start on {first}, after the window start {d0}; the window is not covered")
    mask = ((dates >= d0) & (dates <= d1)).to_numpy()
    if mask.sum() < 2:
        raise DataError(f"fewer than two price rows inside [{d0}, {d1}]")
    win_dates = dates.filter(pl.Series(mask))
    px = frame.filter(pl.Series(mask)).select(assets).cast(pl.Float64).to_numpy()
    bad = [a for j, a in enumerate(assets) if w[j] != 0.0 and not (np.isfinite(px[:, j]) & (px[:, j] > 0)).all()]
    if bad:
        if missing == "raise":
            raise DataError(f"assets with missing prices in [{d0}, {d1}]: {bad}; drop them or pass missing='exclude'")
        warnings.warn(
            f"stress test [{d0}, {d1}]: {bad} have missing prices; held as cash", DataQualityWarning, stacklevel=2
        )
    w_eff = np.array([0.0 if a in bad else wi for a, wi in zip(assets, w, strict=True)])
    used = w_eff != 0.0
    rel = np.zeros_like(px)
    rel[:, used] = px[:, used] / px[0, used] - 1.0
    value = 1.0 + rel @ w_eff
    if (value <= 0.0).any():
        raise DataError("portfolio value falls to or below zero in the window; drawdown undefined")
    valid = (np.isfinite(px) & (px > 0)).all(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        asset_ret = np.where(valid, px[-1] / px[0] - 1.0, np.nan)
    contrib = rel[-1] * w_eff
    contributions = pl.DataFrame(
        {"symbol": assets, "weight": w, "asset_return": asset_ret, "contribution": contrib}
    ).with_columns(pl.col("asset_return").fill_nan(None))
    return StressResult(
        start=win_dates[0],
        end=win_dates[-1],
        cumulative_return=float(value[-1] - 1.0),
        max_drawdown=max_drawdown(value, kind="equity"),
        contributions=contributions,
        excluded=tuple(bad),
    )


def stress_scenarios(
    weights: np.ndarray | Sequence[float] | Mapping[str, float],
    prices_wide: pl.DataFrame,
    names: Sequence[str] | None = None,
    ts_column: str = "ts",
    missing: Literal["raise", "exclude"] = "raise",
) -> pl.DataFrame:
    """Run :func:`stress_test` over named :data:`SCENARIOS`.

    ``names=None`` runs every scenario whose window the data covers (the others are skipped silently);
    naming an unknown scenario raises :class:`ConfigError`, naming one the data does not cover raises
    :class:`DataError`. Columns: ``scenario, start, end, n_excluded, cumulative_return, max_drawdown``.
    """
    if names is None:
        first = prices_wide[ts_column].cast(pl.Date).min()
        last = prices_wide[ts_column].cast(pl.Date).max()
        chosen = [
            n
            for n, (s, e) in SCENARIOS.items()
            if first <= dt.date.fromisoformat(s) and dt.date.fromisoformat(e) <= last  # type: ignore[operator]
        ]
    else:
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise ConfigError(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
        chosen = list(names)
    rows = []
    for n in chosen:
        res = stress_test(weights, prices_wide, *SCENARIOS[n], ts_column=ts_column, missing=missing)
        rows.append((n, res.start, res.end, len(res.excluded), res.cumulative_return, res.max_drawdown))
    return pl.DataFrame(
        rows,
        schema={
            "scenario": pl.String,
            "start": pl.Date,
            "end": pl.Date,
            "n_excluded": pl.Int64,
            "cumulative_return": pl.Float64,
            "max_drawdown": pl.Float64,
        },
        orient="row",
    )
