"""Orders, order events and the execution model: the vocabulary shared by backtests and live.

Everything the compiled (Numba) layer handles is a ``float64`` row, so that an order, a
request and an event cross from Python to Numba and back without objects. This module holds
the column layouts, the codes and their names, and :class:`ExecutionModel`, the fill rules of
a run as one frozen dataclass.

Quantities are signed: ``+`` buys, ``-`` sells. Prices are in the asset's quote currency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ntlab.exceptions import ConfigError

__all__ = [
    "EVENT_KINDS",
    "ORDER_TYPES",
    "REJECT_REASONS",
    "ExecutionModel",
]

# Order types
MARKET = 0
LIMIT = 1
STOP = 2
STOP_LIMIT = 3
ORDER_TYPES = ("market", "limit", "stop", "stop_limit")

# Order table / request rows (float64). A request is an order row whose O_KIND says what to do.
O_ID = 0
O_KIND = 1  # requests: RQ_NEW or RQ_CANCEL
O_ASSET = 2
O_QTY = 3  # signed quantity still to fill
O_FILLED = 4  # signed quantity filled so far
O_TYPE = 5
O_LIMIT = 6
O_STOP = 7
O_BAR = 8  # bar (event) number of the submission
O_ACTIVE = 9  # first bar at which the order may fill (a huge value while it waits for a parent)
O_GROUP = 10  # one-cancels-other group (-1: none)
O_PARENT = 11  # parent order id (-1: none); a child activates once its parent has filled
O_TRIGGERED = 12  # a stop-limit whose stop was hit (it rests as a limit)
O_TAG = 13  # the strategy's own number, carried to the events
O_NOTIONAL = 14  # sum of price * |qty| of the fills (average fill price)
O_WIDTH = 15

RQ_NEW = 0
RQ_CANCEL = 1

# Event log rows
E_BAR = 0  # bar (event) number: exact in float64, where a time in ns is not
E_ORDER = 1
E_KIND = 2
E_REASON = 3
E_ASSET = 4
E_QTY = 5  # signed: the order's quantity (accepted, rejected, cancelled) or the fill's
E_PRICE = 6  # fill price (NaN otherwise)
E_FEE = 7
E_TAG = 8
E_WIDTH = 9

ACCEPTED = 0
REJECTED = 1
PARTIALLY_FILLED = 2
FILLED = 3
CANCELLED = 4
EVENT_KINDS = ("accepted", "rejected", "partially_filled", "filled", "cancelled")

# Reasons of rejections (and of cancellations by the engine)
R_NONE = 0
R_QTY = 1
R_PRICE = 2
R_ASSET = 3
R_SHORT = 4
R_LEVERAGE = 5
R_UNKNOWN_ORDER = 6
R_TYPE = 7
R_BOOK_FULL = 8
R_OCO = 9
R_PARENT = 10
# Rejections by the live risk filter (ntlab.live.risk), before the venue sees the order
R_RISK_ORDER_SIZE = 11
R_RISK_NOTIONAL = 12
R_RISK_POSITION = 13
R_RISK_GROSS = 14
R_RISK_PRICE_BAND = 15
R_RISK_RATE = 16
R_RISK_DUPLICATE = 17
R_RISK_LOSS = 18
R_RISK_DRAWDOWN = 19
R_RISK_REDUCING = 20
R_RISK_HALTED = 21
R_RISK_NO_PRICE = 22
R_RISK_LAST = R_RISK_NO_PRICE
# remote venue (ntlab.live.venue_client)
R_VENUE = 23
R_REMOTE_TYPE = 24
REJECT_REASONS = (
    "",
    "quantity must be finite and non-zero",
    "price missing or not > 0 for this order type (limit needs limit=, stop needs stop=, stop_limit both)",
    "unknown asset index",
    "short selling is disabled (ExecutionModel(allow_short=True) allows it)",
    "the order would take gross exposure above max_leverage x equity",
    "no open order with this id",
    "unknown order type",
    "too many open orders (ExecutionModel(max_open_orders=...))",
    "cancelled: another order of its one-cancels-other group filled",
    "its parent order was cancelled, rejected or is unknown",
    "risk: order quantity above max_order_qty",
    "risk: order notional above max_order_notional",
    "risk: position with the open orders of its side would go above max_position",
    "risk: gross notional with the open orders would go above max_gross_notional",
    "risk: limit or stop price further than price_band_bps from the last price",
    "risk: more than max_orders_per_second orders within one second",
    "risk: same order (asset, qty, type, limit, stop) as one within duplicate_window_ns",
    "risk: loss since the day's start above max_daily_loss (trading halted)",
    "risk: drawdown from peak equity above max_drawdown (trading halted)",
    "risk: reduce-only: the order must reduce its asset's position without flipping it",
    "risk: trading halted (kill switch or set_state): only cancels are allowed",
    "risk: no last price for the asset to check the price limits against",
    "rejected by the venue (its reason is in the venue's report)",
    "the remote venue takes market and limit orders only (no stop, one-cancels-other or parent orders)",
)

# Execution-model parameters as a float64 array (P_*), read by the Numba code.
P_FILL_ON = 0  # 0: market orders fill at the signal bar's close; 1: at the next bar's open
P_FEE_BPS = 1
P_FEE_FIXED = 2
P_SLIPPAGE_BPS = 3
P_VOLUME_LIMIT = 4  # fraction of a bar's volume an asset's fills may take (0: no limit)
P_ALLOW_SHORT = 5
P_MAX_LEVERAGE = 6  # 0: no limit
P_LATENCY = 7  # bars between a decision and the first bar its order may fill at
P_REMOTE = 8  # 1: orders go to a remote venue (set by the live engine): nothing fills locally
P_WIDTH = 9


@dataclass(frozen=True, kw_only=True)
class ExecutionModel:
    """How orders fill, what they cost and what is refused. Shared by every engine.

    Parameters
    ----------
    fill_on : "close" or "next_open"
        Market orders decided on a bar fill at that bar's close (the decision is taken at the
        close; no latency), or at the next bar's open.
    fee_bps, fee_fixed : float
        Fee of a fill: ``|qty| * price * fee_bps / 1e4 + fee_fixed``.
    slippage_bps : float
        Market and stop fills pay ``slippage_bps`` of the price against them (buys higher,
        sells lower). Limit fills get their limit price (or a better open) without slippage.
    volume_limit : float
        Fills of one asset in one bar take at most this fraction of the bar's volume; the rest
        of an order stays open (partial fills). 0 disables the limit (fills are never partial).
    allow_short : bool
        Whether a sell may take a position below zero.
    max_leverage : float
        Orders that would take gross exposure (sum of ``|position| * price``) above
        ``max_leverage * equity`` are rejected. 0 disables the check.
    latency_bars : int
        Bars between a decision and the first bar its order may fill at (0: market orders
        fill at the decision bar's close with ``fill_on="close"``; resting orders always start
        at the next bar).
    max_open_orders : int
        Capacity of the open-order table; orders beyond it are rejected.
    """

    fill_on: Literal["close", "next_open"] = "close"
    fee_bps: float = 0.0
    fee_fixed: float = 0.0
    slippage_bps: float = 0.0
    volume_limit: float = 0.0
    allow_short: bool = True
    max_leverage: float = 0.0
    latency_bars: int = 0
    max_open_orders: int = 256

    def __post_init__(self) -> None:
        if self.fill_on not in ("close", "next_open"):
            msg = f"fill_on={self.fill_on!r} must be 'close' or 'next_open'"
            raise ConfigError(msg)
        for name in ("fee_bps", "fee_fixed", "slippage_bps", "volume_limit", "max_leverage"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                msg = f"{name}={value!r} must be a finite number >= 0"
                raise ConfigError(msg)
        if self.volume_limit > 1:
            msg = f"volume_limit={self.volume_limit!r} is a fraction of the bar's volume: give a value in (0, 1], or 0 for no limit"
            raise ConfigError(msg)
        for name, low in (("latency_bars", 0), ("max_open_orders", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                msg = f"{name}={value!r} must be an int >= {low}"
                raise ConfigError(msg)

    def params(self) -> np.ndarray:
        """The model as the ``float64[P_WIDTH]`` array the compiled engine reads."""
        p = np.zeros(P_WIDTH)
        p[P_FILL_ON] = 0.0 if self.fill_on == "close" else 1.0
        p[P_FEE_BPS] = self.fee_bps
        p[P_FEE_FIXED] = self.fee_fixed
        p[P_SLIPPAGE_BPS] = self.slippage_bps
        p[P_VOLUME_LIMIT] = self.volume_limit
        p[P_ALLOW_SHORT] = 1.0 if self.allow_short else 0.0
        p[P_MAX_LEVERAGE] = self.max_leverage
        p[P_LATENCY] = self.latency_bars
        return p

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
