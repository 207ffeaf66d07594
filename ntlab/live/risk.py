"""Pre-trade risk limits of live trading: a compiled filter between the strategy and the venue.

The live engine calls :func:`check_requests_nb` after the strategy has written its requests and
before :func:`ntlab.execution.broker.end_bar_nb` applies them. A new order that breaks a limit is
logged as a ``rejected`` event with its ``risk:`` reason (:data:`ntlab.execution.REJECT_REASONS`)
and removed from the requests; cancels always pass. Every call also evaluates the loss stops on
the equity ``cash + sum(position * mark)``, and halts trading on a breach.

States: ``ACTIVE`` (the limits apply), ``REDUCING`` (only orders that reduce their asset's
position without flipping it), ``HALTED`` (only cancels), until :meth:`RiskState.set_state` says.
Position and gross limits count pending orders: the open ones plus those passed earlier in the
same call, less those cancelled earlier in it (one-cancels-other siblings and bracket children
count in full: conservative). They reject only orders that increase the exposure. Malformed
orders (bad asset, quantity, type or prices) are left to the venue, which rejects them.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields

import numpy as np
from numba import njit

from ntlab.exceptions import ConfigError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.kernels._common import _KW

__all__ = ["RiskLimits", "RiskState", "check_requests_nb", "kill_switch_nb", "new_state", "set_state_nb"]

# RiskLimits.params(): float64[L_WIDTH] in the order of the fields; 0 turns a limit off
L_MAX_ORDER_QTY = 0
L_MAX_ORDER_NOTIONAL = 1
L_MAX_POSITION = 2
L_MAX_GROSS = 3
L_PRICE_BAND_BPS = 4
L_MAX_RATE = 5  # orders per second
L_DUP_WINDOW = 6  # ns
L_MAX_DAILY_LOSS = 7
L_MAX_DRAWDOWN = 8  # fraction of peak equity
L_WIDTH = 9

ACTIVE, REDUCING, HALTED = 0, 1, 2
STATES = ("active", "reducing", "halted")

# Risk state: float64[S_HEADER + ring + DUP_SLOTS * F_WIDTH + 2 * n_assets] (new_state). Times
# in it are ns since S_DAY, exact in float64; a new day moves them to its origin.
S_STATE = 0  # ACTIVE, REDUCING or HALTED
S_CAUSE = 1  # the reason new orders get while HALTED
S_DAY = 2  # UTC midnight (ns) of the day of the last call (exact in float64); NaN before
S_DAY_START = 3  # equity at the first call of the day
S_PEAK = 4  # highest equity seen
S_EQUITY = 5  # equity at the last call (NaN while no loss stop is on)
S_RING_SIZE = 6  # slots of the rate-limit ring: max(RING_MIN, max_orders_per_second)
S_RING_POS = 7  # the ring's oldest slot, overwritten next
S_DUP_POS = 8  # the fingerprint slot overwritten next
S_HEADER = 9  # then the ring (times of the last passed orders), the fingerprints, then
# scratch: pending (buys, sells) per asset, rebuilt by each call
RING_MIN = 64  # a swap of params may raise max_orders_per_second up to the ring's size
DUP_SLOTS = 32  # the duplicate guard compares with the last 32 passed orders
F_TIME, F_ASSET, F_QTY, F_TYPE, F_LIMIT, F_STOP = range(6)
F_WIDTH = 6

# Counters: int64[N_WIDTH]
N_CHECKED, N_PASSED, N_REJECTED = 0, 1, 2  # new orders
N_BY_REASON = 3  # rejections by reason: N_BY_REASON + reason - R_RISK_ORDER_SIZE
N_WIDTH = N_BY_REASON + o.R_RISK_NO_PRICE - o.R_RISK_ORDER_SIZE + 1

NS_DAY = 86_400_000_000_000
NS_SECOND = 1e9
_MAX_RATE = 1_000_000


@dataclass(frozen=True, kw_only=True)
class RiskLimits:
    """Pre-trade limits; each is off when None (or 0).

    Parameters
    ----------
    max_order_qty, max_order_notional : float
        Largest ``|qty|`` and ``|qty| * price`` of one order (price: the limit of limit and
        stop-limit orders, the stop of stop orders, the last price of market orders).
    max_position : float
        Largest ``|position + open orders of the order's side + qty|`` of an asset.
    max_gross_notional : float
        Largest sum over assets of ``max(|position + buys|, |position + sells|) * last price``
        after the order (buys, sells: the open orders of each side).
    price_band_bps : float
        Limit and stop prices further than this from the last price (``ctx.mark``) are rejected.
    max_orders_per_second : int
        Most orders passed in any second of the context's clock (rolling window).
    duplicate_window_ns : int
        An order with the asset, quantity, type, limit and stop of one passed at most this
        many ns before (clock time) is rejected.
    max_daily_loss : float
        Trading halts when equity is more than this below its value at the day's first call
        (UTC days of the clock).
    max_drawdown : float
        Trading halts when equity is more than this fraction below its peak, in (0, 1).
    """

    max_order_qty: float | None = None
    max_order_notional: float | None = None
    max_position: float | None = None
    max_gross_notional: float | None = None
    price_band_bps: float | None = None
    max_orders_per_second: int | None = None
    duplicate_window_ns: int | None = None
    max_daily_loss: float | None = None
    max_drawdown: float | None = None

    def __post_init__(self) -> None:
        for name, value in zip([f.name for f in fields(self)], astuple(self), strict=True):
            if value is None:
                continue
            if name in ("max_orders_per_second", "duplicate_window_ns"):
                if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
                    msg = f"{name}={value!r} must be an int >= 0 (None or 0: no limit)"
                    raise ConfigError(msg)
            elif isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value >= 0):
                msg = f"{name}={value!r} must be a finite number >= 0 (None or 0: no limit)"
                raise ConfigError(msg)
        if (self.max_orders_per_second or 0) > _MAX_RATE:
            msg = f"max_orders_per_second={self.max_orders_per_second!r} is above {_MAX_RATE:,}: give a lower rate, or None for no limit"
            raise ConfigError(msg)
        if (self.max_drawdown or 0) >= 1:
            msg = f"max_drawdown={self.max_drawdown!r} is a fraction of peak equity: give a value in (0, 1), or None for no limit"
            raise ConfigError(msg)

    def params(self) -> np.ndarray:
        """The limits as the ``float64[L_WIDTH]`` array the compiled filter reads (0: off)."""
        return np.array([float(v or 0.0) for v in astuple(self)])


def new_state(limits: RiskLimits, n_assets: int) -> np.ndarray:
    """A fresh ``ACTIVE`` risk state for ``limits`` and a context of ``n_assets`` assets."""
    if not isinstance(n_assets, int | np.integer) or isinstance(n_assets, bool) or n_assets < 1:
        msg = f"n_assets={n_assets!r} must be an int >= 1 (the context's number of assets)"
        raise ConfigError(msg)
    ring = max(RING_MIN, limits.max_orders_per_second or 0)
    fp = S_HEADER + ring
    state = np.zeros(fp + DUP_SLOTS * F_WIDTH + 2 * int(n_assets))
    state[[S_DAY, S_DAY_START, S_PEAK, S_EQUITY]] = np.nan
    state[S_RING_SIZE] = ring
    state[S_HEADER:fp] = -np.inf  # empty slots: times long past
    state[fp + F_TIME : fp + DUP_SLOTS * F_WIDTH : F_WIDTH] = -np.inf
    return state


# ---------------------------------------------------------------------------------------------
# Compiled code. Calls that take arrays cost ~10 ns of reference counting per array: the hot
# paths are written out in place, helpers take scalars.


@njit(**_KW)
def set_state_nb(state: np.ndarray, mode: int) -> None:
    """Set the trading state (``ACTIVE``, ``REDUCING`` or ``HALTED``)."""
    state[S_STATE] = mode
    state[S_CAUSE] = o.R_RISK_HALTED if mode == HALTED else o.R_NONE


@njit(**_KW)
def kill_switch_nb(ctx: b.Ctx, state: np.ndarray) -> int:
    """Cancel every open order (children too) and halt trading; returns the orders cancelled.

    Logs one ``cancelled`` event per open order: call it with that room in the event log."""
    n = 0
    for i in range(ctx.n_orders[0]):
        n += ctx.orders[i, o.O_KIND] != b.DEAD
    for i in range(ctx.n_orders[0]):
        if ctx.orders[i, o.O_KIND] != b.DEAD:  # children die with their parent (R_PARENT)
            b._cancel_row_nb(ctx, i, o.R_RISK_HALTED)
    b._compact_nb(ctx)
    set_state_nb(state, HALTED)
    return n


@njit(**_KW)
def _new_day_nb(state: np.ndarray, ts: int) -> None:
    """Make the UTC day of ``ts`` current: the stored times move to its origin."""
    day = (ts // NS_DAY) * NS_DAY
    if not np.isnan(state[S_DAY]):
        shift = day - state[S_DAY]
        ring = np.int64(state[S_RING_SIZE])
        for i in range(S_HEADER, S_HEADER + ring):
            state[i] -= shift
        for i in range(S_HEADER + ring + F_TIME, S_HEADER + ring + DUP_SLOTS * F_WIDTH, F_WIDTH):
            state[i] -= shift
    state[S_DAY] = day
    state[S_DAY_START] = np.nan


@njit(**_KW)
def _stops_nb(cash: float, position: np.ndarray, mark: np.ndarray, params: np.ndarray, state: np.ndarray) -> None:
    """Follow the day's start equity and the peak; halt on a breach of the loss stops."""
    loss, drawdown = params[L_MAX_DAILY_LOSS], params[L_MAX_DRAWDOWN]
    equity = cash
    for a in range(position.shape[0]):
        if position[a] != 0.0:
            equity += position[a] * mark[a]
    if not np.isfinite(equity):  # a position without a price: nothing to compare
        return
    state[S_EQUITY] = equity
    if np.isnan(state[S_DAY_START]):
        state[S_DAY_START] = equity
    if not equity <= state[S_PEAK]:
        state[S_PEAK] = equity
    peak = state[S_PEAK]
    if state[S_STATE] != HALTED:
        if loss > 0.0 and state[S_DAY_START] - equity > loss:
            state[S_STATE] = HALTED
            state[S_CAUSE] = o.R_RISK_LOSS
        elif drawdown > 0.0 and peak > 0.0 and peak - equity > drawdown * peak:
            state[S_STATE] = HALTED
            state[S_CAUSE] = o.R_RISK_DRAWDOWN


@njit(**_KW)
def _valid_nb(n_assets: int, a: float, qty: float, typ: float, limit: float, stop: float) -> bool:
    """Whether the order passes the venue's checks of asset, quantity, type and prices."""
    if not (0.0 <= a < n_assets and a == np.floor(a) and np.isfinite(qty) and qty != 0.0):
        return False
    if typ != o.MARKET and typ != o.LIMIT and typ != o.STOP and typ != o.STOP_LIMIT:
        return False
    limit_ok = 0.0 < limit < np.inf or not (typ == o.LIMIT or typ == o.STOP_LIMIT)
    return limit_ok and (0.0 < stop < np.inf or not (typ == o.STOP or typ == o.STOP_LIMIT))


@njit(**_KW)
def _term_nb(position: float, buys: float, sells: float, mark: float) -> float:
    """An asset's share of the gross notional: its worst-side exposure at the last price."""
    return max(abs(position + buys), abs(position + sells)) * abs(mark) if np.isfinite(mark) else 0.0


@njit(**_KW)
def _count_nb(position: np.ndarray, mark: np.ndarray, state: np.ndarray, pend: int, a: int, qty: float, sign: float,
              gross: float) -> float:  # fmt: skip
    """Add (``sign`` 1) or remove (-1) an order of ``qty`` to or from the pending orders of asset
    ``a``; returns the updated gross notional."""
    k = pend + 2 * a
    old = _term_nb(position[a], state[k], state[k + 1], mark[a])
    state[k + (0 if qty > 0.0 else 1)] += sign * qty
    return gross - old + _term_nb(position[a], state[k], state[k + 1], mark[a])


@njit(**_KW)
def _pending_nb(ctx: b.Ctx, state: np.ndarray, pend: int) -> float:
    """Pending buys and sells of each asset from the open orders; returns the gross notional."""
    orders, position, mark = ctx.orders, ctx.position, ctx.mark
    state[pend : pend + 2 * position.shape[0]] = 0.0
    for i in range(ctx.n_orders[0]):
        if orders[i, o.O_KIND] != b.DEAD:
            state[pend + 2 * np.int64(orders[i, o.O_ASSET]) + (0 if orders[i, o.O_QTY] > 0.0 else 1)] += orders[i, o.O_QTY]
    gross = 0.0
    for a in range(position.shape[0]):
        gross += _term_nb(position[a], state[pend + 2 * a], state[pend + 2 * a + 1], mark[a])
    return gross


@njit(**_KW)
def _uncount_nb(ctx: b.Ctx, state: np.ndarray, pend: int, order_id: float, k: int, gross: float) -> float:
    """Take the order a cancel request names (open, or passed earlier in this call) out of the
    pending orders, unless an earlier cancel did. ``k``: the requests kept so far."""
    rq, orders, position, mark = ctx.requests, ctx.orders, ctx.position, ctx.mark
    for r in range(k):
        if rq[r, o.O_ID] == order_id and rq[r, o.O_KIND] == o.RQ_CANCEL:
            return gross
    for i in range(ctx.n_orders[0]):
        if orders[i, o.O_ID] == order_id and orders[i, o.O_KIND] != b.DEAD:
            return _count_nb(position, mark, state, pend, np.int64(orders[i, o.O_ASSET]), orders[i, o.O_QTY], -1.0, gross)
    for r in range(k):
        a, qty = rq[r, o.O_ASSET], rq[r, o.O_QTY]
        if rq[r, o.O_ID] == order_id and _valid_nb(position.shape[0], a, qty, rq[r, o.O_TYPE], rq[r, o.O_LIMIT], rq[r, o.O_STOP]):
            return _count_nb(position, mark, state, pend, np.int64(a), qty, -1.0, gross)
    return gross


@njit(**_KW)
def _same_nb(x: float, y: float) -> bool:
    return x == y or (np.isnan(x) and np.isnan(y))


@njit(**_KW)
def _filter_nb(ctx: b.Ctx, params: np.ndarray, state: np.ndarray, counters: np.ndarray, now: float) -> int:
    """Check the new orders in turn, each against the state the ones before left; compact."""
    rq, n, position, mark = ctx.requests, ctx.n_requests[0], ctx.position, ctx.mark
    ring, mode = np.int64(state[S_RING_SIZE]), state[S_STATE]
    fp = S_HEADER + ring
    pend = fp + DUP_SLOTS * F_WIDTH
    max_qty, notional, max_pos = params[L_MAX_ORDER_QTY], params[L_MAX_ORDER_NOTIONAL], params[L_MAX_POSITION]
    max_gross, band, rate, window = params[L_MAX_GROSS], params[L_PRICE_BAND_BPS], params[L_MAX_RATE], params[L_DUP_WINDOW]
    book = max_pos > 0.0 or max_gross > 0.0 or mode == REDUCING
    gross = _pending_nb(ctx, state, pend) if book else 0.0
    k, rejected = 0, 0
    for r in range(n):
        a, qty, typ, limit, stop = rq[r, o.O_ASSET], rq[r, o.O_QTY], rq[r, o.O_TYPE], rq[r, o.O_LIMIT], rq[r, o.O_STOP]
        if rq[r, o.O_KIND] == o.RQ_CANCEL:
            if book:
                gross = _uncount_nb(ctx, state, pend, rq[r, o.O_ID], k, gross)
        else:
            counters[N_CHECKED] += 1
            valid = _valid_nb(position.shape[0], a, qty, typ, limit, stop)
            reason = o.R_NONE
            if mode == HALTED:
                reason = np.int64(state[S_CAUSE])
            elif valid:
                ai = np.int64(a)
                q, m = position[ai], mark[ai]
                before = q + state[pend + 2 * ai + (0 if qty > 0.0 else 1)]
                if mode == REDUCING and (q * qty >= 0.0 or (before + qty) * q < 0.0):
                    reason = o.R_RISK_REDUCING
                elif (band > 0.0 or notional > 0.0 or max_gross > 0.0) and not 0.0 < m < np.inf:
                    reason = o.R_RISK_NO_PRICE
                elif 0.0 < max_qty < abs(qty):
                    reason = o.R_RISK_ORDER_SIZE
                elif 0.0 < notional < abs(qty) * (m if typ == o.MARKET else (stop if typ == o.STOP else limit)):
                    reason = o.R_RISK_NOTIONAL
                elif band > 0.0 and ((typ == o.LIMIT or typ == o.STOP_LIMIT) and abs(limit - m) * 1e4 > band * m
                                     or (typ == o.STOP or typ == o.STOP_LIMIT) and abs(stop - m) * 1e4 > band * m):  # fmt: skip
                    reason = o.R_RISK_PRICE_BAND
                elif 0.0 < max_pos < abs(before + qty) and abs(before + qty) > abs(before):
                    reason = o.R_RISK_POSITION
                elif max_gross > 0.0:
                    buys, sells = state[pend + 2 * ai], state[pend + 2 * ai + 1]
                    after = gross - _term_nb(q, buys, sells, m) + _term_nb(q, buys + max(qty, 0.0), sells + min(qty, 0.0), m)
                    if after > max_gross and after > gross:
                        reason = o.R_RISK_GROSS
            if reason == o.R_NONE and window > 0.0:
                for j in range(fp, pend, F_WIDTH):
                    if (state[j + F_TIME] >= now - window and state[j + F_ASSET] == a and state[j + F_QTY] == qty
                            and state[j + F_TYPE] == typ and _same_nb(state[j + F_LIMIT], limit)
                            and _same_nb(state[j + F_STOP], stop)):  # fmt: skip
                        reason = o.R_RISK_DUPLICATE
                        break
            if reason == o.R_NONE and rate > 0.0:  # the rate-th last order passed within the second?
                nth = (np.int64(state[S_RING_POS]) - min(np.int64(rate), ring)) % ring
                if state[S_HEADER + nth] > now - NS_SECOND:
                    reason = o.R_RISK_RATE
            if reason != o.R_NONE:
                if ctx.n_events[0] < ctx.events.shape[0]:  # a full log loses the event, not the check
                    b._event_nb(ctx, rq[r, o.O_ID], o.REJECTED, reason, a, qty, np.nan, 0.0, rq[r, o.O_TAG])
                counters[N_REJECTED] += 1
                counters[N_BY_REASON + reason - o.R_RISK_ORDER_SIZE] += 1
                rejected += 1
                continue
            counters[N_PASSED] += 1
            slot = np.int64(state[S_RING_POS])  # remember it: rate ring, fingerprints, pending
            state[S_HEADER + slot] = now
            state[S_RING_POS] = (slot + 1) % ring
            if window > 0.0:
                slot = np.int64(state[S_DUP_POS])
                j = fp + slot * F_WIDTH
                state[j + F_TIME], state[j + F_ASSET], state[j + F_QTY] = now, a, qty
                state[j + F_TYPE], state[j + F_LIMIT], state[j + F_STOP] = typ, limit, stop
                state[S_DUP_POS] = (slot + 1) % DUP_SLOTS
            if book and valid:
                gross = _count_nb(position, mark, state, pend, np.int64(a), qty, 1.0, gross)
        if k != r:
            for c in range(o.O_WIDTH):
                rq[k, c] = rq[r, c]
        k += 1
    ctx.n_requests[0] = k
    return rejected


@njit(**_KW)
def check_requests_nb(ctx: b.Ctx, params: np.ndarray, state: np.ndarray, counters: np.ndarray) -> int:
    """Apply the limits ``params`` to the requests of ``ctx``; returns the number rejected.

    A rejected order gets a ``rejected`` event with its risk reason and leaves the requests
    (the others keep their order). The loss stops are evaluated first, at every call.
    """
    ts, day = ctx.clock[b.C_TS], state[S_DAY]
    if np.isnan(day) or not 0 <= ts - np.int64(day) < NS_DAY:
        _new_day_nb(state, ts)
    if params[L_MAX_DAILY_LOSS] > 0.0 or params[L_MAX_DRAWDOWN] > 0.0:
        _stops_nb(ctx.cash[0], ctx.position, ctx.mark, params, state)
    if ctx.n_requests[0] == 0:
        return 0
    return _filter_nb(ctx, params, state, counters, float(ts - np.int64(state[S_DAY])))


# ---------------------------------------------------------------------------------------------
# Python


class RiskState:
    """The limits, state and counters of one live run's risk filter.

    Parameters
    ----------
    limits : RiskLimits
    n_assets : int
        Assets of the context it will check.

    Attributes
    ----------
    params, array, counts : numpy.ndarray
        What :func:`check_requests_nb` takes after ``ctx`` (limits, state, counters).
    """

    def __init__(self, limits: RiskLimits, n_assets: int) -> None:
        self.limits = limits
        self.params = limits.params()
        self.array = new_state(limits, n_assets)
        self.counts = np.zeros(N_WIDTH, dtype=np.int64)

    def check(self, ctx: b.Ctx) -> int:
        """Filter the requests of ``ctx`` (:func:`check_requests_nb`); returns the number rejected."""
        return check_requests_nb(ctx, self.params, self.array, self.counts)

    def kill(self, ctx: b.Ctx) -> int:
        """Cancel every open order of ``ctx`` and halt (:func:`kill_switch_nb`); returns the count."""
        return kill_switch_nb(ctx, self.array)

    def set_state(self, state: str | int, *, rebase: bool = False) -> None:
        """Set the trading state: ``"active"``, ``"reducing"`` or ``"halted"`` (or 0, 1, 2).

        The loss stops are evaluated again at the next check: lifting a halt while the loss or
        drawdown is still above its limit halts again, unless ``rebase=True`` makes the equity
        of the next check the day's start equity and the peak.
        """
        code = STATES.index(state) if isinstance(state, str) and state in STATES else state
        if isinstance(code, bool) or code not in (ACTIVE, REDUCING, HALTED):
            msg = f"state={state!r} must be one of {STATES} (or 0, 1, 2)"
            raise ConfigError(msg)
        set_state_nb(self.array, int(code))
        if rebase:
            self.array[[S_DAY_START, S_PEAK]] = np.nan

    @property
    def state(self) -> str:
        """The trading state's name."""
        return STATES[int(self.array[S_STATE])]

    def counters(self) -> dict[str, int]:
        """New orders checked, passed, rejected, then the rejections by reason text."""
        c = self.counts
        out = {"checked": int(c[N_CHECKED]), "passed": int(c[N_PASSED]), "rejected": int(c[N_REJECTED])}
        for i in range(N_BY_REASON, N_WIDTH):
            out[o.REJECT_REASONS[o.R_RISK_ORDER_SIZE + i - N_BY_REASON]] = int(c[i])
        return out

    def __repr__(self) -> str:
        s, c = self.array, self.counts
        cause = f" ({o.REJECT_REASONS[int(s[S_CAUSE])]})" if s[S_STATE] == HALTED else ""
        return (f"RiskState({self.state}{cause}: checked {c[N_CHECKED]}, passed {c[N_PASSED]}, rejected "
                f"{c[N_REJECTED]}; equity {s[S_EQUITY]:,.2f}, day start {s[S_DAY_START]:,.2f}, peak {s[S_PEAK]:,.2f})")  # fmt: skip
