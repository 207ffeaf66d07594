"""Backtesting engines, results, metrics and validation.

* :func:`backtest`: the event-driven engine (compiled or Python strategies, see
  :mod:`ntlab.strategy`), results as :class:`Result` frames;
* :func:`backtest_signals`, :func:`backtest_targets`: vectorised runs through the same broker;
* :mod:`.metrics` and :mod:`.tearsheet`: performance metrics with stated formulas, HTML tear sheet;
* :mod:`.splits`: walk-forward and purged k-fold splits with an embargo.
"""

from ntlab.backtest.engine import BarData, backtest, bar_data
from ntlab.backtest.results import Result
from ntlab.backtest.vectorized import backtest_signals, backtest_targets

__all__ = ["BarData", "Result", "backtest", "backtest_signals", "backtest_targets", "bar_data"]
