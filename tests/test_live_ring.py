"""Tests of :mod:`ntlab.live.ring`: the single-producer single-consumer ring buffers.

Every functional test runs twice: with the compiled kernels and with their Python bodies
(``py``: the ``*_nb`` functions of the module replaced by their ``py_func``), so that coverage
sees the kernel bodies in the JIT run too. The threaded tests push from a compiled producer
without the GIL while the main thread pops.
"""

from __future__ import annotations

import threading
from collections import deque

import numba
import numpy as np
import pytest
from numba import njit

from ntlab.exceptions import ConfigError, DataError
from ntlab.live import ring as rg
from ntlab.live.latency import now_ns_nb
from ntlab.live.ring import Ring

NO_JIT = bool(numba.config.DISABLE_JIT)
POLICIES = ("drop_newest", "overwrite_oldest")
KERNELS = ("_claim_nb", "claim_nb", "publish_nb", "push_nb", "push5_nb", "pop_into_nb")


@pytest.fixture(params=["jit", "py"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``jit``: the kernels as they are; ``py``: their Python bodies (for coverage)."""
    if request.param == "py":
        for name in KERNELS:
            fn = getattr(rg, name)
            monkeypatch.setattr(rg, name, getattr(fn, "py_func", fn))
    return request.param


def _rows(seq: np.ndarray, width: int = 3) -> np.ndarray:
    """The payload of the rows numbered ``seq``: column j is ``seq * (j + 1) + j / 2``."""
    seq = np.asarray(seq, dtype=np.float64)
    return seq[:, None] * np.arange(1, width + 1) + np.arange(width) / 2


# ---------------------------------------------------------------------------------------------
# Contents, order, overflow


def test_fifo_exact_contents(mode: str) -> None:
    ring = Ring(8, 3, overflow="drop_newest", name="events")
    expected = _rows(np.arange(5))
    assert all(ring.push(row) for row in expected)
    assert len(ring) == 5
    out = ring.pop_many()
    assert out.dtype == np.float64 and out.shape == (5, 3)
    np.testing.assert_array_equal(out, expected)
    assert len(ring) == 0 and ring.pop_many().shape == (0, 3)
    assert ring.stats() == {
        "capacity": 8, "depth": 0, "pushed": 5, "popped": 5, "dropped": 0, "overwritten": 0,
        "rejected": 0,
    }  # fmt: skip


def test_pop_many_max_rows_and_pop_into(mode: str) -> None:
    ring = Ring(16, 3, overflow="drop_newest")
    for row in _rows(np.arange(10)):
        ring.push(row)
    np.testing.assert_array_equal(ring.pop_many(4), _rows(np.arange(4)))
    assert ring.pop_many(0).shape == (0, 3)
    buf = np.full((4, 3), -1.0)
    assert ring.pop_into(buf) == 4
    np.testing.assert_array_equal(buf, _rows(np.arange(4, 8)))
    assert ring.pop_into(buf) == 2
    np.testing.assert_array_equal(buf[:2], _rows(np.arange(8, 10)))
    assert ring.pop_into(buf) == 0
    assert ring.stats()["popped"] == 10


@pytest.mark.parametrize("overflow", POLICIES)
def test_wraparound_against_a_model(mode: str, overflow: str) -> None:
    """Random bursts of pushes and pops, many laps of a ring of 8, against a deque."""
    cap, rng = 8, np.random.default_rng(7)
    ring = Ring(cap, 3, overflow=overflow)
    model: deque[int] = deque()
    seq = dropped = overwritten = popped = 0
    for _ in range(300):
        for _ in range(int(rng.integers(0, 12))):
            accepted = ring.push(_rows([seq])[0])
            if len(model) < cap:
                model.append(seq)
            elif overflow == "drop_newest":
                dropped += 1
            else:
                model.popleft()
                model.append(seq)
                overwritten += 1
            assert accepted == (overflow == "overwrite_oldest" or model[-1] == seq)
            seq += 1
        want = int(rng.integers(0, 10))
        out = ring.pop_many(want)
        expect = [model.popleft() for _ in range(min(want, len(model)))]
        np.testing.assert_array_equal(out, _rows(expect).reshape(-1, 3))
        popped += len(expect)
        st = ring.stats()
        assert (st["dropped"], st["overwritten"], st["popped"], st["depth"]) == (
            dropped, overwritten, popped, len(model),
        )  # fmt: skip
        assert st["pushed"] == st["popped"] + st["overwritten"] + st["depth"]
    assert seq > 50 * cap  # many laps


def test_drop_newest_keeps_the_oldest_and_counts(mode: str) -> None:
    ring = Ring(4, 3, overflow="drop_newest")
    results = [ring.push(row) for row in _rows(np.arange(10))]
    assert results == [True] * 4 + [False] * 6
    np.testing.assert_array_equal(ring.pop_many(), _rows(np.arange(4)))
    st = ring.stats()
    assert (st["pushed"], st["dropped"], st["popped"]) == (4, 6, 4)
    assert ring.push(_rows([10])[0])  # room again
    np.testing.assert_array_equal(ring.pop_many(), _rows([10]))


def test_overwrite_oldest_keeps_the_newest_and_counts(mode: str) -> None:
    ring = Ring(4, 3, overflow="overwrite_oldest")
    assert all(ring.push(row) for row in _rows(np.arange(10)))
    assert len(ring) == 4
    st = ring.stats()  # the lost rows are known before the pop skips them
    assert (st["pushed"], st["overwritten"], st["depth"]) == (10, 6, 4)
    np.testing.assert_array_equal(ring.pop_many(), _rows(np.arange(6, 10)))
    st = ring.stats()
    assert (st["popped"], st["overwritten"], st["depth"]) == (4, 6, 0)


def test_overwrite_skips_a_row_being_written(mode: str) -> None:
    """A write that has started (announced, not yet published) makes its slot's row unsafe."""
    ring = Ring(4, 3, overflow="overwrite_oldest")
    for row in _rows(np.arange(4)):
        ring.push(row)
    data, control = ring.arrays()
    # the producer announced row 4 (the slot of row 0) and is writing it: half a row
    control[rg.C_RESERVED] = control[rg.C_HEAD] + 1
    data[0, 0] = 4.0
    out = ring.pop_many()
    np.testing.assert_array_equal(out, _rows(np.arange(1, 4)))
    st = ring.stats()
    assert (st["popped"], st["overwritten"], st["pushed"]) == (3, 1, 4)


def test_overwrite_discards_rows_overwritten_during_the_copy(mode: str) -> None:
    """Every copied row whose slot a started write may touch is discarded, whatever the lap."""
    ring = Ring(4, 3, overflow="overwrite_oldest")
    for row in _rows(np.arange(4)):
        ring.push(row)
    _, control = ring.arrays()
    control[rg.C_RESERVED] = control[rg.C_HEAD] + 9  # the producer lapped twice meanwhile
    assert ring.pop_many().shape == (0, 3)
    assert ring.stats()["overwritten"] == 4


def test_compiled_claim_publish_and_push5(mode: str) -> None:
    ring = Ring(8, 5, overflow="drop_newest")
    data, control = ring.arrays()
    for k in range(3):
        i = rg.claim_nb(data, control)
        data[i] = np.arange(5) + 10 * k
        rg.publish_nb(control, i)
    assert rg.push5_nb(data, control, 1.0, 2.0, 3.0, 4.0, 5.0)
    assert rg.push_nb(data, control, np.full(5, 7.0))
    out = ring.pop_many()
    np.testing.assert_array_equal(out[:3], np.arange(5) + 10 * np.arange(3)[:, None])
    np.testing.assert_array_equal(out[3:], [[1, 2, 3, 4, 5], [7, 7, 7, 7, 7]])
    for _ in range(8):
        rg.push5_nb(data, control, 0, 0, 0, 0, 0)
    i = rg.claim_nb(data, control)  # full: dropped, and publishing it is a no-op
    rg.publish_nb(control, i)
    assert i == -1 and len(ring) == 8 and ring.stats()["dropped"] == 1


def test_compiled_pushes_of_the_wrong_width_are_rejected(mode: str) -> None:
    ring = Ring(8, 3, overflow="drop_newest")
    data, control = ring.arrays()
    assert not rg.push_nb(data, control, np.ones(4))
    assert not rg.push5_nb(data, control, 1, 2, 3, 4, 5)
    st = ring.stats()
    assert (st["rejected"], st["pushed"], st["dropped"], len(ring)) == (2, 0, 0, 0)


def test_repr_len_and_properties(mode: str) -> None:
    ring = Ring(16, 2, overflow="overwrite_oldest", name="ticks")
    ring.push([1.0, 2.0])
    text = repr(ring)
    assert text.startswith("Ring('ticks', capacity=16, width=2, overflow='overwrite_oldest'")
    assert "depth=1" in text and "pushed=1" in text
    assert (ring.capacity, ring.width, len(ring)) == (16, 2, 1)
    assert repr(Ring(1, 1, overflow="drop_newest")).startswith("Ring(capacity=1,")


# ---------------------------------------------------------------------------------------------
# Threads: a compiled producer without the GIL, the main thread popping


@njit(nogil=True)
def _produce(
    data: np.ndarray, control: np.ndarray, go: np.ndarray, n: int, scalar: bool, burst: int
) -> int:
    """Push rows 0..n-1 of :func:`_rows` (width 5) as fast as possible; returns the accepted.

    Starts when ``go[0]`` is set, and every ``burst`` rows waits for the ring to be half empty
    (20 ms at most): the two threads interleave at least n / burst times, even on a loaded
    machine, and each burst overflows the ring (or laps it, many times) while the consumer
    copies. With these settings, a consumer that frees rows before copying them, or that skips
    the re-check of ``"overwrite_oldest"``, failed this test in each of 5 trial runs.
    """
    while rg.load_acquire(go, 0) == 0:
        pass
    cap = data.shape[0]
    row = np.empty(5)
    ok = 0
    for s in range(n):
        if s % burst == 0:
            t0 = now_ns_nb()
            while control[rg.C_HEAD] - rg.load_acquire(control, rg.C_TAIL) > cap // 2:
                if now_ns_nb() - t0 > 20_000_000:
                    break
        if scalar:
            ok += rg.push5_nb(
                data, control, s, 2.0 * s + 0.5, 3.0 * s + 1, 4.0 * s + 1.5, 5.0 * s + 2
            )
        else:
            for j in range(5):
                row[j] = s * (j + 1) + j / 2
            ok += rg.push_nb(data, control, row)
    return ok


@pytest.mark.parametrize(
    ("overflow", "scalar", "burst"),
    [("drop_newest", False, 2048), ("overwrite_oldest", True, 16384)],
)
def test_threaded_producer_consumer(overflow: str, scalar: bool, burst: int) -> None:
    n = 20_000 if NO_JIT else 2_000_000
    ring = Ring(1024, 5, overflow=overflow)
    warm = Ring(1024, 5, overflow=overflow)  # compile / load the kernels before the race
    warm.push(np.zeros(5))
    warm.pop_many()
    go = np.zeros(1, dtype=np.int64)
    accepted: list[int] = []
    producer = threading.Thread(
        target=lambda: accepted.append(_produce(*ring.arrays(), go, n, scalar, burst))
    )
    producer.start()
    go[0] = 1
    last, popped, batches, disorder, torn = -1.0, 0, 0, 0, 0
    while True:
        alive = producer.is_alive()
        out = ring.pop_many()
        if out.shape[0]:
            seq = out[:, 0]
            disorder += int(seq[0] <= last) + int(np.sum(np.diff(seq) <= 0))
            torn += int(np.sum(np.any(out != _rows(seq, 5), axis=1)))
            last, popped, batches = seq[-1], popped + out.shape[0], batches + 1
        elif not alive:
            break
    producer.join()
    st = ring.stats()
    assert disorder == 0, "rows out of order"
    assert torn == 0, "rows whose payload does not match their sequence number"
    assert st["popped"] == popped and st["depth"] == 0 and batches > 1
    if overflow == "drop_newest":
        assert popped + st["dropped"] == n and accepted == [popped] and st["pushed"] == popped
    else:
        assert popped + st["overwritten"] == n and accepted == [n] and st["pushed"] == n
        assert last == n - 1  # the newest row always survives


# ---------------------------------------------------------------------------------------------
# Atomics and errors


def test_atomics_compile_and_act() -> None:
    @njit
    def dance(c: np.ndarray) -> int:
        rg.store_relaxed(c, 1, 5)
        rg.fence_release()
        rg.store_release(c, 0, rg.load_acquire(c, 1) + 1)
        rg.fence_acquire()
        rg._compiler_barrier()
        return rg.load_acquire(c, 0)

    c = np.zeros(4, dtype=np.int64)
    assert dance(c) == 6 and c.tolist() == [6, 5, 0, 0]


@pytest.mark.skipif(NO_JIT, reason="typing errors exist only when compiling")
def test_atomics_reject_other_arrays() -> None:
    @njit
    def bad(c: np.ndarray) -> int:
        return rg.load_acquire(c, 0)

    @njit
    def bad_store(c: np.ndarray) -> None:
        rg.store_release(c, 0, 1.5)

    with pytest.raises(numba.core.errors.TypingError):
        bad(np.zeros(4))
    with pytest.raises(numba.core.errors.TypingError):
        bad_store(np.zeros(4, dtype=np.int64))


@pytest.mark.parametrize(
    ("capacity", "width", "overflow", "match"),
    [
        (1000, 4, "drop_newest", r"power of two, got 1000; use 1024"),
        (0, 4, "drop_newest", r"power of two, got 0; use 1"),
        (8.0, 4, "drop_newest", r"capacity must be an int, got 8\.0"),
        (True, 4, "drop_newest", r"capacity must be an int, got True"),
        (8, 0, "drop_newest", r"width must be at least 1, got 0"),
        (8, "5", "drop_newest", r"width must be an int, got '5'"),
        (8, 4, "drop_oldest", r"'drop_newest' or 'overwrite_oldest', got 'drop_oldest'"),
    ],
)
def test_bad_configuration(capacity: object, width: object, overflow: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Ring(capacity, width, overflow=overflow)  # type: ignore[arg-type]


def test_bad_rows_and_buffers() -> None:
    ring = Ring(8, 3, overflow="drop_newest", name="fills")
    with pytest.raises(DataError, match=r"ring fills has 3 values, got shape \(2,\); pass a 1-D"):
        ring.push([1.0, 2.0])
    with pytest.raises(DataError, match=r"got shape \(1, 3\)"):
        ring.push([[1.0, 2.0, 3.0]])
    with pytest.raises(ConfigError, match=r"max_rows must be >= 0, got -1"):
        ring.pop_many(-1)
    with pytest.raises(ConfigError, match=r"max_rows must be an int, got 2\.5"):
        ring.pop_many(2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"float64\[m, 3\] array, got float32\[4, 3\]"):
        ring.pop_into(np.empty((4, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"got <class 'list'>"):
        ring.pop_into([[0.0] * 3])  # type: ignore[arg-type]
    assert ring.stats()["rejected"] == 0  # refused in Python, before the kernel
