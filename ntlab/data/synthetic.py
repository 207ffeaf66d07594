"""Seeded synthetic market data that conforms to the ntlab schemas.

Every generator takes a keyword ``seed`` and draws from ``np.random.default_rng(seed)`` only:
the same arguments and seed give an identical frame, on every machine.

Conventions
-----------
* ``mu`` and ``sigma`` are annualised over a calendar year of 365 days (:data:`YEAR`), since
  the bars run around the clock: a 1-minute bar has ``dt = 1 / 525_600`` years.
  ``mu`` is the drift of the price itself: ``E[S_t] = s0 * exp(mu * t)``.
* Bars are built from an intra-bar path of ``substeps`` log-price steps: ``open`` is the
  previous ``close`` (``s0`` for the first bar), ``close`` the last step, ``high``/``low`` the
  extremes of the path including ``open``, so ``low <= open, close <= high`` always holds.
  ``volume`` is Gamma distributed with mean 1,000, independent of the price.
* ``ts`` is the bar's open time; bars are contiguous from ``start`` (naive values are UTC).
* ``freq`` is ``"<int><unit>"`` with unit ``ns``, ``us``, ``ms``, ``s``, ``m`` (minute),
  ``h``, ``d`` or ``w`` (as in Polars), or a :class:`datetime.timedelta`.
* Symbols follow :func:`ntlab.data.schemas.check_symbol` (they can name catalog folders):
  ``"EUR/USD"`` is rejected, write ``"EUR-USD"``.

Examples
--------
>>> from ntlab.data.synthetic import gbm_bars
>>> bars = gbm_bars(3, symbol="SYN", freq="1h", sigma=0.3, seed=42)
>>> bars.columns
['ts', 'symbol', 'open', 'high', 'low', 'close', 'volume']
>>> bars["ts"].dt.hour().to_list()
[0, 1, 2]
>>> bars.equals(gbm_bars(3, symbol="SYN", freq="1h", sigma=0.3, seed=42))
True
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import numpy as np
import polars as pl

from ntlab.data._time import duration_ns, utc_ns
from ntlab.data.schemas import TS, check_symbol
from ntlab.exceptions import ConfigError

__all__ = [
    "YEAR",
    "RegimeBars",
    "correlated_bars",
    "gbm_bars",
    "jump_diffusion_bars",
    "regime_switching_bars",
    "trade_ticks",
]

YEAR = timedelta(days=365)
"""The year that annualises ``mu``, ``sigma`` and jump intensities."""

_YEAR_NS = YEAR // timedelta(microseconds=1) * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK_BARS = 1 << 16
_VOLUME_SHAPE = 2.0
_VOLUME_MEAN = 1_000.0

_Draw = Callable[[np.random.Generator, int, int], np.ndarray]


class RegimeBars(NamedTuple):
    """Bars of :func:`regime_switching_bars` and the regime (state index) of every bar."""

    bars: pl.DataFrame
    regimes: np.ndarray


# ------------------------------------------------------------------------ bars
def gbm_bars(
    n: int,
    *,
    symbol: str = "SYN",
    start: datetime | date | str = "2024-01-01",
    freq: str | timedelta = "1m",
    mu: float = 0.0,
    sigma: float = 0.2,
    s0: float = 100.0,
    substeps: int = 16,
    seed: int,
) -> pl.DataFrame:
    """OHLCV bars of a geometric Brownian motion.

    Parameters
    ----------
    n
        Number of bars (> 0).
    symbol, start, freq
        Symbol of every row, open time of the first bar, bar length.
    mu, sigma
        Annualised drift and volatility (``sigma >= 0``).
    s0
        Price before the first bar (> 0).
    substeps
        Steps of the intra-bar path that builds high and low (>= 1).
    seed
        Seed of ``np.random.default_rng``.

    Returns
    -------
    pl.DataFrame
        ``bars`` schema: ts, symbol, open, high, low, close, volume.

    Examples
    --------
    >>> from ntlab.data.synthetic import gbm_bars
    >>> bars = gbm_bars(1_000, sigma=0.5, seed=3)
    >>> bool((bars["high"] >= bars[["open", "close"]].max_horizontal()).all())
    True
    """
    n, freq_ns, t0 = _check_common(n, freq=freq, start=start, substeps=substeps, seed=seed)
    check_symbol(symbol)
    _check_params(sigma=sigma, s0=s0)
    dt = freq_ns / _YEAR_NS / substeps
    drift = (mu - 0.5 * sigma**2) * dt
    vol = sigma * np.sqrt(dt)

    def draw(rng: np.random.Generator, rows: int, _lo: int) -> np.ndarray:
        return drift + vol * rng.standard_normal((rows, substeps))

    rng = np.random.default_rng(seed)
    return _bars_frame(rng, n, t0, freq_ns, symbol, _ohlc(rng, n, s0, draw))


def jump_diffusion_bars(
    n: int,
    *,
    symbol: str = "SYN",
    start: datetime | date | str = "2024-01-01",
    freq: str | timedelta = "1m",
    mu: float = 0.0,
    sigma: float = 0.2,
    jump_intensity: float = 20.0,
    jump_mean: float = -0.01,
    jump_std: float = 0.02,
    s0: float = 100.0,
    substeps: int = 16,
    seed: int,
) -> pl.DataFrame:
    """OHLCV bars of a Merton jump diffusion.

    Between jumps the log price is a Brownian motion; jumps arrive as a Poisson process of
    ``jump_intensity`` per year and each multiplies the price by ``exp(J)`` with
    ``J ~ Normal(jump_mean, jump_std)``. The drift is compensated so that ``mu`` stays the
    expected growth rate: ``E[S_t] = s0 * exp(mu * t)``.

    Parameters
    ----------
    n, symbol, start, freq, mu, sigma, s0, substeps, seed
        As in :func:`gbm_bars`.
    jump_intensity
        Expected jumps per year (>= 0).
    jump_mean, jump_std
        Mean and standard deviation of the log jump size (``jump_std >= 0``).

    Returns
    -------
    pl.DataFrame
        ``bars`` schema: ts, symbol, open, high, low, close, volume.

    Examples
    --------
    >>> from ntlab.data.synthetic import jump_diffusion_bars
    >>> bars = jump_diffusion_bars(500, freq="1h", jump_intensity=200.0, seed=5)
    >>> bars.height, bars.equals(jump_diffusion_bars(500, freq="1h", jump_intensity=200.0, seed=5))
    (500, True)
    """
    n, freq_ns, t0 = _check_common(n, freq=freq, start=start, substeps=substeps, seed=seed)
    check_symbol(symbol)
    _check_params(sigma=sigma, s0=s0, jump_intensity=jump_intensity, jump_std=jump_std)
    dt = freq_ns / _YEAR_NS / substeps
    kappa = np.expm1(jump_mean + 0.5 * jump_std**2)
    drift = (mu - 0.5 * sigma**2 - jump_intensity * kappa) * dt
    vol = sigma * np.sqrt(dt)
    lam = jump_intensity * dt

    def draw(rng: np.random.Generator, rows: int, _lo: int) -> np.ndarray:
        diffusion = drift + vol * rng.standard_normal((rows, substeps))
        counts = rng.poisson(lam, (rows, substeps))
        jumps = counts * jump_mean + np.sqrt(counts) * jump_std * rng.standard_normal(
            (rows, substeps)
        )
        return diffusion + jumps

    rng = np.random.default_rng(seed)
    return _bars_frame(rng, n, t0, freq_ns, symbol, _ohlc(rng, n, s0, draw))


def regime_switching_bars(
    n: int,
    *,
    symbol: str = "SYN",
    start: datetime | date | str = "2024-01-01",
    freq: str | timedelta = "1m",
    mus: Sequence[float] = (0.1, -0.2),
    sigmas: Sequence[float] = (0.15, 0.6),
    transition: Sequence[Sequence[float]] | np.ndarray = ((0.999, 0.001), (0.004, 0.996)),
    initial_regime: int = 0,
    s0: float = 100.0,
    substeps: int = 16,
    seed: int,
) -> RegimeBars:
    """OHLCV bars whose drift and volatility follow a Markov chain of regimes.

    Regime ``i`` has annualised drift ``mus[i]`` and volatility ``sigmas[i]``. The regime
    changes between bars: ``transition[i][j]`` is the probability that a bar in regime ``i``
    is followed by one in regime ``j``, so the expected stay in regime ``i`` is
    ``1 / (1 - transition[i][i])`` bars.

    Parameters
    ----------
    n, symbol, start, freq, s0, substeps, seed
        As in :func:`gbm_bars`.
    mus, sigmas
        Drift and volatility of each regime (two or more; ``sigmas >= 0``).
    transition
        Row-stochastic ``k x k`` matrix of per-bar transition probabilities.
    initial_regime
        Regime of the first bar.

    Returns
    -------
    RegimeBars
        ``bars`` (``bars`` schema) and ``regimes``, the int8 regime of every bar.

    Examples
    --------
    >>> from ntlab.data.synthetic import regime_switching_bars
    >>> bars, regimes = regime_switching_bars(
    ...     1_000, transition=[[0.99, 0.01], [0.05, 0.95]], seed=11
    ... )
    >>> bars.height, regimes.shape, sorted(set(regimes.tolist()))
    (1000, (1000,), [0, 1])
    """
    n, freq_ns, t0 = _check_common(n, freq=freq, start=start, substeps=substeps, seed=seed)
    check_symbol(symbol)
    _check_params(s0=s0)
    mu_arr = _vector(mus, "mus")
    sig_arr = _vector(sigmas, "sigmas")
    trans = _check_transition(transition, k=mu_arr.size)
    if sig_arr.size != mu_arr.size:
        msg = f"mus has {mu_arr.size} regimes but sigmas has {sig_arr.size}; give one per regime"
        raise ConfigError(msg)
    if (sig_arr < 0).any():
        msg = f"sigmas must be >= 0, got {sig_arr.tolist()}"
        raise ConfigError(msg)
    if not 0 <= initial_regime < mu_arr.size:
        msg = f"initial_regime={initial_regime} is not one of the regimes 0..{mu_arr.size - 1}"
        raise ConfigError(msg)
    rng = np.random.default_rng(seed)
    regimes = _markov_path(rng, n, trans, initial_regime)
    dt = freq_ns / _YEAR_NS / substeps
    drift = ((mu_arr - 0.5 * sig_arr**2) * dt)[regimes]
    vol = (sig_arr * np.sqrt(dt))[regimes]

    def draw(rng: np.random.Generator, rows: int, lo: int) -> np.ndarray:
        z = rng.standard_normal((rows, substeps))
        return drift[lo : lo + rows, None] + vol[lo : lo + rows, None] * z

    bars = _bars_frame(rng, n, t0, freq_ns, symbol, _ohlc(rng, n, s0, draw))
    return RegimeBars(bars=bars, regimes=regimes)


def correlated_bars(
    n: int,
    *,
    symbols: Sequence[str] = ("A", "B"),
    corr: Sequence[Sequence[float]] | np.ndarray = ((1.0, 0.5), (0.5, 1.0)),
    start: datetime | date | str = "2024-01-01",
    freq: str | timedelta = "1m",
    mu: float | Sequence[float] = 0.0,
    sigma: float | Sequence[float] = 0.2,
    s0: float | Sequence[float] = 100.0,
    substeps: int = 16,
    seed: int,
) -> pl.DataFrame:
    """OHLCV bars of several assets whose Brownian motions are correlated.

    The increments are ``L @ z`` with ``L`` the Cholesky factor of ``corr`` (an eigenvalue
    factor when ``corr`` is only semi-definite), so the log returns of any two assets have
    correlation ``corr[i][j]``.

    Parameters
    ----------
    n, start, freq, substeps, seed
        As in :func:`gbm_bars`.
    symbols
        Distinct names of the assets.
    corr
        Symmetric positive semi-definite correlation matrix with a unit diagonal.
    mu, sigma, s0
        One value for all assets or one per asset.

    Returns
    -------
    pl.DataFrame
        Long ``bars`` frame sorted by ts, then in the order of ``symbols``.

    Examples
    --------
    >>> from ntlab.data.synthetic import correlated_bars
    >>> bars = correlated_bars(4, symbols=["X", "Y"], corr=[[1, 0.9], [0.9, 1]], seed=2)
    >>> bars["symbol"].to_list()
    ['X', 'Y', 'X', 'Y', 'X', 'Y', 'X', 'Y']
    """
    n, freq_ns, t0 = _check_common(n, freq=freq, start=start, substeps=substeps, seed=seed)
    names = list(symbols)
    for i, name in enumerate(names):
        check_symbol(name, name=f"symbols[{i}]")
    m = len(names)
    if m == 0 or len(set(names)) != m:
        msg = f"symbols must be distinct and not empty, got {names}"
        raise ConfigError(msg)
    factor = _corr_factor(corr, m)
    mu_arr = _broadcast(mu, m, "mu")
    sig_arr = _broadcast(sigma, m, "sigma")
    s0_arr = _broadcast(s0, m, "s0")
    _check_params(sigma=float(sig_arr.min()), s0=float(s0_arr.min()))
    dt = freq_ns / _YEAR_NS / substeps
    drift = (mu_arr - 0.5 * sig_arr**2) * dt
    vol = sig_arr * np.sqrt(dt)

    def draw(rng: np.random.Generator, rows: int, _lo: int) -> np.ndarray:
        z = rng.standard_normal((rows, substeps, m)) @ factor.T
        return drift + vol * z

    rng = np.random.default_rng(seed)
    o, h, lo, c = _ohlc(rng, n, s0_arr, draw)
    volume = rng.gamma(_VOLUME_SHAPE, _VOLUME_MEAN / _VOLUME_SHAPE, (n, m))
    ts = (t0 + np.arange(n, dtype=np.int64) * freq_ns).repeat(m)
    codes = np.tile(np.arange(m, dtype=np.uint32), n)
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).cast(TS),
            "symbol": pl.Series(names, dtype=pl.String).gather(codes),
            "open": o.ravel(),
            "high": h.ravel(),
            "low": lo.ravel(),
            "close": c.ravel(),
            "volume": volume.ravel(),
        }
    )


# ---------------------------------------------------------------------- trades
def trade_ticks(
    n: int,
    *,
    symbol: str = "SYN",
    start: datetime | date | str = "2024-01-01",
    price0: float = 100.0,
    tick_size: float = 0.01,
    mean_interarrival: float = 0.1,
    sigma: float = 0.5,
    spread_ticks: int = 1,
    lot_size: float = 1.0,
    seed: int,
) -> pl.DataFrame:
    """Trade prints: Poisson arrivals, prices on a tick grid, bid/ask bounce.

    A latent price follows a geometric Brownian motion (annualised ``sigma``) in continuous
    time. The quoted bid is the grid price about half a spread below it, the ask ``spread_ticks``
    ticks above the bid; each trade is a buy (``side=+1``, at the ask) or a sell (``-1``, at the
    bid) with equal odds, which gives the negative lag-1 autocorrelation of tick returns.

    Parameters
    ----------
    n
        Number of trades (> 0).
    symbol, start
        Symbol of every row; the arrival process starts at ``start`` (naive = UTC).
    price0
        Latent price at ``start`` (> 0).
    tick_size
        Price grid (> 0); prices are rounded to its decimals.
    mean_interarrival
        Mean seconds between trades (> 0). Gaps are exponential and rounded to whole ns, so
        two trades can share a ``ts``.
    sigma
        Annualised volatility of the latent price (>= 0).
    spread_ticks
        Quoted spread in ticks (>= 1).
    lot_size
        Sizes are ``lot_size * ceil(LogNormal(0, 1))``: whole numbers for ``1.0``,
        fractional for e.g. ``0.001``.
    seed
        Seed of ``np.random.default_rng``.

    Returns
    -------
    pl.DataFrame
        ``trades`` schema: ts, symbol, price, size, side, trade_id (0..n-1).

    Examples
    --------
    >>> from ntlab.data.synthetic import trade_ticks
    >>> ticks = trade_ticks(5, symbol="ES", price0=1640.0, tick_size=0.25, seed=9)
    >>> ticks.columns
    ['ts', 'symbol', 'price', 'size', 'side', 'trade_id']
    >>> bool(((ticks["price"] / 0.25).round() * 0.25 == ticks["price"]).all())
    True
    """
    n = _check_n(n)
    _check_seed(seed)
    t0 = _start_ns(start)
    _check_params(
        sigma=sigma,
        price0=price0,
        tick_size=tick_size,
        mean_interarrival=mean_interarrival,
        lot_size=lot_size,
    )
    check_symbol(symbol)
    if not _is_int(spread_ticks) or spread_ticks < 1:
        msg = f"spread_ticks must be an integer >= 1, got {spread_ticks!r}"
        raise ConfigError(msg)
    rng = np.random.default_rng(seed)
    gaps = rng.standard_exponential(n)
    gaps *= mean_interarrival * 1e9
    gaps = np.rint(gaps, out=gaps).astype(np.int64)
    ts = np.cumsum(gaps)
    ts += t0
    dt = gaps / _YEAR_NS
    steps = np.sqrt(dt)
    steps *= rng.standard_normal(n)
    steps *= sigma
    dt *= 0.5 * sigma**2
    steps -= dt
    log_p = np.cumsum(steps, out=steps)
    log_p += np.log(price0 / tick_size)
    side = rng.integers(0, 2, n, dtype=np.int8)
    side *= 2
    side -= 1
    ticks = np.exp(log_p, out=log_p)
    ticks -= 0.5 * spread_ticks
    ticks = np.floor(ticks, out=ticks)
    np.maximum(ticks, 1.0, out=ticks)  # the bid, in ticks
    ticks += (side > 0) * float(spread_ticks)
    price = _on_grid(ticks, tick_size)
    lots = rng.lognormal(0.0, 1.0, n)
    size = _on_grid(np.ceil(lots, out=lots), lot_size)
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).cast(TS),
            "symbol": pl.select(pl.repeat(symbol, n, dtype=pl.String)).to_series(),
            "price": price,
            "size": size,
            "side": side,
            "trade_id": np.arange(n, dtype=np.int64),
        }
    )


# --------------------------------------------------------------------- helpers
def _ohlc(
    rng: np.random.Generator, n: int, s0: float | np.ndarray, draw: _Draw
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Open, high, low, close from log increments drawn chunk by chunk.

    ``draw(rng, rows, first_row)`` returns increments of shape ``(rows, substeps[, assets])``.
    """
    last = np.log(np.asarray(s0, dtype=np.float64))
    shape = (n, *last.shape)
    o, h, lo, c = (np.empty(shape) for _ in range(4))
    for first in range(0, n, _CHUNK_BARS):
        rows = min(_CHUNK_BARS, n - first)
        steps = draw(rng, rows, first)
        flat = steps.reshape(rows * steps.shape[1], *steps.shape[2:])
        path = (last + np.cumsum(flat, axis=0)).reshape(steps.shape)
        close = path[:, -1]
        opens = np.concatenate([last[None, ...], close[:-1]], axis=0)
        sl = slice(first, first + rows)
        o[sl], c[sl] = opens, close
        h[sl] = np.maximum(opens, path.max(axis=1))
        lo[sl] = np.minimum(opens, path.min(axis=1))
        last = close[-1]
    o, h, lo, c = np.exp(o), np.exp(h), np.exp(lo), np.exp(c)
    o[0] = s0  # exactly, not exp(log(s0))
    h[0] = np.maximum(h[0], o[0])
    lo[0] = np.minimum(lo[0], o[0])
    return o, h, lo, c


def _bars_frame(
    rng: np.random.Generator,
    n: int,
    t0: int,
    freq_ns: int,
    symbol: str,
    ohlc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> pl.DataFrame:
    o, h, lo, c = ohlc
    volume = rng.gamma(_VOLUME_SHAPE, _VOLUME_MEAN / _VOLUME_SHAPE, n)
    ts = t0 + np.arange(n, dtype=np.int64) * freq_ns
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).cast(TS),
            "symbol": pl.select(pl.repeat(symbol, n, dtype=pl.String)).to_series(),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": volume,
        }
    )


def _markov_path(rng: np.random.Generator, n: int, trans: np.ndarray, state: int) -> np.ndarray:
    """Regime of each of ``n`` bars: a geometric stay, then a jump to another regime.

    Only the sequence of visited regimes is drawn in a Python loop (light work per regime
    change); the stays are drawn vectorised.
    """
    k = trans.shape[0]
    stay = np.diag(trans).copy()
    leave = trans * (1.0 - np.eye(k))
    sums = leave.sum(axis=1, keepdims=True)
    cum = np.cumsum(np.divide(leave, sums, where=sums > 0, out=np.zeros_like(leave)), axis=1)
    cum_rows = [row.tolist() for row in cum]
    log_stay = np.log(np.where(stay > 0, stay, 1.0))
    visited: list[np.ndarray] = []
    stays: list[np.ndarray] = []
    total, batch = 0, 1024
    while total < n:
        states = [0] * batch
        for j, u in enumerate(rng.random(batch).tolist()):
            states[j] = state
            state = min(bisect.bisect_right(cum_rows[state], u), k - 1)
        s = np.array(states, dtype=np.int8)
        with np.errstate(divide="ignore", invalid="ignore"):  # log_stay == 0: absorbing
            raw = np.floor(np.log1p(-rng.random(batch)) / log_stay[s]) + 1.0
        length = np.where(stay[s] >= 1.0, n, np.where(stay[s] > 0, np.minimum(raw, n), 1.0))
        visited.append(s)
        stays.append(length.astype(np.int64))
        total += int(stays[-1].sum())
        batch *= 2
    lengths = np.concatenate(stays)
    ends = np.cumsum(lengths)
    last = int(np.searchsorted(ends, n))  # the regime that reaches bar n
    lengths = lengths[: last + 1]
    lengths[-1] -= ends[last] - n
    return np.repeat(np.concatenate(visited)[: last + 1], lengths)


def _check_common(
    n: int, *, freq: str | timedelta, start: datetime | date | str, substeps: int, seed: int
) -> tuple[int, int, int]:
    n = _check_n(n)
    _check_seed(seed)
    if not _is_int(substeps) or substeps < 1:
        msg = f"substeps must be an integer >= 1, got {substeps!r}"
        raise ConfigError(msg)
    return n, _freq_ns(freq), _start_ns(start)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_n(n: int) -> int:
    if not _is_int(n) or n <= 0:
        msg = f"n must be a positive integer, got {n!r}"
        raise ConfigError(msg)
    return int(n)


def _check_seed(seed: int) -> None:
    if not _is_int(seed) or seed < 0:
        msg = f"seed must be a non-negative integer, got {seed!r}"
        raise ConfigError(msg)


_POSITIVE = {"s0", "price0", "tick_size", "mean_interarrival", "lot_size"}


def _check_params(**values: float) -> None:
    for name, value in values.items():
        ok = np.isfinite(value) and (value > 0 if name in _POSITIVE else value >= 0)
        if not ok:
            bound = "> 0" if name in _POSITIVE else ">= 0"
            msg = f"{name} must be finite and {bound}, got {value!r}"
            raise ConfigError(msg)


def _freq_ns(freq: str | timedelta) -> int:
    return duration_ns(freq, name="freq")


def _start_ns(start: datetime | date | str) -> int:
    return utc_ns(start, name="start")


def _vector(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2 or not np.isfinite(arr).all():
        msg = f"{name} must be two or more finite numbers (one per regime), got {values!r}"
        raise ConfigError(msg)
    return arr


def _broadcast(value: float | Sequence[float], m: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(m, float(arr))
    if arr.shape != (m,):
        msg = f"{name} must be one number or one per symbol ({m}), got {value!r}"
        raise ConfigError(msg)
    return arr


def _check_transition(
    transition: Sequence[Sequence[float]] | np.ndarray, *, k: int
) -> np.ndarray:
    trans = np.asarray(transition, dtype=np.float64)
    if trans.shape != (k, k):
        msg = f"transition must be a {k}x{k} matrix (one row per regime), got shape {trans.shape}"
        raise ConfigError(msg)
    if not np.isfinite(trans).all() or (trans < 0).any() or (trans > 1).any():
        msg = f"transition probabilities must lie in [0, 1], got {trans.tolist()}"
        raise ConfigError(msg)
    sums = trans.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0, atol=1e-9):
        msg = f"each transition row must sum to 1, got row sums {sums.tolist()}"
        raise ConfigError(msg)
    return trans


def _corr_factor(corr: Sequence[Sequence[float]] | np.ndarray, m: int) -> np.ndarray:
    mat = np.asarray(corr, dtype=np.float64)
    if mat.shape != (m, m):
        msg = f"corr must be {m}x{m} (one row per symbol), got shape {mat.shape}"
        raise ConfigError(msg)
    if not np.isfinite(mat).all() or not np.allclose(mat, mat.T, rtol=0, atol=1e-10):
        msg = f"corr must be a finite symmetric matrix, got {mat.tolist()}"
        raise ConfigError(msg)
    if not np.allclose(np.diag(mat), 1.0, rtol=0, atol=1e-10) or (np.abs(mat) > 1).any():
        msg = f"corr must have a unit diagonal and entries in [-1, 1], got {mat.tolist()}"
        raise ConfigError(msg)
    try:
        return np.linalg.cholesky(mat)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(mat)
        if w.min() < -1e-10:
            msg = (
                f"corr is not positive semi-definite (smallest eigenvalue {w.min():.3g}); "
                f"use a valid correlation matrix, e.g. the nearest one by eigenvalue clipping"
            )
            raise ConfigError(msg) from None
        return v * np.sqrt(np.clip(w, 0.0, None))


def _on_grid(counts: np.ndarray, step: float) -> np.ndarray:
    """``counts * step`` as the doubles nearest to the decimal values (``1001 * 0.01 -> 10.01``)."""
    if step == 1.0:
        return counts
    inverse = float(round(1.0 / step))
    if inverse >= 1.0 and 1.0 / inverse == step:
        return np.divide(counts, inverse, out=counts)  # one correctly rounded division
    text = np.format_float_positional(step, trim="-")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return np.round(counts * step, decimals)
