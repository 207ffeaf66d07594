"""read_binance on every real recording, checked against independent counts of the raw lines."""

from __future__ import annotations

import gzip
import json
import re
from functools import cache
from pathlib import Path

import polars as pl
import pytest

from ntlab.data.loaders.binance import STREAMS, read_binance
from ntlab.data.paths import data_file
from ntlab.data.schemas import TS
from ntlab.exceptions import ConfigError, DataError

FILES = [
    "spot/btcusdt_20240808.gz",
    "spot/btcusdt_20240809.gz",
    "spot/ethusdt_20240808.gz",
    "spot/ethusdt_20240809.gz",
    "usdm/btcusdt_20240808.gz",
    "usdm/ethusdt_20240808.gz",
    "cm/btcusd_perp_20240808.gz",
    "cm/btcusd_perp_20240809.gz",
]
SYMBOL = {"btcusdt": "BTCUSDT", "ethusdt": "ETHUSDT", "btcusd": "BTCUSD_PERP"}
_STREAM_RE = re.compile(rb'^(\d+) \{"stream":"([a-z_]+)@([A-Za-z]+)')


def path(name: str) -> Path:
    return data_file(f"binance_l2_trades_2024-08-08/{name}")


@cache
def raw(name: str) -> dict[str, list[tuple[int, bytes]]]:
    """Lines of a file by stream kind ('trade', 'bookTicker', 'depth', 'snapshot'), by regex."""
    out: dict[str, list[tuple[int, bytes]]] = {"trade": [], "bookTicker": [], "depth": [], "snapshot": []}
    with gzip.open(path(name), "rb") as fh:
        for line in fh:
            m = _STREAM_RE.match(line)
            if m:
                out[m.group(3).decode()].append((int(m.group(1)), line))
            elif b'{"lastUpdateId"' in line:
                out["snapshot"].append((int(line.split(b" ")[0]), line))
            else:  # pragma: no cover - the files hold nothing else
                raise AssertionError(line[:80])
    return out


@cache
def load(name: str, stream: str) -> pl.DataFrame:
    return read_binance(path(name), stream=stream)


def data_of(line: bytes) -> dict:
    return json.loads(line.split(b" ", 1)[1])


@pytest.mark.parametrize("name", FILES)
def test_counts_and_columns_of_every_stream(name: str) -> None:
    lines = raw(name)
    sym = SYMBOL[name.split("/")[1].split("_")[0]]
    futures = not name.startswith("spot")
    trades = load(name, "trades")
    assert trades.height == len(lines["trade"]) > 1000
    assert trades.columns == ["ts", "symbol", "price", "size", "side", "trade_id", "ts_event"]
    quotes = load(name, "quotes")
    assert quotes.height == len(lines["bookTicker"]) > 10_000
    assert ("ts_event" in quotes.columns) == futures  # spot bookTicker has no venue time
    depth = load(name, "depth")
    levels = sum(max(1, len(d["data"]["b"]) + len(d["data"]["a"])) for d in map(data_of, (x[1] for x in lines["depth"])))
    assert depth.height == levels
    assert depth["update_id"].n_unique() == len(lines["depth"]) > 3000
    assert ("prev_update_id" in depth.columns) == futures
    assert depth["ts"].dtype == TS and depth["ts_event"].null_count() == 0
    for frame in (trades, quotes, depth):
        assert frame["symbol"].unique().to_list() == [sym]
    # receive times in file order: one per message, taken from the line's first field
    assert trades["ts"].to_physical().to_list() == [t for t, _ in lines["trade"]]
    assert quotes["ts"].to_physical().to_list() == [t for t, _ in lines["bookTicker"]]
    per_msg = depth.group_by("update_id", maintain_order=True).agg(pl.col("ts").first())
    assert per_msg["ts"].to_physical().to_list() == [t for t, _ in lines["depth"]]


@pytest.mark.parametrize("name", FILES)
def test_snapshot(name: str) -> None:
    lines = raw(name)["snapshot"]
    if not lines:
        with pytest.raises(DataError, match=r"no depth snapshot line .* pass it too"):
            read_binance(path(name), stream="snapshot")
        return
    (ts, line), = lines
    snap = data_of(line)
    frame = load(name, "snapshot")
    assert frame.height == len(snap["bids"]) + len(snap["asks"]) == 2000
    assert frame["update_id"].unique().to_list() == frame["first_update_id"].unique().to_list() == [snap["lastUpdateId"]]
    assert frame["ts"].to_physical().unique().to_list() == [ts]
    assert frame["side"].to_list() == [1] * len(snap["bids"]) + [-1] * len(snap["asks"])
    assert frame["price"].to_list() == [float(p) for p, _ in snap["bids"] + snap["asks"]]
    assert frame["size"].to_list() == [float(q) for _, q in snap["bids"] + snap["asks"]]
    assert frame["symbol"].unique().to_list() == [SYMBOL[name.split("/")[1].split("_")[0]]]
    assert ("ts_event" in frame.columns) == ("E" in snap)
    if "E" in snap:
        assert frame["ts_event"].to_physical()[0] == snap["E"] * 1_000_000


def test_trade_fields_side_and_times() -> None:
    name = "usdm/btcusdt_20240808.gz"
    trades = load(name, "trades")
    msgs = [data_of(line)["data"] for _, line in raw(name)["trade"]]
    assert trades["side"].to_list() == [-1 if d["m"] else 1 for d in msgs]
    assert set(trades["side"].unique()) == {-1, 1}
    assert trades["price"].to_list() == [float(d["p"]) for d in msgs]
    assert trades["size"].to_list() == [float(d["q"]) for d in msgs]
    assert trades["trade_id"].to_list() == [d["t"] for d in msgs]
    assert trades["ts_event"].to_physical().to_list() == [d["T"] * 1_000_000 for d in msgs]
    first = trades.row(0, named=True)
    assert str(first["ts"]) == "2024-08-08 23:54:15.088176+00:00"  # 1723161255088176367 ns
    assert trades["ts"].to_physical()[0] == 1723161255088176367


def test_quote_and_depth_fields() -> None:
    name = "cm/btcusd_perp_20240808.gz"
    quotes = load(name, "quotes")
    msgs = [data_of(line)["data"] for _, line in raw(name)["bookTicker"]]
    assert quotes["update_id"].to_list() == [d["u"] for d in msgs]
    assert quotes["bid_size"].to_list() == [float(d["B"]) for d in msgs]
    assert quotes["ask_price"].to_list() == [float(d["a"]) for d in msgs]
    assert quotes["ts_event"].to_physical().to_list() == [d["T"] * 1_000_000 for d in msgs]
    depth = load(name, "depth")
    first = data_of(raw(name)["depth"][0][1])["data"]
    head = depth.head(len(first["b"]) + len(first["a"]))
    assert head["price"].to_list() == [float(p) for p, _ in first["b"] + first["a"]]
    assert head["side"].to_list() == [1] * len(first["b"]) + [-1] * len(first["a"])
    assert head.select("update_id", "first_update_id", "prev_update_id").unique().rows() == [
        (first["u"], first["U"], first["pu"])
    ]
    assert head["ts_event"].to_physical()[0] == first["E"] * 1_000_000


def test_files_are_read_in_the_given_order() -> None:
    names = ["spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"]
    both = read_binance([path(n) for n in names], stream="trades")
    assert both.equals(pl.concat([load(n, "trades") for n in names]))
    flipped = read_binance([str(path(n)) for n in reversed(names)], stream="trades")
    assert flipped.head(1).equals(load(names[1], "trades").head(1))
    snap = read_binance([path(n) for n in names], stream="snapshot")
    assert snap.equals(load(names[0], "snapshot"))


# -- small files written for the error paths --------------------------------------------------

TRADE = '{"stream":"abcusdt@trade","data":{"s":"ABCUSDT","t":7,"p":"1.50","q":"2.0","T":1000,"m":%s}}'
QUOTE = '{"stream":"abcusdt@bookTicker","data":{"u":5,"s":"ABCUSDT","b":"1.0","B":"2","a":"1.1","A":"3"}}'
DEPTH = '{"stream":"abcusdt@depth@100ms","data":{"E":2000,"s":"ABCUSDT","U":3,"u":4,"b":%s,"a":%s}}'
SNAP = '{"lastUpdateId":9,"bids":[["1.0","1"]],"asks":[["1.1","2"]]}'
NONE = "[]"
ZERO_BID = '[["1.0","0"]]'
SHORT = '[["1.0"]]'
ZERO_PRICE = '[["0","1"]]'


def write(tmp_path: Path, lines: list[str], *, name: str = "abcusdt_20240808.gz", compress: bool = True) -> Path:
    text = "".join(f"{line}\n" for line in lines).encode()
    p = tmp_path / name
    p.write_bytes(gzip.compress(text) if compress else text)
    return p


def test_small_file_plain_text_blank_lines_and_other_key_order(tmp_path: Path) -> None:
    lines = [
        f"100 {TRADE % 'false'}\r",
        "",
        f'200 {{"data":{json.dumps(json.loads(TRADE % "true")["data"])},"stream":"abcusdt@trade"}}',
        f"300  {QUOTE}\r",  # two blanks and a CRLF ending are tolerated
        "400 " + '{"stream":"abcusdt@aggTrade","data":{}}',
    ]
    p = write(tmp_path, lines, name="x.txt", compress=False)
    trades = read_binance(p, stream="trades")
    assert trades["side"].to_list() == [1, -1]
    assert trades["ts"].to_physical().to_list() == [100, 200]
    assert trades["ts_event"].to_physical().to_list() == [10**9, 10**9]
    quotes = read_binance(p, stream="quotes")
    assert quotes.columns == ["ts", "symbol", "bid_price", "ask_price", "bid_size", "ask_size", "update_id"]


def test_depth_without_levels_keeps_a_placeholder_row(tmp_path: Path) -> None:
    p = write(tmp_path, [f"1 {DEPTH % (NONE, NONE)}", f"2 {DEPTH % (ZERO_BID, NONE)}"])
    depth = read_binance(p, stream="depth")
    assert depth["side"].to_list() == [0, 1]
    assert depth["price"].to_list() == [None, 1.0]
    assert depth["size"].to_list() == [None, 0.0]


def test_snapshot_symbol_from_streams_or_file_name(tmp_path: Path) -> None:
    p = write(tmp_path, [f"5 {SNAP}", f"6 {QUOTE}"])
    assert read_binance(p, stream="snapshot")["symbol"].unique().to_list() == ["ABCUSDT"]
    other_order = '{"bids":[["1.0","1"]],"asks":[],"lastUpdateId":9,"symbol":"ABC_PERP"}'
    snap = read_binance(write(tmp_path, [f"5 {other_order}"], name="o.gz"), stream="snapshot")
    assert snap.rows() == [(snap["ts"][0], "ABC_PERP", 1, 1.0, 1.0, 9, 9)]
    q = write(tmp_path, [f"5 {SNAP}"], name="xyz_perp_20240808.gz")
    snap = read_binance(q, stream="snapshot")
    assert snap["symbol"].unique().to_list() == ["XYZ_PERP"]
    assert "ts_event" not in snap.columns


@pytest.mark.parametrize(
    ("lines", "stream", "match"),
    [
        ([f"1 {QUOTE}"], "trades", r"abcusdt_20240808\.gz has no trades messages .*it holds bookTicker"),
        ([f"1 {QUOTE}", f"2 {TRADE % 'true'}"[:-3]], "trades", r":2: the message is not valid JSON"),
        ([f"1 {QUOTE}", "garbage"], "quotes", r":2: not a '<ts> <json>' line; got garbage"),
        ([f"1 {QUOTE}", "2 [1, 2]"], "quotes", r":2: the JSON is neither a stream envelope"),
        ([f"1 {QUOTE}", '2 {"foo": 1}'], "quotes", r":2: the JSON is neither a stream envelope"),
        ([f"1 {QUOTE}", '{"foo": 1}'], "quotes", r":2: not a '<ts> <json>' line"),
        ([f"x1 {QUOTE}"], "quotes", r":1: the receive time is not an integer; got x1"),
        ([f"1 {TRADE % 'true'}".replace('"p":"1.50",', "")], "trades", r":1: the trades message lacks a valid 'p'"),
        ([f"1 {TRADE % '1'}"], "trades", r":1: the trades message lacks a valid 'm' field"),
        ([f"1 {TRADE % 'true'}", f"2 {TRADE % 'true'}".replace('"1.50"', '"abc"')], "trades",
         r":2: price must be a positive finite number written as a decimal string; got 'abc'"),
        ([f"1 {QUOTE}".replace('"B":"2"', '"B":"-2"')], "quotes", r":1: bid_size must be a finite number >= 0"),
        ([f"1 {DEPTH % (NONE, NONE)}".replace('"E":2000', '"E":"x"')], "depth", r":1: the venue time \(E or T\) must be integer ms; got 'x'"),
        ([f"1 {DEPTH % (SHORT, NONE)}"], "depth", r":1: the depth message lacks a valid 'b/a' field"),
        ([f"1 {DEPTH % (NONE, ZERO_PRICE)}"], "depth", r":1: price must be a positive finite number"),
        ([f"1 {DEPTH % (NONE, NONE)}".replace('"U":3,', "")], "depth", r":1: the depth message lacks a valid 'U'"),
        (['1 {"lastUpdateId":"x","bids":[],"asks":[]}'], "snapshot", r":1: the snapshot message lacks a valid 'lastUpdateId'"),
        ([f"1 {QUOTE}"], "snapshot", r"no depth snapshot line"),
    ],
)  # fmt: skip
def test_bad_files_raise_data_error(tmp_path: Path, lines: list[str], stream: str, match: str) -> None:
    p = write(tmp_path, lines)
    with pytest.raises(DataError, match=match):
        read_binance(p, stream=stream)


def test_unreadable_files_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot read Binance recording .*missing\.gz"):
        read_binance(tmp_path / "missing.gz", stream="trades")
    bad = tmp_path / "cut.gz"
    bad.write_bytes(gzip.compress(b"1 {}\n" * 100)[:-10])
    with pytest.raises(DataError, match=r"cut\.gz is not a valid gzip file .*truncated"):
        read_binance(bad, stream="trades")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"1 {\"stream\":\"caf\xe9@trade\"}\n")
    with pytest.raises(DataError, match=r"latin\.txt is not UTF-8 text"):
        read_binance(latin, stream="trades")
    with pytest.raises(ConfigError, match=r"stream='book' is not known; use one of trades, quotes, depth, snapshot"):
        read_binance(bad, stream="book")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"got no paths"):
        read_binance([], stream="trades")
    assert STREAMS == ("trades", "quotes", "depth", "snapshot")
