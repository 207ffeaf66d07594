"""Parameter sweeps: run a strategy for every combination of a grid, in parallel.

:func:`sweep` runs :func:`~ntlab.backtest.backtest` once per combination of a parameter grid
and returns a :class:`SweepResult`: a Polars frame with one row per combination (the
parameters, the requested metrics and an ``error`` column), :meth:`SweepResult.best` and
:meth:`SweepResult.heatmap`.

Order
-----
Combinations are the cartesian product of the grid's value lists, in the order of the grid's
keys, the last key varying fastest (as nested ``for`` loops written in that order), minus those
``constraint`` rejects. The frame's rows are in that order whatever the order the runs finish in.

Schedulers
----------
``"threads"`` (the default for a :class:`~ntlab.strategy.CompiledStrategy`)
    A thread pool of ``n_jobs`` threads sharing one prepared :class:`~ntlab.backtest.BarData`
    (read-only). The compiled engine loop releases the GIL, so the runs use every core;
    ``n_jobs=1`` runs them one after the other in the calling thread.
``"processes"`` (the default for a Python :class:`~ntlab.strategy.Strategy` class)
    A ``concurrent.futures.ProcessPoolExecutor`` with the ``"spawn"`` start method: Python
    strategies hold the GIL, so threads would run them one at a time. Each worker process
    receives the bar data once (pickled) and imports the strategy class by name: the class must
    live in an importable module (a ``.py`` file), not in a notebook cell, and a script that
    sweeps must guard its entry point with ``if __name__ == "__main__":``. Worker start-up
    (importing ntlab) takes a second or two.
``"dask"``
    A ``dask.distributed`` client: ``Client(address)`` for a running scheduler, an existing
    ``Client`` given as ``address`` (left open), or a ``LocalCluster`` started and closed by the
    call (``dask_options`` go to it). The bar data is scattered to every worker once.

A combination that fails (its strategy raises, or its metrics are undefined because the equity
reached zero) gives a row of NaN metrics with the message in ``error``; the sweep goes on and
warns once with :class:`~ntlab.exceptions.NtlabWarning` saying how many failed.

Example
-------
>>> import ntlab.datasets
>>> from ntlab.backtest.sweep import sweep
>>> from ntlab.strategy.examples import sma_cross
>>> bars = ntlab.datasets.load("spy_1min").head(5000)
>>> result = sweep(bars, sma_cross, {"fast": [3, 5, 8], "slow": [20, 30, 40]}, progress=False)
>>> len(result)
9
>>> result.frame.columns
['fast', 'slow', 'total_return', 'sharpe', 'max_drawdown', 'n_trades', 'error']
>>> sorted(result.best("sharpe"))
['fast', 'slow']
>>> figure = result.heatmap("fast", "slow", "sharpe")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import inspect
import itertools
import math
import multiprocessing
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import (
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ntlab.backtest.engine import BarData, _compiled_loop, backtest, bar_data
from ntlab.exceptions import (
    ConfigError,
    DataError,
    EngineUnavailableError,
    NtlabWarning,
)
from ntlab.strategy.base import CompiledStrategy, Strategy

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ntlab.execution.orders import ExecutionModel

__all__ = ["SweepResult", "sweep"]

SCHEDULERS = ("threads", "processes", "dask")
DEFAULT_METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades")
_RESERVED = frozenset({"bars", "strategy", "cash", "model", "features"})
_AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": np.mean,
    "median": np.median,
    "max": np.max,
    "min": np.min,
}
_ANNOTATE_CELLS = 150  # heatmaps with at most this many cells get their values written in


# ---------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class SweepResult:
    """The outcome of :func:`sweep`.

    Attributes
    ----------
    frame
        One row per combination, in grid order: the parameter columns, one ``Float64`` column
        per metric (counts and durations as floats, durations in days; NaN when undefined or
        when the run failed) and ``error`` (String; null for runs that succeeded).
    params
        The names of the parameter columns, in grid order.
    metrics
        The names of the metric columns.
    """

    frame: pl.DataFrame
    params: tuple[str, ...]
    metrics: tuple[str, ...]

    def __len__(self) -> int:
        return self.frame.height

    @property
    def n_failed(self) -> int:
        """How many combinations failed (their ``error`` is set)."""
        return self.frame.height - self.frame["error"].null_count()

    def _metric(self, metric: str) -> None:
        if metric not in self.metrics:
            msg = f"no metric {metric!r} in this sweep; it computed {list(self.metrics)} (pass metrics=... to sweep)"
            raise ConfigError(msg)

    def best(self, metric: str = "sharpe", maximize: bool = True) -> dict[str, Any]:
        """The parameters of the combination with the highest (or lowest) ``metric``.

        Parameters
        ----------
        metric
            One of the sweep's metric columns.
        maximize
            Highest value when True, lowest when False. NaN rows are skipped; ties go to the
            first combination in grid order.

        Returns
        -------
        dict
            ``{param: value}`` for the best combination.

        Raises
        ------
        ConfigError
            ``metric`` is not a column of the sweep.
        DataError
            No combination has a defined (non-NaN) value of ``metric``.
        """
        self._metric(metric)
        values = self.frame[metric].to_numpy()
        valid = ~np.isnan(values)
        if not valid.any():
            msg = f"no combination has a defined {metric!r} (all {len(values)} are NaN); see the 'error' column"
            raise DataError(msg)
        scores = np.where(valid, values if maximize else -values, -np.inf)
        index = int(np.flatnonzero(valid)[np.argmax(scores[valid])])
        row = self.frame.row(index, named=True)
        return {name: row[name] for name in self.params}

    def heatmap(
        self,
        x: str,
        y: str,
        metric: str,
        ax: Axes | None = None,
        *,
        agg: str = "mean",
        annotate: bool | None = None,
    ) -> Figure:
        """Draw ``metric`` over two parameters as a heatmap with a colorbar.

        Parameters
        ----------
        x, y
            Parameter columns for the horizontal and vertical axes (values in ascending order,
            the smallest ``y`` at the bottom).
        metric
            Metric column to colour the cells by.
        ax
            Axes to draw on; by default a new :class:`matplotlib.figure.Figure` (no pyplot).
        agg
            How the rows of one cell are combined when the grid has other parameters:
            ``"mean"``, ``"median"``, ``"max"`` or ``"min"`` (NaN values are skipped).
        annotate
            Write each cell's value in it; by default when there are at most 150 cells.

        Returns
        -------
        Figure
            The figure. ``fig.axes[0].images[0].get_array()[i, j]`` is the cell of the i-th
            ``y`` value and the j-th ``x`` value, masked where no combination has a value
            (filtered out by the constraint, failed, NaN or infinite).
        """
        for name in (x, y):
            if name not in self.params:
                msg = f"{name!r} is not a parameter of this sweep; its parameters are {list(self.params)}"
                raise ConfigError(msg)
        if x == y:
            msg = f"x and y are both {x!r}; a heatmap needs two different parameters"
            raise ConfigError(msg)
        self._metric(metric)
        if agg not in _AGGREGATES:
            msg = f"agg={agg!r} is not one of {sorted(_AGGREGATES)}"
            raise ConfigError(msg)
        xs, ys, cells = _pivot(self.frame, x, y, metric, _AGGREGATES[agg])
        if ax is None:
            # matplotlib loads lazily, on the first heatmap
            from ntlab.backtest.tearsheet import _NotebookFigure

            width, height = min(14.0, 2.5 + 0.7 * len(xs)), min(10.0, 1.8 + 0.45 * len(ys))
            ax = _NotebookFigure(figsize=(max(width, 4.5), max(height, 3.0)), layout="constrained").add_subplot()
        image = ax.imshow(np.ma.masked_invalid(cells), origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(len(xs)), [_label(v) for v in xs])
        ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        others = [p for p in self.params if p not in (x, y)]
        ax.set_title(f"{metric} ({agg} over {', '.join(others)})" if others else metric)
        ax.figure.colorbar(image, ax=ax, label=metric)
        if annotate if annotate is not None else cells.size <= _ANNOTATE_CELLS:
            finite = cells[np.isfinite(cells)]
            middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
            for (i, j), value in np.ndenumerate(cells):
                if not np.isnan(value):
                    color = "black" if np.isfinite(value) and value > middle else "white"
                    ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=8, color=color)
        return ax.figure

    def _repr_html_(self) -> str:
        metric = "sharpe" if "sharpe" in self.metrics else self.metrics[0]
        try:
            params = self.best(metric)
        except DataError:
            best = html.escape(f"no combination has a defined {metric}")
        else:
            value = float(np.nanmax(self.frame[metric].to_numpy()))
            best = html.escape(f"best {metric} {value:.4g} at " + ", ".join(f"{k}={v}" for k, v in params.items()))
        failed = f", {self.n_failed} failed" if self.n_failed else ""
        head = f"<p><b>Parameter sweep</b>: {len(self)} combinations{failed}; {best}</p>"
        rows = self.frame.head(20)._repr_html_()
        more = f"<p>({len(self) - 20} more rows in <code>.frame</code>)</p>" if len(self) > 20 else ""
        return f"<div>{head}{rows}{more}</div>"


def _axis(column: pl.Series) -> list[Any]:
    """The distinct values of a parameter column, ascending when they can be ordered."""
    values = list(dict.fromkeys(column.to_list()))
    try:
        return sorted(values)
    except TypeError:  # None among numbers, objects without an order: grid order
        return values


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _pivot(frame: pl.DataFrame, x: str, y: str, metric: str, agg: Callable[[np.ndarray], float]) -> tuple[list[Any], list[Any], np.ndarray]:
    xs, ys = _axis(frame[x]), _axis(frame[y])
    col, row = {v: j for j, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    groups: dict[tuple[int, int], list[float]] = {}
    for xv, yv, value in zip(frame[x].to_list(), frame[y].to_list(), frame[metric].to_list(), strict=True):
        if not math.isnan(value):
            groups.setdefault((row[yv], col[xv]), []).append(value)
    cells = np.full((len(ys), len(xs)), np.nan)
    for (i, j), values in groups.items():
        cells[i, j] = float(agg(np.asarray(values)))
    return xs, ys, cells


# ---------------------------------------------------------------------------------------------
# Running one combination (in a thread, a worker process or a dask worker)


@dataclass(frozen=True)
class _Job:
    """What every run of a sweep shares; picklable when its strategy is importable."""

    strategy: Any  # a CompiledStrategy, or a Strategy subclass instantiated per combination
    data: BarData | None
    cash: float
    model: ExecutionModel | None
    metrics: tuple[str, ...]


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, dt.timedelta):
        return value / dt.timedelta(days=1)
    return float(value)


def _run_one(job: _Job, params: dict[str, Any]) -> tuple[tuple[float, ...], str | None]:
    """The metrics of one combination, or NaNs and the error message."""
    try:
        if isinstance(job.strategy, CompiledStrategy):
            result = backtest(job.data, job.strategy, cash=job.cash, model=job.model, **params)
        else:
            result = backtest(job.data, job.strategy(**params), cash=job.cash, model=job.model)
        values = result.metrics()
        return tuple(_as_float(values[key]) for key in job.metrics), None
    except Exception as exc:  # noqa: BLE001 (a failing combination must not stop the sweep)
        return (math.nan,) * len(job.metrics), f"{type(exc).__name__}: {exc}"


def _run_on_dask_worker(job: _Job, data: BarData, params: dict[str, Any]) -> tuple[tuple[float, ...], str | None]:
    return _run_one(dataclasses.replace(job, data=data), params)


_WORKER_JOB: Any = None  # the job of a worker process (set by _load_job)


def _load_job(payload: bytes) -> None:  # pragma: no cover (runs in worker processes)
    global _WORKER_JOB
    try:
        _WORKER_JOB = pickle.loads(payload)  # our own payload, from the parent
    except Exception as exc:  # noqa: BLE001 (reported by _run_in_process, in the parent)
        _WORKER_JOB = f"{type(exc).__name__}: {exc}"


def _run_in_process(params: dict[str, Any]) -> tuple[tuple[float, ...], str | None]:  # pragma: no cover (worker processes)
    if isinstance(_WORKER_JOB, str):
        msg = (
            f"a worker process could not load the strategy ({_WORKER_JOB}); define the strategy in an "
            "importable module (a .py file), or use scheduler='threads'"
        )
        raise ConfigError(msg)
    return _run_one(_WORKER_JOB, params)


# ---------------------------------------------------------------------------------------------
# Schedulers


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm  # notebook widget in Jupyter, text elsewhere

    return tqdm(total=total, desc="sweep", unit="run", disable=not enabled)


def _collect(futures: dict[Future[Any], int], bar: Any, out: list[Any]) -> None:
    for future in as_completed(futures):
        out[futures[future]] = future.result()
        bar.update()


def _run_threads(job: _Job, combos: list[dict[str, Any]], n_jobs: int, bar: Any) -> list[Any]:
    out: list[Any] = [None] * len(combos)
    if n_jobs == 1:
        for i, params in enumerate(combos):
            out[i] = _run_one(job, params)
            bar.update()
        return out
    if isinstance(job.strategy, CompiledStrategy):
        _compiled_loop(job.strategy.on_bar)  # one loop for all threads: it compiles once, on first use
    executor = ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="ntlab-sweep")
    try:
        _collect({executor.submit(_run_one, job, params): i for i, params in enumerate(combos)}, bar, out)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return out


def _check_importable(strategy: Any) -> None:
    """Refuse strategies that a spawned worker process cannot import."""
    target = strategy.init if isinstance(strategy, CompiledStrategy) else strategy
    name = getattr(target, "__qualname__", repr(target))
    main = sys.modules.get("__main__")
    if getattr(target, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        msg = (
            f"{name} is defined in a notebook or an interactive session, which worker processes cannot "
            "import: use scheduler='threads' (or 'dask'), or move it to a module (a .py file) and import it"
        )
        raise ConfigError(msg)


def _run_processes(job: _Job, combos: list[dict[str, Any]], n_jobs: int, bar: Any) -> list[Any]:
    _check_importable(job.strategy)
    try:
        payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        msg = (
            f"the strategy cannot be sent to worker processes ({type(exc).__name__}: {exc}); define it at the "
            "top level of an importable module (a .py file), or use scheduler='threads'"
        )
        raise ConfigError(msg) from exc
    out: list[Any] = [None] * len(combos)
    executor = ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_load_job, initargs=(payload,))
    try:
        _collect({executor.submit(_run_in_process, params): i for i, params in enumerate(combos)}, bar, out)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return out


def _run_dask(job: _Job, combos: list[dict[str, Any]], n_jobs: int, bar: Any, address: Any, options: Mapping[str, Any]) -> list[Any]:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_as_completed
    except ImportError as exc:
        msg = "scheduler='dask' needs dask.distributed: pip install 'dask[distributed]'"
        raise EngineUnavailableError(msg) from exc
    opened: list[Any] = []
    try:
        if isinstance(address, Client):
            if options:
                msg = "dask_options do not apply to an existing Client given as address"
                raise ConfigError(msg)
            client = address
        elif address is not None:
            client = Client(address, **options)
            opened.append(client)
        else:
            compiled = isinstance(job.strategy, CompiledStrategy)
            layout = {"n_workers": 1, "threads_per_worker": n_jobs} if compiled else {"n_workers": n_jobs, "threads_per_worker": 1}
            cluster = LocalCluster(**{**layout, **options})
            opened.append(cluster)
            client = Client(cluster)
            opened.append(client)
        shared = dataclasses.replace(job, data=None)
        data = client.scatter(job.data, broadcast=True, hash=False)  # a key of its own: a content-hashed key is shared with (and released by) earlier sweeps on the scheduler
        futures = [client.submit(_run_on_dask_worker, shared, data, params, pure=False) for params in combos]
        for _ in dask_as_completed(futures):
            bar.update()
        return client.gather(futures)
    finally:
        for thing in reversed(opened):
            thing.close()


# ---------------------------------------------------------------------------------------------
# Checks


def _combinations(grid: Mapping[str, Any], constraint: Callable[[dict[str, Any]], bool] | None) -> list[dict[str, Any]]:
    if not isinstance(grid, Mapping) or not grid:
        msg = f"grid must be a non-empty mapping {{param: [values...]}}, got {grid!r}"
        raise ConfigError(msg)
    lists: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not isinstance(key, str):
            msg = f"grid keys must be parameter names (str), got {key!r}"
            raise ConfigError(msg)
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            msg = f"grid[{key!r}] must be a list of values, got {type(values).__name__} {values!r}; write [{values!r}] for a single value"
            raise ConfigError(msg)
        lists[key] = [v.item() if isinstance(v, np.generic) else v for v in values]
        if not lists[key]:
            msg = f"grid[{key!r}] is empty: every parameter needs at least one value"
            raise ConfigError(msg)
    combos = [dict(zip(lists, values, strict=True)) for values in itertools.product(*lists.values())]
    if constraint is not None:
        if not callable(constraint):
            msg = f"constraint must be a function of the params dict returning a bool, got {constraint!r}"
            raise ConfigError(msg)
        combos = [params for params in combos if constraint(dict(params))]
        if not combos:
            msg = f"the constraint rejects every combination of the grid {lists}"
            raise ConfigError(msg)
    return combos


def _strategy_params(strategy: Any) -> tuple[str, list[str] | None]:
    """The strategy's name and the parameters it takes (None: any keyword)."""
    if isinstance(strategy, CompiledStrategy):
        target, name = strategy.init, "the strategy's init"
    else:
        name = strategy.__name__
        if strategy.__init__ is Strategy.__init__:  # params become attributes: those the class declares
            base = set(dir(Strategy))
            names = {
                key
                for klass in strategy.__mro__
                if klass not in Strategy.__mro__
                for key, value in [*vars(klass).items(), *((k, None) for k in getattr(klass, "__annotations__", {}))]
                if not key.startswith("_") and key not in base and not callable(value) and not isinstance(value, (property, classmethod, staticmethod))
            }
            return name, sorted(names)
        target = strategy
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the runs tell
        return name, None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return name, None
    return name, [p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _check_strategy(strategy: Any, keys: Sequence[str]) -> bool:
    """Check the strategy and the grid's keys; True for a compiled strategy."""
    if isinstance(strategy, Strategy):
        msg = (
            f"pass the Strategy class {type(strategy).__name__}, not an instance: sweep makes one instance per "
            f"combination, {type(strategy).__name__}(**params)"
        )
        raise ConfigError(msg)
    compiled = isinstance(strategy, CompiledStrategy)
    if not compiled and not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        msg = f"strategy must be a CompiledStrategy or a Strategy subclass (the class), got {strategy!r}"
        raise ConfigError(msg)
    if compiled and _RESERVED.intersection(keys):
        msg = f"grid key(s) {sorted(_RESERVED.intersection(keys))} are arguments of sweep/backtest, not strategy parameters"
        raise ConfigError(msg)
    name, accepted = _strategy_params(strategy)
    unknown = [key for key in keys if accepted is not None and key not in accepted]
    if unknown:
        msg = f"grid key(s) {unknown} are not parameters of {name}; it takes {accepted}"
        raise ConfigError(msg)
    return compiled


def _check_metrics(metrics: str | Sequence[str], params: Sequence[str]) -> tuple[str, ...]:
    from ntlab.backtest.metrics import _LABEL  # the names summary() returns

    names = tuple(dict.fromkeys([metrics] if isinstance(metrics, str) else metrics))
    unknown = [m for m in names if m not in _LABEL]
    if not names or unknown:
        msg = f"metrics must name at least one of {list(_LABEL)}; got unknown {unknown}" if unknown else "metrics is empty: name at least one metric"
        raise ConfigError(msg)
    clash = [p for p in params if p in names or p == "error"]
    if clash:
        msg = f"grid key(s) {clash} clash with the result's metric or 'error' columns"
        raise ConfigError(msg)
    return names


def _column(name: str, values: list[Any]) -> pl.Series:
    """A parameter column: typed by Polars when that keeps the values, else of Python objects."""
    try:
        series = pl.Series(name, values, strict=False)
        if series.to_list() == values:
            return series
    except (TypeError, ValueError, pl.exceptions.PolarsError):  # values Polars cannot type
        pass
    return pl.Series(name, values, dtype=pl.Object)


def _frame(combos: list[dict[str, Any]], metrics: tuple[str, ...], rows: list[Any]) -> pl.DataFrame:
    columns = [_column(key, [params[key] for params in combos]) for key in combos[0]]
    for k, metric in enumerate(metrics):
        columns.append(pl.Series(metric, [values[k] for values, _ in rows], dtype=pl.Float64))
    columns.append(pl.Series("error", [error for _, error in rows], dtype=pl.String))
    return pl.DataFrame(columns)


# ---------------------------------------------------------------------------------------------
# Entry point


def sweep(
    bars: pl.DataFrame | BarData,
    strategy: CompiledStrategy | type[Strategy],
    grid: Mapping[str, Sequence[Any]],
    *,
    cash: float = 1_000_000.0,
    model: ExecutionModel | None = None,
    features: Sequence[str] = (),
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    n_jobs: int | None = None,
    scheduler: str | None = None,
    address: Any = None,
    dask_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    constraint: Callable[[dict[str, Any]], bool] | None = None,
) -> SweepResult:
    """Backtest ``strategy`` for every combination of ``grid``, in parallel.

    Parameters
    ----------
    bars
        Bars as :func:`~ntlab.backtest.backtest` takes them, or a prepared
        :class:`~ntlab.backtest.BarData`; prepared once and shared by every run.
    strategy
        A :class:`~ntlab.strategy.CompiledStrategy` (each run calls ``init(**params)``) or a
        Python :class:`~ntlab.strategy.Strategy` subclass, the class itself: each run makes
        ``strategy(**params)``.
    grid
        ``{param: [values...]}``; every combination of the values is run (see the module
        docstring for the order). Keys must be parameters of the strategy: the arguments of a
        compiled strategy's ``init``, of the class's ``__init__``, or the attributes the class
        declares when it keeps :class:`Strategy`'s ``__init__``.
    cash, model, features
        As for :func:`~ntlab.backtest.backtest`, the same for every run.
    metrics
        Names of :func:`ntlab.backtest.metrics.summary` values to keep, one column each.
    n_jobs
        Parallel runs (threads, processes, or dask workers/threads); default ``os.cpu_count()``,
        never more than the number of combinations.
    scheduler
        ``"threads"``, ``"processes"`` or ``"dask"``; by default ``"dask"`` when ``address`` is
        given, else ``"threads"`` for a compiled strategy and ``"processes"`` for a Python one.
    address
        For ``"dask"``: a scheduler address (``"tcp://host:8786"``) or a ``Client`` (left open).
        Without it a ``LocalCluster`` is started and closed by the call (one worker with
        ``n_jobs`` threads for a compiled strategy, ``n_jobs`` single-threaded workers for a
        Python one).
    dask_options
        Keyword arguments of the ``LocalCluster`` (``{"processes": False}`` keeps the workers
        in this process), or of ``Client(address)`` when ``address`` is a string.
    progress
        Show a progress bar (tqdm, notebook-aware) over the finished runs.
    constraint
        ``constraint(params) -> bool``: only the combinations it accepts are run
        (``lambda p: p["fast"] < p["slow"]``).

    Returns
    -------
    SweepResult
        The frame of results (one row per combination, in grid order), ``best`` and ``heatmap``.

    Raises
    ------
    ConfigError
        An empty grid or value list, a grid key the strategy does not take, a Strategy instance
        instead of its class, an unknown scheduler or metric, ``n_jobs < 1``, a constraint that
        rejects everything, or a strategy that worker processes cannot import.
    EngineUnavailableError
        ``scheduler="dask"`` without ``dask.distributed`` installed.

    Warns
    -----
    NtlabWarning
        When some combinations failed: their rows hold NaN metrics and the message in ``error``.
    """
    compiled = _check_strategy(strategy, list(grid) if isinstance(grid, Mapping) else [])
    combos = _combinations(grid, constraint)
    names = _check_metrics(metrics, list(combos[0]))
    if scheduler is None:
        scheduler = "dask" if address is not None else "threads" if compiled else "processes"
    if scheduler not in SCHEDULERS:
        msg = f"scheduler={scheduler!r} is not one of {list(SCHEDULERS)}"
        raise ConfigError(msg)
    if scheduler != "dask" and (address is not None or dask_options):
        msg = f"address and dask_options are for scheduler='dask', not {scheduler!r}"
        raise ConfigError(msg)
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
        msg = f"n_jobs={n_jobs!r} must be an int >= 1 (or None for every core)"
        raise ConfigError(msg)
    if not (isinstance(cash, (int, float)) and math.isfinite(cash) and cash >= 0):
        msg = f"cash={cash!r} must be a finite number >= 0"
        raise ConfigError(msg)
    workers = min(n_jobs or os.cpu_count() or 1, len(combos))
    job = _Job(strategy=strategy, data=bar_data(bars, features), cash=float(cash), model=model, metrics=names)
    with _progress(len(combos), progress) as bar:
        if scheduler == "threads":
            rows = _run_threads(job, combos, workers, bar)
        elif scheduler == "processes":
            rows = _run_processes(job, combos, workers, bar)
        else:
            rows = _run_dask(job, combos, workers, bar, address, dict(dask_options or {}))
    result = SweepResult(frame=_frame(combos, names, rows), params=tuple(combos[0]), metrics=names)
    failed = [(params, error) for params, (_, error) in zip(combos, rows, strict=True) if error is not None]
    if failed:
        params, error = failed[0]
        msg = f"{len(failed)} of {len(combos)} combinations failed (first: {params}: {error}); see the 'error' column"
        warnings.warn(msg, NtlabWarning, stacklevel=2)
    return result
