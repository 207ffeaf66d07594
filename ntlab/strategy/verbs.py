"""What a compiled strategy may do: read its context and ask for orders.

Every verb is a Numba function of the run's context (:class:`ntlab.execution.broker.Ctx`),
callable from a compiled strategy's ``on_bar(ctx, state)``; the Python strategy API calls the
very same compiled functions, so both kinds ask for orders the same way. Orders
asked for at a bar are applied after the strategy returns (accepted or rejected with a reason,
see :data:`ntlab.execution.REJECT_REASONS`); a verb returns the id the order will have, or -1
when the bar's request buffer is full.

Quantities are signed (``+`` buys); assets are column numbers (the engine's ``symbols``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.kernels._common import _KW

__all__ = [
    "bracket",
    "buy",
    "cancel",
    "cash",
    "equity",
    "flatten",
    "has_open_orders",
    "now",
    "position",
    "price",
    "sell",
    "submit",
]

MARKET = o.MARKET
LIMIT = o.LIMIT
STOP = o.STOP
STOP_LIMIT = o.STOP_LIMIT


@njit(**_KW)
def _request_nb(ctx: b.Ctx) -> int:
    k = ctx.n_requests[0]
    if k >= ctx.requests.shape[0]:
        return -1
    ctx.n_requests[0] = k + 1
    ctx.requests[k, :] = 0.0
    return k


@njit(**_KW)
def submit(
    ctx: b.Ctx,
    asset: int,
    qty: float,
    order_type: int = MARKET,
    limit: float = np.nan,
    stop: float = np.nan,
    group: int = -1,
    parent: int = -1,
    tag: float = 0.0,
) -> int:
    """Ask for an order of ``qty`` (signed) of ``asset``; returns its id (-1: buffer full).

    ``order_type`` is ``MARKET``, ``LIMIT`` (needs ``limit``), ``STOP`` (needs ``stop``) or
    ``STOP_LIMIT`` (both). ``group``: orders sharing a group id cancel each other on the first
    fill; ``parent``: the order waits until that order has filled.
    """
    k = _request_nb(ctx)
    if k < 0:
        return -1
    oid = ctx.next_id[0]
    ctx.next_id[0] = oid + 1
    r = ctx.requests[k]
    r[o.O_ID] = oid
    r[o.O_KIND] = o.RQ_NEW
    r[o.O_ASSET] = asset
    r[o.O_QTY] = qty
    r[o.O_TYPE] = order_type
    r[o.O_LIMIT] = limit
    r[o.O_STOP] = stop
    r[o.O_GROUP] = group
    r[o.O_PARENT] = parent
    r[o.O_TAG] = tag
    return oid


@njit(**_KW)
def buy(ctx: b.Ctx, asset: int, qty: float) -> int:
    """A market order buying ``qty`` (> 0) of ``asset``."""
    return submit(ctx, asset, qty)


@njit(**_KW)
def sell(ctx: b.Ctx, asset: int, qty: float) -> int:
    """A market order selling ``qty`` (> 0) of ``asset``."""
    return submit(ctx, asset, -qty)


@njit(**_KW)
def cancel(ctx: b.Ctx, order_id: int) -> int:
    """Ask to cancel open order ``order_id`` (an unknown id is rejected with a reason)."""
    k = _request_nb(ctx)
    if k < 0:
        return -1
    ctx.requests[k, o.O_ID] = order_id
    ctx.requests[k, o.O_KIND] = o.RQ_CANCEL
    return order_id


@njit(**_KW)
def flatten(ctx: b.Ctx, asset: int) -> int:
    """Cancel the open orders of ``asset`` and close its position with a market order.

    Returns the closing order's id (-1 when flat already, or the buffer is full)."""
    for i in range(ctx.n_orders[0]):
        row = ctx.orders[i]
        if row[o.O_ASSET] == asset and row[o.O_KIND] != b.DEAD:
            cancel(ctx, np.int64(row[o.O_ID]))
    q = ctx.position[asset]
    if q == 0.0:
        return -1
    return submit(ctx, asset, -q)


@njit(**_KW)
def bracket(ctx: b.Ctx, asset: int, qty: float, take_profit: float, stop_loss: float, limit: float = np.nan) -> int:
    """An entry (market, or limit at ``limit``) with a take-profit limit and a stop-loss stop
    that activate once it has filled and cancel each other. Returns the entry's id."""
    entry = submit(ctx, asset, qty, MARKET if np.isnan(limit) else LIMIT, limit)
    if entry < 0:
        return -1
    submit(ctx, asset, -qty, LIMIT, take_profit, np.nan, entry, entry)
    submit(ctx, asset, -qty, STOP, np.nan, stop_loss, entry, entry)
    return entry


@njit(**_KW)
def position(ctx: b.Ctx, asset: int) -> float:
    """The signed position in ``asset``."""
    return ctx.position[asset]


@njit(**_KW)
def price(ctx: b.Ctx, asset: int) -> float:
    """The close of ``asset``'s current bar (NaN when it has none at this time)."""
    return ctx.bar[asset, b.CLOSE]


@njit(**_KW)
def cash(ctx: b.Ctx) -> float:
    """Cash in the account."""
    return ctx.cash[0]


@njit(**_KW)
def equity(ctx: b.Ctx) -> float:
    """Cash plus positions at their last closes."""
    value, _ = b._equity_nb(ctx)
    return ctx.cash[0] + value


@njit(**_KW)
def now(ctx: b.Ctx) -> int:
    """The current bar's time, ns since the epoch (UTC)."""
    return ctx.clock[b.C_TS]


@njit(**_KW)
def has_open_orders(ctx: b.Ctx, asset: int) -> bool:
    """Whether ``asset`` has open orders (requests of this bar not counted)."""
    for i in range(ctx.n_orders[0]):
        if ctx.orders[i, o.O_ASSET] == asset and ctx.orders[i, o.O_KIND] != b.DEAD:
            return True
    return False
