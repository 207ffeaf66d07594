"""Model datasets: no look-ahead, no leakage of scaling statistics, labels, windows, purging, errors.

Labels are checked against plain-Python loops that restate their definitions, on hand cases
and on the real SPY daily closes; windows against slicing by hand; the scaler against mean and
standard deviation computed by hand on exactly the rows of the training windows.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import ntlab.datasets
from ntlab.backtest.splits import Split, purged_kfold, walk_forward
from ntlab.exceptions import ConfigError, DataError, ModelError, SchemaError
from ntlab.features import feature
from ntlab.models.datasets import (
    Labels,
    Prepared,
    Scaler,
    WindowDataset,
    direction,
    forward_return,
    prepare,
    triple_barrier,
)

PROPERTY = settings(deadline=None, max_examples=40, derandomize=True)
NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# Helpers and plain-Python references


def market(rng: np.random.Generator, n: int, n_features: int, warm_up: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random features (NaN for the first ``warm_up`` rows) and a positive random-walk close."""
    x = rng.normal(size=(n, n_features)) * rng.uniform(0.5, 5, n_features) + rng.normal(0, 3, n_features)
    x[:warm_up] = np.nan
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    return x, close


def frame_of(x: np.ndarray, close: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({f"f{j}": x[:, j] for j in range(x.shape[1])} | {"close": close})


def names_of(x: np.ndarray) -> list[str]:
    return [f"f{j}" for j in range(x.shape[1])]


def labels_of(kind: str, close: np.ndarray, horizon: int) -> Labels:
    if kind == "forward":
        return forward_return(close, horizon, log=True)
    if kind == "direction":
        return direction(close, horizon, dead_zone=0.01)
    return triple_barrier(close, horizon, upper=0.02, lower=0.03)


def forward_reference(close: list[float], h: int, log: bool = False) -> list[float]:
    out = []
    for t in range(len(close)):
        if t + h >= len(close) or close[t] == 0 or math.isnan(close[t]) or math.isnan(close[t + h]):
            out.append(NAN)
        elif log:
            out.append(math.log(close[t + h] / close[t]) if close[t + h] / close[t] > 0 else NAN)
        else:
            out.append(close[t + h] / close[t] - 1)
    return out


def direction_reference(close: list[float], h: int, dead_zone: float) -> list[float]:
    out = []
    for r in forward_reference(close, h):
        if math.isnan(r):
            out.append(NAN)
        else:
            out.append(1.0 if r > dead_zone else -1.0 if r < -dead_zone else 0.0)
    return out


def barrier_reference(
    close: list[float], h: int, upper: float, lower: float, vol: list[float] | None = None
) -> tuple[list[float], list[int]]:
    n, labels, ends = len(close), [], []
    for t in range(n):
        s = 1.0 if vol is None else vol[t]
        label, end = NAN, min(t + h, n - 1)
        if not (math.isnan(close[t]) or math.isnan(s)):
            for j in range(t + 1, min(t + h, n - 1) + 1):
                if close[j] >= close[t] * (1 + upper * s):
                    label, end = 1.0, j
                    break
                if close[j] <= close[t] * (1 - lower * s):
                    label, end = -1.0, j
                    break
            else:
                if t + h < n and not math.isnan(close[t + h]):
                    r = close[t + h] - close[t]
                    label = 1.0 if r > 0 else -1.0 if r < 0 else 0.0
        labels.append(label)
        ends.append(end)
    return labels, ends


def window_rows(rows: np.ndarray, lookback: int) -> list[int]:
    """The rows of all windows of ``rows``, by a loop."""
    return sorted({r for t in rows.tolist() for r in range(t - lookback + 1, t + 1)})


def samples(dataset: WindowDataset) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    return {int(t): dataset[i] for i, t in enumerate(dataset.rows)}


def same_sample(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def scaler_by_hand(x: np.ndarray, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    fitted = x[rows]
    std = fitted.std(axis=0)
    return fitted.mean(axis=0), np.where((fitted == fitted[0]).all(axis=0), 1.0, std)


@pytest.fixture(scope="module")
def spy_close() -> pl.Series:
    spy = ntlab.datasets.load("spy_daily")
    # spy_daily is a wide price table (ts, SPY), not OHLCV bars: the closes are the SPY column.
    assert spy.columns == ["ts", "SPY"]
    assert spy.height > 6000
    assert spy["SPY"].null_count() == 0
    return spy["SPY"]


# ---------------------------------------------------------------------------------------------
# No look-ahead


@PROPERTY
@given(data=st.data())
def test_no_look_ahead(data: st.DataObject) -> None:
    """Changing every feature and price after row ``cut`` changes no label known by ``cut``, no
    window of a row <= ``cut``, no training sample whose label ends by ``cut``, nor the scaler."""
    lookback, horizon, warm_up = (data.draw(st.integers(1, 6), label=name) for name in ("lookback", "horizon", "warm"))
    n = data.draw(st.integers(40, 90), label="n")
    cut = data.draw(st.integers(warm_up + lookback + horizon + 2, n - horizon - 3), label="cut")
    kind = data.draw(st.sampled_from(["forward", "direction", "triple"]), label="kind")
    purge, flat = data.draw(st.booleans(), label="purge"), data.draw(st.booleans(), label="flat")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x, close = market(rng, n, data.draw(st.integers(1, 3), label="features"), warm_up)
    x_after, close_after = x.copy(), close.copy()
    x_after[cut + 1 :] = rng.normal(0, 100, x[cut + 1 :].shape)
    close_after[cut + 1 :] = close[cut] * np.exp(rng.normal(0, 0.05, n - cut - 1))

    before, after = labels_of(kind, close, horizon), labels_of(kind, close_after, horizon)
    known = before.end <= cut
    np.testing.assert_array_equal(after.end <= cut, known)
    np.testing.assert_array_equal(after.value[known], before.value[known])
    np.testing.assert_array_equal(after.end[known], before.end[known])

    windows = [WindowDataset(data_x, np.zeros(n), lookback=lookback, flat=flat) for data_x in (x, x_after)]
    early = [{t: s for t, s in samples(d).items() if t <= cut} for d in windows]
    assert early[0].keys() == early[1].keys()
    assert all(same_sample(early[0][t], early[1][t]) for t in early[0])

    split = walk_forward(n, train=cut + 1, test=n - cut - 1)[0]
    options = {"lookback": lookback, "flat": flat}
    prepared = [
        prepare(frame_of(xs, cs), names_of(x), labels.value, split, label_end=labels.end if purge else None, **options)
        for xs, cs, labels in ((x, close, before), (x_after, close_after, after))
    ]
    assert prepared[0].scaler.state_dict() == prepared[1].scaler.state_dict()
    trained = [{t: s for t, s in samples(p.train).items() if known[t]} for p in prepared]
    assert trained[0].keys() == trained[1].keys()
    assert trained[0]
    assert all(same_sample(trained[0][t], trained[1][t]) for t in trained[0])
    if purge:  # every training label ends before the test period, so nothing at all changed
        assert np.array_equal(prepared[0].train.rows, prepared[1].train.rows)
        assert known[prepared[0].train.rows].all()


def test_window_ends_at_its_own_row() -> None:
    n, lookback = 30, 4
    x = np.arange(n)[:, None] + np.array([0.0, 0.25, 0.5])  # row t holds t, t + 0.25, t + 0.5
    dataset = WindowDataset(x, np.ones(n), lookback=lookback)
    assert dataset.rows.tolist() == list(range(lookback - 1, n))
    for i, t in enumerate(dataset.rows):
        window, _ = dataset[i]
        assert window[-1].tolist() == x[t].tolist()
        assert window[:, 0].tolist() == list(range(t - lookback + 1, t + 1))

    close = 100 + np.arange(n, dtype=float)
    split = walk_forward(n, train=20, test=8)[0]
    prepared = prepare(frame_of(x, close), names_of(x), forward_return(close, 2), split, lookback=lookback)
    scaled = prepared.scaler.transform(x)
    for i, t in enumerate(prepared.train.rows):
        window, label = prepared.train[i]
        np.testing.assert_array_equal(window.numpy(), scaled[t - lookback + 1 : t + 1])
        assert label.item() == np.float32(close[t + 2] / close[t] - 1)


# ---------------------------------------------------------------------------------------------
# No leakage of scaling statistics


@PROPERTY
@given(data=st.data())
def test_scaler_sees_no_test_rows(data: st.DataObject) -> None:
    """The scaler is the mean/std of exactly the training-window rows; test rows never move it."""
    n = data.draw(st.integers(40, 90), label="n")
    lookback, horizon = data.draw(st.integers(1, 5), label="lookback"), data.draw(st.integers(1, 4), label="horizon")
    kfold = data.draw(st.booleans(), label="kfold")
    labels = forward_return(np.exp(np.linspace(0, 1, n)), horizon)
    if kfold:
        splits = purged_kfold(n, n_splits=data.draw(st.integers(2, 4), label="k"), label_end=labels.end)
        split = splits[data.draw(st.integers(0, len(splits) - 1), label="fold")]
    else:
        embargo = data.draw(st.integers(0, 3), label="embargo")
        split = walk_forward(n, train=n // 2, test=n // 4, embargo=embargo)[0]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x, close = market(rng, n, 2)
    x[:, 1] = 7.0  # a constant feature gets std 1
    changed = x.copy()
    changed[split.test] = rng.normal(0, 1e3, changed[split.test].shape)
    fitted = [prepare(frame_of(xs, close), ["f0", "f1"], labels, split, lookback=lookback) for xs in (x, changed)]
    assert fitted[0].scaler.state_dict() == fitted[1].scaler.state_dict()
    rows = window_rows(fitted[0].train.rows, lookback)
    test_span = set(range(split.test[0], int(labels.end[split.test].max()) + 1))
    assert not test_span.intersection(rows)
    mean, std = scaler_by_hand(x, rows)
    np.testing.assert_allclose(fitted[0].scaler.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(fitted[0].scaler.std, std, rtol=1e-13)
    assert fitted[0].scaler.std[1] == 1.0


def test_scaler_fit_transform_and_state() -> None:
    x = np.array([[1.0, 5.0, -2.0], [3.0, 5.0, 0.0], [5.0, 5.0, 2.0], [100.0, 0.0, 1e9]])
    scaler = Scaler.fit(x, [0, 1, 2], names=["a", "b", "c"])
    assert scaler.mean.tolist() == [3.0, 5.0, 0.0]
    assert scaler.std.tolist() == [math.sqrt(8 / 3), 1.0, math.sqrt(8 / 3)]  # ddof=0; constant "b" -> 1
    out = scaler.transform(x)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out[:3], [[-1.2247449, 0, -1.2247449], [0, 0, 0], [1.2247449, 0, 1.2247449]], rtol=1e-6)
    np.testing.assert_array_equal(scaler.transform(x[None, :2]), out[None, :2])  # any leading shape
    state = json.loads(json.dumps(scaler.state_dict()))
    assert state == {"mean": [3.0, 5.0, 0.0], "std": scaler.std.tolist(), "names": ["a", "b", "c"]}
    again = Scaler.from_state_dict(state)
    np.testing.assert_array_equal(again.transform(x), out)
    assert again.names == ("a", "b", "c")
    with pytest.raises(ValueError, match="read-only"):
        scaler.mean[0] = 1.0
    assert Scaler.fit(x[:3]).names == ("0", "1", "2")


def test_scaler_errors() -> None:
    x = np.array([[1.0, 2.0], [NAN, 3.0], [2.0, np.inf]])
    with pytest.raises(DataError, match=r"feature 'a' is nan at row 1"):
        Scaler.fit(x, [0, 1, 2], names=["a", "b"])
    with pytest.raises(DataError, match=r"feature 'b' is inf at row 2"):
        Scaler.fit(x, [0, 2], names=["a", "b"])
    assert Scaler.fit(x, [0], names=["a", "b"]).mean.tolist() == [1.0, 2.0]
    with pytest.raises(DataError, match=r"2-D \(rows, features\)"):
        Scaler.fit(x[:, 0])
    with pytest.raises(DataError, match="at least one row"):
        Scaler.fit(x, [])
    with pytest.raises(DataError, match="at least one row"):
        Scaler.fit(x, [3])
    scaler = Scaler.fit(x[:1])
    with pytest.raises(DataError, match=r"fitted on 2 features \['0', '1'\] but x has shape \(3, 3\)"):
        scaler.transform(np.zeros((3, 3)))
    with pytest.raises(DataError, match="fitted on 2 features"):
        scaler.transform(np.float64(1.0))
    with pytest.raises(ModelError, match=r"lacks \['std'\]"):
        Scaler.from_state_dict({"mean": [0.0], "names": ["a"]})
    with pytest.raises(ModelError, match="one mean, std and name per feature"):
        Scaler.from_state_dict({"mean": [0.0, 1.0], "std": [1.0], "names": ["a"]})


# ---------------------------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize("log", [False, True])
def test_forward_return_reference(spy_close: pl.Series, log: bool) -> None:
    close = spy_close.to_list()
    for h in (1, 5, 21):
        labels = forward_return(spy_close, h, log=log)
        assert labels.value.dtype == np.float64
        assert labels.end.dtype == np.int64
        np.testing.assert_allclose(labels.value, forward_reference(close, h, log), rtol=1e-13, atol=0)
        assert labels.end.tolist() == [min(t + h, len(close) - 1) for t in range(len(close))]
        assert np.isnan(labels.value[-h:]).all()
        assert not np.isnan(labels.value[:-h]).any()


def test_forward_return_undefined_is_nan() -> None:
    close = [1.0, 0.0, 2.0, NAN, 4.0, -1.0]
    np.testing.assert_array_equal(forward_return(close, 1).value, forward_reference(close, 1))
    np.testing.assert_array_equal(forward_return(close, 1, log=True).value, forward_reference(close, 1, log=True))
    everything = forward_return(np.array([1, 2, 3]), 5)  # ints are fine; a horizon past the data: all NaN
    assert np.isnan(everything.value).all()
    assert everything.end.tolist() == [2, 2, 2]


def test_direction_reference(spy_close: pl.Series) -> None:
    close = spy_close.to_list()
    for h, zone in ((1, 0.0), (5, 0.01), (10, 0.02)):
        labels = direction(spy_close, h, dead_zone=zone)
        np.testing.assert_array_equal(labels.value, direction_reference(close, h, zone))
        assert labels.end.tolist() == forward_return(spy_close, h).end.tolist()
        assert set(np.unique(labels.value[:-h]).tolist()) == {-1.0, 0.0, 1.0}
    # the dead zone's bounds belong to it: +25% and -25% with dead_zone=0.25 are 0
    zoned = direction([4.0, 5.0, 3.75, 5.0, 2.0, NAN], 1, dead_zone=0.25).value
    assert zoned.tolist()[:4] == [0.0, 0.0, 1.0, -1.0]
    assert np.isnan(zoned[4:]).all()
    assert np.isnan(direction([4.0, 5.0, NAN, 5.0], 1).value).tolist() == [False, True, True, True]


def test_triple_barrier_reference(spy_close: pl.Series) -> None:
    frame = spy_close.to_frame("close").with_columns(
        vol=feature("rolling_std", feature("returns", "close"), window=20).fill_nan(None).fill_null(float("nan"))
    )
    close, vol = frame["close"].to_list(), frame["vol"].to_list()
    for h, upper, lower, volatility in ((10, 2.0, 2.0, frame["vol"]), (5, 0.02, 0.01, None)):
        labels = triple_barrier(frame["close"], h, upper, lower, volatility)
        reference = barrier_reference(close, h, upper, lower, vol if volatility is not None else None)
        np.testing.assert_array_equal(labels.value, reference[0])
        assert labels.end.tolist() == reference[1]
        known = ~np.isnan(labels.value)
        steps = labels.end - np.arange(len(close))
        assert (steps[known] >= 1).all()
        assert (steps[known] <= h).all()
        assert {-1.0, 1.0} <= set(labels.value[known].tolist())
        touched = steps[known] < h  # some labels come from the horizontal barriers, before t + h
        assert touched.any()
        assert not touched.all()
    assert np.isnan(labels.value[-1])


@pytest.mark.parametrize(
    ("close", "expected", "end"),
    [
        ([100, 101, 102.5, 97], 1.0, 2),  # upper (102) met first, at row 2
        ([100, 99, 97.9, 103], -1.0, 2),  # lower (98) met first
        ([100, 101, 99, 100.5], 1.0, 3),  # neither: the sign of the return at t + h
        ([100, 101, 99, 99.5], -1.0, 3),
        ([100, 101.5, 98.5, 100], 0.0, 3),  # neither, unchanged price at t + h: 0
        ([100, 150, 50, 100], 1.0, 1),  # a barrier is met with equality (0.5 wide here)
        ([100, NAN, 97, 103], -1.0, 2),  # NaN prices touch nothing
        ([100, 101, NAN, NAN], NAN, 3),  # no touch and NaN at t + h: unknown
    ],
)
def test_triple_barrier_hand_cases(close: list[float], expected: float, end: int) -> None:
    wide = 0.5 if close[1] == 150 else 0.02
    labels = triple_barrier(np.array(close), 3, upper=wide, lower=wide)
    np.testing.assert_array_equal(labels.value[0], expected)
    assert labels.end[0] == end
    assert labels.value.tolist()[1:] == pytest.approx(barrier_reference(close, 3, wide, wide)[0][1:], nan_ok=True)


def test_triple_barrier_volatility_ends_and_removed_barriers() -> None:
    close = np.array([100.0, 101.0, 103.5, 95.0, 96.0, 96.5])
    vol = np.array([0.01, 0.01, NAN, 0.0, 0.01, 0.01])
    labels = triple_barrier(close, 4, upper=3.0, lower=3.0, volatility=vol)  # barriers at +-3%
    # row 0: 103.5 >= 103 at row 2; row 1: 95 <= 97.97 at row 3; row 2: NaN volatility;
    # row 3: zero width, 96 >= 95 at once; rows 4, 5: the data ends before t + 4 without a touch
    assert labels.value.tolist()[:2] == [1.0, -1.0]
    assert labels.end.tolist() == [2, 3, 5, 4, 5, 5]
    assert np.isnan(labels.value[2])
    assert labels.value[3] == 1.0
    assert np.isnan(labels.value[4:]).all()
    # near the end, a barrier met before the data ends still labels the row
    assert triple_barrier([100.0, 90.0], 5, 0.05, 0.05).value.tolist()[0] == -1.0
    # numpy.inf removes a barrier: only the lower one or the vertical one is left
    no_upper = triple_barrier(close, 2, upper=np.inf, lower=0.05)
    assert no_upper.value.tolist()[:2] == [1.0, -1.0]
    assert no_upper.end.tolist()[:2] == [2, 3]
    assert np.isnan(triple_barrier([NAN, 1.0, 2.0], 1, 0.1, 0.1).value[0])


# ---------------------------------------------------------------------------------------------
# Windows


@pytest.mark.parametrize("flat", [False, True])
def test_windows_by_hand(flat: bool) -> None:
    rng = np.random.default_rng(3)
    n, lookback, n_features = 16, 3, 2
    x = rng.normal(size=(n, n_features))
    x[5, 1] = NAN  # windows holding row 5 (rows 5..7) are incomplete
    label = rng.normal(size=n)
    label[[9, 15]] = NAN
    dataset = WindowDataset(x, label, rows=[14, 1, 3, 6, 9, 10, 12, 15, 10], lookback=lookback, flat=flat)
    assert dataset.rows.tolist() == [3, 10, 12, 14]  # 1: no full window, 6: NaN in it, 9 and 15: no label
    assert len(dataset) == 4
    assert dataset.n_features == n_features
    assert dataset.values.dtype == np.float32
    shape = (lookback * n_features,) if flat else (lookback, n_features)
    assert repr(dataset) == f"WindowDataset(4 samples, window {shape})"
    for i, t in enumerate(dataset.rows):
        window, value = dataset[i]
        assert window.dtype == torch.float32
        assert tuple(window.shape) == shape
        by_hand = x[t - lookback + 1 : t + 1].astype(np.float32)
        np.testing.assert_array_equal(window.numpy(), by_hand.reshape(-1) if flat else by_hand)
        assert value.dtype == torch.float32
        assert value.shape == ()
        assert value.item() == np.float32(label[t])
        assert np.shares_memory(window.numpy(), dataset.values)  # a view, not a copy
    assert torch.equal(dataset[-1][0], dataset[3][0])

    batches = list(DataLoader(dataset, batch_size=3))
    assert [tuple(b[0].shape) for b in batches] == [(3, *shape), (1, *shape)]
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), label[dataset.rows].astype(np.float32))
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), np.stack([w.numpy() for w, _ in dataset]))


def test_windows_pickle_without_the_view() -> None:
    x = np.random.default_rng(4).normal(size=(500, 4))
    dataset = WindowDataset(x, np.arange(500.0), rows=range(100, 400), lookback=50, flat=True)
    data = pickle.dumps(dataset)
    assert len(data) < 2 * x.size * 4  # about the float32 array, not 50 copies of it
    again = pickle.loads(data)
    assert np.array_equal(again.rows, dataset.rows)
    assert all(same_sample(again[i], dataset[i]) for i in range(len(dataset)))
    assert np.shares_memory(again[0][0].numpy(), again.values)


def test_windows_share_the_given_array_and_take_labels() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    labels = forward_return(np.arange(1.0, 11.0), 2)
    dataset = WindowDataset(x, labels, lookback=1)
    assert dataset.values is x
    assert dataset.rows.tolist() == list(range(8))
    assert tuple(dataset[0][0].shape) == (1, 2)
    assert len(WindowDataset(x, labels, lookback=11)) == 0  # longer than the data: no sample
    assert len(WindowDataset(x, labels, rows=[], lookback=2)) == 0


# ---------------------------------------------------------------------------------------------
# Preparation and purging


def test_prepare_walk_forward_purges_labels_reaching_the_test() -> None:
    rng = np.random.default_rng(5)
    n, lookback = 60, 3
    x, close = market(rng, n, 2)
    frame, labels = frame_of(x, close), forward_return(close, 5)
    split = walk_forward(n, train=20, test=10, embargo=2)[0]
    assert (split.train.tolist(), split.test.tolist()) == (list(range(20)), list(range(22, 32)))

    unpurged = prepare(frame, ["f0", "f1"], labels.value, split, lookback=lookback)  # no label_end: nothing to purge
    assert unpurged.train.rows.tolist() == list(range(2, 20))
    assert unpurged.test.rows.tolist() == list(range(22, 32))

    prepared = prepare(frame, ["f0", "f1"], labels, split, lookback=lookback, flat=True)  # ends from the Labels
    assert isinstance(prepared, Prepared)
    assert prepared.train.rows.tolist() == list(range(2, 17))  # t + 5 >= 22 from t = 17 on
    assert (prepared.features, prepared.lookback, prepared.train.flat) == (("f0", "f1"), 3, True)
    mean, std = scaler_by_hand(x, list(range(17)))  # training windows: from row 2 - 3 + 1 = 0 to 16
    np.testing.assert_allclose(prepared.scaler.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(prepared.scaler.std, std, rtol=1e-13)
    assert prepared.train.values is prepared.test.values  # one array for both

    explicit = prepare(frame, ["f0", "f1"], labels.value, split, lookback=lookback, label_end=labels.end.tolist())
    assert explicit.train.rows.tolist() == prepared.train.rows.tolist()
    # the same purge when the split itself is made with the label ends
    purged_split = walk_forward(n, train=20, test=10, embargo=2, label_end=5)[0]
    assert purged_split.train.tolist() == list(range(17))
    again = prepare(frame, ["f0", "f1"], labels.value, purged_split, lookback=3)
    assert again.train.rows.tolist() == list(range(2, 17))


def test_prepare_purged_kfold_purges_windows_after_the_test() -> None:
    rng = np.random.default_rng(6)
    n, lookback = 30, 4
    x, close = market(rng, n, 1)
    frame = frame_of(x, close)
    split = purged_kfold(n, n_splits=3)[1]
    assert split.test.tolist() == list(range(10, 20))

    plain = prepare(frame, ["f0"], rng.normal(size=n), split, lookback=lookback)
    # rows 20..22 have windows reaching back into the test fold (t - 3 <= 19)
    assert plain.train.rows.tolist() == [*range(3, 10), *range(23, 30)]
    assert window_rows(plain.train.rows, lookback) == [*range(10), *range(20, 30)]

    labelled = prepare(frame, ["f0"], forward_return(close, 2), split, lookback=lookback)
    # test period 10..21 (its labels end by 21): purge t + 2 >= 10 and t - 3 <= 21; 28, 29 have no label
    assert labelled.train.rows.tolist() == [*range(3, 8), *range(25, 28)]
    fitted = window_rows(labelled.train.rows, lookback)
    assert fitted == [*range(8), *range(22, 28)]
    np.testing.assert_allclose(labelled.scaler.mean, x[fitted].mean(axis=0), rtol=1e-13)


def test_prepare_data_hash() -> None:
    x, close = market(np.random.default_rng(7), 40, 2)
    split = walk_forward(40, train=20, test=10)[0]
    label = forward_return(close, 1).value

    def hashed(frame: pl.DataFrame, features: list[str], values: np.ndarray) -> str:
        return prepare(frame, features, values, split, lookback=2).data_hash

    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    digest.update(label.tobytes())
    digest.update(json.dumps(["f0", "f1"]).encode())
    frame = frame_of(x, close)
    assert hashed(frame, ["f0", "f1"], label) == digest.hexdigest()
    rounded = frame.with_columns(pl.col("f0").cast(pl.Float32).cast(pl.Float64))
    assert hashed(rounded, ["f0", "f1"], label) != digest.hexdigest()
    assert hashed(frame, ["f0", "f1"], np.where(np.arange(40) == 3, 0.5, label)) != digest.hexdigest()
    assert hashed(frame.rename({"f1": "g"}), ["f0", "g"], label) != digest.hexdigest()
    ints = pl.DataFrame({"a": np.arange(40), "b": np.arange(40) % 3})
    assert len(hashed(ints, ["a", "b"], label)) == 64  # integer features are fine (cast to float64)
    assert prepare(frame, "f0", label, split, lookback=2).features == ("f0",)


# ---------------------------------------------------------------------------------------------
# Errors


def test_parameter_errors() -> None:
    close = np.linspace(1, 2, 10)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match=f"horizon={bad!r} must be a positive int"):
            forward_return(close, bad)
    with pytest.raises(ConfigError, match="lookback=0 must be a positive int"):
        WindowDataset(np.zeros((4, 1)), np.zeros(4), lookback=0)
    for zone in (-0.1, NAN):
        with pytest.raises(ConfigError, match="dead_zone=.* must be a finite return >= 0"):
            direction(close, 1, dead_zone=zone)
    for upper, lower in ((0.0, 0.1), (0.1, -1.0), (NAN, 0.1)):
        with pytest.raises(ConfigError, match="must be a positive barrier width; numpy.inf removes"):
            triple_barrier(close, 2, upper, lower)
    with pytest.raises(ConfigError, match="horizon=0"):
        triple_barrier(close, 0, 0.1, 0.1)


def test_price_errors() -> None:
    with pytest.raises(DataError, match=r"close 'c' holds 1 null\(s\), the first at row 1"):
        forward_return(pl.Series("c", [1.0, None, 2.0]), 1)
    with pytest.raises(DataError, match="close must be numeric, got 'c' of dtype String"):
        direction(pl.Series("c", ["a", "b"]), 1)
    with pytest.raises(DataError, match=r"1-D numeric array or Series, got shape \(2, 2\)"):
        forward_return(np.ones((2, 2)), 1)
    with pytest.raises(DataError, match="volatility has 2 rows but close has 3"):
        triple_barrier([1.0, 2.0, 3.0], 1, 0.1, 0.1, volatility=[0.1, 0.1])
    with pytest.raises(DataError, match=r"volatility is negative at row 1 \(-0.5\)"):
        triple_barrier([1.0, 2.0, 3.0], 1, 0.1, 0.1, volatility=pl.Series([0.1, -0.5, 0.1]))
    with pytest.raises(DataError, match="features must be a 2-D"):
        WindowDataset(np.zeros(4), np.zeros(4), lookback=1)
    with pytest.raises(DataError, match=r"rows must lie in \[0, 4\), got 2..4"):
        WindowDataset(np.zeros((4, 1)), np.zeros(4), rows=[2, 4], lookback=1)
    with pytest.raises(DataError, match="label has shape"):
        WindowDataset(np.zeros((4, 1)), np.array(["a"] * 4), lookback=1)


def test_prepare_errors() -> None:
    n = 30
    x, close = market(np.random.default_rng(8), n, 2)
    frame, label = frame_of(x, close), forward_return(close, 1)
    split = walk_forward(n, train=15, test=10)[0]

    def call(**changes: object) -> Prepared:
        arguments = {"frame": frame, "features": ["f0", "f1"], "label": label, "split": split, "lookback": 3} | changes
        return prepare(**arguments)

    text, at = frame.with_columns(pl.col("f1").cast(str)), pl.int_range(n)
    nulls = frame.with_columns(pl.when(at.is_in([4, 9])).then(None).otherwise("f1").alias("f1"))
    infinite = frame.with_columns(pl.when(at == 6).then(np.inf).otherwise("f0").alias("f0"))
    early = np.where(np.arange(n) == 4, 3, label.end)
    no_test_label = np.where(np.arange(n) < 15, 0.0, NAN)
    cases = [
        (ConfigError, "lookback=0 must be a positive int", {"lookback": 0}),
        (ConfigError, r"features=\[\]: give one or more distinct column names", {"features": []}),
        (ConfigError, "distinct", {"features": ["f0", "f0"]}),
        (SchemaError, r"feature columns \['x'\] are not in the frame", {"features": ["f0", "x"]}),
        (SchemaError, "feature 'f1' has dtype String, not numeric", {"frame": text}),
        (DataError, r"feature 'f1' holds 2 null\(s\), the first at row 4", {"frame": nulls}),
        (DataError, "feature 'f0' is inf at row 6", {"frame": infinite}),
        (DataError, r"label has shape \(29,\)", {"label": label.value[:-1]}),
        (DataError, r"label_end has shape \(29,\)", {"label_end": label.end[:-1]}),
        (DataError, "label_end has shape .* and dtype float64", {"label_end": label.end.astype(float)}),
        (DataError, "label_end at row 4 is row 3, before it", {"label_end": early}),
        (
            DataError,
            "split was made for n=31 rows but the frame has 30",
            {"split": walk_forward(31, train=15, test=9)[0]},
        ),
        (DataError, "no train sample left: of the split's 15 train rows, 0 .*lookback=16", {"lookback": 16}),
        (DataError, "no test sample left: of the split's 10 test rows, 0 have", {"label": no_test_label}),
        (
            DataError,
            "no train sample left: .* 13 have .* purged",
            {"label_end": np.full(n, n - 1), "label": np.zeros(n)},
        ),
        (DataError, "no test sample left: of the split's 0 test rows", {"split": Split(np.arange(10), [], 0, n)}),
    ]
    for error, message, changes in cases:
        with pytest.raises(error, match=message):
            call(**changes)
