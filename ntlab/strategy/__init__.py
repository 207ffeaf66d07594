"""Strategies, one API for research, backtests and live trading.

* vectorised: signals or target positions as arrays / Polars columns
  (:func:`ntlab.backtest.backtest_signals`, :func:`ntlab.backtest.backtest_targets`);
* compiled: :class:`CompiledStrategy`, a Numba ``on_bar(ctx, state)`` using :mod:`.verbs`;
* Python: a :class:`Strategy` subclass with ``on_bar`` / ``on_fill`` handlers and a
  :class:`Context` with the same verbs.
"""

from ntlab.strategy.base import CompiledStrategy, Context, Fill, Strategy

__all__ = ["CompiledStrategy", "Context", "Fill", "Strategy"]
