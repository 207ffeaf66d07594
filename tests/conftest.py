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


def pytest_configure(config: pytest.Config) -> None:
    # ntlab's warnings are errors in the suite: a test that expects one says so with
    # pytest.warns. Added here rather than in pyproject.toml so that ntlab is first imported
    # after coverage has started.
    config.addinivalue_line("filterwarnings", "error::ntlab.exceptions.NtlabWarning")


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO
