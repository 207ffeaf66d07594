"""From Polars features to PyTorch datasets of windows and labels, without look-ahead or leakage.

Labels are functions of a price column: :func:`forward_return`, :func:`direction` and
:func:`triple_barrier` each return :class:`Labels`, the label of every row (NaN where it is not
known) and the row at which it becomes known (``end``, for purging). :class:`Scaler`
standardises features with statistics of chosen rows only, :class:`WindowDataset` serves
``(window, label)`` samples as zero-copy views of one float32 array, and :func:`prepare` does all
of it for one :class:`~ntlab.backtest.splits.Split`.

Conventions
-----------
Rows ``0 .. T-1`` of a frame are in time order. A sample is made at its label row ``t``: its
window is the feature rows ``t - lookback + 1 .. t`` (inclusive, so the window ends at the
sample's own row and never looks ahead), its label is ``label[t]``, known at row
``label_end[t] >= t``. A window is complete when it lies inside the data and holds only finite
values (indicator warm-up, being NaN, leaves its rows without a sample); a label is known when
it is finite.

The information of a training sample spans the rows ``[t - lookback + 1, label_end[t]]`` and
the test period spans ``[first test row, max(label_end[test])]``; training samples whose span
meets the test period are purged (López de Prado 2018, 7.4.1, with the window added), and the
scaler is fitted on the rows of the remaining training windows only. Without ``label_end``
every label ends at its own row.

Labels are final: a label that is known (finite) never changes when later rows are appended
or revised, because it and its ``end`` depend on the prices of rows ``t .. end[t]`` only.

Example
-------
>>> import numpy as np
>>> import polars as pl
>>> from ntlab.backtest.splits import walk_forward
>>> from ntlab.features import feature
>>> close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 60)))
>>> frame = pl.DataFrame({"close": close}).with_columns(
...     ret=feature("returns", "close"), vol=feature("rolling_std", "close", window=5)
... )
>>> labels = forward_return(frame["close"], horizon=3)
>>> split = walk_forward(60, train=30, test=20)[0]
>>> data = prepare(frame, ["ret", "vol"], labels, split, lookback=5)
>>> len(data.train), len(data.test), tuple(data.train[0][0].shape)
(19, 20, (5, 2))
>>> data.train.rows[[0, -1]].tolist()  # rows 0..7 are warm-up, 27..29 purged (their labels end in the test)
[8, 26]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl
import torch
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import Dataset

from ntlab.backtest.splits import Split
from ntlab.exceptions import ConfigError, DataError, ModelError, SchemaError
from ntlab.features.compute import float_column

__all__ = ["Labels", "Prepared", "Scaler", "WindowDataset", "direction", "forward_return", "prepare", "triple_barrier"]

Prices = np.ndarray | pl.Series | Sequence[float]


class Labels(NamedTuple):
    """The labels of ``T`` rows and when each is known; unpacks as ``value, end = labels``.

    Attributes
    ----------
    value
        float64[T]: the label of each row, NaN where it is not known.
    end
        int64[T]: the row at which each label becomes known, ``t <= end[t] <= T - 1`` (clipped
        to the last row where the label is NaN because the data ends first).
    """

    value: np.ndarray
    end: np.ndarray


# ---------------------------------------------------------------------------------------------
# Labels


def forward_return(close: Prices, horizon: int, *, log: bool = False) -> Labels:
    """The return over the next ``horizon`` rows.

    ``value[t] = close[t + h] / close[t] - 1``, or ``log(close[t + h] / close[t])`` with ``log``;
    NaN for the last ``h`` rows and wherever the return is undefined (a NaN price,
    ``close[t] == 0``, a non-positive ratio for ``log``). ``end[t] = min(t + h, T - 1)``.

    Raises
    ------
    ConfigError
        If ``horizon`` is not a positive int.
    DataError
        If ``close`` is not a 1-D numeric column without nulls.
    """
    prices = _prices(close, "close")
    value = _forward(prices, _positive(horizon, "horizon"), log=log)
    return Labels(value, _horizon_end(prices.size, horizon))


def direction(close: Prices, horizon: int, dead_zone: float = 0.0) -> Labels:
    """The sign of the return over the next ``horizon`` rows, with a dead zone.

    With ``r[t] = close[t + h] / close[t] - 1`` (simple return): ``+1`` if ``r > dead_zone``,
    ``-1`` if ``r < -dead_zone`` and ``0`` if ``|r| <= dead_zone`` (the bounds belong to the
    dead zone; with ``dead_zone=0`` only an unchanged price gives 0). NaN where the return is
    NaN, the last ``h`` rows included; ``end[t] = min(t + h, T - 1)``.

    Raises
    ------
    ConfigError
        If ``horizon`` is not a positive int or ``dead_zone`` is negative or not finite.
    DataError
        If ``close`` is not a 1-D numeric column without nulls.
    """
    if not (np.isfinite(dead_zone) and dead_zone >= 0):
        msg = f"dead_zone={dead_zone!r} must be a finite return >= 0, e.g. 0.001 (0.1%)"
        raise ConfigError(msg)
    prices = _prices(close, "close")
    ret = _forward(prices, _positive(horizon, "horizon"), log=False)
    value = np.where(ret > dead_zone, 1.0, np.where(ret < -dead_zone, -1.0, 0.0))
    value[np.isnan(ret)] = np.nan
    return Labels(value, _horizon_end(prices.size, horizon))


def triple_barrier(close: Prices, horizon: int, upper: float, lower: float, volatility: Prices | None = None) -> Labels:
    """López de Prado's triple-barrier labels (2018, 3.4): which barrier the price meets first.

    For row ``t`` with ``s = volatility[t]`` (1 without ``volatility``), scan the rows
    ``j = t + 1 .. t + h``: the first ``j`` with ``close[j] >= close[t] * (1 + upper * s)`` gives
    ``+1``, with ``close[j] <= close[t] * (1 - lower * s)`` gives ``-1`` (the upper barrier is
    checked first, which matters only for a zero-width band, ``s = 0``), and ``end[t] = j``.
    When neither is met, the vertical barrier gives the sign of the return
    ``close[t + h] - close[t]`` (``0`` only for an unchanged price) and ``end[t] = t + h``.

    The label is NaN when ``close[t]`` or ``s`` is NaN, when no barrier is met and
    ``close[t + h]`` is NaN, and when no barrier is met before the data ends (``t + h > T - 1``);
    a barrier met before the data ends does give a label there. NaN prices never touch a
    barrier. ``end`` is ``min(t + h, T - 1)`` where the label is NaN. The scan is ``O(T * h)``.

    Parameters
    ----------
    close
        Prices, float64[T].
    horizon
        ``h``, the vertical barrier in rows.
    upper, lower
        Barrier widths in units of ``s`` (returns without ``volatility``), positive;
        ``numpy.inf`` removes that barrier.
    volatility
        ``s``, non-negative (NaN allowed, e.g. warm-up): a rolling standard deviation of
        returns, known at ``t``, so the barriers scale with it.

    Raises
    ------
    ConfigError
        For a non-positive ``horizon``, ``upper`` or ``lower``.
    DataError
        For a ``close`` or ``volatility`` that is not a 1-D numeric column without nulls, of
        another length, or a negative ``volatility``.
    """
    prices = _prices(close, "close")
    _positive(horizon, "horizon")
    for name, width in (("upper", upper), ("lower", lower)):
        if not width > 0:
            msg = f"{name}={width!r} must be a positive barrier width; numpy.inf removes the barrier"
            raise ConfigError(msg)
    scale = np.ones_like(prices) if volatility is None else _volatility(volatility, prices.size)
    value, end = np.empty_like(prices), np.empty(prices.size, dtype=np.int64)
    _triple_barrier_nb(prices, scale, int(horizon), float(upper), float(lower), value, end)
    return Labels(value, end)


@njit(cache=True, nogil=True)
def _triple_barrier_nb(
    close: np.ndarray, scale: np.ndarray, horizon: int, upper: float, lower: float, value: np.ndarray, end: np.ndarray
) -> None:
    n = close.size
    for t in range(n):
        value[t] = np.nan
        end[t] = min(t + horizon, n - 1)
        base, width = close[t], scale[t]
        if np.isnan(base) or np.isnan(width):
            continue
        high, low = base * (1.0 + upper * width), base * (1.0 - lower * width)
        for j in range(t + 1, end[t] + 1):
            if close[j] >= high:
                value[t], end[t] = 1.0, j
                break
            if close[j] <= low:
                value[t], end[t] = -1.0, j
                break
        if np.isnan(value[t]) and t + horizon < n:
            value[t] = np.sign(close[t + horizon] - base)


def _forward(prices: np.ndarray, horizon: int, *, log: bool) -> np.ndarray:
    value = np.full(prices.size, np.nan)
    if horizon < prices.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = prices[horizon:] / prices[:-horizon]
            value[:-horizon] = np.log(ratio) if log else ratio - 1.0
    value[~np.isfinite(value)] = np.nan
    return value


def _horizon_end(n: int, horizon: int) -> np.ndarray:
    return np.minimum(np.arange(n, dtype=np.int64) + horizon, n - 1)


def _prices(values: Prices, name: str) -> np.ndarray:
    """A float64 1-D copy of a price-like column; DataError for nulls or a non-numeric dtype."""
    if isinstance(values, pl.Series):
        values = float_column(values, name)
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        msg = f"{name} must be a 1-D numeric array or Series, got shape {array.shape} of dtype {array.dtype}"
        raise DataError(msg)
    return array.astype(np.float64)


def _volatility(values: Prices, n: int) -> np.ndarray:
    scale = _prices(values, "volatility")
    if scale.size != n:
        msg = f"volatility has {scale.size} rows but close has {n}; give one value per row"
        raise DataError(msg)
    negative = np.flatnonzero(scale < 0)
    if negative.size:
        msg = f"volatility is negative at row {negative[0]} ({scale[negative[0]]}); give a standard deviation (>= 0)"
        raise DataError(msg)
    return scale


def _positive(value: object, name: str) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        msg = f"{name}={value!r} must be a positive int (rows)"
        raise ConfigError(msg)
    return int(value)


# ---------------------------------------------------------------------------------------------
# Scaling


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-feature standardisation: ``(x - mean) / std``, statistics fitted on chosen rows.

    Attributes
    ----------
    mean, std
        float64[F], read-only. ``std`` uses ``ddof=0``; a feature that is constant over the
        fitted rows (all values equal) gets ``std = 1``, so it maps to 0, never to NaN.
    names
        The feature names, for messages and the registry.
    """

    mean: np.ndarray
    std: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        for field in ("mean", "std"):
            array = np.array(getattr(self, field), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, field, array)
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        if not (self.mean.ndim == 1 and self.mean.shape == self.std.shape == (len(self.names),)):
            shapes = f"{self.mean.shape}, {self.std.shape}, {len(self.names)}"
            msg = f"Scaler needs one mean, std and name per feature, got {shapes}"
            raise ModelError(msg)

    @classmethod
    def fit(
        cls, x: np.ndarray, rows: np.ndarray | Sequence[int] | None = None, names: Sequence[str] | None = None
    ) -> Scaler:
        """Fit on ``x[rows]`` (all rows when ``rows`` is None) of a ``(T, F)`` array.

        ``mean = x[rows].mean(axis=0)``, ``std = x[rows].std(axis=0, ddof=0)`` in float64.

        Raises
        ------
        DataError
            If ``x`` is not 2-D, ``rows`` is empty or out of range, or a fitted value is NaN or
            infinite (the message names the feature and the row).
        """
        x = np.asarray(x)
        if x.ndim != 2:
            msg = f"Scaler.fit needs a 2-D (rows, features) array, got shape {x.shape}"
            raise DataError(msg)
        names = tuple(str(j) for j in range(x.shape[1])) if names is None else tuple(names)
        index = np.arange(x.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        if index.size == 0 or index.min() < 0 or index.max() >= x.shape[0]:
            msg = f"Scaler.fit needs at least one row in [0, {x.shape[0]}), got {index.size} rows"
            raise DataError(msg)
        fitted = x[index].astype(np.float64)
        bad = np.argwhere(~np.isfinite(fitted))
        if bad.size:
            i, j = bad[0]
            msg = (
                f"feature {names[j]!r} is {fitted[i, j]} at row {index[i]}, a row the scaler is fitted on; drop or "
                f"fill non-finite values (or start the training rows after the warm-up)"
            )
            raise DataError(msg)
        constant = (fitted == fitted[0]).all(axis=0)
        return cls(fitted.mean(axis=0), np.where(constant, 1.0, fitted.std(axis=0)), names)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` as float32 (C-contiguous) for any array whose last axis is the F features.

        Raises
        ------
        DataError
            If the last axis of ``x`` does not have F entries.
        """
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.mean.size:
            msg = f"Scaler was fitted on {self.mean.size} features {list(self.names)} but x has shape {x.shape}"
            raise DataError(msg)
        return np.ascontiguousarray((x - self.mean) / self.std, dtype=np.float32)

    def state_dict(self) -> dict[str, list]:
        """``{"mean": [...], "std": [...], "names": [...]}``: plain lists, JSON-serialisable."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "names": list(self.names)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list]) -> Scaler:
        """The scaler a :meth:`state_dict` describes.

        Raises
        ------
        ModelError
            If a key is missing or the lists differ in length.
        """
        missing = sorted({"mean", "std", "names"} - set(state))
        if missing:
            msg = f"Scaler state lacks {missing}; give the dict that Scaler.state_dict() made"
            raise ModelError(msg)
        return cls(state["mean"], state["std"], tuple(state["names"]))


# ---------------------------------------------------------------------------------------------
# Windows


class WindowDataset(Dataset):
    """Samples ``(window, label)`` of the rows whose window is complete and label known.

    Sample ``i`` is for row ``t = rows[i]``: ``window = features[t - lookback + 1 .. t]``, a
    float32 tensor of shape ``(lookback, F)`` (``(lookback * F,)``, rows one after the other,
    with ``flat``), and ``label``, a float32 0-d tensor. Rows are kept when ``t`` is in the
    given row set, ``t >= lookback - 1``, the window holds only finite values and ``label[t]``
    is finite.

    Windows are views of one float32 array (``numpy.lib.stride_tricks.sliding_window_view``,
    then ``torch.from_numpy``): nothing is copied per sample, and a sample must not be modified
    in place (it would change the data of every window holding that row). A DataLoader's
    default collation stacks them into new batch tensors. A pickled dataset (DataLoader workers
    started by spawn) carries the array once and rebuilds the view.

    Parameters
    ----------
    features
        ``(T, F)`` array; used as is when float32 and C-contiguous (shared, not copied).
    label
        ``T`` labels (NaN where not known), or :class:`Labels` (their ``value``).
    rows
        The candidate label rows (any order; duplicates count once); all rows when None.
    lookback
        Window length in rows, >= 1.
    flat
        Flatten each window, for MLPs.

    Attributes
    ----------
    rows
        int64 label rows of the samples, increasing.
    values
        The float32 ``(T, F)`` array the windows are views of.
    lookback, flat
        As given.

    Raises
    ------
    ConfigError
        For a ``lookback`` that is not a positive int.
    DataError
        For ``features`` that are not 2-D, a ``label`` of another length or rows out of range.
    """

    def __init__(
        self,
        features: np.ndarray,
        label: np.ndarray,
        rows: np.ndarray | Sequence[int] | None = None,
        *,
        lookback: int,
        flat: bool = False,
    ) -> None:
        self.lookback, self.flat = _positive(lookback, "lookback"), bool(flat)
        self.values = np.ascontiguousarray(features, dtype=np.float32)
        if self.values.ndim != 2:
            msg = f"features must be a 2-D (rows, features) array, got shape {self.values.shape}"
            raise DataError(msg)
        n = self.values.shape[0]
        label = _label_array(label, n)
        index = np.arange(n, dtype=np.int64) if rows is None else _rows(rows, n)
        usable = _complete_windows(self.values, self.lookback) & np.isfinite(label)
        self.rows = index[usable[index]]
        self.rows.setflags(write=False)
        self._labels = torch.from_numpy(label[self.rows].astype(np.float32))
        self._windows = self._window_view()

    @property
    def n_features(self) -> int:
        """F, the number of features per row."""
        return self.values.shape[1]

    def __len__(self) -> int:
        return self.rows.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self._windows[self.rows[i] - self.lookback + 1]
        return torch.from_numpy(window.reshape(-1) if self.flat else window), self._labels[i]

    def __repr__(self) -> str:
        shape = (self.lookback * self.n_features,) if self.flat else (self.lookback, self.n_features)
        return f"WindowDataset({len(self)} samples, window {shape})"

    def __getstate__(self) -> dict[str, object]:
        # Pickled without the window view, which pickle would copy in full (lookback times the
        # data), e.g. for DataLoader workers started by spawn; rebuilt on unpickling.
        return {name: value for name, value in self.__dict__.items() if name != "_windows"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._windows = self._window_view()

    def _window_view(self) -> np.ndarray:
        """``(T - lookback + 1, lookback, F)`` view: entry ``k`` is the window of row ``k + lookback - 1``."""
        shape = (min(self.lookback, self.values.shape[0]), self.values.shape[1])
        return sliding_window_view(self.values, shape, writeable=True)[:, 0]


def _complete_windows(values: np.ndarray, lookback: int) -> np.ndarray:
    """bool[T]: the window ``t - lookback + 1 .. t`` lies inside the data and is all finite."""
    n = values.shape[0]
    bad = np.concatenate([[0], np.cumsum(~np.isfinite(values).all(axis=1))])
    ok = np.zeros(n, dtype=bool)
    ok[lookback - 1 :] = bad[lookback:] == bad[: max(n - lookback + 1, 0)]
    return ok


def _label_array(label: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(label.value if isinstance(label, Labels) else label)
    if array.shape != (n,) or array.dtype.kind not in "biuf":
        msg = f"label has shape {array.shape} and dtype {array.dtype} but there are {n} rows; give {n} numeric labels"
        raise DataError(msg)
    return array.astype(np.float64)


def _rows(rows: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    index = np.unique(np.asarray(rows, dtype=np.int64))
    if index.size and (index[0] < 0 or index[-1] >= n):
        msg = f"rows must lie in [0, {n}), got {index[0]}..{index[-1]}; give row indices of the features"
        raise DataError(msg)
    return index


# ---------------------------------------------------------------------------------------------
# One-call preparation


@dataclass(frozen=True)
class Prepared:
    """Datasets of one split, and what a model registry needs to reproduce them.

    Attributes
    ----------
    train, test
        The samples, sharing one float32 array of all rows scaled by ``scaler``.
    scaler
        Fitted on the rows of the training windows only.
    features
        The feature column names, in order.
    lookback
        Window length in rows.
    data_hash
        Hex SHA-256 of, in order: the raw feature matrix as C-contiguous float64 ``(T, F)``
        bytes, the labels as float64 bytes, and ``json.dumps(list(features))`` in UTF-8.
    """

    train: WindowDataset
    test: WindowDataset
    scaler: Scaler
    features: tuple[str, ...]
    lookback: int
    data_hash: str


def prepare(
    frame: pl.DataFrame,
    features: Sequence[str],
    label: np.ndarray | Labels,
    split: Split,
    *,
    lookback: int,
    flat: bool = False,
    label_end: np.ndarray | Sequence[int] | None = None,
) -> Prepared:
    """Scaled training and test datasets of windows for one split, purged, without leakage.

    Training samples come from ``split.train`` and test samples from ``split.test``, each kept
    when its window is complete and its label known (see :class:`WindowDataset`). Training
    samples whose span ``[t - lookback + 1, label_end[t]]`` meets the test period
    ``[split.test[0], max(label_end[split.test])]`` are purged. The :class:`Scaler` is fitted on
    the union of the remaining training windows (from the first training row
    ``- lookback + 1``), then applied to all rows.

    Parameters
    ----------
    frame
        ``T`` rows in time order, with the feature columns (numeric, no nulls; NaN is allowed
        and leaves the windows holding it out, e.g. indicator warm-up).
    features
        The feature column names, in the order of a window's last axis.
    label
        ``T`` labels (NaN where unknown), or the :class:`Labels` of a label function, whose
        ``end`` is then the default ``label_end``.
    split
        Row indices into ``frame``, from :func:`~ntlab.backtest.splits.walk_forward` or
        :func:`~ntlab.backtest.splits.purged_kfold`.
    lookback
        Window length in rows, >= 1.
    flat
        Flatten the windows, for MLPs.
    label_end
        int64[T], the row at which each label is known (``label_end[t] >= t``); default
        ``label.end`` for :class:`Labels`, else each label ends at its own row.

    Raises
    ------
    ConfigError
        For a ``lookback`` that is not a positive int, or no, or repeated, feature names.
    SchemaError
        For missing or non-numeric feature columns.
    DataError
        For nulls or infinite values in the features, a label, ``label_end`` or split of
        another length, a ``label_end`` before its row, or no training or test sample left.
    """
    names = _feature_names(features)
    lookback = _positive(lookback, "lookback")
    x = _feature_matrix(frame, names)
    n = x.shape[0]
    if split.n != n:
        msg = f"split was made for n={split.n} rows but the frame has {n}; make the split from this frame"
        raise DataError(msg)
    values = _label_array(label, n)
    ends = _label_ends(label.end if isinstance(label, Labels) and label_end is None else label_end, n)
    usable = _complete_windows(x, lookback) & np.isfinite(values)
    train = split.train[usable[split.train] & _clear_of_test(split, ends, lookback)]
    test = split.test[usable[split.test]]
    _check_samples(split, usable, train, test, lookback)
    scaler = Scaler.fit(x, _window_rows(train, lookback, n), names)
    scaled = scaler.transform(x)
    return Prepared(
        train=WindowDataset(scaled, values, train, lookback=lookback, flat=flat),
        test=WindowDataset(scaled, values, test, lookback=lookback, flat=flat),
        scaler=scaler,
        features=names,
        lookback=lookback,
        data_hash=_data_hash(x, values, names),
    )


def _feature_names(features: Sequence[str]) -> tuple[str, ...]:
    names = (features,) if isinstance(features, str) else tuple(features)
    if not names or len(set(names)) != len(names):
        msg = f"features={list(names)!r}: give one or more distinct column names"
        raise ConfigError(msg)
    return names


def _feature_matrix(frame: pl.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """The features as C-contiguous float64 ``(T, F)``; SchemaError/DataError for bad columns."""
    missing = [name for name in names if name not in frame.columns]
    if missing:
        msg = f"feature columns {missing} are not in the frame, whose columns are {frame.columns}; add them first"
        raise SchemaError(msg)
    for name in names:
        column = frame[name]
        if not column.dtype.is_numeric():
            msg = f"feature {name!r} has dtype {column.dtype}, not numeric; cast it or leave it out"
            raise SchemaError(msg)
        if column.null_count():
            row = int(column.is_null().arg_true()[0])
            msg = (
                f"feature {name!r} holds {column.null_count()} null(s), the first at row {row}; "
                f"fill_null or drop_nulls first"
            )
            raise DataError(msg)
    x = frame.select(pl.col(names).cast(pl.Float64)).to_numpy(order="c")
    infinite = np.argwhere(np.isinf(x))
    if infinite.size:
        i, j = infinite[0]
        msg = f"feature {names[j]!r} is {x[i, j]} at row {i}; replace infinite values (with NaN, to drop the windows)"
        raise DataError(msg)
    return x


def _label_ends(label_end: np.ndarray | Sequence[int] | None, n: int) -> np.ndarray:
    if label_end is None:
        return np.arange(n, dtype=np.int64)
    ends = np.asarray(label_end)
    if ends.shape != (n,) or ends.dtype.kind not in "iu":
        msg = f"label_end has shape {ends.shape} and dtype {ends.dtype}; give {n} row indices (int)"
        raise DataError(msg)
    early = np.flatnonzero(ends < np.arange(n))
    if early.size:
        msg = f"label_end at row {early[0]} is row {ends[early[0]]}, before it; a label ends at or after its own row"
        raise DataError(msg)
    return ends.astype(np.int64)


def _clear_of_test(split: Split, ends: np.ndarray, lookback: int) -> np.ndarray:
    """bool per training row: its span ``[t - lookback + 1, ends[t]]`` misses the test period."""
    train = split.train
    if split.test.size == 0:
        return np.ones(train.size, dtype=bool)
    first, last = split.test[0], ends[split.test].max()
    return (train - lookback + 1 > last) | (ends[train] < first)


def _check_samples(split: Split, usable: np.ndarray, train: np.ndarray, test: np.ndarray, lookback: int) -> None:
    for part, kept in (("train", train), ("test", test)):
        if kept.size == 0:
            given = getattr(split, part)
            complete = int(usable[given].sum())
            msg = (
                f"no {part} sample left: of the split's {given.size} {part} rows, {complete} have a complete window "
                f"(lookback={lookback}, no NaN) and a known label"
                + (", and those are purged for reaching the test period" if complete else "")
                + "; shorten lookback or the label horizon, or give the split more rows"
            )
            raise DataError(msg)


def _window_rows(rows: np.ndarray, lookback: int, n: int) -> np.ndarray:
    """The rows of the union of the windows ``t - lookback + 1 .. t``, t in ``rows``, increasing."""
    edges = np.zeros(n + 1, dtype=np.int64)
    edges[rows - lookback + 1] += 1
    edges[rows + 1] -= 1
    return np.flatnonzero(np.cumsum(edges[:n]) > 0)


def _data_hash(x: np.ndarray, label: np.ndarray, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(label, dtype=np.float64).tobytes())
    digest.update(json.dumps(list(names)).encode())
    return digest.hexdigest()
