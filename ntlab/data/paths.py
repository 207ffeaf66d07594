"""Where the real market data lives.

The data set folder (``shared/data`` beside the repository checkout, holding ``MANIFEST.md``)
is found without configuration; set ``NTLAB_DATA`` to point elsewhere.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from ntlab.exceptions import DataError

__all__ = ["ENV_VAR", "data_dir", "data_file"]

ENV_VAR = "NTLAB_DATA"
_MARKER = "MANIFEST.md"


def _ancestors(start: Path) -> list[Path]:
    start = start.resolve()
    return [start, *start.parents]


def _git_origin(repo: Path) -> Path | None:
    """The local path a checkout was cloned from (``git clone . /tmp/x`` keeps it as origin)."""
    config = repo / ".git" / "config"
    if not config.is_file():
        return None
    parser = configparser.ConfigParser(strict=False)
    try:
        parser.read(config)
        url = parser.get('remote "origin"', "url")
    except (configparser.Error, OSError):
        return None
    url = url.removeprefix("file://")
    path = Path(url)
    return path if path.is_absolute() and path.is_dir() else None


def _candidates() -> list[Path]:
    roots: list[Path] = []
    for start in (Path.cwd(), Path(__file__).parent):
        for anc in _ancestors(start):
            roots.append(anc)
            origin = _git_origin(anc)
            if origin is not None:
                roots.extend(_ancestors(origin))
    seen: dict[Path, None] = {}
    for root in roots:
        seen.setdefault(root / "shared" / "data", None)
    return list(seen)


def data_dir() -> Path:
    """Return the folder of the real data sets.

    ``$NTLAB_DATA`` wins when set. Otherwise the first ``shared/data`` folder holding
    ``MANIFEST.md`` found beside an ancestor of the working directory or of this package
    (and of the repository a checkout was cloned from).

    Raises
    ------
    DataError
        When ``$NTLAB_DATA`` points at a missing folder or no data folder is found.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            msg = f"{ENV_VAR}={env!r} is not a folder; point it at the shared data folder"
            raise DataError(msg)
        return path.resolve()
    for cand in _candidates():
        if (cand / _MARKER).is_file():
            return cand
    msg = (
        f"the real data folder was not found (looked for shared/data/{_MARKER} beside the "
        f"checkout and its parents); set {ENV_VAR}=/path/to/shared/data"
    )
    raise DataError(msg)


def data_file(relative: str) -> Path:
    """Return the path of one file of the data folder, checking that it exists."""
    path = data_dir() / relative
    if not path.is_file():
        msg = f"data file {relative!r} is missing from {data_dir()}; is {ENV_VAR} right?"
        raise DataError(msg)
    return path
