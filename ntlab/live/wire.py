"""Decoding of WebSocket market-data frames: Binance streams and ntlab's generic format.

:class:`FrameDecoder` turns one received frame (``bytes`` or ``str``) into a typed record
(:class:`Trade`, :class:`Quote`, :class:`DepthDiff`, :class:`Bar`, :class:`Tick`) or a
:class:`Reply` to a subscription request, and counts what it could not use. It never
raises: a bad frame is counted under exactly one reason of :data:`REJECT_REASONS` and
``decode`` returns ``None``. Decoding uses typed ``msgspec`` structs (about 1-2 µs a trade).

Messages
--------
A combined-stream connection (``/stream?streams=...``, the default) sends envelopes
``{"stream": "<symbol>@<kind>", "data": {...}}``. The kind after the first ``@`` picks the
record:

======================================================  ========================================
kind                                                    record
======================================================  ========================================
``trade``                                               :class:`Trade` (``s t p q m T``)
``bookTicker``                                          :class:`Quote` (``s u b B a A [T]``)
``depth``, ``depth@{0,100,250,500}ms``                  :class:`DepthDiff` (``s E U u [pu] b a``)
``bar`` (generic)                                       :class:`Bar` (``s t o h l c [v]``)
``tick`` (generic)                                      :class:`Tick` (``s i t p q``)
anything else (``kline_1m``, ``depth5``, ``aggTrade``)  ``None``; ``ignored[kind] += 1``
======================================================  ========================================

Messages of ignored kinds are only checked to be JSON envelopes. ``{"result": .., "id": ..}``
and ``{"error": {..}, "id": ..}`` (and the bare error form ``{"code": <int>, "msg": <str>}``)
are :class:`Reply` objects. A raw connection (``/ws/<stream>``) sends the ``data`` part alone:
give its stream name as ``FrameDecoder(raw_stream=...)``; there, a frame that is not a valid
message of the stream but has the shape of a reply is a :class:`Reply`.

Conventions
-----------
* Binance sends prices and sizes as decimal strings; JSON numbers are accepted too. Ids
  and integers may also be written as strings (``"123"``). Extra keys are ignored.
* ``side`` is ``+1`` when the buyer was the aggressor (``m`` false), ``-1`` otherwise.
* ``ts_ms`` is the venue's millisecond time (trade ``T``, bookTicker ``T``, depth ``E``);
  generic ``ts`` is UTC nanoseconds (negative before 1970).
* Depth levels ``[["price", "size"], ...]`` become contiguous float64 arrays, bids from
  ``b`` and asks from ``a`` in the order sent; a size of 0 removes a level; an empty side
  is an empty array.
* Symbols are compared as the stream name's symbol upper-cased (``btcusdt`` -> ``BTCUSDT``)
  against the data's ``s``, which the records keep.

Rejects
-------
================  ===========================================================================
reason            the frame...
================  ===========================================================================
not_json          is not UTF-8 JSON text: invalid UTF-8, a syntax error, a truncated frame,
                  a lone UTF-16 surrogate escape, nesting deeper than the parser allows, or
                  an object that is neither ``bytes`` nor ``str``
not_a_message     is JSON but not a message: not an object, an object without ``stream`` and
                  ``data`` (combined mode) that is no reply, a ``stream`` that is no string
unknown_stream    names a stream without ``@``, with an empty symbol or an empty kind
bad_field         lacks a field of its kind or holds a value that cannot be read as the
                  field's type (a price that is no number, an id that is no integer, ``data``
                  that is no object, levels that are no list, a reply ``id`` of another type)
bad_value         holds a readable value out of range: a trade's or tick's price or size that
                  is not finite and > 0; a quote's, depth level's or bar's price not finite
                  and > 0 or size not finite and >= 0; an id or venue time < 0 or beyond
                  int64; a number too large for a double; ``U > u``; a level that is not a
                  ``[price, size]`` pair
symbol_mismatch   is a valid message whose ``s`` differs from its stream's symbol upper-cased
================  ===========================================================================

The checks run in that order: JSON, message shape, stream name, then the fields in document
order (``bad_field`` or ``bad_value``, the first fault found), ``U > u``, and the symbol.

Example
-------
>>> from ntlab.live.wire import FrameDecoder
>>> dec = FrameDecoder()
>>> dec.decode(b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,'
...            b'"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000",'
...            b'"T":1723161255342,"m":true,"M":true}}')
Trade(symbol='BTCUSDT', trade_id=3735683259, price=61837.63, qty=0.02, side=-1, ts_ms=1723161255342)
>>> dec.decode(b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT"')
>>> dec.accepted, dec.rejected, dec.last_error[:36]
(1, 1, 'not_json: JSON is malformed or trunc')
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import msgspec
import numpy as np
import polars as pl

from ntlab.data.schemas import check_symbol
from ntlab.exceptions import ConfigError, DataError

__all__ = [
    "REJECT_REASONS",
    "Bar",
    "DepthDiff",
    "DepthSnapshot",
    "FrameDecoder",
    "Quote",
    "Reply",
    "Tick",
    "Trade",
    "decode_rest_trades",
    "decode_snapshot",
    "encode_generic",
]

REJECT_REASONS: tuple[str, ...] = (
    "not_json",
    "not_a_message",
    "unknown_stream",
    "bad_field",
    "bad_value",
    "symbol_mismatch",
)

# ---------------------------------------------------------------------------- public records


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One trade: ``side`` +1 when the buyer was the aggressor, -1 when the seller was."""

    symbol: str
    trade_id: int
    price: float
    qty: float
    side: int
    ts_ms: int


class Quote(msgspec.Struct, frozen=True, gc=False):
    """Best bid and offer (``bookTicker``); ``ts_ms`` is ``None`` where the venue sends no time."""

    symbol: str
    update_id: int
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    ts_ms: int | None


class DepthDiff(msgspec.Struct, frozen=True, eq=False):
    """A diff-depth update: level prices and new total sizes (0 removes the level).

    ``prev_id`` is the futures ``pu`` (``None`` on spot). Arrays are contiguous float64.
    """

    symbol: str
    first_id: int
    last_id: int
    prev_id: int | None
    ts_ms: int
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray


class Bar(msgspec.Struct, frozen=True, gc=False):
    """A generic-format bar; ``ts`` (UTC ns) is its open time; ``volume`` NaN when not sent."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class Tick(msgspec.Struct, frozen=True, gc=False):
    """A generic-format trade tick; ``seq`` is its row number in the replayed frame."""

    symbol: str
    seq: int
    ts: int
    price: float
    size: float


class Reply(msgspec.Struct, frozen=True):
    """The venue's answer to a request (SUBSCRIBE...): ``error`` is ``None`` on success."""

    id: int | str | None
    result: Any
    error: dict | None


class DepthSnapshot(msgspec.Struct, frozen=True, eq=False):
    """A full book from a REST depth request, valid as of update id ``last_id``."""

    symbol: str
    last_id: int
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray


# ------------------------------------------------------------------------- wire structs

_MAX = 1.7976931348623157e308  # largest double: le=_MAX rejects inf; gt=0 rejects NaN
_Pos = Annotated[float, msgspec.Meta(gt=0.0, le=_MAX)]
_NonNeg = Annotated[float, msgspec.Meta(ge=0.0, le=_MAX)]
_Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Level = tuple[_Pos, _NonNeg]


class _TradeData(msgspec.Struct, gc=False):
    s: str
    t: _Id
    p: _Pos
    q: _Pos
    m: bool
    T: _Id


class _QuoteData(msgspec.Struct, gc=False):
    s: str
    u: _Id
    b: _Pos
    B: _NonNeg
    a: _Pos
    A: _NonNeg
    T: _Id | None = None


class _DepthData(msgspec.Struct):
    s: str
    E: _Id
    U: _Id
    u: _Id
    b: list[_Level]
    a: list[_Level]
    pu: _Id | None = None


class _BarData(msgspec.Struct, gc=False):
    s: str
    t: _I64
    o: _Pos
    h: _Pos
    l: _Pos
    c: _Pos
    v: _NonNeg = math.nan


class _TickData(msgspec.Struct, gc=False):
    s: str
    i: _Id
    t: _I64
    p: _Pos
    q: _Pos


class _Snapshot(msgspec.Struct):
    lastUpdateId: _Id
    bids: list[_Level]
    asks: list[_Level]
    symbol: str | None = None


class _RestTrade(msgspec.Struct, gc=False):
    id: _Id
    price: _Pos
    qty: _Pos
    time: _Id
    isBuyerMaker: bool


_DECODERS: dict[tuple[Any, bool], Any] = {}


def _decoder(data_type: Any, *, raw: bool) -> Any:
    """The (cached) ``decode`` of ``data_type`` alone or in a combined-stream envelope."""
    key = (data_type, raw)
    if key not in _DECODERS:
        typ = data_type if raw else msgspec.defstruct("_Env", [("stream", str), ("data", data_type)])
        _DECODERS[key] = msgspec.json.Decoder(typ, strict=False).decode
    return _DECODERS[key]


_ANY = msgspec.json.Decoder(float_hook=float)  # float_hook: 1e400 is JSON (inf), not an error
_EMPTY = np.empty(0, dtype=np.float64)  # shared by empty book sides: nothing to write into
_CONSTRAINT = re.compile(r"Expected `(?:float|int)` [<>]")
_LEVEL_AT = re.compile(r"at `\$(?:\.data)?\.(?:b|a|bids|asks)\[\d+\]`$")
_ROUTE_CACHE = 1024  # stream names remembered per decoder (fast path); others decode slower


def _fault(exc: msgspec.ValidationError) -> tuple[str, str]:
    """The reason of a typed-decoding error of valid JSON: ``bad_value`` or ``bad_field``."""
    msg = str(exc)
    if msg.startswith("Number out of range") or _CONSTRAINT.match(msg):
        return "bad_value", msg
    if _LEVEL_AT.search(msg):
        return "bad_value", f"a depth level must be a [price, size] pair: {msg}"
    return "bad_field", msg


def _levels(levels: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    if not levels:
        return _EMPTY, _EMPTY
    p, q = zip(*levels, strict=True)
    return np.fromiter(p, np.float64, len(p)), np.fromiter(q, np.float64, len(q))


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


class _Ignored(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


class _Reroute(Exception):
    """A fast-path guess was wrong (duplicate ``stream`` keys); decode the slow way."""


def _reply_id(rid: object) -> int | str | None:
    if rid is None or (rid.__class__ is not bool and isinstance(rid, (int, str))):
        return rid  # type: ignore[return-value]
    raise _Reject("bad_field", f"a reply id must be an integer, a string or null, not {rid!r:.40}")


def _reply(obj: dict) -> Reply | None:
    """A :class:`Reply` if ``obj`` has the shape of one, else ``None``; bad types reject."""
    if "id" in obj and ("result" in obj or "error" in obj):
        rid, error = _reply_id(obj["id"]), obj.get("error")
        if error is not None and not isinstance(error, dict):
            raise _Reject("bad_field", f"a reply error must be an object or null, not {error!r:.40}")
        return Reply(rid, obj.get("result"), error)
    if type(obj.get("code")) is int and isinstance(obj.get("msg"), str):  # the bare error form
        return Reply(_reply_id(obj.get("id")), None, {k: v for k, v in obj.items() if k != "id"})
    return None


# ---------------------------------------------------------------------------------- routes


class _Route:
    """How the messages of one stream name are decoded (one per name, cached)."""

    __slots__ = ("decode", "raw", "stream", "sym")
    data_type: Any = None

    def __init__(self, stream: str, sym: str, *, raw: bool) -> None:
        self.stream = stream
        self.sym = sym
        self.raw = raw
        self.decode = _decoder(self.data_type, raw=raw)

    def data(self, frame: bytes | str) -> Any:
        env = self.decode(frame)
        if self.raw:
            d = env
        else:
            if env.stream != self.stream:
                raise _Reroute
            d = env.data
        if d.s != self.sym:
            raise _Reject("symbol_mismatch", f"stream {self.stream!r} carries s={d.s!r}")
        return d


class _TradeRoute(_Route):
    __slots__ = ()
    data_type = _TradeData

    def run(self, frame: bytes | str) -> Trade:
        d = self.data(frame)
        return Trade(d.s, d.t, d.p, d.q, -1 if d.m else 1, d.T)


class _QuoteRoute(_Route):
    __slots__ = ()
    data_type = _QuoteData

    def run(self, frame: bytes | str) -> Quote:
        d = self.data(frame)
        return Quote(d.s, d.u, d.b, d.B, d.a, d.A, d.T)


class _DepthRoute(_Route):
    __slots__ = ()
    data_type = _DepthData

    def data(self, frame: bytes | str) -> Any:
        env = self.decode(frame)
        if self.raw:
            d = env
        else:
            if env.stream != self.stream:
                raise _Reroute
            d = env.data
        if d.U > d.u:
            raise _Reject("bad_value", f"first update id U={d.U} exceeds last update id u={d.u}")
        if d.s != self.sym:
            raise _Reject("symbol_mismatch", f"stream {self.stream!r} carries s={d.s!r}")
        return d

    def run(self, frame: bytes | str) -> DepthDiff:
        d = self.data(frame)
        b, a = d.b, d.a
        if not (b and a):
            bp, bs = _levels(b)
            ap, as_ = _levels(a)
            return DepthDiff(d.s, d.U, d.u, d.pu, d.E, bp, bs, ap, as_)
        p, q = zip(*b, *a, strict=True)  # both sides at once; views of 2 arrays
        n, nb = len(p), len(b)
        pa, qa = np.fromiter(p, np.float64, n), np.fromiter(q, np.float64, n)
        return DepthDiff(d.s, d.U, d.u, d.pu, d.E, pa[:nb], qa[:nb], pa[nb:], qa[nb:])


class _BarRoute(_Route):
    __slots__ = ()
    data_type = _BarData

    def run(self, frame: bytes | str) -> Bar:
        d = self.data(frame)
        return Bar(d.s, d.t, d.o, d.h, d.l, d.c, d.v)


class _TickRoute(_Route):
    __slots__ = ()
    data_type = _TickData

    def run(self, frame: bytes | str) -> Tick:
        d = self.data(frame)
        return Tick(d.s, d.i, d.t, d.p, d.q)


class _IgnoreRoute(_Route):
    """A kind the client does not decode: counted once the frame is known to be a message."""

    __slots__ = ("kind",)
    data_type = msgspec.Raw

    def __init__(self, stream: str, sym: str, *, raw: bool) -> None:
        super().__init__(stream, sym, raw=raw)
        self.kind = stream.partition("@")[2]
        if raw:
            self.decode = _ANY.decode

    def run(self, frame: bytes | str) -> Reply:
        env = self.decode(frame)
        if self.raw:
            if not isinstance(env, dict):
                raise _Reject("not_a_message", f"a JSON {type(env).__name__} is not a message")
            reply = _reply(env)
            if reply is not None:
                return reply
        elif env.stream != self.stream:
            raise _Reroute
        raise _Ignored(self.kind)


_DEPTH_KINDS = ("depth", "depth@100ms", "depth@0ms", "depth@250ms", "depth@500ms")
_KINDS: dict[str, type[_Route]] = {
    "trade": _TradeRoute,
    "bookTicker": _QuoteRoute,
    **dict.fromkeys(_DEPTH_KINDS, _DepthRoute),
    "bar": _BarRoute,
    "tick": _TickRoute,
}


def _split_stream(stream: str) -> tuple[str, str]:
    sym, at, kind = stream.partition("@")
    if not at or not sym or not kind:
        what = "has no '@'" if not at else ("has an empty symbol" if not sym else "has an empty kind")
        raise _Reject("unknown_stream", f"stream name {stream!r:.60} {what}; expected '<symbol>@<kind>'")
    return sym, kind


def _excerpt(frame: object) -> str:
    if isinstance(frame, bytes):
        text = frame[:120].decode("utf-8", "backslashreplace")
        more = len(frame) > 120
    elif isinstance(frame, str):
        text, more = frame[:120], len(frame) > 120
    else:
        text, more = repr(frame)[:120], False
    return repr(text) + ("..." if more else "")


# ---------------------------------------------------------------------------------- decoder


class FrameDecoder:
    """Decodes frames one at a time; counts what it accepted and rejected (by reason).

    Parameters
    ----------
    raw_stream
        For a raw ``/ws/<stream>`` connection (payloads without envelope), the stream name
        of the connection, e.g. ``"btcusdt@trade"``. ``None`` (default): combined-stream
        envelopes ``{"stream": .., "data": ..}``.

    Attributes
    ----------
    accepted
        Frames decoded into a record or a :class:`Reply`.
    rejects
        Rejected frames by reason; every reason of :data:`REJECT_REASONS` is a key.
    ignored
        Valid messages of kinds this decoder does not decode, by kind (``"kline_1m"``).
    last_error
        The reason, what was wrong and an excerpt of the last rejected frame.
    """

    def __init__(self, *, raw_stream: str | None = None) -> None:
        self.accepted = 0
        self.rejects: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.ignored: dict[str, int] = {}
        self.last_error: str | None = None
        self.raw_stream = raw_stream
        self._routes: dict[bytes | str, _Route] = {}
        self._raw: _Route | None = None
        if raw_stream is not None:
            if not isinstance(raw_stream, str):
                msg = f"raw_stream={raw_stream!r} must be a stream name such as 'btcusdt@trade'"
                raise ConfigError(msg)
            try:
                self._raw = self._make_route(raw_stream, raw=True)
            except _Reject as rej:
                msg = f"raw_stream={raw_stream!r} is not a stream name: {rej.detail}"
                raise ConfigError(msg) from None

    @property
    def rejected(self) -> int:
        """All rejected frames (the sum of :attr:`rejects`)."""
        return sum(self.rejects.values())

    def __repr__(self) -> str:
        return (
            f"FrameDecoder(raw_stream={self.raw_stream!r}, accepted={self.accepted}, "
            f"rejected={self.rejected}, ignored={sum(self.ignored.values())})"
        )

    def decode(self, frame: bytes | str) -> Trade | Quote | DepthDiff | Bar | Tick | Reply | None:
        """Decode one frame; ``None`` when it is rejected or ignored (counted). Never raises."""
        try:
            cls = frame.__class__
            route = self._raw
            if cls is bytes:
                if not frame.isascii():
                    frame.decode()  # UnicodeDecodeError: not_json
                if route is None and frame.startswith(b'{"stream":"'):
                    route = self._routes.get(frame[11 : frame.find(b'"', 11)])
            elif cls is str:
                if route is None and frame.startswith('{"stream":"'):
                    route = self._routes.get(frame[11 : frame.find('"', 11)])
            elif isinstance(frame, (bytes, bytearray, memoryview)):
                return self.decode(bytes(frame))
            elif isinstance(frame, str):
                return self.decode(str(frame))
            else:
                raise _Reject("not_json", f"a frame must be bytes or str, not {cls.__name__}")
            if route is None:
                out = self._slow(frame, None)
            else:
                try:
                    out = route.run(frame)
                except msgspec.ValidationError as exc:
                    out = self._invalid(frame, exc, route)
                except _Reroute:
                    out = self._slow(frame, None)
        except _Reject as rej:
            return self._reject(rej.reason, rej.detail, frame)
        except _Ignored as ign:
            self.ignored[ign.kind] = self.ignored.get(ign.kind, 0) + 1
            return None
        except (msgspec.DecodeError, UnicodeError) as exc:
            return self._reject("not_json", f"JSON is malformed or truncated ({exc})", frame)
        except RecursionError:
            return self._reject("not_json", "JSON is nested deeper than the parser allows", frame)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - a bug: counted, never raised
            return self._reject("bad_field", f"unexpected {type(exc).__name__}: {exc}", frame)
        self.accepted += 1
        return out

    def _reject(self, reason: str, detail: str, frame: object) -> None:
        self.rejects[reason] += 1
        self.last_error = f"{reason}: {detail}; frame {_excerpt(frame)}"

    def _make_route(self, stream: str, *, raw: bool) -> _Route:
        sym, kind = _split_stream(stream)
        return _KINDS.get(kind, _IgnoreRoute)(stream, sym.upper(), raw=raw)

    def _invalid(self, frame: bytes | str, exc: msgspec.ValidationError, route: _Route) -> Any:
        """A typed decode failed: tell invalid JSON, other messages and field faults apart."""
        obj = _ANY.decode(frame)  # DecodeError: not_json
        if route.raw:
            if not isinstance(obj, dict):
                raise _Reject("not_a_message", f"a JSON {type(obj).__name__} is not a message")
            reply = _reply(obj)
            if reply is not None:
                return reply
        elif not (isinstance(obj, dict) and "data" in obj and obj.get("stream") == route.stream):
            return self._slow(frame, obj)
        raise _Reject(*_fault(exc))

    def _slow(self, frame: bytes | str, obj: Any) -> Any:
        """Combined mode, a frame the fast path did not recognise."""
        if obj is None:
            obj = _ANY.decode(frame)
        if not isinstance(obj, dict):
            raise _Reject("not_a_message", f"a JSON {type(obj).__name__} is not a message")
        if "stream" not in obj or "data" not in obj:
            reply = _reply(obj)
            if reply is not None:
                return reply
            raise _Reject("not_a_message", "an object without 'stream' and 'data' that is no reply")
        stream = obj["stream"]
        if not isinstance(stream, str):
            raise _Reject("not_a_message", f"'stream' must be a string, not {stream!r:.40}")
        route = self._make_route(stream, raw=False)
        if len(self._routes) < _ROUTE_CACHE:
            self._routes[stream] = route
            self._routes[stream.encode()] = route
        try:
            return route.run(frame)
        except msgspec.ValidationError as exc:
            raise _Reject(*_fault(exc)) from None


# ------------------------------------------------------------------------------------- REST


def _body(body: bytes | str, what: str) -> bytes | str:
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if isinstance(body, bytes):
        if not body.isascii():
            try:
                body.decode()
            except UnicodeDecodeError as exc:
                raise DataError(f"{what} is not UTF-8 text ({exc}); got {_excerpt(body)}") from None
        return body
    if isinstance(body, str):
        return body
    raise DataError(f"{what} must be the response body as bytes or str, not {type(body).__name__}")


def _rest_error(body: bytes | str, what: str, exc: Exception) -> DataError:
    """A DataError for a REST body: the venue's own error when it sent one."""
    try:
        obj = _ANY.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return DataError(f"{what} is not valid JSON ({exc}); got {_excerpt(body)}")
    if isinstance(obj, dict) and "code" in obj and "msg" in obj:
        return DataError(f"{what}: Binance answered error {obj['code']!r}: {obj['msg']!r}")
    return DataError(f"{what} is not as expected: {exc}; got {_excerpt(body)}")


_SNAPSHOT = msgspec.json.Decoder(_Snapshot, strict=False)
_REST_TRADES = msgspec.json.Decoder(list[_RestTrade], strict=False)


def decode_snapshot(body: bytes | str, symbol: str) -> DepthSnapshot:
    """Decode a REST depth snapshot (``/api/v3/depth``, ``/fapi/v1/depth``, ``/dapi/v1/depth``).

    ``symbol`` (upper-cased) names the book; a body whose own ``symbol`` field (COIN-M)
    differs is refused. Prices must be finite and > 0, sizes finite and >= 0.

    Raises
    ------
    DataError
        The body is not JSON, is a Binance error, lacks ``lastUpdateId``/``bids``/``asks``,
        holds a bad number or a level that is not a pair, or names another symbol.
    """
    sym = symbol.upper()
    what = f"depth snapshot of {sym}"
    body = _body(body, what)
    try:
        snap = _SNAPSHOT.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _rest_error(body, what, exc) from None
    if snap.symbol is not None and snap.symbol != sym:
        raise DataError(f"{what}: the body is the book of {snap.symbol!r}; ask for {sym!r}")
    bp, bs = _levels(snap.bids)
    ap, as_ = _levels(snap.asks)
    return DepthSnapshot(sym, snap.lastUpdateId, bp, bs, ap, as_)


def decode_rest_trades(body: bytes | str, symbol: str) -> list[Trade]:
    """Decode a REST ``historicalTrades`` (or ``trades``) response into :class:`Trade` records.

    ``side`` is -1 when ``isBuyerMaker`` is true, else +1; ``ts_ms`` is ``time``; ``symbol``
    is upper-cased. Prices and quantities must be finite and > 0, ids and times >= 0.

    Raises
    ------
    DataError
        The body is not JSON, is a Binance error, is not a list of trades, or a trade lacks a
        field or holds a bad value (the message gives its index, e.g. ``$[3].price``).
    """
    sym = symbol.upper()
    what = f"historical trades of {sym}"
    body = _body(body, what)
    try:
        rows = _REST_TRADES.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _rest_error(body, what, exc) from None
    return [Trade(sym, r.id, r.price, r.qty, -1 if r.isBuyerMaker else 1, r.time) for r in rows]


# ---------------------------------------------------------------------------- generic format

_BAR_COLS = ("open", "high", "low", "close")
_TICK_COLS = ("price", "size")


def _ts_ns(col: pl.Series) -> list[int]:
    dtype = col.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            msg = (
                "column ts is a naive datetime; say which time zone it is in, e.g. "
                "frame.with_columns(pl.col('ts').dt.replace_time_zone('UTC'))"
            )
            raise ConfigError(msg)
        return col.dt.cast_time_unit("ns").to_physical().to_list()
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=True).to_list()
    msg = f"column ts has dtype {dtype}; it must be a UTC Datetime (or integer ns since the epoch)"
    raise ConfigError(msg)


def _floats(frame: pl.DataFrame, name: str, *, positive: bool) -> list[float]:
    col = frame[name]
    if not col.dtype.is_numeric():
        msg = f"column {name} has dtype {col.dtype}; it must be numeric"
        raise ConfigError(msg)
    col = col.cast(pl.Float64)
    ok = col.is_finite() & ((col > 0.0) if positive else (col >= 0.0))
    ok = ok.fill_null(False)
    if not ok.all():
        row = int((~ok).arg_true()[0])
        need = "finite and > 0" if positive else "finite and >= 0"
        msg = f"{name} must be {need} to be sent; row {row} holds {col[row]!r}"
        raise DataError(msg)
    return col.to_list()


def encode_generic(frame: pl.DataFrame, symbol: str) -> list[bytes]:
    """Encode a frame of bars or trade ticks as generic-format messages, one per row.

    Bars (columns ``ts, open, high, low, close[, volume]``) become
    ``{"stream":"<symbol lower>@bar","data":{"e":"bar","s":"<SYMBOL>","t":<ts ns>,"o":..,
    "h":..,"l":..,"c":..,"v":..}}`` (no ``"v"`` without a volume column: decoded as NaN);
    trade ticks (``ts, price, size``) become ``{"stream":"<symbol lower>@tick","data":{"e":
    "tick","s":"<SYMBOL>","i":<row>,"t":<ts ns>,"p":..,"q":..}}``. Floats are written as their
    ``repr`` (they decode to the same double); ``ts`` as integer UTC nanoseconds. Other
    columns are not sent. :class:`FrameDecoder` decodes them into :class:`Bar` and
    :class:`Tick`.

    Raises
    ------
    ConfigError
        ``frame`` is neither bars nor ticks (or both), a column has a wrong dtype, ``ts`` is
        naive, ``symbol`` cannot name data or holds ``@``, or the frame's ``symbol`` column
        holds another symbol (filter the frame first).
    DataError
        A value the decoder would reject: null, not finite, a price <= 0, a size or volume
        < 0 (a tick size <= 0).
    """
    check_symbol(symbol)
    if "@" in symbol or symbol.lower().upper() != symbol.upper():
        msg = f"symbol={symbol!r} cannot name a stream (no '@'; lower/upper case must round-trip)"
        raise ConfigError(msg)
    if not isinstance(frame, pl.DataFrame):
        msg = f"frame must be a polars DataFrame of bars or trades, not {type(frame).__name__}"
        raise ConfigError(msg)
    cols = set(frame.columns)
    bars = "ts" in cols and cols.issuperset(_BAR_COLS)
    ticks = "ts" in cols and cols.issuperset(_TICK_COLS)
    if bars == ticks:
        what = "both bar and tick columns" if bars else f"columns {frame.columns}"
        msg = (
            f"encode_generic() needs bars (ts, open, high, low, close[, volume]) or trade ticks "
            f"(ts, price, size); the frame has {what}"
        )
        raise ConfigError(msg)
    sym = symbol.upper()
    if "symbol" in cols:
        others = [s for s in frame["symbol"].unique().to_list() if s is None or s.upper() != sym]
        if others:
            msg = (
                f"the frame's symbol column holds {others[:5]} besides {symbol!r}; filter it first: "
                f"frame.filter(pl.col('symbol') == {symbol!r})"
            )
            raise ConfigError(msg)
    if frame["ts"].null_count():
        row = int(frame["ts"].is_null().arg_true()[0])
        raise DataError(f"ts must not be null to be sent; row {row} is null")
    ts = _ts_ns(frame["ts"])
    enc = msgspec.json.encode
    kind = "bar" if bars else "tick"
    head = f'{{"stream":{enc(f"{symbol.lower()}@{kind}").decode()},"data":{{"e":"{kind}","s":{enc(sym).decode()},'
    if bars:
        o, h, lo, c = (_floats(frame, n, positive=True) for n in _BAR_COLS)
        if "volume" in cols:
            v = _floats(frame, "volume", positive=False)
            return [
                f'{head}"t":{t},"o":{a!r},"h":{b!r},"l":{d!r},"c":{e!r},"v":{f!r}}}}}'.encode()
                for t, a, b, d, e, f in zip(ts, o, h, lo, c, v, strict=True)
            ]
        return [
            f'{head}"t":{t},"o":{a!r},"h":{b!r},"l":{d!r},"c":{e!r}}}}}'.encode()
            for t, a, b, d, e in zip(ts, o, h, lo, c, strict=True)
        ]
    p = _floats(frame, "price", positive=True)
    q = _floats(frame, "size", positive=True)
    return [
        f'{head}"i":{i},"t":{t},"p":{a!r},"q":{b!r}}}}}'.encode()
        for i, (t, a, b) in enumerate(zip(ts, p, q, strict=True))
    ]
