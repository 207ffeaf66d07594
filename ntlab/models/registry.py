"""A folder-backed registry of versioned models: immutable versions, checked on load, promotable.

Layout::

    <root>/<name>/v0001/weights.pt       torch.save(model.state_dict())
    <root>/<name>/v0001/manifest.json    what the version is and how it was made (below)
    <root>/<name>/v0002/...
    <root>/<name>/stages.json            the production version and the history of promotions

``manifest.json`` holds ``format`` (1), ``name``, ``version``, ``created`` (UTC, ISO 8601),
``config``, ``feature_spec``, ``data_hash``, ``metrics``, ``notes``, ``packages`` (python,
torch, numpy, polars, ntlab; None for one that is not installed), ``git`` (``{"commit",
"dirty"}`` of the repository holding the working directory, ``dirty`` when ``git status``
lists any change, untracked files included; None outside a repository or without git)
and ``artifacts`` (``{file: {"sha256", "size"}}`` for every other file of the version).

Conventions
-----------
* Versions are numbered 1, 2, ... per name and never change once written. :meth:`Registry.save`
  writes a hidden temporary folder beside the versions (``.tmp-<id>``), fsyncs every file and the
  folder, then renames it to ``vNNNN`` with :func:`os.replace`: a reader sees the whole version
  or none of it. A failed save removes its temporary folder; one left by a killed process is
  ignored by every reader and removed by a later save once it is an hour old. One writer at a
  time per name: two saves racing for the same number make the second fail with
  :class:`ModelError` (save it again).
* :meth:`Registry.load` checks the size and SHA-256 of every artifact against the manifest
  before it opens any of them; weights are read with ``torch.load(..., weights_only=True)``.
* ``stages.json`` (rewritten atomically) keeps a stack of promoted versions: :meth:`promote`
  pushes, :meth:`rollback` pops back to the version promoted before, and every change is appended
  to ``history`` with its UTC time. In :meth:`Registry.list` the top of the stack is
  ``"production"``, a version promoted earlier ``"archived"``, any other ``""``.
* Model names are folder names: letters, digits, ``.``, ``_`` and ``-``, starting with a letter
  or digit, at most 100 characters. Configs, feature specs and metrics must be JSON: dicts with
  string keys, lists, strings, numbers, booleans and None; NumPy scalars and arrays are accepted
  and stored as their Python values (lists for arrays).
"""

from __future__ import annotations

import copy
import hashlib
import html
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from ntlab._fs import fsync
from ntlab.exceptions import ConfigError, ModelError

__all__ = ["LoadedModel", "ModelVersion", "Registry"]

FORMAT = 1
WEIGHTS = "weights.pt"
MANIFEST = "manifest.json"
STAGES = "stages.json"
PACKAGES = ("torch", "numpy", "polars", "ntlab")
STALE_SECONDS = 3600.0

_TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_VERSION_DIR = re.compile(r"v(\d{4,})")
_CHUNK = 1 << 20
_LISTED = ("name", "version", "created", "data_hash")
_REQUIRED = (*_LISTED, "format", "config", "feature_spec", "metrics", "notes", "artifacts")
_GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class ModelVersion:
    """One saved version: where it lies and its manifest.

    Attributes
    ----------
    name, version
        The model name and the version number (1, 2, ...).
    path
        The version folder, ``<root>/<name>/vNNNN``.
    manifest
        The manifest as written to ``manifest.json``.
    """

    name: str
    version: int
    path: Path
    manifest: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class LoadedModel:
    """A version read back from the registry, its artifacts checked against the manifest.

    Attributes
    ----------
    name, version, path
        As in :class:`ModelVersion`.
    manifest
        The parsed ``manifest.json``.
    state_dict
        The weights, as saved by ``model.state_dict()``.
    """

    name: str
    version: int
    path: Path
    manifest: dict[str, Any] = field(repr=False)
    state_dict: dict[str, torch.Tensor] = field(repr=False)

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the config the model was saved with."""
        return copy.deepcopy(self.manifest["config"])

    def build(self, builder: Callable[[dict[str, Any]], nn.Module]) -> nn.Module:
        """Build the network from the saved config and load the weights into it.

        Parameters
        ----------
        builder
            ``config -> nn.Module``, e.g. ``lambda c: nets.build(nets.config_from_dict(c))``;
            it gets a copy of the config.

        Returns
        -------
        nn.Module
            The module with the weights loaded (strictly: every key must match), in eval mode.

        Raises
        ------
        ModelError
            The builder returned no module, or the weights do not fit it.
        """
        module = builder(self.config)
        if not isinstance(module, nn.Module):
            raise ModelError(f"the builder returned {type(module).__name__}, not a torch.nn.Module")
        try:
            module.load_state_dict(self.state_dict)
        except RuntimeError as err:
            raise ModelError(
                f"the weights of {self.name!r} v{self.version} do not fit the module built from its config: {err}"
            ) from err
        return module.eval()


class Registry:
    """Versioned models in a folder; see the module docstring for the layout and conventions.

    Parameters
    ----------
    root
        The registry folder; created by the first save. A missing folder reads as empty.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ writing
    def save(
        self,
        model: nn.Module,
        *,
        name: str,
        config: dict[str, Any],
        feature_spec: dict[str, Any],
        data_hash: str,
        metrics: dict[str, Any],
        notes: str = "",
    ) -> ModelVersion:
        """Save ``model``'s weights and its description as the next version of ``name``.

        Parameters
        ----------
        model
            Any module; its ``state_dict()`` is saved.
        name
            The model name (a safe folder name).
        config
            What rebuilds the network (passed to the builder of :meth:`LoadedModel.build`).
        feature_spec
            What makes its inputs: feature names, lookback, scaler state...
        data_hash
            An identifier of the training data.
        metrics
            Evaluation results; numeric ones become ``metric_<key>`` columns of :meth:`list`.
        notes
            Free text.

        Returns
        -------
        ModelVersion

        Raises
        ------
        ConfigError
            An unsafe name, a model that is no module, or a value that is not JSON (the message
            names its key).
        ModelError
            Another save took the same version number first.
        """
        _check_name(name)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        described = _describe(
            config=config, feature_spec=feature_spec, data_hash=data_hash, metrics=metrics, notes=notes
        )
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        version = max(self._versions(name), default=0) + 1
        tmp = folder / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            manifest = _write_version(tmp, model, name=name, version=version, described=described)
            _publish(tmp, folder / _version_dir(version), name=name, version=version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ModelVersion(name, version, folder / _version_dir(version), manifest)

    def promote(self, name: str, version: int | str) -> int:
        """Make ``version`` (an int or ``"latest"``) the production version of ``name``.

        Promoting the current production version again changes nothing. Returns the version.
        """
        number = self._resolve(name, version)
        stages = self._stages(name)
        if stages["stack"][-1:] != [number]:
            self._record(name, stages, [*stages["stack"], number], action="promote")
        return number

    def rollback(self, name: str) -> int:
        """Put back the version that was production before the current one; return it.

        Raises
        ------
        ModelError
            No version was promoted before the current one.
        """
        self._check_known(name)
        stages = self._stages(name)
        stack = stages["stack"][:-1]
        if not stack:
            current = f"v{stages['stack'][0]}" if stages["stack"] else "none"
            raise ModelError(f"{name!r} has no earlier promoted version to roll back to (production: {current})")
        self._record(name, stages, stack, action="rollback")
        return stack[-1]

    # ------------------------------------------------------------------ reading
    def load(
        self, name: str, version: int | str | None = None, *, map_location: str | torch.device = "cpu"
    ) -> LoadedModel:
        """Read a version after checking every artifact against its manifest.

        Parameters
        ----------
        name
            The model name.
        version
            An int, ``"latest"``, or None for the production version (the latest when none is
            promoted).
        map_location
            Where the tensors are loaded.

        Raises
        ------
        ModelError
            An unknown name or version (the message lists the known ones), a manifest that is
            missing or unreadable, or an artifact that is missing or whose size or SHA-256
            differs from the manifest.
        """
        number = self._resolve(name, version)
        path = self.root / name / _version_dir(number)
        manifest = _read_manifest(path, name=name, version=number)
        _verify(path, manifest)
        state_dict = torch.load(path / WEIGHTS, map_location=map_location, weights_only=True)
        return LoadedModel(name, number, path, manifest, state_dict)

    def names(self) -> list[str]:
        """The model names holding at least one version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _NAME.fullmatch(p.name) and self._versions(p.name))

    def versions(self, name: str) -> list[int]:
        """The version numbers of ``name``, ascending; ModelError for an unknown name."""
        self._check_known(name)
        return self._versions(name)

    def production(self, name: str) -> int | None:
        """The production version of ``name``, None when none is promoted."""
        self._check_known(name)
        stack = self._stages(name)["stack"]
        return stack[-1] if stack else None

    def history(self, name: str) -> list[dict[str, Any]]:
        """The promotions and rollbacks of ``name``, oldest first (``action``, ``version``, ``from``, ``at``)."""
        self._check_known(name)
        return self._stages(name)["history"]

    def list(self, name: str | None = None) -> pl.DataFrame:
        """One row per version: name, version, created, data_hash, ``metric_<key>`` columns, stage.

        Numeric and boolean metrics become Float64 columns (null where a version lacks one);
        other metrics stay in the manifest. ``name`` restricts the rows to one model.
        """
        rows = [row for n in (self.names() if name is None else [name]) for row in self._rows(n)]
        metric_keys = sorted({k for row in rows for k in row["metrics"]})
        schema = {"name": pl.String, "version": pl.Int64, "created": pl.Datetime("us", "UTC"), "data_hash": pl.String}
        schema |= {f"metric_{k}": pl.Float64 for k in metric_keys} | {"stage": pl.String}
        data = {
            "name": [r["name"] for r in rows],
            "version": [r["version"] for r in rows],
            "created": [datetime.fromisoformat(r["created"]) for r in rows],
            "data_hash": [r["data_hash"] for r in rows],
            **{f"metric_{k}": [r["metrics"].get(k) for r in rows] for k in metric_keys},
            "stage": [r["stage"] for r in rows],
        }
        return pl.DataFrame(data, schema=schema)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        lines = [f"Registry({str(self.root)!r})"]
        for name, versions, production in self._layout():
            marked = ", ".join(f"v{v}*" if v == production else f"v{v}" for v in versions)
            lines.append(f"  {name}: {marked}  (production: {_label(production)})")
        return "\n".join(lines) if len(lines) > 1 else f"{lines[0]} (empty)"

    def _repr_html_(self) -> str:
        title = f"<b>Registry</b> <code>{html.escape(str(self.root))}</code>"
        layout = self._layout()
        if not layout:
            return f"<div>{title} (empty)</div>"
        rows = []
        for name, versions, production in layout:
            cells = ", ".join(
                f'<b style="background:#d4f4d4">v{v}</b>' if v == production else f"v{v}" for v in versions
            )
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{cells}</td><td>{html.escape(_label(production))}</td></tr>"
            )
        head = "<tr><th>name</th><th>versions</th><th>production</th></tr>"
        return f"<div>{title}<table>{head}{''.join(rows)}</table></div>"

    # ------------------------------------------------------------------ internals
    def _layout(self) -> list[tuple[str, list[int], int | str | None]]:
        """(name, versions, production) per model; production is ``"unreadable"`` for a broken stages.json."""
        out: list[tuple[str, list[int], int | str | None]] = []
        for name in self.names():
            try:
                production: int | str | None = self.production(name)
            except ModelError:
                production = "unreadable"
            out.append((name, self._versions(name), production))
        return out

    def _versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = []
        for entry in folder.iterdir():
            match = _VERSION_DIR.fullmatch(entry.name)
            if match and entry.is_dir() and _version_dir(int(match[1])) == entry.name:
                found.append(int(match[1]))
        return sorted(found)

    def _check_known(self, name: str) -> None:
        _check_name(name)
        if not self._versions(name):
            known = ", ".join(repr(n) for n in self.names()) or "none"
            raise ModelError(f"no model named {name!r} in registry {str(self.root)!r}; known: {known}")

    def _resolve(self, name: str, version: int | str | None) -> int:
        """The version number that ``version`` designates for ``name``."""
        self._check_known(name)
        versions = self._versions(name)
        if version is None:
            stack = self._stages(name)["stack"]
            version = stack[-1] if stack else versions[-1]
        elif version == "latest":
            version = versions[-1]
        elif isinstance(version, bool) or not isinstance(version, int):
            raise ConfigError(f"version must be an int, 'latest' or None, got {version!r}")
        if version not in versions:
            known = ", ".join(f"v{v}" for v in versions)
            raise ModelError(f"{name!r} has no version {version}; known: {known}")
        return version

    def _stages(self, name: str) -> dict[str, Any]:
        path = self.root / name / STAGES
        if not path.exists():
            return {"stack": [], "history": []}
        try:
            stages = json.loads(path.read_text(encoding="utf-8"))
            stack, history = stages["stack"], stages["history"]
            if not (isinstance(stack, list) and all(type(v) is int for v in stack) and isinstance(history, list)):
                raise TypeError("'stack' must be a list of version numbers and 'history' a list")
        except (ValueError, KeyError, TypeError) as err:
            raise ModelError(f"{str(path)!r} is unreadable ({err}); fix or delete it to forget the promotions") from err
        return {"stack": stack, "history": history}

    def _record(self, name: str, stages: dict[str, Any], stack: list[int], *, action: str) -> None:
        """Write ``stack`` as the promotion stack of ``name``, the change appended to its history."""
        event = {"action": action, "version": stack[-1], "from": (stages["stack"] or [None])[-1], "at": _now()}
        document = {"production": stack[-1], "stack": stack, "history": [*stages["history"], event]}
        _write_json_atomic(self.root / name / STAGES, document)

    def _rows(self, name: str) -> list[dict[str, Any]]:
        """The :meth:`list` rows of ``name``, with its numeric metrics as floats."""
        stages = self._stages(name)
        production = (stages["stack"] or [None])[-1]
        promoted = {event["version"] for event in stages["history"]}
        rows = []
        for version in self.versions(name):
            manifest = _read_manifest(self.root / name / _version_dir(version), name=name, version=version)
            stage = "production" if version == production else "archived" if version in promoted else ""
            metrics = {k: float(v) for k, v in manifest["metrics"].items() if isinstance(v, int | float)}
            rows.append({**{k: manifest[k] for k in _LISTED}, "metrics": metrics, "stage": stage})
        return rows


# ---------------------------------------------------------------------------------------------
# Helpers


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"model name {name!r} is not a safe folder name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 100 characters"
        )


def _version_dir(version: int) -> str:
    return f"v{version:04d}"


def _label(production: int | str | None) -> str:
    return f"v{production}" if isinstance(production, int) else str(production or "none")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _describe(**fields: Any) -> dict[str, Any]:
    """The user-given manifest fields, checked: JSON-ready dicts, and strings for ``data_hash`` and ``notes``."""
    described = {}
    for label, value in fields.items():
        expected = str if label in ("data_hash", "notes") else dict
        described[label] = _jsonable(value, label)
        if not isinstance(described[label], expected):
            raise ConfigError(f"{label} must be a {expected.__name__}, got {type(value).__name__}")
    return described


def _jsonable(value: Any, path: str) -> Any:
    """A JSON-ready copy of ``value``; ConfigError naming the key path of the first bad value."""
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{path} has the key {key!r} ({type(key).__name__}); JSON keys must be str")
            out[key] = _jsonable(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_jsonable(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise ConfigError(f"{path} is a {type(value).__name__} ({value!r:.80}), which is not JSON-serialisable")


def _write_version(
    tmp: Path, model: nn.Module, *, name: str, version: int, described: dict[str, Any]
) -> dict[str, Any]:
    """Write the weights and the manifest into ``tmp``, fsynced and read-only; return the manifest."""
    with open(tmp / WEIGHTS, "wb") as out:
        torch.save(model.state_dict(), out)
        out.flush()
        os.fsync(out.fileno())
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "created": _now(),
        **described,
        "packages": _packages(),
        "git": _git(),
        "artifacts": {WEIGHTS: _digest(tmp / WEIGHTS)},
    }
    _write_json_atomic(tmp / MANIFEST, manifest)
    for artifact in (WEIGHTS, MANIFEST):
        os.chmod(tmp / artifact, 0o444)
    return manifest


def _publish(tmp: Path, final: Path, *, name: str, version: int) -> None:
    """Rename the finished temporary folder to its version folder and make that durable."""
    fsync(tmp, strict=False)
    try:
        os.replace(tmp, final)
    except OSError as err:
        if final.exists():
            raise ModelError(
                f"version {version} of {name!r} was written by another save meanwhile; save again"
            ) from err
        raise
    fsync(final.parent, strict=False)


def _remove_stale(folder: Path) -> None:
    """Remove temporary folders and files left in ``folder`` by saves that died over an hour ago."""
    limit = time.time() - STALE_SECONDS
    for entry in folder.iterdir():
        if entry.name.startswith(_TMP_PREFIX) and entry.stat().st_mtime < limit:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to a temporary file beside ``path``, fsync it and move it over ``path``."""
    tmp = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}.json")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(path.parent, strict=False)


def _digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "size": path.stat().st_size}


def _packages() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _git() -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the repository holding the working directory; None outside one or without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": status.returncode != 0 or bool(status.stdout.strip())}


def _read_manifest(path: Path, *, name: str, version: int) -> dict[str, Any]:
    """The parsed manifest of a version folder, its essential fields checked."""
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelError(
            f"{name!r} v{version} has no {MANIFEST} ({str(file)!r}); the version cannot be trusted"
        ) from err
    except (OSError, ValueError) as err:
        raise ModelError(f"{str(file)!r} is not readable JSON ({err}); the version cannot be trusted") from err
    missing = [key for key in _REQUIRED if key not in manifest] if isinstance(manifest, dict) else list(_REQUIRED)
    if missing or not isinstance(manifest["artifacts"], dict) or not isinstance(manifest["metrics"], dict):
        problem = f"missing {', '.join(missing)}" if missing else "'artifacts' and 'metrics' must be tables"
        raise ModelError(f"{str(file)!r} is not a registry manifest ({problem})")
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{str(file)!r} has format {manifest.get('format')!r}; this ntlab reads format {FORMAT}")
    if manifest.get("name") != name or manifest.get("version") != version:
        raise ModelError(
            f"{str(file)!r} describes {manifest.get('name')!r} v{manifest.get('version')}, not {name!r} v{version}"
        )
    return manifest


def _verify(path: Path, manifest: dict[str, Any]) -> None:
    """Check the size and SHA-256 of every artifact the manifest lists; the weights must be one."""
    artifacts = manifest["artifacts"]
    if WEIGHTS not in artifacts:
        raise ModelError(f"the manifest of {str(path)!r} lists no {WEIGHTS}")
    for filename, expected in artifacts.items():
        file = path / filename
        if Path(filename).name != filename or not isinstance(expected, dict):
            raise ModelError(f"the manifest of {str(path)!r} has a malformed artifact entry {filename!r}")
        if not file.is_file():
            raise ModelError(f"{filename} of {str(path)!r} is missing (expected sha256 {expected.get('sha256')})")
        actual = _digest(file)
        if actual["size"] != expected.get("size"):
            raise ModelError(
                f"{filename} of {str(path)!r} has {actual['size']} bytes, the manifest says {expected.get('size')} "
                f"(sha256 expected {expected.get('sha256')}, actual {actual['sha256']}): truncated or replaced"
            )
        if actual["sha256"] != expected.get("sha256"):
            raise ModelError(
                f"{filename} of {str(path)!r} is corrupted: sha256 expected {expected.get('sha256')}, "
                f"actual {actual['sha256']}"
            )
