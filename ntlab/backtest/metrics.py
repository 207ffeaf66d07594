"""Performance metrics of a backtest: returns, risk, drawdowns, activity and round-trip trades.

Inputs
------
equity  one row per step: ``ts`` (time-zone-aware Datetime, strictly increasing), ``equity``
        (> 0) and, for the activity metrics, ``gross_exposure``, ``traded`` and ``fees`` (>= 0).
        Other columns (``cash``, ``position_value``) are allowed and ignored. Numeric columns of
        any numeric dtype are cast to Float64; ``ts`` is converted to UTC nanoseconds.
trades  one row per round trip: ``entry_ts``, ``exit_ts``, ``pnl`` (net of fees) and ``return``;
        other columns are allowed and ignored. ``None`` or an empty frame means no trades.

Conventions
-----------
* ``E_i`` is the equity of row ``i`` (``i = 0..n-1``). The per-step return is
  ``r_i = E_i / E_{i-1} - 1`` for ``i = 1..n-1``: n rows give n-1 returns, the first row has none.
* Periods per year (``ppy``) are inferred from the timestamps by :func:`periods_per_year` unless
  given as ``periods_per_year=``; every function that uses them takes that override.
* Annualised return (CAGR) uses calendar time, not bar counts:
  ``(E_{n-1} / E_0) ** (1 / years) - 1`` with ``years = (ts_{n-1} - ts_0) / 365.25 days``.
* ``risk_free`` is an annual rate, converted per step geometrically:
  ``rf_step = (1 + risk_free) ** (1 / ppy) - 1``.
* Drawdowns are negative fractions: ``E_i / max(E_0..E_i) - 1``.
* An undefined value is NaN, never an error nor a silent 0: too few rows, a ratio over zero risk,
  trade statistics without trades. Ratios that only penalise losses (Sortino, Calmar, profit
  factor) are ``inf`` when there is no loss side and the gain side is positive.
* Equity <= 0 (or not finite) raises :class:`~ntlab.exceptions.DataError` naming the row:
  returns are undefined once an account is wiped out. Truncate the frame before that row to
  analyse the path up to it. Unsorted or duplicated ``ts`` raise ``DataError`` naming the first
  offending row; a missing column or a wrong dtype raises :class:`~ntlab.exceptions.SchemaError`.

Example
-------
>>> import datetime as dt
>>> import polars as pl
>>> from ntlab.backtest.metrics import max_drawdown, max_drawdown_duration
>>> ts = pl.datetime_range(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 5), "1d", time_zone="UTC", eager=True)
>>> equity = pl.DataFrame({"ts": ts, "equity": [100.0, 120.0, 90.0, 105.0, 125.0]})
>>> max_drawdown(equity)
-0.25
>>> max_drawdown_duration(equity)
(datetime.timedelta(days=3), 3)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from types import MappingProxyType

import numpy as np
import polars as pl

from ntlab.exceptions import ConfigError, DataError, SchemaError

__all__ = [
    "MetricValue",
    "Metrics",
    "annualised_return",
    "annualised_volatility",
    "calmar",
    "check_equity",
    "check_trades",
    "drawdown",
    "exposure",
    "max_drawdown",
    "max_drawdown_duration",
    "monthly_returns",
    "periods_per_year",
    "profit_factor",
    "returns_from_equity",
    "sharpe",
    "sortino",
    "summary",
    "total_return",
    "trade_stats",
    "turnover",
    "win_rate",
]

MetricValue = float | int | dt.timedelta | None

_NS_PER_DAY = 86_400 * 10**9
_NS_PER_YEAR = 365.25 * _NS_PER_DAY
_TRADING_DAYS_PER_YEAR = 252
_MULTI_DAY_SPACING_NS = 1.5 * _NS_PER_DAY
_WEEKEND_SHARE_24_7 = 0.1
_ZERO_VOLATILITY_RTOL = 1e-12
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EQUITY = ("ts", "equity")
_SUMMARY_EQUITY = ("ts", "equity", "gross_exposure", "traded", "fees")
_TRADE_TIMES = ("entry_ts", "exit_ts")
_TRADE_VALUES = ("pnl", "return")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# key, label, display kind, section: the order of Metrics and of its tables
_SPEC = (
    ("start_equity", "Start equity", "money", "Returns"),
    ("end_equity", "End equity", "money", "Returns"),
    ("total_return", "Total return", "pct", "Returns"),
    ("annualised_return", "CAGR", "pct", "Returns"),
    ("annualised_volatility", "Volatility (ann.)", "pct", "Risk"),
    ("sharpe", "Sharpe ratio", "ratio", "Risk"),
    ("sortino", "Sortino ratio", "ratio", "Risk"),
    ("calmar", "Calmar ratio", "ratio", "Risk"),
    ("max_drawdown", "Max drawdown", "pct", "Risk"),
    ("max_drawdown_duration", "Longest drawdown", "duration", "Risk"),
    ("max_drawdown_bars", "Longest drawdown (bars)", "count", "Risk"),
    ("exposure", "Exposure", "pct", "Activity"),
    ("turnover", "Turnover (ann.)", "ratio", "Activity"),
    ("total_fees", "Fees", "money", "Activity"),
    ("n_trades", "Trades", "count", "Trades"),
    ("win_rate", "Win rate", "pct", "Trades"),
    ("profit_factor", "Profit factor", "ratio", "Trades"),
    ("avg_trade_pnl", "Avg trade P&L", "money", "Trades"),
    ("median_trade_pnl", "Median trade P&L", "money", "Trades"),
    ("avg_trade_return", "Avg trade return", "pct", "Trades"),
    ("median_trade_return", "Median trade return", "pct", "Trades"),
    ("avg_win", "Avg win", "money", "Trades"),
    ("avg_loss", "Avg loss", "money", "Trades"),
    ("largest_win", "Largest win", "money", "Trades"),
    ("largest_loss", "Largest loss", "money", "Trades"),
    ("expectancy", "Expectancy (R)", "ratio", "Trades"),
    ("avg_holding_time", "Avg holding time", "duration", "Trades"),
)
_LABEL = {key: label for key, label, _, _ in _SPEC}
_KIND = {key: kind for key, _, kind, _ in _SPEC}
_SECTION = {key: section for key, _, _, section in _SPEC}
_TRADE_KEYS = tuple(key for key, _, _, section in _SPEC if section == "Trades")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def check_equity(equity: pl.DataFrame, columns: Sequence[str] = _EQUITY) -> pl.DataFrame:
    """Validate an equity frame and return its ``columns``, normalised.

    Parameters
    ----------
    equity
        The engine's equity frame (see the module docstring).
    columns
        The columns needed; ``ts`` and ``equity`` are always checked.

    Returns
    -------
    pl.DataFrame
        ``ts`` as ``Datetime("ns", "UTC")``, the other columns as Float64, in the order asked.

    Raises
    ------
    SchemaError
        ``equity`` is not a Polars DataFrame, or a column is missing or of the wrong dtype.
    DataError
        The frame is empty, holds a null, ``ts`` is not strictly increasing, ``equity`` is not
        finite and > 0, or another column is not finite and >= 0. The message names the first
        offending row and its ``ts``.
    """
    names = list(dict.fromkeys([*_EQUITY, *columns]))
    frame = _normalised(equity, "equity", ["ts"], names[1:])
    if frame.height == 0:
        msg = "equity frame is empty; a backtest gives at least one row (its initial state)"
        raise DataError(msg)
    ts = _ns(frame["ts"])
    _check_increasing(ts, "equity.ts", "equity.unique('ts', keep='last', maintain_order=True).sort('ts')")
    values = frame["equity"].to_numpy()
    row = _first_row(~(np.isfinite(values) & (values > 0)))
    if row is not None:
        msg = (
            f"equity is {float(values[row])!r} at row {row} ({_ts_text(ts[row])}); returns are undefined once "
            f"equity is not a finite number > 0. Analyse the path before it: equity.head({row})"
        )
        raise DataError(msg)
    for name in names[2:]:
        column = frame[name].to_numpy()
        row = _first_row(~(np.isfinite(column) & (column >= 0)))
        if row is not None:
            value = float(column[row])
            msg = f"equity.{name} is {value!r} at row {row} ({_ts_text(ts[row])}); it must be finite and >= 0"
            raise DataError(msg)
    return frame.select(columns)


def check_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """Validate a round-trip trades frame and return ``entry_ts, exit_ts, pnl, return``, normalised.

    Returns
    -------
    pl.DataFrame
        The timestamps as ``Datetime("ns", "UTC")``, ``pnl`` and ``return`` as Float64.

    Raises
    ------
    SchemaError
        ``trades`` is not a Polars DataFrame, or a column is missing or of the wrong dtype.
    DataError
        A null, a non-finite ``pnl`` or ``return``, or an ``exit_ts`` before its ``entry_ts``;
        the message names the first offending row.
    """
    frame = _normalised(trades, "trades", list(_TRADE_TIMES), list(_TRADE_VALUES))
    for name in _TRADE_VALUES:
        column = frame[name].to_numpy()
        row = _first_row(~np.isfinite(column))
        if row is not None:
            msg = f"trades.{name} is {float(column[row])!r} at row {row}; it must be a finite number"
            raise DataError(msg)
    entry, exit_ = _ns(frame["entry_ts"]), _ns(frame["exit_ts"])
    row = _first_row(exit_ < entry)
    if row is not None:
        msg = (
            f"trades.exit_ts ({_ts_text(exit_[row])}) is before entry_ts ({_ts_text(entry[row])}) at row {row}; "
            f"a round trip exits after it enters"
        )
        raise DataError(msg)
    return frame


def _normalised(frame: pl.DataFrame, what: str, times: list[str], numbers: list[str]) -> pl.DataFrame:
    """Select ``times`` (as UTC ns) and ``numbers`` (as Float64), rejecting missing, mistyped, null.

    Messages name a column ``what.column``, or ``column`` alone when ``what`` is empty.
    """
    if not isinstance(frame, pl.DataFrame):
        msg = f"{what} must be a polars DataFrame, not {type(frame).__name__}; convert it with pl.DataFrame(...)"
        raise SchemaError(msg)
    for name in [*times, *numbers]:
        if name not in frame.columns:
            msg = f"{what} frame has no column {name!r} (it has {frame.columns}); expected {_expected(name, times)}"
            raise SchemaError(msg)
        label = f"{what}.{name}" if what else name
        dtype = frame.schema[name]
        wrong_time = name in times and not (isinstance(dtype, pl.Datetime) and dtype.time_zone is not None)
        if wrong_time or (name in numbers and not dtype.is_numeric()):
            hint = " (attach the zone with .dt.replace_time_zone('UTC'))" if isinstance(dtype, pl.Datetime) else ""
            msg = f"{label} has dtype {dtype}; expected {_expected(name, times)}{hint}"
            raise SchemaError(msg)
        if frame[name].null_count():
            row = _first_row(frame[name].is_null().to_numpy())
            msg = f"{label} is null at row {row}; fill or drop that row"
            raise DataError(msg)
    return frame.select(
        *(pl.col(c).dt.convert_time_zone("UTC").dt.cast_time_unit("ns") for c in times),
        *(pl.col(c).cast(pl.Float64) for c in numbers),
    )


def _expected(name: str, times: list[str]) -> str:
    return "a time-zone-aware Datetime, e.g. Datetime('ns', 'UTC')" if name in times else "a numeric dtype (Float64)"


def _check_increasing(ts: np.ndarray, what: str, fix: str) -> None:
    steps = np.diff(ts)
    row = _first_row(steps <= 0)
    if row is not None:
        relation = "repeats" if steps[row] == 0 else "is earlier than"
        msg = (
            f"{what} is not strictly increasing: row {row + 1} ({_ts_text(ts[row + 1])}) {relation} "
            f"row {row} ({_ts_text(ts[row])}); keep one row per step, sorted: {fix}"
        )
        raise DataError(msg)


def _first_row(bad: np.ndarray) -> int | None:
    rows = np.flatnonzero(bad)
    return int(rows[0]) if rows.size else None


def _ns(ts: pl.Series) -> np.ndarray:
    return ts.to_physical().to_numpy()


def _ts_text(ns: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=int(ns) // 1000)).isoformat(sep=" ")


def _timedelta(ns: float) -> dt.timedelta:
    return dt.timedelta(microseconds=float(ns) / 1000)


def _curve(equity: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    frame = check_equity(equity)
    return _ns(frame["ts"]), frame["equity"].to_numpy()


# --------------------------------------------------------------------------------------------
# Time scale
# --------------------------------------------------------------------------------------------


def periods_per_year(ts: pl.Series) -> float:
    """Infer how many steps of ``ts`` make a year.

    With ``d`` the median spacing of consecutive timestamps:

    * ``d >= 1.5 days`` (weekly, monthly data): ``365.25 days / d``.
    * more than 10 % of the timestamps on a Saturday or Sunday (UTC), i.e. 24/7 data such as
      crypto: ``365.25 days / d`` (8766 for hourly bars, 365.25 for daily bars). The sample
      decides: 24/7 data spanning less than a week without a weekend looks like session data.
    * otherwise a market with sessions and weekends: ``252 * m`` with ``m`` the median number of
      timestamps per UTC calendar day (252 for daily bars, 252 * 390 for regular-session
      minute bars).

    Parameters
    ----------
    ts
        Time-zone-aware Datetime series, strictly increasing, at least two values.

    Raises
    ------
    SchemaError
        ``ts`` is not a time-zone-aware Datetime Series.
    DataError
        Fewer than two timestamps, a null, or timestamps not strictly increasing.
    """
    if not isinstance(ts, pl.Series):
        msg = f"ts must be a polars Series, not {type(ts).__name__}; pass equity['ts']"
        raise SchemaError(msg)
    values = _ns(_normalised(ts.to_frame("ts"), "", ["ts"], [])["ts"])
    if values.size < 2:
        msg = f"periods_per_year needs at least two timestamps, got {values.size}; pass periods_per_year= explicitly"
        raise DataError(msg)
    _check_increasing(values, "ts", "ts.unique().sort()")
    return _infer_periods_per_year(values)


def _infer_periods_per_year(ts: np.ndarray) -> float:
    spacing = float(np.median(np.diff(ts)))
    days = ts // _NS_PER_DAY
    weekend_share = float(np.mean((days + 3) % 7 >= 5))  # 1970-01-01 was a Thursday (weekday 3)
    if spacing >= _MULTI_DAY_SPACING_NS or weekend_share > _WEEKEND_SHARE_24_7:
        return _NS_PER_YEAR / spacing
    _, per_day = np.unique(days, return_counts=True)
    return _TRADING_DAYS_PER_YEAR * float(np.median(per_day))


def _resolve_periods_per_year(ts: np.ndarray, override: float | None) -> float:
    """The override when given (checked), else inferred; NaN for a single row."""
    if override is not None:
        value = float(override)
        if not (math.isfinite(value) and value > 0):
            msg = f"periods_per_year={override!r} must be a finite number > 0, e.g. 252 for daily bars"
            raise ConfigError(msg)
        return value
    return _infer_periods_per_year(ts) if ts.size >= 2 else math.nan


def _per_step_rate(risk_free: float, ppy: float) -> float:
    if not (math.isfinite(risk_free) and risk_free > -1):
        msg = f"risk_free={risk_free!r} must be a finite annual rate > -1, e.g. 0.04 for 4 % a year"
        raise ConfigError(msg)
    return (1.0 + risk_free) ** (1.0 / ppy) - 1.0


# --------------------------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------------------------


def returns_from_equity(equity: pl.DataFrame) -> pl.DataFrame:
    """Per-step simple returns ``r_i = E_i / E_{i-1} - 1``, ``i = 1..n-1``.

    Returns
    -------
    pl.DataFrame
        Columns ``ts`` (the end of each step) and ``return``; n-1 rows (the first row of
        ``equity`` has no return, a single row gives an empty frame).
    """
    frame = check_equity(equity)
    return frame.select("ts", (pl.col("equity") / pl.col("equity").shift(1) - 1.0).alias("return")).slice(1)


def drawdown(equity: pl.DataFrame) -> pl.DataFrame:
    """Underwater curve ``D_i = E_i / max(E_0..E_i) - 1`` (0 at a peak, -0.25 when 25 % below it).

    Returns
    -------
    pl.DataFrame
        Columns ``ts`` and ``drawdown``, one row per row of ``equity``.
    """
    frame = check_equity(equity)
    return frame.select("ts", (pl.col("equity") / pl.col("equity").cum_max() - 1.0).alias("drawdown"))


def monthly_returns(equity: pl.DataFrame) -> pl.DataFrame:
    """Calendar-month returns (UTC months): one row per year, one column per month.

    The return of a month is ``last equity of the month / last equity of the previous month with
    data - 1``; the first month is measured from the first equity value (``E_0``). A month
    without rows is null and the next month is measured across it.

    Returns
    -------
    pl.DataFrame
        ``year`` (Int32) then ``Jan`` .. ``Dec`` (Float64, fractions; null without data).
    """
    frame = check_equity(equity)
    month_ends = frame.group_by(pl.col("ts").dt.truncate("1mo").alias("month"), maintain_order=True).agg(
        pl.col("equity").last()
    )
    start = frame["equity"][0]
    month_ends = month_ends.with_columns(
        (pl.col("equity") / pl.col("equity").shift(1, fill_value=start) - 1.0).alias("return")
    )
    return month_ends.group_by(pl.col("month").dt.year().alias("year"), maintain_order=True).agg(
        [
            pl.col("return").filter(pl.col("month").dt.month() == number).first().alias(name)
            for number, name in enumerate(_MONTHS, start=1)
        ]
    )


# --------------------------------------------------------------------------------------------
# Returns and risk
# --------------------------------------------------------------------------------------------


def total_return(equity: pl.DataFrame) -> float:
    """``E_{n-1} / E_0 - 1`` (0 for a single row)."""
    _, values = _curve(equity)
    return float(values[-1] / values[0] - 1.0)


def annualised_return(equity: pl.DataFrame) -> float:
    """Compound annual growth rate over calendar time.

    ``(E_{n-1} / E_0) ** (1 / years) - 1`` with ``years = (ts_{n-1} - ts_0) / (365.25 * 86400 s)``.
    Timestamps, not bar counts, measure the time, so gaps in the data count. NaN for a single
    row; ``inf`` when a large gain over a very short span overflows.
    """
    ts, values = _curve(equity)
    return _annualised_return(ts, values)


def annualised_volatility(equity: pl.DataFrame, *, periods_per_year: float | None = None) -> float:
    """``std(r, ddof=1) * sqrt(ppy)``; NaN with fewer than two returns (three rows)."""
    ts, values = _curve(equity)
    return _annualised_volatility(_returns(values), _resolve_periods_per_year(ts, periods_per_year))


def sharpe(equity: pl.DataFrame, *, periods_per_year: float | None = None, risk_free: float = 0.0) -> float:
    """Annualised Sharpe ratio ``mean(r - rf_step) / std(r - rf_step, ddof=1) * sqrt(ppy)``.

    ``rf_step = (1 + risk_free) ** (1 / ppy) - 1`` converts the annual rate per step. NaN with
    fewer than two returns, and NaN for zero volatility: constant equity, or a std of at most
    1e-12 times the mean absolute excess return (the rounding noise of constant growth).
    """
    ts, values = _curve(equity)
    ppy = _resolve_periods_per_year(ts, periods_per_year)
    return _sharpe(_returns(values), ppy, _per_step_rate(risk_free, ppy))


def sortino(equity: pl.DataFrame, *, periods_per_year: float | None = None, risk_free: float = 0.0) -> float:
    """Annualised Sortino ratio ``mean(r - t) / DD * sqrt(ppy)``, target ``t = rf_step``.

    ``DD = sqrt(mean(min(r - t, 0) ** 2))`` over ALL returns (returns above the target count as
    zero downside), the standard downside deviation. When ``DD = 0``: ``inf`` if the mean excess
    return is > 0, else NaN. NaN for a single row.
    """
    ts, values = _curve(equity)
    ppy = _resolve_periods_per_year(ts, periods_per_year)
    return _sortino(_returns(values), ppy, _per_step_rate(risk_free, ppy))


def calmar(equity: pl.DataFrame) -> float:
    """``annualised_return / |max_drawdown|``; without drawdown ``inf`` for a gain, NaN for none."""
    ts, values = _curve(equity)
    return _ratio(_annualised_return(ts, values), -_max_drawdown(values))


def max_drawdown(equity: pl.DataFrame) -> float:
    """``min_i (E_i / max(E_0..E_i) - 1)``, a fraction in [-1, 0] (0 without drawdown)."""
    _, values = _curve(equity)
    return _max_drawdown(values)


def max_drawdown_duration(equity: pl.DataFrame) -> tuple[dt.timedelta, int]:
    """The longest drawdown: from a peak to the first row back at (>=) that peak, or to the last row.

    Every stretch of rows below the running peak is one drawdown; it starts at the row of the
    peak and ends at the recovery row, or at the last row when equity never gets back. The
    longest in time is returned, with its length in rows (bars); ties go to the earliest.

    Returns
    -------
    tuple[datetime.timedelta, int]
        ``(ts_end - ts_peak, row_end - row_peak)``; ``(timedelta(0), 0)`` without drawdown.
    """
    ts, values = _curve(equity)
    return _max_drawdown_duration(ts, values)


def _returns(values: np.ndarray) -> np.ndarray:
    return values[1:] / values[:-1] - 1.0


def _annualised_return(ts: np.ndarray, values: np.ndarray) -> float:
    years = (int(ts[-1]) - int(ts[0])) / _NS_PER_YEAR
    if years == 0:
        return math.nan
    with np.errstate(over="ignore"):
        return float(np.float64(values[-1] / values[0]) ** (1.0 / years) - 1.0)


def _annualised_volatility(returns: np.ndarray, ppy: float) -> float:
    if returns.size < 2:
        return math.nan
    return float(np.std(returns, ddof=1) * math.sqrt(ppy))


def _sharpe(returns: np.ndarray, ppy: float, rf_step: float) -> float:
    if returns.size < 2:
        return math.nan
    excess = returns - rf_step
    std = float(np.std(excess, ddof=1))
    if std <= _ZERO_VOLATILITY_RTOL * float(np.mean(np.abs(excess))):
        return math.nan
    return float(np.mean(excess)) / std * math.sqrt(ppy)


def _sortino(returns: np.ndarray, ppy: float, target: float) -> float:
    if returns.size == 0:
        return math.nan
    excess = returns - target
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    return _ratio(float(np.mean(excess)), downside) * math.sqrt(ppy)


def _ratio(gain: float, risk: float) -> float:
    """``gain / risk``; with no risk, ``inf`` for a positive gain and NaN otherwise."""
    if risk > 0:
        return gain / risk
    return math.inf if gain > 0 else math.nan


def _max_drawdown(values: np.ndarray) -> float:
    return float(np.min(values / np.maximum.accumulate(values) - 1.0))


def _max_drawdown_duration(ts: np.ndarray, values: np.ndarray) -> tuple[dt.timedelta, int]:
    underwater = values < np.maximum.accumulate(values)
    rows = np.arange(values.size)
    peak_row = np.maximum.accumulate(np.where(underwater, 0, rows))
    ends = np.flatnonzero(underwater[:-1] & ~underwater[1:]) + 1  # recovery rows
    if underwater[-1]:
        ends = np.append(ends, values.size - 1)
    if ends.size == 0:
        return dt.timedelta(0), 0
    starts = peak_row[ends - 1]
    spans = ts[ends] - ts[starts]
    longest = int(np.argmax(spans))
    return _timedelta(spans[longest]), int(ends[longest] - starts[longest])


# --------------------------------------------------------------------------------------------
# Activity
# --------------------------------------------------------------------------------------------


def exposure(equity: pl.DataFrame) -> float:
    """Fraction of rows (steps) with ``gross_exposure > 0``."""
    frame = check_equity(equity, ("ts", "gross_exposure"))
    return float(np.mean(frame["gross_exposure"].to_numpy() > 0))


def turnover(equity: pl.DataFrame, *, periods_per_year: float | None = None) -> float:
    """Annualised turnover ``mean(traded) / mean(equity) * ppy`` over all rows.

    ``traded`` counts buys and sells, so buying and later selling the whole equity once a year
    is a turnover of 2.0. NaN for a single row unless ``periods_per_year`` is given.
    """
    frame = check_equity(equity, ("ts", "equity", "traded"))
    ppy = _resolve_periods_per_year(_ns(frame["ts"]), periods_per_year)
    return _turnover(frame["traded"].to_numpy(), frame["equity"].to_numpy(), ppy)


def _turnover(traded: np.ndarray, values: np.ndarray, ppy: float) -> float:
    return float(np.mean(traded) / np.mean(values)) * ppy


# --------------------------------------------------------------------------------------------
# Trades
# --------------------------------------------------------------------------------------------


def win_rate(trades: pl.DataFrame) -> float:
    """Share of trades with ``pnl > 0`` (break-even trades are not wins); NaN without trades."""
    return _trade_stats(check_trades(trades))["win_rate"]


def profit_factor(trades: pl.DataFrame) -> float:
    """``sum(pnl > 0) / |sum(pnl < 0)|``; ``inf`` with gains and no losses, NaN without trades or gains."""
    return _trade_stats(check_trades(trades))["profit_factor"]


def trade_stats(trades: pl.DataFrame | None) -> dict[str, MetricValue]:
    """Statistics of round trips (``None`` or an empty frame: no trades).

    With wins = trades with ``pnl > 0`` and losses = trades with ``pnl < 0``:

    ========================  ===============================================================
    n_trades                  number of round trips (0 without trades)
    win_rate                  ``#wins / n_trades``
    profit_factor             ``sum(win pnl) / |sum(loss pnl)|`` (see :func:`profit_factor`)
    avg_trade_pnl             ``mean(pnl)``; ``median_trade_pnl``: ``median(pnl)``
    avg_trade_return          ``mean(return)``; ``median_trade_return``: ``median(return)``
    avg_win, avg_loss         ``mean(pnl)`` of wins, of losses (negative); NaN without any
    largest_win               ``max(pnl)`` of wins; ``largest_loss``: ``min(pnl)`` of losses
    expectancy                ``mean(pnl) / |avg_loss|``: the average trade in units of the
                              average loss (R multiples); NaN without losses
    avg_holding_time          ``mean(exit_ts - entry_ts)`` as a timedelta; None without trades
    ========================  ===============================================================

    Every other value is NaN without trades.
    """
    return _trade_stats(None if trades is None else check_trades(trades))


def _trade_stats(trades: pl.DataFrame | None) -> dict[str, MetricValue]:
    if trades is None or trades.height == 0:
        return dict.fromkeys(_TRADE_KEYS, math.nan) | {"n_trades": 0, "avg_holding_time": None}
    pnl, returns = trades["pnl"].to_numpy(), trades["return"].to_numpy()
    holding = _ns(trades["exit_ts"]) - _ns(trades["entry_ts"])
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    avg_loss = float(np.mean(losses)) if losses.size else math.nan
    return {
        "n_trades": int(pnl.size),
        "win_rate": wins.size / pnl.size,
        "profit_factor": _ratio(float(np.sum(wins)), -float(np.sum(losses))),
        "avg_trade_pnl": float(np.mean(pnl)),
        "median_trade_pnl": float(np.median(pnl)),
        "avg_trade_return": float(np.mean(returns)),
        "median_trade_return": float(np.median(returns)),
        "avg_win": float(np.mean(wins)) if wins.size else math.nan,
        "avg_loss": avg_loss,
        "largest_win": float(np.max(wins)) if wins.size else math.nan,
        "largest_loss": float(np.min(losses)) if losses.size else math.nan,
        "expectancy": float(np.mean(pnl)) / -avg_loss,
        "avg_holding_time": _timedelta(float(np.mean(holding))),
    }


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def summary(
    equity: pl.DataFrame,
    trades: pl.DataFrame | None = None,
    *,
    periods_per_year: float | None = None,
    risk_free: float = 0.0,
) -> Metrics:
    """Every metric of a backtest at once (``equity`` needs ts, equity, gross_exposure, traded, fees).

    Parameters
    ----------
    equity, trades
        The engine's frames (see the module docstring); ``trades=None`` means no trades.
    periods_per_year
        Steps per year; inferred by :func:`periods_per_year` when None (NaN for a single row).
    risk_free
        Annual risk-free rate for Sharpe and the Sortino target.

    Returns
    -------
    Metrics
        The values of :func:`total_return`, :func:`annualised_return`, :func:`sharpe`... keyed
        by name (``metrics["sharpe"]``), plus ``start_equity``, ``end_equity`` and
        ``total_fees = sum(fees)``.
    """
    frame = check_equity(equity, _SUMMARY_EQUITY)
    ts, values = _ns(frame["ts"]), frame["equity"].to_numpy()
    ppy = _resolve_periods_per_year(ts, periods_per_year)
    rf_step = _per_step_rate(risk_free, ppy)
    returns = _returns(values)
    cagr, worst = _annualised_return(ts, values), _max_drawdown(values)
    duration, bars = _max_drawdown_duration(ts, values)
    result: dict[str, MetricValue] = {
        "start_equity": float(values[0]),
        "end_equity": float(values[-1]),
        "total_return": float(values[-1] / values[0] - 1.0),
        "annualised_return": cagr,
        "annualised_volatility": _annualised_volatility(returns, ppy),
        "sharpe": _sharpe(returns, ppy, rf_step),
        "sortino": _sortino(returns, ppy, rf_step),
        "calmar": _ratio(cagr, -worst),
        "max_drawdown": worst,
        "max_drawdown_duration": duration,
        "max_drawdown_bars": bars,
        "exposure": float(np.mean(frame["gross_exposure"].to_numpy() > 0)),
        "turnover": _turnover(frame["traded"].to_numpy(), values, ppy),
        "total_fees": float(frame["fees"].sum()),
    }
    result |= trade_stats(trades)
    return Metrics(data=result, periods_per_year=ppy, risk_free=risk_free)


@dataclass(frozen=True, repr=False, eq=False)
class Metrics(Mapping[str, MetricValue]):
    """The metrics of one backtest: a read-only mapping ``name -> value`` (see :func:`summary`).

    Values are floats (NaN when undefined), ints (counts) and ``datetime.timedelta`` (durations;
    None when undefined). ``to_frame()`` gives a Polars frame, ``_repr_html_`` a formatted table
    for notebooks.
    """

    data: Mapping[str, MetricValue]
    periods_per_year: float
    risk_free: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))

    def __getitem__(self, key: str) -> MetricValue:
        try:
            return self.data[key]
        except KeyError:
            msg = f"no metric {key!r}; the metrics are {list(self.data)}"
            raise KeyError(msg) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def to_dict(self) -> dict[str, MetricValue]:
        """A plain dict copy of the values."""
        return dict(self.data)

    def to_frame(self) -> pl.DataFrame:
        """Columns ``metric`` (String) and ``value`` (Float64).

        Counts become floats, durations float days, an undefined duration NaN.
        """
        return pl.DataFrame(
            {"metric": list(self.data), "value": [_as_float(v) for v in self.data.values()]},
            schema={"metric": pl.String, "value": pl.Float64},
        )

    def format(self, key: str) -> str:
        """The value of ``key`` as displayed: ``12.34%``, ``1.52``, ``12,345.00``, ``3d 4h``, ``n/a``."""
        return _format(self[key], _KIND.get(key, "ratio"))

    def __repr__(self) -> str:
        width = max((len(_LABEL.get(key, key)) for key in self.data), default=0)
        lines = [f"Metrics (periods_per_year={self.periods_per_year:g}, risk_free={self.risk_free:.2%})"]
        lines += [f"  {_LABEL.get(key, key):<{width}}  {self.format(key):>14}" for key in self.data]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows, section = [], None
        for key in self.data:
            if _SECTION.get(key, "Other") != section:
                section = _SECTION.get(key, "Other")
                rows.append(f'<tr><th colspan="2" style="text-align:left">{escape(section)}</th></tr>')
            rows.append(
                f'<tr><td style="text-align:left">{escape(_LABEL.get(key, key))}</td>'
                f'<td style="text-align:right">{escape(self.format(key))}</td></tr>'
            )
        caption = f"periods per year {self.periods_per_year:g}, risk-free {self.risk_free:.2%}"
        return (
            f'<table class="ntlab-metrics"><caption>{escape(caption)}</caption><tbody>{"".join(rows)}</tbody></table>'
        )


def _as_float(value: MetricValue) -> float:
    if value is None:
        return math.nan
    if isinstance(value, dt.timedelta):
        return value / dt.timedelta(days=1)
    return float(value)


def _format(value: MetricValue, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, dt.timedelta):
        return _format_duration(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    formats = {"pct": "{:,.2%}", "ratio": "{:.2f}", "money": "{:,.2f}", "count": "{:,}"}
    return formats[kind].format(value)


def _format_duration(value: dt.timedelta) -> str:
    """``3d 4h``, ``4h 12m``, ``12m 5s``, ``5s`` (largest two units; years stay in days)."""
    days, seconds = value.days, value.seconds + value.microseconds / 1e6
    hours, minutes, secs = seconds // 3600, seconds % 3600 // 60, seconds % 60
    if days:
        return f"{days:,}d {hours:.0f}h"
    if hours:
        return f"{hours:.0f}h {minutes:.0f}m"
    if minutes:
        return f"{minutes:.0f}m {secs:.0f}s"
    return f"{secs:.3g}s"
