"""Generic CSV and Parquet loaders with a column mapping.

Both return a frame of one of ntlab's kinds (see :mod:`ntlab.data.schemas`), validated by
:func:`~ntlab.data.validation.validate`. The timestamp column is turned into UTC nanoseconds
whatever it holds: text (``ts_format``, in time zone ``tz`` unless the text carries an
offset), epoch numbers (``ts_unit``) or dates.

Example
-------
>>> import tempfile, pathlib
>>> from ntlab.data.loaders.files import read_csv
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ticks.csv"
>>> _ = path.write_text("When,Px,Qty\\n2013-09-01 17:00:00.083,1640.25,8\\n")
>>> trades = read_csv(path, kind="trades", symbol="ES", tz="America/Chicago",
...                   columns={"When": "ts", "Px": "price", "Qty": "size"})
>>> trades.row(0)
(datetime.datetime(2013, 9, 1, 22, 0, 0, 83000, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 'ES', 1640.25, 8.0)
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, overload

import polars as pl

from ntlab.data._time import UNIT_NS
from ntlab.data.validation import Fix, ValidationReport, validate
from ntlab.exceptions import DataError, DataQualityWarning, SchemaError

__all__ = ["read_csv", "read_parquet", "to_kind"]

TsUnit = Literal["s", "ms", "us", "ns"]
_TS_UNITS = ("s", "ms", "us", "ns")


def _epoch_ns(col: pl.Series, unit: str) -> pl.Series:
    """Epoch numbers in ``unit`` as int64 ns (fractions rounded to the ns), refusing overflow."""
    scale = UNIT_NS[unit]
    limit = (2**63 - 1) // scale
    finite = col.drop_nulls()
    if col.dtype.is_float():
        finite = finite.filter(finite.is_finite())
    too_big = finite.filter(finite.abs() > limit)
    if too_big.len():
        finer = [u for u in _TS_UNITS if UNIT_NS[u] < scale]
        hint = f"; are they in {finer[0]}?" if finer else ""
        msg = f"epoch timestamps like {too_big.head(3).to_list()} overflow int64 nanoseconds with ts_unit={unit!r}{hint}"
        raise DataError(msg)
    if col.dtype.is_float():
        if (~col.is_finite()).any():
            msg = f"epoch timestamps hold non-finite values like {col.filter(~col.is_finite()).head(3).to_list()}"
            raise DataError(msg)
        # whole units and the fraction apart: a float carries ~16 digits, not 19 of ns
        whole = col.floor()
        return whole.cast(pl.Int64) * scale + ((col - whole) * scale).round().cast(pl.Int64)
    return col.cast(pl.Int64) * scale


def _timestamps(
    frame: pl.DataFrame,
    *,
    tz: str,
    ts_format: str | None,
    ts_unit: TsUnit | None,
    ts_offset: dt.timedelta | None,
) -> pl.DataFrame:
    col = frame["ts"]
    if ts_unit is not None:
        if ts_unit not in _TS_UNITS:
            msg = f"ts_unit={ts_unit!r} is not allowed; use one of {list(_TS_UNITS)}"
            raise SchemaError(msg)
        if not col.dtype.is_numeric():
            msg = f"ts_unit={ts_unit!r} needs a numeric timestamp column, got {col.dtype}"
            raise SchemaError(msg)
        frame = frame.with_columns(_epoch_ns(col, ts_unit).alias("ts"))
        expr = pl.col("ts").cast(pl.Datetime("ns", "UTC"))
    elif col.dtype == pl.String:
        try:
            parsed = col.str.to_datetime(ts_format, time_unit="ns", strict=True)
        except pl.exceptions.PolarsError as exc:
            loose = col.str.to_datetime(ts_format, time_unit="ns", strict=False) if ts_format else None
            bad = col.filter(loose.is_null() & col.is_not_null()).head(3).to_list() if loose is not None else []
            bad = bad or col.head(1).to_list()
            msg = f"cannot parse timestamps like {bad} with ts_format={ts_format!r}: {exc}"
            raise DataError(msg) from exc
        frame = frame.with_columns(parsed.alias("ts"))
        expr = pl.col("ts")
    elif col.dtype == pl.Date or isinstance(col.dtype, pl.Datetime):
        expr = pl.col("ts").cast(pl.Datetime("ns", col.dtype.time_zone if isinstance(col.dtype, pl.Datetime) else None))
    else:
        msg = f"timestamp column has dtype {col.dtype}; pass ts_unit= for epoch numbers"
        raise SchemaError(msg)
    frame = frame.with_columns(expr.alias("ts"))
    dtype = frame["ts"].dtype
    assert isinstance(dtype, pl.Datetime)
    if dtype.time_zone is None:
        try:
            frame = frame.with_columns(
                pl.col("ts").dt.replace_time_zone(tz, ambiguous="raise", non_existent="raise")
            )
        except pl.exceptions.PolarsError as exc:
            msg = (
                f"timestamps cannot be placed in time zone {tz!r} (a clock time that does not "
                f"exist or repeats at a daylight-saving change): {exc}; if the stamps are UTC "
                f"pass tz='UTC'"
            )
            raise DataError(msg) from exc
    frame = frame.with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    if ts_offset is not None:
        frame = frame.with_columns(pl.col("ts") + ts_offset)
    return frame


def to_kind(
    frame: pl.DataFrame,
    *,
    kind: str,
    columns: Mapping[str, str] | None = None,
    symbol: str | None = None,
    tz: str = "UTC",
    ts_format: str | None = None,
    ts_unit: TsUnit | None = None,
    ts_offset: dt.timedelta | None = None,
) -> pl.DataFrame:
    """Rename, add ``symbol``, convert timestamps to UTC ns, and cast to the kind's schema.

    ``columns`` maps source names to schema names; when given, source columns it does not
    name are dropped, unless the kind is ``"prices"`` (wide tables keep every column).
    """
    from ntlab.data.schemas import conform

    columns = dict(columns or {})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = f"columns {missing} named in `columns=` are not in the file; it has {frame.columns}"
        raise SchemaError(msg)
    if columns and kind != "prices":
        frame = frame.select(list(columns))
    frame = frame.rename(columns)
    if "ts" not in frame.columns:
        msg = "no column is mapped to 'ts'; add e.g. columns={'<time column>': 'ts', ...}"
        raise SchemaError(msg)
    if symbol is not None:
        if "symbol" in frame.columns:
            msg = f"symbol={symbol!r} given but the data already has a symbol column"
            raise SchemaError(msg)
        frame = frame.with_columns(pl.lit(symbol, pl.String).alias("symbol"))
    frame = _timestamps(frame, tz=tz, ts_format=ts_format, ts_unit=ts_unit, ts_offset=ts_offset)
    return conform(frame, kind)


@overload
def finish(frame: pl.DataFrame, *, kind: str, fix: Fix, source: str, report: Literal[False] = ...) -> pl.DataFrame: ...
@overload
def finish(
    frame: pl.DataFrame, *, kind: str, fix: Fix, source: str, report: Literal[True]
) -> tuple[pl.DataFrame, ValidationReport]: ...
def finish(
    frame: pl.DataFrame, *, kind: str, fix: Fix, source: str, report: bool = False
) -> pl.DataFrame | tuple[pl.DataFrame, ValidationReport]:
    """Validate a loaded frame; warn when rows were dropped or repaired."""
    try:
        clean, rep = validate(frame, kind, fix=fix)
    except DataError as exc:
        msg = f"{source}: {exc}"
        raise type(exc)(msg) from exc
    if not rep.ok:
        warnings.warn(f"{source}: {rep}", DataQualityWarning, stacklevel=3)
    return (clean, rep) if report else clean


def read_csv(
    source: str | Path,
    *,
    kind: str,
    columns: Mapping[str, str] | None = None,
    symbol: str | None = None,
    tz: str = "UTC",
    ts_format: str | None = None,
    ts_unit: TsUnit | None = None,
    ts_offset: dt.timedelta | None = None,
    separator: str = ",",
    has_header: bool = True,
    new_columns: list[str] | None = None,
    fix: Fix = "raise",
    report: bool = False,
    **read_options: Any,
) -> pl.DataFrame | tuple[pl.DataFrame, ValidationReport]:
    """Load a CSV file (plain or gzipped) as a validated frame of ``kind``.

    Parameters
    ----------
    source
        Path of the file.
    kind
        Data kind: trades, quotes, depth, bars or prices.
    columns
        Mapping from the file's column names to schema names (``{"Price": "price"}``).
    symbol
        Symbol of every row when the file has no symbol column.
    tz
        Time zone of naive timestamps (``"America/Chicago"`` for CME local time).
    ts_format, ts_unit
        strftime format of text timestamps, or the unit of epoch numbers.
    ts_offset
        Added to every timestamp, e.g. ``-timedelta(minutes=1)`` for bars labelled by their
        close time (ntlab labels bars by their open time).
    separator, has_header, new_columns, read_options
        Passed to :func:`polars.read_csv`.
    fix, report
        See :func:`ntlab.data.validation.validate`; with ``report=True`` the validation
        report is returned too, as ``(frame, report)``.
    """
    path = Path(source)
    if not path.is_file():
        msg = f"CSV file {str(path)!r} does not exist"
        raise DataError(msg)
    try:
        raw = pl.read_csv(path, separator=separator, has_header=has_header, new_columns=new_columns, **read_options)
    except pl.exceptions.PolarsError as exc:
        msg = f"{path}: cannot read as CSV: {exc}"
        raise DataError(msg) from exc
    frame = to_kind(raw, kind=kind, columns=columns, symbol=symbol, tz=tz, ts_format=ts_format, ts_unit=ts_unit, ts_offset=ts_offset)
    return finish(frame, kind=kind, fix=fix, source=path.name, report=report)


def read_parquet(
    source: str | Path,
    *,
    kind: str,
    columns: Mapping[str, str] | None = None,
    symbol: str | None = None,
    tz: str = "UTC",
    ts_unit: TsUnit | None = None,
    ts_offset: dt.timedelta | None = None,
    fix: Fix = "raise",
    report: bool = False,
) -> pl.DataFrame | tuple[pl.DataFrame, ValidationReport]:
    """Load a Parquet file as a validated frame of ``kind``; arguments as :func:`read_csv`."""
    path = Path(source)
    if not path.exists():
        msg = f"Parquet file {str(path)!r} does not exist"
        raise DataError(msg)
    try:
        raw = pl.read_parquet(path)
    except pl.exceptions.PolarsError as exc:
        msg = f"{path}: cannot read as Parquet: {exc}"
        raise DataError(msg) from exc
    frame = to_kind(raw, kind=kind, columns=columns, symbol=symbol, tz=tz, ts_unit=ts_unit, ts_offset=ts_offset)
    return finish(frame, kind=kind, fix=fix, source=path.name, report=report)
