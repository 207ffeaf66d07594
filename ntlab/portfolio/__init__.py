"""Portfolio construction and risk.

* :mod:`.optimize`: optimisation and discrete allocation through PyPortfolioOpt;
* :mod:`.risk`: volatility, VaR/CVaR (historical, parametric, Cornish-Fisher), beta, tracking
  error, drawdowns, risk contributions, historical stress scenarios.

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

__all__ = [
    "OBJECTIVES",
    "OptimizationError",
    "Weights",
    "black_litterman",
    "discrete_allocation",
    "expected_returns",
    "optimize",
    "prices_to_pandas",
    "returns_from_prices",
    "risk_model",
]
