"""A local WebSocket server that replays recordings with Binance's protocol, and breaks on demand.

:class:`ReplayServer` plays raw Binance recordings (``<recv ns> <json>`` lines, see
:mod:`ntlab.data.loaders.binance`) or catalog frames to WebSocket clients exactly as the venue
would send them, and answers the venue's REST book and trade endpoints from the state the
replay has reached. :class:`Faults` injects the failures a live feed must survive: cut
connections, delays, duplicates, reordering, truncated and corrupted frames.

Conventions
-----------
* **One replay cursor** for the whole server, like the venue's clock: message ``cursor`` is the
  next one to go out. ``speed=None`` sends as fast as the sockets take it, and only while some
  connection is subscribed to a stream of the recording (otherwise the cursor waits, so a
  reconnecting client loses only what was in flight). ``speed=x`` sends message ``i`` at
  ``t0 + (ts_i - ts_0) / x`` (``t0``: the first such subscription), whoever is connected.
  :meth:`ReplayServer.pause` freezes the cursor (and the clock) until :meth:`~ReplayServer.resume`.
* Messages of several files are merged by receive time (file order for ties); the ``_20240809``
  file of a symbol continues its ``_20240808`` file.
* ``ws://HOST:PORT/stream`` sends the recorded combined envelope ``{"stream":..,"data":..}``
  byte for byte; ``/ws`` sends the raw payload (the ``data`` object's recorded bytes). Both take
  Binance's ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` /
  ``GET_PROPERTY`` requests and ``/stream?streams=a/b`` or ``/ws/a/b`` at connect.
* REST on the same port (plain HTTP GET): ``/api/v3`` (spot), ``/fapi/v1`` (USD-M) and
  ``/dapi/v1`` (COIN-M) ``depth``, ``historicalTrades`` and ``ping``, answered from what has been
  broadcast so far (never a future trade or diff); ``/ntlab/stats`` and ``/ntlab/send_times``.
* Catalog frames (:meth:`ReplayServer.from_frames`) are sent in ntlab's generic format:
  ``{"stream":"es@bar","data":{"e":"bar","s":"ES","t":<ts ns>,"o":..,"h":..,"l":..,"c":..,"v":..}}``
  per bar and ``{"stream":"es@tick","data":{"e":"tick","s":"ES","i":<row>,"t":<ts ns>,"p":..,"q":..}}``
  per trade tick (no ``"v"`` without a volume column), numbers written with ``repr(float)``.
* The server runs its own asyncio loop in a daemon thread; every public method may be called
  from any other thread.

Example
-------
>>> from ntlab.live.replay_server import Faults
>>> Faults(drop_after=1000, duplicate_prob=0.01)
Faults(drop_after=1000, duplicate_prob=0.01, seed=0)

A server (not run here)::

    with ReplayServer(data_file("binance_l2_trades_2024-08-08/spot/btcusdt_20240808.gz")) as srv:
        ws = websockets.sync.client.connect(srv.url + "/stream?streams=btcusdt@trade")
        first = ws.recv()
"""

from __future__ import annotations

import asyncio
import gzip
import http
import json
import logging
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from itertools import compress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import numpy as np
import polars as pl
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from ntlab.data.orderbook import BookStatus, OrderBook
from ntlab.exceptions import ConfigError, DataError, NtlabError
from ntlab.live._serving import ThreadedServer

__all__ = ["Faults", "ReplayServer"]

_log = logging.getLogger(__name__)

_STREAM_PREFIX = b'{"stream":"'
_DATA_KEY = b'","data":'
_STREAM_NAME = re.compile(r"[A-Za-z0-9_.!\-]+@[A-Za-z0-9_@!]+")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_VENUES = {"api/v3": "spot", "fapi/v1": "usdm", "dapi/v1": "cm"}
_RUN = 512  # messages per run in the fast path (one write per connection per run)
_FAULT_RUN = 64
_WRITE_LIMIT = 1 << 18  # bytes buffered per connection before the replay waits for it
_K_OTHER, _K_TRADE, _K_DEPTH = 0, 1, 2
_MISSING = object()


# ---------------------------------------------------------------------------------------------
# faults


def _probability(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value!r} must be a probability in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class Faults:
    """Failures injected per connection into the data messages (never into request replies).

    Parameters
    ----------
    drop_after
        Abort the connection's transport (no close frame, like a cut cable) after every
        ``drop_after`` data frames sent on it; ``None``: never.
    drop_prob
        Probability of aborting the connection before a message.
    delay_prob, delay_ms
        Probability of sleeping ``delay_ms`` milliseconds before a message (the whole replay
        waits: one cursor).
    duplicate_prob
        Probability of sending a message twice.
    reorder_prob
        Probability of holding a message back and sending it right after the connection's next.
    truncate_prob
        Probability of sending a strict prefix (1 to len - 1 bytes) of a message.
    corrupt_prob
        Probability of replacing one randomly chosen ``"`` of a message by ``#`` (never valid
        JSON: Binance strings hold no escaped quotes).
    seed
        Seed of the one random generator of the server's faults (``None``: from the OS).

    Every injected fault is counted in ``ReplayServer.stats["faults"]``.

    >>> Faults(drop_prob=1.5)
    Traceback (most recent call last):
    ...
    ntlab.exceptions.ConfigError: drop_prob=1.5 must be a probability in [0, 1]
    """

    drop_after: int | None = None
    drop_prob: float = 0.0
    delay_prob: float = 0.0
    delay_ms: float = 5.0
    duplicate_prob: float = 0.0
    reorder_prob: float = 0.0
    truncate_prob: float = 0.0
    corrupt_prob: float = 0.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        d = self.drop_after
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ConfigError(f"drop_after={d!r} must be a number of messages >= 1, or None for never")
        for name in ("drop_prob", "delay_prob", "duplicate_prob", "reorder_prob", "truncate_prob", "corrupt_prob"):
            _probability(name, getattr(self, name))
        ms = self.delay_ms
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0.0 <= ms < 60_000.0:
            raise ConfigError(f"delay_ms={ms!r} must be milliseconds in [0, 60000)")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed={self.seed!r} must be an int, or None for a random seed")

    @property
    def active(self) -> bool:
        """True when some fault can fire."""
        return self.drop_after is not None or any(
            getattr(self, n) > 0 for n in ("drop_prob", "delay_prob", "duplicate_prob", "reorder_prob", "truncate_prob", "corrupt_prob")
        )

    def __repr__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name == "seed" or getattr(self, f.name) != f.default]
        return f"Faults({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------
# the tape: messages in replay order, with their frames


def _header(n: int) -> bytes:
    """WebSocket header of an unmasked final text frame of ``n`` payload bytes."""
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def _payload(frame: bytes) -> bytes:
    """The payload of a frame made by :func:`_header` (inverse of ``_header(len(p)) + p``)."""
    n = frame[1]
    return frame[2:] if n < 126 else frame[4:] if n == 126 else frame[10:]


class _TradeMsg(msgspec.Struct):
    t: int
    p: str
    q: str
    T: int
    m: bool


_decode_trade = msgspec.json.Decoder(_TradeMsg).decode
_decode_any = msgspec.json.Decoder().decode


@dataclass
class _Trades:
    """Trades of one symbol in replay order: tape positions, ids and the REST fields."""

    pos: Any  # list[int] while loading, then int64 arrays
    ids: Any
    rows: list[_TradeMsg]


class _Book:
    """The book of one symbol, brought up to the cursor when a REST request asks for it."""

    def __init__(self, venue: str, symbol: str, snapshots: list[tuple[int, dict[str, Any]]], diffs: list[int]) -> None:
        self.venue, self.symbol = venue, symbol
        self.market = "spot" if venue == "spot" else "futures"
        self.book = OrderBook(symbol, market=self.market, capacity=8192)  # type: ignore[arg-type]
        self.texts: tuple[dict[float, str], dict[float, str]] = ({}, {})  # recorded text of each price, size
        # events in replay order: (position, 0 snapshot / 1 diff, payload); a snapshot at
        # position p is in force once the cursor reaches p, a diff at p once it was sent
        self.events = sorted([(p, 0, s) for p, s in snapshots[1:]] + [(p, 1, p) for p in diffs], key=lambda e: (e[0], e[1]))
        self.next = 0
        self._snapshot(snapshots[0][1])

    def _snapshot(self, snap: dict[str, Any]) -> None:
        self.snap = snap
        self.extra = {k: v for k, v in snap.items() if k not in ("lastUpdateId", "bids", "asks")}
        self.from_diffs = False
        bids, asks = snap.get("bids", []), snap.get("asks", [])
        self._remember(bids, asks)
        self.book.apply_snapshot(int(snap["lastUpdateId"]), [float(p) for p, _ in bids], [float(q) for _, q in bids],
                                 [float(p) for p, _ in asks], [float(q) for _, q in asks])  # fmt: skip

    def _remember(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        prices, sizes = self.texts
        for p, q in (*bids, *asks):
            prices.setdefault(float(p), p)
            sizes.setdefault(float(q), q)

    def catch_up(self, cursor: int, payloads: Callable[[int], bytes]) -> None:
        ev, i = self.events, self.next
        while i < len(ev) and (ev[i][0] < cursor or (ev[i][1] == 0 and ev[i][0] <= cursor)):
            pos, kind, item = ev[i]
            i += 1
            if kind == 0:
                self._snapshot(item)
                continue
            msg = _decode_any(payloads(pos))
            bids, asks = msg.get("b", []), msg.get("a", [])
            self._remember(bids, asks)
            status = self.book.apply_diff(int(msg["U"]), int(msg["u"]), msg.get("pu") if self.market == "futures" else None,
                                          [float(p) for p, _ in bids], [float(q) for _, q in bids],
                                          [float(p) for p, _ in asks], [float(q) for _, q in asks])  # fmt: skip
            if status is BookStatus.APPLIED:
                self.from_diffs = True
                for key in ("E", "T"):
                    if key in self.extra and key in msg:
                        self.extra[key] = msg[key]
        self.next = i

    def depth(self, limit: int) -> dict[str, Any]:
        out: dict[str, Any] = {"lastUpdateId": int(self.snap["lastUpdateId"])}
        if not self.from_diffs:
            out.update(self.extra)
            out["bids"], out["asks"] = self.snap.get("bids", [])[:limit], self.snap.get("asks", [])[:limit]
            return out
        out["lastUpdateId"] = self.book.update_id
        out.update(self.extra)
        lv = self.book.levels()
        side, price, size = lv["side"].to_numpy(), lv["price"].to_numpy(), lv["size"].to_numpy()
        prices, sizes = self.texts  # every level's text was seen in the snapshot or a diff
        for key, sign in (("bids", 1), ("asks", -1)):
            rows = np.flatnonzero(side == sign)[:limit]
            out[key] = [[prices[p], sizes[q]] for p, q in zip(price[rows].tolist(), size[rows].tolist(), strict=True)]
        return out


@dataclass
class _Tape:
    ts: np.ndarray  # int64 receive (or bar/tick) time per message, replay order
    sid: list[int]  # stream id per message
    streams: list[str]
    frames_combined: list[bytes]
    frames_raw: list[bytes]
    trade_ids: dict[int, int]  # tape position -> trade id (trades and ticks)
    books: dict[tuple[str, str], _Book]
    trades: dict[tuple[str, str], _Trades]

    @property
    def n(self) -> int:
        return len(self.sid)


def _read_lines(path: Path) -> list[bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read recording {str(path)!r}: {exc}; check the path") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is not a valid gzip file ({exc}); it may be truncated: copy it again") from exc
    lines = raw.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _split_envelope(body: bytes, where: str) -> tuple[str, bytes] | dict[str, Any]:
    """(stream name, raw payload bytes) of a combined envelope in any layout, or a snapshot."""
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise DataError(f"{where}: the message is not valid JSON ({exc}); fix or drop that line") from exc
    if isinstance(obj, dict) and "lastUpdateId" in obj:
        return obj
    if not (isinstance(obj, dict) and isinstance(obj.get("stream"), str) and "data" in obj):
        raise DataError(f"{where}: neither a stream envelope nor a depth snapshot; is this a Binance recording?")
    text = body.decode()
    at = re.search(r'"data"\s*:\s*', text)
    assert at is not None  # the key exists: json found it
    _, end = json.JSONDecoder().raw_decode(text, at.end())
    return obj["stream"], text[at.end() : end].encode()


def _load_recordings(paths: Sequence[Path]) -> _Tape:
    ts_l: list[int] = []
    names: list[str] = []
    combined: list[bytes] = []
    raw_l: list[bytes] = []
    snaps: list[tuple[int, str, dict[str, Any]]] = []  # (receive time, symbol, snapshot)
    for path in paths:
        file_symbol: str | None = None
        file_snaps: list[int] = []
        for lineno, line in enumerate(_read_lines(path), 1):
            line = line.rstrip(b"\r")
            if not line.strip():
                continue
            sp = line.find(b" ")
            head = line[:sp] if sp > 0 else b""
            if not head.isdigit():
                raise DataError(f"{path}:{lineno}: not a '<receive time ns> <json>' line; got {line[:80]!r}. Fix or drop that line")
            body = line[sp + 1 :]
            q = body.find(b'"', 11)
            if body.startswith(_STREAM_PREFIX) and body.startswith(_DATA_KEY, q) and body.endswith(b"}"):
                parts: tuple[str, bytes] | dict[str, Any] = (body[11:q].decode(), body[q + 9 : -1])  # the usual layout
            else:
                parts = _split_envelope(body, f"{path}:{lineno}")
            if isinstance(parts, dict):  # a REST snapshot: seeds the book, not broadcast
                file_snaps.append(len(snaps))
                snaps.append((int(head), "", parts))
                continue
            name, payload = parts
            file_symbol = file_symbol or name.partition("@")[0].upper()
            ts_l.append(int(head))
            names.append(name)
            combined.append(body)
            raw_l.append(payload)
        for k in file_snaps:  # COIN-M snapshots name their symbol; others are the file's
            t, _, snap = snaps[k]
            snaps[k] = (t, str(snap.get("symbol") or file_symbol or ""), snap)
    ts = np.asarray(ts_l, dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    # a snapshot goes where its receive time falls (after messages of equal time, as a file continues)
    snap_pos = [int(np.searchsorted(ts, t, side="right")) for t, *_ in snaps]
    return _build_tape(ts, [names[k] for k in order.tolist()], [combined[k] for k in order.tolist()],
                       [raw_l[k] for k in order.tolist()], snaps, snap_pos)  # fmt: skip


def _build_tape(ts: np.ndarray, names: list[str], combined: list[bytes], raw: list[bytes],
                snaps: list[tuple[int, str, dict[str, Any]]], snap_pos: list[int]) -> _Tape:  # fmt: skip
    streams = list(dict.fromkeys(names))
    index = {s: k for k, s in enumerate(streams)}
    sid = [index[s] for s in names]
    kinds = []
    for s in streams:
        kind = s.partition("@")[2]
        kinds.append(_K_TRADE if kind == "trade" else _K_DEPTH if kind == "depth" or kind.startswith("depth@") else _K_OTHER)
    # market of each symbol: futures messages carry "pu" (depth) or "X" (trade), futures snapshots "E"
    futures: dict[str, bool] = {}
    for pos, s in enumerate(sid):
        if kinds[s] == _K_OTHER:
            continue
        sym = streams[s].partition("@")[0].upper()
        fut = b'"pu":' in raw[pos] if kinds[s] == _K_DEPTH else b'"X":' in raw[pos]
        if futures.setdefault(sym, fut) != fut:
            raise ConfigError(f"{sym} comes from both spot and futures recordings; serve each market from its own ReplayServer")
    for _, sym, snap in snaps:
        futures[sym] = futures.get(sym, False) or "E" in snap

    def venue(sym: str) -> str:
        return ("cm" if "_" in sym else "usdm") if futures.get(sym) else "spot"

    trade_ids: dict[int, int] = {}
    trades: dict[tuple[str, str], _Trades] = {}
    diffs: dict[tuple[str, str], list[int]] = {}
    for pos, s in enumerate(sid):
        k = kinds[s]
        if k == _K_OTHER:
            continue
        sym = streams[s].partition("@")[0].upper()
        key = (venue(sym), sym)
        if k == _K_DEPTH:
            diffs.setdefault(key, []).append(pos)
            continue
        try:
            tr = _decode_trade(raw[pos])
        except msgspec.DecodeError as exc:
            raise DataError(f"trade message {raw[pos][:120]!r} of {streams[s]} lacks a field or holds a bad value ({exc})") from exc
        trade_ids[pos] = tr.t
        t = trades.setdefault(key, _Trades([], [], []))
        t.pos.append(pos)
        t.ids.append(tr.t)
        t.rows.append(tr)
    for t in trades.values():
        t.pos, t.ids = np.asarray(t.pos, dtype=np.int64), np.asarray(t.ids, dtype=np.int64)
    by_symbol: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for (_, sym, snap), p in zip(snaps, snap_pos, strict=True):
        by_symbol.setdefault((venue(sym), sym), []).append((p, snap))
    books = {key: _Book(key[0], key[1], s, diffs.get(key, [])) for key, s in by_symbol.items()}
    frames_c = [_header(len(b)) + b for b in combined]
    frames_r = [_header(len(b)) + b for b in raw]
    return _Tape(ts, sid, streams, frames_c, frames_r, trade_ids, books, trades)


def _floats(frame: pl.DataFrame, name: str, symbol: str) -> list[float]:
    """A column as floats; null and non-finite values cannot be sent (JSON has no NaN)."""
    col = frame[name]
    if not col.dtype.is_numeric():
        raise ConfigError(f"column {name} of {symbol!r} has dtype {col.dtype}; it must be numeric")
    col = col.cast(pl.Float64)
    ok = col.is_finite().fill_null(False)
    if not ok.all():
        row = int((~ok).arg_true()[0])
        raise DataError(f"{name} of {symbol!r} must be finite to be sent; row {row} holds {col[row]!r}")
    return col.to_list()


def _encode_generic(frame: pl.DataFrame, symbol: str) -> tuple[list[str], list[bytes], list[bytes], np.ndarray, bool]:
    """(stream per row, combined bytes, raw bytes, ts ns, is_ticks) of bars or trade ticks.

    The same bytes as :func:`ntlab.live.wire.encode_generic` (no ``"v"`` without a volume column).
    """
    cols = set(frame.columns)
    if "ts" not in cols or frame["ts"].null_count():
        raise ConfigError(f"frame of {symbol!r} needs a 'ts' column without nulls; give bars (ts, open, high, low, close[, volume]) "
                          f"or ticks (ts, price, size)")  # fmt: skip
    ts_col = frame["ts"]
    if isinstance(ts_col.dtype, pl.Datetime):
        ts_col = ts_col.dt.cast_time_unit("ns").to_physical()
    ts = ts_col.cast(pl.Int64).to_numpy()
    head = f'"s":{json.dumps(symbol.upper())},'
    if {"open", "high", "low", "close"} <= cols:
        stream = f"{symbol.lower()}@bar"
        o, h, lo, c = (_floats(frame, n, symbol) for n in ("open", "high", "low", "close"))
        vol = [f',"v":{v!r}' for v in _floats(frame, "volume", symbol)] if "volume" in cols else [""] * frame.height
        raw = [f'{{"e":"bar",{head}"t":{t},"o":{a!r},"h":{b!r},"l":{d!r},"c":{e!r}{v}}}'.encode()
               for t, a, b, d, e, v in zip(ts.tolist(), o, h, lo, c, vol, strict=True)]  # fmt: skip
        ticks = False
    elif {"price", "size"} <= cols:
        stream = f"{symbol.lower()}@tick"
        p, q = _floats(frame, "price", symbol), _floats(frame, "size", symbol)
        raw = [f'{{"e":"tick",{head}"i":{i},"t":{t},"p":{a!r},"q":{b!r}}}'.encode()
               for i, (t, a, b) in enumerate(zip(ts.tolist(), p, q, strict=True))]  # fmt: skip
        ticks = True
    else:
        raise ConfigError(f"frame of {symbol!r} has columns {frame.columns}; give bars (ts, open, high, low, close[, volume]) "
                          f"or ticks (ts, price, size)")  # fmt: skip
    env = f'{{"stream":"{stream}","data":'.encode()
    return [stream] * len(raw), [env + r + b"}" for r in raw], raw, ts, ticks


def _tape_from_frames(frames: Mapping[str, pl.DataFrame]) -> _Tape:
    if not isinstance(frames, Mapping) or not frames:
        raise ConfigError("from_frames needs a dict {symbol: frame} with at least one frame")
    names: list[str] = []
    combined: list[bytes] = []
    raw: list[bytes] = []
    ts_parts: list[np.ndarray] = []
    tick_rows: list[int] = []  # row number of each message, -1 for bars
    for symbol, frame in frames.items():
        if not isinstance(symbol, str) or not _STREAM_NAME.fullmatch(f"{symbol.lower()}@bar"):
            raise ConfigError(f"symbol {symbol!r} must be a non-empty name of letters, digits, '_', '-' or '.'")
        if not isinstance(frame, pl.DataFrame):
            raise ConfigError(f"frames[{symbol!r}] is a {type(frame).__name__}; give a Polars DataFrame")
        n, c, r, ts, ticks = _encode_generic(frame, symbol)
        names += n
        combined += c
        raw += r
        ts_parts.append(ts)
        tick_rows += list(range(len(r))) if ticks else [-1] * len(r)
    ts_all = np.concatenate(ts_parts) if ts_parts else np.zeros(0, np.int64)
    order = np.argsort(ts_all, kind="stable").tolist()
    tape = _build_tape(ts_all[order], [names[k] for k in order], [combined[k] for k in order], [raw[k] for k in order], [], [])
    tape.trade_ids = {pos: tick_rows[k] for pos, k in enumerate(order) if tick_rows[k] >= 0}
    return tape


# ---------------------------------------------------------------------------------------------
# connections


class _Client:
    """One WebSocket connection: its subscriptions and fault state."""

    __slots__ = ("alive", "all", "combined", "conn", "frames", "held", "sent", "subs", "transport", "wants")

    def __init__(self, conn: ServerConnection, combined: bool, tape: _Tape) -> None:
        self.conn = conn
        self.transport = conn.transport
        self.combined = combined
        self.frames = tape.frames_combined if combined else tape.frames_raw
        self.subs: dict[str, None] = {}
        self.wants = bytearray(len(tape.streams))
        self.all = False
        self.alive = True
        self.sent = 0  # data frames sent since the last drop_after cut
        self.held: bytes | None = None  # a frame held back by the reorder fault


def _error(code: int, msg: str, req_id: object) -> str:
    return json.dumps({"error": {"code": code, "msg": msg}, "id": req_id}, separators=(",", ":"))


def _json_response(status: int, body: object) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    phrase = http.HTTPStatus(status).phrase
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Connection", "close")])
    return Response(status, phrase, headers, data)


class _BadRequest(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _int_param(query: dict[str, list[str]], name: str, default: int | None, lo: int, hi: int) -> int | None:
    values = query.get(name)
    if not values or values[0] == "":
        return default
    text = values[0]
    if not re.fullmatch(r"-?[0-9]{1,20}", text):
        raise _BadRequest(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    value = int(text)
    if not lo <= value <= hi:
        raise _BadRequest(400, -1130, f"Data sent for parameter '{name}' is not valid (must be in {lo}..{hi}).")
    return value


def _quote_qty(p: str, q: str) -> str:
    try:
        d = Decimal(p) * Decimal(q)
    except InvalidOperation:  # pragma: no cover - checked when the trade was decoded
        return repr(float(p) * float(q))
    text = f"{d:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------------------------------------
# the server


class ReplayServer(ThreadedServer):
    """Replay Binance recordings (or catalog frames) over WebSocket, with the venue's REST book.

    Parameters
    ----------
    recordings
        A path or a list of paths of Binance recordings (``.gz`` or text); several symbols and
        consecutive files of one symbol may be mixed. Snapshot lines seed the books and are
        not broadcast.
    speed
        ``None``: as fast as the connections take it (the cursor waits while nobody is
        subscribed). A number > 0: times real time, from the first subscription on.
    faults
        :class:`Faults` applied to every connection's data messages, or ``None``.
    host, port
        Where to listen; ``port=0`` picks a free port (see :attr:`port`).
    ping_interval
        Seconds between keepalive pings to each client (``None``: none).
    record_send_times
        Keep ``time.monotonic_ns()`` right after each trade (or tick) frame was handed to a
        socket (first send of each), for :meth:`send_times`.

    Raises
    ------
    ConfigError
        A missing file, an empty list, a bad ``speed``/``ping_interval``/``faults``.
    DataError
        A file that is not a Binance recording (naming the file and line).

    Notes
    -----
    * Books: one per symbol with a recorded snapshot, ``market="spot"`` for spot recordings and
      ``"futures"`` for USD-M / COIN-M (told apart by the messages: ``pu``, ``X``, a snapshot's
      ``E``; one symbol cannot come from both). A REST request applies every diff broadcast
      since the last request (stale ones are skipped by :class:`~ntlab.data.orderbook.OrderBook`).
      Levels are served with their recorded text. After a sequence gap in the recording the
      book stays as it was before the gap. A later snapshot line replaces the book once the
      cursor reaches it.
    * A connection that reads slowly holds the replay back (the server waits for its buffer
      to drain, :data:`_WRITE_LIMIT` bytes), also with ``speed``.
    * Delay faults pause the whole replay (one cursor), not only one connection.
    * ``depth`` takes any ``limit`` in 1..5000 on every market (futures venues allow only a few
      values); ``historicalTrades`` without ``fromId`` gives the latest broadcast trades.
    """

    def __init__(
        self,
        recordings: str | Path | Sequence[str | Path],
        *,
        speed: float | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float | None = 20.0,
        record_send_times: bool = False,
    ) -> None:
        self._configure(speed, faults, host, port, ping_interval, record_send_times)
        paths = [recordings] if isinstance(recordings, (str, Path)) else list(recordings)
        if not paths:
            raise ConfigError("recordings is empty; give at least one Binance recording file")
        paths = [Path(p) for p in paths]
        for p in paths:
            if not p.is_file():
                raise ConfigError(f"no recording at {str(p)!r}; give the path of a Binance recording (.gz)")
        self._set_tape(_load_recordings(paths), [str(p) for p in paths])

    @classmethod
    def from_frames(
        cls,
        frames: Mapping[str, pl.DataFrame],
        *,
        speed: float | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float | None = 20.0,
        record_send_times: bool = False,
    ) -> ReplayServer:
        """A server replaying catalog bars or trade ticks ``{symbol: frame}`` in the generic format.

        Bars need ``ts, open, high, low, close`` (and ``volume``), ticks ``ts, price, size``;
        ``ts`` (datetime or int64 ns) paces the replay. Streams are ``<symbol lower>@bar`` and
        ``<symbol lower>@tick``. There is no REST book for these symbols.
        """
        self = cls.__new__(cls)
        self._configure(speed, faults, host, port, ping_interval, record_send_times)
        self._set_tape(_tape_from_frames(frames), [f"{s} ({f.height:,} rows)" for s, f in frames.items()])
        return self

    @classmethod
    def from_sources(cls, sources: Sequence[str | Path], **options: Any) -> ReplayServer:
        """Recordings when every source is a recording file; otherwise data set names of
        :mod:`ntlab.datasets` or Parquet files of bars or ticks (one stream per symbol).
        ``options`` are those of the constructor."""
        if isinstance(sources, (str, Path)):
            sources = [sources]
        if not sources:
            raise ConfigError("name at least one recording, data set or Parquet file to serve")
        for s in sources:
            p = Path(s)
            if not p.exists() and p.suffix not in ("", ".parquet"):
                raise ConfigError(f"no recording at {str(p)!r}; give the path of a Binance recording (.gz)")
        is_rec = [Path(s).is_file() and Path(s).suffix != ".parquet" for s in sources]
        if all(is_rec):
            return cls(list(sources), **options)
        if any(is_rec):
            raise ConfigError(f"{list(map(str, sources))} mixes Binance recordings and data sets/Parquet files; serve them separately")
        from ntlab.live.headless import replay_frame

        frames: dict[str, pl.DataFrame] = {}
        for source in sources:
            frame = replay_frame(str(source))
            if "symbol" in frame.columns:
                for sym in frame["symbol"].unique(maintain_order=True).to_list():
                    frames[str(sym)] = frame.filter(pl.col("symbol") == sym)
            else:
                frames[Path(str(source)).stem.upper()] = frame
        return cls.from_frames(frames, **options)

    # -- setup -----------------------------------------------------------------------------------
    def _configure(self, speed: float | None, faults: Faults | None, host: str, port: int, ping_interval: float | None,
                   record_send_times: bool) -> None:  # fmt: skip
        if speed is not None and (isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < float("inf")):
            raise ConfigError(f"speed={speed!r} must be a number > 0 (times real time), or None for as fast as possible")
        if faults is not None and not isinstance(faults, Faults):
            raise ConfigError(f"faults={faults!r} must be a Faults(...) or None")
        if ping_interval is not None and (isinstance(ping_interval, bool) or not isinstance(ping_interval, (int, float)) or ping_interval <= 0):
            raise ConfigError(f"ping_interval={ping_interval!r} must be seconds > 0, or None for no pings")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ConfigError(f"port={port!r} must be in 0..65535 (0: a free port)")
        self.speed = None if speed is None else float(speed)
        self.faults = faults
        self._faulty = faults is not None and faults.active
        self._rng = random.Random(faults.seed if faults is not None else 0)
        self.host = host
        self._port = port
        self.ping_interval = ping_interval
        self.record_send_times = bool(record_send_times)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._start_error: BaseException | None = None
        self._replay_error: BaseException | None = None
        self._stopped = False
        self._clients: set[_Client] = set()
        self._active: tuple[_Client, ...] = ()
        self._paused = False
        self._paused_at = 0.0
        self._t0: float | None = None
        self._counts = {"messages": 0, "bytes": 0, "connects": 0, "rest_requests": 0}
        self._faults = dict.fromkeys(("drops", "delays", "duplicates", "reorders", "truncations", "corruptions"), 0)

    def _set_tape(self, tape: _Tape, sources: list[str]) -> None:
        if not tape.n:
            raise DataError(f"{sources} hold no message to replay")
        self._tape = tape
        self.sources = sources
        self._cursor = 0
        self._rel = tape.ts - tape.ts[0]
        self._sent_ns = np.zeros(tape.n, np.int64) if self.record_send_times else None
        self._trade_pos = np.array(sorted(tape.trade_ids), dtype=np.int64)

    # -- properties ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` (add ``/stream`` or ``/ws``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self._port}"

    @property
    def rest_url(self) -> str:
        """``http://HOST:PORT``, the REST base (add ``/api/v3/depth?...``)."""
        return "http" + self.url[2:]

    @property
    def streams(self) -> list[str]:
        """Stream names of the replay, in order of first appearance."""
        return list(self._tape.streams)

    @property
    def total(self) -> int:
        """Number of messages of the replay."""
        return self._tape.n

    @property
    def finished(self) -> bool:
        """True once every message went out (connections stay open)."""
        return self._finished.is_set()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until the replay is finished (or ``timeout`` seconds); return :attr:`finished`."""
        return self._finished.wait(timeout)

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot: ``messages`` (data frames sent), ``bytes`` (their frame bytes),
        ``connections`` (open now), ``connects`` (in all), ``subscriptions`` (now, all
        connections), ``rest_requests``, ``cursor`` (next message), ``total``, ``finished``
        and ``faults`` (counts per kind)."""
        clients = list(self._clients)
        return {
            "messages": self._counts["messages"],
            "bytes": self._counts["bytes"],
            "connections": len(clients),
            "connects": self._counts["connects"],
            "subscriptions": sum(len(c.subs) for c in clients),
            "rest_requests": self._counts["rest_requests"],
            "cursor": self._cursor,
            "total": self._tape.n,
            "finished": self.finished,
            "faults": dict(self._faults),
        }

    def send_times(self) -> pl.DataFrame:
        """``stream``, ``trade_id``, ``sent_ns`` (``time.monotonic_ns`` right after the frame was
        handed to a socket) of every trade or tick sent so far, in replay order.

        Raises
        ------
        ConfigError
            The server was made without ``record_send_times=True``.
        """
        if self._sent_ns is None:
            raise ConfigError("send times are not recorded; create the server with record_send_times=True")
        pos = self._trade_pos
        sent = self._sent_ns[pos] if pos.size else np.zeros(0, np.int64)
        pos = pos[sent > 0]
        tape = self._tape
        return pl.DataFrame({
            "stream": pl.Series([tape.streams[tape.sid[p]] for p in pos.tolist()], dtype=pl.String),
            "trade_id": pl.Series([tape.trade_ids[p] for p in pos.tolist()], dtype=pl.Int64),
            "sent_ns": pl.Series(self._sent_ns[pos], dtype=pl.Int64),
        })  # fmt: skip

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> ReplayServer:
        """Start serving in a daemon thread; return once the socket is bound."""
        if self._stopped:
            raise NtlabError("this ReplayServer was stopped; create a new one to replay again")
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run_loop, name=f"ntlab-replay-server-{id(self):x}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._stopped = True
            raise ConfigError(f"cannot listen on {self.host}:{self._port}: {self._start_error}") from self._start_error
        return self

    def stop(self) -> None:
        """Close every connection and stop the server (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(self._stop_evt.set)
            except RuntimeError:  # pragma: no cover - the loop closed in between
                pass
            thread.join(timeout=15.0)

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "not started" if self._thread is None else "finished" if self.finished else "paused" if self._paused else "running"
        pace = "as fast as possible" if self.speed is None else f"{self.speed:g}x real time"
        faults = f", {self.faults!r}" if self._faulty else ""
        return (f"ReplayServer({self.url}, {state}, {self._tape.n:,} messages, {len(self._tape.streams)} streams, at {self._cursor:,}, "
                f"{pace}, {len(self._clients)} connections{faults})")  # fmt: skip

    # -- control from other threads -------------------------------------------------------------
    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the server's loop and wait for it (directly when not running)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or threading.current_thread() is thread:
            fn()
            return

        async def wrapped() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout=10.0)

    def pause(self) -> None:
        """Stop sending (connections stay open, pings go on) until :meth:`resume`. When this
        returns, the cursor no longer moves."""

        def do() -> None:
            if not self._paused:
                self._paused = True
                self._paused_at = time.monotonic()

        self._call(do)

    def resume(self) -> None:
        """Continue after :meth:`pause` (with ``speed``, the clock continues where it stopped)."""

        def do() -> None:
            if self._paused:
                self._paused = False
                if self._t0 is not None:
                    self._t0 += time.monotonic() - self._paused_at
                self._kick()

        self._call(do)

    def drop_all(self) -> None:
        """Abort every connection now (no close frame); counted as drops."""

        def do() -> None:
            for c in list(self._clients):
                self._abort(c)

        self._call(do)

    # -- the loop --------------------------------------------------------------------------------
    def _run_loop(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - a bug: make start() return
            self._start_error = self._start_error or exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_evt = asyncio.Event()
        self._wake = asyncio.Event()
        try:
            server = await serve(
                self._handle, self.host, self._port, process_request=self._process_request, compression=None,
                ping_interval=self.ping_interval, close_timeout=2.0, write_limit=_WRITE_LIMIT, max_size=1 << 16,
            )  # fmt: skip
        except OSError as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        task = asyncio.create_task(self._replay())
        task.add_done_callback(self._replay_done)
        try:
            await self._stop_evt.wait()
        finally:
            task.cancel()
            server.close()
            await server.wait_closed()

    def _replay_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover - a bug
            self._replay_error = task.exception()
            _log.error("replay failed", exc_info=self._replay_error)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _wait_kick(self, timeout: float | None = None) -> None:
        self._wake.clear()
        if timeout is None:
            await self._wake.wait()
        else:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _replay(self) -> None:
        n = self._tape.n
        while self._t0 is None:  # the first subscription starts the clock
            await self._wait_kick()
        speed, rel = self.speed, self._rel
        while self._cursor < n:
            if self._paused:
                await self._wait_kick()
                continue
            i = self._cursor
            if speed is None:
                if not self._active:
                    await self._wait_kick()
                    continue
                end = min(n, i + (_FAULT_RUN if self._faulty else _RUN))
            else:
                played = (time.monotonic() - self._t0) * speed * 1e9
                end = min(int(np.searchsorted(rel, played, side="right")), i + (_FAULT_RUN if self._faulty else 4 * _RUN))
                if end <= i:
                    await self._wait_kick(max(0.0, (float(rel[i]) - played) / speed / 1e9))
                    continue
            if self._faulty:
                await self._send_faulty(i, end)
            else:
                self._send_run(i, end)
                self._cursor = end
            for c in self._active:
                if c.alive and c.conn.paused:
                    try:
                        await c.conn.drain()
                    except Exception:  # noqa: BLE001,S110  # the connection is gone: its handler cleans up
                        pass
            await asyncio.sleep(0)
        for c in self._active:  # a frame still held back by the reorder fault
            if c.held is not None and c.alive:
                self._write(c, [c.held], 1)
                c.held = None
        self._finished.set()

    def _usable(self, c: _Client) -> bool:
        if c.alive and (c.conn.protocol.state is not State.OPEN or c.transport.is_closing()):
            c.alive = False
        return c.alive

    def _write(self, c: _Client, parts: list[bytes], count: int) -> None:
        data = b"".join(parts)
        c.transport.write(data)
        self._counts["messages"] += count
        self._counts["bytes"] += len(data)

    def _mark_sent(self, c: _Client, i: int, end: int) -> None:
        now = time.monotonic_ns()
        sent, tp = self._sent_ns, self._trade_pos
        assert sent is not None
        lo, hi = np.searchsorted(tp, [i, end])
        w, sid = c.wants, self._tape.sid
        for j in tp[lo:hi].tolist():
            if sent[j] == 0 and w[sid[j]]:
                sent[j] = now

    def _send_run(self, i: int, end: int) -> None:
        """Messages ``i:end`` to every subscribed connection, one write each (no faults)."""
        sid = self._tape.sid
        for c in self._active:
            if not self._usable(c):
                continue
            fr = c.frames
            if c.all:
                parts = fr[i:end]
            else:
                w = c.wants
                parts = list(compress(fr[i:end], [w[s] for s in sid[i:end]]))
            if parts:
                self._write(c, parts, len(parts))
                if self._sent_ns is not None:
                    self._mark_sent(c, i, end)

    async def _send_faulty(self, i: int, end: int) -> None:
        """Messages ``i:end`` one by one, through the fault switches of each connection."""
        f, rng, counts = self.faults, self._rng, self._faults
        assert f is not None
        sid = self._tape.sid
        for j in range(i, end):
            if self._paused or (self.speed is None and not self._active):
                return  # message j waits (a cut connection takes no more of the tape with it)
            s = sid[j]
            for c in self._active:
                if not c.wants[s] or not self._usable(c):
                    continue
                if f.drop_prob and rng.random() < f.drop_prob:
                    self._abort(c)
                    continue
                if f.delay_prob and rng.random() < f.delay_prob:
                    counts["delays"] += 1
                    await asyncio.sleep(f.delay_ms / 1000.0)
                    if not self._usable(c):
                        continue
                frame = c.frames[j]
                if f.truncate_prob and rng.random() < f.truncate_prob:
                    counts["truncations"] += 1
                    p = _payload(frame)
                    k = rng.randint(1, len(p) - 1) if len(p) > 1 else 0
                    while k > 1 and (p[k] & 0xC0) == 0x80:  # keep whole UTF-8 characters
                        k -= 1
                    frame = _header(k) + p[:k]
                if f.corrupt_prob and rng.random() < f.corrupt_prob:
                    p = _payload(frame)
                    quotes = [m.start() for m in re.finditer(b'"', p)]
                    if quotes:
                        counts["corruptions"] += 1
                        k = rng.choice(quotes)
                        frame = _header(len(p)) + p[:k] + b"#" + p[k + 1 :]
                out = [frame]
                if f.duplicate_prob and rng.random() < f.duplicate_prob:
                    counts["duplicates"] += 1
                    out.append(frame)
                if f.reorder_prob and c.held is None and rng.random() < f.reorder_prob:
                    counts["reorders"] += 1
                    c.held = b"".join(out)
                    continue
                if c.held is not None:
                    out.append(c.held)
                    c.held = None
                self._write(c, out, len(out))
                if self._sent_ns is not None:
                    self._mark_sent(c, j, j + 1)
                c.sent += len(out)
                if f.drop_after is not None and c.sent >= f.drop_after:
                    self._abort(c)
            self._cursor = j + 1

    def _abort(self, c: _Client) -> None:
        if c.alive:
            c.alive = False
            self._faults["drops"] += 1
            c.transport.abort()
        self._clients.discard(c)
        self._refresh()

    def _refresh(self) -> None:
        """Rebuild the tuple of connections that take data; start the clock on the first."""
        self._active = tuple(c for c in self._clients if c.alive and any(c.wants))
        if self._active and self._t0 is None:
            self._t0 = time.monotonic()
            if self._paused:
                self._paused_at = self._t0
        self._kick()

    # -- WebSocket side --------------------------------------------------------------------------
    def _subscribe(self, c: _Client, names: Sequence[str]) -> None:
        index = {s: k for k, s in enumerate(self._tape.streams)}
        for name in names:
            c.subs[name] = None
            k = index.get(name)
            if k is not None:
                c.wants[k] = 1
        c.all = all(c.wants)
        self._refresh()

    def _unsubscribe(self, c: _Client, names: Sequence[str]) -> None:
        index = {s: k for k, s in enumerate(self._tape.streams)}
        for name in names:
            c.subs.pop(name, None)
            k = index.get(name)
            if k is not None:
                c.wants[k] = 0
        c.all = all(c.wants)
        self._refresh()

    def _control(self, c: _Client, message: str | bytes) -> tuple[str, Callable[[], None] | None]:
        """The reply to one client request, and what to do once it is sent."""
        try:
            req = json.loads(message)
        except ValueError as exc:
            return _error(3, f"Invalid JSON: {exc}", None), None
        if not isinstance(req, dict):
            return _error(2, "Invalid request: expected a JSON object with method, params and id", None), None
        req_id = req.get("id", _MISSING)
        if req_id is _MISSING or not (req_id is None or (isinstance(req_id, int) and not isinstance(req_id, bool) and req_id >= 0)
                                      or (isinstance(req_id, str) and len(req_id) <= 36)):  # fmt: skip
            return _error(2, "Invalid request: request ID must be an unsigned integer", None), None
        method = req.get("method", _MISSING)
        if method is _MISSING:
            return _error(2, "Invalid request: missing field `method`", req_id), None
        if method not in _METHODS:
            expected = ", ".join(f"`{m}`" for m in _METHODS)
            return _error(2, f"Invalid request: unknown variant `{method}`, expected one of {expected}", req_id), None
        params = req.get("params", [])
        if not isinstance(params, list):
            return _error(2, "Invalid request: params must be a list", req_id), None
        ok = json.dumps({"result": None, "id": req_id}, separators=(",", ":"))
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            bad = [p for p in params if not (isinstance(p, str) and _STREAM_NAME.fullmatch(p))]
            if bad or not params:
                what = f"invalid stream name {bad[0]!r}" if bad else "params must list at least one stream"
                return _error(2, f"Invalid request: {what}", req_id), None
            if method == "UNSUBSCRIBE":
                self._unsubscribe(c, params)
                return ok, None
            return ok, lambda: self._subscribe(c, params)
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                return _error(2, "Invalid request: too many parameters", req_id), None
            return json.dumps({"result": list(c.subs), "id": req_id}, separators=(",", ":")), None
        expected_len = 2 if method == "SET_PROPERTY" else 1
        if len(params) != expected_len:
            return _error(2, f"Invalid request: {method} takes {expected_len} parameters", req_id), None
        if not isinstance(params[0], str):
            return _error(2, "Invalid request: property name must be a string", req_id), None
        if params[0] != "combined":
            return _error(0, "Unknown property", req_id), None
        if method == "GET_PROPERTY":
            return json.dumps({"result": c.combined, "id": req_id}, separators=(",", ":")), None
        if not isinstance(params[1], bool):
            return _error(1, "Invalid value type: expected Boolean", req_id), None

        def set_combined() -> None:
            c.combined = params[1]
            c.frames = self._tape.frames_combined if c.combined else self._tape.frames_raw

        return ok, set_combined

    async def _handle(self, conn: ServerConnection) -> None:
        url = urlsplit(conn.request.path if conn.request is not None else "/")
        combined = url.path.startswith("/stream")
        c = _Client(conn, combined, self._tape)
        self._clients.add(c)
        self._counts["connects"] += 1
        names = self._url_streams(url.path, url.query) or []
        if names:
            self._subscribe(c, names)
        try:
            async for message in conn:
                reply, then = self._control(c, message)
                await conn.send(reply)
                if then is not None:
                    then()
        except ConnectionClosed:
            pass
        finally:
            c.alive = False
            self._clients.discard(c)
            self._refresh()

    @staticmethod
    def _url_streams(path: str, query: str) -> list[str] | None:
        """Streams named in a WebSocket URL; None when the path is not one of ours."""
        if path in ("/stream", "/stream/"):
            values = parse_qs(query).get("streams")
            return [s for s in values[0].split("/") if s] if values else []
        if path == "/ws" or path.startswith("/ws/"):
            return [s for s in path[3:].split("/") if s]
        return None

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            names = self._url_streams(url.path, url.query)
            bad = [s for s in names or [] if not _STREAM_NAME.fullmatch(s)]
            if names is not None and not bad:
                return None  # the opening handshake goes on
        # websockets aborts the transport after a non-101 response: flush it all to the socket first
        conn.transport.set_write_buffer_limits(high=0, low=0)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if names is None:
                return _json_response(404, {"code": -1, "msg": f"no WebSocket endpoint {url.path}; use /stream or /ws"})
            return _json_response(400, {"code": -1, "msg": f"invalid stream name {bad[0]!r}"})
        self._counts["rest_requests"] += 1
        try:
            status, body = self._rest(url.path, parse_qs(url.query, keep_blank_values=True))
        except _BadRequest as exc:
            status, body = exc.status, {"code": exc.code, "msg": exc.msg}
        return _json_response(status, body)

    # -- REST side -------------------------------------------------------------------------------
    def _rest(self, path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        if path == "/ntlab/stats":
            return 200, self.stats
        if path == "/ntlab/send_times":
            if self._sent_ns is None:
                raise _BadRequest(400, -1, "send times are not recorded; start the server with record_send_times")
            st = self.send_times()
            return 200, {"stream": st["stream"].to_list(), "id": st["trade_id"].to_list(), "sent_ns": st["sent_ns"].to_list()}
        prefix, _, endpoint = path.strip("/").rpartition("/")
        venue = _VENUES.get(prefix)
        if venue is None or endpoint not in ("ping", "depth", "historicalTrades", "time"):
            raise _BadRequest(404, -1, f"no endpoint {path}; this replay serves /api/v3, /fapi/v1 and /dapi/v1 depth, historicalTrades, ping")
        if endpoint == "ping":
            return 200, {}
        if endpoint == "time":
            return 200, {"serverTime": int(self._tape.ts[max(0, self._cursor - 1)] // 1_000_000) if self._tape.n else 0}
        values = query.get("symbol")
        if not values or not values[0]:
            raise _BadRequest(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        key = (venue, values[0].upper())
        if endpoint == "depth":
            limit = _int_param(query, "limit", 100, 1, 5000)
            book = self._tape.books.get(key)
            if book is None:
                raise _BadRequest(400, -1121, "Invalid symbol.")
            book.catch_up(self._cursor, lambda pos: _payload(self._tape.frames_raw[pos]))
            return 200, book.depth(int(limit or 100))
        limit = _int_param(query, "limit", 500, 1, 1000)
        from_id = _int_param(query, "fromId", None, 0, 2**63 - 1)
        trades = self._tape.trades.get(key)
        if trades is None:
            raise _BadRequest(400, -1121, "Invalid symbol.")
        n = int(np.searchsorted(trades.pos, self._cursor))  # broadcast so far
        assert limit is not None
        if from_id is None:
            rows = range(max(0, n - limit), n)
        else:
            rows = np.flatnonzero(trades.ids[:n] >= from_id)[:limit].tolist()
        out = []
        for k in rows:
            t = trades.rows[k]
            item: dict[str, Any] = {"id": t.t, "price": t.p, "qty": t.q, "quoteQty": _quote_qty(t.p, t.q), "time": t.T, "isBuyerMaker": t.m}
            if venue == "spot":
                item["isBestMatch"] = True
            out.append(item)
        return 200, out
