"""Numba kernels of an L2 order book kept in preallocated sorted arrays.

One update rule, :func:`book_apply_diff_nb`, serves the live engine (one venue message per
call, through :class:`ntlab.data.orderbook.OrderBook`) and history (:func:`book_replay_nb`
loops the same rule over a whole recording), so a streamed book and a replayed book are
identical by construction.

Layout
------
One side of the book is a pair ``keys, qtys`` of ``float64[cap]`` arrays plus a level count
``n``; ``keys[:n]`` is sorted ascending and unique, and the BEST level is at index ``n - 1``.
Bids use ``key = price``, asks use ``key = -price``, so the same code serves both sides and an
update near the top of the book shifts only the few levels above it. Slots ``n..cap-1`` are
free. A level is removed when its new size is ``0.0``; removing a level that is not in the book
is a no-op (Binance says this can happen and is normal). Prices are matched by exact float
equality: the same decimal text always parses to the same double.

State
-----
``meta`` is an ``int64`` array of :data:`META_SIZE` slots: ``meta[M_NBID]``/``meta[M_NASK]``
the level counts, ``meta[M_LAST_ID]`` the update id the book is at (the snapshot's
``lastUpdateId``, then the ``u`` of each applied diff), ``meta[M_PHASE]`` one of ``PHASE_*``
and ``meta[M_TOUCHED]`` the top-touched bits (:data:`TOUCHED_BID` | :data:`TOUCHED_ASK`) of
the last applied diff: bit set when the diff changed a level at or better than the side's
best level before it (so that side's best level may have changed during the diff's window).

Sequencing (Binance's "How to manage a local order book correctly", spot/USD-M/COIN-M)
---------------------------------------------------------------------------------------
With ``L`` the update id of the book, a diff ``(U, u, pu)`` is handled as follows.

* Waiting for the first diff after a snapshot (``PHASE_AWAITING``):
  spot drops a diff with ``u <= L`` (:data:`STALE`) and needs ``U <= L + 1 <= u``;
  futures (USD-M and COIN-M) drop ``u < L`` and need ``U <= L <= u``.
* Synced (``PHASE_SYNCED``): a diff with ``u <= L`` was already applied and is dropped as
  :data:`STALE` (duplicates are harmless: levels carry absolute sizes); otherwise spot needs
  ``U == L + 1`` and futures need ``pu == L``.
* A diff that breaks these rules returns :data:`GAP` and puts the book in ``PHASE_INVALID``;
  every later diff returns :data:`OUT_OF_SYNC` until a new snapshot is applied. (Spot's
  current page words the synced check as "ignore ``u < L``, restart when ``U > L + 1``"; an
  overlapping spot diff, ``U <= L < u``, which a contiguous stream never sends, is a gap here.)
* A diff with a bad level (side not in {-1, 0, +1}, price not finite and > 0, size not finite
  and >= 0) returns :data:`BAD_LEVEL`, changes nothing and invalidates the book too: skipping a
  message would leave the book silently wrong.
* A diff that might not fit returns :data:`OVERFLOW` *before* changing anything, so the caller
  can grow the arrays (:func:`book_grow_nb`) and call again.
* Rows with ``side == 0`` are placeholders (a message without levels) and are skipped.

Examples
--------
>>> import numpy as np
>>> bk, bq, ak, aq, meta = book_new_nb(4)
>>> book_apply_snapshot_nb(bk, bq, ak, aq, meta, 10,
...     np.array([1, 1, -1], np.int8), np.array([99.0, 98.0, 101.0]), np.array([1.0, 2.0, 3.0]))
0
>>> book_apply_diff_nb(bk, bq, ak, aq, meta, 11, 12, -1, False,
...     np.array([1, -1], np.int8), np.array([100.0, 101.0]), np.array([5.0, 0.0]), 0, 2)
0
>>> float(bk[meta[M_NBID] - 1]), float(bq[meta[M_NBID] - 1]), int(meta[M_NASK])
(100.0, 5.0, 0)
>>> book_apply_diff_nb(bk, bq, ak, aq, meta, 14, 15, -1, False,
...     np.array([1], np.int8), np.array([97.0]), np.array([1.0]), 0, 1) == GAP
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "APPLIED",
    "BAD_LEVEL",
    "GAP",
    "META_SIZE",
    "M_LAST_ID",
    "M_NASK",
    "M_NBID",
    "M_PHASE",
    "M_TOUCHED",
    "NO_SNAPSHOT",
    "OUT_OF_SYNC",
    "OVERFLOW",
    "PHASE_AWAITING",
    "PHASE_EMPTY",
    "PHASE_INVALID",
    "PHASE_SYNCED",
    "STALE",
    "STATUS_NAMES",
    "TOUCHED_ASK",
    "TOUCHED_BID",
    "book_apply_diff_nb",
    "book_apply_snapshot_nb",
    "book_grow_nb",
    "book_new_nb",
    "book_replay_nb",
    "book_set_level_nb",
]

# status codes of one message
APPLIED = 0
STALE = 1
GAP = 2
OUT_OF_SYNC = 3
BAD_LEVEL = 4
NO_SNAPSHOT = 5
OVERFLOW = 6
STATUS_NAMES: tuple[str, ...] = (
    "applied",
    "stale",
    "gap",
    "out_of_sync",
    "bad_level",
    "no_snapshot",
    "overflow",
)

# meta slots
M_NBID = 0
M_NASK = 1
M_LAST_ID = 2
M_PHASE = 3
M_TOUCHED = 4
META_SIZE = 5

# phases
PHASE_EMPTY = 0
PHASE_AWAITING = 1
PHASE_SYNCED = 2
PHASE_INVALID = 3

TOUCHED_BID = 1
TOUCHED_ASK = 2


@njit(cache=True, nogil=True)
def book_new_nb(capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Allocate an empty book: ``(bid_keys, bid_qtys, ask_keys, ask_qtys, meta)``."""
    cap = max(capacity, 1)
    meta = np.zeros(META_SIZE, np.int64)
    meta[M_LAST_ID] = -1
    return np.zeros(cap), np.zeros(cap), np.zeros(cap), np.zeros(cap), meta


@njit(cache=True, nogil=True)
def book_grow_nb(
    keys: np.ndarray, qtys: np.ndarray, n: int, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return copies of one side with room for ``capacity`` levels (the first ``n`` kept)."""
    new_keys = np.zeros(max(capacity, n))
    new_qtys = np.zeros(max(capacity, n))
    new_keys[:n] = keys[:n]
    new_qtys[:n] = qtys[:n]
    return new_keys, new_qtys


@njit(cache=True, nogil=True)
def book_set_level_nb(keys: np.ndarray, qtys: np.ndarray, n: int, key: float, qty: float) -> int:
    """Set the level ``key`` of one side to ``qty`` (``0.0`` removes it).

    Returns the new level count, or ``-1`` when an insert does not fit (nothing changed).
    """
    i = np.searchsorted(keys[:n], key)
    if i < n and keys[i] == key:
        if qty == 0.0:
            keys[i : n - 1] = keys[i + 1 : n]
            qtys[i : n - 1] = qtys[i + 1 : n]
            return n - 1
        qtys[i] = qty
        return n
    if qty == 0.0:
        return n
    if n >= keys.shape[0]:
        return -1
    keys[i + 1 : n + 1] = keys[i:n]
    qtys[i + 1 : n + 1] = qtys[i:n]
    keys[i] = key
    qtys[i] = qty
    return n + 1


@njit(cache=True, nogil=True)
def _levels_ok_nb(
    sides: np.ndarray, prices: np.ndarray, sizes: np.ndarray, lo: int, hi: int
) -> bool:
    """True when rows ``lo..hi-1`` have side in {-1, 0, 1}, finite price > 0, finite size >= 0."""
    for j in range(lo, hi):
        s = sides[j]
        if s == 0:
            continue
        if s != 1 and s != -1:
            return False
        p = prices[j]
        q = sizes[j]
        if not (p > 0.0 and p < np.inf and q >= 0.0 and q < np.inf):
            return False
    return True


@njit(cache=True, nogil=True)
def book_apply_snapshot_nb(
    bid_keys: np.ndarray,
    bid_qtys: np.ndarray,
    ask_keys: np.ndarray,
    ask_qtys: np.ndarray,
    meta: np.ndarray,
    last_update_id: int,
    sides: np.ndarray,
    prices: np.ndarray,
    sizes: np.ndarray,
) -> int:
    """Replace the whole book by a snapshot at ``last_update_id``.

    ``sides`` (+1 bid, -1 ask; 0 rows are skipped), ``prices`` and ``sizes`` list the levels in
    any order, read as successive sets: a later duplicate of a price wins and a final size of
    0 leaves the price out. Needs capacity for every listed level of a side. Returns
    :data:`APPLIED` (book now in ``PHASE_AWAITING``), :data:`BAD_LEVEL` or :data:`OVERFLOW`
    (book unchanged in both cases).
    """
    m = sides.shape[0]
    if not _levels_ok_nb(sides, prices, sizes, 0, m):
        return BAD_LEVEL
    nb = 0
    na = 0
    for j in range(m):
        if sides[j] == 1:
            nb += 1
        elif sides[j] == -1:
            na += 1
    if nb > bid_keys.shape[0] or na > ask_keys.shape[0]:
        return OVERFLOW
    for side in (1, -1):
        keys = bid_keys if side == 1 else ask_keys
        qtys = bid_qtys if side == 1 else ask_qtys
        cnt = nb if side == 1 else na
        tmp_k = np.empty(cnt)
        tmp_q = np.empty(cnt)
        c = 0
        for j in range(m):
            if sides[j] == side:
                tmp_k[c] = prices[j] * side
                tmp_q[c] = sizes[j]
                c += 1
        order = np.argsort(tmp_k, kind="mergesort")
        n = 0
        for r in range(cnt):
            j = order[r]
            if n > 0 and keys[n - 1] == tmp_k[j]:
                qtys[n - 1] = tmp_q[j]  # a later duplicate wins (the sort is stable)
            else:
                keys[n] = tmp_k[j]
                qtys[n] = tmp_q[j]
                n += 1
        kept = 0
        for r in range(n):  # drop the levels whose final size is 0
            if qtys[r] > 0.0:
                keys[kept] = keys[r]
                qtys[kept] = qtys[r]
                kept += 1
        meta[M_NBID if side == 1 else M_NASK] = kept
    meta[M_LAST_ID] = last_update_id
    meta[M_PHASE] = PHASE_AWAITING
    meta[M_TOUCHED] = 0
    return APPLIED


@njit(cache=True, nogil=True)
def book_apply_diff_nb(
    bid_keys: np.ndarray,
    bid_qtys: np.ndarray,
    ask_keys: np.ndarray,
    ask_qtys: np.ndarray,
    meta: np.ndarray,
    first_update_id: int,
    update_id: int,
    prev_update_id: int,
    futures: bool,
    sides: np.ndarray,
    prices: np.ndarray,
    sizes: np.ndarray,
    lo: int,
    hi: int,
) -> int:
    """Apply one diff message (levels ``lo..hi-1`` of the level arrays) by Binance's rules.

    ``first_update_id`` is ``U``, ``update_id`` is ``u`` and ``prev_update_id`` is ``pu``
    (read for futures only). Returns one of the status codes; the module docstring gives the
    rules. On :data:`APPLIED`, ``meta[M_LAST_ID] = u`` and ``meta[M_TOUCHED]`` tells which
    sides' top was touched.
    """
    phase = meta[M_PHASE]
    if phase == PHASE_EMPTY:
        return NO_SNAPSHOT
    if phase == PHASE_INVALID:
        return OUT_OF_SYNC
    last = meta[M_LAST_ID]
    if phase == PHASE_AWAITING:
        if futures:
            if update_id < last:
                return STALE
            ok = first_update_id <= last and last <= update_id
        else:
            if update_id <= last:
                return STALE
            ok = first_update_id <= last + 1 and last + 1 <= update_id
    else:
        if update_id <= last:
            return STALE
        ok = prev_update_id == last if futures else first_update_id == last + 1
    if not ok:
        meta[M_PHASE] = PHASE_INVALID
        return GAP
    if not _levels_ok_nb(sides, prices, sizes, lo, hi):
        meta[M_PHASE] = PHASE_INVALID
        return BAD_LEVEL
    nb = meta[M_NBID]
    na = meta[M_NASK]
    add_b = 0
    add_a = 0
    best_b = bid_keys[nb - 1] if nb > 0 else -np.inf
    best_a = ask_keys[na - 1] if na > 0 else -np.inf
    touched = 0
    for j in range(lo, hi):
        s = sides[j]
        if s == 1:
            if sizes[j] > 0.0:
                add_b += 1
            if prices[j] >= best_b:
                touched |= TOUCHED_BID
        elif s == -1:
            if sizes[j] > 0.0:
                add_a += 1
            if -prices[j] >= best_a:
                touched |= TOUCHED_ASK
    if nb + add_b > bid_keys.shape[0] or na + add_a > ask_keys.shape[0]:
        return OVERFLOW
    for j in range(lo, hi):
        s = sides[j]
        if s == 1:
            nb = book_set_level_nb(bid_keys, bid_qtys, nb, prices[j], sizes[j])
        elif s == -1:
            na = book_set_level_nb(ask_keys, ask_qtys, na, -prices[j], sizes[j])
    meta[M_NBID] = nb
    meta[M_NASK] = na
    meta[M_LAST_ID] = update_id
    meta[M_PHASE] = PHASE_SYNCED
    meta[M_TOUCHED] = touched
    return APPLIED


@njit(cache=True, nogil=True)
def book_replay_nb(
    bid_keys: np.ndarray,
    bid_qtys: np.ndarray,
    ask_keys: np.ndarray,
    ask_qtys: np.ndarray,
    meta: np.ndarray,
    futures: bool,
    first_ids: np.ndarray,
    last_ids: np.ndarray,
    prev_ids: np.ndarray,
    offsets: np.ndarray,
    sides: np.ndarray,
    prices: np.ndarray,
    sizes: np.ndarray,
    start: int,
    out_status: np.ndarray,
    out_bid: np.ndarray,
    out_bid_size: np.ndarray,
    out_ask: np.ndarray,
    out_ask_size: np.ndarray,
    out_touched: np.ndarray,
) -> int:
    """Apply messages ``start..`` with :func:`book_apply_diff_nb`, recording each outcome.

    Message ``i`` has ids ``first_ids[i]`` (U), ``last_ids[i]`` (u), ``prev_ids[i]`` (pu) and
    levels ``offsets[i]..offsets[i+1]-1``. Per message it writes the status code, the best bid
    and ask (price and size, ``NaN`` for an empty side) after it (for applied and stale
    messages; ``NaN`` otherwise) and the top-touched bits (0 unless applied).

    Returns the index of the first message not processed: ``len(out_status)`` when all were;
    ``i + 1`` right after message ``i`` broke the book (:data:`GAP` or :data:`BAD_LEVEL`, so
    the caller can apply a new snapshot or mark the rest); ``i`` when message ``i`` needs more
    capacity (its status is not written: grow the arrays and call again from ``i``).
    """
    m = out_status.shape[0]
    for i in range(start, m):
        st = book_apply_diff_nb(
            bid_keys, bid_qtys, ask_keys, ask_qtys, meta,
            first_ids[i], last_ids[i], prev_ids[i], futures,
            sides, prices, sizes, offsets[i], offsets[i + 1],
        )  # fmt: skip
        if st == OVERFLOW:
            return i
        out_status[i] = st
        if st == APPLIED or st == STALE:
            nb = meta[M_NBID]
            na = meta[M_NASK]
            out_bid[i] = bid_keys[nb - 1] if nb > 0 else np.nan
            out_bid_size[i] = bid_qtys[nb - 1] if nb > 0 else np.nan
            out_ask[i] = -ask_keys[na - 1] if na > 0 else np.nan
            out_ask_size[i] = ask_qtys[na - 1] if na > 0 else np.nan
            out_touched[i] = meta[M_TOUCHED] if st == APPLIED else 0
        else:
            out_bid[i] = np.nan
            out_bid_size[i] = np.nan
            out_ask[i] = np.nan
            out_ask_size[i] = np.nan
            out_touched[i] = 0
            if st == GAP or st == BAD_LEVEL:
                return i + 1
    return m
