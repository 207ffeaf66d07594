"""Benchmarks as notebooks: ``ntlab bench NAME --json OUT`` runs ``bench_notebooks/NAME.ipynb``.

Every benchmark writes the same JSON shape, so that results can be compared over time::

    {"bench": NAME, "when": ISO time, "machine": {cpu, cores, gpu or null, python, packages},
     "metrics": {METRIC: {"value": number, "unit": str, "better": "higher"|"lower",
                          "peer": str|null}}}

Ratios against a peer measured in the same run are metrics of their own, with unit ``"x"``.
A benchmark notebook declares a ``json_out: str`` parameter and ends with
:func:`write_results`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from ntlab.exceptions import ConfigError

__all__ = ["bench_dir", "machine", "metric", "run_bench", "time_best", "write_results"]

_PACKAGES = ("ntlab", "numpy", "polars", "numba", "pandas", "pyarrow", "cupy-cuda12x", "torch")


def metric(value: float, unit: str, *, better: Literal["higher", "lower"], peer: str | None = None) -> dict[str, Any]:
    """One metric entry of the benchmark JSON."""
    if better not in ("higher", "lower"):
        msg = f"better={better!r} must be 'higher' or 'lower'"
        raise ConfigError(msg)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        msg = f"metric value must be a finite number, got {value!r}"
        raise ConfigError(msg)
    return {"value": float(value), "unit": unit, "better": better, "peer": peer}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()  # pragma: no cover - not Linux


def _gpu() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:  # pragma: no cover - only on GPU machines
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):  # pragma: no cover
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None  # pragma: no cover


def machine() -> dict[str, Any]:
    """What the benchmark ran on: cpu, cores, gpu (or None), python and package versions."""
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "gpu": _gpu(),
        "python": platform.python_version(),
        "packages": packages,
    }


def time_best(fn: Callable[[], object], *, repeat: int = 3) -> float:
    """Best wall time in seconds of ``repeat`` calls of ``fn`` (the least disturbed run)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def write_results(name: str, metrics: Mapping[str, Mapping[str, Any]], path: str | Path) -> dict[str, Any]:
    """Write the benchmark JSON for ``metrics`` (built with :func:`metric`) to ``path``."""
    for key, entry in metrics.items():
        if set(entry) != {"value", "unit", "better", "peer"}:
            msg = f"metric {key!r} must be built with ntlab.runs.bench.metric(); got keys {sorted(entry)}"
            raise ConfigError(msg)
    doc = {
        "bench": name,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "metrics": dict(metrics),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return doc


def bench_dir() -> Path:
    """``bench_notebooks/`` of the working directory, else of the checkout ntlab runs from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "bench_notebooks").is_dir():
            return root / "bench_notebooks"
    msg = "no bench_notebooks/ folder here or in the ntlab checkout; run from the repository root"
    raise ConfigError(msg)


def run_bench(
    name: str, *, json_out: str | Path, parameters: Mapping[str, Any] | None = None, out_dir: str | Path | None = None
) -> dict[str, Any]:
    """Run ``bench_notebooks/<name>.ipynb`` and return the JSON document it wrote."""
    from ntlab.runs.notebook import run_notebook

    folder = bench_dir()
    notebook = folder / f"{name}.ipynb"
    if not notebook.is_file():
        known = sorted(p.stem for p in folder.glob("*.ipynb"))
        msg = f"no benchmark named {name!r}; bench_notebooks/ has {known}"
        raise ConfigError(msg)
    json_out = Path(json_out).resolve()
    json_out.unlink(missing_ok=True)  # never read back an earlier run's results
    params = {**(parameters or {}), "json_out": str(json_out)}
    run_notebook(notebook, out_dir=out_dir or json_out.parent, parameters=params, report=False)
    if not json_out.is_file():
        msg = f"{notebook.name} ran but wrote no results to {json_out}; end it with write_results(..., json_out)"
        raise ConfigError(msg)
    return json.loads(json_out.read_text())
