"""Parameter sweeps: every row equals a direct backtest, in grid order, for every scheduler;
constraints, best, heatmap, the notebook repr, failing combinations and every ConfigError.

Runs on 5,000 SPY minute bars (fewer without the JIT, where the engine runs as Python).
"""

from __future__ import annotations

import math
import sys
import types
from datetime import timedelta

import numba
import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure
from numba import njit

import ntlab.datasets
from ntlab.backtest import backtest, bar_data
from ntlab.backtest.sweep import SweepResult, sweep
from ntlab.exceptions import (
    ConfigError,
    DataError,
    EngineUnavailableError,
    NtlabWarning,
)
from ntlab.strategy import CompiledStrategy, Strategy
from ntlab.strategy.examples import SmaCross, sma_cross

NO_JIT = bool(numba.config.DISABLE_JIT)
GRID = {"fast": [3, 5, 8], "slow": [20, 30, 40]}
METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades")
QUIET = {"progress": False}


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return ntlab.datasets.load("spy_1min").head(2000 if NO_JIT else 5000)


@pytest.fixture(scope="module")
def direct(bars: pl.DataFrame) -> dict[tuple[int, int], dict[str, float]]:
    """The metrics of direct backtest() runs of sma_cross over GRID."""
    data = bar_data(bars)
    out = {}
    for fast in GRID["fast"]:
        for slow in GRID["slow"]:
            metrics = backtest(data, sma_cross, fast=fast, slow=slow).metrics()
            out[fast, slow] = {key: float(metrics[key]) for key in METRICS}
    return out


@pytest.fixture(scope="module")
def swept(bars: pl.DataFrame) -> SweepResult:
    return sweep(bars, sma_cross, GRID, n_jobs=2, **QUIET)


def check_rows(result: SweepResult, direct: dict[tuple[int, int], dict[str, float]]) -> None:
    """Grid order (last key fastest), columns, and metrics exactly those of direct runs."""
    frame = result.frame
    assert frame.columns == ["fast", "slow", *METRICS, "error"]
    assert frame.schema["fast"] == pl.Int64 and all(frame.schema[m] == pl.Float64 for m in METRICS)
    assert frame.schema["error"] == pl.String and frame["error"].null_count() == frame.height
    expected = [(f, s) for f in GRID["fast"] for s in GRID["slow"]]
    assert list(zip(frame["fast"], frame["slow"], strict=True)) == expected
    for row in frame.iter_rows(named=True):
        want = direct[row["fast"], row["slow"]]
        for key in METRICS:
            assert row[key] == want[key] or (math.isnan(row[key]) and math.isnan(want[key])), (row, key)
    assert len(result) == len(expected) and result.params == ("fast", "slow") and result.metrics == METRICS


# ---------------------------------------------------------------------------------------------
# Schedulers agree with direct runs


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_threads_equal_direct_runs(bars, direct, n_jobs) -> None:
    check_rows(sweep(bars, sma_cross, GRID, n_jobs=n_jobs, scheduler="threads", **QUIET), direct)


def test_default_scheduler_and_prepared_bars(bars, direct, swept) -> None:
    check_rows(swept, direct)
    check_rows(sweep(bar_data(bars), sma_cross, GRID, **QUIET), direct)  # n_jobs=None: every core


def test_dask_local_cluster_equals_direct_runs(bars, direct) -> None:
    options = {"processes": False, "n_workers": 1, "threads_per_worker": 2, "dashboard_address": None}
    check_rows(sweep(bars, sma_cross, GRID, scheduler="dask", dask_options=options, **QUIET), direct)


def test_dask_address_and_client(bars, direct) -> None:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster, Client(cluster) as client:
        check_rows(sweep(bars, sma_cross, GRID, address=client, **QUIET), direct)  # scheduler defaults to dask
        assert client.status == "running"  # a Client we did not open stays open
        check_rows(sweep(bars, sma_cross, GRID, address=cluster.scheduler_address, n_jobs=2, **QUIET), direct)
        assert client.status == "running"
        with pytest.raises(ConfigError, match="dask_options do not apply to an existing Client"):
            sweep(bars, sma_cross, GRID, address=client, dask_options={"timeout": 5}, **QUIET)


def test_dask_python_strategy(bars) -> None:
    grid = {"fast": [3, 5], "slow": [20]}
    result = sweep(bars, SmaCross, grid, scheduler="dask", n_jobs=2, dask_options={"processes": False, "dashboard_address": None}, **QUIET)
    for row in result.frame.iter_rows(named=True):
        assert row["sharpe"] == backtest(bars, SmaCross(fast=row["fast"], slow=20)).metrics()["sharpe"]


def test_processes_python_strategy_class_equals_direct_runs(bars) -> None:
    grid = {"fast": [3, 5], "slow": [20]}
    result = sweep(bars, SmaCross, grid, n_jobs=2, **QUIET)  # Python class: processes by default
    assert result.frame["fast"].to_list() == [3, 5]
    for row in result.frame.iter_rows(named=True):
        metrics = backtest(bars, SmaCross(fast=row["fast"], slow=row["slow"])).metrics()
        assert {key: row[key] for key in METRICS} == {key: float(metrics[key]) for key in METRICS}
        assert row["error"] is None


def test_python_strategy_in_threads(bars) -> None:
    result = sweep(bars, SmaCross, {"fast": [3], "slow": [20, 30]}, scheduler="threads", n_jobs=2, metrics="sharpe", **QUIET)
    assert result.frame.columns == ["fast", "slow", "sharpe", "error"]
    assert result.frame["sharpe"].to_list() == [backtest(bars, SmaCross(fast=3, slow=s)).metrics()["sharpe"] for s in (20, 30)]


def test_dask_missing(bars, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(EngineUnavailableError, match=r"pip install 'dask\[distributed\]'"):
        sweep(bars, sma_cross, GRID, scheduler="dask", **QUIET)


# ---------------------------------------------------------------------------------------------
# Grid handling, progress, best, heatmap, repr


def test_constraint_numpy_values_and_other_params(bars, direct) -> None:
    result = sweep(bars, sma_cross, {"fast": np.array([3, 5, 8]), "slow": range(20, 41, 10), "size": [1.0]}, constraint=lambda p: p["fast"] * 5 < p["slow"], n_jobs=2, **QUIET)
    pairs = list(zip(result.frame["fast"], result.frame["slow"], strict=True))
    assert pairs == [(3, 20), (3, 30), (3, 40), (5, 30), (5, 40)]
    assert all(type(v) is int for v in result.frame["fast"].to_list())  # NumPy scalars become Python ones
    for row in result.frame.iter_rows(named=True):
        assert row["sharpe"] == direct[row["fast"], row["slow"]]["sharpe"]
    assert result.frame["size"].to_list() == [1.0] * 5


def test_progress_bar(bars, capsys) -> None:
    sweep(bars, sma_cross, {"fast": [3, 5], "slow": [20]}, n_jobs=1, progress=True)
    assert "2/2" in capsys.readouterr().err
    sweep(bars, sma_cross, {"fast": [3, 5], "slow": [20]}, n_jobs=1, progress=False)
    assert capsys.readouterr().err == ""


def test_best(swept, direct) -> None:
    sharpe = {k: v["sharpe"] for k, v in direct.items()}
    fast, slow = max(sharpe, key=sharpe.get)
    assert swept.best() == {"fast": fast, "slow": slow}
    trades = {k: v["n_trades"] for k, v in direct.items()}
    fast, slow = min(trades, key=trades.get)
    assert swept.best("n_trades", maximize=False) == {"fast": fast, "slow": slow}
    with pytest.raises(ConfigError, match="no metric 'sortino' in this sweep"):
        swept.best("sortino")


def test_heatmap_pivot(swept, direct) -> None:
    fig = swept.heatmap("fast", "slow", "sharpe")
    assert isinstance(fig, Figure)
    image = fig.axes[0].images[0].get_array()
    expected = np.array([[direct[f, s]["sharpe"] for f in GRID["fast"]] for s in GRID["slow"]])
    np.testing.assert_array_equal(np.ma.filled(image, np.nan), expected)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3", "5", "8"] and ax.get_xlabel() == "fast" and ax.get_ylabel() == "slow"
    assert len(fig.axes) == 2  # the colorbar
    assert len(ax.texts) == 9  # annotated cells
    transposed = swept.heatmap("slow", "fast", "sharpe", annotate=False)
    np.testing.assert_array_equal(np.ma.filled(transposed.axes[0].images[0].get_array(), np.nan), expected.T)
    assert not transposed.axes[0].texts
    assert fig._repr_png_()[:4] == b"\x89PNG"  # displays in notebooks without pyplot


def test_heatmap_missing_cells_other_params_and_given_axes(bars, direct) -> None:
    grid = {"fast": [3, 5], "slow": [20, 30], "size": [1.0, 2.0]}
    result = sweep(bars, sma_cross, grid, constraint=lambda p: not (p["fast"] == 5 and p["slow"] == 20), n_jobs=2, **QUIET)
    assert len(result) == 6
    fig = Figure()
    ax = fig.add_subplot()
    assert result.heatmap("fast", "slow", "n_trades", ax=ax, agg="max") is fig
    image = ax.images[0].get_array()
    assert image.mask.tolist() == [[False, True], [False, False]]  # (fast=5, slow=20) was filtered out
    assert image[0, 0] == direct[3, 20]["n_trades"] and image[1, 1] == direct[5, 30]["n_trades"]
    assert ax.get_title() == "n_trades (max over size)"
    mean = result.heatmap("fast", "slow", "total_return").axes[0].images[0].get_array()
    rows = result.frame.filter(pl.col("fast") == 3, pl.col("slow") == 30)["total_return"].to_numpy()
    assert mean[1, 0] == np.mean(rows)


def test_heatmap_errors(swept) -> None:
    with pytest.raises(ConfigError, match="'size' is not a parameter of this sweep"):
        swept.heatmap("size", "slow", "sharpe")
    with pytest.raises(ConfigError, match="x and y are both 'fast'"):
        swept.heatmap("fast", "fast", "sharpe")
    with pytest.raises(ConfigError, match="no metric 'calmar'"):
        swept.heatmap("fast", "slow", "calmar")
    with pytest.raises(ConfigError, match="agg='sum' is not one of"):
        swept.heatmap("fast", "slow", "sharpe", agg="sum")


def test_repr_html(swept) -> None:
    text = swept._repr_html_()
    best = swept.best()
    assert f"best sharpe {swept.frame['sharpe'].max():.4g} at fast={best['fast']}, slow={best['slow']}" in text
    assert "<table" in text and "9 combinations" in text and "more rows" not in text


def test_repr_html_long_and_other_metric(bars) -> None:
    result = sweep(bars.head(300), sma_cross, {"fast": [2, 3, 4, 5, 6], "slow": [10, 11, 12, 13, 14]}, metrics=["n_trades"], **QUIET)
    text = result._repr_html_()
    assert "best n_trades" in text and "(5 more rows in <code>.frame</code>)" in text


def test_python_param_values_of_any_kind(bars) -> None:
    """None among strings (no order: grid order on the axis), objects Polars cannot type."""
    result = sweep(bars, SmaCross, {"fast": [3, 5], "symbol": [None, "SPY"]}, scheduler="threads", n_jobs=1, **QUIET)
    assert result.frame["symbol"].to_list() == [None, "SPY", None, "SPY"]
    np.testing.assert_array_equal(result.frame.filter(pl.col("symbol").is_null())["sharpe"], result.frame.filter(pl.col("symbol") == "SPY")["sharpe"])
    ax = result.heatmap("fast", "symbol", "sharpe").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["None", "SPY"]


# ---------------------------------------------------------------------------------------------
# Failing combinations


@njit
def _noop_on_bar(ctx, state):
    pass


def _fragile_init(k: int = 0, tag: object = None) -> np.ndarray:
    if k == 2:
        msg = "k=2 is not supported"
        raise ValueError(msg)
    return np.zeros(1)


def _open_init(**params: object) -> np.ndarray:
    return np.zeros(1)


fragile = CompiledStrategy(on_bar=_noop_on_bar, init=_fragile_init)
open_ended = CompiledStrategy(on_bar=_noop_on_bar, init=_open_init)


def test_failing_combination_gives_an_error_row(bars) -> None:
    metrics = ["total_return", "n_trades", "avg_holding_time"]
    with pytest.warns(NtlabWarning, match=r"1 of 3 combinations failed \(first: \{'k': 2\}: ValueError: k=2 is not supported\)"):
        result = sweep(bars, fragile, {"k": [1, 2, 3]}, metrics=metrics, n_jobs=2, **QUIET)
    frame = result.frame
    assert frame["error"].to_list() == [None, "ValueError: k=2 is not supported", None]
    assert result.n_failed == 1
    failed = frame.row(1, named=True)
    assert all(math.isnan(failed[m]) for m in metrics)
    ok = frame.row(0, named=True)
    assert ok["total_return"] == 0.0 and ok["n_trades"] == 0.0 and math.isnan(ok["avg_holding_time"])  # no trades: None -> NaN
    assert "1 failed" in result._repr_html_()


def test_all_failed(bars) -> None:
    with pytest.warns(NtlabWarning, match="1 of 1 combinations failed"):
        result = sweep(bars, fragile, {"k": [2]}, **QUIET)
    with pytest.raises(DataError, match="no combination has a defined 'sharpe'"):
        result.best()
    assert "no combination has a defined sharpe" in result._repr_html_()
    fig = sweep(bars, fragile, {"k": [0, 1], "tag": ["a", "b"]}, **QUIET).heatmap("k", "tag", "sharpe")  # flat equity: NaN Sharpe
    assert fig.axes[0].images[0].get_array().mask.all() and not fig.axes[0].texts


def test_durations_are_days(bars) -> None:
    result = sweep(bars, sma_cross, {"fast": [3]}, metrics=("avg_holding_time",), **QUIET)
    expected = backtest(bars, sma_cross, fast=3).metrics()["avg_holding_time"]
    assert result.frame["avg_holding_time"][0] == expected / timedelta(days=1)


def test_object_and_mixed_param_values(bars) -> None:
    marker = object()
    result = sweep(bars.head(50), open_ended, {"a": [1, "x"], "b": [marker], "c": [np.zeros(2)]}, metrics="total_return", **QUIET)
    assert result.frame.schema["a"] == pl.Object and result.frame["a"].to_list() == [1, "x"]
    assert result.frame["b"].to_list() == [marker, marker]
    assert result.best("total_return")["a"] == 1


def test_init_without_signature(bars) -> None:
    """The grid's keys cannot be checked: the runs report the problem."""
    with pytest.warns(NtlabWarning, match="2 of 2 combinations failed"):
        result = sweep(bars.head(50), CompiledStrategy(on_bar=_noop_on_bar, init=dict), {"a": [1, 2]}, **QUIET)
    assert result.frame["error"].str.contains("ConfigError").all()


# ---------------------------------------------------------------------------------------------
# Configuration errors


class Sized(SmaCross):
    def __init__(self, fast: int, slow: int = 30) -> None:
        super().__init__(fast=fast, slow=slow)


class Flexible(SmaCross):
    def __init__(self, **params: object) -> None:
        super().__init__(**params)


@pytest.mark.parametrize(
    ("strategy", "grid", "kwargs", "match"),
    [
        (sma_cross, {}, {}, "grid must be a non-empty mapping"),
        (sma_cross, [("fast", [3])], {}, "grid must be a non-empty mapping"),
        (sma_cross, {"fast": []}, {}, r"grid\['fast'\] is empty"),
        (sma_cross, {"fast": 5}, {}, r"grid\['fast'\] must be a list of values, got int 5; write \[5\]"),
        (sma_cross, {"fast": "5"}, {}, r"grid\['fast'\] must be a list of values, got str"),
        (open_ended, {1: [3]}, {}, r"grid keys must be parameter names \(str\), got 1"),
        (sma_cross, {"fsat": [3]}, {}, r"grid key\(s\) \['fsat'\] are not parameters of the strategy's init; it takes \['fast', 'slow', 'size'\]"),
        (sma_cross, {"cash": [1.0]}, {}, r"grid key\(s\) \['cash'\] are arguments of sweep/backtest"),
        (SmaCross, {"fsat": [3]}, {}, r"\['fsat'\] are not parameters of SmaCross; it takes \['fast', 'size', 'slow', 'symbol'\]"),
        (SmaCross, {"on_bar": [3]}, {}, r"\['on_bar'\] are not parameters of SmaCross"),
        (Sized, {"size": [3]}, {}, r"\['size'\] are not parameters of Sized; it takes \['fast', 'slow'\]"),
        (SmaCross(), {"fast": [3]}, {}, "pass the Strategy class SmaCross, not an instance"),
        (sma_cross.init, {"fast": [3]}, {}, "strategy must be a CompiledStrategy or a Strategy subclass"),
        (Strategy, {"fast": [3]}, {}, r"\['fast'\] are not parameters of Strategy; it takes \[\]"),
        (sma_cross, GRID, {"scheduler": "mpi"}, r"scheduler='mpi' is not one of \['threads', 'processes', 'dask'\]"),
        (sma_cross, GRID, {"n_jobs": 0}, "n_jobs=0 must be an int >= 1"),
        (sma_cross, GRID, {"n_jobs": 1.5}, "n_jobs=1.5 must be an int >= 1"),
        (sma_cross, GRID, {"n_jobs": True}, "n_jobs=True must be an int >= 1"),
        (sma_cross, GRID, {"metrics": ["sharpe", "shrape"]}, r"got unknown \['shrape'\]"),
        (sma_cross, GRID, {"metrics": []}, "metrics is empty"),
        (open_ended, {"sharpe": [1]}, {}, r"grid key\(s\) \['sharpe'\] clash with the result's metric or 'error' columns"),
        (open_ended, {"error": [1]}, {}, r"\['error'\] clash"),
        (sma_cross, GRID, {"constraint": lambda p: p["fast"] > p["slow"]}, "the constraint rejects every combination"),
        (sma_cross, GRID, {"constraint": True}, "constraint must be a function"),
        (sma_cross, GRID, {"address": "tcp://localhost:8786", "scheduler": "threads"}, "address and dask_options are for scheduler='dask', not 'threads'"),
        (sma_cross, GRID, {"dask_options": {"processes": False}}, "address and dask_options are for scheduler='dask'"),
        (sma_cross, GRID, {"cash": -1.0}, "cash=-1.0 must be a finite number >= 0"),
        (sma_cross, GRID, {"cash": math.nan}, "cash=nan must be"),
    ],
)
def test_config_errors(bars, strategy, grid, kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        sweep(bars, strategy, grid, **{**QUIET, **kwargs})


def test_accepted_params_of_python_classes(bars) -> None:
    """A class with **params in its __init__ takes any key; declared attributes are keys."""
    result = sweep(bars.head(200), Flexible, {"fast": [2], "slow": [5]}, scheduler="threads", **QUIET)
    assert len(result) == 1 and result.n_failed == 0


def test_processes_refuse_unimportable_strategies(bars, monkeypatch) -> None:
    class Local(SmaCross):  # defined in a function: cannot be pickled by reference
        pass

    with pytest.raises(ConfigError, match="cannot be sent to worker processes .*use scheduler='threads'"):
        sweep(bars, Local, {"fast": [3, 5]}, **QUIET)
    notebook = types.ModuleType("__main__")  # a notebook's __main__ has no __file__
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    Cell = type("Cell", (SmaCross,), {"__module__": "__main__"})
    with pytest.raises(ConfigError, match=r"Cell is defined in a notebook .* use scheduler='threads' \(or 'dask'\), or move it to a module"):
        sweep(bars, Cell, {"fast": [3, 5]}, **QUIET)
    cell_init = types.FunctionType(_open_init.__code__, {"np": np}, "cell_init")
    cell_init.__module__, cell_init.__qualname__ = "__main__", "cell_init"
    in_cell = CompiledStrategy(on_bar=_noop_on_bar, init=cell_init)
    with pytest.raises(ConfigError, match="cell_init is defined in a notebook"):
        sweep(bars, in_cell, {"a": [1]}, scheduler="processes", **QUIET)
