"""Latency histograms over integer nanoseconds, recorded from compiled code, and a compiled clock.

:class:`LatencyHistogram` keeps HDR-style log-linear buckets: every value below 128 ns has its
own bucket, and every power of two above is cut into 64 equal buckets, so a bucket is at most
1/64 of its lower bound wide. :func:`record_nb` files a value in O(1) (a count-leading-zeros, a
shift, a few increments, no branch, no allocation: ~2.5 ns inlined in a loop) and keeps the exact
count, sum, minimum and maximum on the side. :func:`now_ns_nb` reads ``CLOCK_MONOTONIC`` from
compiled code (the clock of :func:`time.monotonic_ns`, ~17 ns a call).

Layout
------
One ``int64`` array (:meth:`LatencyHistogram.arrays`): a header of :data:`HEADER` slots, then
the bucket counts. ``hist[H_COUNT]`` values recorded (overflow included), ``hist[H_SUM]`` their
sum, ``hist[H_MIN]`` / ``hist[H_MAX]`` the exact extremes (``H_MIN`` is ``INT64_MAX`` while
empty), ``hist[H_OVERFLOW]`` values above ``hist[H_MAX_NS]`` (counted, in no bucket),
``hist[H_NEGATIVE]`` negative values (counted there only: a negative latency is a bug of the
caller, e.g. ``start - end``). Bucket ``k`` (at ``hist[HEADER + k]``) holds the values
``[lo, lo + w)`` with ``s = max(k // 64 - 1, 0)``, ``lo = (k - 64 s) << s`` and ``w = 1 << s``;
a value ``v`` goes to ``k = 64 s + (v >> s)`` with ``s = max(bit_length(v) - 7, 0)``.

Percentiles
-----------
``percentile(p)`` is the nearest-rank percentile (NumPy's ``method="inverted_cdf"``: the
smallest recorded value with at least ``p`` % of the values at or below it), reported as the
**upper bound** of its bucket (its last integer), clamped to the exact maximum. So the reported
``r`` and the true ``x`` satisfy ``x <= r < x * (1 + 1/64)``: never below, at most 1.5625 %
above, exact below 128 ns. Percentiles that fall among the overflow values report the exact
maximum (an upper bound with no error guarantee): choose ``max_ns`` above what you expect.

Threads
-------
One writer at a time. A reader in another thread (a dashboard) may see a value counted in
``H_COUNT`` before its bucket: :meth:`LatencyHistogram.snapshot` copies the array once and
every statistic of the snapshot comes from that copy, so it is off by a few in-flight values at
most.

Examples
--------
>>> h = LatencyHistogram(max_ns=1_000_000)
>>> for ns in (100, 200, 300, 400, 2_000_000):
...     h.record(ns)
>>> h.count, h.overflow, h.max  # the maximum is exact, overflow included
(5, 1, 2000000.0)
>>> h.percentile(50)  # 300 ns is in the bucket [300, 303]: its upper bound, 1 % high
303.0
"""

from __future__ import annotations

import ctypes
import html
import math
import operator
import time
from collections.abc import Iterable
from typing import Any

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, objmode, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ntlab.exceptions import ConfigError, DataError
from ntlab.kernels._common import _KW

__all__ = [
    "HEADER",
    "H_COUNT",
    "H_MAX",
    "H_MAX_NS",
    "H_MIN",
    "H_NEGATIVE",
    "H_OVERFLOW",
    "H_SUM",
    "LatencyHistogram",
    "bucket_nb",
    "now_ns_nb",
    "record_many_nb",
    "record_nb",
]

H_COUNT = 0
H_SUM = 1
H_MIN = 2
H_MAX = 3
H_OVERFLOW = 4
H_NEGATIVE = 5
H_MAX_NS = 6
HEADER = 8

SUB_BITS = 6  # 2**6 = 64 buckets per power of two
_INT64_MAX = np.iinfo(np.int64).max
_MAX_NS_LIMIT = 1 << 62


# ---------------------------------------------------------------------------------------------
# Leading zeros: Python, overloaded by LLVM's ctlz for compiled callers


def _clz64(v: int) -> int:
    """Leading zero bits of the 64-bit ``v >= 0`` (64 for 0)."""
    return 64 - int(v).bit_length()


@intrinsic
def _ctlz_intr(typingctx: Any, v: Any) -> Any:
    if not isinstance(v, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        x = context.cast(builder, args[0], sig.args[0], types.int64)
        return builder.ctlz(x, ir.Constant(ir.IntType(1), 0))  # defined for 0: 64

    return types.int64(v), codegen


# (no annotations on the overloads: Numba checks that typing and implementation signatures match)
@overload(_clz64)
def _ov_clz64(v):
    return lambda v: _ctlz_intr(v)


# ---------------------------------------------------------------------------------------------
# Clock


def _clock_gettime_address() -> int | None:
    """Address of libc's ``clock_gettime`` when it reads the very clock of ``time.monotonic_ns``."""
    info = time.get_clock_info("monotonic")
    if info.implementation != "clock_gettime(CLOCK_MONOTONIC)" or ctypes.sizeof(ctypes.c_long) != 8:
        return None  # pragma: no cover (not Linux/BSD on a 64-bit CPU: object mode instead)
    try:
        return ctypes.cast(ctypes.CDLL(None).clock_gettime, ctypes.c_void_p).value
    except (AttributeError, OSError):  # pragma: no cover
        return None


_CLOCK_SYMBOL = "ntlab_live_clock_gettime"
_CLOCK_ADDRESS = _clock_gettime_address()
if _CLOCK_ADDRESS is not None:
    llvm.add_symbol(_CLOCK_SYMBOL, _CLOCK_ADDRESS)


@intrinsic
def _clock_intr(typingctx: Any) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        i32, i64 = ir.IntType(32), ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])  # time_t tv_sec, long tv_nsec (LP64)
        with builder.goto_entry_block():
            ts = builder.alloca(timespec)
        fnty = ir.FunctionType(i32, [i32, ts.type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _CLOCK_SYMBOL)
        builder.call(fn, [ir.Constant(i32, time.CLOCK_MONOTONIC), ts])
        zero = ir.Constant(i32, 0)
        sec = builder.load(builder.gep(ts, [zero, zero], inbounds=True))
        nsec = builder.load(builder.gep(ts, [zero, ir.Constant(i32, 1)], inbounds=True))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return types.int64(), codegen


def _now_native() -> int:
    return _clock_intr()


def _now_objmode() -> int:
    with objmode(t="int64"):
        t = time.monotonic_ns()
    return t


def _now_impl(native: bool) -> Any:
    """The compiled body of :func:`now_ns_nb`: ``clock_gettime`` inline, or an object-mode call."""
    return _now_native if native else _now_objmode


def now_ns_nb() -> int:
    """Monotonic clock in integer nanoseconds, callable from Python and from compiled code.

    From Python (and under ``NUMBA_DISABLE_JIT=1``) it is :func:`time.monotonic_ns`. Compiled,
    it calls libc's ``clock_gettime(CLOCK_MONOTONIC)`` directly (a vDSO read, ~17 ns, no
    syscall), the same clock as :func:`time.monotonic_ns`; where Python's monotonic clock is
    another one it falls back to calling :func:`time.monotonic_ns` in object mode (~0.4 us).
    """
    return time.monotonic_ns()


@overload(now_ns_nb)
def _ov_now_ns():
    return _now_impl(_CLOCK_ADDRESS is not None)


# ---------------------------------------------------------------------------------------------
# Recording (compiled). Branch-free on purpose: every write happens, the values are selected,
# so there is nothing to mispredict and Numba can drop the reference counting of ``hist``.


@njit(**_KW)
def bucket_nb(v: int) -> int:
    """Bucket index of the value ``v >= 0`` (``v`` itself below 128)."""
    s = max(57 - _clz64(v), 0)
    return (s << SUB_BITS) + (v >> s)


@njit(**_KW)
def record_nb(hist: np.ndarray, ns: int) -> None:
    """Record one latency of ``ns`` nanoseconds into ``hist`` (see the module's layout).

    O(1), no allocation. A value above ``hist[H_MAX_NS]`` counts in ``H_OVERFLOW`` (and in the
    count, sum, min and max); a negative value only in ``H_NEGATIVE``. Floats are truncated.
    """
    v = np.int64(ns)
    ok = v >= 0
    w = v if ok else 0
    one = 1 if ok else 0
    over = w > hist[H_MAX_NS]
    hist[H_NEGATIVE] += 1 - one
    hist[H_COUNT] += one
    hist[H_SUM] += w
    hist[H_MIN] = min(hist[H_MIN], v if ok else _INT64_MAX)
    hist[H_MAX] = max(hist[H_MAX], w)
    hist[H_OVERFLOW] += 1 if over else 0
    hist[HEADER + bucket_nb(min(w, hist[H_MAX_NS]))] += 0 if over else one


@njit(**_KW)
def record_many_nb(hist: np.ndarray, values: np.ndarray) -> None:
    """:func:`record_nb` of every element of ``values``."""
    for k in range(values.shape[0]):
        record_nb(hist, values[k])


# ---------------------------------------------------------------------------------------------
# Python API


def _bucket_bounds(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower bound and width of buckets ``0..n-1``."""
    k = np.arange(n, dtype=np.int64)
    s = np.maximum(k // 64 - 1, 0)
    return (k - 64 * s) << s, np.left_shift(np.int64(1), s)


def _us(ns: float) -> str:
    """``ns`` in microseconds, to the nanosecond below 100 µs."""
    if math.isnan(ns):
        return "-"
    return f"{ns / 1e3:,.3f} µs" if ns < 100_000 else f"{ns / 1e3:,.1f} µs"


class LatencyHistogram:
    """A log-linear histogram of latencies in integer nanoseconds (see the module docstring).

    Parameters
    ----------
    max_ns : int
        Largest value with a bucket; larger values are counted as overflow (with their exact
        maximum). 10 ms by default: 1,165 buckets, 9.4 KB.
    name : str
        Shown by ``repr``.

    Notes
    -----
    Compiled code records with ``record_nb(hist, ns)`` where ``(hist,) = h.arrays()``; the
    statistics (:meth:`percentile`, :attr:`mean`...) are computed in Python from one copy.
    """

    def __init__(self, max_ns: int = 10_000_000, *, name: str = "") -> None:
        m = _index(max_ns, "max_ns", "pass the largest latency to resolve, e.g. 10_000_000")
        if not 1 <= m <= _MAX_NS_LIMIT:
            raise ConfigError(
                f"max_ns must be in [1, 2**62], got {max_ns!r}; pass the largest latency to "
                "resolve in nanoseconds, e.g. 10_000_000 (10 ms)"
            )
        self.name = str(name)
        self._hist = np.zeros(HEADER + int(bucket_nb(m)) + 1, dtype=np.int64)
        self._hist[H_MAX_NS] = m
        self._hist[H_MIN] = _INT64_MAX

    @classmethod
    def _frozen(cls, hist: np.ndarray, name: str) -> LatencyHistogram:
        self = cls.__new__(cls)
        self.name = name
        self._hist = hist
        hist.flags.writeable = False
        return self

    # -- recording --------------------------------------------------------------------------

    def arrays(self) -> tuple[np.ndarray]:
        """``(hist,)``: the array compiled code records into with :func:`record_nb`."""
        return (self._hist,)

    def _writable(self) -> np.ndarray:
        if not self._hist.flags.writeable:
            raise ConfigError(
                "this LatencyHistogram is a read-only snapshot; record into, reset or merge "
                "into the live histogram it was taken from (or a new LatencyHistogram)"
            )
        return self._hist

    def record(self, ns: int) -> None:
        """Record one latency of ``ns`` (an integer >= 0) nanoseconds."""
        v = _index(ns, "a latency", "pass integer nanoseconds (round it)", DataError)
        if v < 0:
            raise DataError(
                f"a latency cannot be negative, got {v} ns; subtract the start from the end "
                "(end - start), both from time.monotonic_ns() or now_ns_nb()"
            )
        record_nb(self._writable(), v)

    def record_many(self, values: Iterable[int] | np.ndarray) -> None:
        """Record every latency of ``values`` (integers >= 0, nanoseconds)."""
        arr = np.asarray(values)
        if arr.ndim != 1 or not (arr.dtype.kind in "iu" or arr.size == 0):
            raise DataError(
                f"latencies must be a 1-D sequence of integers, got {arr.dtype}{list(arr.shape)}; "
                "convert with np.asarray(values).astype(np.int64) after rounding"
            )
        arr = arr.astype(np.int64, copy=False)
        if arr.size and arr.min() < 0:
            bad = np.flatnonzero(arr < 0)
            raise DataError(
                f"{bad.size} latencies are negative (the first, at index {bad[0]}, is "
                f"{arr[bad[0]]} ns); subtract the start from the end"
            )
        record_many_nb(self._writable(), arr)

    def reset(self) -> None:
        """Forget every value (keeps ``max_ns``)."""
        hist = self._writable()
        m = hist[H_MAX_NS]
        hist[:] = 0
        hist[H_MAX_NS] = m
        hist[H_MIN] = _INT64_MAX

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add the values of ``other`` (same ``max_ns``) to this histogram; returns ``self``."""
        if not isinstance(other, LatencyHistogram):
            raise ConfigError(f"merge takes a LatencyHistogram, got {type(other).__name__}")
        if other.max_ns != self.max_ns:
            raise ConfigError(
                f"cannot merge histograms of different max_ns ({other.max_ns} into "
                f"{self.max_ns}); create both with the same max_ns"
            )
        hist = self._writable()
        src = other._hist.copy()
        for slot in (H_COUNT, H_SUM, H_OVERFLOW, H_NEGATIVE):
            hist[slot] += src[slot]
        hist[H_MIN] = min(hist[H_MIN], src[H_MIN])
        hist[H_MAX] = max(hist[H_MAX], src[H_MAX])
        hist[HEADER:] += src[HEADER:]
        return self

    def snapshot(self) -> LatencyHistogram:
        """A read-only copy: statistics of one consistent moment, safe to hand to a UI."""
        return LatencyHistogram._frozen(self._hist.copy(), self.name)

    # -- statistics -------------------------------------------------------------------------

    @property
    def max_ns(self) -> int:
        """Largest value with a bucket."""
        return int(self._hist[H_MAX_NS])

    @property
    def count(self) -> int:
        """Values recorded (overflow included, negatives not)."""
        return int(self._hist[H_COUNT])

    @property
    def overflow(self) -> int:
        """Values above ``max_ns``."""
        return int(self._hist[H_OVERFLOW])

    @property
    def negative(self) -> int:
        """Negative values given to :func:`record_nb` (ignored otherwise)."""
        return int(self._hist[H_NEGATIVE])

    @property
    def min(self) -> float:
        """Exact smallest value (ns); NaN when empty."""
        return float(self._hist[H_MIN]) if self.count else math.nan

    @property
    def max(self) -> float:
        """Exact largest value (ns); NaN when empty."""
        return float(self._hist[H_MAX]) if self.count else math.nan

    @property
    def mean(self) -> float:
        """Exact mean (ns); NaN when empty."""
        n = self.count
        return float(self._hist[H_SUM]) / n if n else math.nan

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile in ns: its bucket's upper bound (see the module docstring).

        Nearest rank, never below the true value and less than 1/64 (1.5625 %) above it
        (exact below 128 ns); NaN when empty.
        """
        return self.percentiles((p,))[p]

    def percentiles(self, ps: Iterable[float] = (50, 99, 99.9)) -> dict[float, float]:
        """``{p: percentile(p)}`` for every ``p`` of ``ps``, from one copy of the counts."""
        ps = tuple(ps)
        for p in ps:
            if not (isinstance(p, (int, float, np.integer, np.floating)) and 0 <= p <= 100):
                raise ConfigError(f"a percentile must be a number in [0, 100], got {p!r}")
        hist = self._hist.copy()
        cum = np.cumsum(hist[HEADER:])
        n = int(cum[-1]) + int(hist[H_OVERFLOW])
        if n == 0:
            return {p: math.nan for p in ps}
        top = float(hist[H_MAX])
        out = {}
        for p in ps:
            rank = max(math.ceil(n * (float(p) / 100.0)), 1)  # as NumPy's inverted_cdf
            k = int(np.searchsorted(cum, rank))
            if k == cum.shape[0]:
                out[p] = top  # among the overflow values
            else:
                s = max(k // 64 - 1, 0)
                out[p] = min(float((((k - 64 * s) + 1) << s) - 1), top)
        return out

    # -- display ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        if not self.count:
            return f"LatencyHistogram({name}n=0, max_ns={self.max_ns})"
        q = self.percentiles((50, 99, 99.9))
        flags = (("overflow", self.overflow), ("negative", self.negative))
        extra = "".join(f", {label}={v}" for label, v in flags if v)
        return (
            f"LatencyHistogram({name}n={self.count}, p50={_us(q[50])}, p99={_us(q[99])}, "
            f"p99.9={_us(q[99.9])}, max={_us(self.max)}{extra})"
        )

    def _repr_html_(self) -> str:
        snap = self.snapshot()
        q = snap.percentiles((50, 90, 99, 99.9))
        cells = [
            ("n", f"{snap.count:,}"),
            ("min", _us(snap.min)),
            ("mean", _us(snap.mean)),
            ("p50", _us(q[50])),
            ("p90", _us(q[90])),
            ("p99", _us(q[99])),
            ("p99.9", _us(q[99.9])),
            ("max", _us(snap.max)),
            ("overflow", f"{snap.overflow:,} &gt; {_us(snap.max_ns)}"),
        ]
        if snap.negative:
            cells.append(("negative", f"{snap.negative:,}"))
        head = "".join(f"<th style='padding:0 8px'>{k}</th>" for k, _ in cells)
        row = "".join(f"<td style='padding:0 8px;text-align:right'>{v}</td>" for _, v in cells)
        title = html.escape(self.name or "latency")
        return (
            f"<div><b>{title}</b> (LatencyHistogram, ≤ 1.6 % percentile error)"
            f"<table><tr>{head}</tr><tr>{row}</tr></table>{snap._svg()}</div>"
        )

    def _svg(self, width: int = 480, height: int = 60) -> str:
        """Counts per power of two of nanoseconds as an inline SVG bar chart."""
        counts = self._hist[HEADER:]
        lo, _ = _bucket_bounds(counts.shape[0])
        octave = np.floor(np.log2(np.maximum(lo, 1))).astype(np.int64)
        per = np.bincount(octave, weights=counts, minlength=int(octave[-1]) + 1)
        per = np.append(per, self.overflow)
        top = per.max()
        if top <= 0:
            return ""
        bw = width / per.shape[0]
        bars = []
        for e, c in enumerate(per):
            h = 0.0 if c == 0 else max(1.0, height * c / top)
            last = e == per.shape[0] - 1
            what = f"&gt; {self.max_ns:,} ns" if last else f"[{1 << e:,}, {1 << (e + 1):,}) ns"
            bars.append(
                f"<rect x='{e * bw:.1f}' y='{height - h:.1f}' width='{bw * 0.9:.1f}' "
                f"height='{h:.1f}' fill='{'#c44' if last else '#47a'}'>"
                f"<title>{what}: {int(c):,}</title></rect>"
            )
        return (
            f"<svg width='{width}' height='{height}' style='background:#f8f8f8'>"
            f"{''.join(bars)}</svg>"
        )


def _index(value: Any, what: str, fix: str, error: type[Exception] = ConfigError) -> int:
    if isinstance(value, bool):
        raise error(f"{what} must be an int, got {value!r}; {fix}")
    try:
        return operator.index(value)
    except TypeError:
        raise error(f"{what} must be an int, got {value!r}; {fix}") from None
