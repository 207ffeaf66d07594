"""The compiled broker: order table, matching against bars, fills, accounting, round trips.

One :class:`Ctx` (a Numba structure of arrays) holds everything about a run: the current bar, the
positions and cash, the open orders, the strategy's requests and the logs. Strategies read it
and write requests through the verbs of :mod:`ntlab.strategy`; the engines move it on one bar
at a time in three phases, in this order, for bar ``t``:

1. :func:`begin_bar_nb`: the bar becomes current, then open orders active at ``t`` are
   matched against it (:func:`match_bar_nb`): open, high and low are known, the order in which
   the high and the low came is not.
2. the strategy runs (it has seen bar ``t`` complete, and the fills of step 1);
3. :func:`end_bar_nb`: its requests are applied (accepted / rejected, cancels), market orders
   decided now fill at this bar's close (``fill_on="close"``, no latency), and the equity row
   of ``t`` is written (positions valued at their last close, which step 1 updated).

Fill rules (``ExecutionModel`` states the parameters):

* market: at the close of the decision bar (``fill_on="close"``) or at the open of the first
  bar it is active at, plus slippage against the taker;
* limit buy at ``L``: at the open if ``open <= L`` (a gap through the limit fills at the better
  open), else at ``L`` if ``low <= L``; sells mirror it; no slippage;
* stop buy at ``S``: at the open if ``open >= S``, else at ``S`` if ``high >= S``, plus slippage;
  sells mirror it;
* stop-limit buy ``(S, L)``: triggered when ``open >= S`` (then it fills at the open if
  ``open <= L``) or when ``high >= S`` inside the bar, after which it rests as a limit order
  from the next bar (bar data cannot tell whether the low came after the high);
* partial fills: with ``volume_limit``, the fills of an asset in a bar take at most that
  fraction of its volume; the rest of an order stays open;
* one-cancels-other: an order's first fill cancels the open orders of its group; a child
  (``parent`` set) is inactive until its parent has filled completely, then active from the
  next bar; cancelling or rejecting a parent cancels its children.

Accounting: average-price positions, realised P&L on the closing part of a fill, cash paying
``qty * price + fee``. A round trip runs from flat to flat (or to a flip): its entry and exit
prices are the averages of its opening and closing fills, its P&L is realised P&L minus all its
fees (a flip's fee is split by quantity).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, types
from numba.experimental import structref

from ntlab.execution import orders as o
from ntlab.kernels._common import _KW

__all__ = ["Ctx", "arrays", "grown", "new_ctx"]

# Bar columns
OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4

# Round-trip rows
T_ASSET = 0
T_SIDE = 1
T_QTY = 2
T_ENTRY_BAR = 3
T_EXIT_BAR = 4
T_ENTRY_PRICE = 5
T_EXIT_PRICE = 6
T_FEES = 7
T_PNL = 8
T_WIDTH = 9

# The open round trip of each asset
OT_SIDE = 0  # 0: flat
OT_QTY = 1
OT_ENTRY_NOTIONAL = 2
OT_EXIT_QTY = 3
OT_EXIT_NOTIONAL = 4
OT_FEES = 5
OT_REALISED = 6
OT_ENTRY_BAR = 7
OT_WIDTH = 8

# Equity rows (one per bar)
Q_BAR = 0
Q_CASH = 1
Q_POSITION_VALUE = 2
Q_GROSS = 3
Q_EQUITY = 4
Q_TRADED = 5
Q_FEES = 6
Q_WIDTH = 7

# ctx.clock
C_TS = 0
C_BAR = 1

INACTIVE = 9.0e18  # O_ACTIVE of a child waiting for its parent
DEAD = -1.0  # O_KIND of a finished order row, removed at the end of the phase

_FIELDS = (
    "clock",  # int64[2]: time of the current bar (ns), its index
    "bar",  # float64[N, 5]: the current bar of each asset (open, high, low, close, volume); NaN: none
    "mark",  # float64[N]: last close of each asset (positions are valued at it)
    "features",  # float64[N, F]: the current row of precomputed features
    "position",  # float64[N]
    "avg_price",  # float64[N]
    "realised",  # float64[N]
    "cash",  # float64[1]
    "orders",  # float64[M, O_WIDTH]: the open orders
    "n_orders",  # int64[1]
    "requests",  # float64[R, O_WIDTH]: what the strategy asked for at this bar
    "n_requests",  # int64[1]
    "next_id",  # int64[1]
    "events",  # float64[cap, E_WIDTH]
    "n_events",  # int64[1]
    "trades",  # float64[cap, T_WIDTH]
    "n_trades",  # int64[1]
    "open_trade",  # float64[N, OT_WIDTH]
    "equity",  # float64[T, Q_WIDTH]
    "volume_left",  # float64[N]: volume the fills of this bar may still take
    "flows",  # float64[2]: notional traded and fees paid in this bar
    "params",  # float64[P_WIDTH]: the execution model
)


@structref.register
class CtxType(types.StructRef):
    """Numba type of :class:`Ctx`."""

    def preprocess_fields(self, fields: tuple) -> tuple:
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class Ctx(structref.StructRefProxy):
    """The state of a run, shared by reference between Python and compiled code.

    A Numba structure reference: compiled functions receive one pointer (a named tuple of
    its 22 arrays cost about 230 ns of reference counting per call, this costs 14), and
    Python calls into compiled code with it in about 0.5 us. Its fields are the arrays listed
    in ``_FIELDS``; from Python, :func:`arrays` gives them (attributes are compiled-side only).
    """


structref.define_proxy(Ctx, CtxType, list(_FIELDS))
_2D = ("bar", "features", "orders", "requests", "events", "trades", "open_trade", "equity")

if numba.config.DISABLE_JIT:  # the "compiled" functions run as Python: plain attributes

    class Ctx:  # type: ignore[no-redef]
        """:class:`Ctx` when Numba's JIT is disabled (coverage runs)."""

        def __init__(self, *fields: np.ndarray) -> None:
            for name, value in zip(_FIELDS, fields, strict=True):
                setattr(self, name, value)


def new_ctx(
    n_assets: int,
    n_bars: int,
    params: np.ndarray,
    *,
    cash: float,
    n_features: int = 0,
    max_open_orders: int = 256,
    max_requests: int = 256,
    capacity: int = 4096,
) -> Ctx:
    """A fresh context: flat books, ``cash`` in the account, logs with room for ``capacity`` rows."""
    return _new_ctx(
        np.zeros(2, dtype=np.int64),
        np.full((n_assets, 5), np.nan),
        np.full(n_assets, np.nan),
        np.full((n_assets, n_features), np.nan),
        np.zeros(n_assets),
        np.zeros(n_assets),
        np.zeros(n_assets),
        np.array([float(cash)]),
        np.zeros((max_open_orders, o.O_WIDTH)),
        np.zeros(1, dtype=np.int64),
        np.zeros((max_requests, o.O_WIDTH)),
        np.zeros(1, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.zeros((capacity, o.E_WIDTH)),
        np.zeros(1, dtype=np.int64),
        np.zeros((capacity, T_WIDTH)),
        np.zeros(1, dtype=np.int64),
        np.zeros((n_assets, OT_WIDTH)),
        np.empty((n_bars, Q_WIDTH)),  # every row is written by its bar (no page touched twice)
        np.zeros(n_assets),
        np.zeros(2),
        np.asarray(params, dtype=np.float64),
    )


if numba.config.DISABLE_JIT:
    _new_ctx = Ctx
else:
    _F2, _I1 = types.float64[:, ::1], types.int64[::1]
    _CTX_TYPE = CtxType([(name, _I1 if name.startswith("n_") or name in ("clock", "next_id") else _F2 if name in _2D else types.float64[::1])
                         for name in _FIELDS])  # fmt: skip

    @njit(cache=True)
    def _new_ctx(clock, bar, mark, features, position, avg_price, realised, cash, orders, n_orders, requests, n_requests,
                 next_id, events, n_events, trades, n_trades, open_trade, equity, volume_left, flows, params):  # fmt: skip
        """Build the structure in compiled code: cached, so a process does not compile a constructor."""
        c = structref.new(_CTX_TYPE)
        c.clock, c.bar, c.mark, c.features, c.position, c.avg_price = clock, bar, mark, features, position, avg_price
        c.realised, c.cash, c.orders, c.n_orders, c.requests, c.n_requests = realised, cash, orders, n_orders, requests, n_requests
        c.next_id, c.events, c.n_events, c.trades, c.n_trades, c.open_trade = next_id, events, n_events, trades, n_trades, open_trade
        c.equity, c.volume_left, c.flows, c.params = equity, volume_left, flows, params
        return c


@njit(**_KW)
def _fields_nb(c: Ctx) -> tuple:
    return (c.clock, c.bar, c.mark, c.features, c.position, c.avg_price, c.realised, c.cash, c.orders, c.n_orders,
            c.requests, c.n_requests, c.next_id, c.events, c.n_events, c.trades, c.n_trades, c.open_trade, c.equity,
            c.volume_left, c.flows, c.params)  # fmt: skip


def arrays(ctx: Ctx) -> dict[str, np.ndarray]:
    """The arrays of ``ctx`` by field name (the same memory: writes are seen by both sides)."""
    return dict(zip(_FIELDS, _fields_nb(ctx), strict=True))


def grown(ctx: Ctx) -> Ctx:
    """``ctx`` with room for a bar's worst case in its event and trade logs (the contents are
    kept). A full log grows four times over, the other stays: growing was a fifth of a 1 M-tick
    backtest's time when both logs doubled together (copies, and first touches of new pages)."""
    fields = arrays(ctx)
    worst = int(worst_case_nb(ctx))
    for log, used in (("events", "n_events"), ("trades", "n_trades")):
        a = fields[log]
        n = int(fields[used][0])
        if n + worst > a.shape[0]:
            bigger = np.zeros((4 * max(a.shape[0], n + worst), a.shape[1]))
            bigger[:n] = a[:n]
            fields[log] = bigger
    return _new_ctx(*(fields[name] for name in _FIELDS))


@njit(**_KW)
def worst_case_nb(ctx: Ctx) -> int:
    """The most log rows (events, or round trips) one bar can add."""
    return 3 * (ctx.orders.shape[0] + ctx.requests.shape[0]) + 2 * ctx.position.shape[0]


@njit(**_KW)
def has_room_nb(ctx: Ctx) -> bool:
    """Whether the logs can take a whole bar's worth of events and round trips."""
    worst = worst_case_nb(ctx)
    return ctx.n_events[0] + worst <= ctx.events.shape[0] and ctx.n_trades[0] + worst <= ctx.trades.shape[0]


# ---------------------------------------------------------------------------------------------
# Logs


@njit(**_KW)
def _event_nb(ctx: Ctx, order_id: float, kind: int, reason: int, asset: float, qty: float, price: float, fee: float, tag: float) -> None:
    k = ctx.n_events[0]
    e = ctx.events[k]
    e[o.E_BAR] = ctx.clock[C_BAR]
    e[o.E_ORDER] = order_id
    e[o.E_KIND] = kind
    e[o.E_REASON] = reason
    e[o.E_ASSET] = asset
    e[o.E_QTY] = qty
    e[o.E_PRICE] = price
    e[o.E_FEE] = fee
    e[o.E_TAG] = tag
    ctx.n_events[0] = k + 1


@njit(**_KW)
def _order_event_nb(ctx: Ctx, row: np.ndarray, kind: int, reason: int) -> None:
    _event_nb(ctx, row[o.O_ID], kind, reason, row[o.O_ASSET], row[o.O_QTY], np.nan, 0.0, row[o.O_TAG])


@njit(**_KW)
def _close_trade_nb(ctx: Ctx, a: int) -> None:
    ot = ctx.open_trade[a]
    k = ctx.n_trades[0]
    tr = ctx.trades[k]
    tr[T_ASSET] = a
    tr[T_SIDE] = ot[OT_SIDE]
    tr[T_QTY] = ot[OT_QTY]
    tr[T_ENTRY_BAR] = ot[OT_ENTRY_BAR]
    tr[T_EXIT_BAR] = ctx.clock[C_BAR]
    tr[T_ENTRY_PRICE] = ot[OT_ENTRY_NOTIONAL] / ot[OT_QTY]
    tr[T_EXIT_PRICE] = ot[OT_EXIT_NOTIONAL] / ot[OT_EXIT_QTY]
    tr[T_FEES] = ot[OT_FEES]
    tr[T_PNL] = ot[OT_REALISED] - ot[OT_FEES]
    ctx.n_trades[0] = k + 1
    ot[:] = 0.0


@njit(**_KW)
def _open_trade_nb(ctx: Ctx, a: int, side: float, qty: float, price: float, fee: float) -> None:
    ot = ctx.open_trade[a]
    ot[OT_SIDE] = side
    ot[OT_QTY] = qty
    ot[OT_ENTRY_NOTIONAL] = qty * price
    ot[OT_EXIT_QTY] = 0.0
    ot[OT_EXIT_NOTIONAL] = 0.0
    ot[OT_FEES] = fee
    ot[OT_REALISED] = 0.0
    ot[OT_ENTRY_BAR] = ctx.clock[C_BAR]


# ---------------------------------------------------------------------------------------------
# Accounting


@njit(**_KW)
def _account_nb(ctx: Ctx, a: int, dq: float, price: float, fee: float) -> None:
    """Book a fill of ``dq`` (signed) of asset ``a`` at ``price`` paying ``fee``."""
    q = ctx.position[a]
    ctx.cash[0] -= dq * price + fee
    ctx.flows[0] += abs(dq) * price
    ctx.flows[1] += fee
    ot = ctx.open_trade[a]
    if q == 0.0 or (q > 0.0) == (dq > 0.0):  # opening or adding
        new = q + dq
        ctx.avg_price[a] = (ctx.avg_price[a] * abs(q) + price * abs(dq)) / abs(new)
        if q == 0.0:
            _open_trade_nb(ctx, a, 1.0 if dq > 0.0 else -1.0, abs(dq), price, fee)
        else:
            ot[OT_QTY] += abs(dq)
            ot[OT_ENTRY_NOTIONAL] += abs(dq) * price
            ot[OT_FEES] += fee
        ctx.position[a] = new
        return
    closing = min(abs(dq), abs(q))
    pnl = closing * (price - ctx.avg_price[a]) * (1.0 if q > 0.0 else -1.0)
    share = closing / abs(dq)
    ctx.realised[a] += pnl
    ot[OT_EXIT_QTY] += closing
    ot[OT_EXIT_NOTIONAL] += closing * price
    ot[OT_FEES] += fee * share
    ot[OT_REALISED] += pnl
    new = q + dq
    if abs(dq) >= abs(q):  # flat, or flipped to the other side
        _close_trade_nb(ctx, a)
        if new != 0.0:
            _open_trade_nb(ctx, a, 1.0 if new > 0.0 else -1.0, abs(new), price, fee * (1.0 - share))
            ctx.avg_price[a] = price
        else:
            ctx.avg_price[a] = 0.0
    ctx.position[a] = new


@njit(**_KW)
def _equity_nb(ctx: Ctx) -> tuple:
    """(position value, gross exposure) at the marks."""
    value, gross = 0.0, 0.0
    position, mark = ctx.position, ctx.mark
    for a in range(position.shape[0]):
        if position[a] != 0.0:
            v = position[a] * mark[a]
            value += v
            gross += abs(v)
    return value, gross


# ---------------------------------------------------------------------------------------------
# Orders


@njit(**_KW)
def _find_nb(ctx: Ctx, order_id: float) -> int:
    for i in range(ctx.n_orders[0]):
        if ctx.orders[i, o.O_ID] == order_id and ctx.orders[i, o.O_KIND] != DEAD:
            return i
    return -1


@njit(**_KW)
def _cancel_row_nb(ctx: Ctx, i: int, reason: int) -> None:
    """Cancel open order row ``i`` and its children, grandchildren..."""
    row = ctx.orders[i]
    row[o.O_KIND] = DEAD
    _order_event_nb(ctx, row, o.CANCELLED, reason)
    again = True
    while again:  # children of cancelled orders, in submission order, until none is left
        again = False
        for j in range(ctx.n_orders[0]):
            child = ctx.orders[j]
            if child[o.O_KIND] != DEAD and child[o.O_PARENT] >= 0.0 and _is_dead_nb(ctx, child[o.O_PARENT]):
                child[o.O_KIND] = DEAD
                _order_event_nb(ctx, child, o.CANCELLED, o.R_PARENT)
                again = True


@njit(**_KW)
def _is_dead_nb(ctx: Ctx, order_id: float) -> bool:
    """Whether ``order_id`` is a cancelled row of the table (a parent that will never fill)."""
    for i in range(ctx.n_orders[0]):
        if ctx.orders[i, o.O_ID] == order_id:
            return ctx.orders[i, o.O_KIND] == DEAD
    return False


@njit(**_KW)
def _compact_nb(ctx: Ctx) -> None:
    """Drop finished rows, keeping the others in submission order."""
    k = 0
    for i in range(ctx.n_orders[0]):
        if ctx.orders[i, o.O_KIND] != DEAD:
            if k != i:
                ctx.orders[k] = ctx.orders[i]
            k += 1
    ctx.n_orders[0] = k


@njit(**_KW)
def _slipped_nb(ctx: Ctx, price: float, qty: float) -> float:
    s = ctx.params[o.P_SLIPPAGE_BPS] * 1e-4
    return price * (1.0 + s) if qty > 0.0 else price * (1.0 - s)


@njit(**_KW)
def _fill_nb(ctx: Ctx, i: int, price: float, t: int) -> None:
    """Fill open order row ``i`` at ``price`` (as much as the volume limit allows)."""
    row = ctx.orders[i]
    a = np.int64(row[o.O_ASSET])
    qty = row[o.O_QTY]
    if ctx.params[o.P_VOLUME_LIMIT] > 0.0:
        room = ctx.volume_left[a]
        if room <= 0.0:
            return
        if abs(qty) > room:
            qty = room if qty > 0.0 else -room
        ctx.volume_left[a] = room - abs(qty)
    fee = abs(qty) * price * ctx.params[o.P_FEE_BPS] * 1e-4 + ctx.params[o.P_FEE_FIXED]
    _account_nb(ctx, a, qty, price, fee)
    row[o.O_QTY] -= qty
    row[o.O_FILLED] += qty
    row[o.O_NOTIONAL] += abs(qty) * price
    done = row[o.O_QTY] == 0.0
    _event_nb(ctx, row[o.O_ID], o.FILLED if done else o.PARTIALLY_FILLED, o.R_NONE, row[o.O_ASSET], qty, price, fee, row[o.O_TAG])
    group = row[o.O_GROUP]
    if group >= 0.0:  # one-cancels-other: the first fill cancels the rest of the group
        for j in range(ctx.n_orders[0]):
            other = ctx.orders[j]
            if j != i and other[o.O_KIND] != DEAD and other[o.O_GROUP] == group:
                _cancel_row_nb(ctx, j, o.R_OCO)
        row[o.O_GROUP] = -1.0
    if done:
        row[o.O_KIND] = DEAD
        for j in range(ctx.n_orders[0]):  # children become active from the next bar
            child = ctx.orders[j]
            if child[o.O_KIND] != DEAD and child[o.O_PARENT] == row[o.O_ID]:
                child[o.O_PARENT] = -1.0
                child[o.O_ACTIVE] = t + 1


@njit(**_KW)
def _match_price_nb(row: np.ndarray, bar: np.ndarray, t: int) -> float:
    """The price at which an active order fills on ``bar`` (NaN: it does not)."""
    qty = row[o.O_QTY]
    typ = np.int64(row[o.O_TYPE])
    op, hi, lo = bar[OPEN], bar[HIGH], bar[LOW]
    buy = qty > 0.0
    if typ == o.STOP_LIMIT and row[o.O_TRIGGERED] == 0.0:
        stop, limit = row[o.O_STOP], row[o.O_LIMIT]
        if (op >= stop) if buy else (op <= stop):
            row[o.O_TRIGGERED] = 1.0
            if (op <= limit) if buy else (op >= limit):
                return op
            return np.nan
        if (hi >= stop) if buy else (lo <= stop):
            row[o.O_TRIGGERED] = 1.0
            row[o.O_ACTIVE] = t + 1
        return np.nan
    if typ == o.MARKET:
        return op
    if typ == o.LIMIT or typ == o.STOP_LIMIT:
        limit = row[o.O_LIMIT]
        if buy:
            return op if op <= limit else (limit if lo <= limit else np.nan)
        return op if op >= limit else (limit if hi >= limit else np.nan)
    stop = row[o.O_STOP]  # STOP
    if buy:
        return op if op >= stop else (stop if hi >= stop else np.nan)
    return op if op <= stop else (stop if lo <= stop else np.nan)


@njit(**_KW)
def match_bar_nb(ctx: Ctx) -> None:
    """Match the open orders active at the current bar against it (phase 1)."""
    t = ctx.clock[C_BAR]
    for i in range(ctx.n_orders[0]):
        row = ctx.orders[i]
        if row[o.O_KIND] == DEAD or row[o.O_ACTIVE] > t:
            continue
        bar = ctx.bar[np.int64(row[o.O_ASSET])]
        if not np.isfinite(bar[OPEN]):
            continue
        price = _match_price_nb(row, bar, t)
        if np.isfinite(price):
            typ = np.int64(row[o.O_TYPE])
            if typ == o.MARKET or (typ == o.STOP):
                price = _slipped_nb(ctx, price, row[o.O_QTY])
            _fill_nb(ctx, i, price, t)
    _compact_nb(ctx)


@njit(**_KW)
def load_bar_nb(clock: np.ndarray, current: np.ndarray, feats: np.ndarray, volume_left: np.ndarray, flows: np.ndarray,
                limit: float, t: int, ts: np.ndarray, ohlcv: np.ndarray, features: np.ndarray) -> None:
    """Copy bar ``t`` into the current-bar arrays and reset the bar's volume room and flows.

    Takes the arrays, not the context: the engine loops read the fields of ctx once (each read
    of a field is a reference count) and call this for every bar. Element loops, not slices:
    a slice is a new array object (~25 ns)."""
    clock[C_TS] = ts[t]
    clock[C_BAR] = t
    for a in range(current.shape[0]):
        for k in range(5):
            current[a, k] = ohlcv[t, a, k]
        for f in range(feats.shape[1]):
            feats[a, f] = features[t, a, f]
        v = current[a, VOLUME]
        volume_left[a] = limit * v if np.isfinite(v) else 0.0
    flows[0] = 0.0
    flows[1] = 0.0


@njit(**_KW)
def mark_nb(current: np.ndarray, mark: np.ndarray) -> None:
    """Value positions at the current closes (an asset without a bar keeps its last)."""
    for a in range(current.shape[0]):
        close = current[a, CLOSE]
        if np.isfinite(close):
            mark[a] = close


@njit(**_KW)
def begin_bar_nb(ctx: Ctx, t: int, ts: np.ndarray, ohlcv: np.ndarray, features: np.ndarray) -> None:
    """Make bar ``t`` of ``ts`` (int64[T]), ``ohlcv`` (float64[T, N, 5]) and ``features``
    (float64[T, N, F]) current and match the open orders against it (phase 1)."""
    current = ctx.bar
    load_bar_nb(ctx.clock, current, ctx.features, ctx.volume_left, ctx.flows, ctx.params[o.P_VOLUME_LIMIT], t, ts, ohlcv, features)
    if ctx.n_orders[0] > 0:
        match_bar_nb(ctx)
    mark_nb(current, ctx.mark)


@njit(**_KW)
def _reject_reason_nb(ctx: Ctx, req: np.ndarray) -> int:
    n = ctx.position.shape[0]
    a = req[o.O_ASSET]
    if not (a >= 0.0 and a < n and a == np.floor(a)):
        return o.R_ASSET
    qty = req[o.O_QTY]
    if not np.isfinite(qty) or qty == 0.0:
        return o.R_QTY
    typ = req[o.O_TYPE]
    if typ != o.MARKET and typ != o.LIMIT and typ != o.STOP and typ != o.STOP_LIMIT:
        return o.R_TYPE
    needs_limit = typ == o.LIMIT or typ == o.STOP_LIMIT
    needs_stop = typ == o.STOP or typ == o.STOP_LIMIT
    limit, stop = req[o.O_LIMIT], req[o.O_STOP]
    if (needs_limit and not 0.0 < limit < np.inf) or (needs_stop and not 0.0 < stop < np.inf):
        return o.R_PRICE
    ai = np.int64(a)
    if ctx.params[o.P_ALLOW_SHORT] == 0.0 and qty < 0.0:
        pending = 0.0  # open sells of this asset would also come out of the position
        for i in range(ctx.n_orders[0]):
            row = ctx.orders[i]
            if row[o.O_KIND] != DEAD and row[o.O_ASSET] == a and row[o.O_QTY] < 0.0:
                pending += row[o.O_QTY]
        if ctx.position[ai] + pending + qty < 0.0:
            return o.R_SHORT
    lev = ctx.params[o.P_MAX_LEVERAGE]
    if lev > 0.0:
        price = ctx.mark[ai] if np.isfinite(ctx.mark[ai]) else ctx.bar[ai, CLOSE]
        value, gross = _equity_nb(ctx)
        after = gross - abs(ctx.position[ai] * price) + abs((ctx.position[ai] + qty) * price)
        if after > gross and after > lev * (ctx.cash[0] + value):
            return o.R_LEVERAGE
    if ctx.n_orders[0] >= ctx.orders.shape[0]:
        return o.R_BOOK_FULL
    return o.R_NONE


@njit(**_KW)
def _accept_nb(ctx: Ctx, req: np.ndarray, t: int) -> None:
    reason = _reject_reason_nb(ctx, req)
    parent = req[o.O_PARENT]
    if reason == o.R_NONE and parent >= 0.0 and _find_nb(ctx, parent) < 0:
        reason = o.R_PARENT
    remote = ctx.params[o.P_REMOTE] != 0.0
    if reason == o.R_NONE and remote and (req[o.O_TYPE] > o.LIMIT or parent >= 0.0 or req[o.O_GROUP] >= 0.0):
        reason = o.R_REMOTE_TYPE
    if reason != o.R_NONE:
        _order_event_nb(ctx, req, o.REJECTED, reason)
        return
    k = ctx.n_orders[0]
    row = ctx.orders[k]
    row[:] = req
    row[o.O_KIND] = o.RQ_NEW
    row[o.O_FILLED] = 0.0
    row[o.O_TRIGGERED] = 0.0
    row[o.O_NOTIONAL] = 0.0
    row[o.O_BAR] = ctx.clock[C_BAR]
    latency = ctx.params[o.P_LATENCY]
    now = row[o.O_TYPE] == o.MARKET and ctx.params[o.P_FILL_ON] == 0.0 and latency == 0.0
    row[o.O_ACTIVE] = INACTIVE if parent >= 0.0 or remote else (t if now else t + max(1.0, latency))
    ctx.n_orders[0] = k + 1
    _order_event_nb(ctx, row, o.ACCEPTED, o.R_NONE)


@njit(**_KW)
def end_bar_nb(ctx: Ctx) -> None:
    """Apply the strategy's requests, fill market orders at the close, write the equity row (phase 3)."""
    t = ctx.clock[C_BAR]
    n_requests = ctx.n_requests
    if n_requests[0] > 0:
        requests = ctx.requests
        for r in range(n_requests[0]):
            req = requests[r]
            if req[o.O_KIND] == o.RQ_CANCEL:
                i = _find_nb(ctx, req[o.O_ID])
                if i < 0:
                    _event_nb(ctx, req[o.O_ID], o.REJECTED, o.R_UNKNOWN_ORDER, -1.0, 0.0, np.nan, 0.0, req[o.O_TAG])
                else:
                    _cancel_row_nb(ctx, i, o.R_NONE)
            else:
                _accept_nb(ctx, req, t)
        n_requests[0] = 0
        _fill_at_close_nb(ctx, t)
    record_nb(ctx.equity, ctx.position, ctx.mark, ctx.cash, ctx.flows, t)


@njit(**_KW)
def record_nb(equity: np.ndarray, position: np.ndarray, mark: np.ndarray, cash: np.ndarray, flows: np.ndarray, t: int) -> None:
    """Write the equity row of bar ``t`` (arrays, not the context: see :func:`load_bar_nb`).

    ``equity`` has a row per bar in a backtest; the live engine gives it fewer rows, used as a
    ring (row ``t % rows``) holding the latest equity rows."""
    value, gross = 0.0, 0.0
    for a in range(position.shape[0]):
        if position[a] != 0.0:
            v = position[a] * mark[a]
            value += v
            gross += abs(v)
    q = equity[t if t < equity.shape[0] else t % equity.shape[0]]
    q[Q_BAR] = t
    q[Q_CASH] = cash[0]
    q[Q_POSITION_VALUE] = value
    q[Q_GROSS] = gross
    q[Q_EQUITY] = cash[0] + value
    q[Q_TRADED] = flows[0]
    q[Q_FEES] = flows[1]


@njit(**_KW)
def _fill_at_close_nb(ctx: Ctx, t: int) -> None:
    """Market orders decided at this bar fill at its close."""
    orders, current = ctx.orders, ctx.bar
    for i in range(ctx.n_orders[0]):
        row = orders[i]
        if row[o.O_KIND] != DEAD and row[o.O_ACTIVE] == t and row[o.O_TYPE] == o.MARKET:
            close = current[np.int64(row[o.O_ASSET]), CLOSE]
            if np.isfinite(close):
                _fill_nb(ctx, i, _slipped_nb(ctx, close, row[o.O_QTY]), t)
            else:  # no bar for this asset now: the order waits for its next bar's open
                row[o.O_ACTIVE] = t + 1
    _compact_nb(ctx)


# ---------------------------------------------------------------------------------------------
# Remote venue: its reports change the books (orders of a P_REMOTE context never fill locally)


@njit(**_KW)
def remote_report_nb(ctx: Ctx, kind: int, order_id: float, asset: int, qty: float, price: float, fee: float) -> bool:
    """Apply one report of a remote venue: a fill (``qty`` signed) of ``order_id``, or its
    ``CANCELLED`` / ``REJECTED``. A fill of an order no longer open here (cancelled locally by
    the kill switch before the venue filled it) still books the position. Returns whether the
    order was open here."""
    i = _find_nb(ctx, order_id)
    if kind == o.FILLED or kind == o.PARTIALLY_FILLED:
        tag = 0.0
        if i >= 0:
            row = ctx.orders[i]
            tag = row[o.O_TAG]
            row[o.O_QTY] -= qty
            row[o.O_FILLED] += qty
            row[o.O_NOTIONAL] += abs(qty) * price
            if kind == o.FILLED:
                row[o.O_KIND] = DEAD
        _account_nb(ctx, asset, qty, price, fee)
        _event_nb(ctx, order_id, kind, o.R_NONE, float(asset), qty, price, fee, tag)
    elif i >= 0 and kind == o.CANCELLED:
        _cancel_row_nb(ctx, i, o.R_NONE)
    elif i >= 0 and kind == o.REJECTED:
        row = ctx.orders[i]
        row[o.O_KIND] = DEAD
        _order_event_nb(ctx, row, o.REJECTED, o.R_VENUE)
    _compact_nb(ctx)
    return i >= 0
