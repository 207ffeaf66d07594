"""The compiled phases of one live event, around the strategy.

For event ``t`` (a bar, or a trade as a one-trade bar), exactly as in the event-driven backtest:

1. :func:`begin_nb`: the event becomes current, the paper venue matches the resting orders
   against it (:func:`~ntlab.execution.broker.match_bar_nb`), positions are marked;
2. the strategy runs (compiled inside the engine's loop, or a Python ``on_bar``);
3. :func:`end_nb`: pre-trade risk removes the requests that break a limit
   (:func:`~ntlab.live.risk.check_requests_nb`); each remaining request is appended to the
   journal (an *intent*); the tick-to-order latency is taken; the requests go to the paper venue
   (:func:`~ntlab.execution.broker.end_bar_nb`: accept / reject, fills at the close); then every
   event of this step is drained (:func:`drain_nb`): venue events go to the venue's own record
   first, then to the engine's journal, risk rejections to the journal, and all of them to the
   event ring for consumers (each row followed by the event's time, ``R_TS_S`` seconds and
   ``R_TS_NS`` nanoseconds: float64 cannot hold epoch nanoseconds exactly). The broker's event
   log is emptied, so memory stays flat.

The broker is the paper venue's matching engine and the engine's books at once (one process):
"before it takes effect" means before the step returns, i.e. before anything can observe it.

With a remote venue (``ctx.params[P_REMOTE] == 1``, :mod:`ntlab.live.venue_client`) nothing
fills locally: step 3 accepts the requests into the books as *sent* orders and writes them, and
the cancels of open orders, to the **outbox** (``X_*`` rows) that the engine's thread sends over
the socket after the compiled call; the venue's reports come back through :func:`remote_nb`,
which books them and journals each with the venue's sequence number (payload word ``V_SEQ``).

The I/O arrays travel as one tuple ``io``:
``(risk_params, risk_state, risk_counters, journal_words, journal_fwords, journal_state,
venue_words, venue_fwords, venue_state, latency_hist, ring_data, ring_control, counters, payload,
outbox, outbox_count)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.kernels._common import _KW
from ntlab.live import journal as jn
from ntlab.live import latency as lt
from ntlab.live import ring as rg
from ntlab.live.risk import check_requests_nb

__all__ = ["begin_nb", "drain_nb", "end_nb"]

# Journal record kinds
K_INTENT = 1  # payload: the request row (O_WIDTH words), then the event number
K_VENUE = 2  # payload: the event row (E_WIDTH words); for "accepted": then the order's terms (A_*)
K_RISK_REJECT = 3  # payload: the rejection event row
K_CONTROL = 4  # payload: [event number, trading state, reason code] (kill switch, state changes)
K_START = 5  # payload: [cash, number of assets, first event number, 1 if resumed]
K_PROGRESS = 6  # payload: [next event number] after each batch (a restart continues there)

# Order terms after an "accepted" event row in its payload
# Event ring rows: the broker's event row, then its time
R_TS_S, R_TS_NS = o.E_WIDTH, o.E_WIDTH + 1
R_WIDTH = o.E_WIDTH + 2

A_TYPE = o.E_WIDTH
A_LIMIT = o.E_WIDTH + 1
A_STOP = o.E_WIDTH + 2
A_ACTIVE = o.E_WIDTH + 3
A_GROUP = o.E_WIDTH + 4
A_PARENT = o.E_WIDTH + 5
A_TRIGGERED = o.E_WIDTH + 6
_TERMS = (o.O_TYPE, o.O_LIMIT, o.O_STOP, o.O_ACTIVE, o.O_GROUP, o.O_PARENT, o.O_TRIGGERED)

# Engine counters (int64)
N_EVENTS = 0
N_INTENTS = 1  # new orders sent to the venue
N_CANCELS = 2
N_VENUE_EVENTS = 3
N_FILLS = 4
N_VENUE_REJECTS = 5
N_RISK_REJECTS = 6
N_RING_DROPS = 7
N_TIMED = 8  # events whose orders were timed (tick-to-order samples)
N_JOURNAL_FULL = 9  # steps stopped early for a journal segment to roll over
N_WIDTH = 10
COUNTER_NAMES = (
    "events", "orders_sent", "cancels_sent", "venue_events", "fills", "venue_rejects", "risk_rejects",
    "ring_drops", "tick_to_order_samples", "journal_rolls",
)  # fmt: skip

RISK_FIRST = o.R_RISK_ORDER_SIZE

# Outbox rows (orders for a remote venue)
X_KIND = 0  # RQ_NEW or RQ_CANCEL
X_ORDER = 1
X_ASSET = 2
X_QTY = 3
X_TYPE = 4
X_LIMIT = 5
X_EVENT = 6  # event number that decided it
X_WIDTH = 7
V_SEQ = 15  # payload word of a remote report's journal record: the venue's sequence number


@njit(**_KW)
def begin_nb(ctx: b.Ctx, k: int, ts: np.ndarray, ohlcv: np.ndarray, features: np.ndarray, t: int) -> int:
    """Make row ``k`` of a batch event number ``t``, match resting orders, mark positions.

    Returns the number of events the matching logged (fills, cancels of their OCO groups)."""
    b.load_bar_nb(ctx.clock, ctx.bar, ctx.features, ctx.volume_left, ctx.flows, ctx.params[o.P_VOLUME_LIMIT], k, ts, ohlcv, features)
    ctx.clock[b.C_BAR] = t
    if ctx.n_orders[0] > 0:
        b.match_bar_nb(ctx)
    b.mark_nb(ctx.bar, ctx.mark)
    return ctx.n_events[0]


@njit(**_KW)
def free_nb(words: np.ndarray, state: np.ndarray) -> int:
    """Free record slots in a journal segment (row 0 is its header)."""
    return words.shape[0] - 1 - state[0]


@njit(**_KW)
def room_nb(ctx: b.Ctx, io: tuple) -> bool:
    """Whether both journals and the round-trip log can take a whole step's records."""
    worst = b.worst_case_nb(ctx) + ctx.requests.shape[0]
    return (
        free_nb(io[3], io[5]) >= worst
        and free_nb(io[6], io[8]) >= worst
        and ctx.n_trades[0] + worst <= ctx.trades.shape[0]
        and io[15][0] + ctx.requests.shape[0] <= io[14].shape[0]
    )


@njit(**_KW)
def end_nb(ctx: b.Ctx, in_ns: int, io: tuple) -> int:
    """Risk, journal, latency, venue, drain (see the module docstring). Returns the number of
    events drained (their rows stay in ``ctx.events[:n]`` until the next step)."""
    risk_params, risk_state, risk_counters = io[0], io[1], io[2]
    counters, payload = io[12], io[13]
    check_requests_nb(ctx, risk_params, risk_state, risk_counters)
    n = ctx.n_requests[0]
    if n > 0:
        new = 0
        requests = ctx.requests
        for r in range(n):
            req = requests[r]
            for w in range(o.O_WIDTH):
                payload[w] = req[w]
            payload[o.O_WIDTH] = ctx.clock[b.C_BAR]
            jn.append_nb(io[3], io[4], io[5], K_INTENT, payload)
            if req[o.O_KIND] == o.RQ_NEW:
                new += 1
        counters[N_INTENTS] += new
        counters[N_CANCELS] += n - new
        if new > 0:  # tick-to-order: the orders are journalled and handed to the venue now
            lt.record_nb(io[9], lt.now_ns_nb() - in_ns)
            counters[N_TIMED] += 1
        if ctx.params[o.P_REMOTE] != 0.0:
            _to_outbox_nb(ctx, io)
        else:
            b.end_bar_nb(ctx)
    else:
        b.record_nb(ctx.equity, ctx.position, ctx.mark, ctx.cash, ctx.flows, ctx.clock[b.C_BAR])
    counters[N_EVENTS] += 1
    return drain_nb(ctx, io)


@njit(**_KW)
def _to_outbox_nb(ctx: b.Ctx, io: tuple) -> None:
    """Remote venue: cancels of open orders and the accepted new orders go to the outbox."""
    outbox, count = io[14], io[15]
    requests, n = ctx.requests, ctx.n_requests[0]
    t = ctx.clock[b.C_BAR]
    keep = 0
    for r in range(n):  # a cancel of an open order waits for the venue's report
        req = requests[r]
        if req[o.O_KIND] == o.RQ_CANCEL and b._find_nb(ctx, req[o.O_ID]) >= 0:
            x = outbox[count[0]]
            x[:] = 0.0
            x[X_KIND] = o.RQ_CANCEL
            x[X_ORDER] = req[o.O_ID]
            x[X_EVENT] = t
            count[0] += 1
        else:
            if keep != r:
                requests[keep] = req
            keep += 1
    ctx.n_requests[0] = keep
    first = ctx.n_events[0]
    b.end_bar_nb(ctx)
    for i in range(first, ctx.n_events[0]):
        e = ctx.events[i]
        if e[o.E_KIND] == o.ACCEPTED:
            j = b._find_nb(ctx, e[o.E_ORDER])
            x = outbox[count[0]]
            x[X_KIND] = o.RQ_NEW
            x[X_ORDER] = e[o.E_ORDER]
            x[X_ASSET] = e[o.E_ASSET]
            x[X_QTY] = e[o.E_QTY]
            x[X_TYPE] = ctx.orders[j, o.O_TYPE]
            x[X_LIMIT] = ctx.orders[j, o.O_LIMIT]
            x[X_EVENT] = t
            count[0] += 1


@njit(**_KW)
def remote_nb(ctx: b.Ctx, io: tuple, kind: int, order_id: float, asset: int, qty: float, price: float, fee: float, seq: float) -> bool:
    """Book one report of a remote venue (see :func:`~ntlab.execution.broker.remote_report_nb`)
    and journal it with the venue's sequence number ``seq``. Returns whether the order was open."""
    found = b.remote_report_nb(ctx, kind, order_id, asset, qty, price, fee)
    b.mark_nb(ctx.bar, ctx.mark)
    b.record_nb(ctx.equity, ctx.position, ctx.mark, ctx.cash, ctx.flows, ctx.clock[b.C_BAR])
    _drain_nb(ctx, io, seq)
    return found


@njit(**_KW)
def drain_nb(ctx: b.Ctx, io: tuple) -> int:
    """Record the broker's logged events (venue record, journal, ring) and empty the log."""
    return _drain_nb(ctx, io, 0.0)


@njit(**_KW)
def _drain_nb(ctx: b.Ctx, io: tuple, seq: float) -> int:
    counters, payload = io[12], io[13]
    n = ctx.n_events[0]
    events = ctx.events
    for i in range(n):
        e = events[i]
        for w in range(payload.shape[0]):
            payload[w] = e[w] if w < o.E_WIDTH else 0.0
        payload[V_SEQ] = seq
        kind = np.int64(e[o.E_KIND])
        if kind == o.REJECTED and RISK_FIRST <= e[o.E_REASON] <= o.R_RISK_LAST:
            jn.append_nb(io[3], io[4], io[5], K_RISK_REJECT, payload)
            counters[N_RISK_REJECTS] += 1
        else:
            if kind == o.ACCEPTED:
                j = b._find_nb(ctx, e[o.E_ORDER])
                if j >= 0:
                    for w in range(len(_TERMS)):
                        payload[o.E_WIDTH + w] = ctx.orders[j, _TERMS[w]]
            jn.append_nb(io[6], io[7], io[8], K_VENUE, payload)  # the venue's own record first
            jn.append_nb(io[3], io[4], io[5], K_VENUE, payload)
            counters[N_VENUE_EVENTS] += 1
            if kind == o.FILLED or kind == o.PARTIALLY_FILLED:
                counters[N_FILLS] += 1
            elif kind == o.REJECTED:
                counters[N_VENUE_REJECTS] += 1
        ts = ctx.clock[b.C_TS]  # the journal has taken the payload: its tail carries the time now
        payload[R_TS_S] = ts // 1_000_000_000
        payload[R_TS_NS] = ts % 1_000_000_000
        if not rg.push_nb(io[10], io[11], payload[:R_WIDTH]):
            counters[N_RING_DROPS] += 1
    ctx.n_events[0] = 0
    return n


@njit(**_KW)
def control_nb(io: tuple, t: int, state: int, reason: int) -> None:
    """Journal a change of trading state (commands, kill switch)."""
    payload = io[13]
    payload[:] = 0.0
    payload[0] = t
    payload[1] = state
    payload[2] = reason
    jn.append_nb(io[3], io[4], io[5], K_CONTROL, payload)
