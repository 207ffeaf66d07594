"""The real market data sets by name (public entry point; see :mod:`ntlab.data.datasets`).

>>> import ntlab.datasets
>>> ntlab.datasets.info("spy_1min").kind
'bars'
"""

from ntlab.data.datasets import Dataset, describe, info, load, names

__all__ = ["Dataset", "describe", "info", "load", "names"]
