"""The ``ntlab`` command line (built on click).

    ntlab data names                 the real data sets
    ntlab data ingest NAME... -c DIR load data sets into a Parquet catalog
    ntlab data ls -c DIR             what a catalog holds
    ntlab run NOTEBOOK -o DIR        run a notebook/template with checked parameters
    ntlab bench NAME --json OUT      run bench_notebooks/NAME.ipynb, write its JSON
    ntlab live run STRATEGY -d DATA  a headless live session on a replay (journal, resume)
    ntlab live recover DIR           rebuild and check the books of a journalled session

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


@main.group()
def live() -> None:
    """Headless live sessions on the paper venue."""


@live.command("run")
@click.argument("strategy")
@click.option("--data", "-d", required=True, help="Data set name (`ntlab data names`) or a Parquet file of bars or trade ticks.")
@click.option("--rows", type=int, default=None, help="Replay only the first ROWS rows.")
@click.option("--speed", type=float, default=None, help="Times real time (default: as fast as possible).")
@click.option("--rate", type=float, default=None, help="Steady events per second instead of --speed.")
@click.option("--feature", "features", multiple=True, help="Feature column carried to the strategy (repeatable).")
@click.option("--journal", "journal_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Journal folder (default: a new temporary one).")
@click.option("--resume", is_flag=True, help="Continue the session journalled in --journal.")
@click.option("--cash", type=float, default=1_000_000.0, show_default=True)
@click.option("--fee-bps", type=float, default=0.0, show_default=True)
@click.option("--param", "-p", "params", type=(str, str), multiple=True, help="Strategy parameter NAME VALUE (repeatable).")
@click.option("--every", type=float, default=1.0, show_default=True, help="Seconds between snapshot lines.")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
def live_run(strategy: str, data: str, rows: int | None, speed: float | None, rate: float | None, features: tuple[str, ...], journal_dir: Path | None,
             resume: bool, cash: float, fee_bps: float, params: tuple[tuple[str, str], ...], every: float, timeout: float | None) -> None:
    """Run STRATEGY (module:attribute) live on a replay of DATA against the paper venue.

    Prints a snapshot line every --every seconds and the final one; exits 1 if the strategy failed.
    """
    from ntlab.execution.orders import ExecutionModel
    from ntlab.live.headless import replay_engine, run_session

    if resume and journal_dir is None:
        raise click.UsageError("--resume needs the --journal folder of the session to continue")
    engine = replay_engine(strategy, data, params=_params(params), rows=rows, speed=speed, rate=rate, features=features,
                           journal_dir=journal_dir, resume=resume, cash=cash, model=ExecutionModel(fee_bps=fee_bps), name="live")  # fmt: skip
    if engine.recovery is not None:
        click.echo(f"resumed: {engine.recovery!r}")
    click.echo(f"started: {engine!r}, journal {engine.journal_dir}", err=False)
    sys.stdout.flush()
    final = run_session(engine, every=every, timeout=timeout, report=lambda snap: click.echo(repr(snap)))
    if final.status == "failed":
        click.echo(final.error, err=True)
        raise SystemExit(1)


@live.command("recover")
@click.argument("journal_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--assets", type=int, default=1, show_default=True, help="Number of symbols the session traded.")
def live_recover(journal_dir: Path, assets: int) -> None:
    """Rebuild the books of the session in JOURNAL_DIR from its journal and check them against the venue's record."""
    from ntlab.live.recovery import recover

    click.echo(repr(recover(journal_dir, assets)))
