"""The tear sheet of a backtest: one self-contained HTML page, and the same plots for notebooks.

:func:`tearsheet_html` returns an HTML document with no external resource: the metrics table of
:func:`~ntlab.backtest.metrics.summary`, then the equity curve (with an optional benchmark),
the drawdown (underwater) chart, the monthly returns heatmap and, when there are trades, the
distribution of trade P&L, each a base64 PNG. :func:`write_tearsheet` writes it atomically.

Conventions
-----------
* Figures are :class:`matplotlib.figure.Figure` objects drawn on the Agg canvas: pyplot is never
  imported and no global backend is set. A figure made here shows itself in Jupyter (it has a
  ``_repr_png_``) even when pyplot was never imported.
* ``plot_*(..., ax=None)`` draws on a new figure, or on ``ax`` when given, and returns the figure
  drawn on.
* Long series are downsampled for plotting only: above 4,000 rows the rows are cut into 2,000
  equal buckets and each bucket keeps its lowest and highest point (plus the first and last
  row), so peaks and troughs survive; a 1 M-row equity renders in about a second.
* Months are UTC calendar months (see :func:`~ntlab.backtest.metrics.monthly_returns`).
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
from html import escape
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter, StrMethodFormatter

from ntlab.backtest.metrics import (
    Metrics,
    check_equity,
    check_trades,
    drawdown,
    monthly_returns,
    summary,
)
from ntlab.exceptions import DataError, SchemaError

__all__ = ["plot_drawdown", "plot_equity", "plot_monthly_returns", "plot_trades", "tearsheet_html", "write_tearsheet"]

_MAX_POINTS = 4000
_DPI = 100
_WIDTH = 10.0
_GREEN, _RED, _BLUE, _GREY = "#1e8449", "#c0392b", "#1f4e79", "#7f8c8d"
_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
p.period { color: #666; margin: 0 0 16px 0; }
.layout { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.metrics table { border-collapse: collapse; font-size: 13px; min-width: 260px; }
.metrics caption { caption-side: bottom; color: #888; font-size: 11px; padding-top: 6px; }
.metrics th { background: #f0f3f6; padding: 6px 8px; }
.metrics td { padding: 3px 8px; border-bottom: 1px solid #eee; }
.charts { flex: 1; min-width: 600px; }
.charts img { display: block; max-width: 100%; margin-bottom: 12px; }
"""


class _NotebookFigure(Figure):
    """A Figure that Jupyter displays without pyplot: IPython calls ``_repr_png_``."""

    def _repr_png_(self) -> bytes:
        return _png(self)


def tearsheet_html(
    equity: pl.DataFrame,
    trades: pl.DataFrame | None = None,
    *,
    title: str = "Backtest",
    metrics: Metrics | None = None,
    benchmark: pl.DataFrame | None = None,
) -> str:
    """One self-contained HTML document summarising a backtest.

    Parameters
    ----------
    equity, trades
        The engine's frames (see :mod:`ntlab.backtest.metrics`); ``trades=None`` means none.
    title
        Page title and heading (HTML-escaped).
    metrics
        Precomputed metrics (e.g. with ``risk_free=``); ``summary(equity, trades)`` when None.
    benchmark
        Prices to compare with: ``ts`` and one numeric column (``ntlab.datasets.load("spy_daily")``),
        drawn on the equity chart scaled to the same start (see :func:`plot_equity`).

    Returns
    -------
    str
        The document: the metrics table and 3 PNG charts (equity, drawdown, monthly returns),
        4 when there are trades (the trade P&L histogram).
    """
    frame = check_equity(equity)
    checked_trades = None if trades is None else check_trades(trades)
    metrics = summary(equity, trades) if metrics is None else metrics
    charts = [
        ("Equity", plot_equity(equity, benchmark=benchmark)),
        ("Drawdown", plot_drawdown(equity)),
        ("Monthly returns", plot_monthly_returns(equity)),
    ]
    if checked_trades is not None and checked_trades.height:
        charts.append(("Trade P&L", plot_trades(checked_trades)))
    images = "\n".join(
        f'<img alt="{escape(name)}" src="data:image/png;base64,{base64.b64encode(_png(figure)).decode("ascii")}">'
        for name, figure in charts
    )
    start, end = frame["ts"][0], frame["ts"][-1]
    period = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, {frame.height:,} rows"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f'<h1>{escape(title)}</h1><p class="period">{escape(period)}</p>\n'
        f'<div class="layout"><section class="metrics">{metrics._repr_html_()}</section>\n'
        f'<section class="charts">\n{images}\n</section></div>\n</body></html>\n'
    )


def write_tearsheet(
    path: str | os.PathLike[str],
    equity: pl.DataFrame,
    trades: pl.DataFrame | None = None,
    *,
    title: str = "Backtest",
    metrics: Metrics | None = None,
    benchmark: pl.DataFrame | None = None,
) -> Path:
    """Write :func:`tearsheet_html` to ``path`` atomically and return the path.

    The page is rendered first, written to a temporary file in the target folder (created if
    needed) and moved over ``path`` with :func:`os.replace`: readers see the old file or the new
    one, never a half-written one, and a failure leaves no temporary file behind.
    """
    target = Path(path)
    text = tearsheet_html(equity, trades, title=title, metrics=metrics, benchmark=benchmark)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return target


def plot_equity(equity: pl.DataFrame, ax: Axes | None = None, *, benchmark: pl.DataFrame | None = None) -> Figure:
    """Equity curve, optionally with a benchmark scaled to the same start.

    ``benchmark`` holds ``ts`` (time-zone-aware Datetime) and one numeric price column, whose
    name labels the line. Its rows inside the equity's time range are used, nulls dropped (a
    price table is null before listing), scaled so that its first price there equals the first
    equity value.

    Raises
    ------
    SchemaError
        ``benchmark`` is not a DataFrame of ``ts`` and one numeric column.
    DataError
        ``benchmark`` has no price in the equity's time range, or its first one there is <= 0.
    """
    frame = check_equity(equity)
    figure, ax = _target(ax, height=3.5)
    values = frame["equity"].to_numpy()
    rows = _plot_rows(values)
    ax.plot(frame["ts"].to_numpy()[rows], values[rows], color=_BLUE, linewidth=1.2, label="strategy")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    if benchmark is not None:
        name, ts, prices = _benchmark(benchmark, frame)
        rows = _plot_rows(prices)
        scaled = prices[rows] * (values[0] / prices[0])
        ax.plot(ts[rows], scaled, color=_GREY, linewidth=1.0, label=name)
        ax.legend(loc="upper left", frameon=False)
    ax.set_title("Equity", loc="left")
    _style_time_axis(ax)
    return figure


def plot_drawdown(equity: pl.DataFrame, ax: Axes | None = None) -> Figure:
    """Underwater chart: ``E_i / max(E_0..E_i) - 1`` in %, shaded down from 0."""
    underwater = drawdown(equity)
    figure, ax = _target(ax, height=2.5)
    values = underwater["drawdown"].to_numpy()
    rows = _plot_rows(values)
    ts = underwater["ts"].to_numpy()[rows]
    ax.fill_between(ts, values[rows], 0.0, color=_RED, alpha=0.3, linewidth=0)
    ax.plot(ts, values[rows], color=_RED, linewidth=0.8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title("Drawdown", loc="left")
    _style_time_axis(ax)
    return figure


def plot_monthly_returns(equity: pl.DataFrame, ax: Axes | None = None) -> Figure:
    """Heatmap of :func:`~ntlab.backtest.metrics.monthly_returns`: years by months, annotated in %.

    Red-to-green diverging colours centred on 0 (symmetric limits); months without data blank.
    """
    table = monthly_returns(equity)
    months = table.columns[1:]
    grid = table.select(months).to_numpy().astype(float)
    figure, ax = _target(ax, height=0.9 + 0.32 * table.height)
    limit = float(np.nanmax(np.abs(grid))) or 0.01
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    for (row, column), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(column, row, f"{value:.1%}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(months)), months)
    ax.set_yticks(range(table.height), [str(year) for year in table["year"]])
    ax.tick_params(length=0)
    ax.set_facecolor("#f4f4f4")
    ax.set_title("Monthly returns", loc="left")
    figure.colorbar(image, ax=ax, format=PercentFormatter(1.0), fraction=0.03, pad=0.01)
    return figure


def plot_trades(trades: pl.DataFrame, ax: Axes | None = None) -> Figure:
    """Histogram of trade P&L: wins green, losses and break-evens red, the mean dashed."""
    pnl = check_trades(trades)["pnl"].to_numpy()
    figure, ax = _target(ax, height=3.0)
    ax.set_title("Trade P&L", loc="left")
    if pnl.size == 0:
        ax.text(0.5, 0.5, "no trades", ha="center", va="center", transform=ax.transAxes, color=_GREY)
        return figure
    bins = _bins_with_edge_at_zero(pnl)
    wins = pnl[pnl > 0]
    losses = pnl[pnl <= 0]
    ax.hist(wins, bins=bins, color=_GREEN, alpha=0.8, label=f"wins ({wins.size:,})")
    ax.hist(losses, bins=bins, color=_RED, alpha=0.8, label=f"losses and break-evens ({losses.size:,})")
    mean = float(np.mean(pnl))
    ax.axvline(mean, color="black", linestyle="--", linewidth=1.0, label=f"mean {mean:,.2f}")
    ax.set_xlabel("P&L per round trip")
    ax.set_ylabel("trades")
    ax.legend(frameon=False)
    return figure


def _bins_with_edge_at_zero(values: np.ndarray) -> np.ndarray:
    """Edges of numpy's width for 10 to 60 bins, shifted so that 0 is an edge: wins and losses never share a bin."""
    edges = np.histogram_bin_edges(values, bins=min(60, max(10, int(np.sqrt(values.size)))))
    width = edges[1] - edges[0]
    return np.arange(np.floor(values.min() / width), np.floor(values.max() / width) + 2) * width


def _target(ax: Axes | None, *, height: float) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure (Agg canvas) with one axes."""
    if ax is not None:
        return ax.figure, ax
    figure = _NotebookFigure(figsize=(_WIDTH, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _plot_rows(values: np.ndarray) -> np.ndarray:
    """Rows to draw: all up to 4,000; else each of 2,000 buckets' min and max, and the first and last."""
    n = values.size
    if n <= _MAX_POINTS:
        return np.arange(n)
    size = -(-n // (_MAX_POINTS // 2))
    buckets = -(-n // size)
    padded = np.concatenate([values, np.full(buckets * size - n, values[-1])]).reshape(buckets, size)
    starts = np.arange(buckets) * size
    rows = np.concatenate([starts + padded.argmin(axis=1), starts + padded.argmax(axis=1), [0, n - 1]])
    return np.unique(np.minimum(rows, n - 1))


def _style_time_axis(ax: Axes) -> None:
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)
    ax.margins(x=0)


def _benchmark(benchmark: pl.DataFrame, frame: pl.DataFrame) -> tuple[str, np.ndarray, np.ndarray]:
    """Name, timestamps (datetime64) and prices of the benchmark inside the equity's time range."""
    others = [] if not isinstance(benchmark, pl.DataFrame) else [c for c in benchmark.columns if c != "ts"]
    if len(others) != 1 or "ts" not in benchmark.columns:
        got = benchmark.columns if isinstance(benchmark, pl.DataFrame) else type(benchmark).__name__
        msg = (
            f"benchmark must be a polars DataFrame of ts and one price column "
            f"(e.g. ntlab.datasets.load('spy_daily')), got {got}"
        )
        raise SchemaError(msg)
    name = others[0]
    ts_dtype, price_dtype = benchmark.schema["ts"], benchmark.schema[name]
    if not (isinstance(ts_dtype, pl.Datetime) and ts_dtype.time_zone is not None and price_dtype.is_numeric()):
        msg = f"benchmark has ts: {ts_dtype}, {name}: {price_dtype}; expected a time-zone-aware Datetime and a number"
        raise SchemaError(msg)
    start, end = frame["ts"][0], frame["ts"][-1]
    inside = (
        benchmark.select(pl.col("ts").dt.convert_time_zone("UTC"), pl.col(name).cast(pl.Float64))
        .drop_nulls()
        .filter(pl.col("ts").is_between(start, end))
        .sort("ts")
    )
    if inside.height == 0 or inside[name][0] <= 0:
        found = "no price" if inside.height == 0 else f"a first price of {inside[name][0]!r}"
        msg = f"benchmark {name!r} has {found} between {start} and {end}; it needs a price > 0 there to scale"
        raise DataError(msg)
    return name, inside["ts"].to_numpy(), inside[name].to_numpy()
