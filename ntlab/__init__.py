"""ntlab: a Jupyter-first research and live-trading platform.

``import ntlab`` is light: it loads no Numba, torch, CuPy, Panel or papermill. The
sub-packages load what they need when they are used::

    import ntlab.datasets
    trades = ntlab.datasets.load("es_ticks")
"""

from __future__ import annotations

from ntlab.exceptions import (
    BookError,
    CatalogError,
    ConfigError,
    DataError,
    DataQualityWarning,
    EngineUnavailableError,
    NtlabError,
    NtlabWarning,
    SchemaError,
)

__version__ = "0.1.0"

__all__ = [
    "BookError",
    "CatalogError",
    "ConfigError",
    "DataError",
    "DataQualityWarning",
    "EngineUnavailableError",
    "NtlabError",
    "NtlabWarning",
    "SchemaError",
    "__version__",
]
