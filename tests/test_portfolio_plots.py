"""Tests of ntlab.portfolio.plots: the frontier, weights and risk-contribution plots, read back from their artists."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import StepPatch
from pypfopt import EfficientFrontier
from pypfopt import exceptions as pfo_exc

import ntlab.datasets
from ntlab.backtest.tearsheet import _BLUE, _GREY, _RED
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.portfolio import plots
from ntlab.portfolio.optimize import (
    OptimizationError,
    expected_returns,
    optimize,
    risk_model,
)
from ntlab.portfolio.plots import plot_frontier, plot_risk_contributions, plot_weights
from ntlab.portfolio.risk import risk_contributions

TOL = 1e-9
RF = 0.02
POINTS = 12
START = dt.datetime(2021, 1, 4, tzinfo=dt.UTC)
TS = pl.Datetime("ns", "UTC")


# ----------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    tail = ntlab.datasets.load("pypfopt_stock_prices").tail(500)
    complete = [c for c in tail.columns if c != "ts" and tail[c].null_count() == 0]
    assert len(complete) >= 10
    return tail.select("ts", *complete)


@pytest.fixture(scope="module")
def frontier(prices: pl.DataFrame) -> Figure:
    return plot_frontier(prices, points=POINTS, risk_free_rate=RF)


def axes_of(figure: Figure):
    assert len(figure.axes) == 1
    return figure.axes[0]


def line(ax, label: str) -> Line2D:
    found = [x for x in ax.lines if x.get_label() == label]
    assert len(found) == 1, [x.get_label() for x in ax.lines]
    return found[0]


def scatter(ax, prefix: str) -> np.ndarray:
    found = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_label().startswith(prefix)]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return np.asarray(found[0].get_offsets(), dtype=float)


def agg_axes():
    figure = Figure()
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def long_frame(rows: list[tuple[int, str, float]]) -> pl.DataFrame:
    """``(day, symbol, weight)`` rows as a long weights frame."""
    return pl.DataFrame(
        {
            "ts": pl.Series([START + dt.timedelta(days=d) for d, _, _ in rows], dtype=TS),
            "symbol": [s for _, s, _ in rows],
            "weight": [w for _, _, w in rows],
        }
    )


def layers(ax) -> list[StepPatch]:
    """The filled stacked layers (every StepPatch but the net line)."""
    return [p for p in ax.patches if isinstance(p, StepPatch) and p.get_label() != "net"]


def net_patch(ax) -> StepPatch:
    found = [p for p in ax.patches if isinstance(p, StepPatch) and p.get_label() == "net"]
    assert len(found) == 1
    return found[0]


def stacked_total(ax) -> np.ndarray:
    return np.sum([p.get_data().values - p.get_data().baseline for p in layers(ax)], axis=0)


def labels(ax) -> list[str]:
    return [p.get_label() for p in layers(ax) if not p.get_label().startswith("_")]


@pytest.fixture(scope="module")
def rebalances(prices: pl.DataFrame) -> pl.DataFrame:
    """Monthly inverse-volatility weights (63-day window) of the real prices, as a long frame."""
    symbols = [c for c in prices.columns if c != "ts"]
    vol = prices.select("ts", *[pl.col(s).pct_change().rolling_std(63).alias(s) for s in symbols]).drop_nulls()
    monthly = vol.group_by_dynamic("ts", every="1mo").agg(pl.all().last()).drop("ts_right", strict=False)
    inverse = monthly.select("ts", *[(1.0 / pl.col(s)).alias(s) for s in symbols])
    total = inverse.select(pl.sum_horizontal(symbols)).to_series()
    wide = inverse.with_columns([pl.col(s) / total for s in symbols])
    frame = wide.unpivot(index="ts", variable_name="symbol", value_name="weight")
    # a few names not held at a few rebalances: missing rows, which count as 0
    return frame.filter(~((pl.col("symbol") == symbols[0]) & (pl.col("ts").dt.month() == 3)))


@pytest.fixture(scope="module")
def equal_contributions(prices: pl.DataFrame) -> pl.DataFrame:
    cov = risk_model(prices)
    n = cov.shape[0]
    return risk_contributions(np.full(n, 1.0 / n), cov.to_numpy(), list(cov.index))


# ----------------------------------------------------------------------------- frontier
def test_frontier_figure_and_legend(frontier: Figure) -> None:
    assert isinstance(frontier, Figure)
    assert frontier._repr_png_().startswith(b"\x89PNG")
    ax = axes_of(frontier)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["efficient frontier", "assets", "capital market line"]
    assert legend[3].startswith("max Sharpe (") and legend[4] == "min volatility"
    assert ax.xaxis.get_major_formatter().format_data(0.25) == "25%"
    assert ax.yaxis.get_major_formatter().format_data(0.5) == "50%"


def test_frontier_spans_min_volatility_to_max_return(prices: pl.DataFrame, frontier: Figure) -> None:
    ax = axes_of(frontier)
    vols, rets = (np.asarray(a, dtype=float) for a in line(ax, "efficient frontier").get_data())
    assert vols.size == POINTS
    min_vol = optimize(prices, "min_volatility", risk_free_rate=RF).performance
    assert rets[0] == pytest.approx(min_vol["expected_return"], abs=1e-6)
    assert vols[0] == pytest.approx(min_vol["volatility"], abs=1e-6)
    assert rets[-1] == pytest.approx(float(expected_returns(prices).max()) - 1e-4, abs=1e-6)


def test_frontier_volatility_rises_with_return(frontier: Figure) -> None:
    vols, rets = (np.asarray(a, dtype=float) for a in line(axes_of(frontier), "efficient frontier").get_data())
    order = np.argsort(rets, kind="stable")
    assert np.all(np.diff(rets[order]) > 0)
    assert np.all(np.diff(vols[order]) >= -1e-8)


def test_no_asset_beats_the_frontier(prices: pl.DataFrame, frontier: Figure) -> None:
    ax = axes_of(frontier)
    vols, rets = (np.asarray(a, dtype=float) for a in line(ax, "efficient frontier").get_data())
    assets = scatter(ax, "assets")
    mu, cov = expected_returns(prices), risk_model(prices)
    np.testing.assert_allclose(assets[:, 0], np.sqrt(np.diag(cov.to_numpy())), rtol=0, atol=TOL)
    np.testing.assert_allclose(assets[:, 1], mu.to_numpy(), rtol=0, atol=TOL)
    for vol, ret in zip(vols, rets):
        # an asset returning at least as much is a feasible long-only portfolio: it cannot be less risky
        at_least = assets[assets[:, 1] >= ret]
        assert np.all(at_least[:, 0] >= vol - 1e-6), (vol, ret, at_least)
    # and the assets are named
    assert sorted(t.get_text() for t in ax.texts) == sorted(mu.index)


def test_frontier_markers_are_optimize_results(prices: pl.DataFrame, frontier: Figure) -> None:
    ax = axes_of(frontier)
    ms = optimize(prices, "max_sharpe", risk_free_rate=RF).performance
    mv = optimize(prices, "min_volatility", risk_free_rate=RF).performance
    np.testing.assert_allclose(scatter(ax, "max Sharpe")[0], [ms["volatility"], ms["expected_return"]], atol=TOL)
    np.testing.assert_allclose(scatter(ax, "min volatility")[0], [mv["volatility"], mv["expected_return"]], atol=TOL)
    assert scatter(ax, "max Sharpe").shape == (1, 2)


def test_capital_market_line(prices: pl.DataFrame, frontier: Figure) -> None:
    ax = axes_of(frontier)
    ms = optimize(prices, "max_sharpe", risk_free_rate=RF).performance
    x, y = (np.asarray(a, dtype=float) for a in line(ax, "capital market line").get_data())
    assert x[0] == 0.0 and y[0] == pytest.approx(RF, abs=TOL)
    assert np.interp(ms["volatility"], x, y) == pytest.approx(ms["expected_return"], abs=TOL)
    assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(ms["sharpe"], abs=1e-9)
    # tangency: no frontier point lies above the line
    vols, rets = (np.asarray(a, dtype=float) for a in line(ax, "efficient frontier").get_data())
    assert np.all(rets <= RF + ms["sharpe"] * vols + 1e-6)
    assert ax.get_xlim()[0] == 0.0 and ax.get_xlim()[1] == pytest.approx(x[-1])


def test_frontier_draws_into_given_axes(prices: pl.DataFrame) -> None:
    figure, ax = agg_axes()
    out = plot_frontier(prices, points=POINTS, show_assets=False, ax=ax)
    assert out is figure and len(figure.axes) == 1
    assert line(ax, "efficient frontier").get_xydata().shape == (POINTS, 2)
    assert not any(c.get_label() == "assets" for c in ax.collections)
    assert len(ax.texts) == 0


def test_frontier_with_shorts(prices: pl.DataFrame) -> None:
    fig = plot_frontier(prices, points=POINTS, weight_bounds=(-0.5, 1), show_assets=False)
    _, rets = line(axes_of(fig), "efficient frontier").get_data()
    ef = EfficientFrontier(expected_returns(prices), risk_model(prices), weight_bounds=(-0.5, 1))
    assert float(rets[-1]) == pytest.approx(ef._max_return() - 1e-4, abs=1e-5)
    long_only = line(axes_of(plot_frontier(prices, points=POINTS, show_assets=False)), "efficient frontier")
    assert float(rets[-1]) > float(long_only.get_ydata()[-1])


@pytest.mark.parametrize("bounds", [(0, 1), (-0.5, 1), (None, None), (0.01, 0.3), (None, 0.2)])
def test_max_return_matches_pypfopt(prices: pl.DataFrame, bounds: tuple[float | None, float | None]) -> None:
    mu, cov = expected_returns(prices), risk_model(prices)
    lp = EfficientFrontier(mu, cov, weight_bounds=bounds)._max_return()
    assert plots._max_return(mu.to_numpy(), len(mu), bounds) == pytest.approx(lp, abs=1e-6)


def test_frontier_skips_failed_points(prices: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    real = EfficientFrontier.efficient_return
    calls = []

    def every_other(self, target_return, market_neutral=False):
        calls.append(target_return)
        if len(calls) % 2 == 0:
            raise pfo_exc.OptimizationError("solver said no")
        return real(self, target_return, market_neutral)

    monkeypatch.setattr(EfficientFrontier, "efficient_return", every_other)
    fig = plot_frontier(prices, points=10, show_assets=False)
    assert len(calls) == 10
    assert line(axes_of(fig), "efficient frontier").get_xydata().shape == (5, 2)


def test_frontier_needs_two_points(prices: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    real = EfficientFrontier.efficient_return
    calls = []

    def first_only(self, target_return, market_neutral=False):
        calls.append(target_return)
        if len(calls) > 1:
            raise ValueError("infeasible")
        return real(self, target_return, market_neutral)

    monkeypatch.setattr(EfficientFrontier, "efficient_return", first_only)
    with pytest.raises(OptimizationError, match=r"only 1 of 12 efficient-frontier points could be solved"):
        plot_frontier(prices, points=POINTS)


def test_frontier_errors(prices: pl.DataFrame) -> None:
    with pytest.raises(OptimizationError, match="infeasible weight_bounds"):
        plot_frontier(prices, points=POINTS, weight_bounds=(0, 0.01))
    with pytest.raises(OptimizationError, match="risk_free_rate"):
        plot_frontier(prices, points=POINTS, risk_free_rate=50.0)
    for bad in (1, 0, 2.5, True, "12"):
        with pytest.raises(ConfigError, match="points must be an integer >= 2"):
            plot_frontier(prices, points=bad)
    with pytest.raises(ConfigError, match="risk-model method"):
        plot_frontier(prices, points=POINTS, cov_method="nope")


def test_frontier_of_identical_returns_is_a_point(prices: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    # every target collapses to one return: one point only, which is not a frontier
    monkeypatch.setattr(plots, "_max_return", lambda mu, n, bounds: -1.0)
    with pytest.raises(OptimizationError, match=r"only 1 of 1 efficient-frontier points"):
        plot_frontier(prices, points=POINTS)


# ----------------------------------------------------------------------------- weights
def test_weights_stack_to_the_sum_per_rebalance(rebalances: pl.DataFrame) -> None:
    fig = plot_weights(rebalances, top=5)
    ax = axes_of(fig)
    sums = rebalances.group_by("ts").agg(pl.col("weight").sum()).sort("ts")
    np.testing.assert_allclose(stacked_total(ax), sums["weight"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(net_patch(ax).get_data().values, sums["weight"].to_numpy(), rtol=0, atol=1e-12)
    # long-only: layers are contiguous from 0 upwards, the last one ending at the total
    stack = layers(ax)
    assert len(stack) == 6
    np.testing.assert_array_equal(stack[0].get_data().baseline, 0.0)
    for below, above in itertools.pairwise(stack):
        np.testing.assert_array_equal(above.get_data().baseline, below.get_data().values)
    np.testing.assert_allclose(stack[-1].get_data().values, sums["weight"].to_numpy(), atol=1e-12)
    assert np.min(stack[-1].get_data().values) < 0.99  # the month a name was left out
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_weights_top_and_other(rebalances: pl.DataFrame) -> None:
    ax = axes_of(plot_weights(rebalances, top=4))
    held = rebalances["ts"].n_unique()
    score = rebalances.group_by("symbol").agg((pl.col("weight").abs().sum() / held).alias("s"))
    expected = score.sort(["s", "symbol"], descending=[True, False])["symbol"].head(4).to_list()
    assert labels(ax) == [*expected, "other"]
    other = next(p for p in layers(ax) if p.get_label() == "other")
    rest = rebalances.filter(~pl.col("symbol").is_in(expected)).group_by("ts").agg(pl.col("weight").sum()).sort("ts")
    data = other.get_data()
    np.testing.assert_allclose(data.values - data.baseline, rest["weight"].to_numpy(), atol=1e-12)
    assert to_rgba(other.get_facecolor()) == to_rgba(_GREY)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [*expected, "other", "net"]


def test_weights_two_of_five_with_missing_pairs() -> None:
    frame = long_frame(
        [
            (0, "A", 0.5), (0, "B", 0.3), (0, "C", 0.1), (0, "D", 0.05), (0, "E", 0.05),
            (7, "A", 0.6), (7, "C", 0.3), (7, "E", 0.1),
            (14, "B", 0.9), (14, "D", 0.1),
        ]
    )  # fmt: skip
    ax = axes_of(plot_weights(frame, top=2))
    # mean |w| over the 3 rebalances, missing = 0: A 1.1/3, B 1.2/3, C 0.4/3, D 0.15/3, E 0.15/3
    assert labels(ax) == ["B", "A", "other"]
    b, a, other = layers(ax)
    np.testing.assert_allclose(b.get_data().values - b.get_data().baseline, [0.3, 0.0, 0.9])
    np.testing.assert_allclose(a.get_data().values - a.get_data().baseline, [0.5, 0.6, 0.0])
    np.testing.assert_allclose(other.get_data().values - other.get_data().baseline, [0.2, 0.4, 0.1])
    np.testing.assert_allclose(stacked_total(ax), [1.0, 1.0, 1.0])
    edges = b.get_data().edges
    # weekly rebalances (in days since the epoch): the last one is held for one median interval
    np.testing.assert_allclose(np.diff(edges), [7.0, 7.0, 7.0])


def test_weights_with_shorts() -> None:
    frame = long_frame(
        [
            (0, "L1", 0.8), (0, "L2", 0.6), (0, "S1", -0.3), (0, "S2", -0.1),
            (1, "L1", 0.7), (1, "L2", -0.2), (1, "S1", -0.4), (1, "S2", 0.2),
        ]
    )  # fmt: skip
    ax = axes_of(plot_weights(frame))
    sums = np.array([1.0, 0.3])
    np.testing.assert_allclose(stacked_total(ax), sums, atol=1e-12)
    np.testing.assert_allclose(net_patch(ax).get_data().values, sums, atol=1e-12)
    up = [p for p in layers(ax) if np.all(p.get_data().values >= p.get_data().baseline)]
    down = [p for p in layers(ax) if np.any(p.get_data().values < p.get_data().baseline)]
    assert all(np.all(p.get_data().values <= p.get_data().baseline) for p in down)
    # longs stack up from 0 to the long exposure; shorts down from 0 to the short exposure
    assert all(np.all(p.get_data().baseline >= 0) for p in up)
    assert all(np.all(p.get_data().baseline <= 0) for p in down)
    np.testing.assert_allclose(max((p.get_data().values for p in up), key=np.sum), [1.4, 0.9])
    np.testing.assert_allclose(min((p.get_data().values for p in down), key=np.sum), [-0.4, -0.6])
    # one legend entry per symbol; a symbol's short layer has its colour
    assert labels(ax) == ["L1", "L2", "S1", "S2"]  # mean |w|: 0.75, 0.4, 0.35, 0.15
    assert [p.get_label() for p in layers(ax)] == ["L1", "L2", "_L2 short", "S1", "_S1 short", "S2", "_S2 short"]
    colour = {p.get_label(): p.get_facecolor() for p in layers(ax)}
    for name in ("L2", "S1", "S2"):
        assert colour[f"_{name} short"] == colour[name]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["L1", "L2", "S1", "S2", "net"]
    assert any(line.get_ydata()[0] == 0.0 for line in ax.lines)  # zero line


def test_weights_date_column_single_rebalance_and_given_axes() -> None:
    frame = pl.DataFrame({"ts": [dt.date(2024, 1, 31)] * 2, "symbol": ["X", "Y"], "weight": [0.25, 0.75]})
    figure, ax = agg_axes()
    assert plot_weights(frame, ax=ax) is figure
    assert labels(ax) == ["Y", "X"]
    np.testing.assert_allclose(np.diff(layers(ax)[0].get_data().edges), [1.0])  # one day
    np.testing.assert_allclose(stacked_total(ax), [1.0])


@pytest.mark.parametrize(
    ("frame", "error", "match"),
    [
        ("not a frame", SchemaError, "must be a Polars DataFrame, got str"),
        (pl.DataFrame({"ts": [START], "symbol": ["A"]}), SchemaError, r"missing column\(s\) \['weight'\].*unpivot"),
        (pl.DataFrame({"ts": ["2024"], "symbol": ["A"], "weight": [1.0]}), SchemaError, "'ts' must be a Datetime"),
        (pl.DataFrame({"ts": [START], "symbol": ["A"], "weight": ["1"]}), SchemaError, "'weight' must be numeric"),
        (
            pl.DataFrame(schema={"ts": TS, "symbol": pl.String, "weight": pl.Float64}),
            DataError,
            "weights frame is empty",
        ),
        (long_frame([(0, "A", float("nan")), (0, "B", 1.0)]), DataError, r"column 'weight' has 1 null or non-finite"),
        (long_frame([(0, "A", 0.5), (0, "B", float("inf"))]), DataError, r"column 'weight'.*symbol='B'"),
        (
            pl.DataFrame({"ts": [START], "symbol": ["A"], "weight": [None]}, schema_overrides={"weight": pl.Float64}),
            DataError,
            "column 'weight' has 1 null",
        ),
        (pl.DataFrame({"ts": [START, START], "symbol": ["A", None], "weight": [0.5, 0.5]}), DataError, "'symbol'"),
        (pl.DataFrame({"ts": [START, None], "symbol": ["A", "B"], "weight": [0.5, 0.5]}), DataError, "'ts' has 1 null"),
        (long_frame([(0, "A", 0.5), (0, "A", 0.5)]), DataError, r"sharing a \(ts, symbol\) pair.*'A'"),
    ],
)
def test_weights_errors(frame: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        plot_weights(frame)  # type: ignore[arg-type]


@pytest.mark.parametrize("top", [0, -1, 2.0, True])
def test_top_must_be_a_positive_integer(top: object) -> None:
    frame = long_frame([(0, "A", 1.0)])
    with pytest.raises(ConfigError, match="top must be an integer >= 1"):
        plot_weights(frame, top=top)  # type: ignore[arg-type]
    contributions = pl.DataFrame({"symbol": ["A"], "weight": [1.0], "percent": [1.0]})
    with pytest.raises(ConfigError, match="top must be an integer >= 1"):
        plot_risk_contributions(contributions, top=top)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- risk contributions
def bars(ax, label: str) -> BarContainer:
    found = [c for c in ax.containers if c.get_label() == label]
    assert len(found) == 1
    return found[0]


def test_risk_bars_are_the_percent_values(equal_contributions: pl.DataFrame) -> None:
    fig = plot_risk_contributions(equal_contributions)
    ax = axes_of(fig)
    names = [t.get_text() for t in ax.get_yticklabels()]
    expected = equal_contributions.sort("percent", descending=True)
    assert names == expected["symbol"].to_list()  # 19 names < top=20: no "other"
    risk = np.array([p.get_width() for p in bars(ax, "risk share")])
    weight = np.array([p.get_width() for p in bars(ax, "weight")])
    np.testing.assert_allclose(risk, expected["percent"].to_numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(weight, expected["weight"].to_numpy(), rtol=0, atol=TOL)
    assert np.all(np.diff(risk) <= 0)
    # largest first means top of the chart: the first row has the largest y on an inverted axis
    assert ax.yaxis_inverted()
    ys = [p.get_y() for p in bars(ax, "risk share")]
    assert ys == sorted(ys)
    # red where a name carries more risk than capital
    for patch, p, w in zip(bars(ax, "risk share"), risk, weight):
        assert to_rgba(patch.get_facecolor()) == to_rgba(_RED if p > w else _BLUE)
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_risk_top_groups_the_rest(equal_contributions: pl.DataFrame) -> None:
    ax = axes_of(plot_risk_contributions(equal_contributions, top=5))
    names = [t.get_text() for t in ax.get_yticklabels()]
    ranked = equal_contributions.sort("percent", descending=True)
    assert names == [*ranked["symbol"].head(5).to_list(), "other"]
    risk = [p.get_width() for p in bars(ax, "risk share")]
    weight = [p.get_width() for p in bars(ax, "weight")]
    assert risk[-1] == pytest.approx(float(ranked["percent"].tail(-5).sum()), abs=TOL)
    assert weight[-1] == pytest.approx(float(ranked["weight"].tail(-5).sum()), abs=TOL)
    assert sum(risk) == pytest.approx(1.0, abs=1e-9) and sum(weight) == pytest.approx(1.0, abs=1e-9)


def test_risk_of_an_optimised_portfolio_leaves_out_names_not_held(prices: pl.DataFrame) -> None:
    cov = risk_model(prices)
    held = optimize(prices, "max_sharpe").to_dict()
    contributions = risk_contributions([held[s] for s in cov.index], cov.to_numpy(), list(cov.index))
    figure, ax = agg_axes()
    assert plot_risk_contributions(contributions, ax=ax) is figure
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(names) == sorted(s for s, w in held.items() if w != 0)
    assert len(names) < len(held)


def test_risk_hedges_are_ranked_by_size() -> None:
    frame = pl.DataFrame(
        {
            "symbol": ["A", "B", "H", "C"],
            "weight": [0.6, 0.5, -0.2, 0.1],
            "marginal": [0.0] * 4,
            "component": [0.0] * 4,
            "percent": [0.9, 0.35, -0.3, 0.05],
        }
    )
    ax = axes_of(plot_risk_contributions(frame, top=3))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "H", "other"]
    np.testing.assert_allclose([p.get_width() for p in bars(ax, "risk share")], [0.9, 0.35, -0.3, 0.05])
    np.testing.assert_allclose([p.get_width() for p in bars(ax, "weight")], [0.6, 0.5, -0.2, 0.1])


@pytest.mark.parametrize(
    ("frame", "error", "match"),
    [
        ({"symbol": ["A"]}, SchemaError, "must be a Polars DataFrame, got dict"),
        (pl.DataFrame({"symbol": ["A"], "weight": [1.0]}), SchemaError, r"missing column\(s\) \['percent'\]"),
        (pl.DataFrame({"symbol": ["A"], "weight": ["x"], "percent": [1.0]}), SchemaError, "'weight' must be numeric"),
        (
            pl.DataFrame(schema={"symbol": pl.String, "weight": pl.Float64, "percent": pl.Float64}),
            DataError,
            "contributions frame is empty",
        ),
        (
            pl.DataFrame({"symbol": ["A", "B"], "weight": [0.5, 0.5], "percent": [float("nan"), 1.0]}),
            DataError,
            r"column 'percent' has 1 null or non-finite value\(s\) \(symbols \['A'\]\)",
        ),
        (
            pl.DataFrame({"symbol": ["A", None], "weight": [0.5, 0.5], "percent": [0.5, 0.5]}),
            DataError,
            "'symbol' has 1 null",
        ),
        (
            pl.DataFrame({"symbol": ["A", "A"], "weight": [0.5, 0.5], "percent": [0.5, 0.5]}),
            DataError,
            r"repeats \['A'\]",
        ),
        (
            pl.DataFrame({"symbol": ["A", "B"], "weight": [0.0, 0.0], "percent": [0.0, 0.0]}),
            DataError,
            "non-zero weight or risk share",
        ),
    ],
)
def test_risk_errors(frame: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        plot_risk_contributions(frame)  # type: ignore[arg-type]


def test_many_assets_are_not_named(prices: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "_MAX_LABELLED_ASSETS", 5)
    ax = axes_of(plot_frontier(prices, points=2))
    assert scatter(ax, "assets").shape == (prices.width - 1, 2)
    assert len(ax.texts) == 0
