"""Shared fixtures. Jupyter state goes to a temporary folder, never the home directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_JUPYTER = Path(tempfile.mkdtemp(prefix="ntlab-jupyter-"))
for _name in ("CONFIG", "DATA", "RUNTIME"):
    os.environ.setdefault(f"JUPYTER_{_name}_DIR", str(_JUPYTER / _name.lower()))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO
