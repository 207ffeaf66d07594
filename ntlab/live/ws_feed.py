"""Market data over a WebSocket for the live engine: Binance public streams and ntlab's generic format.

:class:`BinanceFeed` connects to a Binance-compatible endpoint (Binance itself, or
``ntlab feed serve`` on loopback), subscribes with the combined-stream protocol and turns what
arrives into engine events, in the engine's own thread (:mod:`ntlab.live.ws_client`):

* ``<sym>@trade`` (and the generic ``@tick``) messages are the **events**: one-trade bars, as in
  the backtest, stamped with the venue's trade time (``T``) and the local receive clock (for
  tick-to-order latency). Trade ids are sequenced per symbol: a duplicate is dropped; a gap (a
  lost frame, a reconnect) is filled from the venue's REST ``historicalTrades`` before the
  trade that revealed it, so the strategy sees every trade exactly once, in order. After each
  reconnect the feed also catches up from REST at once.
* ``<sym>@depth...`` diffs keep a local :class:`~ntlab.data.orderbook.OrderBook` per symbol
  with Binance's documented procedure: buffer the diffs, fetch the REST snapshot, drop the
  diffs it already holds, apply the rest with the update-id rules; a gap in the ids (or a bad
  level) means a new snapshot (``resyncs``). ``<sym>@bookTicker`` keeps the best bid/ask of a
  symbol without depth. When a symbol has a book or quotes, every event carries the features
  ``bid, bid_size, ask, ask_size`` of that moment (``ctx.features``).
* Generic ``<sym>@bar`` messages (``ntlab feed serve`` of catalog bars) are bar events.

Connection handling: a dropped connection is reopened with exponential backoff and jitter and
the subscriptions are sent again; the feed pings the server and treats a missing pong as a dead
connection; when no message came for ``stale_after`` seconds it raises an alarm (the engine
shows it in ``snapshot().alarms`` and, with ``halt_on_stale``, halts trading: resuming is a
person's decision). Bad frames are rejected, counted by reason (:mod:`ntlab.live.wire`) and
never stop the feed. Every counter is in :meth:`BinanceFeed.stats`.

Markets and REST paths: ``"spot"`` (``/api/v3``), ``"usdm"`` (``/fapi/v1``), ``"coinm"``
(``/dapi/v1``). The REST calls are made from the engine's thread and block it (a snapshot on
loopback takes about a millisecond): a feed that needs a snapshot cannot trade on its book
anyway.
"""

from __future__ import annotations

import collections
import http.client
import json
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ntlab.data.orderbook import BookStatus, OrderBook
from ntlab.exceptions import ConfigError, DataError
from ntlab.live import wire
from ntlab.live.feeds import Batch, Feed
from ntlab.live.ws_client import Backoff, WsConnection, WsError

__all__ = ["BinanceFeed"]

MarketKind = Literal["spot", "usdm", "coinm"]
_REST = {"spot": "/api/v3", "usdm": "/fapi/v1", "coinm": "/dapi/v1"}
_BOOK_MARKET = {"spot": "spot", "usdm": "futures", "coinm": "futures"}
BOOK_FEATURES = ("bid", "bid_size", "ask", "ask_size")
_NAN4 = (np.nan, np.nan, np.nan, np.nan)


def _stream_kind(name: str) -> tuple[str, str]:
    sym, sep, kind = name.partition("@")
    if not sep or not sym or not kind or sym != sym.lower():
        raise ConfigError(f"stream {name!r} is not a Binance stream name: use a lower-case symbol, '<symbol>@<kind>', e.g. 'btcusdt@trade'")
    if kind == "depth" or kind.startswith("depth@"):
        return sym.upper(), "depth"
    if kind in ("trade", "tick", "bar", "bookTicker"):
        return sym.upper(), kind
    raise ConfigError(f"stream {name!r}: the feed reads trade, tick, bar, bookTicker and diff depth (<sym>@depth[@100ms]) streams")


class _Sync:
    """Snapshot + diff synchronisation of one symbol's book."""

    def __init__(self, symbol: str, market: str) -> None:
        self.book = OrderBook(symbol, market=market)  # type: ignore[arg-type]
        self.buffer: list[wire.DepthDiff] = []
        self.synced = False


class BinanceFeed(Feed):
    """Binance public streams (spot, USD-M, COIN-M) or the generic format over a WebSocket.

    Parameters
    ----------
    url
        The server: ``ws://127.0.0.1:PORT`` (``/stream`` is added) or a full ``.../stream`` URL.
    streams
        Stream names, e.g. ``["btcusdt@trade", "btcusdt@depth@100ms"]``. At least one trade,
        tick or bar stream: those make the events, in the order of the symbols they name.
    rest_url
        The REST base (``http://127.0.0.1:PORT``) for depth snapshots and trade backfill; by
        default the ``url``'s host and port over http.
    market
        ``"spot"``, ``"usdm"`` or ``"coinm"``: REST paths and update-id rules.
    backoff
        Delays between reconnection attempts.
    stale_after
        Seconds without any message before the feed raises a stale alarm.
    halt_on_stale
        Whether that alarm halts trading.
    ping_interval, ping_timeout
        Our keepalive pings: sent after ``ping_interval`` quiet seconds; no pong within
        ``ping_timeout`` seconds drops the connection.
    max_wait
        Longest the engine's thread waits in the socket for data before it looks at its commands.
    spin
        Poll the socket in a busy loop during ``max_wait`` instead of sleeping in ``select``:
        the lowest tick latency (caches and the core stay warm), for a whole core and for cells
        of the notebook that wait up to Python's switch interval (5 ms) for the interpreter.
    end_after_idle
        End the feed (the engine finishes) after this many seconds without any message (counted
        from ``open`` until the first one); None: a live feed never ends by itself.
    on_book
        Called as ``on_book(symbol, book)`` after every diff applied to a book (tests, recorders).
    """

    def __init__(
        self,
        url: str,
        streams: Sequence[str],
        *,
        rest_url: str | None = None,
        market: MarketKind = "spot",
        backoff: Backoff | None = None,
        stale_after: float = 5.0,
        halt_on_stale: bool = True,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        max_wait: float = 0.002,
        spin: bool = False,
        end_after_idle: float | None = None,
        on_book: Callable[[str, OrderBook], None] | None = None,
    ) -> None:
        if market not in _REST:
            raise ConfigError(f"market={market!r} is not known; use 'spot', 'usdm' or 'coinm'")
        if isinstance(streams, str) or not streams:
            raise ConfigError(f"streams must be a non-empty list of stream names, got {streams!r}")
        for name, value in (("stale_after", stale_after), ("ping_interval", ping_interval), ("ping_timeout", ping_timeout), ("max_wait", max_wait)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name}={value!r} must be a number of seconds > 0")
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "ws" or not parsed.hostname or not parsed.port:
            raise ConfigError(f"url={url!r} must be ws://HOST:PORT[/stream] (ntlab feed serve prints it)")
        self.url = url if parsed.path.startswith("/stream") else url.rstrip("/") + "/stream"
        self.rest_url = rest_url or f"http://{parsed.hostname}:{parsed.port}"
        self.streams = list(dict.fromkeys(streams))
        kinds = [_stream_kind(s) for s in self.streams]
        self.symbols = list(dict.fromkeys(sym for sym, kind in kinds if kind in ("trade", "tick", "bar")))
        if not self.symbols:
            raise ConfigError(f"streams {self.streams} hold no trade, tick or bar stream: the engine needs events")
        self.market = market
        self._syncs = {sym: _Sync(sym, _BOOK_MARKET[market]) for sym, kind in kinds if kind == "depth"}
        quoted = {sym for sym, kind in kinds if kind in ("depth", "bookTicker")}
        self.feature_names = list(BOOK_FEATURES) if quoted & set(self.symbols) else []
        self.backoff = backoff or Backoff()
        self.stale_after, self.halt_on_stale = float(stale_after), halt_on_stale
        self.ping_interval, self.ping_timeout, self.max_wait = float(ping_interval), float(ping_timeout), float(max_wait)
        self.end_after_idle = end_after_idle
        self.on_book = on_book
        self.new_alarms: list[tuple[str, bool]] = []
        self.decoder = wire.FrameDecoder()
        self._asset = {s: i for i, s in enumerate(self.symbols)}
        self._quotes: dict[str, tuple[float, float, float, float]] = {}
        self._next_trade: dict[str, int] = {}
        self._last_bar_ts: dict[str, int] = {}
        self.ticks = all(kind != "bar" for _, kind in kinds)
        self._frames: collections.deque[tuple[bytes, int]] = collections.deque()  # received, not decoded yet
        self.spin = spin
        self._alloc(1024)
        self._refs = np.full(1 << 16, -1, dtype=np.int64)  # event number -> trade id (a ring)
        self._ref_assets = np.zeros(1 << 16, dtype=np.int64)
        self._handed = 0
        self._conn: WsConnection | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._last_message = 0.0
        self.first_message_at: float | None = None  # time.monotonic() of the first frame received
        self.last_decoded_at = 0.0  # ... and when the feed last decoded frames (throughput: messages / (last decoded - first))
        self._stale = False
        self._sub_id = 0
        self._http: http.client.HTTPConnection | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            ("messages", "events", "connects", "reconnects", "failed_attempts", "resyncs", "snapshots", "duplicate_trades",
             "backfilled_trades", "missed_trades", "rest_errors", "stale_alarms", "subscribe_errors", "out_of_order_bars"), 0)  # fmt: skip

    # -- the Feed interface ------------------------------------------------------------------------
    def open(self) -> None:
        self._last_message = time.monotonic()
        self._connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def event_ref(self, event: int) -> object:
        i = event % self._refs.shape[0]
        if event < 0 or event >= self._handed or event < self._handed - self._refs.shape[0] or self._refs[i] < 0:
            return None
        return {"s": self.symbols[int(self._ref_assets[i])], "t": int(self._refs[i])}

    def next_batch(self, max_events: int) -> Batch | float | None:
        conn = self._conn
        if conn is None or conn.closed:
            if conn is not None:
                self._lost()
            if not self._connect():
                self._check_stale(time.monotonic())
                if self._frames:
                    self._decode(max_events)
                return self._take(max_events) if self._pending else max(0.0, min(self._next_attempt - time.monotonic(), 0.05))
            conn = self._conn
        assert conn is not None
        frames = conn.receive(0.0 if self._pending or self._frames else self.max_wait, spin=self.spin)
        now = time.monotonic()
        if frames:
            self._last_message = now
            if self.first_message_at is None:
                self.first_message_at = now
            if self._stale:
                self._stale = False
                self.new_alarms.append(("data flows again (trading stays as it is: resume it yourself)", False))
            recv = time.monotonic_ns()
            self._frames.extend((frame, recv) for frame in frames)
        elif not self._frames:
            conn.keepalive(self.ping_interval, self.ping_timeout)
            if self.end_after_idle is not None and now - self._last_message > self.end_after_idle and not self._pending:
                return None
            self._check_stale(now)
        if self._frames:
            self._decode(max_events)
        if self._pending:
            return self._take(max_events)
        return 0.0

    def _decode(self, max_events: int) -> None:
        """Decode received frames until ``max_events`` events wait (the rest stay raw: with a small
        engine batch the first trade of a burst reaches the strategy before the others are decoded)."""
        frames, on_frame = self._frames, self._on_frame
        while frames and self._pending < max_events:
            on_frame(*frames.popleft())
        self._resync_books()
        self.last_decoded_at = time.monotonic()

    @property
    def last_message_at(self) -> float:
        """``time.monotonic()`` of the last frame received."""
        return self._last_message

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {"connected": self._conn is not None and not self._conn.closed}
        out.update((k, v) for k, v in self.counters.items() if v)
        bad = {k: v for k, v in self.decoder.rejects.items() if v}
        if bad:
            out["bad_frames"] = bad
        return out

    # -- books -------------------------------------------------------------------------------------
    def book(self, symbol: str) -> OrderBook:
        """The local order book of ``symbol`` (needs a depth stream of it)."""
        if symbol not in self._syncs:
            raise ConfigError(f"no depth stream for {symbol!r}; this feed keeps books of {sorted(self._syncs)}")
        return self._syncs[symbol].book

    # -- connection ----------------------------------------------------------------------------------
    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        try:
            self._conn = WsConnection(self.url)
        except WsError:
            self.counters["failed_attempts"] += 1
            self._next_attempt = now + self.backoff.delay(self._failures)
            self._failures += 1
            self._conn = None
            return False
        self.counters["connects"] += 1
        self._sub_id += 1
        self._conn.send_text(json.dumps({"method": "SUBSCRIBE", "params": self.streams, "id": self._sub_id}))
        for sync in self._syncs.values():
            sync.synced = False
            sync.buffer.clear()
        while self._frames:  # what the old connection delivered comes before the backfill
            self._on_frame(*self._frames.popleft())
        if self.counters["connects"] > 1:  # trades broadcast while we were away
            self.counters["reconnects"] += 1
            for sym, nxt in list(self._next_trade.items()):
                self._backfill(sym, nxt, None, time.monotonic_ns())
        return True

    def _lost(self) -> None:
        self._conn = None
        self._next_attempt = time.monotonic() + self.backoff.delay(self._failures)
        self._failures += 1

    def _check_stale(self, now: float) -> None:
        if not self._stale and now - self._last_message > self.stale_after:
            self._stale = True
            self.counters["stale_alarms"] += 1
            where = "connected" if self._conn is not None and not self._conn.closed else "disconnected"
            self.new_alarms.append((f"no market data for {now - self._last_message:.1f} s ({where})", self.halt_on_stale))

    # -- frames --------------------------------------------------------------------------------------
    def _on_frame(self, frame: bytes, recv: int) -> None:
        self.counters["messages"] += 1
        msg = self.decoder.decode(frame)
        if msg is None:
            return
        cls = type(msg)
        if cls is wire.Trade or cls is wire.Tick:
            sym = msg.symbol
            if sym not in self._asset:
                return
            tid = msg.trade_id if cls is wire.Trade else msg.seq
            nxt = self._next_trade.get(sym)
            if nxt is not None and tid < nxt:
                self.counters["duplicate_trades"] += 1
                return
            if nxt is not None and tid > nxt:
                self._backfill(sym, nxt, tid, recv)
                if self._next_trade[sym] > tid:  # the backfill already brought it
                    return
            self._next_trade[sym] = tid + 1
            if cls is wire.Trade:
                self._push(sym, msg.ts_ms * 1_000_000, msg.price, msg.qty, recv, tid)
            else:
                self._push(sym, msg.ts, msg.price, msg.size, recv, tid)
        elif cls is wire.DepthDiff:
            sync = self._syncs.get(msg.symbol)
            if sync is None:
                return
            if not sync.synced:
                sync.buffer.append(msg)
                return
            self._apply(sync, msg)
        elif cls is wire.Quote:
            self._quotes[msg.symbol] = (msg.bid, msg.bid_size, msg.ask, msg.ask_size)
        elif cls is wire.Bar:
            sym = msg.symbol
            if sym not in self._asset:
                return
            if msg.ts <= self._last_bar_ts.get(sym, -1):
                self.counters["out_of_order_bars"] += 1
                return
            self._last_bar_ts[sym] = msg.ts
            self._event(sym, msg.ts, msg.open, msg.high, msg.low, msg.close, msg.volume, recv, -1)
        elif cls is wire.Reply and msg.error:
            self.counters["subscribe_errors"] += 1
            self.new_alarms.append((f"the server refused the subscription: {msg.error}", False))

    def _features(self, sym: str) -> tuple[float, float, float, float]:
        sync = self._syncs.get(sym)
        if sync is not None and sync.synced and sync.book.is_valid:
            (bp, bs), (ap, as_) = sync.book.best_bid, sync.book.best_ask
            return bp, bs, ap, as_
        return self._quotes.get(sym, _NAN4)

    # -- pending events: rows [head, tail) of preallocated arrays, handed over as views -------------
    def _alloc(self, rows: int) -> None:
        n, f = len(self.symbols), len(self.feature_names)
        self._ts, self._recv, self._ids = (np.zeros(rows, dtype=np.int64) for _ in range(3))
        self._assets = np.zeros(rows, dtype=np.int64)
        self._ohlcv = np.full((rows, n, 5), np.nan)
        self._feats = np.full((rows, n, f), np.nan)
        self._head = self._tail = 0

    @property
    def _pending(self) -> int:
        return self._tail - self._head

    def _row(self) -> int:
        """A free row at the tail (the batch handed last is consumed by now: its rows are reused)."""
        if self._tail == self._ts.shape[0]:
            head, tail = self._head, self._tail
            if head > 0:  # move what is left to the front
                for a in (self._ts, self._recv, self._ids, self._assets, self._ohlcv, self._feats):
                    a[: tail - head] = a[head:tail]
                self._head, self._tail = 0, tail - head
            else:
                old = (self._ts, self._recv, self._ids, self._assets, self._ohlcv, self._feats)
                self._alloc(2 * tail)
                for new, a in zip((self._ts, self._recv, self._ids, self._assets, self._ohlcv, self._feats), old, strict=True):
                    new[:tail] = a
                self._tail = tail
        i = self._tail
        self._tail = i + 1
        return i

    def _push(self, sym: str, ts: int, price: float, qty: float, recv: int, tid: int) -> None:
        self._event(sym, ts, price, price, price, price, qty, recv, tid)

    def _event(self, sym: str, ts: int, o: float, h: float, l: float, c: float, v: float, recv: int, tid: int) -> None:
        i = self._row()
        a = self._asset[sym]
        self._ts[i], self._recv[i], self._ids[i], self._assets[i] = ts, recv, tid, a
        row = self._ohlcv[i]
        if row.shape[0] > 1:
            row[:] = np.nan
        row[a] = (o, h, l, c, v)
        if self.feature_names:
            feats = self._feats[i]
            feats[:] = np.nan
            feats[a] = self._features(sym)
        self.counters["events"] += 1

    def _take(self, max_events: int) -> Batch:
        head = self._head
        stop = min(self._tail, head + max_events)
        k = stop - head
        ring = self._refs.shape[0]
        slots = (self._handed + np.arange(k)) % ring
        self._refs[slots] = self._ids[head:stop]
        self._ref_assets[slots] = self._assets[head:stop]
        self._handed += k
        self._head = stop
        if stop == self._tail:
            self._head = self._tail = 0  # all handed over: the next events start at row 0
        return Batch(self._ts[head:stop], self._ohlcv[head:stop], self._feats[head:stop], self._recv[head:stop])

    # -- REST ----------------------------------------------------------------------------------------
    def _get(self, path: str, **query: object) -> bytes | None:
        url = urllib.parse.urlparse(self.rest_url)
        for _ in range(2):  # one retry on a fresh connection
            try:
                if self._http is None:
                    self._http = http.client.HTTPConnection(url.hostname, url.port, timeout=5.0)
                self._http.request("GET", f"{_REST[self.market]}/{path}?{urllib.parse.urlencode(query)}")
                resp = self._http.getresponse()
                body = resp.read()
                if resp.status == 200:
                    return body
                self.counters["rest_errors"] += 1
                return None
            except (OSError, http.client.HTTPException):
                if self._http is not None:
                    self._http.close()
                self._http = None
        self.counters["rest_errors"] += 1
        return None

    def _backfill(self, sym: str, first: int, until: int | None, recv: int) -> None:
        """Trades ``first`` .. ``until - 1`` (None: all there are) from REST, as events."""
        nxt = first
        while until is None or nxt < until:
            limit = 1000 if until is None else min(1000, until - nxt)
            body = self._get("historicalTrades", symbol=sym, fromId=nxt, limit=limit)
            try:
                trades = wire.decode_rest_trades(body, sym) if body is not None else None
            except DataError:
                self.counters["rest_errors"] += 1
                trades = None
            if not trades:
                break
            for t in trades:
                if t.trade_id < nxt or (until is not None and t.trade_id >= until):
                    continue
                self._push(sym, t.ts_ms * 1_000_000, t.price, t.qty, recv, t.trade_id)
                self.counters["backfilled_trades"] += 1
                nxt = t.trade_id + 1
            if len(trades) < limit:
                break
        if until is not None and nxt < until:
            self.counters["missed_trades"] += until - nxt
            self.new_alarms.append((f"{until - nxt} trade(s) of {sym} lost (ids {nxt}..{until - 1}): REST backfill failed", False))
            nxt = until
        self._next_trade[sym] = max(nxt, self._next_trade.get(sym, nxt))

    def _resync_books(self) -> None:
        for sym, sync in self._syncs.items():
            if sync.synced or not sync.buffer:
                continue
            body = self._get("depth", symbol=sym, limit=5000)
            if body is None:
                continue
            try:
                snap = wire.decode_snapshot(body, sym)
            except DataError:
                self.counters["rest_errors"] += 1
                continue
            try:
                sync.book.apply_snapshot(snap.last_id, snap.bid_prices, snap.bid_sizes, snap.ask_prices, snap.ask_sizes)
            except DataError:  # a bad level: the book is unchanged; ask again with the next diff
                self.counters["rest_errors"] += 1
                continue
            self.counters["snapshots"] += 1
            sync.synced = True
            buffered, sync.buffer = sync.buffer, []
            for diff in buffered:
                if not sync.synced:
                    sync.buffer.append(diff)  # a gap inside the buffer: keep the rest for the next snapshot
                else:
                    self._apply(sync, diff)

    def _apply(self, sync: _Sync, d: wire.DepthDiff) -> None:
        status = sync.book.apply_diff(d.first_id, d.last_id, d.prev_id, d.bid_prices, d.bid_sizes, d.ask_prices, d.ask_sizes)
        if status is BookStatus.APPLIED:
            if self.on_book is not None:
                self.on_book(sync.book.symbol, sync.book)
        elif status is not BookStatus.STALE:  # a gap or a bad level: a new snapshot
            self.counters["resyncs"] += 1
            sync.synced = False
            sync.buffer = [d] if status is BookStatus.GAP else []

    def __repr__(self) -> str:
        state = "connected" if self._conn is not None and not self._conn.closed else "disconnected"
        return f"BinanceFeed({self.url}, {len(self.streams)} streams, {state}, {self.counters['events']:,} events, {self.decoder.rejected:,} bad frames)"
