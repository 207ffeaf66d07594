"""Backtesting engines, results, metrics and validation.

* :func:`backtest`: the event-driven engine (compiled or Python strategies, see
  :mod:`ntlab.strategy`), results as :class:`Result` frames;
* :mod:`.metrics` and :mod:`.tearsheet`: performance metrics with stated formulas, HTML tear sheet;
* :mod:`.splits`: walk-forward and purged k-fold splits with an embargo.
"""

from ntlab.backtest.engine import BarData, backtest, bar_data
from ntlab.backtest.results import Result

__all__ = ["BarData", "Result", "backtest", "bar_data"]
