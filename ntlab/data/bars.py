"""Trades to bars: time, tick, volume and dollar bars, historical (Polars) and streaming.

:func:`bars` aggregates a trades frame with Polars; :class:`StreamingBars` aggregates one
symbol's live trades with the Numba kernels of :mod:`ntlab.kernels.bars`. Fed the same trades,
the two give exactly the same bars, bit for bit (streaming bars plus the final
:meth:`StreamingBars.flush` equal :func:`bars`).

Conventions
-----------
Trades of a symbol are taken in row order, which must have ``ts`` non-decreasing (ties are
fine). Each trade gets a bar key and a bar is the run of a symbol's trades sharing a key:

``by="time"``, ``every`` = a fixed duration ``E`` (``"1m"``, ``"5s"``, ``"1h30m"``, a
``timedelta`` or an int of nanoseconds)
    key = ``floor(ts / E) * E``: buckets on the grid of the Unix epoch (UTC), so ``"1d"``
    buckets start at midnight UTC and ``"1w"`` buckets on Thursdays (1970-01-01 was one).
    The bar's ``ts`` is the bucket start; empty buckets give no bar.
``by="tick"``, ``every`` = an int ``N``
    bar ``k`` holds the symbol's trades ``k N`` to ``(k + 1) N - 1``.
``by="volume"`` / ``by="dollar"``, ``every`` = a positive number ``V``
    a clock ``C`` adds each trade's size (volume) or notional ``price * size`` (dollar) in
    trade order, starting at ``0.0``. A trade that starts while ``C`` is in
    ``[k V, (k + 1) V)`` belongs to bar ``k``, i.e. its key is ``floor(C_before / V)``. The
    trade that crosses a threshold stays in its bar and its overshoot counts toward the next
    bars, so the bars stay aligned with the global clock (a bar's volume is about ``V``, not
    exactly); a trade larger than ``V`` skips keys and no empty bar is made.
For tick, volume and dollar bars, ``ts`` is the bar's first trade's ``ts``.

Bar values: ``open``/``close`` first/last price, ``high``/``low`` extremes, ``volume`` the sum
of sizes, ``notional`` the sum of ``price * size``, ``trades`` the count. Every sum, the clock
included, is sequential in trade order (``((x0 + x1) + x2) + ...``): Polars' ``sum`` adds in a
different (pairwise) order, so :func:`bars` takes the last value of a ``cum_sum`` instead,
which is the same sequence of additions as the streaming accumulator. The exclusive clock
``C_before`` is the shifted ``cum_sum`` (never ``cum_sum - size``, which rounds), and
``C_before / V`` is an IEEE division in both paths (Polars turns a division by a scalar into a
multiplication by its reciprocal, which rounds differently, so :func:`bars` divides by a column).

Streaming: a tick, volume or dollar bar is emitted by the trade that completes it; a time bar
is emitted when the first trade of a later bucket arrives (or on :meth:`StreamingBars.flush`),
since only then is it known that no more trades join it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple, get_args

import numpy as np
import polars as pl

from ntlab.data._time import duration_ns
from ntlab.data.schemas import TS, check_symbol, conform
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.kernels import bars as kb

__all__ = ["Bar", "BarKind", "StreamingBars", "bars", "frame_from_bars"]

BarKind = Literal["time", "tick", "volume", "dollar"]
_KINDS: tuple[str, ...] = get_args(BarKind)
_KIND_CODES = {
    "time": kb.KIND_TIME,
    "tick": kb.KIND_TICK,
    "volume": kb.KIND_VOLUME,
    "dollar": kb.KIND_DOLLAR,
}
_BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "notional", "trades")


class Bar(NamedTuple):
    """One completed bar of :class:`StreamingBars` (``ts`` in int nanoseconds, UTC)."""

    ts: int
    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    trades: int


# ---------------------------------------------------------------------------------------------
# Arguments


def _check_by(by: object) -> str:
    if not isinstance(by, str) or by not in _KIND_CODES:
        msg = f"by={by!r} is not a bar kind; use one of {', '.join(map(repr, _KINDS))}"
        raise ConfigError(msg)
    return by


def _check_every(by: str, every: object) -> int | float:
    """Validate ``every`` for ``by``: ns (time) or N (tick) as int, V (volume/dollar) as float."""
    if by == "time":
        if isinstance(every, float | np.floating):
            msg = (
                f"every={every!r} is not a duration for time bars; use a duration string "
                f"('1m', '5s', '1h'), a datetime.timedelta or an int of nanoseconds"
            )
            raise ConfigError(msg)
        if isinstance(every, str) and every.rstrip().endswith("i"):
            msg = f"every={every!r} counts rows ('i'); for bars of N trades use by='tick', every=N"
            raise ConfigError(msg)
        return duration_ns(every, name="every")  # type: ignore[arg-type]
    if by == "tick":
        if not isinstance(every, int | np.integer) or isinstance(every, bool | np.bool_):
            msg = f"every={every!r} must be an int number of trades for tick bars, e.g. 100"
            raise ConfigError(msg)
        if every <= 0:
            msg = f"every={every!r} must be a positive number of trades for tick bars, e.g. 100"
            raise ConfigError(msg)
        return int(every)
    unit = "size" if by == "volume" else "notional (price * size)"
    if not isinstance(every, int | float | np.integer | np.floating) or isinstance(
        every, bool | np.bool_
    ):
        msg = f"every={every!r} must be a number, the {unit} per {by} bar, e.g. 1000.0"
        raise ConfigError(msg)
    step = float(every)
    if not (math.isfinite(step) and step > 0.0):
        msg = f"every={every!r} must be a positive finite {unit} per {by} bar, e.g. 1000.0"
        raise ConfigError(msg)
    return step


# ---------------------------------------------------------------------------------------------
# Historical bars (Polars)


def _check_trades(frame: pl.DataFrame, by: str, *, multi: bool) -> None:
    """Raise DataError on nulls, non-finite or negative values and decreasing ``ts``."""
    nulls = {c: n for c, n in frame.null_count().row(0, named=True).items() if n}
    if nulls:
        msg = f"trades hold nulls {nulls}; drop or fill those rows before making bars"
        raise DataError(msg)
    price, size = pl.col("price"), pl.col("size")
    checks = {
        "price is not finite": ~price.is_finite(),
        "size is not finite": ~size.is_finite(),
        "size is negative": size < 0.0,
    }
    if multi or not frame["ts"].is_sorted():  # is_sorted: a fast path for one symbol
        backwards = pl.col("ts").to_physical().diff()
        checks["ts is before the previous trade's ts of the same symbol (sort trades by ts)"] = (
            backwards.over("symbol") if multi else backwards
        ) < 0
    if by == "dollar":
        checks["price is negative, which dollar bars cannot clock"] = price < 0.0
    found = frame.select(**{str(i): e.any() for i, e in enumerate(checks.values())}).row(0)
    for (what, expr), bad in zip(checks.items(), found, strict=True):
        if bad:
            row = int(frame.select(expr.arg_true().first()).item())
            msg = f"trades row {row}: {what}; the row is {frame.row(row, named=True)}"
            raise DataError(msg)


def bars(
    trades: pl.DataFrame | pl.LazyFrame,
    *,
    by: BarKind,
    every: str | int | float | dt.timedelta,
) -> pl.DataFrame:
    """Aggregate a trades frame into time, tick, volume or dollar bars.

    Parameters
    ----------
    trades
        A frame of kind ``"trades"`` (see :mod:`ntlab.data.schemas`), one or more symbols.
        Each symbol's rows are taken in order and their ``ts`` must not decrease.
    by
        ``"time"``, ``"tick"``, ``"volume"`` or ``"dollar"`` (conventions in the module
        docstring).
    every
        Time bars: a fixed Polars duration string (``"1m"``, ``"5s"``, ``"1h"``), a
        ``timedelta`` or an int of nanoseconds. Tick bars: an int number of trades. Volume
        bars: size per bar. Dollar bars: notional (``price * size``) per bar.

    Returns
    -------
    pl.DataFrame
        A ``"bars"`` frame with ``volume``, ``notional`` and ``trades``, one row per bar and
        symbol, sorted by ``ts`` then ``symbol`` (each symbol's bars in order). The last
        bar of each symbol may be partial, as :meth:`StreamingBars.flush` gives it.

    Raises
    ------
    ConfigError
        For an unknown ``by`` or an ``every`` that does not fit it.
    SchemaError
        When ``trades`` is not a trades frame.
    DataError
        For nulls, non-finite prices or sizes, negative sizes (negative prices for dollar
        bars) and ``ts`` going backwards within a symbol.

    Examples
    --------
    >>> import polars as pl
    >>> from ntlab.data.bars import bars
    >>> trades = pl.DataFrame({
    ...     "ts": pl.Series([0, 20, 40, 65, 70], dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
    ...     "symbol": "BTC",
    ...     "price": [10.0, 11.0, 9.0, 12.0, 12.5],
    ...     "size": [0.5, 0.25, 0.5, 0.75, 0.25],
    ... })
    >>> out = bars(trades, by="volume", every=1.0)  # clock before each trade: 0, .5, .75, 1.25, 2
    >>> out.select("open", "close", "volume", "trades").rows()
    [(10.0, 9.0, 1.25, 3), (12.0, 12.0, 0.75, 1), (12.5, 12.5, 0.25, 1)]
    >>> out["ts"].dt.epoch("ns").to_list()
    [0, 65, 70]
    >>> bars(trades, by="time", every=50)["trades"].to_list()
    [3, 2]
    """
    by = _check_by(by)
    step = _check_every(by, every)
    if isinstance(trades, pl.LazyFrame):
        trades = trades.collect()
    if not isinstance(trades, pl.DataFrame):
        msg = f"trades must be a polars DataFrame or LazyFrame of kind 'trades', not {type(trades)}"
        raise SchemaError(msg)
    frame = conform(trades, "trades").select("ts", "symbol", "price", "size")
    multi = frame.select((pl.col("symbol") != pl.col("symbol").first()).any()).item() is True
    _check_trades(frame, by, multi=multi)

    def per_symbol(expr: pl.Expr) -> pl.Expr:
        return expr.over("symbol") if multi else expr

    price, size = pl.col("price"), pl.col("size")
    if by == "time":
        key = (pl.col("ts").to_physical() // step) * step
        bar_ts = pl.col("key").first().cast(TS)
    else:
        if by == "tick":
            key = per_symbol(pl.int_range(pl.len(), dtype=pl.Int64)) // step
        else:
            # Polars divides by a scalar as a multiplication by its reciprocal, which rounds
            # differently from the kernel's IEEE division (0.3 / 0.1 is 2.9999999999999996,
            # 0.3 * (1 / 0.1) is 3.0): divide by a column of V instead, element by element.
            amount = size if by == "volume" else price * size
            clock = per_symbol(amount.cum_sum().shift(1, fill_value=0.0))
            key = (clock / pl.col("step")).floor()
            frame = frame.with_columns(pl.Series("step", np.full(frame.height, step)))
        bar_ts = pl.col("ts").first()
    query = frame.lazy().with_columns(key=key, notional=price * size)
    if multi:
        query = query.group_by("symbol", "key", maintain_order=True)
    else:  # the keys of one symbol are sorted (ts sorted, amounts >= 0): a faster group_by
        query = query.with_columns(pl.col("key").set_sorted()).group_by("key", maintain_order=True)
    query = query.agg(
        ts=bar_ts,
        open=price.first(),
        high=price.max(),
        low=price.min(),
        close=price.last(),
        volume=size.cum_sum().last(),  # sequential sums, as in the streaming kernel
        notional=pl.col("notional").cum_sum().last(),
        trades=pl.len(),
    ).drop("key")
    if multi:
        query = query.sort("ts", "symbol", maintain_order=True)
    elif frame.height:
        query = query.with_columns(symbol=pl.lit(frame["symbol"][0]))
    else:
        query = query.with_columns(symbol=pl.lit(None, dtype=pl.String))
    out = query.collect()
    return conform(out, "bars")


# ---------------------------------------------------------------------------------------------
# Streaming bars (Numba kernels)


def _frame(symbol: str, columns: Sequence[np.ndarray]) -> pl.DataFrame:
    data = dict(zip(_BAR_COLUMNS, columns, strict=True))
    out = pl.DataFrame(data).with_columns(pl.col("ts").cast(TS), symbol=pl.lit(symbol))
    return conform(out, "bars")


def frame_from_bars(items: Sequence[Bar]) -> pl.DataFrame:
    """Return a ``"bars"`` frame of :class:`Bar` items, in their order.

    Examples
    --------
    >>> from ntlab.data.bars import Bar, frame_from_bars
    >>> frame_from_bars([Bar(0, "ES", 1.0, 2.0, 0.5, 1.5, 3.0, 4.5, 2)]).shape
    (1, 9)
    """
    schema = {"ts": pl.Int64, "symbol": pl.String, "trades": pl.Int64}
    schema |= {c: pl.Float64 for c in _BAR_COLUMNS[1:-1]}
    out = pl.DataFrame(
        [tuple(b) for b in items], schema=list(Bar._fields), orient="row", schema_overrides=schema
    )
    return conform(out.with_columns(pl.col("ts").cast(TS)), "bars")


def _ts_array(ts: object) -> np.ndarray:
    """int64 nanoseconds of ``ts``: ints, numpy datetime64 or a tz-aware Datetime Series."""
    if isinstance(ts, pl.Series) and isinstance(ts.dtype, pl.Datetime):
        if ts.dtype.time_zone is None:
            msg = "ts is a naive Datetime series; give it a time zone (dt.replace_time_zone)"
            raise DataError(msg)
        ts = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("ns").to_physical()
    arr = ts.to_numpy() if isinstance(ts, pl.Series) else np.asarray(ts)
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[ns]").view(np.int64)
    if arr.dtype.kind not in "iu" and arr.size:
        msg = f"ts must be int nanoseconds or datetimes, not dtype {arr.dtype}"
        raise DataError(msg)
    return np.ascontiguousarray(arr, dtype=np.int64)


class StreamingBars:
    """Aggregate one symbol's trades into bars as they arrive (the live engine's form).

    Fed the trades of :func:`bars`, the bars emitted by :meth:`update` and
    :meth:`update_many` (which can be mixed freely), followed by :meth:`flush`, equal
    ``bars(trades, by=by, every=every)`` exactly. A tick, volume or dollar bar is emitted by
    the trade that completes it. A time bar is emitted when the first trade of a later bucket
    arrives (its own bar is then open), or by :meth:`flush`: with no new trade, a time bar
    stays open past its bucket's end.

    Parameters
    ----------
    by, every
        As in :func:`bars`.
    symbol
        Symbol written into the bars.

    Raises
    ------
    ConfigError
        For an unknown ``by``, an ``every`` that does not fit it, or a symbol that cannot be
        a catalog folder name (see :func:`ntlab.data.schemas.check_symbol`).

    Examples
    --------
    >>> from ntlab.data.bars import StreamingBars
    >>> sb = StreamingBars(by="time", every="1s", symbol="ES")
    >>> sb.update(1_000_000_000, 1640.25, 3.0) is None
    True
    >>> sb.update(1_500_000_000, 1640.50, 1.0) is None
    True
    >>> bar = sb.update(2_100_000_000, 1640.00, 2.0)  # first trade of the next second
    >>> bar.ts, bar.open, bar.close, bar.volume, bar.trades
    (1000000000, 1640.25, 1640.5, 4.0, 2)
    >>> sb.flush().ts
    2000000000
    """

    __slots__ = ("_by", "_every", "_out", "_out_i", "_rejected", "_state", "_symbol")

    def __init__(
        self, *, by: BarKind, every: str | int | float | dt.timedelta, symbol: str
    ) -> None:
        self._by = _check_by(by)
        self._every = _check_every(self._by, every)
        self._symbol = check_symbol(symbol)
        self._state = kb.new_bar_state_nb(_KIND_CODES[self._by], self._every)
        self._out = np.zeros(kb.OUT_SIZE, dtype=np.float64)
        self._out_i = self._out.view(np.int64)
        self._rejected = 0

    @property
    def by(self) -> str:
        """The bar kind."""
        return self._by

    @property
    def every(self) -> int | float:
        """Bucket width in ns (time), trades per bar (tick) or clock step (volume, dollar)."""
        return self._every

    @property
    def symbol(self) -> str:
        """The symbol written into the bars."""
        return self._symbol

    @property
    def rejected(self) -> int:
        """How many trades (or batches, for :meth:`update_many`) were rejected so far."""
        return self._rejected

    def __repr__(self) -> str:
        return f"StreamingBars(by={self._by!r}, every={self._every!r}, symbol={self._symbol!r})"

    def _bar(self) -> Bar:
        f = self._out.tolist()
        i = self._out_i.tolist()
        return Bar(i[0], self._symbol, f[1], f[2], f[3], f[4], f[5], f[6], i[7])

    def _reject(
        self, state: np.ndarray, status: int, where: str, ts: int, price: float, size: float
    ) -> DataError:
        self._rejected += 1
        if status == kb.ERR_TS_BACKWARDS:
            last = int(state.view(np.int64)[kb.S_LAST_TS])
            why = f"ts {ts} is before the previous trade's ts {last}; feed trades in ts order"
        elif status == kb.ERR_NOT_FINITE:
            why = f"price {price!r} and size {size!r} must be finite"
        else:
            what = "price and size" if self._by == "dollar" else "size"
            why = f"{what} must not be negative (price {price!r}, size {size!r})"
        return DataError(f"{self._symbol} trade{where} rejected, state unchanged: {why}")

    def update(self, ts_ns: int, price: float, size: float) -> Bar | None:
        """Feed one trade (``ts_ns`` in int nanoseconds, UTC); return the bar it completes.

        Returns ``None`` while no bar is completed.

        Raises
        ------
        DataError
            When the trade is rejected (``ts`` before the previous trade's, a non-finite
            price or size, a negative size, or a negative price for dollar bars); the state
            is then unchanged and :attr:`rejected` counts it.
        """
        status = kb.bar_update_nb(self._state, self._out, ts_ns, price, size)
        if status == kb.BAR_NONE:
            return None
        if status == kb.BAR_DONE:
            return self._bar()
        raise self._reject(self._state, status, "", ts_ns, price, size)

    def update_many(
        self,
        ts: np.ndarray | pl.Series | Sequence[int],
        price: np.ndarray | pl.Series | Sequence[float],
        size: np.ndarray | pl.Series | Sequence[float],
    ) -> pl.DataFrame:
        """Feed trades in order; return the bars they complete as a ``"bars"`` frame.

        ``ts`` is int nanoseconds (UTC), numpy ``datetime64`` or a tz-aware Datetime series.
        The batch continues from the state left by earlier calls, and :meth:`update` can
        continue from it.

        Raises
        ------
        DataError
            When the arrays differ in length or a trade is rejected (as in :meth:`update`):
            the whole batch is then rejected and the state is unchanged.
        """
        ts_a = _ts_array(ts)
        price_a = np.ascontiguousarray(
            price.to_numpy() if isinstance(price, pl.Series) else price, dtype=np.float64
        )
        size_a = np.ascontiguousarray(
            size.to_numpy() if isinstance(size, pl.Series) else size, dtype=np.float64
        )
        n = ts_a.shape[0]
        if price_a.shape != (n,) or size_a.shape != (n,):
            msg = (
                f"ts, price and size must be 1-d arrays of one length; got shapes "
                f"{ts_a.shape}, {price_a.shape}, {size_a.shape}"
            )
            raise DataError(msg)
        state = self._state.copy()
        cols = [np.empty(n, np.int64), *(np.empty(n) for _ in range(6)), np.empty(n, np.int64)]
        n_bars, status, row = kb.bar_update_many_nb(state, ts_a, price_a, size_a, *cols)
        if status < 0:
            t, p, s = int(ts_a[row]), float(price_a[row]), float(size_a[row])
            raise self._reject(state, status, f" at row {row} of the batch", t, p, s)
        self._state[:] = state
        return _frame(self._symbol, [c[:n_bars] for c in cols])

    def flush(self) -> Bar | None:
        """Close and return the open (partial) bar, or ``None`` when no bar is open.

        Meant for the end of a stream or session. The volume/dollar clock and the last
        ``ts`` are kept, so later trades start a new bar on the same clock (for time bars, a
        later trade of the flushed bucket opens a second bar with the same ``ts``).
        """
        if kb.bar_flush_nb(self._state, self._out) == kb.BAR_DONE:
            return self._bar()
        return None

    def reset(self) -> None:
        """Forget all trades (open bar, clock, last ``ts``, :attr:`rejected`); keep the config."""
        kb.bar_reset_nb(self._state)
        self._rejected = 0
