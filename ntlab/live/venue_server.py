"""The paper venue as its own WebSocket server, with a small JSON order protocol.

:class:`VenueServer` matches orders on paper against **trade prints** (a Binance-style trade
stream it subscribes to, :meth:`VenueServer.set_price`, or initial ``prices``) and talks to its
clients over a real WebSocket, so that a live engine exercises the same wire, reconnects and
recovery it would against an exchange. Its asyncio loop runs in a daemon thread; the methods of
the object are thread-safe.

Protocol
--------
JSON text frames (binary frames are read as UTF-8 JSON); every message has an ``"op"``. A client
logs in first; every other message before a successful login is answered ``error`` "login first".

===========  =========  ==========================================================  ==========================================================
direction    op         fields                                                      meaning
===========  =========  ==========================================================  ==========================================================
client ->    login      ``account`` (str), ``token`` (str, when the venue has one)  First message. Wrong/missing token or an account outside
                                                                                    ``accounts``: ``error`` code ``auth``, then close 1008.
venue ->     login      ``ok`` (true), ``account``, ``last_seq``                    Logged in; ``last_seq`` is the account's last report seq
                                                                                    (0: none). Live reports follow from ``last_seq + 1``.
client ->    resume     ``after_seq`` (int >= 0)                                    Re-send every report of the account with seq > after_seq.
venue ->     resumed    ``last_seq``                                                After the re-sent reports: every report to ``last_seq`` sent.
client ->    new        ``cid`` (str, the idempotency key), ``symbol``, ``side``    A new order. A cid the account already has is **ignored**
                        ("buy"/"sell"), ``qty`` (> 0), ``type`` ("market"/          (stats "duplicates"; nothing created, nothing sent: learn
                        "limit"), ``price`` (limit: > 0; market: null/ignored),     its fate with ``resume``). Otherwise a report ``accepted``
                        ``md`` (optional, any JSON, kept with the order)            or ``rejected`` follows, then the fill.
client ->    cancel     ``cid``                                                     Report ``cancelled``, or ``cancel_rejected`` with reason
                                                                                    "unknown cid ..." / "already filled|cancelled|rejected".
client ->    positions  (none)                                                      Reply for reconciliation (below).
venue ->     positions  ``cash``, ``positions`` {symbol: signed qty},               The state after the reports up to ``last_seq`` (those made
                        ``open_orders`` [{cid, symbol, side, qty, leaves, type,     since the login are sent on this connection before the
                        price}], ``last_seq``                                       reply; earlier ones with ``resume``).
client ->    ping       (none)                                                      Reply ``{"op": "pong"}`` (WebSocket pings work too).
venue ->     report     ``seq``, ``cid``, ``status``, ``symbol``, ``side``,         One event of an order. ``seq``: per account, from 1, no
                        ``qty`` (order qty), ``leaves`` (open qty after it),        gaps. ``status``: accepted, rejected, partially_filled
                        ``fill_qty`` (0 unless a fill), ``fill_price`` (or null),   (reserved: paper fills are whole), filled, cancelled,
                        ``fee`` (this fill's), ``reason`` (str or null),            cancel_rejected. Sent to the account's connections as it
                        ``ts_ns`` (venue ``time.time_ns()``)                        happens; kept (in memory) for ``resume``.
venue ->     error      ``code`` ("bad_request" or "auth"), ``msg`` (names the      A message that could not be used; the connection stays
                        field and value), ``cid`` (the message's, or null)          open (except after ``auth``).
===========  =========  ==========================================================  ==========================================================

**Validation rule.** A malformed message (invalid JSON, not an object, unknown op, missing or
invalid ``cid``/``after_seq``/``account``) gets ``error`` ``bad_request``. A ``new`` with a
well-formed, new ``cid`` but a bad field (``symbol`` not traded, ``side``/``type`` not in the
lists, ``qty`` not a finite number > 0, a limit without a finite ``price`` > 0) gets a
``rejected`` **report** whose reason names the field and value, so that the order's fate is
known and kept (the cid is then taken). Both kinds count in ``stats["bad_messages"]`` by reason.

**Client rules** (never lose or duplicate an order): apply reports in ``seq`` order, one after
the other, and skip any other: a seq already applied (``resume`` re-sends), or one beyond the
next (sent live before the ``resume`` re-sent those before it: it comes again). After a
reconnect: ``login``, ``resume`` from the highest seq applied, and re-send every ``new`` whose cid
has no report yet (the duplicate check comes first, so re-sending is always safe).

Matching
--------
Market orders fill at once, in full, at the last trade price ``* (1 +- slippage_bps * 1e-4)``
(buys pay up); without a price yet they are rejected "no market price yet for SYMBOL". A limit
buy fills, in full, at its limit price when a trade prints at or below it (a sell: at or above),
or at once when the last trade already crosses it on arrival. Fee: ``qty * price * fee_bps *
1e-4``; cash moves by the notional and the fee, positions are signed quantities. With
``fill_delay_ms``, fills happen that much later (market orders at the price then; an order
cancelled in between does not fill).

HTTP (GET, same port): ``/ntlab/stats``, ``/ntlab/orders?account=A``, ``/ntlab/account?account=A``
(JSON; ``?token=`` or an ``Authorization: Bearer`` / ``X-Ntlab-Token`` header when the venue has
a token).

Examples
--------
>>> venue = VenueServer(prices={"BTCUSDT": 61800.0}, fee_bps=1.0)
>>> venue.symbols
('BTCUSDT',)
>>> venue.account("demo")
{'cash': 1000000.0, 'positions': {}}

A session (``start()`` binds a free port of 127.0.0.1)::

    from websockets.sync.client import connect
    with venue, connect(venue.url) as ws:
        ws.send('{"op": "login", "account": "demo"}'); ws.recv()
        ws.send('{"op": "new", "cid": "c1", "symbol": "BTCUSDT", "side": "buy", "qty": 0.01, "type": "market"}')
        ws.recv(), ws.recv()  # reports accepted, filled
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import random
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import polars as pl
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ntlab.exceptions import ConfigError, NtlabError
from ntlab.live._serving import ThreadedServer

__all__ = ["ORDER_SCHEMA", "TOKEN_ENV", "VenueConfig", "VenueServer", "serve_main"]

TOKEN_ENV = "NTLAB_VENUE_TOKEN"
ORDER_SCHEMA: dict[str, Any] = {
    "cid": pl.String,
    "symbol": pl.String,
    "side": pl.String,
    "qty": pl.Float64,
    "leaves": pl.Float64,
    "status": pl.String,
    "type": pl.String,
    "price": pl.Float64,
    "md": pl.String,
    "recv_ns": pl.Int64,
    "fill_price": pl.Float64,
    "fee": pl.Float64,
    "reason": pl.String,
}
_OPS = ("login", "resume", "new", "cancel", "positions", "ping")
_MAX_ID = 128  # characters of a cid or an account name
_TRADE_EVENTS = ("trade", "aggTrade")
_STAT_KEYS = ("connections", "open_connections", "logins", "orders", "duplicates", "fills", "cancels", "rejects",
              "cancel_rejects", "reports", "drops", "md_connects", "md_messages", "md_bad")  # fmt: skip
_log = logging.getLogger("ntlab.live.venue")


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _positive(x: object) -> bool:
    return _is_number(x) and math.isfinite(x) and x > 0  # type: ignore[arg-type]


def _finite(x: object) -> float | None:
    return float(x) if _is_number(x) and math.isfinite(x) else None  # type: ignore[arg-type]


def _stream_symbol(stream: str) -> str | None:
    """``"btcusdt@trade"`` -> ``"BTCUSDT"``; None for a stream that is not a trade stream."""
    name, _, kind = stream.partition("@")
    return name.upper() if kind in ("trade", "aggTrade") and name else None


@dataclass(frozen=True, kw_only=True)
class VenueConfig:
    """Settings of a :class:`VenueServer` (its keyword arguments; see there), validated."""

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    accounts: tuple[str, ...] | None = None
    prices: Mapping[str, float] = field(default_factory=dict)
    symbols: tuple[str, ...] = ()
    market_data: str | None = None
    streams: tuple[str, ...] = ()
    cash: float = 1_000_000.0
    fee_bps: float = 0.0
    slippage_bps: float = 0.0
    fill_delay_ms: float = 0.0
    drop_after: int | None = None
    drop_prob: float = 0.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.host, str) and self.host):
            msg = f"host={self.host!r} must be an address such as '127.0.0.1'"
            raise ConfigError(msg)
        if not (isinstance(self.port, int) and not isinstance(self.port, bool) and 0 <= self.port <= 65535):
            msg = f"port={self.port!r} must be an int in 0..65535 (0: a free port)"
            raise ConfigError(msg)
        if self.token is not None and not isinstance(self.token, str):
            msg = f"token={self.token!r} must be a string (or None: no token)"
            raise ConfigError(msg)
        if self.accounts is not None and not (
            self.accounts and all(isinstance(a, str) and 0 < len(a) <= _MAX_ID for a in self.accounts)
        ):
            msg = f"accounts={self.accounts!r} must be a non-empty list of account names (or None: any account)"
            raise ConfigError(msg)
        for sym, price in self.prices.items():
            if not (isinstance(sym, str) and sym and _positive(price)):
                msg = f"prices[{sym!r}]={price!r} must be a finite price > 0 for a symbol name"
                raise ConfigError(msg)
        if not all(isinstance(s, str) and s for s in self.symbols):
            msg = f"symbols={self.symbols!r} must be a list of symbol names such as 'BTCUSDT'"
            raise ConfigError(msg)
        if self.market_data is not None and not (
            isinstance(self.market_data, str) and self.market_data.startswith(("ws://", "wss://"))
        ):
            msg = f"market_data={self.market_data!r} must be a ws:// or wss:// URL (or None)"
            raise ConfigError(msg)
        if not all(isinstance(s, str) and "@" in s for s in self.streams):
            msg = f"streams={self.streams!r} must be a list of Binance stream names such as 'btcusdt@trade'"
            raise ConfigError(msg)
        if self.streams and self.market_data is None:
            msg = f"streams={list(self.streams)!r} need market_data= (the ws:// URL to subscribe them on)"
            raise ConfigError(msg)
        if not (_is_number(self.cash) and math.isfinite(self.cash)):
            msg = f"cash={self.cash!r} must be a finite number"
            raise ConfigError(msg)
        for name in ("fee_bps", "slippage_bps", "fill_delay_ms"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value >= 0):
                msg = f"{name}={value!r} must be a finite number >= 0"
                raise ConfigError(msg)
        if self.drop_after is not None and not (
            isinstance(self.drop_after, int) and not isinstance(self.drop_after, bool) and self.drop_after >= 1
        ):
            msg = f"drop_after={self.drop_after!r} must be an int >= 1 (frames per connection) or None"
            raise ConfigError(msg)
        if not (_is_number(self.drop_prob) and 0 <= self.drop_prob <= 1):
            msg = f"drop_prob={self.drop_prob!r} must be a probability in [0, 1]"
            raise ConfigError(msg)
        if self.seed is not None and not (isinstance(self.seed, int) and not isinstance(self.seed, bool)):
            msg = f"seed={self.seed!r} must be an int or None"
            raise ConfigError(msg)
        extra = set(self.prices) - set(self.symbols) if self.symbols else set()
        if extra:
            msg = f"prices for {sorted(extra)} are not in symbols={list(self.symbols)!r}: add them or drop the prices"
            raise ConfigError(msg)
        if not self.traded_symbols():
            msg = "the venue trades no symbol: give prices={'BTCUSDT': ...}, symbols=[...] or trade streams"
            raise ConfigError(msg)

    def all_streams(self) -> tuple[str, ...]:
        """``streams`` plus those named in the URL (``...?streams=a@trade/b@trade``)."""
        query = urllib.parse.urlparse(self.market_data or "").query
        in_url = [s for v in urllib.parse.parse_qs(query).get("streams", []) for s in v.split("/") if s]
        return tuple(dict.fromkeys([*in_url, *self.streams]))

    def traded_symbols(self) -> tuple[str, ...]:
        """``symbols``, or the keys of ``prices`` and the symbols of the trade streams, sorted."""
        if self.symbols:
            return tuple(sorted(set(self.symbols)))
        from_streams = {s for s in map(_stream_symbol, self.all_streams()) if s}
        return tuple(sorted(set(self.prices) | from_streams))


@dataclass(slots=True, eq=False)
class _Order:
    account: _Account
    cid: str
    symbol: str | None
    side: str | None
    qty: float | None
    type: str | None
    price: float | None
    md: str | None
    recv_ns: int
    leaves: float = 0.0
    status: str = "accepted"
    fill_price: float | None = None
    fee: float = 0.0
    reason: str | None = None

    def row(self) -> dict[str, Any]:
        return {"cid": self.cid, "symbol": self.symbol, "side": self.side, "qty": self.qty, "leaves": self.leaves,
                "status": self.status, "type": self.type, "price": self.price, "md": self.md,
                "recv_ns": self.recv_ns, "fill_price": self.fill_price, "fee": self.fee, "reason": self.reason}  # fmt: skip


@dataclass(slots=True, eq=False)
class _Account:
    name: str
    cash: float
    positions: dict[str, float] = field(default_factory=dict)
    orders: dict[str, _Order] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)  # encoded reports; seq = index + 1
    conns: set[_Conn] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class _Conn:
    ws: ServerConnection
    queue: asyncio.Queue
    account: _Account | None = None
    cursor: int = 0  # reports of the account sent on this connection (the next is log[cursor])
    pending: bool = False  # a "reports" wake-up is queued
    frames: int = 0
    dropped: bool = False
    closing: bool = False


class VenueServer(ThreadedServer):
    """A paper trading venue served over WebSocket (protocol: see the module docstring).

    Parameters
    ----------
    host, port
        Where to listen; ``port=0`` takes a free port (:attr:`port`, :attr:`url` after
        :meth:`start`).
    token
        Required at login and on the HTTP endpoints. ``None``: the ``NTLAB_VENUE_TOKEN``
        environment variable if set; ``""``: no token.
    accounts
        The account names allowed to log in; ``None``: any (an account is created, with ``cash``,
        at its first login).
    prices
        Initial last trade prices ``{symbol: price}``.
    symbols
        The symbols traded; default: the keys of ``prices`` and the symbols of the trade streams.
    market_data, streams
        A Binance-style WebSocket (``ws://host:port/stream``) and the streams to ``SUBSCRIBE``
        (``["btcusdt@trade", ...]``); trade (and aggTrade) prints set the prices and fill limit
        orders. The venue reconnects with backoff when that connection drops.
    cash
        Starting cash of each account.
    fee_bps, slippage_bps
        Fee of each fill and the slippage of market orders, in basis points.
    fill_delay_ms
        Delay between an order's acceptance (or the crossing trade) and its fill.
    drop_after, drop_prob, seed
        Fault injection: abort an order connection's transport (no close frame) at every
        ``drop_after``-th frame it receives, and/or at any frame with probability ``drop_prob``;
        the seeded RNG picks whether that frame is processed first (its replies are then lost)
        or not. A client whose recovery (login, resume, re-sends) takes ``drop_after`` frames or
        more never gets further. Counted in ``stats["drops"]``; see also :meth:`drop_all`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        accounts: Sequence[str] | None = None,
        prices: Mapping[str, float] | None = None,
        symbols: Sequence[str] | None = None,
        market_data: str | None = None,
        streams: Sequence[str] = (),
        cash: float = 1_000_000.0,
        fee_bps: float = 0.0,
        slippage_bps: float = 0.0,
        fill_delay_ms: float = 0.0,
        drop_after: int | None = None,
        drop_prob: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        for name, value in (("accounts", accounts), ("symbols", symbols), ("streams", streams)):
            if isinstance(value, str):
                msg = f"{name}={value!r} must be a list of strings, not one string: write [{value!r}]"
                raise ConfigError(msg)
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
        self.config = VenueConfig(
            host=host, port=port, token=token or None, accounts=None if accounts is None else tuple(accounts),
            prices=dict(prices or {}), symbols=tuple(symbols or ()), market_data=market_data, streams=tuple(streams),
            cash=cash, fee_bps=fee_bps, slippage_bps=slippage_bps, fill_delay_ms=fill_delay_ms,
            drop_after=drop_after, drop_prob=drop_prob, seed=seed,
        )  # fmt: skip
        self.symbols: tuple[str, ...] = self.config.traded_symbols()
        self.port: int = port
        self._lock = threading.RLock()
        self._last: dict[str, float] = {s: float(p) for s, p in self.config.prices.items()}
        self._accounts: dict[str, _Account] = {}
        self._resting: dict[str, dict[int, _Order]] = {s: {} for s in self.symbols}
        self._conns: set[_Conn] = set()
        self._rng = random.Random(seed)
        self._stats: dict[str, Any] = dict.fromkeys(_STAT_KEYS, 0)
        self._bad_counts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_tid: int | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` of the order connection (the port is known after :meth:`start`)."""
        return f"ws://{self.config.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set() and not self._stopped

    def start(self, timeout: float = 10.0) -> Self:
        """Start the loop thread and return once the port is bound (again: no-op)."""
        if self._stopped:
            msg = "this venue was stopped; create a new VenueServer to serve again"
            raise NtlabError(msg)
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="ntlab-venue", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):  # pragma: no cover - a loop that cannot bind in 10 s
            msg = f"the venue did not start within {timeout} s"
            raise NtlabError(msg)
        if self._error is not None:
            self._thread.join(timeout)
            self._stopped = True
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and the listening socket; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread, event = self._loop, self._thread, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # pragma: no cover - the loop closed in between
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._stopped else "not started")
        return f"VenueServer({self.url}, symbols={list(self.symbols)}, {state})"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._loop_tid = threading.get_ident()
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
        finally:
            self._ready.set()
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        server = await serve(
            self._handler, self.config.host, self.config.port, process_request=self._http,
            compression=None, close_timeout=2, logger=_log,
        )  # fmt: skip
        self.port = server.sockets[0].getsockname()[1]
        md_task = asyncio.create_task(self._md_loop()) if self.config.market_data else None
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            if md_task is not None:
                md_task.cancel()
                await asyncio.gather(md_task, return_exceptions=True)
            server.close()
            await server.wait_closed()

    # ------------------------------------------------------------------ inspection
    @property
    def stats(self) -> dict[str, Any]:
        """Counters (a copy): ``connections`` (order connections opened), ``open_connections``,
        ``logins``, ``orders`` (new cids), ``duplicates`` (ignored ``new``), ``fills``,
        ``cancels``, ``rejects`` (rejected orders), ``cancel_rejects``, ``reports``,
        ``bad_messages`` {reason: count} (malformed messages and invalid orders, plus ``auth``
        failures), ``drops`` (injected), ``md_connects``, ``md_messages`` (trade prints applied),
        ``md_bad`` (market-data frames that could not be read)."""
        with self._lock:
            out = dict(self._stats)
            out["bad_messages"] = dict(self._bad_counts)
        return out

    @property
    def prices(self) -> dict[str, float]:
        """The last trade price of each symbol that has one."""
        with self._lock:
            return dict(self._last)

    def _account_or_none(self, account: str) -> _Account | None:
        if self.config.accounts is not None and account not in self.config.accounts:
            msg = f"account={account!r} is not one of this venue's accounts {list(self.config.accounts)}"
            raise ConfigError(msg)
        return self._accounts.get(account)

    def account(self, account: str) -> dict[str, Any]:
        """``{"cash": ..., "positions": {symbol: signed qty}}`` of ``account`` (the starting state
        for an account that has not logged in yet)."""
        with self._lock:
            acct = self._account_or_none(account)
            if acct is None:
                return {"cash": float(self.config.cash), "positions": {}}
            return {"cash": acct.cash, "positions": dict(acct.positions)}

    def orders(self, account: str) -> pl.DataFrame:
        """Every order of ``account`` in arrival order (columns :data:`ORDER_SCHEMA`; ``recv_ns``
        is ``time.monotonic_ns()`` when the ``new`` frame was read, ``md`` the JSON text)."""
        with self._lock:
            acct = self._account_or_none(account)
            rows = [o.row() for o in acct.orders.values()] if acct is not None else []
        return pl.DataFrame({k: [r[k] for r in rows] for k in ORDER_SCHEMA}, schema=ORDER_SCHEMA)

    def reports(self, account: str) -> list[dict[str, Any]]:
        """Every report of ``account``, in seq order, as sent."""
        with self._lock:
            acct = self._account_or_none(account)
            log = list(acct.log) if acct is not None else []
        return [json.loads(r) for r in log]

    # ------------------------------------------------------------------ prices
    def set_price(self, symbol: str, price: float) -> None:
        """A trade print at ``price`` (thread-safe): sets the last price and fills the resting
        limit orders it crosses before returning (their reports go out right after)."""
        if symbol not in self._resting:
            msg = f"symbol={symbol!r} is not traded by this venue (symbols: {list(self.symbols)})"
            raise ConfigError(msg)
        if not _positive(price):
            msg = f"price={price!r} must be a finite number > 0"
            raise ConfigError(msg)
        with self._lock:
            self._trade(symbol, float(price))

    def _trade(self, symbol: str, price: float) -> None:
        self._last[symbol] = price
        book = self._resting[symbol]
        if not book:
            return
        hits = [o for o in book.values() if (price <= o.price if o.side == "buy" else price >= o.price)]  # type: ignore[operator]
        for o in hits:
            del book[id(o)]
            self._fill_soon(o, o.price)

    # ------------------------------------------------------------------ threads
    def _in_loop(self) -> bool:
        return threading.get_ident() == self._loop_tid

    def _put(self, conn: _Conn, item: tuple[Any, ...]) -> None:
        if self._in_loop():
            conn.queue.put_nowait(item)
        elif self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(conn.queue.put_nowait, item)
            except RuntimeError:  # pragma: no cover - the loop closed meanwhile
                pass

    def _call_later(self, delay: float, fn: Any, *args: Any) -> None:
        loop = self._loop
        if self._in_loop():
            loop.call_later(delay, fn, *args)  # type: ignore[union-attr]
            return
        try:
            loop.call_soon_threadsafe(loop.call_later, delay, fn, *args)  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):  # no loop (not started or stopped): now
            fn(*args)

    # ------------------------------------------------------------------ reports and fills
    def _report(self, acct: _Account, cid: str | None, status: str, *, symbol: Any, side: Any, qty: Any,
                leaves: float, fill_qty: float = 0.0, fill_price: float | None = None, fee: float = 0.0,
                reason: str | None = None) -> None:  # fmt: skip
        rep = {"op": "report", "seq": len(acct.log) + 1, "cid": cid, "status": status, "symbol": symbol,
               "side": side, "qty": qty, "leaves": leaves, "fill_qty": fill_qty, "fill_price": fill_price,
               "fee": fee, "reason": reason, "ts_ns": time.time_ns()}  # fmt: skip
        acct.log.append(json.dumps(rep))
        self._stats["reports"] += 1
        for conn in acct.conns:
            if not conn.pending:
                conn.pending = True
                self._put(conn, ("reports",))

    def _order_report(self, o: _Order, status: str, **kw: Any) -> None:
        self._report(o.account, o.cid, status, symbol=o.symbol, side=o.side, qty=o.qty, leaves=o.leaves, **kw)

    def _fill_soon(self, o: _Order, price: float | None) -> None:
        """Fill ``o`` at ``price`` (None: the market price then), now or after ``fill_delay_ms``."""
        if self.config.fill_delay_ms > 0:
            self._call_later(self.config.fill_delay_ms * 1e-3, self._delayed_fill, o, price)
        else:
            self._fill(o, price)

    def _delayed_fill(self, o: _Order, price: float | None) -> None:
        with self._lock:
            if o.status == "accepted":  # not cancelled meanwhile
                self._fill(o, price)

    def _fill(self, o: _Order, price: float | None) -> None:
        if price is None:  # market: the last trade, slipped against the order
            slip = self.config.slippage_bps * 1e-4
            price = self._last[o.symbol] * (1 + slip if o.side == "buy" else 1 - slip)  # type: ignore[index]
        qty = float(o.qty)  # type: ignore[arg-type]
        notional = qty * price
        fee = notional * self.config.fee_bps * 1e-4
        acct = o.account
        sign = 1.0 if o.side == "buy" else -1.0
        acct.cash -= sign * notional + fee
        acct.positions[o.symbol] = acct.positions.get(o.symbol, 0.0) + sign * qty  # type: ignore[index]
        o.leaves, o.status, o.fill_price, o.fee = 0.0, "filled", price, fee
        self._stats["fills"] += 1
        self._order_report(o, "filled", fill_qty=qty, fill_price=price, fee=fee)

    # ------------------------------------------------------------------ order connection
    async def _handler(self, ws: ServerConnection) -> None:
        conn = _Conn(ws=ws, queue=asyncio.Queue())
        with self._lock:
            self._conns.add(conn)
            self._stats["connections"] += 1
            self._stats["open_connections"] += 1
        writer = asyncio.create_task(self._writer(conn))
        try:
            async for frame in ws:
                recv_ns = time.monotonic_ns()
                conn.frames += 1
                when = self._drop_when(conn)
                if when == "before":
                    self._abort(conn)
                    break
                self._on_frame(conn, frame, recv_ns)
                if when == "after":
                    self._abort(conn)
                    break
                if conn.closing:
                    await asyncio.wait_for(asyncio.shield(writer), 5)
                    break
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._stats["open_connections"] -= 1
                if conn.account is not None:
                    conn.account.conns.discard(conn)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    def _drop_when(self, conn: _Conn) -> Literal["before", "after"] | None:
        cfg = self.config
        drop = cfg.drop_after is not None and conn.frames % cfg.drop_after == 0
        if cfg.drop_prob > 0 and self._rng.random() < cfg.drop_prob:
            drop = True
        if not drop:
            return None
        return "before" if self._rng.random() < 0.5 else "after"

    def _abort(self, conn: _Conn) -> bool:
        if conn.dropped:
            return False
        conn.dropped = True
        with self._lock:
            self._stats["drops"] += 1
        conn.ws.transport.abort()
        return True

    def drop_all(self) -> int:
        """Abort every order connection (no close frame); returns how many were dropped."""
        if not self.running or self._loop is None:
            return 0

        async def _drop() -> int:
            return sum(self._abort(c) for c in list(self._conns))

        return asyncio.run_coroutine_threadsafe(_drop(), self._loop).result(10)

    async def _writer(self, conn: _Conn) -> None:
        """Sends this connection's replies and its account's reports, in order (see _send)."""
        ws = conn.ws
        try:
            while True:
                item = await conn.queue.get()
                kind = item[0]
                if kind == "reports":
                    with self._lock:
                        conn.pending = False
                    await self._flush(conn, None)
                elif kind == "msg":
                    await self._flush(conn, item[2])
                    await ws.send(item[1])
                elif kind == "resume":
                    with self._lock:
                        conn.cursor = min(item[1], len(conn.account.log))  # type: ignore[union-attr]
                    await self._flush(conn, None)
                    await ws.send(json.dumps({"op": "resumed", "last_seq": conn.cursor}))
                else:  # "close"
                    await ws.close(item[1], item[2])
                    return
        except ConnectionClosed:
            return

    async def _flush(self, conn: _Conn, upto: int | None) -> None:
        """Send the account's reports from the connection's cursor up to seq ``upto`` (None: all)."""
        acct = conn.account
        if acct is None:
            return
        while True:
            with self._lock:
                end = len(acct.log) if upto is None else min(upto, len(acct.log))
                batch = acct.log[conn.cursor : end]
            if not batch:
                return
            for text in batch:
                await conn.ws.send(text)
                conn.cursor += 1

    def _send(self, conn: _Conn, obj: dict[str, Any]) -> None:
        """Queue a reply; the account's reports made before it are sent first."""
        upto = len(conn.account.log) if conn.account is not None else 0
        conn.queue.put_nowait(("msg", json.dumps(obj), upto))

    def _bad(self, conn: _Conn, reason: str, msg: str, cid: str | None = None, code: str = "bad_request") -> None:
        with self._lock:
            self._bad_counts[reason] = self._bad_counts.get(reason, 0) + 1
        self._send(conn, {"op": "error", "code": code, "msg": msg, "cid": cid})

    def _on_frame(self, conn: _Conn, frame: str | bytes, recv_ns: int) -> None:
        try:
            self._dispatch(conn, frame, recv_ns)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - a bug must not kill the connection
            _log.exception("venue: error handling a frame")
            self._bad(conn, "internal", f"internal error: {type(exc).__name__}: {exc}")

    def _dispatch(self, conn: _Conn, frame: str | bytes, recv_ns: int) -> None:
        if isinstance(frame, bytes):
            try:
                frame = frame.decode()
            except UnicodeDecodeError:
                self._bad(conn, "invalid_json", "invalid JSON: a binary frame that is not UTF-8")
                return
        try:
            msg = json.loads(frame)
        except ValueError as exc:
            self._bad(conn, "invalid_json", f"invalid JSON: {exc} in {frame[:80]!r}")
            return
        if not isinstance(msg, dict):
            self._bad(conn, "not_object", f"a message is a JSON object with an 'op', got {frame[:80]!r}")
            return
        op = msg.get("op")
        cid = msg.get("cid") if isinstance(msg.get("cid"), str) else None
        if op not in _OPS:
            self._bad(conn, "unknown_op", f"op={op!r} is not one of {', '.join(_OPS)}", cid)
        elif op == "login":
            self._login(conn, msg)
        elif conn.account is None:
            self._bad(conn, "login_first", f"login first (got op={op!r} before login)", cid)
        elif op == "new":
            self._new(conn, msg, recv_ns)
        elif op == "cancel":
            self._cancel(conn, msg)
        elif op == "resume":
            after = msg.get("after_seq")
            if not (isinstance(after, int) and not isinstance(after, bool) and after >= 0):
                self._bad(conn, "bad_after_seq", f"after_seq={after!r} must be an int >= 0")
            else:
                conn.queue.put_nowait(("resume", after))
        elif op == "positions":
            with self._lock:
                acct = conn.account
                reply = {"op": "positions", "cash": acct.cash, "positions": dict(acct.positions),
                         "open_orders": [{"cid": o.cid, "symbol": o.symbol, "side": o.side, "qty": o.qty,
                                          "leaves": o.leaves, "type": o.type, "price": o.price}
                                         for o in acct.orders.values() if o.status == "accepted"],
                         "last_seq": len(acct.log)}  # fmt: skip
                self._send(conn, reply)
        else:  # ping
            self._send(conn, {"op": "pong"})

    def _login(self, conn: _Conn, msg: dict[str, Any]) -> None:
        if conn.account is not None:
            self._bad(conn, "already_logged_in", f"already logged in as {conn.account.name!r} on this connection")
            return
        token, name = msg.get("token"), msg.get("account")
        want = self.config.token
        if want is not None and not (isinstance(token, str) and hmac.compare_digest(token.encode(), want.encode())):
            self._auth_fail(conn, "wrong or missing token" if token else "this venue requires a token (token missing)")
            return
        if not (isinstance(name, str) and 0 < len(name) <= _MAX_ID):
            self._bad(conn, "bad_account", f"account={name!r} must be a non-empty string of at most {_MAX_ID} characters")
            return
        if self.config.accounts is not None and name not in self.config.accounts:
            self._auth_fail(conn, f"unknown account {name!r}")
            return
        with self._lock:
            acct = self._accounts.get(name)
            if acct is None:
                acct = self._accounts[name] = _Account(name=name, cash=float(self.config.cash))
            conn.account = acct
            conn.cursor = len(acct.log)
            acct.conns.add(conn)
            self._stats["logins"] += 1
            self._send(conn, {"op": "login", "ok": True, "account": name, "last_seq": len(acct.log)})

    def _auth_fail(self, conn: _Conn, msg: str) -> None:
        self._bad(conn, "auth", msg, code="auth")
        conn.queue.put_nowait(("close", 1008, "auth"))
        conn.closing = True

    def _new_problem(self, msg: dict[str, Any]) -> tuple[str, str] | None:
        """The first bad field of a ``new``: (stats reason, message naming the field and value)."""
        symbol, side, qty, kind, price = (msg.get(k) for k in ("symbol", "side", "qty", "type", "price"))
        if symbol not in self._resting:
            return "bad_symbol", f"symbol={symbol!r} is not traded here (symbols: {', '.join(self.symbols)})"
        if side not in ("buy", "sell"):
            return "bad_side", f"side={side!r} must be 'buy' or 'sell'"
        if not _positive(qty):
            return "bad_qty", f"qty={qty!r} must be a finite number > 0"
        if kind not in ("market", "limit"):
            return "bad_type", f"type={kind!r} must be 'market' or 'limit'"
        if kind == "limit" and not _positive(price):
            return "bad_price", f"price={price!r}: a limit order needs a finite price > 0"
        return None

    def _cid(self, conn: _Conn, msg: dict[str, Any]) -> str | None:
        """The message's client order id; None (and an error sent back) when it is not one."""
        cid = msg.get("cid")
        if isinstance(cid, str) and 0 < len(cid) <= _MAX_ID:
            return cid
        self._bad(conn, "bad_cid", f"cid={cid!r} must be a non-empty string of at most {_MAX_ID} characters")
        return None

    def _new(self, conn: _Conn, msg: dict[str, Any], recv_ns: int) -> None:
        cid = self._cid(conn, msg)
        if cid is None:
            return
        acct = conn.account
        assert acct is not None
        with self._lock:
            if cid in acct.orders:
                self._stats["duplicates"] += 1
                return
            self._stats["orders"] += 1
            problem = self._new_problem(msg)
            symbol, side, qty, kind, price = (msg.get(k) for k in ("symbol", "side", "qty", "type", "price"))
            md = msg.get("md")
            o = _Order(
                account=acct, cid=cid, symbol=symbol if isinstance(symbol, str) else None,
                side=side if isinstance(side, str) else None, qty=_finite(qty),
                type=kind if isinstance(kind, str) else None, price=_finite(price) if kind == "limit" else None,
                md=None if md is None else json.dumps(md), recv_ns=recv_ns,
            )  # fmt: skip
            acct.orders[cid] = o
            if problem is None and kind == "market" and symbol not in self._last:
                problem = ("", f"no market price yet for {symbol}")
            if problem is not None:
                reason, text = problem
                if reason:
                    self._bad_counts[reason] = self._bad_counts.get(reason, 0) + 1
                o.status, o.reason = "rejected", text
                self._stats["rejects"] += 1
                self._order_report(o, "rejected", reason=text)
                return
            o.leaves = o.qty  # type: ignore[assignment]
            self._order_report(o, "accepted")
            last = self._last.get(symbol)
            if kind == "market":
                self._fill_soon(o, None)
            elif last is not None and (last <= o.price if side == "buy" else last >= o.price):  # type: ignore[operator]
                self._fill_soon(o, o.price)
            else:
                self._resting[symbol][id(o)] = o

    def _cancel(self, conn: _Conn, msg: dict[str, Any]) -> None:
        cid = self._cid(conn, msg)
        if cid is None:
            return
        acct = conn.account
        assert acct is not None
        with self._lock:
            o = acct.orders.get(cid)
            if o is None or o.status != "accepted":
                self._stats["cancel_rejects"] += 1
                why = f"unknown cid {cid!r}" if o is None else f"already {o.status}"
                if o is None:
                    self._report(acct, cid, "cancel_rejected", symbol=None, side=None, qty=None, leaves=0.0, reason=why)
                else:
                    self._order_report(o, "cancel_rejected", reason=why)
                return
            if o.symbol in self._resting:
                self._resting[o.symbol].pop(id(o), None)
            o.status, o.leaves = "cancelled", 0.0
            self._stats["cancels"] += 1
            self._order_report(o, "cancelled")

    # ------------------------------------------------------------------ HTTP
    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urllib.parse.urlparse(request.path)
        if not url.path.startswith("/ntlab/"):
            return None  # a WebSocket handshake
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        want = self.config.token
        if want is not None:
            auth = request.headers.get("Authorization", "")
            given = query.get("token") or request.headers.get("X-Ntlab-Token") or auth.removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), want.encode()):
                return self._json(conn, 401, {"error": "auth", "msg": "wrong or missing token (?token= or header)"})
        try:
            if url.path == "/ntlab/stats":
                return self._json(conn, 200, self.stats)
            if url.path in ("/ntlab/orders", "/ntlab/account"):
                name = query.get("account")
                if not name:
                    return self._json(conn, 400, {"error": "bad_request", "msg": f"{url.path} needs ?account=NAME"})
                if url.path == "/ntlab/account":
                    return self._json(conn, 200, self.account(name))
                with self._lock:
                    acct = self._account_or_none(name)
                    rows = [o.row() for o in acct.orders.values()] if acct is not None else []
                return self._json(conn, 200, rows)
        except ConfigError as exc:
            return self._json(conn, 404, {"error": "not_found", "msg": str(exc)})
        paths = "/ntlab/stats, /ntlab/orders?account=A, /ntlab/account?account=A"
        return self._json(conn, 404, {"error": "not_found", "msg": f"{url.path} is not one of {paths}"})

    @staticmethod
    def _json(conn: ServerConnection, status: int, body: Any) -> Response:
        response = conn.respond(status, json.dumps(body))
        response.headers["Content-Type"] = "application/json"
        return response

    # ------------------------------------------------------------------ market data
    async def _md_loop(self) -> None:
        url, streams = self.config.market_data, list(self.config.all_streams())
        backoff = 0.05
        while True:
            try:
                async with connect(url, compression=None, open_timeout=5, close_timeout=1, max_size=2**22) as ws:  # type: ignore[arg-type]
                    with self._lock:
                        self._stats["md_connects"] += 1
                    if self.config.streams:
                        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": list(self.config.streams), "id": 1}))
                    backoff = 0.05
                    async for frame in ws:
                        self._on_md(frame)
                _log.info("venue: market data %s closed; reconnecting", url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: retry with backoff
                _log.info("venue: market data %s: %s; retrying in %.2f s (streams %s)", url, exc, backoff, streams)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _on_md(self, frame: str | bytes) -> None:
        try:
            msg = json.loads(frame)
        except ValueError:
            msg = None
        data = msg.get("data", msg) if isinstance(msg, dict) else None
        if not isinstance(data, dict):
            with self._lock:
                self._stats["md_bad"] += 1
            return
        if data.get("e") not in _TRADE_EVENTS:
            return  # subscription replies, other streams
        sym = data.get("s")
        try:
            price = float(data["p"])
        except (KeyError, TypeError, ValueError):
            price = math.nan
        with self._lock:
            if not (isinstance(sym, str) and math.isfinite(price) and price > 0):
                self._stats["md_bad"] += 1
            elif sym in self._resting:
                self._stats["md_messages"] += 1
                self._trade(sym, price)


def serve_main(**options: Any) -> int:
    """Serve ``VenueServer(**options)`` until KeyboardInterrupt or SIGTERM.

    Prints one line ``venue ws://HOST:PORT (account(s) ..., market data ...)`` once listening
    and returns 0 after a clean stop.
    """
    venue = VenueServer(**options).start()
    cfg = venue.config
    who = ", ".join(cfg.accounts) if cfg.accounts else "any"
    md = f"{cfg.market_data} {list(cfg.all_streams())}" if cfg.market_data else "set_price/prices only"
    extra = ", token required" if cfg.token else ""
    print(f"venue {venue.url} (account(s) {who}, market data {md}, symbols {', '.join(venue.symbols)}{extra})")
    sys.stdout.flush()
    venue.serve_forever()
    return 0
