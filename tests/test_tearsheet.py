"""The HTML tear sheet, its plots and the monthly returns table."""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from matplotlib.figure import Figure

import ntlab.datasets
from ntlab.backtest import tearsheet as ts
from ntlab.backtest.metrics import monthly_returns, summary
from ntlab.exceptions import DataError, SchemaError

START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
TS = pl.Datetime("ns", "UTC")
PNG = "data:image/png;base64,"


def make_equity(values: np.ndarray | list[float], stamps: list[dt.datetime] | pl.Series | None = None) -> pl.DataFrame:
    values = np.asarray(values, dtype=float)
    stamps = stamps if stamps is not None else [START + i * DAY for i in range(values.size)]
    return pl.DataFrame(
        {
            "ts": pl.Series(stamps, dtype=TS),
            "cash": np.zeros(values.size),
            "position_value": values,
            "gross_exposure": values,
            "equity": values,
            "traded": np.zeros(values.size),
            "fees": np.zeros(values.size),
        }
    )


def make_trades(pnl: list[float]) -> pl.DataFrame:
    entry = [START + i * DAY for i in range(len(pnl))]
    return pl.DataFrame(
        {
            "symbol": ["SPY"] * len(pnl),
            "side": ["long"] * len(pnl),
            "qty": [1.0] * len(pnl),
            "entry_ts": pl.Series(entry, dtype=TS),
            "exit_ts": pl.Series([e + 2 * DAY for e in entry], dtype=TS),
            "entry_price": [100.0] * len(pnl),
            "exit_price": [100.0 + p for p in pnl],
            "fees": [0.0] * len(pnl),
            "pnl": pnl,
            "return": [p / 100.0 for p in pnl],
        },
        schema_overrides={"pnl": pl.Float64, "return": pl.Float64},
    )


@pytest.fixture(scope="module")
def spy() -> pl.DataFrame:
    return ntlab.datasets.load("spy_daily")


@pytest.fixture(scope="module")
def spy_equity(spy: pl.DataFrame) -> pl.DataFrame:
    close = spy["SPY"].to_numpy()
    return make_equity(1e4 * close / close[0], spy["ts"])


class Page(HTMLParser):
    """What a browser would see: the title, the images and the table cells."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.title, self.images, self.cells, self._tag = "", [], [], ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._tag == "title":
            self.title += data
        elif self._tag == "td":
            self.cells.append(data)


# --------------------------------------------------------------------------------------------
# Monthly returns
# --------------------------------------------------------------------------------------------


def pandas_monthly(frame: pl.DataFrame) -> dict[tuple[int, int], float]:
    """Month-end equity by ``resample("ME").last()``; the first month from the first value."""
    equity = pd.Series(frame["equity"].to_numpy(), index=pd.DatetimeIndex(frame["ts"].to_list()))
    month_end = equity.resample("ME").last().dropna()
    returns = month_end / month_end.shift(1).fillna(equity.iloc[0]) - 1
    return {(stamp.year, stamp.month): value for stamp, value in returns.items()}


def table_cells(table: pl.DataFrame) -> dict[tuple[int, int], float]:
    return {
        (row["year"], month): row[name]
        for row in table.iter_rows(named=True)
        for month, name in enumerate(table.columns[1:], start=1)
        if row[name] is not None
    }


def test_monthly_returns_match_pandas_on_real_data(spy_equity: pl.DataFrame) -> None:
    table = monthly_returns(spy_equity)
    assert table.columns == ["year", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    assert table.schema["year"] == pl.Int32 and table["year"].to_list() == list(range(1993, 2020))
    expected, got = pandas_monthly(spy_equity), table_cells(table)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=1e-15), key


def test_monthly_returns_across_a_missing_month_and_a_new_year() -> None:
    stamps = [dt.datetime(2020, 11, 3, tzinfo=dt.UTC), dt.datetime(2020, 11, 30, tzinfo=dt.UTC)]
    stamps += [dt.datetime(2021, 1, 4, tzinfo=dt.UTC), dt.datetime(2021, 2, 1, 23, tzinfo=dt.UTC)]
    frame = make_equity([100.0, 110.0, 99.0, 118.8], stamps)
    table = monthly_returns(frame)
    assert table_cells(table) == pytest.approx({(2020, 11): 0.10, (2021, 1): -0.10, (2021, 2): 0.20}, rel=1e-12)
    assert table_cells(table).keys() == pandas_monthly(frame).keys()
    assert table.filter(pl.col("year") == 2020)["Dec"][0] is None  # no row in December: blank, not 0


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def test_tearsheet_with_trades_has_the_metrics_and_four_charts(spy_equity: pl.DataFrame) -> None:
    trades = make_trades([12.0, -5.0, 3.5, -1.0, 8.0])
    text = ts.tearsheet_html(spy_equity, trades, title="SPY <buy & hold>")
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>") and "&lt;buy &amp; hold&gt;" in text
    assert page.title == "SPY <buy & hold>"
    assert [image["alt"] for image in page.images] == ["Equity", "Drawdown", "Monthly returns", "Trade P&L"]
    for image in page.images:
        assert image["src"].startswith(PNG)
        assert base64.b64decode(image["src"][len(PNG) :]).startswith(b"\x89PNG\r\n\x1a\n")
    assert text.count(f'src="{PNG}') == 4
    metrics = summary(spy_equity, trades)
    for key in metrics:
        assert metrics.format(key) in page.cells, key
    assert "http://" not in text and "https://" not in text  # self-contained
    assert "1993-01-29 00:00 to 2019-12-09 00:00 UTC, 6,765 rows" in text


@pytest.mark.parametrize("trades", [None, make_trades([]).clear()])
def test_tearsheet_without_trades_has_three_charts(trades: pl.DataFrame | None) -> None:
    equity = make_equity([100.0, 101.0, 99.0, 103.0])
    text = ts.tearsheet_html(equity, trades)
    assert text.count(f'src="{PNG}') == 3
    assert Page(text).title == "Backtest"


def test_tearsheet_uses_the_metrics_it_is_given() -> None:
    equity = make_equity([100.0, 101.0, 99.0, 103.0])
    text = ts.tearsheet_html(equity, metrics=summary(equity, periods_per_year=12, risk_free=0.05))
    assert "periods per year 12, risk-free 5.00%" in text


def test_tearsheet_of_a_single_row_renders() -> None:
    assert ts.tearsheet_html(make_equity([100.0])).count(f'src="{PNG}') == 3


def test_tearsheet_checks_its_trades_even_with_given_metrics() -> None:
    equity = make_equity([100.0, 101.0])
    with pytest.raises(SchemaError, match="trades frame has no column 'pnl'"):
        ts.tearsheet_html(equity, make_trades([1.0]).drop("pnl"), metrics=summary(equity))


def test_a_million_rows_render() -> None:
    n = 1_000_000
    rng = np.random.default_rng(7)
    stamps = pl.datetime_range(START, START + (n - 1) * dt.timedelta(minutes=1), "1m", eager=True, time_unit="ns")
    equity = make_equity(1e4 * np.exp(np.cumsum(rng.normal(0.0, 1e-4, n))), stamps)
    assert ts.tearsheet_html(equity).count(f'src="{PNG}') == 3


def test_long_series_are_downsampled_keeping_the_extremes() -> None:
    n = 50_001
    values = 100.0 + np.sin(np.arange(n) / 500.0)
    values[12_345], values[40_000] = 150.0, 50.0  # one-row spikes
    stamps = pl.datetime_range(START, START + (n - 1) * dt.timedelta(minutes=1), "1m", eager=True, time_unit="ns")
    line = ts.plot_equity(make_equity(values, stamps)).axes[0].lines[0]
    y = np.asarray(line.get_ydata())
    assert y.size <= 4002 and y.max() == 150.0 and y.min() == 50.0
    assert y[0] == values[0] and y[-1] == values[-1]
    x = np.asarray(line.get_xdata())
    assert np.all(np.diff(x) > np.timedelta64(0, "ns"))  # still in time order
    short = ts.plot_equity(make_equity(values[:4000], stamps[:4000])).axes[0].lines[0]
    assert np.asarray(short.get_ydata()).size == 4000  # nothing dropped below the limit


# --------------------------------------------------------------------------------------------
# write_tearsheet
# --------------------------------------------------------------------------------------------


def test_write_tearsheet_is_atomic(tmp_path: Path) -> None:
    equity, trades = make_equity([100.0, 102.0, 101.0]), make_trades([1.0, -0.5])
    target = ts.write_tearsheet(tmp_path / "reports" / "run.html", equity, trades, title="Run")
    assert target == tmp_path / "reports" / "run.html"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.html"]
    assert target.read_text(encoding="utf-8") == ts.tearsheet_html(equity, trades, title="Run")
    assert target.stat().st_mode & 0o777 == 0o644
    ts.write_tearsheet(str(target), equity, title="Again")  # replaces the old page
    assert Page(target.read_text(encoding="utf-8")).title == "Again"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.html"]


def test_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        ts.write_tearsheet(tmp_path / "run.html", make_equity([100.0, 101.0]))
    assert list(tmp_path.iterdir()) == []


def test_a_bad_frame_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no column 'equity'"):
        ts.write_tearsheet(tmp_path / "run.html", make_equity([1.0]).drop("equity"))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def test_monthly_heatmap_cells_hold_the_monthly_returns(spy_equity: pl.DataFrame) -> None:
    figure = ts.plot_monthly_returns(spy_equity)
    table = monthly_returns(spy_equity)
    texts = [text.get_text() for text in figure.axes[0].texts]
    grid = table.drop("year").rows()
    assert texts == [f"{value:.1%}" for row in grid for value in row if value is not None]
    image = figure.axes[0].images[0]
    low, high = image.get_clim()
    assert low == -high and high == max(abs(v) for row in grid for v in row if v is not None)  # centred on 0
    assert image.get_cmap().name == "RdYlGn"
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == [str(y) for y in table["year"]]


def test_heatmap_of_flat_equity_has_a_usable_colour_scale() -> None:
    figure = ts.plot_monthly_returns(make_equity([100.0, 100.0]))
    assert figure.axes[0].images[0].get_clim() == (-0.01, 0.01)
    assert [text.get_text() for text in figure.axes[0].texts] == ["0.0%"]


def test_plot_equity_with_a_benchmark_scaled_to_the_same_start(spy: pl.DataFrame) -> None:
    window = spy.filter(pl.col("ts").dt.year() == 2010)
    close = window["SPY"].to_numpy()
    equity = make_equity(5e3 * (close / close[0]) ** 2, window["ts"])
    # a price table that lists the asset late (nulls) and runs beyond the equity
    benchmark = spy.filter(pl.col("ts").dt.year().is_between(2009, 2011)).with_columns(
        pl.when(pl.col("ts") < window["ts"][3]).then(None).otherwise(pl.col("SPY")).alias("SPY")
    )
    axes = ts.plot_equity(equity, benchmark=benchmark).axes[0]
    strategy, bench = axes.lines
    assert strategy.get_label() == "strategy" and bench.get_label() == "SPY"
    assert np.asarray(bench.get_ydata())[0] == 5e3  # first benchmark price in range = first equity
    np.testing.assert_allclose(np.asarray(bench.get_ydata()), 5e3 * close[3:] / close[3], rtol=1e-12)
    assert axes.get_legend() is not None


@pytest.mark.parametrize(
    ("benchmark", "error", "match"),
    [
        (pl.Series([1.0]), SchemaError, "ts and one price column .* got Series"),
        (pl.DataFrame({"ts": [START], "a": [1.0], "b": [1.0]}), SchemaError, r"got \['ts', 'a', 'b'\]"),
        (pl.DataFrame({"a": [1.0], "b": [1.0]}), SchemaError, r"got \['a', 'b'\]"),
        (pl.DataFrame({"ts": [START], "a": ["x"]}), SchemaError, "a: String; expected a time-zone-aware Datetime"),
        (pl.DataFrame({"ts": [dt.datetime(2020, 1, 1)], "a": [1.0]}), SchemaError, "ts: Datetime"),
        (pl.DataFrame({"ts": [START - DAY], "a": [1.0]}), DataError, "benchmark 'a' has no price between"),
        (pl.DataFrame({"ts": [START, START + DAY], "a": [0.0, 1.0]}), DataError, "a first price of 0.0"),
    ],
)
def test_bad_benchmarks(benchmark: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ts.plot_equity(make_equity([100.0, 101.0, 102.0]), benchmark=benchmark)  # type: ignore[arg-type]


def test_plot_drawdown_is_the_underwater_curve_in_percent() -> None:
    axes = ts.plot_drawdown(make_equity([100.0, 120.0, 90.0, 130.0])).axes[0]
    assert list(axes.lines[0].get_ydata()) == [0.0, 0.0, -0.25, 0.0]
    assert axes.yaxis.get_major_formatter()(-0.25, 0) == "−25.0%"


def test_plot_trades_splits_wins_and_losses_at_zero() -> None:
    pnl = [12.0, -5.0, 3.5, -1.0, 8.0, 0.0, -0.3]
    axes = ts.plot_trades(make_trades(pnl)).axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["wins (3)", "losses and break-evens (4)", f"mean {np.mean(pnl):,.2f}"]
    bars = [b for b in axes.patches if b.get_height() > 0]
    assert all(b.get_x() >= -1e-12 or b.get_x() + b.get_width() <= 1e-12 for b in bars)  # none straddles 0
    wins = [b for b in bars if b.get_facecolor()[:3] == pytest.approx((30 / 255, 132 / 255, 73 / 255))]
    losses = [b for b in bars if b not in wins]
    assert sum(b.get_height() for b in wins) == 3 and sum(b.get_height() for b in losses) == 4
    assert all(b.get_x() >= 0 for b in wins)


def test_plot_trades_of_one_trade_and_of_none() -> None:
    single = ts.plot_trades(make_trades([0.0])).axes[0]
    assert sum(b.get_height() for b in single.patches) == 1
    empty = ts.plot_trades(make_trades([]).clear()).axes[0]
    assert [text.get_text() for text in empty.texts] == ["no trades"]


def test_plots_draw_on_a_given_axes() -> None:
    figure = Figure()
    top, middle, bottom, last = figure.subplots(4)
    equity = make_equity([100.0, 101.0, 99.0])
    assert ts.plot_equity(equity, ax=top) is figure
    assert ts.plot_drawdown(equity, ax=middle) is figure
    assert ts.plot_monthly_returns(equity, ax=bottom) is figure
    assert ts.plot_trades(make_trades([1.0]), ax=last) is figure
    assert all(axes.has_data() for axes in (top, middle, bottom, last))


def test_figures_show_in_jupyter_without_pyplot() -> None:
    assert ts.plot_drawdown(make_equity([1.0, 2.0]))._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
    code = (
        "import sys, os, datetime as dt, polars as pl\n"
        "from ntlab.backtest import tearsheet as ts\n"
        "f = pl.DataFrame({'ts': pl.Series([dt.datetime(2020, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3)],"
        " dtype=pl.Datetime('ns', 'UTC')), 'equity': [1.0, 2.0, 1.5]})\n"
        "png = ts.plot_equity(f)._repr_png_()\n"
        "assert png.startswith(b'\\x89PNG'), png[:8]\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert 'MPLBACKEND' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
