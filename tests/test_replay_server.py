"""The WebSocket replay server: bytes as recorded, Binance's subscription protocol, the REST book
and trades at the cursor, every fault switch, pacing, the generic format and ``ntlab feed serve``.

References are the recordings read directly (gzip lines) and :func:`rebuild_book`; clients are
the ``websockets`` sync client and ``urllib`` on 127.0.0.1.
"""

from __future__ import annotations

import _thread
import dataclasses
import gzip
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from ntlab.cli import main
from ntlab.data.loaders.binance import read_binance
from ntlab.data.orderbook import rebuild_book
from ntlab.data.paths import data_file
from ntlab.exceptions import ConfigError, DataError, NtlabError
from ntlab.live.replay_server import Faults, ReplayServer

SPOT = "binance_l2_trades_2024-08-08/spot/"
STREAMS = ["btcusdt@bookTicker", "btcusdt@trade", "btcusdt@depth@100ms"]


# ---------------------------------------------------------------------------------------------
# references and helpers


def _read(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return [line for line in raw.split(b"\n") if line]


@dataclasses.dataclass
class Ref:
    """A recording read directly: its messages (snapshot line left out) and its snapshot."""

    ts: list[int]
    stream: list[str]
    body: list[bytes]
    snapshot: dict[str, Any]

    def of(self, *streams: str) -> list[bytes]:
        return [b for b, s in zip(self.body, self.stream, strict=True) if s in streams]


def _ref(path: Path) -> Ref:
    ts, stream, body, snap = [], [], [], {}
    for line in _read(path):
        head, _, rest = line.partition(b" ")
        obj = json.loads(rest)
        if "lastUpdateId" in obj:
            snap = obj
            continue
        ts.append(int(head))
        stream.append(obj["stream"])
        body.append(rest)
    return Ref(ts, stream, body, snap)


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return path


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3000 lines (28 s) of the spot BTCUSDT recording; its snapshot is line 8."""
    lines = _read(data_file(SPOT + "btcusdt_20240808.gz"))[:3000]
    return _write(tmp_path_factory.mktemp("rec") / "btcusdt_20240808.gz", lines)


@pytest.fixture(scope="module")
def ref(rec: Path) -> Ref:
    return _ref(rec)


def _client(url: str) -> Any:
    """A sync client that buffers without limit (with the default bound of 16 messages its close
    waits for the server's close frame behind unread data until its close timeout)."""
    return connect(url, max_queue=None, close_timeout=2)


def _recv(ws: Any, n: int, timeout: float = 10.0) -> list[bytes]:
    return [ws.recv(timeout=timeout, decode=False) for _ in range(n)]


def _drain(ws: Any, quiet: float = 0.5) -> list[bytes]:
    """Everything that arrives until nothing came for ``quiet`` seconds."""
    out = []
    while True:
        try:
            out.append(ws.recv(timeout=quiet, decode=False))
        except TimeoutError:
            return out


def _get(srv: ReplayServer, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(srv.rest_url + path, timeout=10) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _request(ws: Any, req: object) -> dict[str, Any]:
    ws.send(req if isinstance(req, str) else json.dumps(req))
    return json.loads(ws.recv(timeout=5))


def _request_skipping(ws: Any, req: dict[str, Any]) -> dict[str, Any]:
    """Send ``req`` and return its reply, skipping the data messages before it."""
    ws.send(json.dumps(req))
    while True:
        msg = json.loads(ws.recv(timeout=5))
        if "id" in msg and "result" in msg or "error" in msg:
            return msg


def _all_streams() -> str:
    return "/stream?streams=" + "/".join(STREAMS)


# ---------------------------------------------------------------------------------------------
# bytes as recorded


def test_combined_stream_is_the_recording_byte_for_byte(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec) as srv, _client(srv.url + "/stream") as ws:
        assert srv.total == len(ref.body) == 2999 and sorted(srv.streams) == sorted(STREAMS)
        assert _request(ws, {"method": "SUBSCRIBE", "params": STREAMS, "id": 1}) == {"result": None, "id": 1}
        got = _recv(ws, srv.total)
        assert got == ref.body
        assert srv.wait_finished(10) and srv.finished
        stats = srv.stats
        assert stats["messages"] == stats["cursor"] == stats["total"] == 2999 and stats["finished"]
        assert stats["bytes"] >= sum(map(len, ref.body)) and stats["connections"] == 1 and stats["subscriptions"] == 3
        assert _drain(ws, 0.2) == []  # the connection stays open, idle
        assert "finished" in repr(srv) and "2,999 messages" in repr(srv)


def test_raw_path_sends_the_data_objects_recorded_bytes(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec) as srv, _client(srv.url + "/ws/btcusdt@trade") as ws:
        expected = ref.of("btcusdt@trade")
        got = _recv(ws, len(expected))
        for raw, body in zip(got, expected, strict=True):
            assert body == b'{"stream":"btcusdt@trade","data":' + raw + b"}"
            assert json.loads(raw)["e"] == "trade"
        assert _request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {"result": ["btcusdt@trade"], "id": 3}


def test_streams_query_subscribes_a_subset_at_connect(rec: Path, ref: Ref) -> None:
    want = ("btcusdt@trade", "btcusdt@depth@100ms")
    with ReplayServer(rec) as srv, _client(srv.url + "/stream?streams=" + "/".join(want)) as ws:
        expected = ref.of(*want)
        assert _recv(ws, len(expected)) == expected
        assert _request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {"result": list(want), "id": 3}
        assert srv.wait_finished(10) and srv.stats["messages"] == len(expected)


def test_two_days_continue_and_symbols_merge_by_receive_time(tmp_path: Path) -> None:
    day1, day2 = data_file(SPOT + "btcusdt_20240808.gz"), data_file(SPOT + "btcusdt_20240809.gz")
    with ReplayServer([day1, day2]) as srv, _client(srv.url + "/stream?streams=btcusdt@trade") as ws:
        expected = _ref(day1).of("btcusdt@trade") + _ref(day2).of("btcusdt@trade")
        assert _recv(ws, len(expected)) == expected
        assert srv.wait_finished(20)
        ids = [json.loads(b)["data"]["t"] for b in expected]
        boundary = len(_ref(day1).of("btcusdt@trade"))
        status, trades = _get(srv, f"/api/v3/historicalTrades?symbol=BTCUSDT&fromId={ids[boundary - 2]}&limit=4")
        assert status == 200 and [t["id"] for t in trades] == ids[boundary - 2 : boundary + 2]
    # two symbols: merged by receive time, file order for ties
    btc = _write(tmp_path / "btc.gz", _read(day1)[:400])
    eth = _write(tmp_path / "eth.gz", _read(data_file(SPOT + "ethusdt_20240808.gz"))[:400])
    a, b = _ref(btc), _ref(eth)
    order = np.argsort(np.array(a.ts + b.ts), kind="stable")
    expected = [(a.body + b.body)[k] for k in order]
    with ReplayServer([btc, eth]) as srv, _client(srv.url + "/stream") as ws:
        _request(ws, {"method": "SUBSCRIBE", "params": srv.streams, "id": 1})
        assert _recv(ws, srv.total) == expected


# ---------------------------------------------------------------------------------------------
# the subscription protocol


def test_subscription_protocol_and_error_replies(rec: Path, ref: Ref) -> None:
    srv = ReplayServer(rec)
    srv.pause()  # no data while the protocol is checked
    with srv, _client(srv.url + "/stream") as ws:
        assert "paused" in repr(srv)
        assert _request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@kline_1m"], "id": 1}) == {"result": None, "id": 1}
        assert _request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {"result": ["btcusdt@trade", "ethusdt@kline_1m"], "id": 2}
        assert _request(ws, {"method": "UNSUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 3}) == {"result": None, "id": 3}
        assert _request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "abc"}) == {"result": ["btcusdt@trade"], "id": "abc"}
        assert _request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 4}) == {"result": True, "id": 4}
        errors = [
            ("{not json", 3, "Invalid JSON"),
            ([1, 2], 2, "Invalid request: expected a JSON object"),
            ({"method": "SUBSCRIBE", "params": ["btcusdt@trade"]}, 2, "request ID must be an unsigned integer"),
            ({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": -1}, 2, "request ID must be an unsigned integer"),
            ({"params": ["btcusdt@trade"], "id": 5}, 2, "missing field `method`"),
            ({"method": "subscribe", "params": [], "id": 5}, 2, "unknown variant `subscribe`"),
            ({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 5}, 2, "params must be a list"),
            ({"method": "SUBSCRIBE", "params": ["btcusdt trade"], "id": 5}, 2, "invalid stream name 'btcusdt trade'"),
            ({"method": "SUBSCRIBE", "params": [7], "id": 5}, 2, "invalid stream name 7"),
            ({"method": "SUBSCRIBE", "params": [], "id": 5}, 2, "at least one stream"),
            ({"method": "LIST_SUBSCRIPTIONS", "params": ["x"], "id": 5}, 2, "too many parameters"),
            ({"method": "SET_PROPERTY", "params": ["combined"], "id": 5}, 2, "SET_PROPERTY takes 2 parameters"),
            ({"method": "SET_PROPERTY", "params": [1, True], "id": 5}, 2, "property name must be a string"),
            ({"method": "GET_PROPERTY", "params": ["colour"], "id": 5}, 0, "Unknown property"),
            ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 5}, 1, "Invalid value type: expected Boolean"),
        ]
        for req, code, msg in errors:
            reply = _request(ws, req)
            assert reply["error"]["code"] == code and msg in reply["error"]["msg"], (req, reply)
            assert reply["id"] == (5 if isinstance(req, dict) and req.get("id") == 5 else None)
        assert srv.stats["cursor"] == 0 and srv.stats["subscriptions"] == 1
        # raw payloads on the combined path after SET_PROPERTY combined false
        assert _request(ws, {"method": "SET_PROPERTY", "params": ["combined", False], "id": 6}) == {"result": None, "id": 6}
        assert _request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 7}) == {"result": False, "id": 7}
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # paused: nothing moves
        assert srv.stats["cursor"] == 0
        srv.resume()
        first = ws.recv(timeout=5, decode=False)
        assert ref.of("btcusdt@trade")[0] == b'{"stream":"btcusdt@trade","data":' + first + b"}"


def test_reply_comes_before_the_new_subscriptions_data(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec, speed=20.0) as srv, _client(srv.url + "/ws/btcusdt@trade") as ws:
        _recv(ws, 3)
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 9}))
        while True:
            msg = json.loads(ws.recv(timeout=5))
            if "id" in msg:
                assert msg == {"result": None, "id": 9}
                break
            assert msg["e"] == "trade"  # nothing of the new stream before the reply
        kinds = {json.loads(m).get("e", "bookTicker") for m in _recv(ws, 50)}
        assert "bookTicker" in kinds
        assert _request_skipping(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 10}) == {"result": None, "id": 10}
        assert {json.loads(m)["e"] for m in _recv(ws, 20)} == {"trade"}  # nothing of it after the reply


def test_websocket_paths_are_checked(rec: Path) -> None:
    with ReplayServer(rec) as srv:
        with pytest.raises(InvalidStatus, match="404"):
            _client(srv.url + "/nope").close()
        with pytest.raises(InvalidStatus, match="400"):
            _client(srv.url + "/stream?streams=btcusdt%20trade").close()


# ---------------------------------------------------------------------------------------------
# REST at the cursor


def test_rest_snapshot_before_any_diff_is_the_recorded_snapshot(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec) as srv:
        status, book = _get(srv, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        snap = ref.snapshot
        assert status == 200 and book == {"lastUpdateId": snap["lastUpdateId"], "bids": snap["bids"][:5000], "asks": snap["asks"][:5000]}
        status, book = _get(srv, "/api/v3/depth?symbol=btcusdt")  # default limit 100
        assert book["bids"] == snap["bids"][:100] and book["asks"] == snap["asks"][:100]
        assert _get(srv, "/api/v3/ping") == (200, {})
        assert _get(srv, "/api/v3/time") == (200, {"serverTime": ref.ts[0] // 1_000_000})


def test_rest_book_mid_stream_is_the_file_up_to_the_last_broadcast_diff(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec, speed=20.0) as srv, _client(srv.url + _all_streams()) as ws:
        time.sleep(0.3)
        srv.pause()
        cursor = srv.stats["cursor"]
        assert 0 < cursor < srv.total
        status, book = _get(srv, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        assert _drain(ws) == ref.body[:cursor]  # the client got exactly what was broadcast
        last_diff = max(t for t, s in zip(ref.ts[:cursor], ref.stream[:cursor], strict=True) if s == "btcusdt@depth@100ms")
        depth = read_binance(rec, stream="depth").filter(pl.col("ts").dt.epoch("ns") <= last_diff)
        expected = rebuild_book(read_binance(rec, stream="snapshot"), depth, market="spot")
        assert expected.valid and expected.applied > 0
        assert status == 200 and book["lastUpdateId"] == expected.book.update_id > ref.snapshot["lastUpdateId"]
        levels = expected.book.levels()
        for key, side in (("bids", 1), ("asks", -1)):
            lv = levels.filter(pl.col("side") == side).head(5000)
            assert [float(p) for p, _ in book[key]] == lv["price"].to_list()
            assert [float(q) for _, q in book[key]] == lv["size"].to_list()
        srv.resume()
        assert srv.wait_finished(20)
        _, final = _get(srv, "/api/v3/depth?symbol=BTCUSDT&limit=5")
        assert final["lastUpdateId"] > book["lastUpdateId"] and len(final["bids"]) == 5


def test_historical_trades_never_include_unbroadcast_ones(rec: Path, ref: Ref) -> None:
    trades = [json.loads(b)["data"] for b in ref.of("btcusdt@trade")]
    with ReplayServer(rec, speed=10.0) as srv, _client(srv.url + "/ws/btcusdt@trade") as ws:
        time.sleep(0.5)
        srv.pause()
        cursor = srv.stats["cursor"]
        sent = [json.loads(b)["data"] for b, s in zip(ref.body[:cursor], ref.stream[:cursor], strict=True) if s == "btcusdt@trade"]
        assert 0 < len(sent) < len(trades)
        status, got = _get(srv, f"/api/v3/historicalTrades?symbol=BTCUSDT&fromId={trades[0]['t']}&limit=1000")
        assert status == 200 and [t["id"] for t in got] == [t["t"] for t in sent]
        for row, t in zip(got, sent, strict=True):
            assert row == {"id": t["t"], "price": t["p"], "qty": t["q"], "quoteQty": row["quoteQty"], "time": t["T"],
                           "isBuyerMaker": t["m"], "isBestMatch": True}  # fmt: skip
            assert float(row["quoteQty"]) == pytest.approx(float(t["p"]) * float(t["q"]), rel=1e-12)
        _, recent = _get(srv, "/api/v3/historicalTrades?symbol=BTCUSDT&limit=2")
        assert [t["id"] for t in recent] == [t["t"] for t in sent[-2:]]
        assert _get(srv, f"/api/v3/historicalTrades?symbol=BTCUSDT&fromId={sent[-1]['t'] + 1}") == (200, [])
        assert len(_drain(ws)) == len(sent)


def test_rest_errors_and_ntlab_endpoints(rec: Path) -> None:
    with ReplayServer(rec) as srv:
        cases = [
            ("/api/v3/depth?symbol=ETHUSDT", 400, -1121, "Invalid symbol."),
            ("/fapi/v1/depth?symbol=BTCUSDT", 400, -1121, "Invalid symbol."),  # a spot recording
            ("/api/v3/historicalTrades?symbol=NOPE", 400, -1121, "Invalid symbol."),
            ("/api/v3/depth", 400, -1102, "Mandatory parameter 'symbol'"),
            ("/api/v3/depth?symbol=BTCUSDT&limit=ten", 400, -1100, "Illegal characters found in parameter 'limit'"),
            ("/api/v3/depth?symbol=BTCUSDT&limit=0", 400, -1130, "parameter 'limit' is not valid"),
            ("/api/v3/historicalTrades?symbol=BTCUSDT&limit=1001", 400, -1130, "parameter 'limit' is not valid"),
            ("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=-5", 400, -1130, "parameter 'fromId' is not valid"),
            ("/api/v3/klines?symbol=BTCUSDT", 404, -1, "no endpoint /api/v3/klines"),
            ("/ntlab/send_times", 400, -1, "record_send_times"),
        ]
        for path, status, code, msg in cases:
            got_status, body = _get(srv, path)
            assert got_status == status and body["code"] == code and msg in body["msg"], (path, body)
        status, stats = _get(srv, "/ntlab/stats")
        assert status == 200 and stats["rest_requests"] == len(cases) + 1 and stats["total"] == srv.total
        assert set(stats) == set(srv.stats)
        with pytest.raises(ConfigError, match="record_send_times=True"):
            srv.send_times()


def test_futures_depth_and_trades(tmp_path: Path) -> None:
    path = _write(tmp_path / "btcusdt_20240808.gz", _read(data_file("binance_l2_trades_2024-08-08/usdm/btcusdt_20240808.gz"))[:600])
    ref = _ref(path)
    with ReplayServer(path) as srv:
        _, book = _get(srv, "/fapi/v1/depth?symbol=BTCUSDT&limit=10")
        assert book == {k: v[:10] if k in ("bids", "asks") else v for k, v in ref.snapshot.items()}  # E and T too
        assert _get(srv, "/api/v3/depth?symbol=BTCUSDT")[0] == 400  # not a spot symbol here
        with _client(srv.url + "/stream?streams=btcusdt@trade") as ws:
            _recv(ws, len(ref.of("btcusdt@trade")))
        assert srv.wait_finished(10)
        _, trades = _get(srv, "/fapi/v1/historicalTrades?symbol=BTCUSDT&limit=3")
        last = [json.loads(b)["data"] for b in ref.of("btcusdt@trade")[-3:]]
        assert [t["id"] for t in trades] == [t["t"] for t in last] and "isBestMatch" not in trades[0]
        _, book = _get(srv, "/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
        depth = read_binance(path, stream="depth")
        expected = rebuild_book(read_binance(path, stream="snapshot"), depth, market="futures")
        assert book["lastUpdateId"] == expected.book.update_id and list(book)[:3] == ["lastUpdateId", "E", "T"]
        assert book["E"] == json.loads([b for b in ref.of("btcusdt@depth@0ms")][-1])["data"]["E"]
        bids = expected.book.levels().filter(pl.col("side") == 1).head(1000)
        assert [float(p) for p, _ in book["bids"]] == bids["price"].to_list()


# ---------------------------------------------------------------------------------------------
# faults


def _abort_seen(ws: Any) -> tuple[list[bytes], ConnectionClosedError]:
    got = []
    while True:
        try:
            got.append(ws.recv(timeout=10, decode=False))
        except ConnectionClosedError as exc:
            return got, exc


def test_drop_after_cuts_each_connection_without_a_close_frame(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec, faults=Faults(drop_after=40)) as srv:
        with _client(srv.url + _all_streams()) as ws:
            got, exc = _abort_seen(ws)
        assert exc.rcvd is None and len(got) <= 40 and got == ref.body[: len(got)]
        with _client(srv.url + _all_streams()) as ws:  # the cursor waited: the tape goes on at 40
            got, exc = _abort_seen(ws)
        assert exc.rcvd is None and got == ref.body[40 : 40 + len(got)]
        assert srv.stats["faults"]["drops"] == 2 and srv.stats["connects"] == 2


def test_drop_prob_and_drop_all(rec: Path) -> None:
    with ReplayServer(rec, faults=Faults(drop_prob=1.0)) as srv, _client(srv.url + _all_streams()) as ws:
        got, exc = _abort_seen(ws)
        assert got == [] and exc.rcvd is None and srv.stats["faults"]["drops"] == 1
    srv = ReplayServer(rec)
    srv.pause()
    with srv, _client(srv.url + _all_streams()) as ws:
        _request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        srv.drop_all()
        got, exc = _abort_seen(ws)
        assert got == [] and exc.rcvd is None
        assert srv.stats["faults"]["drops"] == 1 and srv.stats["connections"] == 0


def test_duplicates_appear_twice(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec, faults=Faults(duplicate_prob=0.3, seed=1), record_send_times=True) as srv, _client(srv.url + _all_streams()) as ws:
        assert srv.wait_finished(20)
        got = _drain(ws)
        dups = srv.stats["faults"]["duplicates"]
        assert dups > 100 and len(got) == len(ref.body) + dups
        assert all(a != b for a, b in zip(ref.body, ref.body[1:], strict=False))  # so a repeat is a duplicate
        assert [b for k, b in enumerate(got) if k == 0 or got[k - 1] != b] == ref.body
        assert srv.send_times().height == len(ref.of("btcusdt@trade"))


def test_reorder_swaps_a_message_with_the_next(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec, faults=Faults(reorder_prob=0.2, seed=2)) as srv, _client(srv.url + _all_streams()) as ws:
        assert srv.wait_finished(20)
        got = _drain(ws)
    assert sorted(got) == sorted(ref.body) and got != ref.body
    swaps, i = 0, 0
    while i < len(got):
        if got[i] == ref.body[i]:
            i += 1
        else:
            assert got[i] == ref.body[i + 1] and got[i + 1] == ref.body[i]
            swaps, i = swaps + 1, i + 2
    assert swaps == srv.stats["faults"]["reorders"] > 100


def test_truncated_and_corrupted_frames_are_invalid_json(rec: Path, ref: Ref) -> None:
    for faults, key in ((Faults(truncate_prob=0.2, seed=3), "truncations"), (Faults(corrupt_prob=0.2, seed=4), "corruptions")):
        with ReplayServer(rec, faults=faults) as srv, _client(srv.url + _all_streams()) as ws:
            got = _recv(ws, srv.total)
            bad = 0
            for g, r in zip(got, ref.body, strict=True):
                if g == r:
                    continue
                bad += 1
                with pytest.raises(ValueError):
                    json.loads(g)
                if key == "truncations":
                    assert 1 <= len(g) < len(r) and r.startswith(g)
                else:
                    diff = [k for k in range(len(r)) if g[k] != r[k]]
                    assert len(g) == len(r) and len(diff) == 1 and r[diff[0]] == ord('"') and g[diff[0]] == ord("#")
            assert bad == srv.stats["faults"][key] > 300


def test_delays_slow_the_replay(rec: Path) -> None:
    with ReplayServer(rec, faults=Faults(delay_prob=1.0, delay_ms=30.0)) as srv, _client(srv.url + "/ws/btcusdt@trade") as ws:
        start = time.monotonic()
        _recv(ws, 10)
        assert time.monotonic() - start >= 0.25  # 10 x 30 ms at least (lower bound only)
        assert srv.stats["faults"]["delays"] >= 10


def test_pause_stops_sending_and_resume_continues(rec: Path, ref: Ref) -> None:
    with ReplayServer(rec) as srv, _client(srv.url + "/ws/btcusdt@trade") as ws:
        srv.pause()
        cursor = srv.stats["cursor"]
        got = _drain(ws, 0.3)
        time.sleep(0.2)
        assert srv.stats["cursor"] == cursor and _drain(ws, 0.2) == []
        srv.resume()
        got += _drain(ws)
        assert len(got) == len(ref.of("btcusdt@trade")) and srv.finished


# ---------------------------------------------------------------------------------------------
# pacing


def test_speed_paces_the_replay_in_order(rec: Path, tmp_path: Path) -> None:
    lines = _read(rec)
    t0 = int(lines[0].partition(b" ")[0])
    short = _write(tmp_path / "short.gz", [line for line in lines if int(line.partition(b" ")[0]) - t0 < 1_000_000_000])
    ref = _ref(short)
    with ReplayServer(short, speed=2.0) as srv, _client(srv.url + "/stream") as ws:
        start = time.monotonic()
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": STREAMS, "id": 1}))
        assert json.loads(ws.recv(timeout=5)) == {"result": None, "id": 1}
        got, arrived = [], []
        for _ in ref.body:
            got.append(ws.recv(timeout=10, decode=False))
            arrived.append(time.monotonic() - start)
        assert got == ref.body
        due = (np.array(ref.ts) - ref.ts[0]) / 1e9 / 2.0
        assert np.all(np.array(arrived) >= due - 1e-3)  # never early
        assert arrived[-1] >= 0.45
    # the clock does not wait for absent clients
    with ReplayServer(short, speed=4.0) as srv:
        with _client(srv.url + "/ws/btcusdt@trade") as ws:
            ws.recv(timeout=5)
        assert srv.wait_finished(10) and srv.stats["connections"] == 0


# ---------------------------------------------------------------------------------------------
# generic format, send times


def _frames() -> dict[str, pl.DataFrame]:
    t = 1_700_000_000_000_000_000
    ticks = pl.DataFrame({"ts": [t, t + 2_000_000, t + 4_000_000], "price": [100.25, 100.5, 99.75], "size": [1.0, 2.0, 0.1]})
    bars = pl.DataFrame({
        "ts": pl.Series([t + 1_000_000, t + 3_000_000], dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
        "open": [1.0, 2.5], "high": [2.0, 3.0], "low": [0.5, 2.0], "close": [1.5, 2.75], "volume": [10.0, 0.5],
    })  # fmt: skip
    return {"ES": ticks, "SPY": bars}


def test_from_frames_sends_the_generic_format(tmp_path: Path) -> None:
    t = 1_700_000_000_000_000_000
    expected = [
        f'{{"stream":"es@tick","data":{{"e":"tick","s":"ES","i":0,"t":{t},"p":100.25,"q":1.0}}}}',
        f'{{"stream":"spy@bar","data":{{"e":"bar","s":"SPY","t":{t + 1_000_000},"o":1.0,"h":2.0,"l":0.5,"c":1.5,"v":10.0}}}}',
        f'{{"stream":"es@tick","data":{{"e":"tick","s":"ES","i":1,"t":{t + 2_000_000},"p":100.5,"q":2.0}}}}',
        f'{{"stream":"spy@bar","data":{{"e":"bar","s":"SPY","t":{t + 3_000_000},"o":2.5,"h":3.0,"l":2.0,"c":2.75,"v":0.5}}}}',
        f'{{"stream":"es@tick","data":{{"e":"tick","s":"ES","i":2,"t":{t + 4_000_000},"p":99.75,"q":0.1}}}}',
    ]
    with ReplayServer.from_frames(_frames(), record_send_times=True) as srv, _client(srv.url + "/stream?streams=es@tick/spy@bar") as ws:
        assert srv.streams == ["es@tick", "spy@bar"] and srv.total == 5
        assert [m.decode() for m in _recv(ws, 5)] == expected
        assert srv.wait_finished(5)
        st = srv.send_times()
        assert st["stream"].to_list() == ["es@tick"] * 3 and st["trade_id"].to_list() == [0, 1, 2]
        assert (st["sent_ns"] > 0).all() and (st["sent_ns"] <= time.monotonic_ns()).all() and st["sent_ns"].is_sorted()
        status, body = _get(srv, "/ntlab/send_times")
        assert status == 200 and body == {"stream": ["es@tick"] * 3, "id": [0, 1, 2], "sent_ns": st["sent_ns"].to_list()}
        assert _get(srv, "/api/v3/depth?symbol=ES")[0] == 400
    with ReplayServer.from_frames(_frames()) as srv, _client(srv.url + "/ws/spy@bar") as ws:
        assert ws.recv(timeout=5) == expected[1][len('{"stream":"spy@bar","data":') : -1]
    # bars without volume have no "v"; lower-case symbols are sent upper-case in "s"
    bars = _frames()["SPY"].drop("volume").head(1)
    with ReplayServer.from_frames({"spy": bars}) as srv, _client(srv.url + "/stream?streams=spy@bar") as ws:
        assert ws.recv(timeout=5) == f'{{"stream":"spy@bar","data":{{"e":"bar","s":"SPY","t":{t + 1_000_000},"o":1.0,"h":2.0,"l":0.5,"c":1.5}}}}'


def test_generic_format_is_the_wire_modules(tmp_path: Path) -> None:
    wire = pytest.importorskip("ntlab.live.wire", reason="ntlab.live.wire (encode_generic) is written by another change")
    frames = {**_frames(), "QQQ": _frames()["SPY"].drop("volume")}
    with ReplayServer.from_frames(frames) as srv, _client(srv.url + "/stream") as ws:
        _request(ws, {"method": "SUBSCRIBE", "params": srv.streams, "id": 1})
        got = _recv(ws, srv.total)
    for symbol, frame in frames.items():
        stream = f'{{"stream":"{symbol.lower()}@'.encode()
        assert [m for m in got if m.startswith(stream)] == wire.encode_generic(frame, symbol)


def test_send_times_of_recorded_trades(rec: Path, ref: Ref) -> None:
    start = time.monotonic_ns()
    with ReplayServer(rec, record_send_times=True) as srv, _client(srv.url + "/stream?streams=btcusdt@trade/btcusdt@bookTicker") as ws:
        _recv(ws, len(ref.of("btcusdt@trade", "btcusdt@bookTicker")))
        st = srv.send_times()
    assert st.columns == ["stream", "trade_id", "sent_ns"]
    assert st["trade_id"].to_list() == [json.loads(b)["data"]["t"] for b in ref.of("btcusdt@trade")]
    assert (st["sent_ns"] >= start).all() and st["sent_ns"].is_sorted()


def test_from_sources_reads_parquet_files_and_data_sets(tmp_path: Path, rec: Path) -> None:
    path = tmp_path / "es.parquet"
    _frames()["ES"].with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC"))).write_parquet(path)
    srv = ReplayServer.from_sources([str(path), "bitstamp_trades"], speed=1000.0)
    assert srv.streams == ["btcusd@tick", "es@tick"] and srv.total == 3 + 9998 and srv.speed == 1000.0
    assert ReplayServer.from_sources(str(rec)).total == 2999
    with pytest.raises(ConfigError, match="mixes Binance recordings"):
        ReplayServer.from_sources([rec, path])
    with pytest.raises(ConfigError, match="no recording at"):
        ReplayServer.from_sources(["missing.gz"])
    with pytest.raises(ConfigError, match="neither a data set"):
        ReplayServer.from_sources(["no_such_data_set"])
    with pytest.raises(ConfigError, match="at least one"):
        ReplayServer.from_sources([])


# ---------------------------------------------------------------------------------------------
# configuration, data and lifecycle errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"drop_prob": 1.5}, r"drop_prob=1.5 must be a probability in \[0, 1\]"),
        ({"delay_prob": -0.1}, r"delay_prob=-0.1 must be a probability"),
        ({"duplicate_prob": True}, r"duplicate_prob=True must be a probability"),
        ({"reorder_prob": "0.1"}, r"reorder_prob='0.1' must be a probability"),
        ({"truncate_prob": 2}, r"truncate_prob=2 must be a probability"),
        ({"corrupt_prob": float("nan")}, r"corrupt_prob=nan must be a probability"),
        ({"drop_after": 0}, r"drop_after=0 must be a number of messages >= 1"),
        ({"drop_after": 2.5}, r"drop_after=2.5 must be a number of messages"),
        ({"delay_ms": -1.0}, r"delay_ms=-1.0 must be milliseconds"),
        ({"seed": "x"}, r"seed='x' must be an int"),
    ],
)
def test_bad_faults(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Faults(**kwargs)


def test_faults_are_frozen_and_keyword_only() -> None:
    f = Faults(drop_after=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.drop_after = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        Faults(3)  # type: ignore[misc]
    assert f.active and not Faults().active and repr(Faults(seed=None)) == "Faults(seed=None)"


def test_bad_server_configuration(rec: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no recording at"):
        ReplayServer(tmp_path / "missing.gz")
    with pytest.raises(ConfigError, match="recordings is empty"):
        ReplayServer([])
    for speed in (0, -1.0, float("inf"), "fast", True):
        with pytest.raises(ConfigError, match=f"speed={speed!r} must be a number > 0"):
            ReplayServer(rec, speed=speed)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="faults=.* must be a Faults"):
        ReplayServer(rec, faults={"drop_prob": 0.1})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ping_interval=0 must be seconds > 0"):
        ReplayServer(rec, ping_interval=0)
    with pytest.raises(ConfigError, match="port=-1 must be in 0..65535"):
        ReplayServer(rec, port=-1)
    with pytest.raises(ConfigError, match="from_frames needs a dict"):
        ReplayServer.from_frames({})
    with pytest.raises(ConfigError, match="has columns"):
        ReplayServer.from_frames({"ES": pl.DataFrame({"ts": [1], "bid": [1.0]})})
    with pytest.raises(ConfigError, match="needs a 'ts' column without nulls"):
        ReplayServer.from_frames({"ES": pl.DataFrame({"price": [1.0], "size": [1.0]})})
    with pytest.raises(ConfigError, match="column price of 'ES' has dtype String; it must be numeric"):
        ReplayServer.from_frames({"ES": pl.DataFrame({"ts": [1], "price": ["1.0"], "size": [1.0]})})
    with pytest.raises(DataError, match="size of 'ES' must be finite to be sent; row 1 holds nan"):
        ReplayServer.from_frames({"ES": pl.DataFrame({"ts": [1, 2], "price": [1.0, 2.0], "size": [1.0, float("nan")]})})
    with pytest.raises(ConfigError, match="give a Polars DataFrame"):
        ReplayServer.from_frames({"ES": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="symbol 'E S' must be"):
        ReplayServer.from_frames({"E S": _frames()["ES"]})


def test_bad_recordings(rec: Path, tmp_path: Path) -> None:
    lines = _read(rec)
    cases = {
        "text.gz": ([b"hello world"], DataError, r"text.gz:1: not a '<receive time ns> <json>' line"),
        "json.gz": ([lines[0], b"123 {nope"], DataError, r"json.gz:2: the message is not valid JSON"),
        "other.gz": ([b'123 {"hello": 1}'], DataError, r"other.gz:1: neither a stream envelope nor a depth snapshot"),
        "trade.gz": ([b'123 {"stream":"btcusdt@trade","data":{"e":"trade"}}'], DataError, r"lacks a field"),
        "empty.gz": ([lines[7]], DataError, r"hold no message to replay"),  # the snapshot line only
    }
    for name, (content, error, match) in cases.items():
        with pytest.raises(error, match=match):
            ReplayServer(_write(tmp_path / name, content))
    (tmp_path / "broken.gz").write_bytes(rec.read_bytes()[:500])
    with pytest.raises(DataError, match="not a valid gzip file"):
        ReplayServer(tmp_path / "broken.gz")
    usdm = _write(tmp_path / "usdm.gz", _read(data_file("binance_l2_trades_2024-08-08/usdm/btcusdt_20240808.gz"))[:100])
    with pytest.raises(ConfigError, match="BTCUSDT comes from both spot and futures recordings"):
        ReplayServer([rec, usdm])


def test_other_envelope_layouts_and_a_later_snapshot(rec: Path, ref: Ref, tmp_path: Path) -> None:
    lines = _read(rec)[:400]
    ts, _, body = lines[0].partition(b" ")
    obj = json.loads(body)
    reordered = ts + b' {"data": ' + json.dumps(obj["data"], separators=(",", ":")).encode() + b', "stream": "' + obj["stream"].encode() + b'"}'
    snap_line = _read(rec)[7]
    later = int(lines[300].partition(b" ")[0]) + 1
    path = _write(tmp_path / "odd.gz", [reordered, *lines[1:301], str(later).encode() + b" " + snap_line.partition(b" ")[2], *lines[301:]])
    with ReplayServer(path) as srv, _client(srv.url + _all_streams()) as ws:
        got = _recv(ws, srv.total)
        assert got[0] == reordered.partition(b" ")[2] and got[1:] == ref.body[1:399]
        assert srv.wait_finished(5)
        _, book = _get(srv, "/api/v3/depth?symbol=BTCUSDT&limit=5")
        # the second snapshot replaced the book; the diffs after it do not continue it (gap)
        assert book == {"lastUpdateId": ref.snapshot["lastUpdateId"], "bids": ref.snapshot["bids"][:5], "asks": ref.snapshot["asks"][:5]}


def test_lifecycle(rec: Path) -> None:
    srv = ReplayServer(rec)
    assert "not started" in repr(srv) and srv.stats["connections"] == 0
    srv.pause()
    srv.resume()
    srv.drop_all()
    srv.start()
    assert srv.start() is srv and srv.port > 0 and srv.url == f"ws://127.0.0.1:{srv.port}"
    assert srv.rest_url == f"http://127.0.0.1:{srv.port}"
    with pytest.raises(ConfigError, match="cannot listen on"):
        ReplayServer(rec, port=srv.port).start()
    srv.stop()
    srv.stop()
    assert "stopped" in repr(srv)
    with pytest.raises(NtlabError, match="create a new one"):
        srv.start()


def test_serve_forever_stops_on_keyboard_interrupt(rec: Path) -> None:
    srv = ReplayServer(rec, ping_interval=None)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    try:
        srv.serve_forever()
    finally:
        timer.cancel()
    assert "stopped" in repr(srv)


# ---------------------------------------------------------------------------------------------
# the CLI


def test_cli_feed_serve(rec: Path, ref: Ref) -> None:
    cmd = [sys.executable, "-c", "from ntlab.cli import main; main()", "feed", "serve", str(rec), "--speed", "50", "--seed", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.fullmatch(r"serving ws://127\.0\.0\.1:(\d+) \((\d+) messages, streams: (.*)\)\n", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        assert int(m[2]) == len(ref.body) and sorted(m[3].split(", ")) == sorted(STREAMS)
        with _client(f"ws://127.0.0.1:{m[1]}/stream?streams=btcusdt@trade") as ws:
            assert _recv(ws, 5) == ref.of("btcusdt@trade")[:5]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_cli_feed_serve_reports_config_errors(rec: Path) -> None:
    result = CliRunner().invoke(main, ["feed", "serve", str(rec), "--drop-prob", "2"])
    assert result.exit_code == 1 and "ConfigError: drop_prob=2.0 must be a probability" in result.output
    result = CliRunner().invoke(main, ["feed", "serve", "nowhere.gz"])
    assert result.exit_code == 1 and "no recording at 'nowhere.gz'" in result.output
