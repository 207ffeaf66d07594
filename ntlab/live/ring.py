"""Lock-free single-producer single-consumer ring buffers of fixed-width ``float64`` rows.

The live engine (a thread running compiled code without the GIL) pushes rows (events,
snapshots) with :func:`push_nb` (~2.6 ns inlined in a compiled loop), :func:`push5_nb` (~2 ns,
five scalars, no row array) or :func:`claim_nb` + :func:`publish_nb` (write the row in place);
a consumer in another thread (UI, telemetry, a recorder) takes them with
:meth:`Ring.pop_many`. Exactly one producer and one consumer at a time: two producers (or two
consumers) on one ring corrupt it.

Layout
------
``data`` is ``float64[capacity, width]`` (``capacity`` a power of two) and ``control`` an
``int64[CONTROL_SIZE]`` array of monotonic 64-bit counters; a counter ``c`` lives in row
``c & (capacity - 1)``. The producer's slots and the consumer's slots are 64 bytes apart, so
they never share a cache line:

* ``control[C_HEAD]``: rows published (written only by the producer);
* ``control[C_DROPPED]``: pushes refused under ``"drop_newest"`` (producer);
* ``control[C_TAIL_CACHE]``: the producer's last view of the tail (saves a shared read a push);
* ``control[C_RESERVED]``: rows whose write has started (producer, ``"overwrite_oldest"``);
* ``control[C_POLICY]``: :data:`DROP_NEWEST` or :data:`OVERWRITE_OLDEST` (constant);
* ``control[C_REJECTED]``: compiled pushes of a row of the wrong length (producer);
* ``control[C_TAIL]``: rows consumed, returned or lost (written only by the consumer);
* ``control[C_OVERWRITTEN]``: rows lost to overwriting, counted by the consumer.

Overflow
--------
``"drop_newest"``: a push into a full ring changes nothing, returns ``False`` and counts one
in ``dropped``; the consumer gets every row that was accepted. ``"overwrite_oldest"``: a push
always succeeds and may overwrite the oldest unread row; the consumer notices (``head - tail >
capacity``), skips the lost rows and counts them in ``overwritten``. In both cases
``pushed == popped + overwritten + depth`` at any quiet moment (:meth:`Ring.stats`).

Memory ordering
---------------
The counters are published with real atomics, emitted from Numba through LLVM (``store
atomic release``, ``load atomic acquire``, ``fence``): the producer writes the payload, then
stores ``head + 1`` with release semantics, so a consumer that loads ``head`` with acquire
semantics sees every row below it complete; the consumer copies rows out, then stores the
tail with release semantics, so a producer that loads the tail (acquire) never overwrites a row
still being copied. Under ``"overwrite_oldest"`` the producer may overwrite rows the consumer
is copying, so it works as a sequence lock: it announces the row it starts
(``control[C_RESERVED]``, then a release fence, then the payload), and the consumer, after its
copy, issues an acquire fence, re-reads ``C_RESERVED`` and discards (and counts) every copied
row whose slot a started write may have touched: it never returns a torn row. On x86-64
(total store order) the fences and the acquire/release accesses compile to plain moves and
only stop the compiler from reordering; on weakly ordered CPUs (ARM) LLVM emits the barriers
they need. Under ``NUMBA_DISABLE_JIT=1`` everything runs as Python under the GIL, which
serialises the threads.

Examples
--------
>>> ring = Ring(4, 2, overflow="drop_newest")
>>> [ring.push([float(i), -float(i)]) for i in range(5)]
[True, True, True, True, False]
>>> ring.pop_many(3)
array([[ 0., -0.],
       [ 1., -1.],
       [ 2., -2.]])
>>> ring.stats()["dropped"], len(ring)
(1, 1)
"""

from __future__ import annotations

import operator
from typing import Any, Literal

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ntlab.exceptions import ConfigError, DataError
from ntlab.kernels._common import _KW

__all__ = [
    "CONTROL_SIZE",
    "C_DROPPED",
    "C_HEAD",
    "C_OVERWRITTEN",
    "C_POLICY",
    "C_REJECTED",
    "C_RESERVED",
    "C_TAIL",
    "C_TAIL_CACHE",
    "DROP_NEWEST",
    "OVERWRITE_OLDEST",
    "Ring",
    "claim_nb",
    "pop_into_nb",
    "publish_nb",
    "push5_nb",
    "push_nb",
]

# control slots: the producer's (0..7) and the consumer's (8..15) sit on different cache lines
C_HEAD = 0
C_DROPPED = 1
C_TAIL_CACHE = 2
C_RESERVED = 3
C_POLICY = 4
C_REJECTED = 5
C_TAIL = 8
C_OVERWRITTEN = 9
CONTROL_SIZE = 16

DROP_NEWEST = 0
OVERWRITE_OLDEST = 1
_POLICIES = {"drop_newest": DROP_NEWEST, "overwrite_oldest": OVERWRITE_OLDEST}


# ---------------------------------------------------------------------------------------------
# Atomics. Each is a plain Python function (what runs from Python and under NUMBA_DISABLE_JIT,
# where the GIL orders everything) overloaded for compiled callers by an LLVM intrinsic.


def load_acquire(a: np.ndarray, i: int) -> int:
    """``a[i]`` read with acquire semantics (later reads cannot move before it)."""
    return int(a[i])


def store_release(a: np.ndarray, i: int, v: int) -> None:
    """``a[i] = v`` with release semantics (earlier writes cannot move after it)."""
    a[i] = v


def store_relaxed(a: np.ndarray, i: int, v: int) -> None:
    """``a[i] = v`` as one atomic store, with no ordering."""
    a[i] = v


def fence_release() -> None:
    """Release fence: no earlier access moves after a later store."""


def fence_acquire() -> None:
    """Acquire fence: no later access moves before an earlier load."""


def _compiler_barrier() -> None:
    """No memory access moves across it at compile time; emits no instruction."""


def _slot_ptr(context: Any, builder: Any, sig: Any, args: Any) -> Any:
    """Pointer to ``arr[idx]`` of an intrinsic's first two arguments."""
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    idx = context.cast(builder, args[1], sig.args[1], types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [idx])


def _is_i64_vector(arr: Any, idx: Any) -> bool:
    return (
        isinstance(arr, types.Array)
        and arr.dtype == types.int64
        and arr.ndim == 1
        and isinstance(idx, types.Integer)
    )


@intrinsic
def _load_acquire_intr(typingctx: Any, arr: Any, idx: Any) -> Any:
    if not _is_i64_vector(arr, idx):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.load_atomic(_slot_ptr(context, builder, sig, args), "acquire", 8)

    return types.int64(arr, idx), codegen


def _store_intrinsic(ordering: str) -> Any:
    @intrinsic
    def _store(typingctx: Any, arr: Any, idx: Any, val: Any) -> Any:
        if not (_is_i64_vector(arr, idx) and isinstance(val, types.Integer)):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            value = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(value, _slot_ptr(context, builder, sig, args), ordering, 8)
            return context.get_dummy_value()

        return types.void(arr, idx, val), codegen

    return _store


def _fence_intrinsic(ordering: str) -> Any:
    @intrinsic
    def _fence(typingctx: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return _fence


_store_release_intr = _store_intrinsic("release")
_store_relaxed_intr = _store_intrinsic("monotonic")
_fence_release_intr = _fence_intrinsic("release")
_fence_acquire_intr = _fence_intrinsic("acquire")


@intrinsic
def _barrier_intr(typingctx: Any) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        # an empty inline assembly that clobbers memory: a compiler barrier on every target
        builder.asm(ir.FunctionType(ir.VoidType(), []), "", "~{memory}", [], side_effect=True)
        return context.get_dummy_value()

    return types.void(), codegen


# (no annotations on the overloads: Numba checks that typing and implementation signatures match)
@overload(load_acquire)
def _ov_load_acquire(a, i):
    return lambda a, i: _load_acquire_intr(a, i)


@overload(store_release)
def _ov_store_release(a, i, v):
    return lambda a, i, v: _store_release_intr(a, i, v)


@overload(store_relaxed)
def _ov_store_relaxed(a, i, v):
    return lambda a, i, v: _store_relaxed_intr(a, i, v)


@overload(fence_release)
def _ov_fence_release():
    return lambda: _fence_release_intr()


@overload(fence_acquire)
def _ov_fence_acquire():
    return lambda: _fence_acquire_intr()


@overload(_compiler_barrier)
def _ov_compiler_barrier():
    return lambda: _barrier_intr()


# ---------------------------------------------------------------------------------------------
# Producer (compiled)
#
# Written to be inlined into the caller's loop with no reference counting left: one exit, and
# the arrays used after every branch (an array whose last use sits inside an ``if`` makes
# Numba's reference-count pruning fail: ~25 ns a call instead of ~2). Hence the loops of 0 or 1
# trip instead of ``if``, and ``publish_nb`` taking the claimed index.


@njit(**_KW)
def _claim_nb(data: np.ndarray, control: np.ndarray, fits: bool) -> int:
    """:func:`claim_nb`, or a rejected push (``-1``, counted) when ``fits`` is ``False``."""
    h = control[C_HEAD]
    cap = data.shape[0]
    # Sequence lock of "overwrite_oldest" (harmless under "drop_newest", and branch-free):
    # announce the row, and order the announcement before the payload that may overwrite it.
    store_relaxed(control, C_RESERVED, h + (1 if fits else 0))
    fence_release()
    room = fits
    if fits and control[C_POLICY] == DROP_NEWEST and h - control[C_TAIL_CACHE] >= cap:
        t = load_acquire(control, C_TAIL)  # the consumer's line, read only when needed
        control[C_TAIL_CACHE] = t
        room = h - t < cap
    control[C_DROPPED] += 1 if fits and not room else 0
    control[C_REJECTED] += 0 if fits else 1
    return (h & (cap - 1)) if room else -1


@njit(**_KW)
def claim_nb(data: np.ndarray, control: np.ndarray) -> int:
    """Reserve the next row for writing: its index in ``data``, or ``-1`` when dropped.

    Write ``data[i, :]``, then call ``publish_nb(control, i)``: nothing is visible before.
    Under ``"drop_newest"`` a full ring returns ``-1`` and counts the drop; under
    ``"overwrite_oldest"`` it always returns a row.
    """
    return _claim_nb(data, control, True)


@njit(**_KW)
def publish_nb(control: np.ndarray, i: int) -> None:
    """Publish the row claimed by :func:`claim_nb` (a release store of ``head + 1``).

    ``i`` is what :func:`claim_nb` returned; ``i < 0`` (dropped) publishes nothing, so the
    call can follow the ``if i >= 0:`` block that writes the row.
    """
    store_release(control, C_HEAD, control[C_HEAD] + (1 if i >= 0 else 0))


@njit(**_KW)
def push_nb(data: np.ndarray, control: np.ndarray, row: np.ndarray) -> bool:
    """Append ``row`` (``width`` values): copy it, then publish it.

    Returns ``False`` when ``"drop_newest"`` dropped it (``control[C_DROPPED]`` counts it) and
    when ``len(row) != width`` (nothing is written; ``control[C_REJECTED]`` counts it: compiled
    code cannot raise here without slowing every push, :meth:`Ring.push` raises instead).
    """
    width = data.shape[1]
    i = _claim_nb(data, control, row.shape[0] == width)
    n = width if i >= 0 else 0
    for j in range(n):
        data[i, j] = row[j]
        # A compiler-only barrier (no instruction): it keeps LLVM from vectorising and unrolling
        # this loop, which then becomes too large to inline (~7 ns a push instead of ~3).
        _compiler_barrier()
    publish_nb(control, i)
    return i >= 0


@njit(**_KW)
def push5_nb(
    data: np.ndarray, control: np.ndarray, a: float, b: float, c: float, d: float, e: float
) -> bool:
    """:func:`push_nb` of the row ``(a, b, c, d, e)`` into a ring of width 5, without an array.

    No row array to fill and copy: ~2.0 ns a push against ~2.6 for :func:`push_nb`. ``False``
    when dropped, and when the ring's width is not 5 (counted in ``control[C_REJECTED]``,
    nothing written).
    """
    i = _claim_nb(data, control, data.shape[1] == 5)
    for _ in range(1 if i >= 0 else 0):
        data[i, 0] = a
        data[i, 1] = b
        data[i, 2] = c
        data[i, 3] = d
        data[i, 4] = e
    publish_nb(control, i)
    return i >= 0


# ---------------------------------------------------------------------------------------------
# Consumer (compiled core of Ring.pop_many)


@njit(**_KW)
def pop_into_nb(data: np.ndarray, control: np.ndarray, out: np.ndarray) -> int:
    """Move up to ``len(out)`` of the oldest rows into ``out``; returns how many (``out[:n]``).

    Advances the tail once. Under ``"overwrite_oldest"`` rows already overwritten are skipped,
    and so are rows a concurrent push may have touched during the copy; both are counted in
    ``control[C_OVERWRITTEN]``.
    """
    cap = data.shape[0]
    mask = cap - 1
    width = data.shape[1]
    t = control[C_TAIL]
    h = load_acquire(control, C_HEAD)
    overwrite = control[C_POLICY] == OVERWRITE_OLDEST
    lost = 0
    if overwrite and h - t > cap:
        lost = h - cap - t
        t = h - cap
    n = min(h - t, out.shape[0])
    for k in range(n):
        i = (t + k) & mask
        for j in range(width):
            out[k, j] = data[i, j]
    if overwrite:
        fence_acquire()
        # a write that started (C_RESERVED = r) may have touched the rows below r - cap
        bad = min(max(load_acquire(control, C_RESERVED) - cap - t, 0), n)
        if bad > 0:
            for k in range(n - bad):
                for j in range(width):
                    out[k, j] = out[k + bad, j]
            lost += bad
            t += bad
            n -= bad
        control[C_OVERWRITTEN] += lost
    store_release(control, C_TAIL, t + n)
    return n


# ---------------------------------------------------------------------------------------------
# Python API


def _as_int(value: Any, what: str, fix: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be an int, got {value!r}; {fix}")
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{what} must be an int, got {value!r}; {fix}") from None


class Ring:
    """A single-producer single-consumer ring of ``float64`` rows of ``width`` values.

    Parameters
    ----------
    capacity : int
        Rows it holds, a power of two (the index of counter ``c`` is ``c & (capacity - 1)``).
    width : int
        Values per row, at least 1.
    overflow : {"drop_newest", "overwrite_oldest"}
        What a push into a full ring does: refuse the new row (``push`` returns ``False``,
        ``dropped`` counts it) or overwrite the oldest unread row (``overwritten`` counts it).
    name : str
        Shown by ``repr``.

    Notes
    -----
    The producer is compiled code (``push_nb(*ring.arrays(), row)``) or :meth:`push`, the
    consumer :meth:`pop_many` / :meth:`pop_into` (compiled, without the GIL): one thread each.
    """

    def __init__(
        self,
        capacity: int,
        width: int,
        *,
        overflow: Literal["drop_newest", "overwrite_oldest"],
        name: str = "",
    ) -> None:
        cap = _as_int(capacity, "capacity", "pass a power of two such as 1024")
        if cap < 1 or cap & (cap - 1):
            nxt = 1 << max(cap - 1, 0).bit_length()
            raise ConfigError(
                f"capacity must be a power of two, got {capacity!r}; use {nxt} (the next one up)"
            )
        w = _as_int(width, "width", "pass the number of values per row")
        if w < 1:
            raise ConfigError(f"width must be at least 1, got {width!r}; pass the values per row")
        if overflow not in _POLICIES:
            raise ConfigError(
                f"overflow must be 'drop_newest' or 'overwrite_oldest', got {overflow!r}"
            )
        self.name = str(name)
        self.overflow = overflow
        self._data = np.zeros((cap, w), dtype=np.float64)
        self._control = np.zeros(CONTROL_SIZE, dtype=np.int64)
        self._control[C_POLICY] = _POLICIES[overflow]

    @property
    def capacity(self) -> int:
        """Rows the ring holds."""
        return self._data.shape[0]

    @property
    def width(self) -> int:
        """Values per row."""
        return self._data.shape[1]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(data, control)`` for compiled producers: ``push_nb(data, control, row)``."""
        return self._data, self._control

    def push(self, row: Any) -> bool:
        """Append one row of ``width`` values (producer side); ``False`` when dropped."""
        values = np.asarray(row, dtype=np.float64)
        if values.ndim != 1 or values.shape[0] != self.width:
            raise DataError(
                f"a row of ring {self.name or '<unnamed>'} has {self.width} values, got shape "
                f"{values.shape}; pass a 1-D sequence of {self.width} numbers"
            )
        return bool(push_nb(self._data, self._control, values))

    def pop_into(self, out: np.ndarray) -> int:
        """Move up to ``len(out)`` of the oldest rows into ``out`` (consumer side).

        ``out`` is a writable C-contiguous ``float64[m, width]`` array; returns ``n``, the rows
        are ``out[:n]``. No allocation: for a consumer polling in a loop.
        """
        if not (
            isinstance(out, np.ndarray)
            and out.dtype == np.float64
            and out.ndim == 2
            and out.shape[1] == self.width
            and out.flags.c_contiguous
            and out.flags.writeable
        ):
            got = f"{out.dtype}{list(out.shape)}" if isinstance(out, np.ndarray) else type(out)
            raise ConfigError(
                f"out must be a writable C-contiguous float64[m, {self.width}] array, got {got}; "
                f"use np.empty((m, {self.width}))"
            )
        return int(pop_into_nb(self._data, self._control, out))

    def pop_many(self, max_rows: int | None = None) -> np.ndarray:
        """The oldest available rows, at most ``max_rows``, as a new ``float64[n, width]``.

        Rows come in push order; the tail moves once. Under ``"overwrite_oldest"`` rows lost
        to the producer are skipped and counted, never returned half written.
        """
        avail = len(self)
        if max_rows is not None:
            m = _as_int(max_rows, "max_rows", "pass a row count or None for all")
            if m < 0:
                raise ConfigError(f"max_rows must be >= 0, got {max_rows!r}; or None for all")
            avail = min(avail, m)
        out = np.empty((avail, self.width), dtype=np.float64)
        if avail == 0:
            return out
        n = pop_into_nb(self._data, self._control, out)
        return out if n == avail else out[:n]

    def __len__(self) -> int:
        """Rows waiting to be popped (at most ``capacity``)."""
        return min(max(int(self._control[C_HEAD] - self._control[C_TAIL]), 0), self.capacity)

    def stats(self) -> dict[str, int]:
        """Counters: capacity, depth, pushed, popped, dropped, overwritten, rejected.

        ``pushed`` counts the accepted rows (``pushed + dropped + rejected`` push calls);
        ``rejected`` the compiled pushes of a row of the wrong length. ``overwritten`` includes
        the rows already overwritten but not yet skipped by a pop, so that
        ``pushed == popped + overwritten + depth`` whenever the producer is idle. Read from a
        third thread while both sides run, the counters can be a few rows apart.
        """
        c = self._control
        tail = int(c[C_TAIL])  # before the head: the head read next is at least as recent
        overwritten = int(c[C_OVERWRITTEN])
        head = int(c[C_HEAD])
        depth = min(max(head - tail, 0), self.capacity)
        return {
            "capacity": self.capacity,
            "depth": depth,
            "pushed": head,
            "popped": tail - overwritten,
            "dropped": int(c[C_DROPPED]),
            "overwritten": overwritten + max(head - tail - depth, 0),
            "rejected": int(c[C_REJECTED]),
        }

    def __repr__(self) -> str:
        s = self.stats()
        name = f"{self.name!r}, " if self.name else ""
        return (
            f"Ring({name}capacity={s['capacity']}, width={self.width}, "
            f"overflow={self.overflow!r}, depth={s['depth']}, pushed={s['pushed']}, "
            f"popped={s['popped']}, dropped={s['dropped']}, overwritten={s['overwritten']})"
        )
