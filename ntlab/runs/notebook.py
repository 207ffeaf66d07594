"""Run a notebook (template, tutorial or benchmark) through papermill with checked parameters.

A runnable notebook has a cell tagged ``parameters`` holding typed literals with a ``# help``
comment on each line (``rows: int = 1_000_000  # trades to generate``). :func:`run_notebook`
refuses parameters the notebook does not declare and values of the wrong type, before any
kernel starts; it writes the executed notebook and, unless told not to, an HTML report.
papermill and nbconvert are imported only when a notebook runs.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntlab.exceptions import ConfigError

__all__ = ["NotebookParameter", "RunResult", "notebook_parameters", "parse_value", "run_notebook"]

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "None": (type(None),),
    "list": (list,),
    "dict": (dict,),
}


@dataclass(frozen=True, kw_only=True)
class NotebookParameter:
    """One declared parameter: name, accepted types, default (as source text) and help."""

    name: str
    types: tuple[str, ...]
    default: str
    help: str

    def check(self, value: Any) -> None:
        allowed = tuple(t for name in self.types for t in _TYPES[name])
        bool_for_number = isinstance(value, bool) and "bool" not in self.types
        if not isinstance(value, allowed) or bool_for_number:
            hint = f"; to pass the text {value!r}, quote it: -p {self.name} \"'{value}'\"" if "str" in self.types else ""
            msg = (
                f"parameter {self.name!r} must be {' | '.join(self.types)} "
                f"(default {self.default}); got {value!r} of type {type(value).__name__}{hint}"
            )
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """Where a run wrote its executed notebook and report, and how long it took."""

    notebook: Path
    report: Path | None
    seconds: float
    parameters: dict[str, Any]


def _declared_types(annotation: str | None, default: str, name: str) -> tuple[str, ...]:
    if annotation:
        names = tuple(part.strip().split("[")[0] for part in annotation.split("|"))
    else:
        try:
            value = ast.literal_eval(default)
        except (ValueError, SyntaxError):
            msg = f"parameter {name!r} has a default {default!r} that is not a literal; annotate it (name: type = ...)"
            raise ConfigError(msg) from None
        names = (type(value).__name__ if value is not None else "None",)
    unknown = [n for n in names if n not in _TYPES]
    if unknown:
        msg = f"parameter {name!r} has type {annotation!r}; templates may use {sorted(_TYPES)}"
        raise ConfigError(msg)
    return names


def _parameters_cell(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        msg = f"{path.name} must have exactly one code cell tagged 'parameters'; it has {len(cells)}"
        raise ConfigError(msg)
    return cells[0].source


def notebook_parameters(path: str | Path) -> dict[str, NotebookParameter]:
    """Parameters declared in the ``parameters`` cell of the notebook at ``path``.

    Each line is ``name: type = literal  # help`` (the annotation may be left out when the
    literal says the type); annotations may be unions such as ``str | None``.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"notebook {str(path)!r} does not exist"
        raise ConfigError(msg)
    source = _parameters_cell(path)
    lines = source.splitlines()
    declared = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation, value = node.target.id, ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        else:
            msg = f"{path.name}: the parameters cell may only hold `name: type = literal  # help` lines; got {ast.unparse(node)!r}"
            raise ConfigError(msg)
        line = lines[node.lineno - 1]
        tail = line[node.end_col_offset :]  # after the value: a '#' inside a string default is not a comment
        help_text = tail.split("#", 1)[1].strip() if "#" in tail else ""
        default = ast.unparse(value)
        declared[name] = NotebookParameter(
            name=name, types=_declared_types(annotation, default, name), default=default, help=help_text
        )
    return declared


def parse_value(text: str) -> Any:
    """Turn a command-line value into a Python literal (``"3"`` -> 3); other text stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(path: str | Path, parameters: Mapping[str, Any]) -> dict[str, NotebookParameter]:
    """Raise :class:`ConfigError` for unknown or mistyped ``parameters`` of a notebook."""
    declared = notebook_parameters(path)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        msg = f"{Path(path).name} has no parameter(s) {unknown}; it declares {sorted(declared)}"
        raise ConfigError(msg)
    for name, value in parameters.items():
        declared[name].check(value)
    return declared


def _write_report(executed: Path, report: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    tmp = report.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(report)


def run_notebook(
    path: str | Path,
    *,
    out_dir: str | Path,
    parameters: Mapping[str, Any] | None = None,
    report: bool = True,
    progress: bool = False,
    cwd: str | Path | None = None,
) -> RunResult:
    """Execute the notebook at ``path`` with ``parameters`` and keep what it produced.

    Parameters
    ----------
    path
        The notebook (``templates/demo.ipynb``...).
    out_dir
        Folder for the executed notebook (``<name>.ipynb``) and the report (``<name>.html``);
        created if missing.
    parameters
        Values for the notebook's ``parameters`` cell, checked by name and type first.
    report
        Also write an HTML report of the executed notebook (inputs hidden).
    progress
        Show papermill's cell progress bar.
    cwd
        Working directory of the kernel; defaults to the current directory.

    Raises
    ------
    ConfigError
        For an unknown or mistyped parameter (before any kernel starts).
    papermill.PapermillExecutionError
        When a cell fails; the executed notebook is still written, showing the error.
    """
    import papermill

    path = Path(path)
    params = dict(parameters or {})
    check_parameters(path, params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    executed = out / path.name
    start = time.perf_counter()
    papermill.execute_notebook(
        str(path),
        str(executed),
        parameters=params,
        progress_bar=progress,
        cwd=str(cwd or Path.cwd()),
        kernel_name="python3",
    )
    html = None
    if report:
        html = executed.with_suffix(".html")
        _write_report(executed, html)
    return RunResult(notebook=executed, report=html, seconds=time.perf_counter() - start, parameters=params)
