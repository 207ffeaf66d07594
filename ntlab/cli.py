"""The ``ntlab`` command line (built on click).

    ntlab data names                 the real data sets
    ntlab data ingest NAME... -c DIR load data sets into a Parquet catalog
    ntlab data ls -c DIR             what a catalog holds
    ntlab run NOTEBOOK -o DIR        run a notebook/template with checked parameters
    ntlab bench NAME --json OUT      run bench_notebooks/NAME.ipynb, write its JSON

Heavy libraries are imported inside the commands, so ``ntlab --help`` is instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ntlab import __version__
from ntlab.exceptions import NtlabError

_CATALOG_ENV = "NTLAB_CATALOG"


def _params(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    from ntlab.runs.notebook import parse_value

    return {key: parse_value(value) for key, value in pairs}


class _Group(click.Group):
    """Show ntlab errors as one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NtlabError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ntlab")
def main() -> None:
    """ntlab: Jupyter-first research and live trading."""


@main.group()
def data() -> None:
    """Real data sets and the Parquet catalog."""


catalog_option = click.option(
    "--catalog",
    "-c",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get(_CATALOG_ENV, "catalog"),
    show_default=f"${_CATALOG_ENV} or ./catalog",
    help="Root folder of the catalog.",
)


@data.command("names")
def data_names() -> None:
    """List the real data sets: name, kind, description."""
    from ntlab.data.datasets import describe

    for name, kind, text, _ in describe().iter_rows():
        click.echo(f"{name:36s} {kind:8s} {text}")


@data.command("ingest")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Ingest every data set.")
@catalog_option
def data_ingest(names: tuple[str, ...], everything: bool, catalog: Path) -> None:
    """Load data sets NAMES into the catalog (re-ingesting adds no duplicates)."""
    import warnings

    from ntlab.data.catalog import Catalog
    from ntlab.data.datasets import info, load
    from ntlab.data.datasets import names as all_names

    chosen = list(all_names()) if everything else list(names)
    if not chosen:
        raise click.UsageError("name at least one data set (see `ntlab data names`) or pass --all")
    store = Catalog(catalog)
    for name in chosen:
        ds = info(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame, report = load(name, report=True)
        if not report.ok:
            click.echo(str(report).replace(ds.kind + ":", f"{name}:", 1), err=True)
        symbol = name if ds.kind == "prices" else None
        written = store.write(frame, kind=ds.kind, symbol=symbol)
        click.echo(f"{name}: {written}")


@data.command("ls")
@catalog_option
def data_ls(catalog: Path) -> None:
    """Show the kinds, symbols, dates and row counts in the catalog."""
    import polars as pl

    from ntlab.data.catalog import Catalog
    from ntlab.exceptions import CatalogError

    if not catalog.is_dir():
        msg = f"catalog {str(catalog)!r} does not exist; fill it with `ntlab data ingest NAME -c {catalog}`"
        raise CatalogError(msg)
    summary = Catalog(catalog).summary()
    if summary.is_empty():
        click.echo(f"catalog {catalog} is empty")
        return
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        click.echo(str(summary))


@main.command("run")
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True)
@click.option("--param", "-p", "params", type=(str, str), multiple=True, help="Parameter NAME VALUE (repeatable).")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report.")
def run(notebook: Path, out: Path, params: tuple[tuple[str, str], ...], no_report: bool) -> None:
    """Run NOTEBOOK (a template) with checked parameters; write it executed plus an HTML report."""
    from ntlab.runs.notebook import run_notebook

    result = run_notebook(notebook, out_dir=out, parameters=_params(params), report=not no_report, progress=sys.stderr.isatty())
    click.echo(f"executed {result.notebook} in {result.seconds:.1f} s")
    if result.report:
        click.echo(f"report   {result.report}")


@main.command("bench")
@click.argument("name")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to write the results.")
@click.option("--param", "-p", "params", type=(str, str), multiple=True, help="Parameter NAME VALUE (repeatable).")
def bench(name: str, json_out: Path, params: tuple[tuple[str, str], ...]) -> None:
    """Run bench_notebooks/NAME.ipynb and write its metrics as JSON."""
    from ntlab.runs.bench import run_bench

    doc = run_bench(name, json_out=json_out, parameters=_params(params))
    for key, entry in doc["metrics"].items():
        peer = f" (vs {entry['peer']})" if entry["peer"] else ""
        click.echo(f"{key:32s} {entry['value']:>16,.6g} {entry['unit']}{peer}")
    click.echo(f"wrote {json_out}")
