"""Validation splits for backtests and model training: walk-forward and purged k-fold.

:func:`walk_forward` makes rolling (or expanding) training windows, each followed by a test
window; :func:`purged_kfold` makes López de Prado's purged k-fold with an embargo. Both return
a list of :class:`Split`, whose ``train`` and ``test`` are row indices: ``split.take(frame)``
cuts a frame, ``torch.utils.data.Subset(dataset, split.train)`` a dataset.
:func:`splits_frame` and :func:`plot_splits` show what the splits hold.

Conventions
-----------
Observations are the rows ``0 .. n-1`` of a frame, in time order. ``n_or_ts`` is either their
number ``n`` or their timestamps: a Polars ``Datetime`` or ``Date`` Series, a DataFrame (its
``ts`` column) or a NumPy ``datetime64`` array, sorted non-decreasing (ties are allowed) and
without nulls. Time-zone-aware timestamps are compared in UTC.

Lengths (``train``, ``test``, ``step``, ``min_train``, ``embargo``) count rows when they are
ints and time when they are durations: a Polars duration string of fixed units (``"30d"``,
``"6h"``, ``"1h30m"``; no ``mo``/``y``), a ``datetime.timedelta`` or a ``numpy.timedelta64``.
Durations need timestamps. The lengths of one call are all rows or all durations
(``embargo=0`` goes with both).

Labels. ``label_end`` says when each observation's label is known (a forward return's
horizon, a triple-barrier exit): one value per row, either times (needs timestamps) or row
indices, or one horizon for all rows, an int of rows (``t[min(i + h, n - 1)]``) or a duration
(``t + h``). A label ends at or after its own row. The label of row ``i`` spans the closed
interval ``[t_i, e_i]``; by default ``e_i = t_i``. Without timestamps, ``t_i = i``.

``walk_forward``
    The data is read on a clock: the timestamps when the lengths are durations, the row
    numbers when they are ints. Test window ``k`` is ``[a_k, a_k + test)`` with
    ``a_k = c_0 + min_train + embargo + k * step`` (``c_0`` the first row's clock value,
    ``step`` defaults to ``test``, ``min_train`` to ``train``); its training window is
    ``[a_k - embargo - train, a_k - embargo)``, cut at ``c_0``, or ``[c_0, a_k - embargo)``
    when ``expanding``. Windows are half-open, so in time the rows of a test window and of its
    training window are more than ``embargo`` apart. Training rows whose label ends at or
    after the first test row's time (``e_i >= t_test0``) are purged. The data is taken to end
    at ``c_end = c_last + d``, ``d`` the smallest positive gap between rows (1 on the row
    clock; the bar length of regular bars, which lasts that long): a test window is complete
    when ``a_k + test <= c_end``, and the last, incomplete one is dropped unless
    ``keep_partial=True``. Windows with no test or no training rows (a gap in the data) are
    skipped; folds are numbered from 0 over the kept ones.
``purged_kfold``
    The rows are cut into ``n_splits`` contiguous test folds, as ``numpy.array_split`` does
    (the first ``n % n_splits`` folds have one row more). For a fold of rows ``[lo, hi)``, with
    ``T0 = t_lo`` and ``T1 = max(e_lo .. e_hi-1)`` (the span of the fold's labels), a row
    outside the fold trains iff its label interval misses ``[T0, T1]`` and it is not in the
    embargo after it: ``e_i < T0`` (before the fold), or ``t_i > T1 + embargo`` (time
    embargo) or ``i >= p + embargo`` (row embargo, ``p`` the first row with ``t_p > T1``).
    Intervals are closed: a label ending exactly at ``T0`` is purged, and so are rows sharing
    a timestamp with the fold. A fold's train can be empty when labels span all the data.

Every split's ``train`` and ``test`` are sorted, disjoint, read-only int64 row indices.

Example
-------
>>> from ntlab.backtest.splits import purged_kfold, walk_forward
>>> for split in walk_forward(10, train=4, test=2, embargo=1):
...     print(split)
Split(fold=0, train=0..3 (4 rows), test=5..6 (2 rows))
Split(fold=1, train=2..5 (4 rows), test=7..8 (2 rows))
>>> for split in purged_kfold(9, n_splits=3, label_end=1, embargo=1):
...     print(split)
Split(fold=0, train=5..8 (4 rows), test=0..2 (3 rows))
Split(fold=1, train=0..1, 8 (3 rows), test=3..5 (3 rows))
Split(fold=2, train=0..4 (5 rows), test=6..8 (3 rows))

Reference
---------
M. López de Prado (2018), *Advances in Financial Machine Learning*, Wiley, chapter 7
"Cross-Validation in Finance": purging (7.4.1), embargo (7.4.2), snippets 7.1 to 7.3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import polars as pl

from ntlab.data._time import duration_ns
from ntlab.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Length", "Split", "plot_splits", "purged_kfold", "splits_frame", "walk_forward"]

Length = int | str | timedelta | np.timedelta64
"""A number of rows (int) or a duration (``"30d"``, a ``timedelta``, a ``numpy.timedelta64``)."""

Timestamps = int | pl.Series | pl.DataFrame | np.ndarray
LabelEnd = Length | pl.Series | np.ndarray | Sequence[int]
Rows = TypeVar("Rows", pl.DataFrame, pl.Series, np.ndarray)

_ZERO_DURATION = re.compile(r"(0+(ns|us|µs|ms|s|m|h|d|w))+")
_DAY_NS = 86_400_000_000_000
_SECOND_NS = 1_000_000_000
_PARTS = ("train", "test", "dropped")
_TIMESTAMPS = "a number of rows, a Datetime or Date Series, a frame with a 'ts' column or a datetime64 array"
_ENDS = "per-row times (a Datetime Series, a datetime64 array), per-row row indices (ints) or a horizon ('5d', 5)"
_COLORS = {"train": "tab:blue", "test": "tab:orange", "dropped": "tab:gray"}


@dataclass(frozen=True, eq=False, repr=False)
class Split:
    """One train/test split of ``n`` observations.

    Parameters
    ----------
    train, test
        Row indices, strictly increasing, disjoint, in ``[0, n)``; stored as read-only int64.
    fold
        The split's number, from 0.
    n
        The number of observations the indices refer to.
    times
        The ``datetime64[ns]`` timestamps (UTC when ``time_zone`` is set) of all ``n`` rows,
        shared by the splits of one call; None when the splits were made from a row count.
    time_zone
        The time zone of the original timestamps, used by :func:`splits_frame`.
    """

    train: np.ndarray
    test: np.ndarray
    fold: int
    n: int
    times: np.ndarray | None = None
    time_zone: str | None = None

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            object.__setattr__(self, name, _index(getattr(self, name), name, self.n))
        both = np.intersect1d(self.train, self.test)
        if both.size:
            msg = f"Split rows {both[:5].tolist()} are in both train and test; the parts must be disjoint"
            raise DataError(msg)
        if self.times is not None:
            times = np.asarray(self.times, dtype="datetime64[ns]").view()
            times.setflags(write=False)
            if times.shape != (self.n,):
                msg = f"Split.times has shape {times.shape} but n={self.n}; give one timestamp per row"
                raise DataError(msg)
            object.__setattr__(self, "times", times)

    @property
    def train_start(self) -> np.datetime64 | None:
        """Timestamp of the first training row (None without timestamps or training rows)."""
        return self._time(self.train, 0)

    @property
    def train_end(self) -> np.datetime64 | None:
        """Timestamp of the last training row (inclusive)."""
        return self._time(self.train, -1)

    @property
    def test_start(self) -> np.datetime64 | None:
        """Timestamp of the first test row."""
        return self._time(self.test, 0)

    @property
    def test_end(self) -> np.datetime64 | None:
        """Timestamp of the last test row (inclusive)."""
        return self._time(self.test, -1)

    def take(self, data: Rows) -> tuple[Rows, Rows]:
        """The training and test rows of ``data`` (a frame, Series or array of ``n`` rows).

        Raises
        ------
        DataError
            If ``data`` does not have ``n`` rows.
        """
        if len(data) != self.n:
            msg = (
                f"data has {len(data)} rows but the split was made for n={self.n}; apply it to "
                f"the frame whose rows (or timestamps) made the splits"
            )
            raise DataError(msg)
        return data[self.train], data[self.test]

    def __repr__(self) -> str:
        return f"Split(fold={self.fold}, train={self._describe(self.train)}, test={self._describe(self.test)})"

    def _time(self, index: np.ndarray, position: int) -> np.datetime64 | None:
        if self.times is None or index.size == 0:
            return None
        return self.times[index[position]]

    def _describe(self, index: np.ndarray) -> str:
        if index.size == 0:
            return "(0 rows)"
        starts, ends = _runs(index)
        if starts.size > 3:
            spans = f"{self._label(index[0])}..{self._label(index[-1])} in {starts.size} runs"
        else:
            spans = ", ".join(_span(self._label(a), self._label(b)) for a, b in zip(starts, ends, strict=True))
        return f"{spans} ({index.size} rows)"

    def _label(self, row: int) -> str:
        if self.times is None:
            return str(row)
        value = self.times[row]
        ns = int(value.view(np.int64))
        unit = "D" if ns % _DAY_NS == 0 else "s" if ns % _SECOND_NS == 0 else "ns"
        suffix = " UTC" if self.time_zone else ""
        return f"{np.datetime_as_string(value, unit=unit)}{suffix}"


def walk_forward(
    n_or_ts: Timestamps,
    *,
    train: Length,
    test: Length,
    step: Length | None = None,
    expanding: bool = False,
    embargo: Length = 0,
    min_train: Length | None = None,
    label_end: LabelEnd | None = None,
    keep_partial: bool = False,
) -> list[Split]:
    """Walk-forward splits: training windows, each followed by a test window.

    Parameters
    ----------
    n_or_ts
        The number of observations, or their sorted timestamps (see the module conventions).
    train
        Length of each training window (rows or duration); with ``expanding``, of the first.
    test
        Length of each test window.
    step
        How far each test window starts after the previous one; defaults to ``test``
        (back-to-back test windows).
    expanding
        Grow the training windows from the first row (anchored) instead of rolling them.
    embargo
        Data left out between the end of a training window and the start of its test window.
    min_train
        The first test window starts once ``min_train`` of training data exist (default
        ``train``): the first rolling windows are shorter than ``train`` (warm-up).
        Not allowed with ``expanding``, where ``train`` already is the first window's length.
    label_end
        When each observation's label is known; training rows whose label ends at or after
        the test window's first timestamp are purged.
    keep_partial
        Keep the last test window even when the data ends before it does.

    Returns
    -------
    list[Split]
        One split per kept test window, in time order.

    Raises
    ------
    ConfigError
        For lengths that are not positive (``embargo`` negative), mixed rows and durations,
        durations without timestamps, ``min_train`` above ``train`` or with ``expanding``, or
        windows that leave no fold in the data.
    DataError
        For unsorted or null timestamps, or a ``label_end`` of the wrong length or before its
        own row.
    """
    line = _Timeline.of(n_or_ts)
    if expanding and min_train is not None:
        msg = (
            f"min_train={min_train!r} does not apply with expanding=True, where train={train!r} is "
            f"the first training window's length; drop min_train"
        )
        raise ConfigError(msg)
    given = {"train": train, "test": test, "step": step, "min_train": min_train, "embargo": embargo}
    timed, amounts = _lengths(line, {name: value for name, value in given.items() if value is not None})
    amounts.setdefault("step", amounts["test"])
    amounts.setdefault("min_train", amounts["train"])
    if amounts["min_train"] > amounts["train"]:
        msg = f"min_train={min_train!r} is longer than train={train!r}; min_train must be at most train"
        raise ConfigError(msg)
    clock = line.ns if timed else np.arange(line.n, dtype=np.int64)
    starts = _test_starts(clock, amounts, keep_partial)
    if starts.size == 0:
        raise ConfigError(_no_window_message(clock, amounts, keep_partial, timed, given))
    ends, times = _label_ends(label_end, line), line.clock
    splits: list[Split] = []
    for test_lo, test_hi, train_lo, train_hi in _window_bounds(clock, starts, amounts, expanding):
        if test_hi == test_lo:
            continue
        train_rows = np.arange(train_lo, train_hi, dtype=np.int64)
        train_rows = train_rows[ends[train_rows] < times[test_lo]]
        if train_rows.size:
            splits.append(line.split(train_rows, np.arange(test_lo, test_hi, dtype=np.int64), len(splits)))
    if not splits:
        msg = (
            "no test window has training rows: gaps in the data or label_end purging leave none; lengthen "
            "train or shorten the label horizon"
        )
        raise ConfigError(msg)
    return splits


def purged_kfold(
    n_or_ts: Timestamps,
    *,
    n_splits: int = 5,
    label_end: LabelEnd | None = None,
    embargo: Length = 0,
) -> list[Split]:
    """Purged k-fold cross-validation with an embargo (López de Prado 2018, ch. 7).

    Parameters
    ----------
    n_or_ts
        The number of observations, or their sorted timestamps (see the module conventions).
    n_splits
        The number of contiguous test folds, from 2 to the number of observations.
    label_end
        When each observation's label is known; training rows whose label interval overlaps
        the test fold's label span are purged. Default: each label ends at its own row, so
        only the embargo (and ties of timestamps) removes training rows.
    embargo
        Rows (int) or time (duration) after the test fold's label span whose observations are
        dropped from the training set.

    Returns
    -------
    list[Split]
        ``n_splits`` splits whose test folds partition the rows, in order.

    Raises
    ------
    ConfigError
        For ``n_splits`` outside ``[2, n]``, a negative ``embargo``, a duration without
        timestamps.
    DataError
        For unsorted or null timestamps, or a ``label_end`` of the wrong length or before its
        own row.
    """
    line = _Timeline.of(n_or_ts)
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer) or not 2 <= n_splits <= line.n:
        msg = f"n_splits={n_splits!r} must be an int from 2 to the number of observations ({line.n})"
        raise ConfigError(msg)
    timed, amounts = _lengths(line, {"embargo": embargo})
    times = line.clock
    ends = _label_ends(label_end, line)
    rows = np.arange(line.n, dtype=np.int64)
    sizes = np.full(n_splits, line.n // n_splits)
    sizes[: line.n % n_splits] += 1
    splits = []
    for fold, (lo, hi) in enumerate(pairwise(np.concatenate([[0], np.cumsum(sizes)]))):
        label_span_end = ends[lo:hi].max()
        if timed:
            resume = np.searchsorted(times, label_span_end + amounts["embargo"], side="right")
        else:
            resume = np.searchsorted(times, label_span_end, side="right") + amounts["embargo"]
        train_rows = rows[(ends < times[lo]) | (rows >= resume)]
        splits.append(line.split(train_rows, rows[lo:hi], fold))
    return splits


def splits_frame(splits: Sequence[Split]) -> pl.DataFrame:
    """One row per contiguous run of each split's rows: ``fold``, ``part``, ``start``, ``end``, ``rows``.

    ``part`` is ``"train"``, ``"test"`` or ``"dropped"`` (rows between a split's first and
    last used row that are in neither part: purged or embargoed). ``start`` and ``end`` are
    the run's first and last timestamps (inclusive, in the original time zone) when the
    splits carry timestamps, else its first and last row indices (inclusive).

    Raises
    ------
    ConfigError
        If some splits carry timestamps and others do not.
    """
    timed = _carry_times(splits)
    fold, part, start, end, count = [], [], [], [], []
    for split in splits:
        clock = split.times.view(np.int64) if timed else np.arange(split.n, dtype=np.int64)
        for name, first, last in _segments(split):
            fold.append(split.fold)
            part.append(name)
            start.append(int(clock[first]))
            end.append(int(clock[last]))
            count.append(last - first + 1)
    frame = pl.DataFrame(
        {"fold": fold, "part": part, "start": start, "end": end, "rows": count},
        schema={"fold": pl.Int64, "part": pl.String, "start": pl.Int64, "end": pl.Int64, "rows": pl.Int64},
    )
    if not timed:
        return frame
    zone = splits[0].time_zone
    bounds = [pl.col(name).cast(pl.Datetime("ns")) for name in ("start", "end")]
    if zone is not None:
        bounds = [bound.dt.replace_time_zone("UTC").dt.convert_time_zone(zone) for bound in bounds]
    return frame.with_columns(bounds)


def plot_splits(splits: Sequence[Split], ax: Axes | None = None) -> Figure:
    """Draw the splits: one row of horizontal bars per fold (train blue, test orange, dropped grey).

    Parameters
    ----------
    splits
        The splits, e.g. from :func:`walk_forward` or :func:`purged_kfold`.
    ax
        Axes to draw on; by default a new :class:`matplotlib.figure.Figure` is made (no pyplot).

    Returns
    -------
    Figure
        The figure holding the axes. The x axis is time (UTC) when the splits carry
        timestamps, else row numbers.
    """
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if ax is None:
        ax = Figure(figsize=(9, 1.2 + 0.3 * len(splits)), layout="constrained").add_subplot()
    timed = _carry_times(splits)
    for y, split in enumerate(splits):
        for part, first, last in _segments(split):
            if timed:
                left, right = date2num(split.times[[first, min(last + 1, split.n - 1)]])
            else:
                left, right = first, last + 1
            ax.barh(y, right - left, left=left, height=0.6, color=_COLORS[part])
    ax.set_yticks(range(len(splits)), [f"fold {split.fold}" for split in splits])
    ax.invert_yaxis()
    if timed:
        ax.xaxis_date()
    ax.set_xlabel("time (UTC)" if timed else "row")
    handles = [Patch(color=color, label=part) for part, color in _COLORS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax.figure


# ---------------------------------------------------------------------------------------------
# Observations


@dataclass(frozen=True)
class _Timeline:
    """``n`` observations and their timestamps as int64 ns (UTC), None for a bare count."""

    n: int
    ns: np.ndarray | None = None
    time_zone: str | None = None

    @classmethod
    def of(cls, n_or_ts: Timestamps) -> _Timeline:
        if isinstance(n_or_ts, pl.DataFrame):
            if "ts" not in n_or_ts.columns:
                msg = f"the frame has no 'ts' column (columns: {n_or_ts.columns}); pass its timestamps Series"
                raise ConfigError(msg)
            n_or_ts = n_or_ts["ts"]
        if isinstance(n_or_ts, int | np.integer) and not isinstance(n_or_ts, bool):
            if n_or_ts < 1:
                msg = f"n_or_ts={n_or_ts} must be a positive number of rows, or the rows' timestamps"
                raise ConfigError(msg)
            return cls(int(n_or_ts))
        ns, zone = _to_ns(n_or_ts, "n_or_ts", _TIMESTAMPS)
        if ns.size == 0:
            msg = "n_or_ts holds no timestamps; splits need at least one row"
            raise DataError(msg)
        back = np.flatnonzero(np.diff(ns) < 0)
        if back.size:
            row = int(back[0]) + 1
            msg = (
                f"timestamps are not sorted: row {row} ({_iso(ns[row])}) comes before row {row - 1} "
                f"({_iso(ns[row - 1])}); sort the frame by time first (frame.sort('ts'))"
            )
            raise DataError(msg)
        return cls(ns.size, ns, zone)

    @property
    def clock(self) -> np.ndarray:
        """The observations' times: ns, or row numbers without timestamps."""
        return np.arange(self.n, dtype=np.int64) if self.ns is None else self.ns

    def split(self, train: np.ndarray, test: np.ndarray, fold: int) -> Split:
        times = None if self.ns is None else self.ns.view("datetime64[ns]")
        return Split(train, test, fold, self.n, times, self.time_zone)


def _to_ns(values: object, name: str, accepted: str) -> tuple[np.ndarray, str | None]:
    """Int64 UTC nanoseconds and time zone of a Datetime/Date Series or datetime64 array."""
    if isinstance(values, pl.Series):
        if values.dtype == pl.Date:
            values = values.cast(pl.Datetime("ns"))
        if not isinstance(values.dtype, pl.Datetime):
            msg = f"{name} has dtype {values.dtype}; give {accepted}"
            raise ConfigError(msg)
        if values.null_count():
            first = values.is_null().arg_max()
            msg = f"{name} has {values.null_count()} null timestamps (first at row {first}); drop or fill them"
            raise DataError(msg)
        return values.dt.cast_time_unit("ns").to_physical().to_numpy(), values.dtype.time_zone
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        if values.ndim != 1:
            msg = f"{name} has shape {values.shape}; give a 1-D array of timestamps"
            raise DataError(msg)
        missing = np.flatnonzero(np.isnat(values))
        if missing.size:
            msg = f"{name} has {missing.size} NaT timestamps (first at row {missing[0]}); drop or fill them"
            raise DataError(msg)
        return values.astype("datetime64[ns]").view(np.int64), None
    kind = f"{type(values).__name__} of {values.dtype}" if isinstance(values, np.ndarray) else type(values).__name__
    msg = f"{name} is a {kind}; give {accepted}"
    raise ConfigError(msg)


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns"))


# ---------------------------------------------------------------------------------------------
# Lengths and labels


def _amount(value: object, name: str) -> tuple[bool, int]:
    """(is a duration, amount in rows or ns) of one length; no sign check."""
    if isinstance(value, np.timedelta64):  # before int: numpy makes timedelta64 an integer type
        if np.isnat(value):
            msg = f"{name}={value!r} is not a time (NaT); give a duration such as '30d'"
            raise ConfigError(msg)
        return True, int(value.astype("timedelta64[ns]").view(np.int64))
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return False, int(value)
    if isinstance(value, timedelta):
        return True, value // timedelta(microseconds=1) * 1000
    if isinstance(value, str):
        return True, 0 if _ZERO_DURATION.fullmatch(value) else duration_ns(value, name=name)
    msg = f"{name}={value!r} is neither a number of rows (int) nor a duration ('30d', '6h', a timedelta)"
    raise ConfigError(msg)


def _lengths(line: _Timeline, values: dict[str, object]) -> tuple[bool, dict[str, int]]:
    """Whether the lengths are durations, and their amounts (rows or ns), checked."""
    parsed = {name: _amount(value, name) for name, value in values.items()}
    for name, (_, amount) in parsed.items():
        if name == "embargo" and amount < 0:
            msg = f"embargo={values[name]!r} is negative; give 0 (no embargo) or a positive number of rows or duration"
            raise ConfigError(msg)
        if name != "embargo" and amount <= 0:
            msg = f"{name}={values[name]!r} must be positive: a number of rows, or a duration such as '30d'"
            raise ConfigError(msg)
    durations = [name for name, (timed, amount) in parsed.items() if timed and amount]
    rows = [name for name, (timed, amount) in parsed.items() if not timed and amount]
    if durations and rows:
        msg = (
            f"{', '.join(durations)} given as durations but {', '.join(rows)} as rows; give all lengths "
            f"in one unit, e.g. train='365d', test='90d', embargo='5d'"
        )
        raise ConfigError(msg)
    if durations and line.ns is None:
        msg = (
            f"{', '.join(f'{name}={values[name]!r}' for name in durations)}: durations need timestamps, but "
            f"n_or_ts is a row count ({line.n}); pass the timestamps (a Datetime Series) or give lengths in rows"
        )
        raise ConfigError(msg)
    return bool(durations), {name: amount for name, (_, amount) in parsed.items()}


def _label_ends(label_end: object, line: _Timeline) -> np.ndarray:
    """Each observation's label end on its clock (ns, or row numbers without timestamps)."""
    clock = line.clock
    if label_end is None:
        return clock
    if isinstance(label_end, int | np.integer | str | timedelta | np.timedelta64):
        timed, horizon = _amount(label_end, "label_end")
        if horizon < 0:
            msg = f"label_end={label_end!r} is a negative horizon; labels end at or after their own row"
            raise ConfigError(msg)
        if timed and line.ns is None:
            msg = f"label_end={label_end!r} is a duration but n_or_ts is a row count; pass the timestamps"
            raise ConfigError(msg)
        if timed:
            return clock + horizon
        return clock[np.minimum(np.arange(line.n) + horizon, line.n - 1)]
    if _is_rows(label_end):
        return clock[_label_rows(label_end, line.n)]
    ends, _ = _to_ns(label_end if isinstance(label_end, pl.Series) else np.asarray(label_end), "label_end", _ENDS)
    if line.ns is None:
        msg = "label_end holds times but n_or_ts is a row count; pass the timestamps too, or give label_end as rows"
        raise ConfigError(msg)
    _check_length(ends, line.n)
    early = np.flatnonzero(ends < line.ns)
    if early.size:
        row = int(early[0])
        msg = (
            f"label_end at row {row} ({_iso(ends[row])}) is before the row's own time ({_iso(line.ns[row])}); "
            f"a label ends at or after its observation ({early.size} such rows)"
        )
        raise DataError(msg)
    return ends


def _is_rows(values: object) -> bool:
    if isinstance(values, pl.Series):
        return values.dtype.is_integer()
    return np.asarray(values).dtype.kind in "iu"


def _label_rows(values: object, n: int) -> np.ndarray:
    """Per-row label ends given as row indices, checked to lie in ``[i, n)``."""
    if isinstance(values, pl.Series) and values.null_count():
        msg = f"label_end has {values.null_count()} nulls; give every row's label end (e.g. the last row)"
        raise DataError(msg)
    rows = np.asarray(values.to_numpy() if isinstance(values, pl.Series) else values, dtype=np.int64)
    _check_length(rows, n)
    bad = np.flatnonzero((rows < np.arange(n)) | (rows >= n))
    if bad.size:
        row = int(bad[0])
        msg = (
            f"label_end at row {row} is row {rows[row]}, outside [{row}, {n - 1}]; a label ends at or after its "
            f"own row and at the last row at the latest ({bad.size} such rows)"
        )
        raise DataError(msg)
    return rows


def _check_length(values: np.ndarray, n: int) -> None:
    if values.shape != (n,):
        msg = f"label_end has shape {values.shape} but there are {n} observations; give one label end per row"
        raise DataError(msg)


# ---------------------------------------------------------------------------------------------
# Windows and segments


def _test_starts(clock: np.ndarray, amounts: dict[str, int], keep_partial: bool) -> np.ndarray:
    """Clock values where the test windows start (those that fit the data)."""
    first = clock[0] + amounts["min_train"] + amounts["embargo"]
    starts = np.arange(first, clock[-1] + 1, amounts["step"], dtype=np.int64)
    if keep_partial:
        return starts
    return starts[starts + amounts["test"] <= _clock_end(clock)]


def _clock_end(clock: np.ndarray) -> int:
    """Where the data ends: the last row plus the smallest positive gap between rows (its bar length)."""
    gaps = np.diff(clock)
    gaps = gaps[gaps > 0]
    return int(clock[-1]) + (int(gaps.min()) if gaps.size else 1)


def _no_window_message(
    clock: np.ndarray, amounts: dict[str, int], keep_partial: bool, timed: bool, given: dict[str, object]
) -> str:
    need = amounts["min_train"] + amounts["embargo"] + (0 if keep_partial else amounts["test"])
    span = _clock_end(clock) - int(clock[0])

    def show(amount: int) -> str:
        return str(timedelta(microseconds=amount // 1000)) if timed else f"{amount} rows"

    if keep_partial:
        what, hint = "more than min_train + embargo", "shorten train or embargo"
    else:
        what, hint = "min_train + embargo + test", "shorten the windows, or pass keep_partial=True"
    shown = ", ".join(f"{name}={value!r}" for name, value in given.items() if value is not None)
    return f"no test window fits: {shown} need {what} = {show(need)} but the data spans {show(span)}; {hint}"


def _window_bounds(
    clock: np.ndarray, starts: np.ndarray, amounts: dict[str, int], expanding: bool
) -> zip[tuple[np.intp, np.intp, np.intp, np.intp]]:
    """Row bounds ``(test_lo, test_hi, train_lo, train_hi)`` of the windows starting at ``starts``."""
    test_lo = np.searchsorted(clock, starts, side="left")
    test_hi = np.searchsorted(clock, starts + amounts["test"], side="left")
    train_hi = np.searchsorted(clock, starts - amounts["embargo"], side="left")
    if expanding:
        train_lo = np.zeros_like(train_hi)
    else:
        train_lo = np.searchsorted(clock, starts - amounts["embargo"] - amounts["train"], side="left")
    return zip(test_lo, test_hi, train_lo, train_hi, strict=True)


def _index(values: object, name: str, n: int) -> np.ndarray:
    """Read-only int64 view of strictly increasing row indices in ``[0, n)``."""
    index = np.asarray(values, dtype=np.int64).view()
    if index.ndim != 1 or np.any(np.diff(index) <= 0) or (index.size and (index[0] < 0 or index[-1] >= n)):
        msg = f"Split.{name} must be strictly increasing row indices in [0, {n}), got {index!r}"
        raise DataError(msg)
    index.setflags(write=False)
    return index


def _runs(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last row of each run of consecutive rows of a sorted index."""
    cut = np.flatnonzero(np.diff(index) > 1)
    return index[np.concatenate([[0], cut + 1])], index[np.concatenate([cut, [index.size - 1]])]


def _span(first: str, last: str) -> str:
    return first if first == last else f"{first}..{last}"


def _segments(split: Split) -> list[tuple[str, int, int]]:
    """(part, first row, last row) of each run of train, test and dropped rows of a split."""
    used = np.concatenate([split.train, split.test])
    if used.size == 0:
        return []
    lo = int(used.min())
    code = np.full(int(used.max()) - lo + 1, 2, dtype=np.int8)
    code[split.train - lo] = 0
    code[split.test - lo] = 1
    cut = np.flatnonzero(np.diff(code)) + 1
    firsts = np.concatenate([[0], cut])
    lasts = np.concatenate([cut, [code.size]]) - 1
    return [(_PARTS[code[a]], lo + int(a), lo + int(b)) for a, b in zip(firsts, lasts, strict=True)]


def _carry_times(splits: Sequence[Split]) -> bool:
    """Whether the splits carry timestamps; ConfigError for a mix."""
    with_times = {split.times is not None for split in splits}
    if len(with_times) > 1:
        msg = "some splits carry timestamps and others do not; show splits made from the same kind of input"
        raise ConfigError(msg)
    return with_times == {True}
