"""Tests of :mod:`ntlab.live.latency`: the log-linear latency histogram and the compiled clock.

The functional tests run with the compiled kernels and with their Python bodies (``py``: the
``*_nb`` functions replaced by their ``py_func``), so that coverage sees the kernel bodies in
the JIT run too. Percentiles are checked against ``numpy.percentile(method="inverted_cdf")``,
the nearest-rank definition the histogram reports.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np
import pytest
from numba import njit

from ntlab.exceptions import ConfigError, DataError
from ntlab.live import latency as lt
from ntlab.live.latency import LatencyHistogram, now_ns_nb

NO_JIT = bool(numba.config.DISABLE_JIT)
KERNELS = ("bucket_nb", "record_nb", "record_many_nb")
PS = (0, 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100)


@pytest.fixture(params=["jit", "py"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``jit``: the kernels as they are; ``py``: their Python bodies (for coverage)."""
    if request.param == "py":
        for name in KERNELS:
            fn = getattr(lt, name)
            monkeypatch.setattr(lt, name, getattr(fn, "py_func", fn))
    return request.param


def _lognormal(n: int, seed: int = 1) -> np.ndarray:
    """Latencies around 20 us with a long tail, down to a few ns, in integer ns."""
    rng = np.random.default_rng(seed)
    return np.round(rng.lognormal(np.log(20_000), 1.6, n)).astype(np.int64)


def _check(h: LatencyHistogram, x: np.ndarray) -> None:
    """Every percentile of ``h`` is the true nearest-rank one, or less than 1/64 above it.

    Among the overflow values (above ``max_ns``), the exact maximum, as documented.
    """
    got = h.percentiles(PS)
    for p in PS:
        true = float(np.percentile(x, p, method="inverted_cdf"))
        r = got[p]
        if true > h.max_ns:
            assert r == h.max
            continue
        assert true <= r < true * (1 + 1 / 64) or r == true, (p, r, true)
        if true < 128:
            assert r == true


# ---------------------------------------------------------------------------------------------
# Buckets and percentiles


def test_bucket_bounds_cover_every_integer_once(mode: str) -> None:
    h = LatencyHistogram(max_ns=1 << 40)
    n = h.arrays()[0].shape[0] - lt.HEADER
    lo, width = lt._bucket_bounds(n)
    assert lo[0] == 0 and np.all(lo[1:] == lo[:-1] + width[:-1])  # contiguous, no gap
    assert np.all(width <= np.maximum(1, lo // 64))  # at most 1/64 of the lower bound wide
    for k in range(0, n, 7):
        assert lt.bucket_nb(int(lo[k])) == k
        assert lt.bucket_nb(int(lo[k] + width[k] - 1)) == k
    assert [lt.bucket_nb(v) for v in (0, 1, 127, 128, 129, 130, 255, 256)] == [
        0, 1, 127, 128, 128, 129, 191, 192,
    ]  # fmt: skip


def test_percentiles_against_numpy_lognormal(mode: str) -> None:
    x = _lognormal(20_000 if mode == "py" else 200_000)
    h = LatencyHistogram()
    h.record_many(x)
    assert h.overflow == np.sum(x > 10_000_000) > 0  # the tail passes 10 ms
    _check(h, x)
    assert (h.count, h.min, h.max) == (x.size, float(x.min()), float(x.max()))
    assert h.mean == pytest.approx(x.mean(), rel=1e-12)
    assert h.percentile(100) == x.max() and h.percentile(0) == x.min()


def test_small_values_are_exact(mode: str) -> None:
    h = LatencyHistogram(max_ns=100)
    x = np.arange(101)
    h.record_many(x[::-1])
    for p in (1, 33, 50, 90, 100):
        assert h.percentile(p) == np.percentile(x, p, method="inverted_cdf")


def test_record_one_by_one_equals_record_many(mode: str) -> None:
    x = _lognormal(3_000, seed=2)
    one, many = LatencyHistogram(name="one"), LatencyHistogram()
    for v in x:
        one.record(int(v))
    many.record_many(x.tolist())
    np.testing.assert_array_equal(one.arrays()[0], many.arrays()[0])


def test_compiled_callers_record_into_the_array(mode: str) -> None:
    """``record_nb(hist, ns)`` from compiled code, ints and floats (truncated), negatives apart."""
    h = LatencyHistogram(max_ns=1_000)
    (hist,) = h.arrays()
    for v in (5, 7.9, 1_500, -3, 1_000):
        lt.record_nb(hist, v)
    assert (h.count, h.overflow, h.negative) == (4, 1, 1)
    assert (h.min, h.max, h.mean) == (5.0, 1_500.0, (5 + 7 + 1_500 + 1_000) / 4)
    # 1000 is in the bucket [1000, 1007]: reported as 1007
    assert h.percentiles((25, 50, 75, 100)) == {25: 5.0, 50: 7.0, 75: 1_007.0, 100: 1_500.0}


def test_overflow_is_counted_and_reported_as_the_exact_max(mode: str) -> None:
    h = LatencyHistogram(max_ns=1_000)
    h.record_many([10, 20, 30, 5_000, 7_000])
    assert (h.count, h.overflow) == (5, 2)
    assert h.percentile(50) == 30.0
    assert h.percentile(70) == h.percentile(99) == h.max == 7_000.0
    assert "overflow=2" in repr(h)


def test_merge_equals_recording_everything(mode: str) -> None:
    x = _lognormal(4_000, seed=3)
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    a.record_many(x[:1_500])
    b.record_many(x[1_500:])
    both.record_many(x)
    assert a.merge(b) is a
    np.testing.assert_array_equal(a.arrays()[0], both.arrays()[0])
    assert a.merge(LatencyHistogram()).count == x.size  # an empty one changes nothing
    np.testing.assert_array_equal(a.arrays()[0], both.arrays()[0])
    with pytest.raises(ConfigError, match=r"different max_ns \(1000 into 10000000\)"):
        a.merge(LatencyHistogram(max_ns=1_000))
    with pytest.raises(ConfigError, match=r"got list"):
        a.merge([1, 2])  # type: ignore[arg-type]


def test_reset_and_empty(mode: str) -> None:
    h = LatencyHistogram(max_ns=5_000, name="fills")
    h.record_many([1, 2, 3, 9_999])
    h.reset()
    assert (h.count, h.overflow, h.negative, h.max_ns) == (0, 0, 0, 5_000)
    assert all(math.isnan(v) for v in (h.min, h.max, h.mean, h.percentile(50)))
    assert repr(h) == "LatencyHistogram('fills', n=0, max_ns=5000)"
    h.record(42)
    assert (h.count, h.min, h.max, h.percentile(99)) == (1, 42.0, 42.0, 42.0)


def test_snapshot_is_an_immutable_copy(mode: str) -> None:
    h = LatencyHistogram()
    h.record_many([100, 200])
    snap = h.snapshot()
    h.record(300)
    assert (snap.count, h.count) == (2, 3)
    assert not snap.arrays()[0].flags.writeable
    for act in (
        lambda: snap.record(1),
        snap.reset,
        lambda: snap.merge(h),
        lambda: snap.record_many([1]),
    ):
        with pytest.raises(ConfigError, match="read-only snapshot"):
            act()
    assert h.merge(snap).count == 5  # a snapshot merges into a live histogram


def test_repr_and_html(mode: str) -> None:
    h = LatencyHistogram(max_ns=1_000_000, name="tick<to>trade")
    h.record_many([1_500, 2_500, 900_000, 2_000_000])
    text = repr(h)
    assert text.startswith("LatencyHistogram('tick<to>trade', n=4, p50=")
    assert "p50=2.527 µs" in text and "p99.9=2,000.0 µs" in text and "overflow=1" in text
    page = h._repr_html_()
    assert "tick&lt;to&gt;trade" in page and "<svg" in page and "<table>" in page
    assert page.count("<rect") == 21  # one bar per power of two up to 2**19 ns, and overflow
    (hist,) = h.arrays()
    lt.record_nb(hist, -5)
    assert "negative=1" in repr(h) and "<td" in h._repr_html_()
    assert "<svg" not in LatencyHistogram()._repr_html_()


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("max_ns", "match"),
    [
        (0, r"max_ns must be in \[1, 2\*\*62\], got 0"),
        (2**63, r"got 9223372036854775808"),
        (1.5e6, r"max_ns must be an int, got 1500000\.0"),
        (True, r"max_ns must be an int, got True"),
    ],
)
def test_bad_max_ns(max_ns: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LatencyHistogram(max_ns=max_ns)  # type: ignore[arg-type]


def test_bad_values_and_percentiles() -> None:
    h = LatencyHistogram()
    with pytest.raises(DataError, match=r"cannot be negative, got -5 ns; subtract"):
        h.record(-5)
    with pytest.raises(DataError, match=r"a latency must be an int, got 1\.5"):
        h.record(1.5)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"2 latencies are negative \(the first, at index 1, is -1"):
        h.record_many([3, -1, 4, -9])
    with pytest.raises(DataError, match=r"1-D sequence of integers, got float64\[2\]"):
        h.record_many([1.0, 2.5])
    with pytest.raises(DataError, match=r"got int64\[1, 2\]"):
        h.record_many([[1, 2]])
    h.record_many([])  # nothing to record is fine
    for p in (-1, 100.5, "50", float("nan")):
        with pytest.raises(ConfigError, match=r"percentile must be a number in \[0, 100\]"):
            h.percentile(p)  # type: ignore[arg-type]
    assert h.count == 0


# ---------------------------------------------------------------------------------------------
# Clock


@njit
def _clock_run(n: int) -> tuple[int, int, int]:
    """First and last readings of ``n`` consecutive calls, and how many went backwards."""
    first = prev = now_ns_nb()
    back = 0
    for _ in range(n):
        t = now_ns_nb()
        back += t < prev
        prev = t
    return first, prev, back


def test_clock_is_monotonic_and_the_clock_of_time_monotonic_ns() -> None:
    _clock_run(1)  # compile
    for _ in range(20):
        t0 = time.monotonic_ns()
        first, last, back = _clock_run(1_000 if NO_JIT else 100_000)
        t1 = time.monotonic_ns()
        assert back == 0 and t0 <= first <= last <= t1  # bracketed: the same clock
    assert abs(now_ns_nb() - time.monotonic_ns()) < 5_000_000  # from Python, too


def test_clock_object_mode_fallback() -> None:
    """The body used where Python's monotonic clock is not ``clock_gettime``."""
    fallback = njit(lt._now_impl(False))
    t0 = time.monotonic_ns()
    t = fallback()
    assert t0 <= t <= time.monotonic_ns()
    assert lt._now_impl(True) is lt._now_native


@pytest.mark.skipif(NO_JIT, reason="typing errors exist only when compiling")
def test_clz_compiles_for_integers_only() -> None:
    @njit
    def clz(v: float) -> int:
        return lt._clz64(v)

    assert clz.py_func(0) == 64 and clz.py_func(1) == 63
    assert [clz(v) for v in (0, 1, 5, 2**62)] == [64, 63, 61, 1]  # LLVM's ctlz, fresh compile
    with pytest.raises(numba.core.errors.TypingError):
        clz(1.5)
