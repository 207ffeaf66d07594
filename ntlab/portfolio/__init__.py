"""Portfolio construction: optimisation and discrete allocation through PyPortfolioOpt.

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
