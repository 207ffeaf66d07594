"""Portfolio construction and risk.

* :mod:`.optimize`: optimisation and discrete allocation through PyPortfolioOpt;
* :mod:`.risk`: volatility, VaR/CVaR (historical, parametric, Cornish-Fisher), beta, tracking
  error, drawdowns, risk contributions, historical stress scenarios;
* :mod:`.rebalance`: rolling re-optimisation backtests with costs and turnover limits;
* :mod:`.plots`: efficient frontier, weights over time, risk contributions.

Importing this package loads PyPortfolioOpt and cvxpy; ``import ntlab`` does not.
"""

from __future__ import annotations

from ntlab.portfolio.optimize import (
    OBJECTIVES,
    OptimizationError,
    Weights,
    black_litterman,
    discrete_allocation,
    expected_returns,
    optimize,
    prices_to_pandas,
    returns_from_prices,
    risk_model,
)
from ntlab.portfolio.plots import plot_frontier, plot_risk_contributions, plot_weights
from ntlab.portfolio.rebalance import RebalanceResult, compare, rebalance

__all__ = [
    "OBJECTIVES",
    "OptimizationError",
    "RebalanceResult",
    "Weights",
    "black_litterman",
    "compare",
    "discrete_allocation",
    "expected_returns",
    "optimize",
    "plot_frontier",
    "plot_risk_contributions",
    "plot_weights",
    "prices_to_pandas",
    "rebalance",
    "returns_from_prices",
    "risk_model",
]
