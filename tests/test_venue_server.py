"""The paper venue's WebSocket server: protocol, matching, idempotency, resume, faults, HTTP."""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from ntlab.data.paths import data_file
from ntlab.exceptions import ConfigError, NtlabError
from ntlab.live import venue_server as vs
from ntlab.live.venue_server import TOKEN_ENV, VenueConfig, VenueServer, serve_main

BTC = "BTCUSDT"


# ---------------------------------------------------------------- helpers
def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.002)


class Client:
    """A small synchronous test client of the venue protocol."""

    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, compression=None, open_timeout=5))

    def send(self, obj: Any) -> None:
        self.ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))

    def ask(self, obj: Any) -> dict[str, Any]:
        self.send(obj)
        return self.recv()

    def login(self, account: str = "demo", token: str | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"op": "login", "account": account}
        if token is not None:
            msg["token"] = token
        reply = self.ask(msg)
        assert reply["op"] == "login" and reply["ok"] is True, reply
        return reply

    def reports(self, n: int) -> list[dict[str, Any]]:
        out = [self.recv() for _ in range(n)]
        assert all(r["op"] == "report" for r in out), out
        return out

    def nothing_pending(self) -> None:
        """The next message is the pong to a ping: nothing else was queued before it."""
        assert self.ask({"op": "ping"}) == {"op": "pong"}

    def close(self) -> None:
        self._stack.close()


def new(cid: str, side: str = "buy", qty: float = 1.0, kind: str = "market", price: float | None = None,
        symbol: str = BTC, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"op": "new", "cid": cid, "symbol": symbol, "side": side, "qty": qty, "type": kind, "price": price, **extra}


@pytest.fixture
def venue_factory() -> Iterator[Callable[..., VenueServer]]:
    made: list[VenueServer] = []

    def make(**kw: Any) -> VenueServer:
        kw.setdefault("prices", {BTC: 100.0})
        v = VenueServer(**kw).start()
        made.append(v)
        return v

    try:
        yield make
    finally:
        for v in made:
            v.stop()


@pytest.fixture
def client_factory() -> Iterator[Callable[[VenueServer], Client]]:
    made: list[Client] = []

    def make(venue: VenueServer) -> Client:
        c = Client(venue.url)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.close()


class MdServer:
    """A tiny Binance-like market-data WebSocket: records SUBSCRIBE, sends what it is given."""

    def __init__(self) -> None:
        self.frames: queue.Queue[str | None] = queue.Queue()
        self.subscriptions: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.server = serve(self._handler, "127.0.0.1", 0, compression=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/stream"

    def _handler(self, ws: Any) -> None:
        self.subscriptions.append(json.loads(ws.recv(timeout=5)))
        ws.send(json.dumps({"result": None, "id": 1}))
        while not self._stop.is_set():
            try:
                item = self.frames.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:  # drop this connection (the venue reconnects)
                return
            ws.send(item)

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.thread.join(5)


def recorded_trades(n: int) -> list[str]:
    """The JSON of the first ``n`` BTCUSDT spot trade messages of the recording, as received."""
    out = []
    with gzip.open(data_file("binance_l2_trades_2024-08-08/spot/btcusdt_20240808.gz"), "rt") as f:
        for line in f:
            text = line.split(" ", 1)[1].strip()
            if text.startswith('{"stream":"btcusdt@trade"'):
                out.append(text)
                if len(out) == n:
                    return out
    raise AssertionError("the recording has fewer trades than asked")


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"drop_prob": 1.5}, r"drop_prob=1\.5 must be a probability in \[0, 1\]"),
        ({"drop_after": 0}, r"drop_after=0 must be an int >= 1"),
        ({"port": -1}, r"port=-1 must be an int in 0\.\.65535"),
        ({"host": ""}, r"host='' must be an address"),
        ({"fee_bps": -1.0}, r"fee_bps=-1\.0 must be a finite number >= 0"),
        ({"fill_delay_ms": math.inf}, r"fill_delay_ms=inf must be a finite number >= 0"),
        ({"cash": math.nan}, r"cash=nan must be a finite number"),
        ({"token": 5}, r"token=5 must be a string"),
        ({"accounts": []}, r"accounts=\(\) must be a non-empty list"),
        ({"accounts": "demo"}, r"accounts='demo' must be a list of strings, not one string"),
        ({"streams": "btcusdt@trade", "market_data": "ws://127.0.0.1:1"}, r"write \['btcusdt@trade'\]"),
        ({"streams": ["btcusdt"], "market_data": "ws://127.0.0.1:1"}, r"Binance stream names"),
        ({"streams": ["btcusdt@trade"]}, r"need market_data="),
        ({"market_data": "http://127.0.0.1:1"}, r"market_data='http://127\.0\.0\.1:1' must be a ws://"),
        ({"prices": {BTC: -1.0}}, r"prices\['BTCUSDT'\]=-1\.0 must be a finite price > 0"),
        ({"prices": {BTC: 1.0}, "symbols": ["ETHUSDT"]}, r"prices for \['BTCUSDT'\] are not in symbols"),
        ({"symbols": [""]}, r"symbols=\('',\) must be a list of symbol names"),
        ({"seed": "x"}, r"seed='x' must be an int or None"),
        ({}, r"the venue trades no symbol"),
    ],
)
def test_config_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        VenueServer(**kw)


def test_traded_symbols_from_prices_streams_and_url() -> None:
    cfg = VenueConfig(prices={"ETHUSDT": 1.0}, market_data="ws://127.0.0.1:1/stream?streams=solusdt@trade/x@depth",
                      streams=("btcusdt@trade", "btcusdt@bookTicker", "bnbusdt@aggTrade"))  # fmt: skip
    assert cfg.all_streams() == ("solusdt@trade", "x@depth", "btcusdt@trade", "btcusdt@bookTicker", "bnbusdt@aggTrade")
    assert cfg.traded_symbols() == ("BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert VenueServer(symbols=["XRPUSDT", BTC], prices={BTC: 1.0}).symbols == ("BTCUSDT", "XRPUSDT")


def test_lifecycle(venue_factory: Callable[..., VenueServer]) -> None:
    v = VenueServer(prices={BTC: 100.0})
    assert "not started" in repr(v) and not v.running
    assert v.drop_all() == 0
    with v as same:
        assert same is v and v.running and v.start() is v
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", v.url) and v.port > 0
        assert "running" in repr(v)
    v.stop()  # idempotent
    assert "stopped" in repr(v)
    with pytest.raises(NtlabError, match="was stopped; create a new VenueServer"):
        v.start()
    busy = venue_factory()
    with pytest.raises(OSError):
        VenueServer(prices={BTC: 1.0}, port=busy.port).start()


def test_set_price_errors_and_account_names() -> None:
    v = VenueServer(prices={BTC: 100.0}, accounts=["demo"])
    with pytest.raises(ConfigError, match=r"symbol='ETHUSDT' is not traded by this venue"):
        v.set_price("ETHUSDT", 1.0)
    with pytest.raises(ConfigError, match=r"price=0 must be a finite number > 0"):
        v.set_price(BTC, 0)
    v.set_price(BTC, 101.5)  # before start: just sets the price
    assert v.prices == {BTC: 101.5}
    assert v.account("demo") == {"cash": 1_000_000.0, "positions": {}}
    assert v.orders("demo").height == 0 and v.reports("demo") == []
    with pytest.raises(ConfigError, match=r"account='bob' is not one of this venue's accounts \['demo'\]"):
        v.account("bob")


# ---------------------------------------------------------------- login
def test_login_and_auth(venue_factory: Callable[..., VenueServer], client_factory: Callable[[VenueServer], Client],
                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    v = venue_factory(token="s3cret", accounts=["demo", "alice"])
    for token in (None, "wrong"):
        c = client_factory(v)
        msg = {"op": "login", "account": "demo"} | ({"token": token} if token else {})
        err = c.ask(msg)
        assert err["op"] == "error" and err["code"] == "auth"
        assert re.search("token missing" if token is None else "wrong or missing token", err["msg"])
        with pytest.raises(ConnectionClosed) as info:
            c.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    c = client_factory(v)
    err = c.ask({"op": "login", "account": "bob", "token": "s3cret"})
    assert err["code"] == "auth" and err["msg"] == "unknown account 'bob'"
    c = client_factory(v)
    first = c.ask({"op": "ping"})
    assert first == {"op": "error", "code": "bad_request", "msg": "login first (got op='ping' before login)", "cid": None}
    err = c.ask(new("x1"))
    assert err["msg"].startswith("login first") and err["cid"] == "x1"
    err = c.ask({"op": "login", "account": 7, "token": "s3cret"})
    assert err["code"] == "bad_request" and "account=7 must be a non-empty string" in err["msg"]
    assert c.login("demo", token="s3cret") == {"op": "login", "ok": True, "account": "demo", "last_seq": 0}
    err = c.ask({"op": "login", "account": "alice", "token": "s3cret"})
    assert err["msg"] == "already logged in as 'demo' on this connection"
    c.nothing_pending()
    stats = v.stats
    assert stats["logins"] == 1 and stats["connections"] == 4
    assert stats["bad_messages"] == {"auth": 3, "login_first": 2, "bad_account": 1, "already_logged_in": 1}

    # the token from the environment, and token="" to serve without one
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    v2 = venue_factory()
    c = client_factory(v2)
    assert c.ask({"op": "login", "account": "x", "token": "nope"})["code"] == "auth"
    client_factory(v2).login("x", token="from-env")
    v3 = venue_factory(token="")
    client_factory(v3).login("x")


# ---------------------------------------------------------------- matching
def test_market_orders_fill_with_slippage_fee_cash_position(venue_factory: Callable[..., VenueServer],
                                                           client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory(prices={BTC: 61800.0}, fee_bps=10.0, slippage_bps=5.0, cash=50_000.0)
    c = client_factory(v)
    c.login()
    t0 = time.monotonic_ns()
    c.send(new("b1", "buy", 0.5, md={"signal": 1.25, "tags": ["a"]}))
    acc, fill = c.reports(2)
    t1 = time.monotonic_ns()
    buy_px = 61800.0 * (1 + 5e-4)
    assert acc | {"ts_ns": 0} == {"op": "report", "seq": 1, "cid": "b1", "status": "accepted", "symbol": BTC,
                                  "side": "buy", "qty": 0.5, "leaves": 0.5, "fill_qty": 0.0, "fill_price": None,
                                  "fee": 0.0, "reason": None, "ts_ns": 0}  # fmt: skip
    assert fill["seq"] == 2 and fill["status"] == "filled" and fill["leaves"] == 0.0 and fill["fill_qty"] == 0.5
    assert fill["fill_price"] == pytest.approx(buy_px, rel=1e-15)
    assert fill["fee"] == pytest.approx(0.5 * buy_px * 10 * 1e-4, rel=1e-15)
    assert abs(fill["ts_ns"] - time.time_ns()) < 60e9
    v.set_price(BTC, 62000.0)
    c.send(new("s1", "sell", 0.2))
    _, sfill = c.reports(2)
    sell_px = 62000.0 * (1 - 5e-4)
    assert sfill["fill_price"] == pytest.approx(sell_px, rel=1e-15)
    cash = 50_000.0 - 0.5 * buy_px * (1 + 1e-3) + 0.2 * sell_px * (1 - 1e-3)
    assert v.account("demo") == {"cash": pytest.approx(cash, rel=1e-12), "positions": {BTC: pytest.approx(0.3)}}
    frame = v.orders("demo")
    assert frame.columns == list(vs.ORDER_SCHEMA)
    assert frame["cid"].to_list() == ["b1", "s1"] and frame["status"].to_list() == ["filled", "filled"]
    assert json.loads(frame["md"][0]) == {"signal": 1.25, "tags": ["a"]} and frame["md"][1] is None
    assert t0 <= frame["recv_ns"][0] <= t1
    assert [r["seq"] for r in v.reports("demo")] == [1, 2, 3, 4]
    stats = v.stats
    assert (stats["orders"], stats["fills"], stats["reports"], stats["rejects"]) == (2, 2, 4, 0)


def test_market_order_without_price_is_rejected(venue_factory: Callable[..., VenueServer],
                                                client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory(prices={BTC: 100.0}, symbols=[BTC, "ETHUSDT"])
    c = client_factory(v)
    c.login()
    c.send(new("e1", symbol="ETHUSDT"))
    (rep,) = c.reports(1)
    assert rep["status"] == "rejected" and rep["reason"] == "no market price yet for ETHUSDT" and rep["leaves"] == 0.0
    assert v.stats["rejects"] == 1 and v.stats["bad_messages"] == {}
    # a limit on a symbol without a price rests until a print crosses it
    c.send(new("e2", "sell", 2.0, "limit", 3000.0, symbol="ETHUSDT"))
    assert c.recv()["status"] == "accepted"
    v.set_price("ETHUSDT", 3000.0)
    fill = c.recv()
    assert (fill["status"], fill["fill_price"], fill["fill_qty"]) == ("filled", 3000.0, 2.0)
    assert v.account("demo") == {"cash": 1_006_000.0, "positions": {"ETHUSDT": -2.0}}


def test_limit_orders_rest_and_fill_on_set_price(venue_factory: Callable[..., VenueServer],
                                                 client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory(fee_bps=2.0, slippage_bps=50.0)
    c = client_factory(v)
    c.login()
    c.send(new("lb", "buy", 1.0, "limit", 99.0))
    c.send(new("ls", "sell", 3.0, "limit", 101.0))
    assert [r["status"] for r in c.reports(2)] == ["accepted", "accepted"]
    c.nothing_pending()
    pos = c.ask({"op": "positions"})
    assert pos == {"op": "positions", "cash": 1_000_000.0, "positions": {}, "last_seq": 2, "open_orders": [
        {"cid": "lb", "symbol": BTC, "side": "buy", "qty": 1.0, "leaves": 1.0, "type": "limit", "price": 99.0},
        {"cid": "ls", "symbol": BTC, "side": "sell", "qty": 3.0, "leaves": 3.0, "type": "limit", "price": 101.0}]}  # fmt: skip
    v.set_price(BTC, 99.5)  # crosses neither
    v.set_price(BTC, 100.99)
    c.nothing_pending()
    v.set_price(BTC, 98.0)  # buy fills at its limit, without slippage
    fill = c.recv()
    assert (fill["cid"], fill["fill_price"], fill["fee"]) == ("lb", 99.0, pytest.approx(99.0 * 2e-4))
    v.set_price(BTC, 101.0)  # at the limit: fills
    fill = c.recv()
    assert (fill["cid"], fill["fill_price"], fill["fill_qty"]) == ("ls", 101.0, 3.0)
    # a marketable limit fills at once at its limit price
    c.send(new("mb", "buy", 1.0, "limit", 105.0))
    acc, fill = c.reports(2)
    assert (acc["status"], fill["status"], fill["fill_price"]) == ("accepted", "filled", 105.0)
    c.send(new("ms", "sell", 1.0, "limit", 100.0))
    assert c.reports(2)[1]["fill_price"] == 100.0
    acct = v.account("demo")
    assert acct["positions"] == {BTC: pytest.approx(-2.0)}
    notional = -99.0 + 303.0 - 105.0 + 100.0
    assert acct["cash"] == pytest.approx(1_000_000.0 + notional - (99.0 + 303.0 + 105.0 + 100.0) * 2e-4)
    assert c.ask({"op": "positions"})["open_orders"] == []


def test_limit_orders_fill_from_recorded_trade_stream(venue_factory: Callable[..., VenueServer],
                                                      client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    trades = recorded_trades(300)
    prices = [float(json.loads(t)["data"]["p"]) for t in trades]  # the reference, read directly
    low, high = min(prices), max(prices)
    md = MdServer()
    try:
        v = venue_factory(prices=None, market_data=md.url, streams=["btcusdt@trade"])
        assert v.symbols == (BTC,)
        wait_for(lambda: v.stats["md_connects"] == 1 and len(md.subscriptions) == 1)
        assert md.subscriptions[0] == {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}
        c = client_factory(v)
        c.login()
        c.send(new("early", "buy", 0.01))  # no print yet
        assert c.recv()["reason"] == "no market price yet for BTCUSDT"
        c.send(new("at_low", "buy", 0.5, "limit", low))
        c.send(new("below", "buy", 0.5, "limit", low - 0.01))
        c.send(new("at_high", "sell", 0.25, "limit", high))
        assert [r["status"] for r in c.reports(3)] == ["accepted"] * 3
        for bad in ("nope", "[1]", json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "s": BTC, "p": "abc"}}),
                    json.dumps({"data": {"e": "trade", "s": BTC, "p": "-5"}})):  # fmt: skip
            md.frames.put(bad)
        md.frames.put(json.dumps({"stream": "btcusdt@depth", "data": {"e": "depthUpdate", "s": BTC}}))  # ignored
        md.frames.put(json.dumps({"stream": "ethusdt@trade", "data": {"e": "trade", "s": "ETHUSDT", "p": "1"}}))
        for t in trades:
            md.frames.put(t)
        wait_for(lambda: v.stats["md_messages"] == len(trades))
        assert v.prices == {BTC: prices[-1]}
        fills = {r["cid"]: r for r in c.reports(2)}
        assert (fills["at_low"]["fill_price"], fills["at_low"]["fill_qty"]) == (low, 0.5)
        assert (fills["at_high"]["fill_price"], fills["at_high"]["side"]) == (high, "sell")
        assert [o["cid"] for o in c.ask({"op": "positions"})["open_orders"]] == ["below"]
        assert v.stats["md_bad"] == 4
        # the market-data connection drops: the venue reconnects, subscribes again, goes on
        md.frames.put(None)
        wait_for(lambda: v.stats["md_connects"] == 2 and len(md.subscriptions) == 2)
        md.frames.put(json.dumps({"e": "trade", "s": BTC, "p": str(low - 1.0), "q": "1"}))  # a raw (not combined) frame
        fill = c.recv()
        assert (fill["cid"], fill["fill_price"]) == ("below", low - 0.01)
        assert v.prices == {BTC: low - 1.0} and v.stats["md_messages"] == len(trades) + 1
    finally:
        md.close()


def test_duplicate_cid_is_ignored(venue_factory: Callable[..., VenueServer],
                                  client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory()
    c = client_factory(v)
    c.login()
    c.send(new("d1", "buy", 1.0))
    assert [r["status"] for r in c.reports(2)] == ["accepted", "filled"]
    c.send(new("d1", "sell", 5.0))  # same cid, other content: still ignored
    c.nothing_pending()
    c.send(new("r1", qty=-1.0))
    assert c.recv()["status"] == "rejected"
    c.send(new("r1", qty=1.0))  # the cid of a rejected order is taken too
    c.nothing_pending()
    c2 = client_factory(v)  # another connection of the account: same ids
    c2.login()
    c2.send(new("d1"))
    c2.nothing_pending()
    assert v.stats["duplicates"] == 3 and v.stats["orders"] == 2
    assert v.orders("demo")["cid"].to_list() == ["d1", "r1"]
    assert v.account("demo")["positions"] == {BTC: 1.0}
    c3 = client_factory(v)  # other accounts have their own ids
    c3.login("other")
    c3.send(new("d1", "sell"))
    assert [r["seq"] for r in c3.reports(2)] == [1, 2]


def test_cancel(venue_factory: Callable[..., VenueServer], client_factory: Callable[[VenueServer], Client]) -> None:
    v = venue_factory()
    c = client_factory(v)
    c.login()
    c.send(new("l1", "buy", 2.0, "limit", 90.0))
    assert c.recv()["status"] == "accepted"
    rep = c.ask({"op": "cancel", "cid": "l1"})
    assert (rep["status"], rep["cid"], rep["qty"], rep["leaves"], rep["reason"]) == ("cancelled", "l1", 2.0, 0.0, None)
    rep = c.ask({"op": "cancel", "cid": "l1"})
    assert (rep["status"], rep["reason"]) == ("cancel_rejected", "already cancelled")
    rep = c.ask({"op": "cancel", "cid": "nope"})
    assert (rep["status"], rep["reason"], rep["symbol"], rep["qty"]) == ("cancel_rejected", "unknown cid 'nope'", None, None)
    c.send(new("m1"))
    c.reports(2)
    assert c.ask({"op": "cancel", "cid": "m1"})["reason"] == "already filled"
    c.send(new("bad", side="hold"))
    assert c.recv()["status"] == "rejected"
    assert c.ask({"op": "cancel", "cid": "bad"})["reason"] == "already rejected"
    v.set_price(BTC, 80.0)  # would have filled l1
    c.nothing_pending()
    err = c.ask({"op": "cancel", "cid": 5})
    assert err == {"op": "error", "code": "bad_request", "cid": None,
                   "msg": "cid=5 must be a non-empty string of at most 128 characters"}  # fmt: skip
    stats = v.stats
    assert (stats["cancels"], stats["cancel_rejects"]) == (1, 4)
    row = v.orders("demo").row(0, named=True)
    assert (row["status"], row["leaves"], row["fill_price"]) == ("cancelled", 0.0, None)
    assert v.account("demo")["positions"] == {BTC: 1.0}


def test_resume_resends_exactly_the_reports_after_k(venue_factory: Callable[..., VenueServer],
                                                    client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory()
    c1 = client_factory(v)
    c1.login()
    for i in range(3):
        c1.send(new(f"o{i}", "buy" if i % 2 else "sell", 1.0 + i))
    live = c1.reports(6)
    assert [r["seq"] for r in live] == [1, 2, 3, 4, 5, 6]
    c1.close()
    c2 = client_factory(v)
    assert c2.login()["last_seq"] == 6
    c2.send({"op": "resume", "after_seq": 3})
    assert c2.reports(3) == live[3:]
    assert c2.recv() == {"op": "resumed", "last_seq": 6}
    c2.send({"op": "resume", "after_seq": 0})
    assert c2.reports(6) == live
    assert c2.recv() == {"op": "resumed", "last_seq": 6}
    assert c2.ask({"op": "resume", "after_seq": 100}) == {"op": "resumed", "last_seq": 6}
    for after in (-1, "3", True, None):
        err = c2.ask({"op": "resume"} | ({} if after is None else {"after_seq": after}))
        assert err["code"] == "bad_request" and err["msg"] == f"after_seq={after!r} must be an int >= 0"
    assert v.stats["bad_messages"] == {"bad_after_seq": 4}


def test_reports_made_while_disconnected_come_with_resume(venue_factory: Callable[..., VenueServer],
                                                          client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory()
    c1 = client_factory(v)
    c1.login()
    c1.send(new("l1", "buy", 1.0, "limit", 95.0))
    assert c1.recv()["seq"] == 1
    c1.close()
    wait_for(lambda: v.stats["open_connections"] == 0)
    v.set_price(BTC, 94.0)  # fills while the account has no connection
    assert v.reports("demo")[-1]["status"] == "filled"
    a, b = client_factory(v), client_factory(v)
    assert a.login()["last_seq"] == 2 and b.login()["last_seq"] == 2
    a.nothing_pending()  # not pushed at login
    a.send({"op": "resume", "after_seq": 1})
    (fill,) = a.reports(1)
    assert (fill["seq"], fill["cid"], fill["status"], fill["fill_price"]) == (2, "l1", "filled", 95.0)
    assert a.recv() == {"op": "resumed", "last_seq": 2}
    # every connection of the account gets the live reports
    a.send(new("m1", "sell", 1.0))
    assert [r["seq"] for r in a.reports(2)] == [3, 4]
    assert [r["seq"] for r in b.reports(2)] == [3, 4]
    pos = b.ask({"op": "positions"})
    assert pos["positions"] == {BTC: 0.0} and pos["last_seq"] == 4 and pos["cash"] == pytest.approx(1_000_000.0 - 95.0 + 94.0)


def test_binary_frames_are_read_as_json(venue_factory: Callable[..., VenueServer],
                                        client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory()
    c = client_factory(v)
    c.send(json.dumps({"op": "login", "account": "demo"}).encode())
    assert c.recv()["ok"] is True
    c.send(b'{"op": "ping"}')
    assert c.recv() == {"op": "pong"}


@pytest.mark.parametrize(
    ("frame", "reason", "match"),
    [
        ("not json{", "invalid_json", r"^invalid JSON: Expecting value.* in 'not json\{'$"),
        (b"\xff\xfe", "invalid_json", r"^invalid JSON: a binary frame that is not UTF-8$"),
        ("[1, 2]", "not_object", r"^a message is a JSON object with an 'op', got '\[1, 2\]'$"),
        ('{"cid": "a"}', "unknown_op", r"^op=None is not one of login, resume, new, cancel, positions, ping$"),
        ('{"op": "buy"}', "unknown_op", r"^op='buy' is not one of"),
        (json.dumps({"op": "new", "symbol": BTC}), "bad_cid", r"^cid=None must be a non-empty string"),
        (json.dumps(new("")), "bad_cid", r"^cid='' must be a non-empty string"),
        (json.dumps(new("x" * 129)), "bad_cid", r"^cid='xxx.*' must be a non-empty string of at most 128 characters"),
        (json.dumps({"op": "new", "cid": 17}), "bad_cid", r"^cid=17 must be"),
        (json.dumps({"op": "cancel"}), "bad_cid", r"^cid=None must be"),
    ],
)
def test_malformed_messages_get_an_error(venue_factory: Callable[..., VenueServer], client_factory: Callable[[VenueServer], Client],
                                         frame: str | bytes, reason: str, match: str) -> None:  # fmt: skip
    v = venue_factory()
    c = client_factory(v)
    c.login()
    c.send(frame)
    err = c.recv()
    assert err["op"] == "error" and err["code"] == "bad_request"
    assert re.search(match, err["msg"]), err["msg"]
    assert err["cid"] == ("a" if reason == "unknown_op" and "cid" in str(frame) else None)
    c.nothing_pending()  # the connection goes on
    assert v.stats["bad_messages"] == {reason: 1} and v.stats["orders"] == 0


@pytest.mark.parametrize(
    ("fields", "reason", "text"),
    [
        ({"symbol": "ETHUSDT"}, "bad_symbol", "symbol='ETHUSDT' is not traded here (symbols: BTCUSDT)"),
        ({"symbol": None}, "bad_symbol", "symbol=None is not traded here (symbols: BTCUSDT)"),
        ({"side": "hold"}, "bad_side", "side='hold' must be 'buy' or 'sell'"),
        ({"qty": 0}, "bad_qty", "qty=0 must be a finite number > 0"),
        ({"qty": -1.5}, "bad_qty", "qty=-1.5 must be a finite number > 0"),
        ({"qty": "1"}, "bad_qty", "qty='1' must be a finite number > 0"),
        ({"qty": True}, "bad_qty", "qty=True must be a finite number > 0"),
        ({"qty": math.nan}, "bad_qty", "qty=nan must be a finite number > 0"),
        ({"qty": math.inf}, "bad_qty", "qty=inf must be a finite number > 0"),
        ({"type": "stop"}, "bad_type", "type='stop' must be 'market' or 'limit'"),
        ({"type": "limit", "price": None}, "bad_price", "price=None: a limit order needs a finite price > 0"),
        ({"type": "limit", "price": 0.0}, "bad_price", "price=0.0: a limit order needs a finite price > 0"),
        ({"type": "limit", "price": "100"}, "bad_price", "price='100': a limit order needs a finite price > 0"),
        ({"type": "limit", "price": -math.inf}, "bad_price", "price=-inf: a limit order needs a finite price > 0"),
    ],
)
def test_invalid_new_gets_a_rejected_report(venue_factory: Callable[..., VenueServer], client_factory: Callable[[VenueServer], Client],
                                            fields: dict[str, Any], reason: str, text: str) -> None:  # fmt: skip
    v = venue_factory()
    c = client_factory(v)
    c.login()
    rep = c.ask(new("c1") | fields)  # json.dumps writes NaN/Infinity, which the venue reads
    assert (rep["op"], rep["status"], rep["cid"], rep["reason"], rep["leaves"], rep["seq"]) == ("report", "rejected", "c1", text, 0.0, 1)
    stats = v.stats
    assert stats["bad_messages"] == {reason: 1} and stats["rejects"] == 1 and stats["orders"] == 1
    row = v.orders("demo").row(0, named=True)
    assert (row["cid"], row["status"], row["reason"]) == ("c1", "rejected", text)
    c.nothing_pending()


def test_market_order_prices_at_fill_time_with_fill_delay(venue_factory: Callable[..., VenueServer],
                                                          client_factory: Callable[[VenueServer], Client]) -> None:  # fmt: skip
    v = venue_factory(fill_delay_ms=400.0)
    c = client_factory(v)
    c.login()
    c.send(new("m1", "buy", 1.0))
    v.set_price(BTC, 120.0)  # before the delayed fill, whether or not the order has arrived yet
    acc, fill = c.reports(2)
    assert (acc["status"], fill["status"], fill["fill_price"]) == ("accepted", "filled", 120.0)
    assert fill["ts_ns"] - acc["ts_ns"] >= 350e6
    c.send(new("l1", "buy", 1.0, "limit", 110.0))
    assert c.recv()["status"] == "accepted"
    v.set_price(BTC, 109.0)  # crosses: the fill is due in 400 ms
    assert c.ask({"op": "cancel", "cid": "l1"})["status"] == "cancelled"
    time.sleep(0.5)
    c.nothing_pending()  # the cancelled order did not fill
    c.send(new("l2", "sell", 1.0, "limit", 150.0))
    assert c.recv()["status"] == "accepted"
    v.stop()
    v.set_price(BTC, 151.0)  # no loop any more: the fill happens at once
    assert v.orders("demo")["status"].to_list() == ["filled", "cancelled", "filled"]
    assert v.account("demo")["positions"] == {BTC: 0.0}


# ---------------------------------------------------------------- faults
def test_drop_after_aborts_without_close_frame_before_or_after_processing(
    venue_factory: Callable[..., VenueServer],
) -> None:
    v = venue_factory(drop_after=3, seed=7)
    processed = []
    for i in range(16):
        with connect(v.url, compression=None) as ws:
            ws.send(json.dumps({"op": "login", "account": "demo"}))
            assert json.loads(ws.recv(timeout=5))["ok"]
            ws.send(json.dumps({"op": "ping"}))
            assert json.loads(ws.recv(timeout=5)) == {"op": "pong"}
            ws.send(json.dumps(new(f"c{i}")))  # the 3rd frame: dropped
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    ws.recv(timeout=5)
            assert info.value.rcvd is None  # no close frame from the venue
        processed.append(f"c{i}" in v.orders("demo")["cid"].to_list())
    assert set(processed) == {True, False}  # both cases happen
    assert v.stats["drops"] == 16 and v.stats["orders"] == sum(processed)


def test_drop_prob_and_drop_all(venue_factory: Callable[..., VenueServer]) -> None:
    v = venue_factory(drop_prob=1.0)
    with connect(v.url, compression=None) as ws:
        ws.send(json.dumps({"op": "login", "account": "demo"}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is None
    assert v.stats["drops"] == 1
    v2 = venue_factory()
    clients = [Client(v2.url) for _ in range(2)]
    try:
        for c in clients:
            c.login()
        assert v2.drop_all() == 2
        for c in clients:
            with pytest.raises(ConnectionClosed) as info:
                c.recv()
            assert info.value.rcvd is None
        wait_for(lambda: v2.stats["open_connections"] == 0)
        assert v2.drop_all() == 0 and v2.stats["drops"] == 2
    finally:
        for c in clients:
            c.close()


def run_adapter(url: str, orders: list[dict[str, Any]], *, eager: bool = False,
                window: int = 5) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """A mini version of the engine's venue adapter: reconnect, login, resume from the last seq
    applied, re-send the orders without a report, go on (``eager``: re-send them right after the
    login, before the resume: those the venue has are then duplicates). Returns the reports
    applied, in seq order, and the number of reconnections."""
    applied: list[dict[str, Any]] = []
    acked: set[str] = set()
    done: set[str] = set()
    sent: list[str] = []
    by_cid = {o["cid"]: o for o in orders}
    reconnects = 0

    def apply(msg: dict[str, Any]) -> None:
        assert msg["op"] == "report", msg
        if msg["seq"] != len(applied) + 1:
            # already applied (re-sent), or (eager) sent live before the resume re-sends those
            # before it: it comes again then
            assert eager or msg["seq"] <= len(applied), "a gap in the report sequence"
            return
        applied.append(msg)
        acked.add(msg["cid"])
        if msg["status"] in ("filled", "rejected"):
            done.add(msg["cid"])

    while len(done) < len(orders):
        assert reconnects < 5000, "no progress"
        try:
            with connect(url, compression=None, open_timeout=5) as ws:
                ws.send(json.dumps({"op": "login", "account": "demo"}))
                assert json.loads(ws.recv(timeout=5))["op"] == "login"
                unacked = [cid for cid in sent if cid not in acked]
                if eager:
                    for cid in unacked:
                        ws.send(json.dumps(by_cid[cid]))
                ws.send(json.dumps({"op": "resume", "after_seq": len(applied)}))
                while (msg := json.loads(ws.recv(timeout=5)))["op"] != "resumed":
                    apply(msg)
                for cid in unacked:
                    if not eager and cid not in acked:
                        ws.send(json.dumps(by_cid[cid]))
                while len(done) < len(orders):
                    while len(sent) < len(orders) and len(sent) - len(done) < window:
                        o = orders[len(sent)]
                        sent.append(o["cid"])
                        ws.send(json.dumps(o))
                    while not done.issuperset(sent):
                        apply(json.loads(ws.recv(timeout=5)))
        except ConnectionClosed as exc:
            assert exc.rcvd is None  # the venue never closes cleanly here: injected drops only
            reconnects += 1
    return applied, reconnects


@pytest.mark.parametrize(
    ("faults", "eager"),
    [({"drop_after": 7, "seed": 3}, False), ({"drop_after": 9, "seed": 4}, True), ({"drop_prob": 0.08, "seed": 11}, True)],
)
def test_every_order_exactly_once_across_drops(venue_factory: Callable[..., VenueServer], faults: dict[str, Any],
                                               eager: bool) -> None:  # fmt: skip
    v = venue_factory(fee_bps=1.5, **faults)
    rng = random.Random(5)
    orders = [new(f"eng-{i}", rng.choice(["buy", "sell"]), round(rng.uniform(0.001, 0.1), 6)) for i in range(200)]
    applied, reconnects = run_adapter(v.url, orders, eager=eager)
    frame = v.orders("demo")
    assert frame.height == 200 and frame["cid"].n_unique() == 200
    assert sorted(frame["cid"].to_list()) == sorted(o["cid"] for o in orders)
    assert frame["status"].to_list() == ["filled"] * 200
    assert [r["seq"] for r in applied] == list(range(1, 401))
    assert [r["seq"] for r in v.reports("demo")] == list(range(1, 401))
    per_cid: dict[str, list[str]] = {}
    for r in applied:
        per_cid.setdefault(r["cid"], []).append(r["status"])
    assert per_cid == {o["cid"]: ["accepted", "filled"] for o in orders}
    fills = [r for r in applied if r["status"] == "filled"]
    signed = sum(r["fill_qty"] * (1 if r["side"] == "buy" else -1) for r in fills)
    want = sum(o["qty"] * (1 if o["side"] == "buy" else -1) for o in orders)
    acct = v.account("demo")
    assert acct["positions"][BTC] == pytest.approx(signed, abs=1e-9) == pytest.approx(want, abs=1e-9)
    cash = 1_000_000.0 - sum(r["fill_qty"] * r["fill_price"] * (1 if r["side"] == "buy" else -1) + r["fee"] for r in fills)
    assert acct["cash"] == pytest.approx(cash, abs=1e-6)
    stats = v.stats
    assert reconnects == stats["drops"] >= 10
    assert stats["orders"] == 200 and stats["fills"] == 200
    if eager:  # orders processed before a drop that lost their reports were sent again: ignored
        assert stats["duplicates"] > 0


# ---------------------------------------------------------------- HTTP and serve_main
def test_http_endpoints(venue_factory: Callable[..., VenueServer], client_factory: Callable[[VenueServer], Client]) -> None:
    v = venue_factory(token="tk", accounts=["demo", "ghost"])
    c = client_factory(v)
    c.login(token="tk")
    c.send(new("h1", md=[1, 2]))
    c.reports(2)
    base = v.url.replace("ws://", "http://")
    code, body = http_get(f"{base}/ntlab/stats")
    assert code == 401 and body["error"] == "auth"
    assert http_get(f"{base}/ntlab/stats?token=bad")[0] == 401
    code, body = http_get(f"{base}/ntlab/stats?token=tk")
    assert code == 200 and body == v.stats and body["orders"] == 1
    code, body = http_get(f"{base}/ntlab/orders?account=demo", {"Authorization": "Bearer tk"})
    assert code == 200 and body == v.orders("demo").to_dicts() and body[0]["md"] == "[1, 2]"
    code, body = http_get(f"{base}/ntlab/account?account=demo", {"X-Ntlab-Token": "tk"})
    assert code == 200 and body == v.account("demo") and body["positions"] == {BTC: 1.0}
    assert http_get(f"{base}/ntlab/orders?account=ghost&token=tk") == (200, [])
    code, body = http_get(f"{base}/ntlab/orders?account=bob&token=tk")
    assert code == 404 and "account='bob' is not one of" in body["msg"]
    code, body = http_get(f"{base}/ntlab/orders?token=tk")
    assert code == 400 and body["msg"] == "/ntlab/orders needs ?account=NAME"
    code, body = http_get(f"{base}/ntlab/nope?token=tk")
    assert code == 404 and body["msg"].startswith("/ntlab/nope is not one of")
    with pytest.raises(urllib.error.HTTPError, match="426"):
        urllib.request.urlopen(f"{base}/", timeout=5)  # not /ntlab/: a WebSocket handshake


def test_serve_main_in_a_subprocess(repo: Any) -> None:
    code = "from ntlab.live.venue_server import serve_main; serve_main(port=0, prices={'BTCUSDT': 100.0}, fee_bps=1.0)"
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=repo, env=env)  # fmt: skip
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
        line = lines.get(timeout=60)
        m = re.fullmatch(r"venue (ws://127\.0\.0\.1:\d+) \(account\(s\) any, market data set_price/prices only, symbols BTCUSDT\)\n", line)
        assert m, line
        c = Client(m.group(1))
        try:
            c.login()
            c.send(new("p1", qty=2.0))
            fill = c.reports(2)[1]
            assert (fill["fill_price"], fill["fee"]) == (100.0, pytest.approx(0.02))
        finally:
            c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_serve_main_in_a_thread(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on: market data keeps retrying
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    started: queue.Queue[VenueServer] = queue.Queue()
    original = VenueServer.start

    def start(self: VenueServer, timeout: float = 10.0) -> VenueServer:
        started.put(original(self, timeout))
        return self

    monkeypatch.setattr(VenueServer, "start", start)
    result: list[int] = []
    md = f"ws://127.0.0.1:{dead}/stream"
    t = threading.Thread(target=lambda: result.append(serve_main(accounts=["demo"], token="tk", market_data=md,
                                                                 streams=["btcusdt@trade"])))  # fmt: skip
    t.start()
    v = started.get(timeout=10)
    time.sleep(0.2)
    assert v.running and v.stats["md_connects"] == 0
    v.stop()
    t.join(10)
    assert result == [0]
    out = capsys.readouterr().out
    assert out == (f"venue {v.url} (account(s) demo, market data {md} ['btcusdt@trade'], symbols BTCUSDT, "
                   "token required)\n")  # fmt: skip
