"""Strategies: a Python class with handlers, or a compiled (Numba) function over a small state.

Both see a context and nothing else: the current bar, positions, cash, open orders and
precomputed features, and the same verbs to ask for orders. Neither can tell a backtest from
live trading, and neither can see a bar before it has closed.

Python::

    class Cross(Strategy):
        def on_start(self, ctx):
            self.fast, self.slow = rolling_mean_state_nb(10), rolling_mean_state_nb(50)

        def on_bar(self, ctx):
            ...
            if ctx.position("SPY") == 0 and crossed_up:
                ctx.buy("SPY", 1)

Compiled (``on_bar(ctx, state)`` is an ``@njit`` function; ``init(**params)`` makes its
state: a ``float64`` array or a tuple of them, e.g. one streaming-kernel state each)::

    strategy = CompiledStrategy(on_bar=cross_on_bar, init=cross_init)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numba
import numpy as np

from ntlab.exceptions import ConfigError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.strategy import verbs as v

__all__ = ["CompiledStrategy", "Context", "Fill", "Strategy"]

_TYPES = {name: code for code, name in enumerate(o.ORDER_TYPES)}


class Fill(NamedTuple):
    """One fill, as a Python strategy's ``on_fill`` receives it."""

    order_id: int
    symbol: str
    qty: float
    price: float
    fee: float
    ts: dt.datetime
    partial: bool
    tag: float


@dataclass(frozen=True)
class CompiledStrategy:
    """A strategy compiled by Numba: ``on_bar(ctx, state)`` called once per bar, inside the
    engine's compiled loop; ``init(**params)`` returns its state: a ``float64`` array or a
    tuple of them."""

    on_bar: Any
    init: Callable[..., np.ndarray]

    def __post_init__(self) -> None:
        if not (hasattr(self.on_bar, "py_func") or numba.config.DISABLE_JIT):
            msg = "on_bar must be a Numba @njit function of (ctx, state); decorate it with @numba.njit"
            raise ConfigError(msg)

    def state(self, params: dict[str, Any]) -> np.ndarray | tuple[np.ndarray, ...]:
        """The initial state for ``params``, checked: a NumPy array, or a tuple of them (kernel
        states side by side without slicing one array: a slice costs ~25 ns a bar; an exported
        model's float32 weights and int64 layout)."""
        state = self.init(**params)
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            if not (isinstance(part, np.ndarray) and (part.dtype.kind in "fiub")):
                got = f"{part.dtype} array" if isinstance(part, np.ndarray) else type(part).__name__
                msg = f"init(**params) must return a numeric NumPy array or a tuple of them, got {got}"
                raise ConfigError(msg)
        return state


class Strategy:
    """Base class of Python strategies; override the handlers you need.

    Handlers: ``on_start(ctx)`` before the first bar, ``on_bar(ctx)`` at each bar's close
    (``on_trade(ctx)`` instead, when defined, for each trade of trade-tick data; the trade is
    the context's current bar), ``on_fill(ctx, fill)`` for each fill, in order, before the next
    ``on_bar`` (and before ``on_stop``), ``on_stop(ctx)`` after the last bar.
    Keyword arguments given to the engine (``params``) are set as attributes first.
    """

    def __init__(self, **params: Any) -> None:
        for name, value in params.items():
            setattr(self, name, value)

    def on_start(self, ctx: Context) -> None:
        """Called once before the first bar."""

    def on_bar(self, ctx: Context) -> None:
        """Called at each bar's close."""

    def on_trade(self, ctx: Context) -> None:
        """Called for each trade of trade-tick data, when overridden (else ``on_bar`` is)."""

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        """Called for each fill of this strategy's orders."""

    def on_stop(self, ctx: Context) -> None:
        """Called once after the last bar."""


class Context:
    """What a Python strategy sees: the current bar, the books, and the verbs.

    Symbols are names (``ctx.buy("SPY", 1)``); the verbs are the compiled ones of
    :mod:`ntlab.strategy.verbs` (about a microsecond a call from Python).
    """

    def __init__(self, ctx: b.Ctx, symbols: list[str], features: list[str] | None = None) -> None:
        self._use(ctx)
        self.symbols = list(symbols)
        self.feature_names = list(features or [])
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def _use(self, ctx: b.Ctx) -> None:
        """Read from (and act on) ``ctx``: its arrays are kept for reading without a call."""
        self._ctx = ctx
        self._a = b.arrays(ctx)

    def asset(self, symbol: str) -> int:
        """The column number of ``symbol``."""
        try:
            return self._index[symbol]
        except KeyError:
            msg = f"unknown symbol {symbol!r}; this run trades {self.symbols}"
            raise ConfigError(msg) from None

    # -- reading -----------------------------------------------------------------------------
    @property
    def now(self) -> dt.datetime:
        """The current bar's time (UTC)."""
        return dt.datetime.fromtimestamp(int(self._a['clock'][b.C_TS]) / 1e9, tz=dt.UTC)

    @property
    def bar_index(self) -> int:
        return int(self._a['clock'][b.C_BAR])

    def bar(self, symbol: str) -> dict[str, float]:
        """The current bar of ``symbol`` (NaN values when it has none at this time)."""
        row = self._a['bar'][self.asset(symbol)]
        return {"open": row[0], "high": row[1], "low": row[2], "close": row[3], "volume": row[4]}

    def price(self, symbol: str) -> float:
        return float(self._a['bar'][self.asset(symbol), b.CLOSE])

    def feature(self, symbol: str, name: str) -> float:
        """The current value of precomputed feature ``name`` for ``symbol``."""
        try:
            f = self.feature_names.index(name)
        except ValueError:
            msg = f"unknown feature {name!r}; this run has {self.feature_names}"
            raise ConfigError(msg) from None
        return float(self._a['features'][self.asset(symbol), f])

    def position(self, symbol: str) -> float:
        return float(self._a['position'][self.asset(symbol)])

    @property
    def cash(self) -> float:
        return float(self._a['cash'][0])

    @property
    def equity(self) -> float:
        return float(v.equity(self._ctx))

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open orders (of ``symbol``), oldest first."""
        out = []
        for row in self._a['orders'][: self._a['n_orders'][0]]:
            if row[o.O_KIND] == b.DEAD or (symbol is not None and row[o.O_ASSET] != self.asset(symbol)):
                continue
            out.append({
                "id": int(row[o.O_ID]),
                "symbol": self.symbols[int(row[o.O_ASSET])],
                "qty": float(row[o.O_QTY]),
                "type": o.ORDER_TYPES[int(row[o.O_TYPE])],
                "limit": float(row[o.O_LIMIT]),
                "stop": float(row[o.O_STOP]),
            })
        return out

    # -- verbs -------------------------------------------------------------------------------
    def submit(
        self,
        symbol: str,
        qty: float,
        order_type: str = "market",
        *,
        limit: float | None = None,
        stop: float | None = None,
        group: int | None = None,
        parent: int | None = None,
        tag: float = 0.0,
    ) -> int:
        """Ask for an order; returns its id (see :func:`ntlab.strategy.verbs.submit`)."""
        if order_type not in _TYPES:
            msg = f"order_type={order_type!r} is not one of {o.ORDER_TYPES}"
            raise ConfigError(msg)
        return int(
            v.submit(
                self._ctx,
                self.asset(symbol),
                float(qty),
                _TYPES[order_type],
                np.nan if limit is None else float(limit),
                np.nan if stop is None else float(stop),
                -1 if group is None else int(group),
                -1 if parent is None else int(parent),
                float(tag),
            )
        )

    def buy(self, symbol: str, qty: float) -> int:
        return self.submit(symbol, qty)

    def sell(self, symbol: str, qty: float) -> int:
        return self.submit(symbol, -qty)

    def cancel(self, order_id: int) -> int:
        return int(v.cancel(self._ctx, int(order_id)))

    def flatten(self, symbol: str | None = None) -> None:
        """Cancel open orders and close positions (of ``symbol``, or all)."""
        for s in [symbol] if symbol is not None else self.symbols:
            v.flatten(self._ctx, self.asset(s))

    def bracket(self, symbol: str, qty: float, *, take_profit: float, stop_loss: float, limit: float | None = None) -> int:
        """Entry plus one-cancels-other take-profit and stop-loss (see :func:`verbs.bracket`)."""
        lim = np.nan if limit is None else float(limit)
        return int(v.bracket(self._ctx, self.asset(symbol), float(qty), float(take_profit), float(stop_loss), lim))
