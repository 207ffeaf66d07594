"""Indicators on Polars frames and NumPy arrays, backed by the Numba kernels.

Three ways in, one set of kernels:

* expressions: ``feature("ema", "close", span=20)`` or ``pl.col("close").nt.ema(span=20)``,
  usable in ``select``/``with_columns`` and, for long frames of many symbols,
  ``.over("symbol")``; :func:`with_features` adds many at once, grouped by symbol;
* arrays: :func:`batch` for 1-D or 2-D (time × columns) NumPy arrays, with
  ``engine="auto" | "numba" | "cupy"``;
* parameter grids: :func:`grid` computes one indicator for many parameter values in one call
  (parallel over the values).

Inputs are cast to Float64; nulls are refused (fill or drop them first) because a kernel cannot
tell a missing value from a NaN price. Outputs are NaN during warm-up, as the kernels document.

Example
-------
>>> import polars as pl
>>> from ntlab.features import feature
>>> df = pl.DataFrame({"symbol": ["A"] * 4 + ["B"] * 4, "close": [1.0, 2, 3, 4, 10, 20, 30, 40]})
>>> df.select(feature("rolling_mean", "close", window=2).over("symbol"))["close"].to_list()
[nan, 1.5, 2.5, 3.5, nan, 15.0, 25.0, 35.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from ntlab._engine import resolve_engine
from ntlab.exceptions import ConfigError, DataError, EngineUnavailableError
from ntlab.features.registry import Indicator, indicator
from ntlab.kernels import gpu

__all__ = ["batch", "feature", "grid", "with_features"]


def float_column(series: pl.Series, what: str) -> np.ndarray:
    """``series`` as float64 NumPy; DataError naming ``what`` for a non-numeric dtype or nulls."""
    if not series.dtype.is_numeric():
        msg = f"{what} must be numeric, got {series.name!r} of dtype {series.dtype}; cast it first"
        raise DataError(msg)
    if series.null_count():
        row = int(series.is_null().arg_true()[0])
        msg = f"{what} {series.name!r} holds {series.null_count()} null(s), the first at row {row}; fill_null or drop_nulls first"
        raise DataError(msg)
    return series.cast(pl.Float64).to_numpy()


def _out(spec: Indicator, shape: tuple[int, ...], *, columns_apart: bool = False) -> np.ndarray | tuple[np.ndarray, ...]:
    """Output buffers allocated by NumPy (huge-page advised), not inside the kernel: a fresh
    10 M-row output costs about half as much this way (see bench_notebooks/kernels.ipynb).

    ``columns_apart`` gives column-major buffers, so that threads filling different columns
    of a grid never write to the same cache line (C order made the parallel grid 2x slower).
    """

    def one() -> np.ndarray:
        return np.empty(shape[::-1]).T if columns_apart else np.empty(shape)

    if len(spec.outputs) == 1:
        return one()
    return tuple(one() for _ in spec.outputs)


def _run(spec: Indicator, params: tuple, series: Sequence[pl.Series]) -> pl.Series:
    arrays = [float_column(s, f"{spec.name} input") for s in series]
    out = spec.kernel()(*arrays, *params, _out(spec, arrays[0].shape))
    name = series[0].name
    if len(spec.outputs) == 1:
        return pl.Series(name, out, dtype=pl.Float64)
    return pl.DataFrame(dict(zip(spec.outputs, out, strict=True))).to_struct(name)


def feature(name: str, *inputs: str | pl.Expr, **params: Any) -> pl.Expr:
    """An expression computing indicator ``name`` over ``inputs`` (column names or expressions).

    Multi-output indicators (MACD, Bollinger bands) give a struct of their outputs; the result
    keeps the first input's name (use ``.alias``). Add ``.over("symbol")`` on long frames.
    """
    spec = indicator(name)
    values = spec.check(params)
    if len(inputs) != len(spec.inputs):
        msg = f"{name} takes {len(spec.inputs)} input(s) {spec.inputs}, got {len(inputs)}"
        raise ConfigError(msg)
    exprs = [pl.col(i) if isinstance(i, str) else i for i in inputs]
    dtype: pl.DataType = pl.Float64 if len(spec.outputs) == 1 else pl.Struct({o: pl.Float64 for o in spec.outputs})
    if len(exprs) == 1:
        return exprs[0].map_batches(lambda s: _run(spec, values, [s]), return_dtype=dtype)
    first = exprs[0].meta.output_name(raise_if_undetermined=False) or spec.inputs[0]
    packed = pl.struct([e.alias(f"_in{k}") for k, e in enumerate(exprs)])

    def run_struct(s: pl.Series) -> pl.Series:
        frame = s.struct.unnest()
        return _run(spec, values, [frame[c] for c in frame.columns]).alias(first)

    return packed.map_batches(run_struct, return_dtype=dtype).alias(first)


@pl.api.register_expr_namespace("nt")
class IndicatorNamespace:
    """``pl.col("close").nt.ema(span=20)``: every indicator of :func:`ntlab.features.names`.

    Further inputs are passed positionally: ``pl.col("x").nt.rolling_beta(pl.col("y"), window=60)``.
    """

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        indicator(name)  # unknown names fail here, with suggestions

        def call(*others: str | pl.Expr, **params: Any) -> pl.Expr:
            return feature(name, self._expr, *others, **params)

        return call


def with_features(
    frame: pl.DataFrame | pl.LazyFrame, features: Mapping[str, pl.Expr], *, by: str | None = "symbol"
) -> pl.DataFrame | pl.LazyFrame:
    """Add ``features`` (name -> expression) as columns, computed per ``by`` group when the
    frame has that column (long frames of many symbols), else over the whole frame."""
    columns = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    group = by is not None and by in columns
    return frame.with_columns(**{k: (e.over(by) if group else e) for k, e in features.items()})


def batch(name: str, *arrays: Any, engine: str = "auto", **params: Any) -> Any:
    """Indicator ``name`` on 1-D arrays, or on 2-D arrays (time × columns), column by column.

    ``engine="auto"`` runs 2-D inputs on the GPU when CuPy and a device are available and the
    indicator has a CuPy twin (:data:`ntlab.kernels.gpu.TWINS`), otherwise on Numba;
    ``"cupy"`` insists on the GPU and raises :class:`EngineUnavailableError` saying why it
    cannot. NumPy inputs give NumPy results; CuPy inputs stay on the GPU.
    """
    spec = indicator(name)
    values = spec.check(params)
    if len(arrays) != len(spec.inputs):
        msg = f"{name} takes {len(spec.inputs)} input array(s) {spec.inputs}, got {len(arrays)}"
        raise ConfigError(msg)
    shapes = [tuple(a.shape) if hasattr(a, "shape") else np.shape(a) for a in arrays]
    ndim = len(shapes[0])
    if len(set(shapes)) != 1 or ndim not in (1, 2):
        msg = f"{name} inputs must be 1-D or 2-D arrays of one shape, got shapes {shapes}"
        raise DataError(msg)
    if _on_gpu(name, engine, arrays, want=ndim == 2):  # pragma: no cover - needs a GPU
        out = gpu.run(name, arrays[0] if ndim == 2 else arrays[0][:, None], values)
        out = out if ndim == 2 else out[:, 0]
        return out if gpu.is_gpu_array(arrays[0]) else out.get()
    xs = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
    kernel = spec.kernel("2d" if ndim == 2 else "")
    return kernel(*xs, *values, _out(spec, xs[0].shape))


def _on_gpu(name: str, engine: str, arrays: Sequence[Any], *, want: bool) -> bool:
    """Whether to run on the GPU: CuPy inputs or ``engine="cupy"`` insist, ``"auto"`` asks for
    2-D work (``want``); insisting on an indicator without a twin is an error."""
    on_device = any(gpu.is_gpu_array(a) for a in arrays)
    insist = on_device or engine == "cupy"
    chosen = resolve_engine("cupy" if on_device and engine == "auto" else engine)
    if chosen == "numba":
        if on_device:
            msg = f"{name}: the inputs are CuPy arrays but engine={engine!r}; pass NumPy arrays (a.get()) to run on Numba"
            raise EngineUnavailableError(msg)
        return False
    if name not in gpu.TWINS:
        if insist:
            msg = f"{name} has no CuPy twin (twins: {', '.join(gpu.TWINS)}); use engine='auto' with NumPy inputs to run it on Numba"
            raise EngineUnavailableError(msg)
        return False
    return insist or want


def grid(x: pl.Series | np.ndarray, name: str, values: Sequence[float | int], *, engine: str = "auto", **params: Any) -> pl.DataFrame:
    """Indicator ``name`` for every value of its first parameter in ``values``, in one call.

    Returns one column per value, named ``<name>_<value>``: parallel over the values on the
    CPU, one GPU thread per value where the indicator has a CuPy twin and ``engine`` resolves
    to ``"cupy"`` (see :func:`batch`).
    """
    spec = indicator(name)
    if not spec.params or len(spec.inputs) != 1:
        msg = f"{name} has no parameter to sweep over a single input; grids need e.g. a window"
        raise ConfigError(msg)
    first = spec.params[0]
    if first.name in params:
        msg = f"{first.name} is the swept parameter; give its values in `values`, not as {first.name}="
        raise ConfigError(msg)
    if not len(values):
        msg = f"values for {first.name} is empty; give at least one"
        raise ConfigError(msg)
    checked = [first.check(v) for v in values]
    rest = spec.check({first.name: checked[0], **params})[1:]
    series = x if isinstance(x, pl.Series) else pl.Series("x", np.asarray(x))
    arr = float_column(series, f"{name} input")
    swept = np.asarray(checked, dtype=np.int64 if first.kind is int else np.float64)
    if _on_gpu(name, engine, [], want=True):  # pragma: no cover - needs a GPU
        out = gpu.run(name, arr, (checked[0], *rest), swept=swept).get()
        return pl.DataFrame({f"{name}_{v}": out[:, j] for j, v in enumerate(checked)})
    if spec.grid_takes_all_params:  # one value of every parameter per column
        rest = tuple(np.full(swept.size, v, dtype=np.int64 if p.kind is int else np.float64) for p, v in zip(spec.params[1:], rest, strict=True))
    out = spec.kernel("grid")(arr, swept, *rest, _out(spec, (arr.size, swept.size), columns_apart=True))
    if len(spec.outputs) == 1:
        return pl.DataFrame({f"{name}_{v}": out[:, j] for j, v in enumerate(checked)})
    return pl.DataFrame({f"{name}_{o}_{v}": part[:, j] for o, part in zip(spec.outputs, out, strict=True) for j, v in enumerate(checked)})
