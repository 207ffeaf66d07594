"""Example strategies, written once as compiled functions and once as Python classes.

The moving-average crossover is the one the peers (vectorbt, backtrader) are checked against:
long-only, ``size`` units, enter when the fast SMA crosses above the slow one, exit when it
crosses below; the averages are the streaming kernels of :mod:`ntlab.kernels.rolling`, fed one
close at a time, so no bar can see the future.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ntlab.kernels import indicators as ki
from ntlab.kernels import rolling as kr
from ntlab.kernels._common import _KW
from ntlab.models.export import ExportedMLP, mlp_forward_nb
from ntlab.strategy import verbs as v
from ntlab.strategy.base import CompiledStrategy, Context, Strategy

__all__ = ["EmaCross", "SmaCross", "ema_cross", "mlp_returns", "mlp_signal", "ping_pong", "sma_cross"]

# State of the crossover: (fast average's state, slow average's state, [size, previous fast - slow])
_SIZE, _PREV = 0, 1


def _cross_init(fast_state: np.ndarray, slow_state: np.ndarray, size: float) -> tuple[np.ndarray, ...]:
    return fast_state, slow_state, np.array([size, np.nan])


@njit(**_KW)
def _cross_signal_nb(scalars: np.ndarray, fast: float, slow: float) -> int:
    """+1 on a cross up, -1 on a cross down, 0 otherwise (both averages defined at t-1 and t)."""
    diff = fast - slow
    prev = scalars[_PREV]
    scalars[_PREV] = diff
    if np.isnan(prev) or np.isnan(diff):
        return 0
    if diff > 0.0 and prev <= 0.0:
        return 1
    if diff < 0.0 and prev >= 0.0:
        return -1
    return 0


@njit(**_KW, inline="always")  # a call passing ctx costs a reference count
def _act_nb(ctx, scalars: np.ndarray, signal: int) -> None:  # noqa: ANN001
    if signal == 0 or v.has_open_orders(ctx, 0):  # an order still on its way counts (a remote venue's fill comes later)
        return
    held = v.position(ctx, 0)
    if signal > 0 and held == 0.0:
        v.buy(ctx, 0, scalars[_SIZE])
    elif signal < 0 and held > 0.0:
        v.sell(ctx, 0, held)


@njit(**_KW)
def _sma_cross_on_bar(ctx, state: tuple) -> None:  # noqa: ANN001
    fast_state, slow_state, scalars = state
    close = v.price(ctx, 0)
    fast = kr.rolling_mean_update_nb(fast_state, close)
    slow = kr.rolling_mean_update_nb(slow_state, close)
    _act_nb(ctx, scalars, _cross_signal_nb(scalars, fast, slow))


def _sma_cross_init(fast: int = 10, slow: int = 50, size: float = 1.0) -> tuple[np.ndarray, ...]:
    return _cross_init(kr.rolling_mean_state_nb(fast), kr.rolling_mean_state_nb(slow), size)


@njit(**_KW)
def _ema_cross_on_bar(ctx, state: tuple) -> None:  # noqa: ANN001
    ema_state, scalars = state
    close = v.price(ctx, 0)
    _act_nb(ctx, scalars, _cross_signal_nb(scalars, close, ki.ema_update_nb(ema_state, close)))


def _ema_cross_init(span: int = 100, size: float = 1.0) -> tuple[np.ndarray, ...]:
    """Price against its EMA (the price is the 'fast' side: an EMA of span 1 would equal it)."""
    return ki.ema_state_nb(span), np.array([size, np.nan])


sma_cross = CompiledStrategy(on_bar=_sma_cross_on_bar, init=_sma_cross_init)
"""Long-only SMA(fast)/SMA(slow) crossover on the first asset; params ``fast, slow, size``."""

ema_cross = CompiledStrategy(on_bar=_ema_cross_on_bar, init=_ema_cross_init)
"""Long-only price/EMA(span) cross on the first asset; params ``span, size``."""


class _Cross(Strategy):
    """Long-only cross of two averages of one symbol's close (``symbol``, default the first),
    as the compiled :func:`_cross_signal_nb` and :func:`_act_nb` decide it; subclasses give the
    difference of the averages."""

    size: float = 1.0
    symbol: str | None = None

    def on_start(self, ctx: Context) -> None:
        self._prev = np.nan
        self._symbol = self.symbol or ctx.symbols[0]

    def difference(self, close: float) -> float:
        """Fast average minus slow average after ``close`` (NaN in warm-up)."""
        raise NotImplementedError

    def on_bar(self, ctx: Context) -> None:
        diff = self.difference(ctx.price(self._symbol))
        prev, self._prev = self._prev, diff
        if np.isnan(prev) or np.isnan(diff) or ctx.open_orders(self._symbol):  # an order on its way counts
            return
        held = ctx.position(self._symbol)
        if diff > 0 and prev <= 0 and held == 0:
            ctx.buy(self._symbol, self.size)
        elif diff < 0 and prev >= 0 and held > 0:
            ctx.sell(self._symbol, held)


class SmaCross(_Cross):
    """The SMA crossover as a Python strategy (same rules as :data:`sma_cross`)."""

    fast: int = 10
    slow: int = 50

    def on_start(self, ctx: Context) -> None:
        super().on_start(ctx)
        self._fast = kr.rolling_mean_state_nb(self.fast)
        self._slow = kr.rolling_mean_state_nb(self.slow)

    def difference(self, close: float) -> float:
        return kr.rolling_mean_update_nb(self._fast, close) - kr.rolling_mean_update_nb(self._slow, close)


class EmaCross(_Cross):
    """The price/EMA cross as a Python strategy (same rules as :data:`ema_cross`)."""

    span: int = 100

    def on_start(self, ctx: Context) -> None:
        super().on_start(ctx)
        self._ema = ki.ema_state_nb(self.span)

    def difference(self, close: float) -> float:
        return close - ki.ema_update_nb(self._ema, close)


# ---------------------------------------------------------------------------------------------
# Trading on an exported model's prediction


@njit(**_KW)
def _mlp_on_bar(ctx, state: tuple) -> None:  # noqa: ANN001
    """Features of the first asset (its current row) → exported MLP → long above ``threshold``,
    flat below ``-threshold`` (state: params, layout, scratch, x, out, [threshold, size])."""
    params, layout, scratch, x, out, knobs = state
    feats = ctx.features
    for i in range(x.shape[0]):
        if np.isnan(feats[0, i]):  # a feature in warm-up: no decision
            return
        x[i] = feats[0, i]
    mlp_forward_nb(params, layout, x, scratch, out)
    held = v.position(ctx, 0)
    if out[0] > knobs[0] and held == 0.0:
        v.buy(ctx, 0, knobs[1])
    elif out[0] < -knobs[0] and held > 0.0:
        v.sell(ctx, 0, held)


def _mlp_init(net: ExportedMLP, threshold: float = 0.0, size: float = 1.0) -> tuple[np.ndarray, ...]:
    x = np.zeros(net.inputs, dtype=np.float32)
    return net.params, net.layout, net.scratch(), x, np.zeros(net.outputs, dtype=np.float32), np.array([threshold, size])


mlp_signal = CompiledStrategy(on_bar=_mlp_on_bar, init=_mlp_init)
"""Trade the first asset on an exported MLP's prediction from the bar's feature row (pass
``features=[...]`` to :func:`~ntlab.backtest.backtest`, scaled as in training); params
``net`` (an :class:`~ntlab.models.export.ExportedMLP`), ``threshold``, ``size``."""


@njit(**_KW)
def _mlp_returns_on_bar(ctx, state: tuple) -> None:
    """The last ``inputs`` log returns of the first asset, computed as events arrive → exported
    MLP → long above ``threshold``, flat below ``-threshold``
    (state: params, layout, scratch, x, out, [threshold, size, scale, events seen], log prices)."""
    params, layout, scratch, x, out, knobs, logs = state
    close = ctx.bar[0, 3]
    if np.isnan(close):
        return
    n = logs.shape[0]
    seen = np.int64(knobs[3])
    logs[seen % n] = math.log(close)
    knobs[3] = seen + 1
    if seen < n - 1:  # warm-up: fewer than ``inputs`` returns so far
        return
    now = logs[seen % n]
    for i in range(x.shape[0]):  # x[i]: return over the last i + 1 events
        x[i] = (now - logs[(seen - 1 - i) % n]) * knobs[2]
    mlp_forward_nb(params, layout, x, scratch, out)
    held = v.position(ctx, 0)
    if out[0] > knobs[0] and held == 0.0:
        v.buy(ctx, 0, knobs[1])
    elif out[0] < -knobs[0] and held > 0.0:
        v.sell(ctx, 0, held)


def _mlp_returns_init(net: ExportedMLP, threshold: float = 0.0, size: float = 1.0, scale: float = 1e4) -> tuple[np.ndarray, ...]:
    x = np.zeros(net.inputs, dtype=np.float32)
    knobs = np.array([threshold, size, scale, 0.0])
    return net.params, net.layout, net.scratch(), x, np.zeros(net.outputs, dtype=np.float32), knobs, np.zeros(net.inputs + 1)


mlp_returns = CompiledStrategy(on_bar=_mlp_returns_on_bar, init=_mlp_returns_init)
"""Trade the first asset on an exported MLP fed with its last ``net.inputs`` log returns over
1, 2, ... events (in basis points with the default ``scale``), computed in the strategy as the
events arrive: the whole event → features → model → order path runs in the compiled loop.
Params ``net``, ``threshold``, ``size``, ``scale``."""


@njit(**_KW)
def _ping_pong_on_bar(ctx, state: np.ndarray) -> None:  # noqa: ANN001
    state[0] += 1.0
    every = state[1]
    if state[0] % every == 0.0:
        v.buy(ctx, 0, state[2]) if (state[0] // every) % 2.0 == 1.0 else v.sell(ctx, 0, state[2])


def _ping_pong_init(every: int = 10, size: float = 1.0) -> np.ndarray:
    return np.array([0.0, float(every), size])


ping_pong = CompiledStrategy(on_bar=_ping_pong_on_bar, init=_ping_pong_init)
"""A load generator, not a strategy: buys ``size`` of the first symbol on every ``every``-th
event and sells it on the next, whatever the position (a steady order flow for latency
measurements: the order count does not depend on how fast fills come back)."""
