"""The ``ntlab`` command line (built on click).

    ntlab data names                 the real data sets
    ntlab data ingest NAME... -c DIR load data sets into a Parquet catalog
    ntlab data ls -c DIR             what a catalog holds
    ntlab run NOTEBOOK -o DIR        run a notebook/template with checked parameters
    ntlab bench NAME --json OUT      run bench_notebooks/NAME.ipynb, write its JSON
    ntlab live run STRATEGY -d DATA  a headless live session on a replay (journal, resume)
    ntlab live recover DIR           rebuild and check the books of a journalled session
    ntlab feed serve FILES...        a WebSocket replay server speaking Binance's protocol
    ntlab venue serve                the paper venue as a WebSocket order server

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
@click.option("--data", "-d", default=None, help="Data set name (`ntlab data names`) or a Parquet file of bars or trade ticks.")
@click.option("--ws", "ws_url", default=None, help="Instead of --data: a Binance-format WebSocket server (ws://HOST:PORT).")
@click.option("--stream", "streams", multiple=True, help="With --ws: a stream, e.g. btcusdt@trade (repeatable).")
@click.option("--market", type=click.Choice(["spot", "usdm", "coinm"]), default="spot", show_default=True, help="With --ws.")
@click.option("--venue", "venue_url", default=None, help="Send orders to this venue server (ntlab venue serve) instead of the in-process one.")
@click.option("--account", default="paper", show_default=True, help="With --venue.")
@click.option("--idle-end", type=float, default=None, help="With --ws: end after this many seconds without market data.")
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
def live_run(strategy: str, data: str | None, ws_url: str | None, streams: tuple[str, ...], market: str, venue_url: str | None, account: str,
             idle_end: float | None, rows: int | None, speed: float | None, rate: float | None, features: tuple[str, ...], journal_dir: Path | None,
             resume: bool, cash: float, fee_bps: float, params: tuple[tuple[str, str], ...], every: float, timeout: float | None) -> None:
    """Run STRATEGY (module:attribute) live on a replay of DATA, or on a WebSocket feed (--ws),
    against the paper venue in this process or a venue server (--venue).

    Prints a snapshot line every --every seconds and the final one; exits 1 if the strategy failed.
    """
    from ntlab.execution.orders import ExecutionModel
    from ntlab.live.headless import replay_engine, run_session, ws_engine

    if resume and journal_dir is None:
        raise click.UsageError("--resume needs the --journal folder of the session to continue")
    if (data is None) == (ws_url is None):
        raise click.UsageError("give --data (a replay) or --ws (a WebSocket feed), one of them")
    common = {"journal_dir": journal_dir, "resume": resume, "cash": cash, "model": ExecutionModel(fee_bps=fee_bps), "name": "live"}
    if ws_url is not None:
        if not streams:
            raise click.UsageError("--ws needs at least one --stream, e.g. --stream btcusdt@trade")
        engine = ws_engine(strategy, ws_url, list(streams), params=_params(params), market=market, venue=venue_url, account=account,
                           end_after_idle=idle_end, **common)  # fmt: skip
    else:
        if venue_url is not None:
            raise click.UsageError("--venue goes with --ws (a replay uses the in-process paper venue)")
        engine = replay_engine(strategy, data, params=_params(params), rows=rows, speed=speed, rate=rate, features=features, **common)  # type: ignore[arg-type]
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


@main.group()
def feed() -> None:
    """WebSocket market-data feeds: a local replay server speaking Binance's protocol."""


@feed.command("serve")
@click.argument("sources", nargs=-1, required=True)
@click.option("--speed", type=float, default=None, help="Times real time (default: as fast as the clients take it).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option("--drop-after", type=int, default=None, help="Cut each connection (no close frame) after N data messages.")
@click.option("--drop-prob", type=float, default=0.0, show_default=True, help="Probability of cutting a connection before a message.")
@click.option("--delay-prob", type=float, default=0.0, show_default=True, help="Probability of a delay before a message.")
@click.option("--delay-ms", type=float, default=5.0, show_default=True, help="Length of an injected delay.")
@click.option("--duplicate-prob", type=float, default=0.0, show_default=True, help="Probability of sending a message twice.")
@click.option("--reorder-prob", type=float, default=0.0, show_default=True, help="Probability of swapping a message with the next.")
@click.option("--truncate-prob", type=float, default=0.0, show_default=True, help="Probability of sending a strict prefix of a message.")
@click.option("--corrupt-prob", type=float, default=0.0, show_default=True, help="Probability of turning one '\"' of a message into '#'.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault generator.")
@click.option("--record-send-times", is_flag=True, help="Keep the send time of each trade (GET /ntlab/send_times).")
def feed_serve(sources: tuple[str, ...], speed: float | None, host: str, port: int, drop_after: int | None, drop_prob: float,
               delay_prob: float, delay_ms: float, duplicate_prob: float, reorder_prob: float, truncate_prob: float,
               corrupt_prob: float, seed: int, record_send_times: bool) -> None:  # fmt: skip
    """Serve SOURCES over WebSocket (and the venue's REST book) until interrupted.

    SOURCES are Binance recordings (.gz), or data set names (`ntlab data names`) / Parquet files
    of bars or trade ticks, sent in ntlab's generic format. Prints one line with the URL.
    """
    from ntlab.live.replay_server import Faults, ReplayServer

    faults = Faults(drop_after=drop_after, drop_prob=drop_prob, delay_prob=delay_prob, delay_ms=delay_ms, duplicate_prob=duplicate_prob,
                    reorder_prob=reorder_prob, truncate_prob=truncate_prob, corrupt_prob=corrupt_prob, seed=seed)  # fmt: skip
    server = ReplayServer.from_sources(list(sources), speed=speed, faults=faults if faults.active else None, host=host, port=port,
                                       record_send_times=record_send_times)  # fmt: skip
    server.start()
    click.echo(f"serving {server.url} ({server.total} messages, streams: {', '.join(server.streams)})")
    sys.stdout.flush()
    server.serve_forever()


@main.group()
def venue() -> None:
    """The paper venue as its own server (JSON orders over WebSocket)."""


@venue.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option("--market-data", default=None, help="ws://.../stream of a feed whose trade prints set the venue's prices.")
@click.option("--stream", "streams", multiple=True, help="Trade stream to read there, e.g. btcusdt@trade (repeatable).")
@click.option("--price", "prices", type=(str, float), multiple=True, help="Starting price SYMBOL PRICE (repeatable).")
@click.option("--account", "accounts", multiple=True, help="Allowed account (repeatable; default: any).")
@click.option("--cash", type=float, default=1_000_000.0, show_default=True)
@click.option("--fee-bps", type=float, default=0.0, show_default=True)
@click.option("--slippage-bps", type=float, default=0.0, show_default=True)
@click.option("--drop-after", type=int, default=None, help="Cut each order connection after N frames (fault injection).")
@click.option("--drop-prob", type=float, default=0.0, show_default=True, help="Probability of cutting an order connection at a frame.")
@click.option("--seed", type=int, default=0, show_default=True)
def venue_serve(host: str, port: int, market_data: str | None, streams: tuple[str, ...], prices: tuple[tuple[str, float], ...],
                accounts: tuple[str, ...], cash: float, fee_bps: float, slippage_bps: float, drop_after: int | None, drop_prob: float,
                seed: int) -> None:  # fmt: skip
    """Serve the paper venue until interrupted; prints one line with its URL.

    The token, when wanted, comes from the NTLAB_VENUE_TOKEN environment variable."""
    from ntlab.live.venue_server import serve_main

    raise SystemExit(serve_main(host=host, port=port, market_data=market_data, streams=list(streams), prices=dict(prices) or None,
                                accounts=list(accounts) or None, cash=cash, fee_bps=fee_bps, slippage_bps=slippage_bps,
                                drop_after=drop_after, drop_prob=drop_prob, seed=seed))  # fmt: skip
