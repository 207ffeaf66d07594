"""The live engine over real WebSockets on loopback: Binance-format market data, orders to a venue server.

References are independent of the socket path: the recording read from the file
(``read_binance``) and the book rebuilt from it (``rebuild_book``); the venue's own record of
orders and fills.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import numpy as np
import polars as pl
import pytest

from ntlab.data.loaders.binance import read_binance
from ntlab.data.orderbook import OrderBook, rebuild_book
from ntlab.data.paths import data_file
from ntlab.exceptions import ConfigError
from ntlab.live import step as st
from ntlab.live.engine import LiveEngine
from ntlab.live.feeds import Batch
from ntlab.live.journal import read_journal
from ntlab.live.replay_server import Faults, ReplayServer
from ntlab.live.venue_client import RemoteVenue, VenueLink
from ntlab.live.venue_server import VenueServer
from ntlab.live.ws_client import Backoff, WsConnection, WsError
from ntlab.live.ws_feed import BinanceFeed
from ntlab.strategy.base import Strategy

SPOT = "binance_l2_trades_2024-08-08/spot/btcusdt_20240808.gz"
USDM = "binance_l2_trades_2024-08-08/usdm/btcusdt_20240808.gz"
FAST = Backoff(first=0.001, factor=2.0, cap=0.02, jitter=0.5)


def drain(feed: BinanceFeed, server: ReplayServer, *, idle: float = 0.5, timeout: float = 120.0) -> list[tuple]:
    """Run ``feed`` by hand until the server has sent everything and nothing came for ``idle`` s.

    Returns one (trade id, ts ns, price, size) per event."""
    feed.open()
    out: list[tuple] = []
    quiet_since = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            got = feed.next_batch(512)
            if got is None:
                break
            if isinstance(got, float):
                if server.finished and feed.counters["messages"]:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > idle:
                        break
                if got > 0:
                    time.sleep(got)
                continue
            quiet_since = None
            asset = 0
            first = feed._handed - len(got)
            for k in range(len(got)):
                ref = feed.event_ref(first + k)
                out.append((ref["t"], int(got.ts[k]), float(got.ohlcv[k, asset, 3]), float(got.ohlcv[k, asset, 4])))
    finally:
        feed.close()
    return out


def reference_trades(path: str) -> list[tuple]:
    t = read_binance(data_file(path), stream="trades")
    ts = t["ts_event"].dt.epoch("ns").to_list()
    return list(zip(t["trade_id"].to_list(), ts, t["price"].to_list(), t["size"].to_list(), strict=True))


@pytest.mark.parametrize(("path", "market"), [(SPOT, "spot"), (USDM, "usdm")])
def test_real_bytes_book_at_every_update_and_trades_once_in_order(path: str, market: str) -> None:
    snap = read_binance(data_file(path), stream="snapshot")
    depth = read_binance(data_file(path), stream="depth")
    ref = rebuild_book(snap, depth, market="spot" if market == "spot" else "futures")
    applied = ref.frame.filter(pl.col("status") == "applied").select("update_id", "best_bid", "bid_size", "best_ask", "ask_size")
    seen: list[tuple] = []
    levels: list[pl.DataFrame] = []

    def on_book(symbol: str, book: OrderBook) -> None:
        (bp, bs), (ap, as_) = book.best_bid, book.best_ask
        seen.append((book.update_id, bp, bs, ap, as_))
        if len(seen) % 5_000 == 0:
            levels.append(book.levels())

    with ReplayServer([data_file(path)], speed=120.0) as server:
        feed = BinanceFeed(server.url, ["btcusdt@trade", f"btcusdt@depth@{'100ms' if market == 'spot' else '0ms'}"], market=market,
                           on_book=on_book)  # fmt: skip
        trades = drain(feed, server)
    assert feed.counters["resyncs"] == 0 and feed.counters["snapshots"] == 1 and feed.decoder.rejected == 0
    mine = pl.DataFrame(seen, schema=applied.schema, orient="row")
    first = applied["update_id"].to_list().index(mine["update_id"][0])
    assert first < 50, "the client synchronised long after the start"
    assert mine.equals(applied.slice(first)), "the socket-fed book differs from the file-rebuilt one"
    assert mine.height > 0.99 * applied.height > 3_000
    np.testing.assert_array_equal(feed.book("BTCUSDT").levels().to_numpy(), ref.book.levels().to_numpy())
    assert trades == reference_trades(path)  # every trade once, in order, same values


def test_faults_drops_duplicates_reorders_corruption_final_book_and_trades_equal_the_reference() -> None:
    files = [data_file(SPOT), data_file(SPOT.replace("0808", "0809"))]
    snap = read_binance(files[0], stream="snapshot")
    ref = rebuild_book(snap, read_binance(files, stream="depth"), market="spot")
    drops = int(os.environ.get("NTLAB_WS_DROPS", "20"))  # the soak script asks for 100
    faults = Faults(drop_prob=drops * 1.5e-4, duplicate_prob=2e-3, reorder_prob=2e-3, truncate_prob=1e-3, corrupt_prob=1e-3, seed=7)
    with ReplayServer(files, faults=faults) as server:
        feed = BinanceFeed(server.url, ["btcusdt@trade", "btcusdt@depth@100ms"], backoff=FAST, stale_after=60.0)
        trades = drain(feed, server, idle=1.0)
        injected = server.stats["faults"]
    assert injected["drops"] >= drops, injected
    assert min(injected[k] for k in ("duplicates", "reorders", "truncations", "corruptions")) > 0, injected
    # every injected fault is seen and counted by the client
    assert feed.counters["reconnects"] == injected["drops"]
    assert feed.decoder.rejects["not_json"] >= 1 and feed.decoder.rejects["not_json"] <= injected["truncations"] + injected["corruptions"]
    assert feed.counters["duplicate_trades"] > 0 and feed.counters["backfilled_trades"] > 0 and feed.counters["snapshots"] > 1, feed.stats()
    expected = reference_trades(SPOT) + reference_trades(SPOT.replace("0808", "0809"))
    assert [t[0] for t in trades] == [t[0] for t in expected]
    assert trades == expected
    np.testing.assert_array_equal(feed.book("BTCUSDT").levels().to_numpy(), ref.book.levels().to_numpy())


class Flipper(Strategy):
    """Alternately buys and sells ``size`` every ``every`` trades (a steady order flow)."""

    def __init__(self, every: int = 5, size: float = 0.01) -> None:
        self.every, self.size, self.n = every, size, 0

    def on_bar(self, ctx) -> None:
        self.n += 1
        if self.n % self.every == 0:
            ctx.buy("BTCUSDT", self.size) if (self.n // self.every) % 2 else ctx.sell("BTCUSDT", self.size)


def venue_fills(venue: VenueServer, account: str = "paper") -> pl.DataFrame:
    return venue.orders(account).filter(pl.col("status") == "filled")


def test_orders_over_a_dropping_socket_none_lost_or_doubled_and_positions_reconcile(tmp_path) -> None:
    with ReplayServer([data_file(SPOT)], speed=40.0) as server, \
         VenueServer(market_data=server.url + "/stream", streams=["btcusdt@trade"], fee_bps=1.0, drop_prob=0.03, seed=3) as venue:  # fmt: skip
        feed = BinanceFeed(server.url, ["btcusdt@trade"], end_after_idle=1.0)
        engine = LiveEngine(Flipper(every=7), feed, venue=RemoteVenue(url=venue.url, backoff=FAST), journal_dir=tmp_path / "j")
        final = engine.run(timeout=120)
        stats = venue.stats
        orders = venue.orders("paper")
        account = venue.account("paper")
    assert final.status == "finished" and not final.alarms, (final, final.alarms)
    assert stats["drops"] >= 20, stats
    sent = final.counters["orders_sent"]
    assert sent > 300
    assert orders.height == sent and orders["cid"].n_unique() == sent  # none lost, none doubled
    assert set(orders["cid"]) == {f"engine-{i}" for i in range(sent)}
    assert (orders["status"] == "filled").all()
    assert final.positions["qty"][0] == pytest.approx(account["positions"].get("BTCUSDT", 0.0), abs=1e-12)
    assert final.cash == pytest.approx(account["cash"], rel=1e-12)
    ev = engine.events()
    fills = ev.filter(pl.col("event") == "filled")
    assert fills.height == sent and fills["order_id"].n_unique() == sent
    fr = venue_fills(venue).sort("cid")
    mine = fills.with_columns(cid=pl.format("engine-{}", "order_id")).sort("cid")
    np.testing.assert_allclose(mine["price"], fr["fill_price"])
    np.testing.assert_allclose(mine["fee"], fr["fee"])
    j = read_journal(tmp_path / "j" / "journal")
    seqs = j.payload[(j.kinds == st.K_VENUE) & (j.payload[:, 2] == 3), st.V_SEQ]  # fills, with the venue's seq
    assert np.unique(seqs).size == seqs.size == sent
    assert final.connections["venue"]["connects"] == final.connections["venue"]["disconnects"] + 1


class FlipperWithFills(Flipper):
    def __init__(self) -> None:
        super().__init__(every=5)
        self.fills: list = []

    def on_fill(self, ctx, fill) -> None:
        self.fills.append(fill)


def test_python_strategy_hears_its_remote_fills() -> None:
    strategy = FlipperWithFills()
    with ReplayServer([data_file(SPOT)], speed=100.0) as server, VenueServer(prices={"BTCUSDT": 61_000.0}) as venue:
        final = LiveEngine(strategy, BinanceFeed(server.url, ["btcusdt@trade"], end_after_idle=0.5), venue=RemoteVenue(url=venue.url)).run(timeout=60)
    assert len(strategy.fills) == final.counters["fills"] > 100
    assert {f.price for f in strategy.fills} == {61_000.0} and sum(f.qty for f in strategy.fills) == pytest.approx(final.positions["qty"][0])


def test_engine_restart_with_a_remote_venue_resumes_after_the_last_report(tmp_path) -> None:
    with ReplayServer([data_file(SPOT)], speed=60.0) as server, \
         VenueServer(market_data=server.url + "/stream", streams=["btcusdt@trade"]) as venue:  # fmt: skip
        first = LiveEngine(Flipper(every=5), BinanceFeed(server.url, ["btcusdt@trade"]), venue=RemoteVenue(url=venue.url),
                           journal_dir=tmp_path)  # fmt: skip
        first.start()
        deadline = time.monotonic() + 30
        while first.snapshot().counters["fills"] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        a = first.stop()
        second = LiveEngine(Flipper(every=5), BinanceFeed(server.url, ["btcusdt@trade"], end_after_idle=1.0),
                            venue=RemoteVenue(url=venue.url), journal_dir=tmp_path, resume=True)  # fmt: skip
        assert second.recovery is not None and second._link.last_seq > 0
        b = second.run(timeout=60)
        orders = venue.orders("paper")
        account = venue.account("paper")
    assert a.counters["fills"] >= 20 and b.status == "finished" and not b.alarms
    assert orders["cid"].n_unique() == orders.height  # ids continue after the restart: no cid reused
    assert b.positions["qty"][0] == pytest.approx(account["positions"].get("BTCUSDT", 0.0), abs=1e-12)


class CancelWhenTold(Strategy):
    """A far limit buy at the 5th trade; cancelled at the first trade after ``cancel_now`` is set."""

    def __init__(self) -> None:
        self.n, self.order, self.cancel_now = 0, -1, False

    def on_bar(self, ctx) -> None:
        self.n += 1
        if self.n == 5:
            self.order = ctx.submit("BTCUSDT", 0.01, "limit", limit=round(ctx.price("BTCUSDT") * 0.5, 2))
        elif self.cancel_now and self.order >= 0:
            ctx.cancel(self.order)
            self.order = -1


class Idle(Strategy):
    def on_bar(self, ctx) -> None:
        pass


def test_a_cancel_unanswered_before_a_restart_is_sent_again(tmp_path) -> None:
    with ReplayServer([data_file(SPOT)], speed=20.0) as server, VenueServer(prices={"BTCUSDT": 61_000.0}) as venue:
        strategy = CancelWhenTold()
        first = LiveEngine(strategy, BinanceFeed(server.url, ["btcusdt@trade"]), venue=RemoteVenue(url=venue.url, settle_timeout=0.3),
                           journal_dir=tmp_path).start()  # fmt: skip
        deadline = time.monotonic() + 30
        while venue.orders("paper").height == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        first._link._send = lambda data: None  # the cancel is taken but never reaches the venue (a socket dying)
        strategy.cancel_now = True
        while not first._link.pending_cancel and time.monotonic() < deadline:
            time.sleep(0.02)
        first.stop()
        server.pause()  # the second run's feed goes idle at once: it only has to settle the venue
        before = venue.orders("paper")["status"].to_list()
        second = LiveEngine(Idle(), BinanceFeed(server.url, ["btcusdt@trade"], end_after_idle=0.5), venue=RemoteVenue(url=venue.url),
                            journal_dir=tmp_path, resume=True)  # fmt: skip
        assert second.recovery is not None and second.recovery.open_orders.shape[0] == 1
        final = second.run(timeout=60)
        after = venue.orders("paper")["status"].to_list()
    assert len(before) == 1 and before != ["cancelled"]
    assert after == ["cancelled"] and final.open_orders.height == 0 and not final.alarms
    assert second.events().filter(pl.col("event") == "cancelled").height == 1


def test_stale_feed_raises_an_alarm_and_halts_trading() -> None:
    with ReplayServer([data_file(SPOT)], speed=5.0) as server, VenueServer(prices={"BTCUSDT": 61_000.0}) as venue:
        feed = BinanceFeed(server.url, ["btcusdt@trade"], stale_after=0.3)
        engine = LiveEngine(Flipper(every=3), feed, venue=RemoteVenue(url=venue.url)).start()
        try:
            deadline = time.monotonic() + 20
            while engine.snapshot().events < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            server.pause()
            while not engine.snapshot().alarms and time.monotonic() < deadline:
                time.sleep(0.05)
            snap = engine.snapshot()
            assert snap.trading_state == "halted" and "no market data" in snap.alarms[0]
            server.resume()
            while len(engine.snapshot().alarms) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            snap = engine.snapshot()
            assert "data flows again" in snap.alarms[1] and snap.trading_state == "halted"  # a person resumes trading
            assert snap.connections["feed"]["stale_alarms"] == 1
        finally:
            engine.stop()


def test_positions_that_differ_from_the_venue_halt_trading() -> None:
    with ReplayServer([data_file(SPOT)], speed=20.0) as server, VenueServer(prices={"BTCUSDT": 61_000.0}) as venue:
        from websockets.sync.client import connect

        with connect(venue.url) as ws:  # someone else trades on the same account first
            ws.send(json.dumps({"op": "login", "account": "paper"}))
            ws.send(json.dumps({"op": "new", "cid": "manual-1", "symbol": "BTCUSDT", "side": "buy", "qty": 0.5, "type": "market"}))
            while json.loads(ws.recv(timeout=5)).get("status") != "filled":
                pass
        engine = LiveEngine(Flipper(every=10**9), BinanceFeed(server.url, ["btcusdt@trade"]), venue=RemoteVenue(url=venue.url)).start()
        try:
            deadline = time.monotonic() + 20
            while not engine.snapshot().alarms and time.monotonic() < deadline:
                time.sleep(0.05)
            snap = engine.snapshot()
        finally:
            engine.stop()
    assert snap.trading_state == "halted"
    assert "positions differ from the venue's (BTCUSDT: engine 0, venue 0.5)" in snap.alarms[0]
    assert "alarms" in snap._repr_html_()


def test_venue_link_refused_login_and_unreachable_venue() -> None:
    with VenueServer(token="secret", prices={"BTCUSDT": 1.0}) as venue:
        link = VenueLink(RemoteVenue(url=venue.url, token="wrong"))
        assert link.connect()
        deadline = time.monotonic() + 5
        while link.fatal is None and time.monotonic() < deadline:
            link.poll(0.05)
        assert "refused the login of account 'paper'" in link.fatal
        assert not link.connect()  # no retry after a refusal
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = VenueLink(RemoteVenue(url=f"ws://127.0.0.1:{port}", backoff=Backoff(first=10.0, jitter=0.0)))
    link.send_new("engine-0", "BTCUSDT", 1.0, "market", None)
    assert not link.connect() and link.stats["failed_attempts"] == 1 and link.in_flight == 1
    assert not link.connect() and link.stats["failed_attempts"] == 1  # the backoff holds the next attempt
    assert "disconnected" in repr(link)


def test_websocket_client_errors_and_keepalive() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WsError, match="cannot connect"):
        WsConnection(f"ws://127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="wss:// is not supported"):
        WsConnection("wss://127.0.0.1:1/")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        with pytest.raises(WsError, match="no opening handshake"):
            WsConnection(f"ws://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.2)
    finally:
        silent.close()
    with ReplayServer([data_file(SPOT)]) as server:
        conn = WsConnection(server.url + "/stream")
        assert conn.keepalive(interval=0.0, timeout=5.0)  # a ping goes out
        deadline = time.monotonic() + 5
        while conn._ping_sent and time.monotonic() < deadline:
            conn.receive(0.05)
        assert conn._ping_sent == 0.0  # its pong came back
        conn._ping_sent = time.monotonic() - 10
        assert not conn.keepalive(interval=1.0, timeout=1.0) and "no pong" in conn.close_reason
        assert conn.receive() == [] and not conn.send_text("x") and "closed" in repr(conn)


def test_feed_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="lower-case symbol"):
        BinanceFeed("ws://127.0.0.1:1", ["BTCUSDT@trade"])
    with pytest.raises(ConfigError, match="no trade, tick or bar stream"):
        BinanceFeed("ws://127.0.0.1:1", ["btcusdt@depth"])
    with pytest.raises(ConfigError, match="reads trade, tick, bar"):
        BinanceFeed("ws://127.0.0.1:1", ["btcusdt@kline_1m"])
    with pytest.raises(ConfigError, match="market='cm'"):
        BinanceFeed("ws://127.0.0.1:1", ["btcusdt@trade"], market="cm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be ws://HOST:PORT"):
        BinanceFeed("http://127.0.0.1:1", ["btcusdt@trade"])
    with pytest.raises(ConfigError, match="stale_after=0"):
        BinanceFeed("ws://127.0.0.1:1", ["btcusdt@trade"], stale_after=0)
    with pytest.raises(ConfigError, match="non-empty list"):
        BinanceFeed("ws://127.0.0.1:1", "btcusdt@trade")
    with pytest.raises(ConfigError, match="no depth stream"):
        BinanceFeed("ws://127.0.0.1:1", ["btcusdt@trade"]).book("BTCUSDT")
    with pytest.raises(ConfigError, match="Backoff jitter"):
        Backoff(jitter=1.0)
    with pytest.raises(ConfigError, match="must be a ws:// URL"):
        RemoteVenue(url="http://x")
    with pytest.raises(ConfigError, match="venue must be a"):
        LiveEngine(Flipper(), BinanceFeed("ws://127.0.0.1:1", ["btcusdt@trade"]), venue="ws://127.0.0.1:1")  # type: ignore[arg-type]


def test_cli_feed_venue_and_live_run_over_sockets(tmp_path) -> None:
    import subprocess
    import sys

    from ntlab.live.headless import ServerProcess

    with ServerProcess(["feed", "serve", str(data_file(SPOT)), "--speed", "60"]) as feed, \
         ServerProcess(["venue", "serve", "--price", "BTCUSDT", "61000"]) as venue:  # fmt: skip
        assert feed.line.startswith("serving ws://127.0.0.1:") and "venue ws://127.0.0.1:" in venue.line
        run = subprocess.run(
            [sys.executable, "-c", "from ntlab.cli import main; main()", "live", "run", "ntlab.strategy.examples:ema_cross",
             "--ws", feed.url, "--stream", "btcusdt@trade", "--venue", venue.url, "--idle-end", "1", "-p", "span", "20",
             "-p", "size", "0.01", "--every", "0.5", "--timeout", "60", "--journal", str(tmp_path / "j")],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        last = run.stdout.strip().splitlines()[-1]
        assert "finished" in last and "9,757 events" in last, last
        assert "ServerProcess(ntlab feed serve" in repr(feed)
    bad = subprocess.run([sys.executable, "-c", "from ntlab.cli import main; main()", "live", "run", "x:y"], capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "give --data (a replay) or --ws" in bad.stderr
    with pytest.raises(ConfigError, match="did not start"):
        ServerProcess(["feed", "serve", str(tmp_path / "missing.gz")])


def test_generic_format_catalog_ticks_and_bars_over_the_socket() -> None:
    import warnings

    import ntlab.datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ticks = ntlab.datasets.load("es_ticks").head(2_000).select("ts", "price", "size")
        bars = ntlab.datasets.load("spy_1min").head(300)
    with ReplayServer.from_frames({"ES": ticks, "SPY": bars.select("ts", "open", "high", "low", "close", "volume")}) as server:
        feed = BinanceFeed(server.url, ["es@tick", "spy@bar"], end_after_idle=0.5, spin=True)
        assert feed.symbols == ["ES", "SPY"] and not feed.ticks
        feed.open()
        got = []
        try:
            while (b := feed.next_batch(64)) is not None:
                if isinstance(b, Batch):
                    got.append((b.ts.copy(), b.ohlcv.copy()))
        finally:
            feed.close()
    ts = np.concatenate([g[0] for g in got])
    ohlcv = np.concatenate([g[1] for g in got])
    es = ~np.isnan(ohlcv[:, 0, 3])
    np.testing.assert_array_equal(ohlcv[es, 0, 3], ticks["price"].to_numpy())
    np.testing.assert_array_equal(ohlcv[es, 0, 4], ticks["size"].to_numpy())
    np.testing.assert_array_equal(ts[es], ticks["ts"].dt.epoch("ns").to_numpy())
    spy = ~np.isnan(ohlcv[:, 1, 3])
    np.testing.assert_array_equal(ohlcv[spy, 1], bars.select("open", "high", "low", "close", "volume").to_numpy())
    assert feed.counters["events"] == 2_300 and feed.event_ref(10**9) is None


def test_quotes_become_features_and_rest_failures_are_counted_not_fatal() -> None:
    with ReplayServer([data_file(SPOT)], speed=200.0) as server:
        feed = BinanceFeed(server.url, ["btcusdt@trade", "btcusdt@bookTicker"], end_after_idle=0.5)
        assert feed.feature_names == ["bid", "bid_size", "ask", "ask_size"] and feed.ticks
        feed.open()
        feats = []
        try:
            while (b := feed.next_batch(256)) is not None:
                if isinstance(b, Batch):
                    feats.append(b.features[:, 0].copy())
        finally:
            feed.close()
    f = np.concatenate(feats)
    assert np.isfinite(f[-1]).all() and (f[np.isfinite(f[:, 0]), 0] < f[np.isfinite(f[:, 0]), 2]).all()  # bid < ask
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    lost = BinanceFeed("ws://127.0.0.1:1", ["btcusdt@trade"], rest_url=f"http://127.0.0.1:{dead}")
    lost._backfill("BTCUSDT", 100, 105, 0)
    assert lost.counters["missed_trades"] == 5 and lost.counters["rest_errors"] == 1
    assert "5 trade(s) of BTCUSDT lost (ids 100..104)" in lost.new_alarms[0][0]
    assert lost._next_trade["BTCUSDT"] == 105


def test_fragmented_messages_and_a_refused_subscription() -> None:
    from websockets.sync.server import serve

    def handler(ws) -> None:
        json.loads(ws.recv())
        ws.send(json.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": 1}))
        trade = json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7, "p": "1.5", "q": "2",
                                                                "T": 1, "m": False, "M": True}})  # fmt: skip
        ws.send([trade[:20], trade[20:50], trade[50:]])  # one message in three frames
        time.sleep(0.5)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        feed = BinanceFeed(f"ws://127.0.0.1:{port}", ["btcusdt@trade"], end_after_idle=0.3)
        feed.open()
        events = []
        while (b := feed.next_batch(10)) is not None:
            if isinstance(b, Batch):
                events.append(float(b.ohlcv[0, 0, 3]))
        feed.close()
        server.shutdown()
    assert events == [1.5]
    assert feed.counters["subscribe_errors"] == 1 and "refused the subscription" in feed.new_alarms[0][0]
    assert "BinanceFeed(ws://127.0.0.1" in repr(feed)


def test_backoff_delays() -> None:
    import random

    b = Backoff(first=0.1, factor=2.0, cap=1.0, jitter=0.5)
    rng = random.Random(1)
    delays = [b.delay(n, rng) for n in range(6)]
    assert all(0.05 <= d <= 0.1 for d in delays[:1]) and all(d <= 1.0 for d in delays) and delays[5] >= 0.5
    for kwargs, match in [({"first": 0}, "first=0"), ({"cap": float("inf")}, "cap=inf"), ({"factor": 0.5}, "factor=0.5")]:
        with pytest.raises(ConfigError, match=match):
            Backoff(**kwargs)


class RestingThenCancel(Strategy):
    """A far limit buy at trade 5, cancelled at trade 30; another at 40 (left for the kill switch);
    a stop order at 45 (refused: the remote venue takes market and limit orders)."""

    def __init__(self) -> None:
        self.n, self.first = 0, -1

    def on_bar(self, ctx) -> None:
        self.n += 1
        far = round(ctx.price("BTCUSDT") * 0.5, 2)
        if self.n == 5:
            self.first = ctx.submit("BTCUSDT", 0.01, "limit", limit=far)
        elif self.n == 30:
            ctx.cancel(self.first)
        elif self.n == 40:
            ctx.submit("BTCUSDT", 0.01, "limit", limit=far)
        elif self.n == 45:
            ctx.submit("BTCUSDT", 0.01, "stop", stop=far * 3)


def test_remote_limit_orders_cancels_kill_switch_and_venue_rejects() -> None:
    with ReplayServer([data_file(SPOT)], speed=20.0) as server, VenueServer(prices={"BTCUSDT": 61_000.0}) as venue:
        engine = LiveEngine(RestingThenCancel(), BinanceFeed(server.url, ["btcusdt@trade"]), venue=RemoteVenue(url=venue.url)).start()
        try:
            deadline = time.monotonic() + 30
            while engine.snapshot().events < 60 and time.monotonic() < deadline:
                time.sleep(0.02)
            while engine.snapshot().open_orders.height != 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            engine.kill()
            while venue.orders("paper").filter(pl.col("status") == "cancelled").height < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            snap = engine.snapshot()
        finally:
            engine.stop()
        orders = venue.orders("paper")
    assert orders["status"].to_list() == ["cancelled", "cancelled"]
    ev = engine.events()
    assert ev.filter(pl.col("event") == "cancelled").height == 2 and snap.trading_state == "halted"
    refused = ev.filter(pl.col("event") == "rejected")
    assert refused["reason"].to_list() == ["the remote venue takes market and limit orders only (no stop, one-cancels-other or parent orders)"]
    # a venue reject (a symbol it does not trade) is booked as a rejected order, reason "venue"
    with ReplayServer([data_file(SPOT)], speed=50.0) as server, VenueServer(prices={"ETHUSDT": 2_600.0}) as venue:
        other = LiveEngine(Flipper(every=5), BinanceFeed(server.url, ["btcusdt@trade"], end_after_idle=0.5), venue=RemoteVenue(url=venue.url))
        final = other.run(timeout=60)
    rejected = other.events().filter(pl.col("event") == "rejected")
    assert final.counters["orders_sent"] > 10 and final.positions["qty"][0] == 0.0 and final.counters["fills"] == 0
    assert rejected.height == final.counters["orders_sent"]
    assert set(rejected["reason"]) == {"rejected by the venue (its reason is in the venue's report)"}


def test_venue_link_skips_bad_frames_and_asks_again_after_a_gap_in_sequence_numbers() -> None:
    from websockets.sync.server import serve

    asked = []

    def report(seq: int, status: str) -> str:
        return json.dumps({"op": "report", "seq": seq, "cid": "e-0", "status": status, "symbol": "BTCUSDT", "side": "buy"})

    def handler(ws) -> None:
        for _ in range(2):
            asked.append(json.loads(ws.recv()))  # login, resume
        ws.send("not json")
        ws.send(json.dumps({"op": "report", "seq": "x", "status": "filled"}))
        ws.send(json.dumps({"op": "surprise"}))
        ws.send(report(2, "filled"))  # seq 1 went missing: the link asks again from 0
        asked.append(json.loads(ws.recv()))
        ws.send(report(1, "accepted"))
        ws.send(report(2, "filled"))
        ws.send(report(2, "filled"))  # again: skipped
        ws.send(json.dumps({"op": "resumed", "last_seq": 2}))
        ws.send(json.dumps({"op": "error", "code": "bad_request", "msg": "x"}))
        ws.send(json.dumps({"op": "pong"}))
        time.sleep(1.0)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        link = VenueLink(RemoteVenue(url=f"ws://127.0.0.1:{server.socket.getsockname()[1]}"))
        link.send_new("e-0", "BTCUSDT", 1.0, "market", None)  # not connected yet: kept, sent after the resume
        assert link.connect()
        got, deadline = [], time.monotonic() + 5
        while (len(got) < 2 or link.stats["errors"] < 1) and time.monotonic() < deadline:
            got += link.poll(0.05)
        link.close()
        server.shutdown()
    assert [(r["seq"], r["status"]) for r in got] == [(1, "accepted"), (2, "filled")]
    assert asked[0]["op"] == "login" and asked[1] == {"op": "resume", "after_seq": 0} and asked[2] == {"op": "resume", "after_seq": 0}
    assert link.stats["bad_frames"] == 3 and link.stats["duplicate_reports"] == 1 and link.stats["errors"] == 1
    assert link.last_seq == 2 and link.in_flight == 0 and link.stats["resent"] == 0
