"""Order-book kernels, the streaming book, replays of every real recording and the BBO check."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ntlab.kernels.book as kb
from ntlab.data.loaders.binance import read_binance
from ntlab.data.orderbook import BookReplay, BookStatus, OrderBook, compare_bbo, rebuild_book
from ntlab.data.paths import data_file
from ntlab.data.schemas import TS, conform
from ntlab.exceptions import BookError, ConfigError, DataError

MARKETS = {
    "spot_btcusdt": (["spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"], "spot"),
    "spot_ethusdt": (["spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"], "spot"),
    "usdm_btcusdt": (["usdm/btcusdt_20240808.gz"], "futures"),
    "usdm_ethusdt": (["usdm/ethusdt_20240808.gz"], "futures"),
    "cm_btcusd_perp": (["cm/btcusd_perp_20240808.gz", "cm/btcusd_perp_20240809.gz"], "futures"),
}


@cache
def recording(key: str, stream: str) -> pl.DataFrame:
    files, _ = MARKETS[key]
    return read_binance([data_file(f"binance_l2_trades_2024-08-08/{f}") for f in files], stream=stream)


@cache
def replay(key: str) -> BookReplay:
    return rebuild_book(recording(key, "snapshot"), recording(key, "depth"), market=MARKETS[key][1])


# -- plain-Python reference -----------------------------------------------------------------


class RefBook:
    """Dict book with Binance's rules written out plainly."""

    def __init__(self, futures: bool) -> None:
        self.futures = futures
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.last: int | None = None
        self.synced = False
        self.invalid = False

    def snapshot(self, last: int, levels: list[tuple[int, float, float]]) -> None:
        self.bids, self.asks = {}, {}
        self.set_levels(levels)
        self.last, self.synced, self.invalid = last, False, False

    def set_levels(self, levels: list[tuple[int, float, float]]) -> None:
        for side, p, q in levels:
            book = self.bids if side == 1 else self.asks
            if q == 0:
                book.pop(p, None)
            else:
                book[p] = q

    def diff(self, first: int, last: int, prev: int, levels: list[tuple[int, float, float]]) -> str:
        if self.invalid:
            return "out_of_sync"
        L = self.last
        assert L is not None
        if not self.synced:
            if (last < L) if self.futures else (last <= L):
                return "stale"
            ok = (first <= L <= last) if self.futures else (first <= L + 1 <= last)
        else:
            if last <= L:
                return "stale"
            ok = (prev == L) if self.futures else (first == L + 1)
        if not ok:
            self.invalid = True
            return "gap"
        self.set_levels(levels)
        self.last, self.synced = last, True
        return "applied"

    def best(self) -> tuple[float, float, float, float]:
        bb = max(self.bids) if self.bids else math.nan
        ba = min(self.asks) if self.asks else math.nan
        return bb, self.bids.get(bb, math.nan), ba, self.asks.get(ba, math.nan)


def messages(depth: pl.DataFrame) -> list[tuple[int, int, int, list[tuple[int, float, float]]]]:
    pu = depth["prev_update_id"] if "prev_update_id" in depth.columns else pl.Series([-1] * depth.height)
    out: dict[int, tuple[int, int, int, list]] = {}
    for s, p, q, u, U, prev in zip(
        depth["side"], depth["price"], depth["size"], depth["update_id"], depth["first_update_id"], pu, strict=True
    ):
        out.setdefault(u, (U, u, prev, []))[3].append((s, p, q))
    return list(out.values())


# -- kernels against the reference -----------------------------------------------------------

LEVEL = st.tuples(st.sampled_from([1, -1]), st.integers(1, 30), st.sampled_from([0.0, 0.5, 1.0, 2.25]))


@settings(deadline=None, max_examples=60)
@given(st.lists(st.lists(LEVEL, max_size=8), max_size=25), st.lists(LEVEL, max_size=12))
def test_streaming_book_matches_dict_reference(diffs: list, snap: list) -> None:
    book = OrderBook("X", market="spot", capacity=1)
    ref = RefBook(futures=False)
    levels = [(s, float(p), q) for s, p, q in snap]
    bids = [(p, q) for s, p, q in levels if s == 1]
    asks = [(p, q) for s, p, q in levels if s == -1]
    book.apply_snapshot(7, [p for p, _ in bids], [q for _, q in bids], [p for p, _ in asks], [q for _, q in asks])
    ref.snapshot(7, levels)
    uid = 7
    for diff in diffs:
        lv = [(s, float(p), q) for s, p, q in diff]
        b = [(p, q) for s, p, q in lv if s == 1]
        a = [(p, q) for s, p, q in lv if s == -1]
        status = book.apply_diff(uid + 1, uid + 2, None, [p for p, _ in b], [q for _, q in b], [p for p, _ in a], [q for _, q in a])
        assert status.name.lower() == ref.diff(uid + 1, uid + 2, -1, [(1, p, q) for p, q in b] + [(-1, p, q) for p, q in a])
        uid += 2
        want = [(1, p, ref.bids[p]) for p in sorted(ref.bids, reverse=True)] + [(-1, p, ref.asks[p]) for p in sorted(ref.asks)]
        assert book.levels().rows() == want
        np.testing.assert_equal(book.best_bid + book.best_ask, ref.best())
    assert book.update_id == uid


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 20), st.sampled_from([0.0, 1.0, 3.5])), max_size=60), st.integers(1, 8))
def test_set_level_kernel_insert_replace_remove_and_overflow(ops: list, cap: int) -> None:
    keys, qtys = np.zeros(cap), np.zeros(cap)
    n = 0
    ref: dict[float, float] = {}
    for key, qty in ops:
        new = kb.book_set_level_nb(keys, qtys, n, float(key), qty)
        if new < 0:  # full: an insert was refused and nothing changed
            assert len(ref) == cap and float(key) not in ref and qty > 0
        else:
            n = new
            if qty == 0:
                ref.pop(float(key), None)
            else:
                ref[float(key)] = qty
        assert keys[:n].tolist() == sorted(ref)
        assert qtys[:n].tolist() == [ref[k] for k in sorted(ref)]


def test_snapshot_kernel_sorts_dedupes_and_drops_zeros() -> None:
    bk, bq, ak, aq, meta = kb.book_new_nb(2)
    sides = np.array([1, 1, 1, -1, 0, 1, -1], np.int8)
    prices = np.array([5.0, 7.0, 5.0, 9.0, np.nan, 6.0, 9.0])
    sizes = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 0.0, 0.0])
    assert kb.book_apply_snapshot_nb(bk, bq, ak, aq, meta, 3, sides, prices, sizes) == kb.OVERFLOW
    assert meta[kb.M_PHASE] == kb.PHASE_EMPTY
    bk, bq, ak, aq, meta = kb.book_new_nb(4)
    assert kb.book_apply_snapshot_nb(bk, bq, ak, aq, meta, 3, sides, prices, sizes) == kb.APPLIED
    assert (meta[kb.M_NBID], meta[kb.M_NASK], meta[kb.M_LAST_ID]) == (2, 0, 3)
    assert bk[:2].tolist() == [5.0, 7.0] and bq[:2].tolist() == [3.0, 2.0]
    bad = np.array([1.0, -1.0, 1.0, 1.0, np.nan, 1.0, 1.0])
    assert kb.book_apply_snapshot_nb(bk, bq, ak, aq, meta, 4, sides, prices, bad) == kb.BAD_LEVEL
    assert meta[kb.M_LAST_ID] == 3
    grown_k, grown_q = kb.book_grow_nb(bk, bq, 2, 10)
    assert grown_k.shape == (10,) and grown_k[:2].tolist() == [5.0, 7.0] and grown_q[:2].tolist() == [3.0, 2.0]


def test_status_enum_mirrors_kernel_codes() -> None:
    assert [s.value for s in BookStatus] == list(range(len(BookStatus)))
    assert [s.name.lower() for s in BookStatus] == list(kb.STATUS_NAMES[: len(BookStatus)])
    assert kb.STATUS_NAMES[kb.OVERFLOW] == "overflow"


# -- update-id rules -----------------------------------------------------------------------


def test_spot_rules() -> None:
    book = OrderBook("S", market="spot")
    assert book.apply_diff(1, 2, None, [1.0], [1.0], [], []) is BookStatus.NO_SNAPSHOT
    assert book.update_id is None and book.state == "empty" and not book.is_valid
    book.apply_snapshot(100, [10.0], [1.0], [11.0], [1.0])
    assert book.state == "awaiting first diff"
    assert book.apply_diff(90, 100, None, [10.0], [9.0], [], []) is BookStatus.STALE  # u <= L
    assert book.apply_diff(102, 105, None, [10.0], [9.0], [], []) is BookStatus.GAP  # U > L + 1
    assert book.apply_diff(106, 107, None, [], [], [], []) is BookStatus.OUT_OF_SYNC
    assert book.best_bid == (10.0, 1.0) and book.state == "invalid (needs a snapshot)"
    book.apply_snapshot(100, [10.0], [1.0], [11.0], [1.0])
    assert book.apply_diff(95, 101, None, [10.0], [2.0], [], []) is BookStatus.APPLIED  # U <= L+1 <= u
    assert book.apply_diff(102, 103, None, [], [], [11.0], [0.0]) is BookStatus.APPLIED
    assert book.apply_diff(102, 103, None, [10.0], [5.0], [], []) is BookStatus.STALE  # a duplicate
    assert book.best_bid == (10.0, 2.0) and math.isnan(book.best_ask[0]) and book.update_id == 103
    assert book.apply_diff(105, 106, None, [], [], [], []) is BookStatus.GAP
    assert book.counts == {"applied": 2, "stale": 2, "gap": 2, "out_of_sync": 1, "bad_level": 0, "no_snapshot": 1}


def test_futures_rules() -> None:
    book = OrderBook("F", market="futures", capacity=2)
    book.apply_snapshot(100, [10.0], [1.0], [11.0], [1.0])
    assert book.apply_diff(90, 99, 80, [10.0], [3.0], [], []) is BookStatus.STALE  # u < L
    assert book.apply_diff(101, 105, 99, [10.0], [3.0], [], []) is BookStatus.GAP  # U > L
    book.apply_snapshot(100, [10.0], [1.0], [11.0], [1.0])
    assert book.apply_diff(95, 100, 90, [10.0], [3.0], [], []) is BookStatus.APPLIED  # U <= L <= u
    assert book.apply_diff(110, 120, 100, [9.0, 8.0], [1.0, 1.0], [12.0], [1.0]) is BookStatus.APPLIED  # pu == u
    assert book.apply_diff(121, 130, 119, [], [], [], []) is BookStatus.GAP  # pu != previous u
    assert book.update_id == 120 and book.n_bids == 3 and book.capacity == 2  # the bids grew
    with pytest.raises(BookError, match=r"futures diffs need prev_update_id \(the message's 'pu'\); got None"):
        book.apply_diff(131, 140, None, [], [], [], [])


def test_bad_levels_are_rejected_and_invalidate_the_book() -> None:
    book = OrderBook("S", market="spot")
    with pytest.raises(BookError, match=r"snapshot 5 of S has a bad level \(side 1, price nan, size 1.0\)"):
        book.apply_snapshot(5, [math.nan], [1.0], [], [])
    assert book.state == "empty"
    book.apply_snapshot(5, [10.0], [1.0], [11.0], [1.0])
    assert book.apply_diff(6, 6, None, [10.5], [-1.0], [], []) is BookStatus.BAD_LEVEL
    assert book.best_bid == (10.0, 1.0) and not book.is_valid
    bk, bq, ak, aq, meta = kb.book_new_nb(4)
    odd_side = np.array([2], np.int8), np.array([1.0]), np.array([1.0])
    assert kb.book_apply_snapshot_nb(bk, bq, ak, aq, meta, 1, *odd_side) == kb.BAD_LEVEL
    with pytest.raises(BookError, match=r"bids: 1 prices but 2 sizes"):
        book.apply_diff(7, 7, None, [1.0], [1.0, 2.0], [], [])


def test_constructor_and_top_arguments() -> None:
    with pytest.raises(ConfigError, match=r"market='usdm' is not known; use 'spot' or 'futures'"):
        OrderBook("X", market="usdm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"capacity must be a positive integer; got 0"):
        OrderBook("X", market="spot", capacity=0)
    with pytest.raises(ConfigError, match=r"top\(n\) needs n >= 0; got -1"):
        OrderBook("X", market="spot").top(-1)


def test_top_repr_and_html() -> None:
    book = OrderBook("ABC", market="spot")
    book.apply_snapshot(1, [10.0, 9.0, 8.0], [1.0, 2.0, 3.0], [11.0], [4.0])
    top = book.top(2)
    assert top.columns == ["level", "bid_price", "bid_size", "ask_price", "ask_size"]
    assert top.rows() == [(0, 10.0, 1.0, 11.0, 4.0), (1, 9.0, 2.0, None, None)]
    assert book.top(10).height == 3 and book.top(0).height == 0
    assert repr(book) == (
        "OrderBook('ABC', spot, awaiting first diff, update_id=1, 3 bids / 1 asks, bid 10.0 x 1.0, ask 11.0 x 4.0)"
    )
    html = book._repr_html_()
    assert "ABC (spot)" in html and "<td>9.0</td>" in html and "<td></td>" in html


# -- real recordings -----------------------------------------------------------------------


@pytest.mark.parametrize("key", list(MARKETS))
def test_rebuild_matches_book_ticker_on_every_real_market(key: str) -> None:
    rep = replay(key)
    depth = recording(key, "depth")
    futures = MARKETS[key][1] == "futures"
    assert rep.valid and rep.gaps == rep.out_of_sync == rep.bad_levels == rep.crossed == 0
    ids = rep.frame["update_id"].to_numpy()
    snap = rep.snapshot_update_id
    assert rep.stale == int(np.sum(ids < snap if futures else ids <= snap)) > 0  # buffered before the snapshot
    assert rep.applied + rep.stale == rep.frame.height == depth["update_id"].n_unique()
    assert rep.levels_applied == rep.frame.filter(pl.col("status") == "applied")["levels"].sum()
    check = compare_bbo(rep, recording(key, "quotes"))
    assert check.matched_share == 1.0 and check.exact_share == 1.0
    assert check.counts["exact"] > 500 and check.comparable > 4000
    assert check.counts["settled"] == 0  # bookTicker ids never fall between two diffs
    assert sum(check.counts.values()) == recording(key, "quotes").height
    assert check.mismatches.height == 0
    assert check.by_category.filter(pl.col("category") == "exact")["matched_share"].to_list() == [1.0]
    final = rep.book
    assert final.update_id == ids[-1] and final.top(1).row(0)[1:] == final.best_bid + final.best_ask
    assert rep.frame.row(-1, named=True)["best_bid"] == final.best_bid[0]
    assert "valid to the end" in repr(rep) and "<pre>" in rep._repr_html_()
    assert f"{check.matched}/{check.comparable} comparable quotes match (100.0000%" in repr(check)
    assert "<pre>" in check._repr_html_()


@pytest.mark.parametrize("key", ["spot_ethusdt", "usdm_ethusdt"])
def test_rebuild_equals_plain_reference(key: str) -> None:
    futures = MARKETS[key][1] == "futures"
    snap = recording(key, "snapshot")
    ref = RefBook(futures)
    ref.snapshot(int(snap["update_id"][0]), list(zip(snap["side"], snap["price"], snap["size"], strict=True)))
    want = []
    for first, last, prev, levels in messages(recording(key, "depth")):
        status = ref.diff(first, last, prev, levels)
        want.append((status, *ref.best()))
    got = replay(key).frame.select("status", "best_bid", "bid_size", "best_ask", "ask_size").rows()
    assert [(s, *(math.nan if v is None else v for v in rest)) for s, *rest in got] == want


def test_streaming_book_equals_replay_and_grows() -> None:
    key = "spot_ethusdt"
    snap = recording(key, "snapshot")
    book = OrderBook("ETHUSDT", market="spot", capacity=1)
    bids, asks = snap.filter(pl.col("side") == 1), snap.filter(pl.col("side") == -1)
    book.apply_snapshot(int(snap["update_id"][0]), bids["price"], bids["size"], asks["price"], asks["size"])
    rows = []
    for first, last, _, levels in messages(recording(key, "depth")):
        b = [(p, q) for s, p, q in levels if s == 1]
        a = [(p, q) for s, p, q in levels if s == -1]
        st_ = book.apply_diff(first, last, None, [p for p, _ in b], [q for _, q in b], [p for p, _ in a], [q for _, q in a])
        rows.append((st_.name.lower(), *book.best_bid, *book.best_ask))
    got = replay(key).frame.select("status", "best_bid", "bid_size", "best_ask", "ask_size").rows()
    assert rows == got
    assert book.levels().equals(replay(key).book.levels())
    assert book.capacity >= book.n_bids > 1000


@pytest.mark.parametrize(("key", "drop"), [("spot_btcusdt", 3000), ("cm_btcusd_perp", 5000)])
def test_gap_on_a_real_stream_with_one_message_removed(key: str, drop: int) -> None:
    depth = recording(key, "depth")
    ids = depth["update_id"].unique(maintain_order=True)
    rep = rebuild_book(recording(key, "snapshot"), depth.filter(pl.col("update_id") != ids[drop]), market=MARKETS[key][1])
    assert rep.gaps == 1 and not rep.valid
    gap = rep.first_gap
    assert gap is not None and gap["update_id"] == ids[drop + 1] and gap["best_bid"] is None
    statuses = rep.frame["status"].to_list()
    assert statuses[drop] == "gap" and set(statuses[drop + 1 :]) == {"out_of_sync"}
    assert rep.out_of_sync == len(statuses) - drop - 1
    assert "INVALID from message" in rep.summary()
    check = compare_bbo(rep, recording(key, "quotes"))
    assert check.counts["after_gap"] > 10_000 and check.matched_share == 1.0


def test_duplicate_message_after_sync_is_dropped_as_stale() -> None:
    key = "spot_btcusdt"
    parts = recording(key, "depth").partition_by("update_id", maintain_order=True)[:300]
    snap = recording(key, "snapshot")
    base = rebuild_book(snap, pl.concat(parts), market="spot")
    replayed = pl.concat([*parts[:102], parts[100], *parts[102:]])  # message 100 again, late
    rep = rebuild_book(snap, replayed, market="spot")
    assert rep.valid and rep.stale == base.stale + 1 and rep.applied == base.applied == 298
    assert rep.frame["status"][102] == "stale"
    assert rep.frame.row(102)[-6:-2] == rep.frame.row(101)[-6:-2]  # the book did not move
    kept = rep.frame.filter(pl.int_range(pl.len()) != 102)
    assert kept.equals(base.frame)


# -- synthetic frames: the rarer categories and the error paths --------------------------------


def depth_frame(msgs: list[tuple[int, int, int, list[tuple[int, float | None, float | None]]]], *, symbol: str = "X") -> pl.DataFrame:
    rows = [
        {"ts": i, "symbol": symbol, "side": s, "price": p, "size": q, "update_id": u, "first_update_id": U, "prev_update_id": pu}
        for i, (U, u, pu, levels) in enumerate(msgs)
        for s, p, q in levels
    ]
    frame = pl.DataFrame(rows, schema_overrides={"price": pl.Float64, "size": pl.Float64})
    return conform(frame.with_columns(pl.col("ts").cast(TS)), "depth")


def snap_frame(last: int, levels: list[tuple[int, float, float]], *, symbol: str = "X") -> pl.DataFrame:
    return depth_frame([(last, last, last, levels)], symbol=symbol).drop("prev_update_id")


def quotes_frame(rows: list[tuple[int, float, float, float, float]], *, symbol: str = "X") -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["update_id", "bid_price", "bid_size", "ask_price", "ask_size"], orient="row")
    return conform(frame.with_columns(ts=pl.int_range(pl.len()).cast(TS), symbol=pl.lit(symbol)), "quotes")


SNAP = snap_frame(11, [(1, 10.0, 1.0), (1, 9.0, 1.0), (-1, 12.0, 1.0), (-1, 13.0, 1.0)])
DIFFS = [
    (5, 8, 1, [(1, 10.0, 7.0)]),  # stale (u < 11)
    (10, 12, 8, [(1, 10.0, 2.0)]),  # first: U <= 11 <= u
    (20, 25, 12, [(1, 8.0, 1.0), (0, None, None), (-1, 12.0, 3.0)]),  # bid top untouched, ask touched
    (26, 30, 25, [(1, 10.5, 1.0), (-1, 11.5, 1.0)]),  # both tops touched
]


def test_compare_bbo_categories_on_a_synthetic_futures_stream() -> None:
    rep = rebuild_book(SNAP, depth_frame(DIFFS), market="futures")
    assert rep.frame["status"].to_list() == ["stale", "applied", "applied", "applied"]
    assert rep.frame["levels"].to_list() == [1, 1, 3, 2]
    assert rep.frame["bid_touched"].to_list() == [False, True, False, True]
    assert rep.frame["ask_touched"].to_list() == [False, False, True, True]
    quotes = quotes_frame([
        (9, 10.0, 1.0, 12.0, 1.0),  # before the first applied diff
        (12, 10.0, 2.0, 12.0, 1.0),  # exact
        (15, 10.0, 2.0, 12.0, 1.0),  # settled: between u=12 and U=20
        (21, 10.0, 2.0, 11.9, 5.0),  # inside [20, 25): the bid side is comparable only
        (27, 10.2, 1.0, 11.7, 1.0),  # inside [26, 30), both tops touched
        (30, 10.5, 1.0, 11.5, 9.0),  # exact, ask size differs
        (31, 10.5, 1.0, 11.5, 1.0),  # after the end of the diffs
    ])  # fmt: skip
    check = compare_bbo(rep, quotes)
    assert check.rows["category"].to_list() == [
        "before", "exact", "settled", "top_untouched", "intermediate", "exact", "after_end"
    ]  # fmt: skip
    assert check.rows["matched"].to_list() == [None, True, True, True, None, False, None]
    assert check.rows["compare_ask"].to_list() == [False, True, True, False, False, True, False]
    assert (check.comparable, check.matched) == (4, 3)
    assert check.matched_share == 0.75 and check.exact_share == 0.5
    bad = check.mismatches
    assert bad.height == 1 and bad.row(0, named=True)["ask_size"] == 9.0 and bad.row(0, named=True)["book_ask_size"] == 1.0
    assert check.by_category.filter(pl.col("category") == "settled").row(0)[1:] == (1, 1, 1, 1.0)


def test_compare_bbo_when_nothing_was_applied() -> None:
    rep = rebuild_book(SNAP, depth_frame([(13, 14, 12, [(1, 10.0, 2.0)])]), market="futures")
    assert rep.frame["status"].to_list() == ["gap"] and rep.applied == 0
    check = compare_bbo(rep, quotes_frame([(12, 10.0, 2.0, 12.0, 1.0)]))
    assert check.counts["after_gap"] == 1 and check.comparable == 0 and math.isnan(check.matched_share)
    assert math.isnan(check.exact_share)


def test_bad_level_in_a_replay_stops_it() -> None:
    diffs = [DIFFS[1], (13, 14, 12, [(1, -3.0, 1.0)]), (15, 16, 14, [(1, 10.0, 1.0)])]
    rep = rebuild_book(SNAP, depth_frame(diffs), market="futures")
    assert rep.frame["status"].to_list() == ["applied", "bad_level", "out_of_sync"]
    assert rep.bad_levels == 1 and not rep.valid and rep.first_gap["update_id"] == 14  # type: ignore[index]


def test_rebuild_book_errors() -> None:
    depth = depth_frame(DIFFS)
    with pytest.raises(ConfigError, match=r"market='cm' is not known"):
        rebuild_book(SNAP, depth, market="cm")  # type: ignore[arg-type]
    with pytest.raises(BookError, match=r"needs a snapshot and diffs; got 4 snapshot and 0 depth rows"):
        rebuild_book(SNAP, depth.clear(), market="futures")
    with pytest.raises(BookError, match=r"depth must hold one symbol; it holds \['X', 'Y'\]"):
        rebuild_book(SNAP, pl.concat([depth, depth_frame(DIFFS, symbol="Y")]), market="futures")
    with pytest.raises(BookError, match=r"the snapshot is of 'Y' but the diffs are of 'X'"):
        rebuild_book(snap_frame(11, [(1, 1.0, 1.0)], symbol="Y"), depth, market="futures")
    with pytest.raises(BookError, match=r"snapshot holds 2 snapshots \(lastUpdateId \[11, 40\]\); pass one"):
        rebuild_book(pl.concat([SNAP, snap_frame(40, [(1, 1.0, 1.0)])]), depth, market="futures")
    with pytest.raises(BookError, match=r"futures diffs need prev_update_id \('pu'\); is this a spot recording"):
        rebuild_book(SNAP, depth.drop("prev_update_id"), market="futures")
    with pytest.raises(BookError, match=r"depth row 3 \(update_id=25\) has first_update_id=3 unlike the other rows"):
        rebuild_book(SNAP, depth.with_columns(first_update_id=pl.int_range(pl.len())), market="spot")
    split = pl.concat([depth.head(3), depth.slice(4), depth.slice(3, 1)])  # message 25 split in two runs
    with pytest.raises(BookError, match=r"depth message update_id=25 appears in separate runs of rows starting at rows \[2, 6\] that differ"):
        rebuild_book(SNAP, split, market="futures")
    with pytest.raises(BookError, match=r"snapshot 11 of X has a bad level"):
        rebuild_book(snap_frame(11, [(1, 0.5, -1.0)]), depth, market="futures")


def test_compare_bbo_errors() -> None:
    rep = rebuild_book(SNAP, depth_frame(DIFFS), market="futures")
    with pytest.raises(DataError, match=r"quotes hold \['Z'\] but the book is 'X'; pass that symbol's quotes only"):
        compare_bbo(rep, quotes_frame([(12, 1.0, 1.0, 2.0, 1.0)], symbol="Z"))
    with pytest.raises(DataError, match=r"quotes need update_id \(bookTicker 'u'\) on every row"):
        compare_bbo(rep, quotes_frame([(12, 1.0, 1.0, 2.0, 1.0)]).drop("update_id"))
