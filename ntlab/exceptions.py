"""The exception and warning tree of ntlab.

Every error ntlab raises on purpose derives from :class:`NtlabError`; the specific classes
also derive from the matching built-in (``ValueError``, ``RuntimeError``...) so that generic
handlers keep working. Messages say what was wrong, with the value, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BookError",
    "CatalogError",
    "ConfigError",
    "DataError",
    "DataQualityWarning",
    "EngineUnavailableError",
    "ModelError",
    "NtlabError",
    "NtlabWarning",
    "SchemaError",
]


class NtlabError(Exception):
    """Root of every error raised by ntlab."""


class DataError(NtlabError, ValueError):
    """Market data that breaks a rule: unsorted timestamps, bad prices, crossed quotes..."""


class SchemaError(DataError):
    """A frame whose columns or dtypes do not match the schema of its kind."""


class BookError(DataError):
    """An order-book update that cannot be applied (sequence gap, missing snapshot...)."""


class CatalogError(NtlabError):
    """A catalog that cannot be read or written as asked."""


class ConfigError(NtlabError, ValueError):
    """A configuration or parameter value that is not allowed."""


class EngineUnavailableError(NtlabError, RuntimeError):
    """A compute engine (``"cupy"``...) was asked for explicitly but cannot run here."""


class ModelError(NtlabError):
    """A model artifact that cannot be saved, found or trusted (missing, corrupted, mismatched)."""


class NtlabWarning(UserWarning):
    """Root of every warning emitted by ntlab."""


class DataQualityWarning(NtlabWarning):
    """Rows were dropped or repaired while loading; the message says which and how many."""
