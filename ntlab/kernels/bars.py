"""Numba kernels that aggregate trades into time, tick, volume and dollar bars.

One update rule, :func:`bar_update_nb`, serves both the live engine (one trade per call) and
history (:func:`bar_update_many_nb` and :func:`aggregate_trades_nb` loop the same rule over
arrays), so streaming and batch bars are identical by construction. The Polars implementation
in :mod:`ntlab.data.bars` follows the same conventions and the same floating-point operation
order, and the tests check that the two agree bit for bit.

Conventions
-----------
Trades of one symbol arrive in order (``ts`` non-decreasing; ties allowed). Each trade gets a
bar *key*, and a bar is a maximal run of trades with the same key:

* ``KIND_TIME`` (``every`` = ``E`` nanoseconds): key = ``floor(ts / E) * E``, the start of the
  trade's bucket on the epoch grid (floor division, also before 1970). Empty buckets give no
  bar. The bar's ``ts`` is the bucket start. A time bar is complete once a trade of a later
  bucket arrives (or on flush): only then is it known that no more trades join it.
* ``KIND_TICK`` (``every`` = ``N`` trades): key = ``i // N`` for the ``i``-th trade (from 0);
  the bar is complete as soon as it holds ``N`` trades.
* ``KIND_VOLUME`` / ``KIND_DOLLAR`` (``every`` = ``V`` > 0): a clock ``C`` sums each trade's
  amount (``size``, or notional ``price * size``) sequentially, starting from ``0.0``. A trade
  whose clock *before* it is ``C`` has key ``floor(C / V)``: bar ``k`` holds the trades that
  start while the clock is in ``[k V, (k + 1) V)``. The trade that crosses a threshold stays in
  its bar, its overshoot counts toward the next bars, so the bars stay aligned with the global
  clock; a trade larger than ``V`` skips keys (no empty bars are made). The bar is complete as
  soon as the clock after a trade reaches the next threshold (that is exactly when the next
  trade gets a new key). The bar's ``ts`` is its first trade's ``ts``.

Bar values: ``open``/``close`` the first/last price, ``high``/``low`` the extremes,
``volume`` = sum of sizes, ``notional`` = sum of ``price * size``, ``trades`` = count. Sums are
sequential in trade order, starting from the bar's first value (``v = x0; v += x1; ...``).

Rejected trades (status code, state untouched): ``ts`` before the previous trade's
(:data:`ERR_TS_BACKWARDS`), a non-finite price or size (:data:`ERR_NOT_FINITE`), a negative
size, or a negative price for dollar bars (:data:`ERR_NEGATIVE`).

State
-----
The state of one stream is a ``float64`` array of :data:`STATE_SIZE` slots; the integer slots
(kind, ``every`` for time/tick, timestamps, counts, flags) are read through
``state.view(np.int64)``. A completed bar is written to ``out``, a ``float64`` array of
:data:`OUT_SIZE` slots laid out as ``ts, open, high, low, close, volume, notional, trades``
where ``ts`` and ``trades`` are int64 slots (read them through ``out.view(np.int64)``).

Examples
--------
>>> import numpy as np
>>> state = new_bar_state_nb(KIND_TICK, 2)
>>> out = np.zeros(OUT_SIZE)
>>> [bar_update_nb(state, out, t, p, 1.0) for t, p in [(1, 10.0), (2, 12.0), (3, 11.0)]]
[0, 1, 0]
>>> int(out.view(np.int64)[O_TS]), float(out[O_OPEN]), float(out[O_CLOSE])
(1, 10.0, 12.0)
>>> bar_flush_nb(state, out), int(out.view(np.int64)[O_TRADES])
(1, 1)
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "BAR_DONE",
    "BAR_NONE",
    "ERR_NEGATIVE",
    "ERR_NOT_FINITE",
    "ERR_TS_BACKWARDS",
    "KIND_DOLLAR",
    "KIND_TICK",
    "KIND_TIME",
    "KIND_VOLUME",
    "OUT_SIZE",
    "O_CLOSE",
    "O_HIGH",
    "O_LOW",
    "O_NOTIONAL",
    "O_OPEN",
    "O_TRADES",
    "O_TS",
    "O_VOLUME",
    "STATE_SIZE",
    "aggregate_trades_nb",
    "bar_flush_nb",
    "bar_reset_nb",
    "bar_update_many_nb",
    "bar_update_nb",
    "new_bar_state_nb",
]

# Bar kinds.
KIND_TIME = 0
KIND_TICK = 1
KIND_VOLUME = 2
KIND_DOLLAR = 3

# Status codes returned by the update kernels.
BAR_NONE = 0
"""The trade was added; no bar was completed."""
BAR_DONE = 1
"""A bar was completed and written to ``out``."""
ERR_TS_BACKWARDS = -1
"""Rejected: the trade's ``ts`` is before the previous trade's."""
ERR_NOT_FINITE = -2
"""Rejected: price or size is NaN or infinite."""
ERR_NEGATIVE = -3
"""Rejected: negative size (any kind) or negative price (dollar bars)."""

# State slots (i: int64 through the int view, f: float64).
S_KIND = 0  # i: KIND_*
S_EVERY_I = 1  # i: bucket width in ns (time) or trades per bar (tick)
S_EVERY_F = 2  # f: clock step V (volume, dollar)
S_HAS_LAST = 3  # i: 1 once a trade was accepted
S_LAST_TS = 4  # i: ts of the last accepted trade
S_CLOCK = 5  # f: cumulative size / notional of all accepted trades (volume, dollar)
S_ACTIVE = 6  # i: 1 while a bar is open
S_TS = 7  # i: bar ts (bucket start for time bars, first trade's ts otherwise)
S_OPEN = 8  # f
S_HIGH = 9  # f
S_LOW = 10  # f
S_CLOSE = 11  # f
S_VOLUME = 12  # f
S_NOTIONAL = 13  # f
S_TRADES = 14  # i
S_KEY = 15  # f: floor(S_CLOCK / step), the key of the next trade (volume, dollar)
STATE_SIZE = 16

# Output slots of one bar (ts and trades are int64 slots).
O_TS = 0
O_OPEN = 1
O_HIGH = 2
O_LOW = 3
O_CLOSE = 4
O_VOLUME = 5
O_NOTIONAL = 6
O_TRADES = 7
OUT_SIZE = 8


@njit(cache=True, nogil=True)
def new_bar_state_nb(kind_code: int, every: float) -> np.ndarray:
    """Return a fresh state for bars of ``kind_code`` every ``every``.

    ``every`` is nanoseconds (time), trades (tick), size (volume) or notional (dollar). It is
    not checked here: the API validates it (a positive integer for time and tick, a positive
    finite number for volume and dollar).
    """
    state = np.zeros(STATE_SIZE, dtype=np.float64)
    si = state.view(np.int64)
    si[S_KIND] = kind_code
    if kind_code == KIND_TIME or kind_code == KIND_TICK:
        si[S_EVERY_I] = np.int64(every)
    else:
        state[S_EVERY_F] = np.float64(every)
    return state


@njit(cache=True, nogil=True)
def bar_reset_nb(state: np.ndarray) -> None:
    """Forget every trade (open bar, clock, last ``ts``), keeping the kind and ``every``."""
    for i in range(S_HAS_LAST, STATE_SIZE):
        state[i] = 0.0


# The update rule works on tuples of scalars, not on the state array: a step function over
# values is inlined into the loops and keeps the state in registers (a helper taking arrays
# costs reference counting on every call, about 25x slower here). Tuple layouts:
#   cfg = (kind, every_i, every_f)
#   st  = (has_last, last_ts, clock, key, active, ts, open, high, low, close, volume,
#          notional, trades)
#   bar = (ts, open, high, low, close, volume, notional, trades)


@njit(cache=True, nogil=True)
def _load_nb(state: np.ndarray) -> tuple:
    si = state.view(np.int64)
    cfg = (si[S_KIND], si[S_EVERY_I], state[S_EVERY_F])
    st = (
        si[S_HAS_LAST],
        si[S_LAST_TS],
        state[S_CLOCK],
        state[S_KEY],
        si[S_ACTIVE],
        si[S_TS],
        state[S_OPEN],
        state[S_HIGH],
        state[S_LOW],
        state[S_CLOSE],
        state[S_VOLUME],
        state[S_NOTIONAL],
        si[S_TRADES],
    )
    return cfg, st


@njit(cache=True, nogil=True)
def _store_nb(state: np.ndarray, st: tuple) -> None:
    si = state.view(np.int64)
    si[S_HAS_LAST] = st[0]
    si[S_LAST_TS] = st[1]
    state[S_CLOCK] = st[2]
    state[S_KEY] = st[3]
    si[S_ACTIVE] = st[4]
    si[S_TS] = st[5]
    state[S_OPEN] = st[6]
    state[S_HIGH] = st[7]
    state[S_LOW] = st[8]
    state[S_CLOSE] = st[9]
    state[S_VOLUME] = st[10]
    state[S_NOTIONAL] = st[11]
    si[S_TRADES] = st[12]


@njit(cache=True, nogil=True)
def _write_bar_nb(out: np.ndarray, bar: tuple) -> None:
    oi = out.view(np.int64)
    oi[O_TS] = bar[0]
    out[O_OPEN] = bar[1]
    out[O_HIGH] = bar[2]
    out[O_LOW] = bar[3]
    out[O_CLOSE] = bar[4]
    out[O_VOLUME] = bar[5]
    out[O_NOTIONAL] = bar[6]
    oi[O_TRADES] = bar[7]


@njit(cache=True, nogil=True)
def _step_nb(cfg: tuple, st: tuple, ts: int, price: float, size: float) -> tuple:
    """The update rule: return ``(new st, status, completed bar)`` for one trade.

    The bar is meaningful only when status is ``BAR_DONE``; a rejected trade returns ``st``
    unchanged.
    """
    kind, every_i, every_f = cfg
    has_last, last_ts, clock, key, active, b_ts, o, h, lo, c, v, nt, n = st
    bar = (b_ts, o, h, lo, c, v, nt, n)
    if not (np.isfinite(price) and np.isfinite(size)):
        return st, ERR_NOT_FINITE, bar
    if size < 0.0 or (kind == KIND_DOLLAR and price < 0.0):
        return st, ERR_NEGATIVE, bar
    if has_last == 1 and ts < last_ts:
        return st, ERR_TS_BACKWARDS, bar
    status = BAR_NONE
    new_ts = ts
    if kind == KIND_TIME:
        if active == 1 and b_ts <= ts and ts - b_ts < every_i:
            new_ts = b_ts  # same bucket: no division needed
        else:
            new_ts = (ts // every_i) * every_i
            if active == 1:
                status = BAR_DONE  # the previous bucket's bar is complete
                active = 0
    notional = price * size
    if active == 0:
        active = 1
        b_ts = new_ts
        o = price
        h = price
        lo = price
        v = size
        nt = notional
        n = 1
    else:
        if price > h:
            h = price
        if price < lo:
            lo = price
        v += size
        nt += notional
        n += 1
    c = price
    if kind == KIND_TICK:
        if n >= every_i:
            status = BAR_DONE
            bar = (b_ts, o, h, lo, c, v, nt, n)
            active = 0
    elif kind != KIND_TIME:
        # key is floor(clock / step) of the clock before this trade, i.e. this trade's key.
        clock = clock + (size if kind == KIND_VOLUME else notional)
        key_after = np.floor(clock / every_f)
        if key_after > key:
            key = key_after
            status = BAR_DONE
            bar = (b_ts, o, h, lo, c, v, nt, n)
            active = 0
    return (1, ts, clock, key, active, b_ts, o, h, lo, c, v, nt, n), status, bar


@njit(cache=True, nogil=True)
def bar_update_nb(state: np.ndarray, out: np.ndarray, ts: int, price: float, size: float) -> int:
    """Feed one trade; return :data:`BAR_DONE` when a bar was completed and written to ``out``.

    Returns :data:`BAR_NONE` when the trade only extended (or opened) a bar, and a negative
    ``ERR_*`` code when the trade was rejected (the state is then unchanged). At most one bar
    is completed per trade: for time bars the previous bucket's bar (completed by this trade,
    which opens the next bar), for tick/volume/dollar bars the bar this trade completes.
    """
    cfg, st = _load_nb(state)
    st, status, bar = _step_nb(cfg, st, ts, price, size)
    if status >= 0:
        _store_nb(state, st)
    if status == BAR_DONE:
        _write_bar_nb(out, bar)
    return status


@njit(cache=True, nogil=True)
def bar_flush_nb(state: np.ndarray, out: np.ndarray) -> int:
    """Write the open (partial) bar to ``out`` and close it; return 1, or 0 if none was open.

    The clock and the last ``ts`` are kept: later trades open a new bar (for time bars, a
    trade of the flushed bucket opens a second bar with the same ``ts``).
    """
    si = state.view(np.int64)
    if si[S_ACTIVE] == 0:
        return BAR_NONE
    _cfg, st = _load_nb(state)
    _write_bar_nb(out, st[5:])
    si[S_ACTIVE] = 0
    return BAR_DONE


@njit(cache=True, nogil=True)
def bar_update_many_nb(
    state: np.ndarray,
    ts: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    out_ts: np.ndarray,
    out_open: np.ndarray,
    out_high: np.ndarray,
    out_low: np.ndarray,
    out_close: np.ndarray,
    out_volume: np.ndarray,
    out_notional: np.ndarray,
    out_trades: np.ndarray,
) -> tuple[int, int, int]:
    """Feed trades in order by the rule of :func:`bar_update_nb`; write completed bars to ``out_*``.

    The ``out_*`` arrays need room for ``len(ts)`` bars. Returns ``(n_bars, status, row)``:
    the number of bars written, then ``BAR_NONE`` and ``-1`` when every trade was accepted,
    or the ``ERR_*`` code and the index of the first rejected trade, where feeding stopped
    (the trades before it are in the state).
    """
    cfg, st = _load_nb(state)
    n_bars = 0
    for i in range(ts.shape[0]):
        st, status, bar = _step_nb(cfg, st, ts[i], price[i], size[i])
        if status == BAR_DONE:
            out_ts[n_bars] = bar[0]
            out_open[n_bars] = bar[1]
            out_high[n_bars] = bar[2]
            out_low[n_bars] = bar[3]
            out_close[n_bars] = bar[4]
            out_volume[n_bars] = bar[5]
            out_notional[n_bars] = bar[6]
            out_trades[n_bars] = bar[7]
            n_bars += 1
        elif status < 0:
            _store_nb(state, st)
            return n_bars, status, i
    _store_nb(state, st)
    return n_bars, BAR_NONE, -1


@njit(cache=True, nogil=True)
def aggregate_trades_nb(
    ts: np.ndarray, price: np.ndarray, size: np.ndarray, kind_code: int, every: float
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    int,
    int,
]:
    """Aggregate one symbol's trades into bars, the last partial bar included.

    Returns ``(ts, open, high, low, close, volume, notional, trades, status, row)``: int64
    bar timestamps, float64 OHLC, volume and notional, int64 trade counts, then ``BAR_NONE``
    and ``-1``, or the ``ERR_*`` code and index of the first rejected trade (the bars then
    cover the trades before it, the partial one included).
    """
    n = ts.shape[0]
    state = new_bar_state_nb(kind_code, every)
    b_ts = np.empty(n, dtype=np.int64)
    b_open = np.empty(n, dtype=np.float64)
    b_high = np.empty(n, dtype=np.float64)
    b_low = np.empty(n, dtype=np.float64)
    b_close = np.empty(n, dtype=np.float64)
    b_volume = np.empty(n, dtype=np.float64)
    b_notional = np.empty(n, dtype=np.float64)
    b_trades = np.empty(n, dtype=np.int64)
    n_bars, status, row = bar_update_many_nb(
        state, ts, price, size, b_ts, b_open, b_high, b_low, b_close, b_volume, b_notional, b_trades
    )
    out = np.zeros(OUT_SIZE, dtype=np.float64)
    if bar_flush_nb(state, out) == BAR_DONE:
        oi = out.view(np.int64)
        b_ts[n_bars] = oi[O_TS]
        b_open[n_bars] = out[O_OPEN]
        b_high[n_bars] = out[O_HIGH]
        b_low[n_bars] = out[O_LOW]
        b_close[n_bars] = out[O_CLOSE]
        b_volume[n_bars] = out[O_VOLUME]
        b_notional[n_bars] = out[O_NOTIONAL]
        b_trades[n_bars] = oi[O_TRADES]
        n_bars += 1
    return (
        b_ts[:n_bars],
        b_open[:n_bars],
        b_high[:n_bars],
        b_low[:n_bars],
        b_close[:n_bars],
        b_volume[:n_bars],
        b_notional[:n_bars],
        b_trades[:n_bars],
        status,
        row,
    )
