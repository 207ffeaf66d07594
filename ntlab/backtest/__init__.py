"""Backtesting engines, results, metrics and validation.

* :func:`backtest`: the event-driven engine (compiled or Python strategies, see
  :mod:`ntlab.strategy`), results as :class:`Result` frames;
* :func:`backtest_signals`, :func:`backtest_targets`: vectorised runs through the same broker;
* :func:`crossovers`, :func:`sweep_signals`: signal columns for many parameter sets and their
  metrics in one fused pass (a parameter sweep without per-run logs);
* :mod:`.metrics` and :mod:`.tearsheet`: performance metrics with stated formulas, HTML tear sheet;
* :mod:`.splits`: walk-forward and purged k-fold splits with an embargo.
"""

from ntlab.backtest.engine import BarData, backtest, bar_data
from ntlab.backtest.results import Result
from ntlab.backtest.vectorized import (
    backtest_signals,
    backtest_targets,
    crossovers,
    sweep_signals,
)

__all__ = ["BarData", "Result", "backtest", "backtest_signals", "backtest_targets", "bar_data", "crossovers", "sweep_signals"]
