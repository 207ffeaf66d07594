"""Validation splits: exact small cases, properties (no look-ahead, purging, embargo), real SPY dates, errors, plots.

The purged k-fold is checked against a plain restatement of its rules (overlap of closed label
intervals, embargo after the fold's label span) and, without purging, against contiguous
``array_split`` folds written out by hand (scikit-learn is not a dependency).
"""

from __future__ import annotations

import datetime as dt
from itertools import pairwise

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import ntlab.datasets
from ntlab.backtest.splits import Split, plot_splits, purged_kfold, splits_frame, walk_forward
from ntlab.exceptions import ConfigError, DataError

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
PROPERTY = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


# ---------------------------------------------------------------------------------------------
# Helpers


def days(*offsets: float, zone: str | None = "UTC") -> pl.Series:
    """A Datetime[ns] Series at the given day offsets from 2024-01-01."""
    ns = [int(d * DAY) + 1_704_067_200 * 10**9 for d in offsets]
    series = pl.Series("ts", ns, dtype=pl.Int64).cast(pl.Datetime("ns"))
    return series if zone is None else series.dt.replace_time_zone(zone)


def parts(splits: list[Split]) -> list[tuple[list[int], list[int]]]:
    return [(s.train.tolist(), s.test.tolist()) for s in splits]


def r(a: int, b: int) -> list[int]:
    return list(range(a, b))


def kfold_reference(n: int, k: int) -> list[tuple[int, int]]:
    """Contiguous folds as ``numpy.array_split`` (and scikit-learn's KFold) cut them."""
    size, extra = divmod(n, k)
    bounds, lo = [], 0
    for fold in range(k):
        hi = lo + size + (fold < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


# ---------------------------------------------------------------------------------------------
# Walk-forward: exact small cases


def test_rolling_rows() -> None:
    got = walk_forward(10, train=4, test=2)
    assert parts(got) == [(r(0, 4), [4, 5]), (r(2, 6), [6, 7]), (r(4, 8), [8, 9])]
    assert [s.fold for s in got] == [0, 1, 2]
    assert all(s.train_start is None and s.test_end is None for s in got)


def test_rolling_rows_with_embargo() -> None:
    got = walk_forward(10, train=4, test=2, embargo=1)
    assert parts(got) == [(r(0, 4), [5, 6]), (r(2, 6), [7, 8])]


def test_expanding_rows() -> None:
    got = walk_forward(10, train=4, test=3, expanding=True)
    assert parts(got) == [(r(0, 4), [4, 5, 6]), (r(0, 7), [7, 8, 9])]
    got = walk_forward(11, train=4, test=3, expanding=True, embargo=2)
    assert parts(got) == [(r(0, 4), [6, 7, 8])]


def test_step_and_partial_last_window() -> None:
    full = [(r(0, 3), [3, 4]), (r(3, 6), [6, 7])]
    assert parts(walk_forward(10, train=3, test=2, step=3)) == full
    assert parts(walk_forward(10, train=3, test=2, step=3, keep_partial=True)) == [*full, (r(6, 9), [9])]


def test_min_train_warm_up() -> None:
    got = walk_forward(10, train=5, test=2, min_train=2)
    assert parts(got) == [([0, 1], [2, 3]), (r(0, 4), [4, 5]), (r(1, 6), [6, 7]), (r(3, 8), [8, 9])]


def test_walk_forward_purges_labels_that_reach_the_test_window() -> None:
    # Labels end two rows later: the last two training rows see the test window's prices.
    got = walk_forward(10, train=4, test=2, label_end=2)
    assert parts(got) == [([0, 1], [4, 5]), ([2, 3], [6, 7]), ([4, 5], [8, 9])]
    ends = np.minimum(np.arange(10) + 2, 9)
    assert parts(walk_forward(10, train=4, test=2, label_end=ends)) == parts(got)


def test_time_windows_skip_empty_windows() -> None:
    # Days 4-5 are a weekend gap: the first test window [4d, 6d) has no rows and is skipped. The
    # data ends at 14d (the last day lasts one day, the smallest gap): the window [12d, 14d) is complete.
    ts = days(0, 1, 2, 3, 6, 7, 8, 9, 10, 13)
    expected = [([2, 3], [4, 5]), ([4], [6, 7]), ([4, 5, 6], [8]), ([6, 7, 8], [9])]
    got = walk_forward(ts, train="3d", test="2d", embargo="1d")
    assert parts(got) == expected
    assert [s.fold for s in got] == [0, 1, 2, 3]
    assert got[0].train_start == np.datetime64("2024-01-03", "ns")
    assert got[0].train_end == np.datetime64("2024-01-04", "ns")
    assert got[0].test_start == np.datetime64("2024-01-07", "ns")
    assert got[0].test_end == np.datetime64("2024-01-08", "ns")
    as_timedelta = walk_forward(ts, train=dt.timedelta(days=3), test=dt.timedelta(days=2), embargo=dt.timedelta(1))
    as_numpy = walk_forward(
        ts.to_numpy(), train=np.timedelta64(3, "D"), test=np.timedelta64(48, "h"), embargo=np.timedelta64(1, "D")
    )
    frame = pl.DataFrame({"ts": ts, "x": range(10)})
    for other in (as_timedelta, as_numpy, walk_forward(frame, train="3d", test="2d", embargo="1d")):
        assert parts(other) == expected


def test_time_windows_expanding_and_label_horizon() -> None:
    ts = days(*range(8))
    got = walk_forward(ts, train="2d", test="2d", expanding=True, label_end="1d")
    # Training rows whose label (one day ahead) reaches the test window's first day are purged.
    assert parts(got) == [([0], [2, 3]), (r(0, 3), [4, 5]), (r(0, 5), [6, 7])]


def test_zero_embargo_in_any_unit_and_dates() -> None:
    ts = pl.Series(
        [dt.date(2024, 1, d) for d in range(1, 11)],
    )
    base = parts(walk_forward(ts, train="4d", test="2d"))
    assert base == parts(walk_forward(10, train=4, test=2))
    assert parts(walk_forward(ts, train="4d", test="2d", embargo="0d")) == base
    assert parts(walk_forward(ts, train="4d", test="2d", embargo=0)) == base
    assert parts(walk_forward(ts, train=4, test=2, embargo="0h")) == base


# ---------------------------------------------------------------------------------------------
# Walk-forward: properties


@PROPERTY
@given(
    n=st.integers(1, 150),
    train=st.integers(1, 40),
    test=st.integers(1, 30),
    step=st.none() | st.integers(1, 30),
    embargo=st.integers(0, 8),
    expanding=st.booleans(),
    keep_partial=st.booleans(),
)
def test_walk_forward_rows_properties(
    n: int, train: int, test: int, step: int | None, embargo: int, expanding: bool, keep_partial: bool
) -> None:
    fits = train + embargo + (0 if keep_partial else test) <= n - (1 if keep_partial else 0)
    if not fits:
        with pytest.raises(ConfigError, match="no test window fits"):
            walk_forward(
                n, train=train, test=test, step=step, embargo=embargo, expanding=expanding, keep_partial=keep_partial
            )
        return
    got = walk_forward(
        n, train=train, test=test, step=step, embargo=embargo, expanding=expanding, keep_partial=keep_partial
    )
    step = test if step is None else step
    for k, s in enumerate(got):
        a = train + embargo + k * step
        assert s.fold == k
        assert not np.intersect1d(s.train, s.test).size
        assert s.train.max() < s.test.min()  # no look-ahead
        assert s.test[0] - s.train[-1] - 1 == embargo
        assert s.test.tolist() == r(a, min(a + test, n))
        assert s.train.tolist() == r(0 if expanding else a - embargo - train, a - embargo)
    # Every window that fits is there, and only those.
    last = train + embargo + len(got) * step
    assert (last >= n) if keep_partial else (last + test > n)
    assert all(s.test.size == test for s in got[: len(got) - keep_partial])


def walk_forward_time_reference(
    ns: np.ndarray, train: int, test: int, embargo: int, expanding: bool
) -> list[tuple[list[int], list[int]]]:
    """Walk-forward windows on ns timestamps, written from the documented rule, one window at a time."""
    out = []
    start = ns[0] + train + embargo
    end = ns[-1] + min((gap for gap in np.diff(ns) if gap > 0), default=1)
    while start + test <= end:
        test_rows = np.flatnonzero((ns >= start) & (ns < start + test))
        lo = ns[0] if expanding else start - embargo - train
        train_rows = np.flatnonzero((ns >= lo) & (ns < start - embargo))
        if test_rows.size and train_rows.size:
            out.append((train_rows.tolist(), test_rows.tolist()))
        start += test
    return out


@PROPERTY
@given(
    gaps=st.lists(st.integers(0, 30), min_size=1, max_size=120),
    train=st.integers(1, 200),
    test=st.integers(1, 100),
    embargo=st.integers(0, 40),
    expanding=st.booleans(),
)
def test_walk_forward_time_properties(gaps: list[int], train: int, test: int, embargo: int, expanding: bool) -> None:
    ns = np.cumsum([0, *gaps]) * HOUR  # hourly gaps, ties included
    ts = pl.Series(ns).cast(pl.Datetime("ns"))
    kwargs = {"train": f"{train}h", "test": f"{test}h", "embargo": dt.timedelta(hours=embargo), "expanding": expanding}
    reference = walk_forward_time_reference(ns, train * HOUR, test * HOUR, embargo * HOUR, expanding)
    if not reference:
        with pytest.raises(ConfigError, match="no test window"):
            walk_forward(ts, **kwargs)
        return
    got = walk_forward(ts, **kwargs)
    assert parts(got) == reference
    for k, s in enumerate(got):
        t_train, t_test = ns[s.train], ns[s.test]
        assert s.fold == k
        assert t_test.min() - t_train.max() > embargo * HOUR  # embargo in time units, no look-ahead
        assert t_test.max() - t_test.min() < test * HOUR
        assert expanding or t_train.max() - t_train.min() < train * HOUR
    assert all(a.test[-1] < b.test[0] for a, b in pairwise(got))  # back-to-back test windows, in order


# ---------------------------------------------------------------------------------------------
# Purged k-fold: exact small cases


def test_purged_kfold_rows_horizon_and_embargo() -> None:
    got = purged_kfold(9, n_splits=3, label_end=1, embargo=1)
    assert parts(got) == [(r(5, 9), [0, 1, 2]), ([0, 1, 8], [3, 4, 5]), (r(0, 5), [6, 7, 8])]


def test_purged_kfold_label_end_as_times_or_rows() -> None:
    ts = days(*range(6))
    expected = [([3, 4, 5], [0, 1]), ([5], [2, 3]), ([0, 1, 2], [4, 5])]
    assert parts(purged_kfold(ts, n_splits=3, label_end=days(2, 2, 3, 4, 5, 5))) == expected
    rows = [2, 2, 3, 4, 5, 5]
    for label_end in (rows, np.array(rows), pl.Series(rows)):
        assert parts(purged_kfold(ts, n_splits=3, label_end=label_end)) == expected
        assert parts(purged_kfold(6, n_splits=3, label_end=label_end)) == expected
    ends = days(2, 2, 3, 4, 5, 5).to_numpy()
    assert parts(purged_kfold(ts.to_numpy(), n_splits=3, label_end=ends)) == expected


def test_purged_kfold_time_vs_row_embargo() -> None:
    ts = days(0, 1, 2, 3, 10, 11, 12, 13)
    assert purged_kfold(ts, n_splits=2, embargo="2d")[0].train.tolist() == r(4, 8)  # days 10+ are past 3d + 2d
    assert purged_kfold(ts, n_splits=2, embargo=2)[0].train.tolist() == [6, 7]  # the next two rows are dropped
    assert purged_kfold(ts, n_splits=2, label_end="9d")[1].train.tolist() == [0]  # day 1 + 9d < day 10
    assert purged_kfold(ts, n_splits=2, label_end="10d")[1].train.tolist() == []  # closed: day 0 + 10d overlaps


def test_purged_kfold_purges_ties() -> None:
    # Rows 1 and 2 share a timestamp but fall in different folds: each is purged from the other's train.
    got = purged_kfold(days(0, 1, 1, 2), n_splits=2)
    assert parts(got) == [([3], [0, 1]), ([0], [2, 3])]


# ---------------------------------------------------------------------------------------------
# Purged k-fold: properties


@PROPERTY
@given(n=st.integers(2, 300), data=st.data())
def test_purged_kfold_without_purging_is_plain_kfold(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(2, min(n, 12)))
    got = purged_kfold(n, n_splits=k)
    reference = kfold_reference(n, k)
    assert [s.test.tolist() for s in got] == [r(lo, hi) for lo, hi in reference]
    assert [s.test.tolist() for s in got] == [a.tolist() for a in np.array_split(np.arange(n), k)]
    assert [s.train.tolist() for s in got] == [r(0, lo) + r(hi, n) for lo, hi in reference]


@PROPERTY
@given(
    n=st.integers(2, 80),
    data=st.data(),
    ties=st.booleans(),
    time_embargo=st.booleans(),
    embargo=st.integers(0, 6),
)
def test_purged_kfold_properties(n: int, data: st.DataObject, ties: bool, time_embargo: bool, embargo: int) -> None:
    k = data.draw(st.integers(2, min(n, 8)))
    horizons = np.array(data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)))
    gaps = data.draw(st.lists(st.integers(0 if ties else 1, 3), min_size=n - 1, max_size=n - 1))
    t = np.cumsum([0, *gaps]) * DAY
    e = t[np.minimum(np.arange(n) + horizons, n - 1)]
    ts = pl.Series(t).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    got = purged_kfold(
        ts,
        n_splits=k,
        label_end=np.minimum(np.arange(n) + horizons, n - 1),
        embargo=f"{embargo}d" if time_embargo else embargo,
    )
    assert np.array_equal(np.sort(np.concatenate([s.test for s in got])), np.arange(n))  # a partition
    for s, (lo, hi) in zip(got, kfold_reference(n, k), strict=True):
        assert s.test.tolist() == r(lo, hi)
        assert not np.intersect1d(s.train, s.test).size
        # No training label interval [t_i, e_i] overlaps a test one [t_j, e_j] (closed intervals).
        i, j = s.train[:, None], s.test[None, :]
        assert not np.any((t[i] <= e[j]) & (t[j] <= e[i]))
        # No training row in the embargo after the fold's label span.
        span_end = e[lo:hi].max()
        if time_embargo:
            embargoed = (t > span_end) & (t <= span_end + embargo * DAY)
        else:
            first_after = np.searchsorted(t, span_end, side="right")
            embargoed = (np.arange(n) >= first_after) & (np.arange(n) < first_after + embargo)
        assert not embargoed[s.train].any()
        # And nothing else is left out: every other row without overlap trains.
        overlaps = (t <= span_end) & (e >= t[lo])
        expected = np.flatnonzero(~overlaps & ~embargoed & ((np.arange(n) < lo) | (np.arange(n) >= hi)))
        assert s.train.tolist() == expected.tolist()


# ---------------------------------------------------------------------------------------------
# Real timestamps


@pytest.fixture(scope="module")
def spy() -> pl.DataFrame:
    return ntlab.datasets.load("spy_daily")


def test_spy_walk_forward_in_time(spy: pl.DataFrame) -> None:
    got = walk_forward(spy["ts"], train="365d", test="90d", embargo="5d")
    ts = spy["ts"]
    first, last = ts[0], ts[-1]
    expected_folds = 0
    while first + dt.timedelta(days=370 + 90 * (expected_folds + 1)) <= last:
        expected_folds += 1
    assert len(got) == expected_folds > 60
    indexed = spy.with_row_index("row")
    for k, s in enumerate(got):
        start = first + dt.timedelta(days=370 + 90 * k)
        in_test = indexed.filter(pl.col("ts").is_between(start, start + dt.timedelta(days=90), closed="left"))
        in_train = indexed.filter(
            pl.col("ts").is_between(start - dt.timedelta(days=370), start - dt.timedelta(days=5), closed="left")
        )
        assert s.test.tolist() == in_test["row"].to_list()
        assert s.train.tolist() == in_train["row"].to_list()
        assert s.test_start - s.train_end > np.timedelta64(5, "D")
        assert s.train_end - s.train_start < np.timedelta64(365, "D")
        assert s.test_end - s.test_start < np.timedelta64(90, "D")
        assert s.test_start == np.datetime64(in_test["ts"][0].replace(tzinfo=None), "ns")
    train, test = got[3].take(spy)
    assert train["ts"].max() < test["ts"].min() - dt.timedelta(days=5)
    assert test.height == got[3].test.size
    frame = splits_frame(got)
    assert frame.schema["start"] == pl.Datetime("ns", "UTC")
    assert frame.filter(pl.col("part") == "test")["start"].to_list() == [ts[int(s.test[0])] for s in got]
    assert repr(got[0]) == (
        "Split(fold=0, train=1993-01-29 UTC..1994-01-28 UTC (254 rows), test=1994-02-03 UTC..1994-05-03 UTC (61 rows))"
    )


def test_spy_purged_kfold_with_time_embargo(spy: pl.DataFrame) -> None:
    got = purged_kfold(spy, n_splits=5, label_end="20d", embargo="10d")
    ts = spy["ts"].to_numpy()
    for s in got[:-1]:
        after = s.train[s.train > s.test[-1]]
        # The first training row after the fold is past the last test label (20 days) plus the embargo.
        assert ts[after[0]] - ts[s.test[-1]] > np.timedelta64(30, "D")
        assert ts[after[0] - 1] - ts[s.test[-1]] <= np.timedelta64(30, "D")
    for s in got[1:]:
        before = s.train[s.train < s.test[0]]
        assert ts[before[-1]] + np.timedelta64(20, "D") < ts[s.test[0]]


# ---------------------------------------------------------------------------------------------
# Split, frames, plots


def test_split_validates_and_is_read_only() -> None:
    split = Split([0, 1], [2], fold=0, n=3)
    assert split.train.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        split.train[0] = 5
    with pytest.raises(DataError, match=r"Split.train must be strictly increasing row indices in \[0, 3\)"):
        Split([1, 0], [2], fold=0, n=3)
    with pytest.raises(DataError, match=r"Split\.test must be strictly"):
        Split([0], [3], fold=0, n=3)
    with pytest.raises(DataError, match=r"rows \[1\] are in both train and test"):
        Split([0, 1], [1, 2], fold=0, n=3)
    with pytest.raises(DataError, match=r"Split.times has shape \(2,\) but n=3"):
        Split([0], [1], fold=0, n=3, times=np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"))


def test_take() -> None:
    frame = pl.DataFrame({"x": range(6)})
    split = purged_kfold(6, n_splits=3)[1]
    train, test = split.take(frame)
    assert train["x"].to_list() == [0, 1, 4, 5]
    assert test["x"].to_list() == [2, 3]
    assert split.take(np.arange(6) * 10)[1].tolist() == [20, 30]
    assert split.take(frame["x"])[0].to_list() == [0, 1, 4, 5]
    with pytest.raises(DataError, match="data has 5 rows but the split was made for n=6"):
        split.take(frame.head(5))


def test_repr_of_runs_and_times() -> None:
    assert (
        repr(Split([0, 2, 4, 6], [7], fold=3, n=8)) == "Split(fold=3, train=0..6 in 4 runs (4 rows), test=7 (1 rows))"
    )
    assert repr(Split([], [0], fold=0, n=1)) == "Split(fold=0, train=(0 rows), test=0 (1 rows))"
    times = np.array(["2024-01-01T00:00", "2024-01-01T12:00:01", "2024-01-02T00:00:00.5"], dtype="datetime64[ns]")
    split = Split([0, 1], [2], fold=0, n=3, times=times)
    assert repr(split) == (
        "Split(fold=0, train=2024-01-01..2024-01-01T12:00:01 (2 rows), test=2024-01-02T00:00:00.500000000 (1 rows))"
    )


def test_splits_frame_rows_and_time_zones() -> None:
    got = purged_kfold(9, n_splits=3, label_end=1, embargo=1)
    expected = pl.DataFrame(
        {
            "fold": [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2],
            "part": [
                "test",
                "dropped",
                "train",
                "train",
                "dropped",
                "test",
                "dropped",
                "train",
                "train",
                "dropped",
                "test",
            ],
            "start": [0, 3, 5, 0, 2, 3, 6, 8, 0, 5, 6],
            "end": [2, 4, 8, 1, 2, 5, 7, 8, 4, 5, 8],
            "rows": [3, 2, 4, 2, 1, 3, 2, 1, 5, 1, 3],
        }
    )
    assert_frame_equal(splits_frame(got), expected)
    assert splits_frame([]).columns == ["fold", "part", "start", "end", "rows"]
    assert splits_frame([Split([], [], fold=0, n=3)]).height == 0
    ts = days(0, 1, 2, 3, 4, zone="UTC").dt.convert_time_zone("America/New_York")
    frame = splits_frame(walk_forward(ts, train="2d", test="1d"))
    assert frame.schema["start"] == pl.Datetime("ns", "America/New_York")
    assert frame["start"].to_list() == ts.gather([0, 2, 1, 3, 2, 4]).to_list()
    naive = splits_frame(walk_forward(days(0, 1, 2, zone=None), train="2d", test="1d"))
    assert naive.schema["end"] == pl.Datetime("ns")
    mixed = [walk_forward(3, train=2, test=1)[0], walk_forward(days(0, 1, 2), train=2, test=1)[0]]
    with pytest.raises(ConfigError, match="some splits carry timestamps and others do not"):
        splits_frame(mixed)


def test_plot_splits_rows() -> None:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    fig = plot_splits(purged_kfold(9, n_splits=3, label_end=1, embargo=1))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.patches) == 11  # 3 + 5 + 3 runs
    colors = [tuple(p.get_facecolor()[:3]) for p in ax.patches[:3]]
    assert colors == [
        (1.0, 0.4980392156862745, 0.054901960784313725),
        (0.4980392156862745,) * 3,
        (0.12156862745098039, 0.4666666666666667, 0.7058823529411765),
    ]  # orange, grey, blue
    assert [p.get_x() for p in ax.patches[:3]] == [0, 3, 5]
    assert [p.get_width() for p in ax.patches[:3]] == [3, 2, 4]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fold 0", "fold 1", "fold 2"]
    own = Figure()
    axes: Axes = own.add_subplot()
    assert plot_splits(walk_forward(10, train=4, test=2, embargo=1), ax=axes) is own
    assert len(axes.patches) == 6


def test_plot_splits_time(spy: pl.DataFrame) -> None:
    got = walk_forward(spy, train="365d", test="90d", embargo="5d", step="365d")
    fig = plot_splits(got)
    assert len(fig.axes[0].patches) == 3 * len(got)
    assert fig.axes[0].get_xlabel() == "time (UTC)"
    last = fig.axes[0].patches[-1]
    assert last.get_width() > 0


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"train": 0, "test": 2}, ConfigError, r"train=0 must be positive"),
        ({"train": 3, "test": -1}, ConfigError, r"test=-1 must be positive"),
        ({"train": 3, "test": 2, "step": 0}, ConfigError, r"step=0 must be positive"),
        ({"train": 3, "test": 2, "embargo": -1}, ConfigError, r"embargo=-1 is negative; give 0"),
        (
            {"train": 3, "test": 20},
            ConfigError,
            r"no test window fits: train=3, test=20, embargo=0 need min_train \+ embargo \+ test = 23 rows but the "
            r"data spans 10 rows; shorten the windows, or pass keep_partial=True",
        ),
        ({"train": 9, "test": 2, "embargo": 1, "keep_partial": True}, ConfigError, r"embargo = 10 rows but the data"),
        ({"train": "3d", "test": "1d"}, ConfigError, r"durations need timestamps, but n_or_ts is a row count \(10\)"),
        ({"train": 3, "test": 2.5}, ConfigError, r"test=2.5 is neither a number of rows \(int\) nor a duration"),
        ({"train": "3mo", "test": 2}, ConfigError, r"calendar unit 'mo'"),
        ({"train": 3, "test": 2, "expanding": True, "min_train": 2}, ConfigError, r"min_train=2 does not apply"),
        ({"train": 3, "test": 2, "min_train": 4}, ConfigError, r"min_train=4 is longer than train=3"),
        ({"train": 3, "test": 2, "label_end": 9}, ConfigError, r"no test window has training rows"),
        ({"train": 3, "test": 2, "label_end": -1}, ConfigError, r"label_end=-1 is a negative horizon"),
        ({"train": 3, "test": 2, "label_end": "1d"}, ConfigError, r"label_end='1d' is a duration but n_or_ts is a row"),
        ({"train": 3, "test": 2, "label_end": days(*range(10))}, ConfigError, r"label_end holds times but n_or_ts"),
        (
            {"train": 3, "test": 2, "label_end": np.ones(10)},
            ConfigError,
            r"label_end is a ndarray of float64; give per-row",
        ),
        ({"train": 3, "test": 2, "label_end": [1] * 10}, DataError, r"label_end at row 2 is row 1, outside \[2, 9\]"),
        ({"train": 3, "test": 2, "label_end": r(1, 11)}, DataError, r"label_end at row 9 is row 10, outside \[9, 9\]"),
        ({"train": 3, "test": 2, "label_end": [9] * 3}, DataError, r"label_end has shape \(3,\) but there are 10 obs"),
        ({"train": 3, "test": 2, "label_end": pl.Series([9] * 9 + [None])}, DataError, r"label_end has 1 nulls"),
    ],
)
def test_walk_forward_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        walk_forward(10, **kwargs)


def test_time_errors() -> None:
    ts = days(*range(10))
    with pytest.raises(ConfigError, match=r"train, test given as durations but embargo as rows; give all lengths in"):
        walk_forward(ts, train="3d", test="1d", embargo=2)
    with pytest.raises(ConfigError, match=r"no test window fits: .* = 400 days, 0:00:00 but the data spans 10 days, "):
        walk_forward(ts, train="300d", test="100d")
    with pytest.raises(ConfigError, match=r"train='3 days' is not a duration"):
        walk_forward(ts, train="3 days", test="1d")
    with pytest.raises(ConfigError, match=r"embargo=datetime\.timedelta\(days=-1\) is negative"):
        walk_forward(ts, train="3d", test="1d", embargo=dt.timedelta(days=-1))
    with pytest.raises(ConfigError, match=r"test=np\.timedelta64\('NaT'\) is not a time \(NaT\)"):
        walk_forward(ts, train="3d", test=np.timedelta64("NaT"))
    with pytest.raises(
        DataError,
        match=r"label_end at row 3 \(2024-01-03T00:00:00.000000000\) is before the row's "
        r"own time \(2024-01-04T00:00:00.000000000\)",
    ):
        purged_kfold(ts, label_end=days(0, 1, 2, 2, 4, 5, 6, 7, 8, 9))


@pytest.mark.parametrize(
    ("n_or_ts", "error", "match"),
    [
        (0, ConfigError, r"n_or_ts=0 must be a positive number of rows"),
        (True, ConfigError, r"n_or_ts is a bool; give a number of rows, a Datetime or Date Series, a frame"),
        (pl.Series("ts", [], dtype=pl.Datetime("ns")), DataError, "n_or_ts holds no timestamps"),
        (pl.Series([3, 1]), ConfigError, r"n_or_ts has dtype Int64; give a number of rows, a Datetime"),
        (
            days(0, 2, 1),
            DataError,
            r"timestamps are not sorted: row 2 \(2024-01-02T00:00:00.000000000\) comes before "
            r"row 1 \(2024-01-03.*\); sort the frame by time first",
        ),
        (days(0, 1).extend_constant(None, 1), DataError, r"n_or_ts has 1 null timestamps \(first at row 2\)"),
        (np.array(["2024-01-01", "NaT"], dtype="datetime64[s]"), DataError, r"n_or_ts has 1 NaT timestamps"),
        (np.zeros((2, 2), dtype="datetime64[s]"), DataError, r"n_or_ts has shape \(2, 2\); give a 1-D array"),
        (pl.DataFrame({"time": days(0, 1)}), ConfigError, r"the frame has no 'ts' column \(columns: \['time'\]\)"),
    ],
)
def test_input_errors(n_or_ts: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        purged_kfold(n_or_ts, n_splits=2)


@pytest.mark.parametrize("n_splits", [1, 11, 2.0, True])
def test_n_splits_errors(n_splits: object) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"n_splits={n_splits!r} must be an int from 2 to the number of "
        r"observations \(10\)",
    ):
        purged_kfold(10, n_splits=n_splits)  # type: ignore[arg-type]
