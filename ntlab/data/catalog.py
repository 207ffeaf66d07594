"""A Parquet catalog of market data, partitioned by kind, symbol and UTC period.

Layout (hive style, one file per partition)::

    <root>/kind=<kind>/symbol=<symbol>/date=<YYYY-MM-DD | YYYY-MM | YYYY>/data.parquet

The form of ``date`` is the granularity: a UTC day (``2024-03-15``), month (``2024-03``) or
year (``2024``); a partition holds the rows with ``ts`` in [its start, the next period's
start). The folder names are the only metadata. Each kind/symbol uses one granularity, which
:meth:`Catalog.write` keeps; for a new symbol it takes ``partition=`` or guesses: ``"year"``
when the median gap between the symbol's distinct timestamps is a day or more (daily bars and
price tables: ~250 rows a year), else ``"day"`` (intraday data).

For the wide ``prices`` kind the ``symbol`` level holds a table name chosen by the caller
(``symbol="sp500"``) and the files hold ``ts`` plus one column per asset. The other kinds keep
their ``symbol`` column inside the files too, so a file copied out of the catalog still says
what it holds, and ``pl.scan_parquet(root / "kind=trades", hive_partitioning=True)`` reads the
tree as well. Folders whose name is no partition value (``date=latest``) are ignored.

Conventions
-----------
* Writing is idempotent: rows of a new batch that already exist in their partition (the same
  values in every column, counted with multiplicity) are skipped, so re-ingesting a file adds
  nothing, while identical rows inside one batch (two trades with the same ``ts``, price and
  size) are all kept. A ``prices`` table keeps one row per ``ts``: a batch is merged on ``ts``
  (new dates and asset columns are added, a null never overwrites a value, and a row adds
  nothing when its values are all stored already); a value that differs from the stored one
  raises :class:`CatalogError` and nothing is written.
* Writing is atomic: every touched partition is first written to a hidden temporary file beside
  its ``data.parquet`` (``.data.parquet.<id>.tmp``); only when all of them are written are they
  moved over the originals with ``os.replace``. A failure while writing removes the temporary
  files and leaves the catalog unchanged; a failure among the final renames (rare: they are
  metadata operations) leaves each partition either old or new, and since writing is
  idempotent, writing the same frame again completes it. The files and the folders holding
  them are fsynced, so a completed write survives a power loss. Readers only ever open
  ``data.parquet``; temporary files left by a killed process are removed by the next write to
  their partition.
* Scans open only the partitions whose period overlaps ``[start, end)`` (a year partition is
  opened for any filter that intersects its year), then filter ``ts`` exactly.
* Reading a kind, symbol or date range that holds no data gives an empty frame with the
  kind's required columns; a catalog root that does not exist raises :class:`CatalogError`
  (a mistyped path should not look like an empty catalog).
* One writer at a time per partition: concurrent writers to the same partition are not
  coordinated (the last rename wins).
"""

from __future__ import annotations

import html
import os
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from ntlab.data._time import utc_ns
from ntlab.data.schemas import KINDS, TS, check_symbol, conform, schema
from ntlab._fs import fsync
from ntlab.exceptions import CatalogError, ConfigError, DataError, SchemaError

__all__ = ["Catalog", "Granularity", "WriteReport"]

Granularity = Literal["day", "month", "year"]

DATA_FILE = "data.parquet"
_TMP_PREFIX = ".data.parquet."
_TMP_SUFFIX = ".tmp"
_PROGRESS_MIN_PARTITIONS = 20
_WIDE_KIND = "prices"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_NS = 86_400_000_000_000
_PERIOD = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_WIDTH = {"day": 10, "month": 7, "year": 4}  # of a partition value: 2024-03-15, 2024-03, 2024
_EVERY = {"day": "1d", "month": "1mo", "year": "1y"}
_REPR_HTML_MAX_ROWS = 100


@dataclass(frozen=True, kw_only=True)
class WriteReport:
    """What :meth:`Catalog.write` did: the kind, rows added, rows skipped as already present,
    and partition files created or rewritten (one whose rows were all present is left alone)."""

    kind: str
    rows_written: int
    rows_skipped: int
    partitions: int


@dataclass(frozen=True)
class _Partition:
    symbol: str
    date: str  # the partition value: YYYY-MM-DD, YYYY-MM or YYYY
    unit: str
    start: int  # ns since the epoch of the period's first instant
    end: int  # ns of the next period's first instant
    path: Path


@dataclass
class _Staged:
    tmp: Path
    final: Path
    created_dirs: list[Path]


class Catalog:
    """A folder of Parquet files holding market data by kind, symbol and date.

    Parameters
    ----------
    root
        The catalog folder. It is created by the first :meth:`write`.

    Examples
    --------
    >>> import tempfile
    >>> import polars as pl
    >>> from ntlab.data.catalog import Catalog
    >>> trades = pl.DataFrame(
    ...     {"ts": ["2024-01-01T10:00:00", "2024-01-01T10:00:00", "2024-01-02T09:30:00"],
    ...      "price": [100.0, 100.0, 100.5], "size": [1.0, 1.0, 2.0]}
    ... ).with_columns(pl.col("ts").str.to_datetime(time_unit="ns", time_zone="UTC"))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     cat = Catalog(tmp)
    ...     first = cat.write(trades, kind="trades", symbol="ES")
    ...     again = cat.write(trades, kind="trades", symbol="ES")
    ...     day2 = cat.scan("trades", symbols="ES", start="2024-01-02").collect()
    ...     print(first.rows_written, again.rows_written, again.rows_skipped, day2.height)
    ...     print(cat.symbols("trades"), cat.kinds())
    3 0 3 1
    ['ES'] ['trades']
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            msg = f"catalog root {str(self.root)!r} is a file; give a folder (it may not exist yet)"
            raise CatalogError(msg)

    # ------------------------------------------------------------------ writing
    def write(
        self,
        frame: pl.DataFrame,
        *,
        kind: str,
        symbol: str | None = None,
        partition: Granularity | None = None,
        progress: bool | None = None,
    ) -> WriteReport:
        """Add the rows of ``frame`` to the catalog, skipping rows already present.

        Parameters
        ----------
        frame
            Data of ``kind``; it is cast with :func:`ntlab.data.schemas.conform`.
        kind
            One of :data:`ntlab.data.schemas.KINDS`.
        symbol
            For the long kinds: the symbol of every row when ``frame`` has no ``symbol``
            column (when it has one, ``symbol`` must match all of it). For ``prices``: the
            table name (required).
        partition
            ``"day"``, ``"month"`` or ``"year"``: the period of one file, for symbols new to
            the catalog. ``None`` keeps the granularity a symbol already has and guesses one
            for a new symbol: ``"year"`` when the median gap between its consecutive distinct
            timestamps in ``frame`` is a day or more, else ``"day"``. A symbol with one distinct
            timestamp uses the gap over all symbols of ``frame``, else the granularity most of
            the batch's existing symbols have, else ``"day"``.
        progress
            Show a progress bar over partitions; ``None`` shows one when the batch touches
            20 partitions or more.

        Raises
        ------
        SchemaError
            ``frame`` does not fit the schema of ``kind``, or ``symbol`` is missing/contradicts.
        DataError
            Null ``ts`` or ``symbol`` values.
        CatalogError
            A partition could not be read or written, or a ``prices`` value differs from the
            stored one (the catalog is then unchanged); ``partition`` contradicts a symbol's
            granularity, or a symbol mixes granularities.
        ConfigError
            ``partition`` is not ``"day"``, ``"month"``, ``"year"`` or ``None``, or a symbol
            cannot be a folder name (see :func:`ntlab.data.schemas.check_symbol`).

        Examples
        --------
        >>> import tempfile
        >>> from ntlab.data.catalog import Catalog
        >>> from ntlab.data.synthetic import gbm_bars
        >>> minutes = gbm_bars(3 * 1440, freq="1m", seed=7)
        >>> days = gbm_bars(730, symbol="D", freq="1d", seed=7)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     print(Catalog(tmp).write(minutes, kind="bars"))  # one file per day
        ...     print(Catalog(tmp).write(days, kind="bars"))  # daily bars: one file per year
        WriteReport(kind='bars', rows_written=4320, rows_skipped=0, partitions=3)
        WriteReport(kind='bars', rows_written=730, rows_skipped=0, partitions=2)
        """
        if partition is not None and partition not in _WIDTH:
            msg = f"partition={partition!r}: use 'day', 'month', 'year' or None (automatic)"
            raise ConfigError(msg)
        prepared = self._prepare(frame, kind=kind, symbol=symbol)
        if prepared.height == 0:
            return WriteReport(kind=kind, rows_written=0, rows_skipped=0, partitions=0)
        table = symbol if kind == _WIDE_KIND else None
        units = self._units(prepared, kind=kind, table=table, partition=partition)
        items = _split(prepared, table=table, units=units)
        show = len(items) >= _PROGRESS_MIN_PARTITIONS if progress is None else progress
        staged: list[_Staged] = []
        written = skipped = 0
        try:
            for (sym, label), part in _progress(items, show=show, desc=f"write {kind}"):
                folder = self.root / f"kind={kind}" / f"symbol={sym}" / f"date={label}"
                added, stage = self._stage(folder, part, kind=kind)
                written += added
                skipped += part.height - added
                if stage is not None:
                    staged.append(stage)
        except BaseException as exc:
            _discard(staged)
            if isinstance(exc, CatalogError | DataError) or not isinstance(exc, Exception):
                raise
            msg = (
                f"writing {kind} failed ({type(exc).__name__}: {exc}); the catalog at "
                f"{str(self.root)!r} is unchanged, fix the cause and write again"
            )
            raise CatalogError(msg) from exc
        for done, stage in enumerate(staged):
            try:
                os.replace(stage.tmp, stage.final)
            except OSError as exc:
                _discard(staged[done:])
                msg = (
                    f"moving {str(stage.tmp)!r} into place failed ({exc}) after {done} of "
                    f"{len(staged)} partitions were replaced; every partition holds either its "
                    f"old or its new rows, and writing the same frame again completes the write"
                )
                raise CatalogError(msg) from exc
        dirs = {s.final.parent for s in staged} | {d.parent for s in staged for d in s.created_dirs}
        for folder in sorted(dirs, key=lambda f: (-len(f.parts), f)):  # make renames durable
            fsync(folder, strict=False)
        return WriteReport(
            kind=kind, rows_written=written, rows_skipped=skipped, partitions=len(staged)
        )

    def _prepare(self, frame: pl.DataFrame, *, kind: str, symbol: str | None) -> pl.DataFrame:
        schema(kind)  # unknown kinds raise SchemaError first
        if not isinstance(frame, pl.DataFrame):
            msg = (
                f"write expects a polars DataFrame, got {type(frame).__name__}; convert it "
                f"first (pl.from_pandas(df), lazy.collect())"
            )
            raise SchemaError(msg)
        if kind == _WIDE_KIND:
            if symbol is None:
                msg = "prices tables are wide; name the table with symbol=, e.g. symbol='sp500'"
                raise SchemaError(msg)
            check_symbol(symbol)
        elif symbol is not None:
            check_symbol(symbol)
            if "symbol" not in frame.columns:
                frame = frame.with_columns(symbol=pl.lit(symbol, dtype=pl.String))
            else:
                others = frame.filter(pl.col("symbol") != symbol)["symbol"].unique().to_list()
                if others:
                    msg = (
                        f"symbol={symbol!r} contradicts the frame's symbol column, which also "
                        f"holds {sorted(map(str, others))[:5]}; drop symbol= or the column"
                    )
                    raise SchemaError(msg)
        out = conform(frame, kind)
        nulls = out.select(pl.col("ts").null_count()).item()
        if nulls:
            msg = f"{kind} frame has {nulls} null ts value(s); every row needs a timestamp"
            raise DataError(msg)
        if kind != _WIDE_KIND:
            null_syms = out.select(pl.col("symbol").null_count()).item()
            if null_syms:
                msg = f"{kind} frame has {null_syms} null symbol(s); fill them or pass symbol="
                raise DataError(msg)
            for sym in out["symbol"].unique().to_list():
                check_symbol(sym)
        return out

    def _units(
        self, frame: pl.DataFrame, *, kind: str, table: str | None, partition: str | None
    ) -> dict[str, str]:
        """The granularity of each symbol of the batch (see :meth:`write`)."""
        syms = [table] if table is not None else sorted(frame["symbol"].unique().to_list())
        units = {sym: self._granularity(kind, sym) for sym in syms}
        if partition is not None:
            for sym, unit in units.items():
                if unit is not None and unit != partition:
                    msg = (
                        f"partition={partition!r} conflicts with {kind} {sym!r}, which the "
                        f"catalog holds by {unit}; drop partition= (or pass {unit!r}), or to "
                        f"repartition: frame = cat.scan({kind!r}, symbols={sym!r}).collect(), "
                        f"delete {str(self.root / f'kind={kind}' / f'symbol={sym}')!r}, then "
                        f"write(frame, partition={partition!r})"
                    )
                    raise CatalogError(msg)
            return dict.fromkeys(syms, partition)
        new = [sym for sym, unit in units.items() if unit is None]
        if new:  # median gap (ns) between consecutive distinct timestamps
            gap = pl.col("ts").to_physical().unique().sort().diff().median()
            name = pl.col("symbol") if table is None else pl.lit(table, dtype=pl.String)
            gaps = dict(frame.group_by(name.alias("s")).agg(gap).iter_rows())
            pooled = frame.select(gap).item()
            known = Counter(unit for unit in units.values() if unit).most_common(1)
            for sym in new:
                ns = gaps[sym] if gaps[sym] is not None else pooled
                fallback = known[0][0] if known else "day"
                units[sym] = fallback if ns is None else "year" if ns >= _DAY_NS else "day"
        return units  # type: ignore[return-value]

    def _granularity(self, kind: str, symbol: str) -> str | None:
        """The granularity ``symbol`` has in the catalog, ``None`` when it holds no data."""
        seen = {p.unit: p.date for p in self._partitions(kind, symbols=[symbol])}
        if len(seen) > 1:
            folder = self.root / f"kind={kind}" / f"symbol={symbol}"
            found = ", ".join(f"{unit} (date={label})" for unit, label in sorted(seen.items()))
            msg = (
                f"{str(folder)!r} mixes partition granularities: {found}; a symbol must use one "
                f"(overlapping periods break deduplication). Rebuild it: frame = "
                f"cat.scan({kind!r}, symbols={symbol!r}).collect(), check it, delete the folder "
                f"and write(frame, partition=...) again"
            )
            raise CatalogError(msg)
        return next(iter(seen), None)

    def _stage(self, folder: Path, new: pl.DataFrame, *, kind: str) -> tuple[int, _Staged | None]:
        """Merge ``new`` into the partition in ``folder``; write the result to a temp file."""
        final = folder / DATA_FILE
        tmp = folder / f"{_TMP_PREFIX}{uuid.uuid4().hex}{_TMP_SUFFIX}"
        stage = _Staged(tmp=tmp, final=final, created_dirs=_makedirs(folder))
        try:
            _clean_temp_files(folder)
            old = None
            if final.exists():
                try:
                    old = pl.read_parquet(final)
                except pl.exceptions.PolarsError as exc:
                    raise _damaged(final, exc) from exc
            if kind == _WIDE_KIND:
                merged, added = _merge_prices(old, new, folder)
                if old is not None and not added and merged.height == old.height:
                    return 0, None
            elif old is not None:
                fresh = _new_rows(old, new)
                if fresh.height == 0:
                    return 0, None
                merged = conform(pl.concat([old, fresh], how="diagonal"), kind)
                added = fresh.height
            else:
                merged, added = new, new.height
            if not merged["ts"].is_sorted():
                merged = merged.sort("ts", maintain_order=True)
            merged.write_parquet(stage.tmp, statistics=True)
            fsync(stage.tmp)
        except BaseException:
            _discard([stage])
            raise
        return added, stage

    # ------------------------------------------------------------------ reading
    def scan(
        self,
        kind: str,
        *,
        symbols: str | Sequence[str] | None = None,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
    ) -> pl.LazyFrame:
        """Lazily read ``kind``, opening only the partitions that the filters can match.

        Parameters
        ----------
        kind
            One of :data:`ntlab.data.schemas.KINDS`.
        symbols
            One symbol or several; ``None`` for all. For ``prices``: the table name (only one
            table can be read at a time; ``None`` is allowed when the catalog holds one).
        start, end
            ``[start, end)`` on ``ts``. Datetimes, dates or ISO strings; naive values are UTC.
            Only partitions whose period overlaps the range are opened.

        Returns
        -------
        pl.LazyFrame
            Columns in schema order (``symbol`` included, except for ``prices``): the kind's
            required columns plus the optional/extra ones present in the selected files
            (null where a file lacks them). Rows are ordered by symbol, then ``ts``.

        Raises
        ------
        SchemaError, CatalogError, ConfigError
            Unknown kind; no root folder, a damaged file or several prices tables; ``start``
            or ``end`` that is not a time, or ``start > end``.
        """
        sch = schema(kind)
        lo = None if start is None else utc_ns(start, name="start")
        hi = None if end is None else utc_ns(end, name="end")
        if lo is not None and hi is not None and lo > hi:
            msg = f"start {start!r} is after end {end!r}; scan reads [start, end)"
            raise ConfigError(msg)
        if not self.root.is_dir():
            msg = (
                f"no catalog at {str(self.root)!r}: the folder does not exist; check the path "
                f"or write data first"
            )
            raise CatalogError(msg)
        wanted = _symbol_list(symbols)
        if kind == _WIDE_KIND:
            tables = wanted if wanted is not None else self.symbols(kind)
            if len(tables) > 1:
                msg = (
                    f"prices tables are wide and cannot be stacked; scan one table at a time, "
                    f"e.g. symbols={tables[0]!r} (the catalog has {tables})"
                )
                raise CatalogError(msg)
        parts = self._partitions(kind, symbols=wanted, lo=lo, hi=hi)
        columns: dict[str, pl.DataType] = dict(sch.required)
        if kind != _WIDE_KIND:
            columns.setdefault("symbol", pl.String)
        if not parts:
            return pl.LazyFrame(schema=columns)
        found: dict[str, pl.DataType] = {}
        for part in parts:
            try:
                found.update(pl.read_parquet_schema(part.path))
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise _damaged(part.path, exc) from exc
        known = sch.columns
        order = [c for c in known if c in columns or c in found]
        order += [c for c in found if c not in known]
        full = {c: columns.get(c, found.get(c)) for c in order}
        paths = [p.path for p in parts]
        lf = pl.scan_parquet(paths, schema=full, hive_partitioning=False, missing_columns="insert")
        if lo is not None:
            lf = lf.filter(pl.col("ts") >= pl.lit(lo, dtype=pl.Int64).cast(TS))
        if hi is not None:
            lf = lf.filter(pl.col("ts") < pl.lit(hi, dtype=pl.Int64).cast(TS))
        return lf

    # ------------------------------------------------------------ introspection
    def kinds(self) -> list[str]:
        """Kinds that hold at least one partition, sorted."""
        names = (n.removeprefix("kind=") for n in _listdir(self.root, prefix="kind="))
        return sorted(k for k in names if k in KINDS and self.symbols(k))

    def symbols(self, kind: str) -> list[str]:
        """Symbols (table names for ``prices``) of ``kind`` that hold data, sorted."""
        schema(kind)
        return sorted({p.symbol for p in self._partitions(kind)})

    def summary(self) -> pl.DataFrame:
        """One row per kind and symbol: granularity, dates, partitions, rows and bytes on disk.

        Everything comes from the Parquet footers; no data is read. ``first_date`` and
        ``last_date`` are the UTC dates of the first and last ``ts``, from the min/max
        statistics of ``ts`` that the catalog writes; for a file without them (written by
        another tool) its partition's period stands in (first and last day of the period).

        Examples
        --------
        >>> import tempfile
        >>> from ntlab.data.catalog import Catalog
        >>> from ntlab.data.synthetic import gbm_bars
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     cat = Catalog(tmp)
        ...     _ = cat.write(gbm_bars(2 * 1440, symbol="A", seed=1), kind="bars")
        ...     _ = cat.write(gbm_bars(400, symbol="D", freq="1d", seed=1), kind="bars")
        ...     for row in cat.summary().drop("bytes").iter_rows():
        ...         print(row)
        ('bars', 'A', 'day', datetime.date(2024, 1, 1), datetime.date(2024, 1, 2), 2, 2880)
        ('bars', 'D', 'year', datetime.date(2024, 1, 1), datetime.date(2025, 2, 3), 2, 400)
        """
        import pyarrow.parquet as pq  # noqa: PLC0415 (pyarrow loads lazily)

        rows: list[tuple[str, str, str, date, date, int, int, int]] = []
        for kind, sym, unit, parts in self._groups():
            n_rows = n_bytes = 0
            bounds = []
            for part in parts:
                try:
                    meta = pq.read_metadata(part.path)
                except (OSError, ValueError) as exc:
                    msg = f"cannot read the footer of {str(part.path)!r} ({exc})"
                    raise CatalogError(msg) from exc
                n_rows += meta.num_rows
                n_bytes += part.path.stat().st_size
                bounds.append(_ts_bounds(meta, part))
            days = _ns_date(min(b[0] for b in bounds)), _ns_date(max(b[1] for b in bounds))
            rows.append((kind, sym, unit, *days, len(parts), n_rows, n_bytes))
        names = "kind symbol granularity first_date last_date partitions rows bytes".split()
        dtypes = [pl.String] * 3 + [pl.Date] * 2 + [pl.Int64] * 3
        return pl.DataFrame(rows, schema=list(zip(names, dtypes, strict=True)), orient="row")

    def _groups(self) -> list[tuple[str, str, str, list[_Partition]]]:
        """(kind, symbol, granularity, partitions) for every kind and symbol holding data."""
        out = []
        for kind in self.kinds():
            by_symbol: dict[str, list[_Partition]] = {}
            for part in self._partitions(kind):
                by_symbol.setdefault(part.symbol, []).append(part)
            for sym, parts in sorted(by_symbol.items()):
                out.append((kind, sym, ", ".join(sorted({p.unit for p in parts})), parts))
        return out

    def _layout(self) -> list[tuple[str, str, str, int, str, str]]:
        """(kind, symbol, granularity, partitions, first, last partition value) from names."""
        return [(k, s, u, len(p), p[0].date, p[-1].date) for k, s, u, p in self._groups()]

    def __repr__(self) -> str:
        layout = self._layout()
        head = f"Catalog({str(self.root)!r})"
        if not layout:
            return f"{head} (empty)"
        lines = [head]
        for kind in sorted({row[0] for row in layout}):
            rows = [row for row in layout if row[0] == kind]
            units = ", ".join(sorted({row[2] for row in rows}))
            n, n_parts = len(rows), sum(row[3] for row in rows)
            label = "table" if kind == _WIDE_KIND else "symbol"
            lines.append(
                f"  {kind:<7} {n} {label}{_s(n)}, {n_parts} partition{_s(n_parts)} by {units}, "
                f"{min(r[4] for r in rows)} .. {max(r[5] for r in rows)}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        layout = self._layout()
        title = f"<b>Catalog</b> <code>{html.escape(str(self.root))}</code>"
        if not layout:
            return f"<div>{title} (empty)</div>"
        names = ("kind", "symbol", "granularity", "partitions", "first", "last")
        head = "".join(f"<th>{h}</th>" for h in names)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in layout[:_REPR_HTML_MAX_ROWS]
        )
        more = len(layout) - _REPR_HTML_MAX_ROWS
        tail = f"<p>... {more} more rows; see .summary()</p>" if more > 0 else ""
        return f"<div>{title}<table><tr>{head}</tr>{body}</table>{tail}</div>"

    # ------------------------------------------------------------------ layout
    def _partitions(
        self,
        kind: str,
        *,
        symbols: list[str] | None = None,
        lo: int | None = None,
        hi: int | None = None,
    ) -> list[_Partition]:
        """Partitions holding a data file, by symbol then time; pruned by symbol and to the
        periods that overlap ``[lo, hi)`` (ns)."""
        kind_dir = self.root / f"kind={kind}"
        if symbols is None:
            symbols = [n.removeprefix("symbol=") for n in _listdir(kind_dir, prefix="symbol=")]
        out = []
        for sym in sorted(set(symbols)):
            sym_dir = kind_dir / f"symbol={sym}"
            found = []
            for name in _listdir(sym_dir, prefix="date="):
                label = name.removeprefix("date=")
                period = _period(label)
                if period is None:
                    continue
                unit, start, end = period
                if (hi is not None and start >= hi) or (lo is not None and end <= lo):
                    continue
                path = sym_dir / name / DATA_FILE
                if path.is_file():
                    found.append(_Partition(sym, label, unit, start, end, path))
            out += sorted(found, key=lambda p: (p.start, p.end))
        return out


# ---------------------------------------------------------------------- helpers
def _split(
    frame: pl.DataFrame, *, table: str | None, units: dict[str, str]
) -> list[tuple[tuple[str, str], pl.DataFrame]]:
    """Split ``frame`` into ((symbol, partition value), rows) partitions, sorted by key.

    ``units`` gives each symbol's granularity. Input that is already grouped (one contiguous
    run per symbol and period, the usual case for per-symbol files sorted by time) is cut into
    zero-copy slices; anything else goes through ``partition_by``, which keeps the row order
    inside each partition too.
    """
    sym = pl.col("symbol") if table is None else pl.lit(table, dtype=pl.String)
    every = {name: _EVERY[unit] for name, unit in units.items()}
    if len(set(every.values())) > 1:
        key = pl.col("ts").dt.truncate(sym.replace_strict(every, return_dtype=pl.String))
    else:
        key = pl.col("ts").dt.truncate(next(iter(every.values())))
    key = key.to_physical()  # ns of the period's start
    keys = frame.select(key.alias("_key"), sym.alias("_sym"))
    change = pl.col("_key").ne_missing(pl.col("_key").shift()) | pl.col("_sym").ne_missing(
        pl.col("_sym").shift()
    )
    starts = keys.select(pl.arg_where(change)).to_series()
    runs = keys[starts]
    if runs.n_unique() == runs.height:
        bounds = [*starts.to_list(), frame.height]
        parts = [frame.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        labels = runs.rows()
    else:
        groups = frame.with_columns(keys).partition_by(
            ["_key", "_sym"], as_dict=True, maintain_order=True
        )
        labels = list(groups)
        parts = [g.drop("_key", "_sym") for g in groups.values()]
    items = [
        ((str(s), _ns_date(k).isoformat()[: _WIDTH[units[s]]]), p)
        for (k, s), p in zip(labels, parts, strict=True)
    ]
    return sorted(items, key=lambda item: item[0])


def _period(label: str) -> tuple[str, int, int] | None:
    """(granularity, start ns, next start ns) of a partition value; ``None`` if it is none."""
    if not _PERIOD.fullmatch(label):
        return None
    unit = next(unit for unit, width in _WIDTH.items() if width == len(label))
    try:
        first = date.fromisoformat(label + "-01-01"[: 10 - len(label)])
        if unit == "day":
            after = first + timedelta(days=1)
        elif unit == "month":
            after = (first + timedelta(days=31)).replace(day=1)
        else:
            after = first.replace(year=first.year + 1)
    except (ValueError, OverflowError):  # 2024-13, 2024-02-30, past 9999
        return None
    epoch = _EPOCH.date()
    return unit, (first - epoch).days * _DAY_NS, (after - epoch).days * _DAY_NS


def _new_rows(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``new`` not already in ``old``, counting multiplicity, in ``new``'s order.

    The k-th copy of a row in ``new`` is skipped when ``old`` holds at least k copies. Only
    rows whose ``ts`` lies in the overlap of both time ranges can match, so appending later
    data costs no comparison. Rows are matched by a 64-bit row hash and every match is then
    checked column by column; should a hash collision make a check fail, the rows are matched
    again by their values (slower, same result).
    """
    old_ns, new_ns = old["ts"].to_physical(), new["ts"].to_physical()
    lo = max(int(old_ns.min()), int(new_ns.min()))  # type: ignore[arg-type]
    hi = min(int(old_ns.max()), int(new_ns.max()))  # type: ignore[arg-type]
    if lo > hi:
        return new
    dtypes = {**old.schema, **new.schema}
    in_range = pl.col("ts").to_physical().is_between(lo, hi)
    old_c = _align(old.filter(in_range), dtypes)
    new_rows = new.with_row_index("_row").filter(in_range)["_row"]
    new_c = _align(new.filter(in_range), dtypes)
    if new_c.height == old_c.height and new_c.equals(old_c):  # the same rows ingested again
        keep = np.ones(new.height, dtype=bool)
        keep[new_rows.to_numpy()] = False
        return new.filter(keep)
    hn, ho = _row_hash(new_c), _row_hash(old_c)
    pairs = pl.DataFrame({"h": hn, "o": _occurrence(hn), "i": np.arange(len(hn))}).join(
        pl.DataFrame({"h": ho, "o": _occurrence(ho), "j": np.arange(len(ho))}), on=["h", "o"]
    )
    if pairs.height == 0:
        return new
    left, right = new_c[pairs["i"]], old_c[pairs["j"]]
    if all(left[c].eq_missing(right[c]).all() for c in dtypes):
        dup = pairs["i"]
    else:  # a hash collision: match on the values themselves
        occ = pl.int_range(pl.len()).over(list(dtypes)).alias("_occ")
        dup = (
            new_c.with_row_index("_i")
            .with_columns(occ)
            .join(old_c.with_columns(occ), on=[*dtypes, "_occ"], how="semi", nulls_equal=True)
        )["_i"]
    keep = np.ones(new.height, dtype=bool)
    keep[new_rows.gather(dup).to_numpy()] = False
    return new.filter(keep)


def _merge_prices(
    old: pl.DataFrame | None, new: pl.DataFrame, folder: Path
) -> tuple[pl.DataFrame, int]:
    """Merge wide rows on ``ts`` (a full outer join coalescing each column), and count the ``ts``
    that are new or gained a value; two different non-null values for a ``ts`` and column
    raise. Only rows whose ``ts`` occurs twice are grouped: appending dates compares nothing."""
    stored = new.clear().select("ts") if old is None else old
    both = pl.concat([stored, new], how="diagonal_relaxed")
    names, cols = both.columns[1:], [f"v{i}" for i in range(both.width - 1)]
    both = both.rename(dict(zip(names, cols, strict=True)))
    both = both.with_columns(o=pl.int_range(pl.len()) < stored.height)  # o: a stored row
    dup = both["ts"].is_duplicated()
    groups = both.filter(dup).group_by("ts", maintain_order=True)
    multi = groups.agg(
        pl.col("o").any(),
        *(pl.col(c).drop_nulls().n_unique().alias(f"n{c}") for c in cols),
        *(pl.col(c).filter("o").is_null().all().alias(f"s{c}") for c in cols),  # none stored
        *(pl.col(c).drop_nulls().first() for c in cols),
    )
    for row, col in np.argwhere(multi.select(f"n{c}" for c in cols).to_numpy() > 1)[:1]:
        ts = multi["ts"][int(row)]
        rows = both.filter(pl.col("ts") == ts)
        a, b = rows[cols[col]].drop_nulls().unique(maintain_order=True).head(2).to_list()
        fmt = "the catalog holds {!r}, the batch {!r}", "the batch holds {!r} and {!r}"
        held = fmt[not rows.filter("o")[cols[col]].count()].format(a, b)
        msg = (
            f"prices conflict at ts={ts.isoformat()}, column {names[col]!r}: {held}; nothing "
            f"was written. A prices table keeps one value per date and asset: fix the batch, "
            f"or to replace stored values delete {str(folder)!r} and write that period again"
        )
        raise CatalogError(msg)
    gained = pl.any_horizontal(False, *(pl.col(f"s{c}") & pl.col(c).is_not_null() for c in cols))
    single = both.filter(~dup)
    added = single["o"].not_().sum() + multi.select((~pl.col("o") | gained).sum()).item()
    merged = pl.concat([single.drop("o"), multi.select("ts", *cols)]).sort("ts")
    return conform(merged.rename(dict(zip(cols, names, strict=True))), _WIDE_KIND), added


def _row_hash(frame: pl.DataFrame) -> pl.Series:
    return frame.hash_rows()


def _occurrence(hashes: pl.Series) -> pl.Series:
    """For each row, how many earlier rows share its hash (0 for the first copy)."""
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    first = pl.col("h").ne_missing(pl.col("h").shift())
    ranked = (
        pl.DataFrame({"h": hashes})
        .with_row_index("_i")
        .sort("h", maintain_order=True)
        .select("_i", occ=idx - pl.when(first).then(idx).otherwise(0).cum_max())
    )
    out = np.empty(len(hashes), dtype=np.int64)
    out[ranked["_i"].to_numpy()] = ranked["occ"].to_numpy()
    return pl.Series("o", out)


def _align(frame: pl.DataFrame, dtypes: dict[str, pl.DataType]) -> pl.DataFrame:
    missing = [c for c in dtypes if c not in frame.columns]
    if missing:
        frame = frame.with_columns(pl.lit(None, dtype=dtypes[c]).alias(c) for c in missing)
    return frame.select(list(dtypes))


def _symbol_list(symbols: str | Sequence[str] | None) -> list[str] | None:
    if symbols is None:
        return None
    out = [symbols] if isinstance(symbols, str) else list(symbols)
    for sym in out:
        check_symbol(sym)
    return out


def _ts_bounds(meta: Any, part: _Partition) -> tuple[int, int]:  # noqa: ANN401
    """Min and max ``ts`` (ns) of a file from its footer statistics, else its period."""
    names, groups = meta.schema.names, range(meta.num_row_groups)
    if "ts" in names and groups:
        col = names.index("ts")
        stats = [meta.row_group(i).column(col).statistics for i in groups]
        if all(st is not None and st.has_min_max for st in stats):
            return min(st.min_raw for st in stats), max(st.max_raw for st in stats)
    return part.start, part.end - 1


def _damaged(path: Path, exc: Exception) -> CatalogError:
    msg = f"cannot read {str(path)!r} ({exc}); the file is damaged: delete its folder and "
    return CatalogError(msg + "re-ingest that period")


def _ns_date(ns: int) -> date:
    return _EPOCH.date() + timedelta(days=ns // _DAY_NS)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _listdir(folder: Path, *, prefix: str) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return [e.name for e in it if e.name.startswith(prefix) and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _makedirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _clean_temp_files(folder: Path) -> None:
    for name in os.listdir(folder):
        if name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX):
            (folder / name).unlink(missing_ok=True)


def _discard(staged: list[_Staged]) -> None:
    """Remove temporary files and the folders a failed write created, newest first."""
    for stage in reversed(staged):
        stage.tmp.unlink(missing_ok=True)
        for folder in stage.created_dirs:
            try:
                folder.rmdir()
            except OSError:
                break


def _progress(items: list, *, show: bool, desc: str):  # noqa: ANN202
    if not show:
        return items
    from tqdm.auto import tqdm  # noqa: PLC0415 (loads lazily)

    return tqdm(items, desc=desc, unit="partition")
