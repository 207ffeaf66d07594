"""Indicators on Polars frames and arrays: ``feature``, ``with_features``, ``batch``, ``grid``.

Importing this package registers the ``nt`` expression namespace
(``pl.col("close").nt.rolling_std(window=20)``).
"""

from ntlab.features.compute import batch, feature, grid, with_features
from ntlab.features.registry import Indicator, indicator, names

__all__ = ["Indicator", "batch", "feature", "grid", "indicator", "names", "with_features"]
