"""ntlab.live.wire: real Binance recordings, every reject reason, REST bodies, the generic
format, and a hypothesis fuzz of FrameDecoder (NTLAB_FUZZ_FRAMES frames, 100,000 by default)."""

from __future__ import annotations

import gzip
import json
import math
import os
from functools import cache
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntlab.datasets
from ntlab.data.loaders.binance import read_binance
from ntlab.data.paths import data_file
from ntlab.data.schemas import conform
from ntlab.exceptions import ConfigError, DataError
from ntlab.live.wire import (
    REJECT_REASONS,
    Bar,
    DepthDiff,
    FrameDecoder,
    Quote,
    Reply,
    Tick,
    Trade,
    decode_rest_trades,
    decode_snapshot,
    encode_generic,
)

RECORDINGS = {
    "spot/btcusdt_20240808.gz": "BTCUSDT",
    "usdm/btcusdt_20240808.gz": "BTCUSDT",
    "cm/btcusd_perp_20240808.gz": "BTCUSD_PERP",
}
MS = 1_000_000

TRADE = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    b'"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
)
QUOTE = (
    b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT",'
    b'"b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256313}}'
)
DEPTH = (
    b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256299,"T":1723161256298,'
    b'"s":"BTCUSDT","U":5123107832006,"u":5123107837557,"pu":5123107831937,'
    b'"b":[["58710.20","0.014"],["61510.90","0.000"]],"a":[["61800.30","2.510"]]}}'
)


# ------------------------------------------------------------------------------- helpers


def path(name: str) -> Path:
    return data_file(f"binance_l2_trades_2024-08-08/{name}")


@cache
def recording(name: str) -> tuple[list[bytes], list[bytes]]:
    """(envelope json parts, snapshot json parts) of a recording, read directly."""
    envelopes, snapshots = [], []
    with gzip.open(path(name), "rb") as fh:
        for line in fh:
            body = line.rstrip(b"\n").split(b" ", 1)[1]
            (snapshots if body.startswith(b'{"lastUpdateId"') else envelopes).append(body)
    return envelopes, snapshots


@cache
def decoded(name: str) -> tuple[FrameDecoder, list[object]]:
    dec = FrameDecoder()
    return dec, [dec.decode(f) for f in recording(name)[0]]


def outcome(dec: FrameDecoder, frame: object) -> tuple[object, str]:
    """Decode one frame; return (result, what was counted: 'accepted', a reason, 'ignored:<kind>')."""
    acc, rej, ign = dec.accepted, dict(dec.rejects), dict(dec.ignored)
    out = dec.decode(frame)  # type: ignore[arg-type]
    if dec.accepted == acc + 1:
        tag = "accepted"
        assert out is not None
    else:
        assert out is None
        changed = [r for r in REJECT_REASONS if dec.rejects[r] != rej[r]]
        kinds = [k for k in dec.ignored if dec.ignored[k] != ign.get(k, 0)]
        assert len(changed) + len(kinds) == 1, (changed, kinds)
        tag = changed[0] if changed else f"ignored:{kinds[0]}"
    return out, tag


def same(a: object, b: object) -> bool:
    """Records equal field by field (arrays by value, NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    for x, y in zip(msgspec.structs.astuple(a), msgspec.structs.astuple(b), strict=True):  # type: ignore[arg-type]
        if isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype == np.float64 and x.ndim == 1):
                return False
            if not np.array_equal(x, y):
                return False
        elif isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        elif x != y or type(x) is not type(y):
            return False
    return True


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _has_surrogate(obj: object) -> bool:
    if isinstance(obj, str):
        return any("\ud800" <= ch <= "\udfff" for ch in obj)
    if isinstance(obj, list):
        return any(_has_surrogate(v) for v in obj)
    if isinstance(obj, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in obj.items())
    return False


def parse_json(frame: object) -> tuple[bool, object]:
    """Independent reference: (is valid JSON text, value), by the standard library."""
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        if not isinstance(text, str):
            return False, None
        obj = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False, None
    if _has_surrogate(obj):
        return False, None
    return True, obj


# --------------------------------------------------------------------- 1. real recordings


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_real_recording_decodes_without_rejects(name: str) -> None:
    dec, outs = decoded(name)
    assert dec.accepted == len(recording(name)[0]) > 10_000
    assert dec.rejected == 0 and dec.ignored == {} and dec.last_error is None
    assert {type(o) for o in outs} == {Trade, Quote, DepthDiff}


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_real_trades_match_read_binance(name: str) -> None:
    trades = [o for o in decoded(name)[1] if isinstance(o, Trade)]
    ref = read_binance(path(name), stream="trades")
    assert len(trades) == ref.height
    assert [t.symbol for t in trades] == ref["symbol"].to_list()
    assert np.array_equal([t.price for t in trades], ref["price"].to_numpy())
    assert np.array_equal([t.qty for t in trades], ref["size"].to_numpy())
    assert [t.side for t in trades] == ref["side"].to_list()
    assert [t.trade_id for t in trades] == ref["trade_id"].to_list()
    assert [t.ts_ms * MS for t in trades] == ref["ts_event"].to_physical().to_list()
    ids = np.array([t.trade_id for t in trades])
    assert (np.diff(ids) == 1).all()  # consecutive per symbol


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_real_quotes_match_read_binance(name: str) -> None:
    quotes = [o for o in decoded(name)[1] if isinstance(o, Quote)]
    ref = read_binance(path(name), stream="quotes")
    assert len(quotes) == ref.height
    assert [q.symbol for q in quotes] == ref["symbol"].to_list()
    assert [q.update_id for q in quotes] == ref["update_id"].to_list()
    for field, col in [("bid", "bid_price"), ("bid_size", "bid_size"), ("ask", "ask_price"), ("ask_size", "ask_size")]:
        assert np.array_equal([getattr(q, field) for q in quotes], ref[col].to_numpy()), field
    if "ts_event" in ref.columns:  # futures
        assert [q.ts_ms * MS for q in quotes] == ref["ts_event"].to_physical().to_list()
    else:  # spot bookTicker has no time
        assert all(q.ts_ms is None for q in quotes)


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_real_depth_matches_read_binance(name: str) -> None:
    diffs = [o for o in decoded(name)[1] if isinstance(o, DepthDiff)]
    ref = read_binance(path(name), stream="depth")
    # one row per level, bids then asks; a message without levels is one placeholder row
    side, price, size, uid, first, prev, tev = [], [], [], [], [], [], []
    for d in diffs:
        n_b, n_a = len(d.bid_prices), len(d.ask_prices)
        n = max(n_b + n_a, 1)
        if n_b + n_a:
            side += [1] * n_b + [-1] * n_a
            price += [*d.bid_prices, *d.ask_prices]
            size += [*d.bid_sizes, *d.ask_sizes]
        else:
            side.append(0)
            price.append(None)
            size.append(None)
        uid += [d.last_id] * n
        first += [d.first_id] * n
        prev += [d.prev_id] * n
        tev += [d.ts_ms * MS] * n
        for arr in (d.bid_prices, d.bid_sizes, d.ask_prices, d.ask_sizes):
            assert arr.dtype == np.float64 and arr.ndim == 1 and arr.flags.c_contiguous
    assert len(side) == ref.height
    assert side == ref["side"].to_list()
    assert price == ref["price"].to_list()
    assert size == ref["size"].to_list()
    assert uid == ref["update_id"].to_list()
    assert first == ref["first_update_id"].to_list()
    assert tev == ref["ts_event"].to_physical().to_list()
    if name.startswith("spot"):
        assert set(prev) == {None} and "prev_update_id" not in ref.columns
    else:
        assert prev == ref["prev_update_id"].to_list()
    assert all(d.symbol == RECORDINGS[name] for d in diffs)


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_real_snapshot_matches_read_binance(name: str) -> None:
    (body,) = recording(name)[1]
    snap = decode_snapshot(body, RECORDINGS[name].lower())
    ref = read_binance(path(name), stream="snapshot")
    assert snap.symbol == RECORDINGS[name] == ref["symbol"][0]
    assert snap.last_id == ref["update_id"][0] == ref["update_id"][-1]
    bids, asks = ref.filter(pl.col("side") == 1), ref.filter(pl.col("side") == -1)
    assert np.array_equal(snap.bid_prices, bids["price"].to_numpy())
    assert np.array_equal(snap.bid_sizes, bids["size"].to_numpy())
    assert np.array_equal(snap.ask_prices, asks["price"].to_numpy())
    assert np.array_equal(snap.ask_sizes, asks["size"].to_numpy())
    assert len(snap.bid_prices) + len(snap.ask_prices) == ref.height
    assert same(snap, decode_snapshot(body.decode(), RECORDINGS[name]))  # str body


# ------------------------------------------------------------------ 2. hand-made frames


def test_examples_decode_to_records() -> None:
    dec = FrameDecoder()
    assert dec.rejects == dict.fromkeys(REJECT_REASONS, 0) and dec.rejected == 0
    trade = Trade("BTCUSDT", 3735683259, 61837.63, 0.02, -1, 1723161255342)
    assert dec.decode(TRADE) == trade
    assert dec.decode(TRADE.decode()) == trade  # str frames too
    assert dec.decode(bytearray(TRADE)) == trade
    assert dec.decode(memoryview(TRADE)) == trade

    class Bytes(bytes):
        pass

    class Text(str):
        __slots__ = ()

    assert dec.decode(Bytes(TRADE)) == dec.decode(Text(TRADE.decode())) == trade
    assert dec.decode(TRADE.replace(b'"m":true', b'"m":false')).side == 1
    assert dec.decode(QUOTE) == Quote("BTCUSDT", 5123107839020, 61800.2, 2.507, 61800.3, 2.51, 1723161256313)
    spot_quote = b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"0","a":"2","A":"3"}}'
    assert dec.decode(spot_quote) == Quote("BTCUSDT", 1, 1.0, 0.0, 2.0, 3.0, None)
    diff = dec.decode(DEPTH)
    want = DepthDiff(
        "BTCUSDT", 5123107832006, 5123107837557, 5123107831937, 1723161256299,
        np.array([58710.2, 61510.9]), np.array([0.014, 0.0]), np.array([61800.3]), np.array([2.51]),
    )  # fmt: skip
    assert same(diff, want)
    empty = b'{"stream":"btcusdt@depth","data":{"E":5,"s":"BTCUSDT","U":3,"u":3,"b":[],"a":[]}}'
    diff = dec.decode(empty)
    assert diff.prev_id is None and diff.bid_prices.shape == diff.ask_sizes.shape == (0,)
    assert dec.accepted == 11 and dec.rejected == 0
    assert "accepted=11" in repr(dec)


def test_key_order_and_whitespace_take_the_slow_path_to_the_same_records() -> None:
    dec = FrameDecoder()
    obj = json.loads(TRADE)
    for frame in (
        json.dumps({"data": obj["data"], "stream": obj["stream"]}),
        json.dumps(obj, indent=2),
        b"  " + TRADE + b"\n",
        TRADE.replace(b'"btcusdt@trade"', b'"btcusdt\\u0040trade"'),  # escaped '@'
    ):
        assert dec.decode(frame) == dec.decode(TRADE)
    assert dec.rejected == 0


LONG = b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","x":"' + b"y" * 200 + b'"'
REJECTS = [
    # (frame, reason, text in last_error)
    (b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT"', "not_json", "truncated"),
    (b'{"stream":"btcusdt@trade","data":{"e":"trade"},}', "not_json", "malformed"),
    (b"\xff\xfe garbage", "not_json", "utf-8"),
    (TRADE.replace(b'"M":true', b'"M":"\xe9"'), "not_json", "utf-8"),  # in a field not read
    ('{"stream":"btcusdt@trade","data":{"s":"\ud800"}}', "not_json", "surrogates"),
    (b'{"stream":"btcusdt@trade","data":{"s":"\\udc00"}}', "not_json", "truncated"),
    (TRADE.replace(b'"M":true', b'"M":' + b"[" * 5000 + b"]" * 5000), "not_json", "nested deeper"),
    (b"NaN", "not_json", "malformed"),
    (b"", "not_json", "truncated"),
    (12, "not_json", "bytes or str, not int"),
    (None, "not_json", "not NoneType"),
    (LONG, "not_json", "..."),
    (b"[1, 2]", "not_a_message", "JSON list"),
    (b"3.5", "not_a_message", "JSON float"),
    (b'{"a": 1}', "not_a_message", "without 'stream' and 'data'"),
    (b'{"stream":"btcusdt@trade"}', "not_a_message", "without 'stream' and 'data'"),
    (b'{"data":{},"stream":5}', "not_a_message", "'stream' must be a string"),
    (b'{"stream":"btcusdt","data":{}}', "unknown_stream", "has no '@'"),
    (b'{"stream":"@trade","data":{}}', "unknown_stream", "empty symbol"),
    (b'{"stream":"btcusdt@","data":{}}', "unknown_stream", "empty kind"),
    (TRADE.replace(b'"p":"61837.63000000",', b""), "bad_field", "missing required field `p`"),
    (TRADE.replace(b'"61837.63000000"', b'"abc"'), "bad_field", "Expected `float`, got `str` - at `$.data.p`"),
    (TRADE.replace(b'"m":true', b'"m":null'), "bad_field", "`$.data.m`"),
    (TRADE.replace(b'"t":3735683259', b'"t":1.5'), "bad_field", "Expected `int`"),
    (b'{"stream":"btcusdt@trade","data":"x"}', "bad_field", "Expected `object`"),
    (DEPTH.replace(b'"b":[[', b'"b":[["x","1"],['), "bad_field", "`$.data.b[0][0]`"),
    (DEPTH.replace(b'"a":[[', b'"a":5,"z":[['), "bad_field", "`$.data.a`"),
    (b'{"result":null,"id":[1]}', "bad_field", "reply id"),
    (b'{"result":null,"id":true}', "bad_field", "reply id"),
    (b'{"error":"oops","id":1}', "bad_field", "reply error"),
    (b'{"code":2,"msg":"x","id":1.5}', "bad_field", "reply id"),
    (TRADE.replace(b'"61837.63000000"', b'"NaN"'), "bad_value", "Expected `float` > 0.0 - at `$.data.p`"),
    (TRADE.replace(b'"0.02000000"', b'"0"'), "bad_value", "`$.data.q`"),
    (TRADE.replace(b'"0.02000000"', b"1e400"), "bad_value", "Number out of range"),
    (TRADE.replace(b'"61837.63000000"', b'"inf"'), "bad_value", "<= 1.797"),
    (TRADE.replace(b'"t":3735683259', b'"t":-1'), "bad_value", "Expected `int` >= 0"),
    (TRADE.replace(b'"t":3735683259', b'"t":9223372036854775808'), "bad_value", "<= 9223372036854775807"),
    (QUOTE.replace(b'"2.507"', b'"-0.5"'), "bad_value", "`$.data.B`"),
    (DEPTH.replace(b'"U":5123107832006', b'"U":5123107837558'), "bad_value", "U=5123107837558 exceeds"),
    (DEPTH.replace(b'["61800.30","2.510"]', b'["61800.30"]'), "bad_value", "[price, size] pair"),
    (DEPTH.replace(b'["61800.30","2.510"]', b'["1","2","3"]'), "bad_value", "`$.data.a[0]`"),
    (DEPTH.replace(b'["61800.30","2.510"]', b'"61800.30"'), "bad_value", "[price, size] pair"),
    (DEPTH.replace(b'"0.014"', b'"-1"'), "bad_value", "`$.data.b[0][1]`"),
    (DEPTH.replace(b'"pu":5123107831937', b'"pu":-1'), "bad_value", "`$.data.pu`"),
    (TRADE.replace(b'"s":"BTCUSDT"', b'"s":"ETHUSDT"'), "symbol_mismatch", "s='ETHUSDT'"),
    (TRADE.replace(b'"s":"BTCUSDT"', b'"s":"btcusdt"'), "symbol_mismatch", "'btcusdt@trade'"),
    (DEPTH.replace(b'"s":"BTCUSDT"', b'"s":"BTC"'), "symbol_mismatch", "s='BTC'"),
]


@pytest.mark.parametrize(("frame", "reason", "text"), REJECTS)
def test_each_reject_reason(frame: object, reason: str, text: str) -> None:
    dec = FrameDecoder()
    assert outcome(dec, frame) == (None, reason)
    assert dec.rejects[reason] == dec.rejected == 1
    assert dec.last_error is not None and dec.last_error.startswith(f"{reason}: ")
    assert text in dec.last_error
    assert len(dec.last_error) < 700
    valid, _ = parse_json(frame)
    assert valid == (reason != "not_json")


def test_ignored_kinds_and_replies() -> None:
    dec = FrameDecoder()
    for kind in ("kline_1m", "depth5", "depth20@100ms", "aggTrade", "depth@1000ms"):
        frame = b'{"stream":"btcusdt@' + kind.encode() + b'","data":{"whatever":[1,2]}}'
        assert outcome(dec, frame) == (None, f"ignored:{kind}")
    assert outcome(dec, b'{"stream":"btcusdt@kline_1m","data":{"k":5}}')[1] == "ignored:kline_1m"
    assert outcome(dec, b'{"code":null,"msg":"x"}')[1] == "not_a_message"  # no error code
    assert outcome(dec, b'{"stream":"btcusdt@kline_1m","data":{"k":')[1] == "not_json"
    assert dec.ignored["kline_1m"] == 2 and sum(dec.ignored.values()) == 6
    replies = {
        b'{"result":null,"id":1}': Reply(1, None, None),
        b'{"result":["btcusdt@trade","btcusdt@depth"],"id":"abc"}': Reply("abc", ["btcusdt@trade", "btcusdt@depth"], None),
        b'{"id":null,"result":true}': Reply(None, True, None),
        b'{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":3}': Reply(
            3, None, {"code": 2, "msg": "Invalid request: unknown variant"}
        ),
        b'{"code":2,"msg":"Invalid request: property name must be a string"}': Reply(
            None, None, {"code": 2, "msg": "Invalid request: property name must be a string"}
        ),
        b'{"result":[1e400],"id":7}': Reply(7, [math.inf], None),
    }
    for frame, want in replies.items():
        assert outcome(dec, frame) == (want, "accepted")
    assert dec.accepted == len(replies) and dec.rejected == 2


def test_duplicate_stream_keys_follow_the_last_one() -> None:
    """The fast path guesses the kind from the first "stream"; JSON keeps the last."""
    dec = FrameDecoder()
    for frame in (TRADE, DEPTH, b'{"stream":"btcusdt@kline_1m","data":{}}'):  # fast path primed
        assert dec.decode(frame) is None or dec.accepted
    data = json.loads(TRADE)["data"]
    dup = '{"stream":"btcusdt@%s","data":%s,"stream":"btcusdt@%s"}'
    assert outcome(dec, dup % ("trade", json.dumps(data), "kline_1m"))[1] == "ignored:kline_1m"
    assert outcome(dec, dup % ("trade", '{"x":1}', "kline_1m"))[1] == "ignored:kline_1m"
    assert outcome(dec, dup % ("depth@0ms", DEPTH.decode().split('"data":')[1][:-1], "kline_1m"))[1] == "ignored:kline_1m"
    assert outcome(dec, dup % ("kline_1m", "{}", "trade"))[1] == "bad_field"
    assert outcome(dec, dup % ("kline_1m", json.dumps(data), "trade"))[0] == dec.decode(TRADE)


def test_many_stream_names() -> None:
    """More names than the route cache holds still decode (the slow way)."""
    dec = FrameDecoder()
    for i in range(700):
        frame = TRADE.replace(b"btcusdt", b"sym%d" % i).replace(b"BTCUSDT", b"SYM%d" % i)
        assert dec.decode(frame).symbol == f"SYM{i}"
        assert dec.decode(frame).symbol == f"SYM{i}"
    assert dec.accepted == 1400 and dec.rejected == 0


def test_raw_stream_mode() -> None:
    dec = FrameDecoder(raw_stream="btcusdt@trade")
    data = json.dumps(json.loads(TRADE)["data"])
    assert outcome(dec, data) == (FrameDecoder().decode(TRADE), "accepted")
    assert outcome(dec, TRADE)[1] == "bad_field"  # an envelope is not the raw payload
    assert outcome(dec, b'{"result":null,"id":1}') == (Reply(1, None, None), "accepted")
    assert outcome(dec, b"[1]")[1] == "not_a_message"
    assert outcome(dec, b"{}")[1] == "bad_field"
    assert outcome(dec, data[:-3])[1] == "not_json"
    assert outcome(dec, data.replace("BTCUSDT", "ETHUSDT"))[1] == "symbol_mismatch"
    assert outcome(dec, data.replace('"0.02000000"', '"-1"'))[1] == "bad_value"
    assert dec.accepted == 2 and dec.rejected == 6

    depth = FrameDecoder(raw_stream="btcusdt@depth@0ms")
    raw = DEPTH.decode().split('"data":')[1][:-1]
    assert same(depth.decode(raw), FrameDecoder().decode(DEPTH))
    assert outcome(depth, raw.replace('["61800.30","2.510"]', '["1"]'))[1] == "bad_value"
    assert outcome(depth, raw.replace('"U":5123107832006', '"U":5123107837558'))[1] == "bad_value"
    assert outcome(depth, raw.replace('"s":"BTCUSDT"', '"s":"X"'))[1] == "symbol_mismatch"

    kline = FrameDecoder(raw_stream="btcusdt@kline_1m")
    assert outcome(kline, b'{"e":"kline","k":{}}') == (None, "ignored:kline_1m")
    assert outcome(kline, b'{"result":null,"id":2}') == (Reply(2, None, None), "accepted")
    assert outcome(kline, b'"kline"')[1] == "not_a_message"
    assert outcome(kline, b'{"e":')[1] == "not_json"
    assert "raw_stream='btcusdt@kline_1m'" in repr(kline)


@pytest.mark.parametrize("raw_stream", ["btcusdt", "@trade", "btcusdt@", 5])
def test_raw_stream_must_be_a_stream_name(raw_stream: object) -> None:
    with pytest.raises(ConfigError, match=r"raw_stream=.* (is not a stream name|must be a stream name)"):
        FrameDecoder(raw_stream=raw_stream)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- REST

REST_SPOT = (
    b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
    b'"time":1499865549590,"isBuyerMaker":true,"isBestMatch":true},'
    b'{"id":28458,"price":"4.00000200","qty":"1.5","quoteQty":"6.000003",'
    b'"time":1499865549591,"isBuyerMaker":false,"isBestMatch":true}]'
)
REST_FUTURES = b'[{"id":5266583935,"price":"61800.30","qty":"0.006","quoteQty":"370.80","time":1723161256322,"isBuyerMaker":false}]'


def test_rest_trades() -> None:
    assert decode_rest_trades(REST_SPOT, "btcusdt") == [
        Trade("BTCUSDT", 28457, 4.000001, 12.0, -1, 1499865549590),
        Trade("BTCUSDT", 28458, 4.000002, 1.5, 1, 1499865549591),
    ]
    assert decode_rest_trades(REST_FUTURES.decode(), "BTCUSDT") == [
        Trade("BTCUSDT", 5266583935, 61800.3, 0.006, 1, 1723161256322)
    ]
    assert decode_rest_trades(bytearray(b"[]"), "BTCUSDT") == []


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (REST_SPOT[:-5], r"historical trades of BTCUSDT is not valid JSON \(Input data was truncated\)"),
        (b'{"code":-1121,"msg":"Invalid symbol."}', r"Binance answered error -1121: 'Invalid symbol.'"),
        (b'{"trades":[]}', r"not as expected: Expected `array`, got `object`"),
        (REST_SPOT.replace(b'"price":"4.00000200",', b""), r"missing required field `price` - at `\$\[1\]`"),
        (REST_SPOT.replace(b'"4.00000200"', b'"0"'), r"Expected `float` > 0.0 - at `\$\[1\].price`"),
        (REST_SPOT.replace(b'"12.00000000"', b'"x"'), r"`\$\[0\].qty`"),
        (REST_SPOT.replace(b"28457", b"-1"), r"`\$\[0\].id`"),
        (b"[\xff]", r"not UTF-8 text"),
        (12, r"must be the response body as bytes or str, not int"),
    ],
)
def test_rest_trades_errors(body: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        decode_rest_trades(body, "btcusdt")  # type: ignore[arg-type]


SNAP = b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"],["5","0"]]}'


def test_snapshot_small() -> None:
    snap = decode_snapshot(SNAP, "BNBBTC")
    assert (snap.symbol, snap.last_id) == ("BNBBTC", 1027024)
    assert snap.bid_prices.tolist() == [4.0] and snap.bid_sizes.tolist() == [431.0]
    assert snap.ask_prices.tolist() == [4.000002, 5.0] and snap.ask_sizes.tolist() == [12.0, 0.0]
    empty = decode_snapshot(b'{"lastUpdateId":1,"bids":[],"asks":[],"symbol":"X_PERP"}', "x_perp")
    assert empty.symbol == "X_PERP" and empty.bid_prices.shape == empty.ask_sizes.shape == (0,)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (SNAP[:-2], r"depth snapshot of BNBBTC is not valid JSON"),
        (b"\xc3\x28", r"depth snapshot of BNBBTC is not UTF-8 text"),
        (b'{"code":-1100,"msg":"Illegal characters found in parameter \'symbol\'"}', r"Binance answered error -1100"),
        (SNAP.replace(b'"lastUpdateId":1027024,', b""), r"missing required field `lastUpdateId`"),
        (SNAP.replace(b'["5","0"]', b'["5"]'), r"Expected `array` of length 2 - at `\$.asks\[1\]`"),
        (SNAP.replace(b'["5","0"]', b'["5","-1"]'), r"Expected `float` >= 0.0 - at `\$.asks\[1\]\[1\]`"),
        (SNAP.replace(b'"4.00000000"', b'"NaN"'), r"`\$.bids\[0\]\[0\]`"),
        (SNAP[:-1] + b',"symbol":"BTCUSD_PERP"}', r"the body is the book of 'BTCUSD_PERP'; ask for 'BNBBTC'"),
        (b"[" * 3000 + b"]" * 3000, r"not valid JSON"),
        (None, r"must be the response body as bytes or str, not NoneType"),
    ],
)
def test_snapshot_errors(body: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        decode_snapshot(body, "bnbbtc")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- generic format


def decode_all(frames: list[bytes]) -> list[object]:
    dec = FrameDecoder()
    out = [dec.decode(f) for f in frames]
    assert dec.accepted == len(frames) and dec.rejected == 0, dec.last_error
    return out


def test_generic_bars_round_trip() -> None:
    bars = ntlab.datasets.load("spy_1min").head(500)
    frames = encode_generic(bars, "SPY")
    assert frames[0].startswith(b'{"stream":"spy@bar","data":{"e":"bar","s":"SPY","t":')
    got = decode_all(frames)
    assert all(isinstance(b, Bar) and b.symbol == "SPY" for b in got)
    assert [b.ts for b in got] == bars["ts"].to_physical().to_list()
    for field in ("open", "high", "low", "close", "volume"):
        assert [getattr(b, field) for b in got] == bars[field].to_list()
    # bars without volume (FX quotes): no "v", decoded as NaN
    fx = ntlab.datasets.load("fxcm_usdjpy_bid_1min").head(50)
    got = decode_all(encode_generic(fx, "usdjpy"))
    assert [b.close for b in got] == fx["close"].to_list()
    assert all(b.symbol == "USDJPY" and math.isnan(b.volume) for b in got)


def test_generic_ticks_round_trip() -> None:
    ticks = ntlab.datasets.load("mtgox_trades").head(500)
    frames = encode_generic(ticks, "BTCUSD")
    assert frames[1].startswith(b'{"stream":"btcusd@tick","data":{"e":"tick","s":"BTCUSD","i":1,"t":')
    got = decode_all(frames)
    assert [t.seq for t in got] == list(range(500))
    assert [t.ts for t in got] == ticks["ts"].to_physical().to_list()
    assert [t.price for t in got] == ticks["price"].to_list()
    assert [t.size for t in got] == ticks["size"].to_list()


def test_generic_extreme_values_round_trip() -> None:
    odd = [5e-324, 1e-300, 0.1, 1 / 3, 2.0**53 + 2, 1.7976931348623157e308, 61837.63]
    frame = conform(
        pl.DataFrame(
            {
                "ts": pl.Series([-(2**62), -1, 0, 1, 2**62, 2**63 - 1, 1723161255342000000]).cast(pl.Datetime("ns", "UTC")),
                "symbol": ["es"] * 7,
                "price": odd,
                "size": odd[::-1],
            }
        ),
        "trades",
    )
    got = decode_all(encode_generic(frame, "ES"))
    assert [(t.ts, t.price, t.size) for t in got] == list(zip(frame["ts"].to_physical(), odd, odd[::-1], strict=True))
    ms = pl.DataFrame({"ts": pl.Series([1, 2], dtype=pl.Datetime("ms", "Europe/Paris")), "price": [1, 2], "size": [3, 4]})
    got = decode_all(encode_generic(ms, "X"))
    assert [(t.ts, t.price, t.size) for t in got] == [(1_000_000, 1.0, 3.0), (2_000_000, 2.0, 4.0)]
    ints = pl.DataFrame({"ts": [5, 6], "open": [1.0, 2.0], "high": [1.0, 2.0], "low": [1.0, 2.0], "close": [1.0, 2.0], "volume": [0, 7]})
    got = decode_all(encode_generic(ints, "X"))
    assert [(b.ts, b.volume) for b in got] == [(5, 0.0), (6, 7.0)]
    assert encode_generic(ints.head(0), "X") == []


@given(
    st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1),
            st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
            st.floats(min_value=0.0, allow_infinity=False),
        ),
        max_size=20,
    )
)
@settings(max_examples=50, deadline=None, derandomize=True, database=None)
def test_generic_round_trip_any_values(rows: list[tuple[int, float, float]]) -> None:
    ts = [r[0] for r in rows]
    price = [r[1] for r in rows]
    vol = [r[2] for r in rows]
    bars = pl.DataFrame(
        {"ts": pl.Series(ts, dtype=pl.Int64), "open": price, "high": price, "low": price, "close": price, "volume": vol},
        schema_overrides={"open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64},
    )
    got = decode_all(encode_generic(bars, "SYM"))
    assert [(b.ts, b.open, b.close, b.volume) for b in got] == list(zip(ts, price, price, vol, strict=True))


@pytest.mark.parametrize(
    ("frame", "symbol", "error", "match"),
    [
        (pl.DataFrame({"ts": [1], "bid": [1.0]}), "X", ConfigError, r"needs bars .* or trade ticks .*; the frame has columns \['ts', 'bid'\]"),
        (pl.DataFrame({"ts": [1], "price": [1.0], "size": [1.0], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}), "X", ConfigError, "both bar and tick columns"),
        ({"ts": [1]}, "X", ConfigError, "must be a polars DataFrame"),
        (pl.DataFrame({"ts": [1], "price": [1.0], "size": [1.0]}), "A@B", ConfigError, r"symbol='A@B' cannot name a stream"),
        (pl.DataFrame({"ts": [1], "price": [1.0], "size": [1.0]}), "A/B", ConfigError, r"symbol='A/B' cannot name a catalog folder"),
        (pl.DataFrame({"ts": [1, 2], "symbol": ["X", "Y"], "price": [1.0, 1.0], "size": [1.0, 1.0]}), "X", ConfigError, r"holds \['Y'\] besides 'X'; filter it first"),
        (pl.DataFrame({"ts": pl.Series([1], dtype=pl.Datetime("ns")), "price": [1.0], "size": [1.0]}), "X", ConfigError, "naive datetime"),
        (pl.DataFrame({"ts": ["2024-01-01"], "price": [1.0], "size": [1.0]}), "X", ConfigError, "column ts has dtype String"),
        (pl.DataFrame({"ts": [1], "price": ["1.0"], "size": [1.0]}), "X", ConfigError, "column price has dtype String; it must be numeric"),
        (pl.DataFrame({"ts": [1, None], "price": [1.0, 1.0], "size": [1.0, 1.0]}), "X", DataError, "ts must not be null to be sent; row 1"),
        (pl.DataFrame({"ts": [1, 2], "price": [1.0, float("nan")], "size": [1.0, 1.0]}), "X", DataError, r"price must be finite and > 0 to be sent; row 1 holds nan"),
        (pl.DataFrame({"ts": [1, 2], "price": [1.0, None], "size": [1.0, 1.0]}), "X", DataError, "row 1 holds None"),
        (pl.DataFrame({"ts": [1], "price": [1.0], "size": [0.0]}), "X", DataError, r"size must be finite and > 0 to be sent; row 0 holds 0.0"),
        (pl.DataFrame({"ts": [1], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [-1.0]}), "X", DataError, r"volume must be finite and >= 0"),
        (pl.DataFrame({"ts": [1], "open": [1.0], "high": [float("inf")], "low": [1.0], "close": [1.0]}), "X", DataError, r"high must be finite and > 0"),
    ],
)
def test_encode_generic_errors(frame: object, symbol: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        encode_generic(frame, symbol)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- 3. fuzz
#
# Each hypothesis example feeds PER_EXAMPLE frames to fresh decoders, drawn as "specs": a valid
# message of a decoded kind (sent whole, then with every key dropped, every field read given
# a bad value, envelope faults, truncated, a quote replaced by '#', nested deeply), arbitrary
# bytes or text, arbitrary JSON (NaN and Infinity included, which are not JSON), replies, and
# messages of ignored kinds. Every frame checks: decode never raises, exactly one counter
# moves, not_json if and only if the standard library does not read the frame as JSON, and
# the documented outcome where it is known (the record, or the reason).

FUZZ_FRAMES = int(os.environ.get("NTLAB_FUZZ_FRAMES", "100000"))
PER_EXAMPLE = 500
FUZZ_EXAMPLES = max(1, -(-FUZZ_FRAMES // PER_EXAMPLE))

KNOWN = {"trade", "bookTicker", "depth", "depth@100ms", "depth@0ms", "depth@250ms", "depth@500ms", "bar", "tick"}
IGNORED = ["kline_1m", "depth5", "depth20@100ms", "aggTrade", "depth@1000ms", "miniTicker", "bar@x"]
MAX_ID = 2**63 - 1
BV, BF = "bad_value", "bad_field"

# Field classes of each kind's decoded keys; other keys are carried but not read.
FIELDS = {
    "trade": {"s": "sym", "t": "id", "p": "pos", "q": "pos", "m": "bool", "T": "id"},
    "bookTicker": {"s": "sym", "u": "id", "b": "pos", "B": "nonneg", "a": "pos", "A": "nonneg", "T": "optid"},
    "depth": {"s": "sym", "E": "id", "U": "id", "u": "id", "b": "levels", "a": "levels", "pu": "optid"},
    "bar": {"s": "sym", "t": "i64", "o": "pos", "h": "pos", "l": "pos", "c": "pos", "v": "nonneg"},
    "tick": {"s": "sym", "i": "id", "t": "i64", "p": "pos", "q": "pos"},
}
OPTIONAL = {("bookTicker", "T"), ("depth", "pu"), ("bar", "v")}
# replacement JSON text -> outcome: a reason, or ("ok", the value it decodes to)
BAD: dict[str, list[tuple[str, object]]] = {
    "pos": [('"NaN"', BV), ('"nan"', BV), ('"inf"', BV), ('"-Infinity"', BV), ('"-1"', BV), ('"0"', BV),
            ("-2.5", BV), ("0", BV), ('"1e400"', BV), ("1e400", BV), ("-0.0", BV), ("1e-400", BV),
            ('"abc"', BF), ("true", BF), ('" 1"', BF), ('"1e308"', ("ok", 1e308))],
    "nonneg": [('"-1"', BV), ('"NaN"', BV), ('"inf"', BV), ("-0.5", BV), ('"1e400"', BV), ("1e400", BV),
               ('"0"', ("ok", 0.0)), ("0", ("ok", 0.0)), ('"abc"', BF), ("false", BF)],
    "id": [("-1", BV), ('"-5"', BV), (str(2**63), BV), ("1" + "0" * 30, BV), ("1e400", BV),
           ('"NaN"', BF), ("1.5", BF), ('"abc"', BF), ("true", BF)],
    "i64": [("-1", ("ok", -1)), (str(2**63), BV), (str(-(2**63) - 1), BV), ('"NaN"', BF), ("1.5", BF)],
    "bool": [('"true"', ("ok", True)), ('"false"', ("ok", False)), ("1", ("ok", True)), ("0", ("ok", False)),
             ("2", BF), ('"yes"', BF)],
    "sym": [("5", BF), ('"zz"', "symbol_mismatch"), ("true", BF)],
    "levels": [("[1]", BV), ('[["1"]]', BV), ('[["1","2","3"]]', BV), ('[["1","-2"]]', BV), ('[["0","2"]]', BV),
               ('[["1","NaN"]]', BV), ('[["x","2"]]', BF), ("5", BF), ('"[]"', BF), ("[]", ("ok", []))],
}  # fmt: skip
BAD["optid"] = [*BAD["id"], ("null", ("ok", None))]
for _cls, _values in BAD.items():  # wrong types for every field; null only where optional
    _values += [("{}", BF), *([] if _cls == "optid" else [("null", BF)]), *([] if _cls == "levels" else [("[]", BF)])]

KINDS = st.sampled_from(["trade", "bookTicker", "depth", "bar", "tick"])
DEPTH_KINDS = st.sampled_from(["depth", "depth@100ms", "depth@0ms", "depth@250ms", "depth@500ms"])
SYMBOLS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=12)
IDS = st.integers(0, MAX_ID)
I64S = st.integers(-(2**63), MAX_ID)
STYLES = st.integers(0, 4)
STYLES0 = st.integers(0, 5)
SMALL = st.floats(min_value=1e-6, max_value=1e12)
ANY_POSITIVE = st.floats(min_value=0.0, exclude_min=True, allow_infinity=False)
ZEROS = st.sampled_from(['"0"', '"0.00000000"', "0", "0.0"])
BOOLS = st.booleans()
N_LEVELS = st.integers(0, 3)
SEEDS = st.integers(0, 2**32 - 1)
BINARY = st.binary(max_size=120)
TEXT = st.text(max_size=80)
RAW_STREAMS = st.sampled_from([None, None, "btcusdt@trade", "btcusdt@depth", "x@kline_1m"])
REPLY_IDS = st.none() | st.integers(-(2**64), 2**64) | st.text(max_size=6)
RESULTS = st.none() | st.booleans() | st.lists(st.text(max_size=12), max_size=3)
CODES = st.integers(-3000, 3)
MSGS = st.text(max_size=20)
IGNORED_KINDS = st.sampled_from(IGNORED)
JSON_KEYS = st.sampled_from(["stream", "data", "id", "result", "error", "code", "msg", "s", "p", "e"]) | st.text(max_size=4)


def json_trees(floats: st.SearchStrategy[float]) -> st.SearchStrategy[object]:
    return st.recursive(
        st.none() | st.booleans() | floats | st.integers(-(2**70), 2**70) | st.text(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(JSON_KEYS, children, max_size=4),
        max_leaves=8,
    )


JSON_VALUES = json_trees(st.floats())  # NaN and inf: json.dumps writes NaN/Infinity, not JSON
CLEAN_JSON = json_trees(st.floats(allow_nan=False, allow_infinity=False))
STREAM_NAMES = st.builds(
    lambda sym, kind: f"{sym}{kind}",
    st.sampled_from(["btcusdt", "", "ETH", "a@b"]),
    st.sampled_from([f"@{k}" for k in sorted(KNOWN)] + [f"@{k}" for k in IGNORED] + ["", "@", "x"]),
)


def positive(draw: st.DrawFn, *, zero: bool = False) -> tuple[str, float]:
    """A positive (or zero) number as Binance writes it, or as a JSON number: (json, value)."""
    style = draw(STYLES0 if zero else STYLES)
    if style == 5:
        return draw(ZEROS), 0.0
    if style <= 1:
        x = draw(SMALL)
        text = f"{x:.8f}" if style == 0 else f"{max(x, 0.01):.2f}"
        return f'"{text}"', float(text)
    x = draw(ANY_POSITIVE)
    return (f'"{x!r}"' if style == 3 else repr(x)), x


def an_id(draw: st.DrawFn, strategy: st.SearchStrategy[int] = IDS) -> tuple[str, int]:
    x = draw(strategy)
    return (f'"{x}"' if x % 5 == 0 else str(x)), x  # integers as strings are read too


def levels(draw: st.DrawFn) -> tuple[str, list[tuple[float, float]]]:
    pairs = [(positive(draw), positive(draw, zero=True)) for _ in range(draw(N_LEVELS))]
    return "[" + ",".join(f"[{p[0]},{q[0]}]" for p, q in pairs) + "]", [(p[1], q[1]) for p, q in pairs]


def message(draw: st.DrawFn) -> tuple[str, str, str, dict[str, tuple[str, object]]]:
    """A valid message of a decoded kind: (kind, stream, symbol, {key: (json, value)})."""
    kind = draw(KINDS)
    sym = draw(SYMBOLS)
    s = (f'"{sym}"', sym)
    sub = kind
    if kind == "trade":
        m = draw(BOOLS)
        items = {"e": ('"trade"', None), "E": an_id(draw), "s": s, "t": an_id(draw), "p": positive(draw),
                 "q": positive(draw), "T": an_id(draw), "m": ("true", True) if m else ("false", False)}  # fmt: skip
        if draw(BOOLS):
            items["M"] = ("true", None)
    elif kind == "bookTicker":
        items = {"u": an_id(draw), "s": s, "b": positive(draw), "B": positive(draw, zero=True),
                 "a": positive(draw), "A": positive(draw, zero=True)}  # fmt: skip
        if draw(BOOLS):
            items["T"] = an_id(draw)
            items["e"] = ('"bookTicker"', None)
    elif kind == "depth":
        sub = draw(DEPTH_KINDS)
        first, last = sorted((draw(IDS), draw(IDS)))
        items = {"e": ('"depthUpdate"', None), "E": an_id(draw), "s": s, "U": (str(first), first),
                 "u": (str(last), last), "b": levels(draw), "a": levels(draw)}  # fmt: skip
        if draw(BOOLS):
            items["pu"] = an_id(draw)
    elif kind == "bar":
        items = {"e": ('"bar"', None), "s": s, "t": an_id(draw, I64S), "o": positive(draw), "h": positive(draw),
                 "l": positive(draw), "c": positive(draw)}  # fmt: skip
        if draw(BOOLS):
            items["v"] = positive(draw, zero=True)
    else:
        items = {"e": ('"tick"', None), "s": s, "i": an_id(draw), "t": an_id(draw, I64S), "p": positive(draw),
                 "q": positive(draw)}  # fmt: skip
    return kind, f"{sym.lower()}@{sub}", sym, items


def record(kind: str, sym: str, items: dict[str, tuple[str, object]]) -> object:
    """The record a message with these values decodes to, or the reason it is refused."""
    v = {k: val for k, (_, val) in items.items() if k in FIELDS[kind]}
    if kind == "depth" and v["U"] > v["u"]:
        return BV
    if v["s"] != sym:
        return "symbol_mismatch"
    if kind == "trade":
        return Trade(v["s"], v["t"], v["p"], v["q"], -1 if v["m"] else 1, v["T"])
    if kind == "bookTicker":
        return Quote(v["s"], v["u"], v["b"], v["B"], v["a"], v["A"], v.get("T"))
    if kind == "depth":
        b = np.array(v["b"], dtype=np.float64).reshape(-1, 2)
        a = np.array(v["a"], dtype=np.float64).reshape(-1, 2)
        return DepthDiff(v["s"], v["U"], v["u"], v.get("pu"), v["E"], b[:, 0], b[:, 1], a[:, 0], a[:, 1])
    if kind == "bar":
        return Bar(v["s"], v["t"], v["o"], v["h"], v["l"], v["c"], v.get("v", math.nan))
    return Tick(v["s"], v["i"], v["t"], v["p"], v["q"])


def json_object(items: dict[str, tuple[str, object]]) -> str:
    return "{" + ",".join(f'"{k}":{text}' for k, (text, _) in items.items()) + "}"


Case = tuple[object, "str | None", object]  # (frame, raw stream or None, expectation)


@st.composite
def valid_spec(draw: st.DrawFn) -> list[Case]:
    """A valid message, whole and in every single mutation, as combined and raw frames.

    An expectation is a reason, a record, or None (then only: not_json iff not JSON).
    """
    kind, stream, sym, items = message(draw)
    r = draw(SEEDS)
    fields = FIELDS[kind]
    out: list[Case] = []

    def add(data_items: dict[str, tuple[str, object]], expect: object, j: int) -> None:
        data = json_object(data_items)
        raw = (r + j) % 4 == 0
        frame = data if raw else '{"stream":"' + stream + '","data":' + data + "}"
        out.append((frame.encode() if (r >> j) & 1 else frame, stream if raw else None, expect))

    whole = record(kind, sym, items)
    data = json_object(items)
    out += [
        (f'{{"stream":"{stream}","data":{data}}}'.encode(), None, whole),
        (f'{{"data":{data},"stream":"{stream}"}}', None, whole),  # another key order
        (f'{{ "stream" : "{stream}" ,\n "data" : {data} }}'.encode(), None, whole),
        (data.encode(), stream, whole),  # raw connection
    ]
    for j, key in enumerate(items):  # drop each key
        rest = {k: v for k, v in items.items() if k != key}
        optional = (kind, key) in OPTIONAL or key not in fields
        add(rest, record(kind, sym, rest) if optional else BF, j)
    for j, key in enumerate(k for k in items if k in fields):  # a bad or odd value in each field
        table = BAD[fields[key]]
        text, result = table[(r + 7 * j) % len(table)]
        changed = {**items, key: (text, result[1] if isinstance(result, tuple) else None)}
        add(changed, record(kind, sym, changed) if isinstance(result, tuple) else result, j + 3)
    for j, depth in enumerate((30, 3000)):  # a deep value in a key not read
        add({**items, "x": ("[" * depth + "]" * depth, None)}, whole if depth == 30 else "not_json", j + 1)
    env = f'{{"stream":"{stream}","data":{data}}}'
    wrong = ("[]", "1", "null", '"x"')[r % 4]
    out += [
        (f'{{"stream":"{stream}"}}', None, "not_a_message"),
        (f'{{"data":{data}}}'.encode(), None, "not_a_message"),
        (f'{{"stream":5,"data":{data}}}', None, "not_a_message"),
        (f'{{"stream":"{stream}","data":{wrong}}}'.encode(), None, BF),
        (env[: r % len(env)].encode(), None, "not_json"),  # truncated
        (data[: (r >> 8) % len(data)], stream, "not_json"),
        ("[" * 30 + env + "]" * 30, None, "not_a_message"),
        (("[" * 3000 + env + "]" * 3000).encode(), None, "not_json"),
    ]
    quotes = [i for i, ch in enumerate(env) if ch == '"']
    i = quotes[r % len(quotes)]
    out.append((env[:i] + "#" + env[i + 1 :], None, None))  # one quote replaced
    return out


@st.composite
def garbage_spec(draw: st.DrawFn) -> list[Case]:
    if draw(BOOLS):
        b = draw(BINARY)
        return [(b, None, None), (b'{"stream":"btcusdt@trade","data":' + b, None, None), (b, "btcusdt@trade", None)]
    t = draw(TEXT)
    return [(t, None, None), (t.encode(), None, None), ('{"stream":"' + t, None, None), (t + "\ud800", None, "not_json")]


@st.composite
def json_spec(draw: st.DrawFn) -> list[Case]:
    """Arbitrary JSON (NaN included: not JSON), bare, in an envelope of any name, and raw."""
    value = draw(JSON_VALUES)
    name = draw(STREAM_NAMES)
    ascii_ = draw(BOOLS)
    bare = json.dumps(value, ensure_ascii=ascii_)
    return [
        (bare.encode(), None, None),
        (json.dumps({"stream": name, "data": value}, ensure_ascii=ascii_), None, None),
        (json.dumps({"data": value, "stream": name, "id": 1}).encode(), None, None),
        (bare, "btcusdt@depth@0ms", None),
    ]


@st.composite
def reply_spec(draw: st.DrawFn) -> list[Case]:
    rid = draw(REPLY_IDS)
    if draw(BOOLS):
        obj, want = {"result": (result := draw(RESULTS)), "id": rid}, Reply(rid, result, None)
    else:
        error = {"code": draw(CODES), "msg": draw(MSGS)}
        obj, want = {"error": error, "id": rid}, Reply(rid, None, error)
    frame = json.dumps(obj, ensure_ascii=draw(BOOLS))
    return [(frame.encode(), None, want), (frame, draw(RAW_STREAMS), want)]


@st.composite
def ignored_spec(draw: st.DrawFn) -> list[Case]:
    kind = draw(IGNORED_KINDS)
    stream = draw(SYMBOLS).lower() + "@" + kind
    value = draw(CLEAN_JSON)
    data = json.dumps(value)
    raw_expect: object = f"ignored:{kind}"
    if not isinstance(value, dict):
        raw_expect = "not_a_message"
    elif set(json_expectation(value)) != {"not_a_message"}:  # has the shape of a reply
        raw_expect = None
    return [
        ('{"stream":"' + stream + '","data":' + data + "}", None, f"ignored:{kind}"),
        (data.encode(), stream, raw_expect),
    ]


SPECS = st.one_of(valid_spec(), garbage_spec(), garbage_spec(), json_spec(), json_spec(), reply_spec(), ignored_spec())


def json_expectation(obj: object) -> set[str]:
    """What a combined-stream decoder may do with valid JSON ``obj`` (the documented rules)."""
    if not isinstance(obj, dict):
        return {"not_a_message"}
    if "stream" in obj and "data" in obj:
        stream = obj["stream"]
        if not isinstance(stream, str):
            return {"not_a_message"}
        sym, at, kind = stream.partition("@")
        if not (at and sym and kind):
            return {"unknown_stream"}
        if kind not in KNOWN:
            return {f"ignored:{kind}"}
        return {BF, BV, "symbol_mismatch", "accepted"}
    rid_ok = obj.get("id") is None or type(obj.get("id")) in (int, str)
    if "id" in obj and ("result" in obj or "error" in obj):
        error = obj.get("error")
        return {"accepted" if rid_ok and (error is None or isinstance(error, dict)) else BF}
    if type(obj.get("code")) is int and isinstance(obj.get("msg"), str):  # the bare error form
        return {"accepted" if rid_ok else BF}
    return {"not_a_message"}


def check_case(decoders: dict[str | None, FrameDecoder], frame: object, raw: str | None, expect: object) -> None:
    dec = decoders.get(raw)
    if dec is None:
        dec = decoders[raw] = FrameDecoder(raw_stream=raw)
    out, tag = outcome(dec, frame)
    valid, obj = parse_json(frame)
    assert (tag == "not_json") == (not valid), (frame, tag, dec.last_error)
    if isinstance(expect, str):
        assert tag == expect, (frame, raw, tag, expect, dec.last_error)
    elif expect is not None:
        assert tag == "accepted" and same(out, expect), (frame, raw, out, expect, dec.last_error)
    elif valid and raw is None:
        assert tag in json_expectation(obj), (frame, tag, dec.last_error)
        if isinstance(out, Reply):
            assert isinstance(obj, dict)
            if "id" in obj and ("result" in obj or "error" in obj):
                assert out == Reply(obj["id"], obj.get("result"), obj.get("error"))
            else:  # the bare {"code": .., "msg": ..} form
                assert out == Reply(obj.get("id"), None, {k: v for k, v in obj.items() if k != "id"})


FUZZED = {"frames": 0}


@given(st.data())
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def _fuzz(data: st.DataObject) -> None:
    batch: list[Case] = []
    while len(batch) < PER_EXAMPLE:
        batch += data.draw(SPECS)
    batch = batch[:PER_EXAMPLE]
    decoders: dict[str | None, FrameDecoder] = {}
    for frame, raw, expect in batch:
        check_case(decoders, frame, raw, expect)
    assert sum(d.accepted + d.rejected + sum(d.ignored.values()) for d in decoders.values()) == len(batch)
    assert all(list(d.rejects) == list(REJECT_REASONS) for d in decoders.values())
    FUZZED["frames"] += len(batch)


def test_fuzz_decoder_never_raises_and_counts_every_frame() -> None:
    """NTLAB_FUZZ_FRAMES frames (100,000 by default) of garbage, JSON, valid and mutated messages."""
    FUZZED["frames"] = 0
    _fuzz()
    assert FUZZED["frames"] == FUZZ_EXAMPLES * PER_EXAMPLE >= FUZZ_FRAMES
