"""Reader of raw Binance websocket recordings (hftbacktest's collector format).

A recording is a text file, gzip-compressed or not, holding one message per line::

    <local_recv_ts_ns> <json>

where ``<json>`` is a combined-stream envelope ``{"stream": "<sym>@<kind>", "data": {...}}``
or a REST depth snapshot ``{"lastUpdateId": ..., "bids": [[p, q], ...], "asks": [...]}``.
Spot, USD-M and COIN-M futures recordings share the format; futures messages carry more
fields (``pu``, ``T``...). :func:`read_binance` returns one stream as a frame of one of
ntlab's kinds (:mod:`ntlab.data.schemas`).

Conventions
-----------
* ``ts`` is the local receive time of the line (UTC nanoseconds); ``ts_event`` is the venue's
  millisecond time: trade ``T``, futures bookTicker ``T``, depth ``E`` (snapshots: ``E`` when
  the venue sends it, i.e. futures). A column whose values are all absent is left out (spot
  bookTicker has no venue time).
* Prices and sizes are decimal strings in the messages and are parsed to ``Float64``;
  the same text always gives the same double, so levels can be matched by equality.
* ``trades``: ``side`` is ``-1`` when ``m`` ("buyer is maker") is true: the aggressor sold;
  ``+1`` otherwise. ``trade_id`` is ``t``.
* ``quotes`` (``<sym>@bookTicker``): ``update_id`` is the book update id ``u``.
* ``depth`` (``<sym>@depth``, ``@depth@100ms``, ``@depth@0ms``...): one row per price level,
  bids (``side`` +1) then asks (-1) in the order sent, ``size`` 0 removes the level,
  ``update_id`` = ``u``, ``first_update_id`` = ``U`` and, for futures, ``prev_update_id`` =
  ``pu``. A message without any level is kept as one placeholder row with ``side`` 0 and null
  price and size, so that no update id disappears from the sequence.
* ``snapshot``: the REST snapshot lines as ``depth`` rows with
  ``update_id == first_update_id == lastUpdateId``. Its ``symbol`` is the message's
  ``symbol`` field (COIN-M) or else the symbol of the file's streams.
* Files are read in the order given and rows keep file order. Lines of other streams are
  not decoded (only their envelope is checked), so reading one stream stays fast.

Errors are :class:`~ntlab.exceptions.DataError` naming the file, the line number and the
offending value: an unreadable or non-gzip-conforming file, a line that is not
``<int> <json>``, a message of the stream that lacks a field or holds a bad number, a file
without any message of the stream (``trades``/``quotes``/``depth``) and files without any
snapshot (``snapshot``).

Example
-------
>>> from ntlab.data.paths import data_file
>>> from ntlab.data.loaders.binance import read_binance
>>> trades = read_binance(
...     data_file("binance_l2_trades_2024-08-08/spot/btcusdt_20240808.gz"), stream="trades")
>>> trades.columns
['ts', 'symbol', 'price', 'size', 'side', 'trade_id', 'ts_event']
>>> trades.row(0)[1:6]
('BTCUSDT', 61837.63, 0.02, -1, 3735683259)
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from ntlab.data.schemas import TS, conform
from ntlab.exceptions import ConfigError, DataError

__all__ = ["STREAMS", "read_binance"]

Stream = Literal["trades", "quotes", "depth", "snapshot"]
STREAMS: tuple[str, ...] = ("trades", "quotes", "depth", "snapshot")

_STREAM_PREFIX = '{"stream":"'
_SNAPSHOT_PREFIX = '{"lastUpdateId"'
_RAW_DECODE = json.JSONDecoder().raw_decode
_MS = 1_000_000
_KIND_NAME = {"trades": "trade", "quotes": "bookTicker", "depth": "depth"}


_HINT_LINE = "Each line must be '<receive time ns> <json message>'; fix or drop that line"
_HINT_FIELD = "Is this a Binance recording of that stream? Fix or drop that line"


def _fail(path: Path, lineno: int, what: str, value: Any, hint: str, *, as_text: bool = False) -> DataError:
    """A DataError naming the place; ``value`` is shown as is (``as_text``) or as its repr."""
    text = str(value) if as_text else repr(value)
    text = text if len(text) <= 120 else text[:117] + "..."
    return DataError(f"{path}:{lineno}: {what}; got {text}. {hint}")


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read Binance recording {str(path)!r}: {exc}; check the path"
        raise DataError(msg) from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            msg = (
                f"{path} is not a valid gzip file ({exc}); it may be truncated: "
                f"download or copy it again"
            )
            raise DataError(msg) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{path} is not UTF-8 text ({exc}); is it a Binance recording?"
        raise DataError(msg) from exc
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _kind_of(name: str) -> str:
    """``"btcusdt@depth@100ms"`` -> ``"depth"``; unknown kinds are returned as they are."""
    kind = name.partition("@")[2]
    if kind == "depth" or kind.startswith("depth@"):
        return "depth"
    return kind


class _Columns:
    """Column lists of one stream, accumulated over files."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {}
        self.msg_file: list[int] = []
        self.msg_line: list[int] = []
        self.levels: list[int] = []  # rows per message (depth and snapshot)

    def col(self, name: str) -> list[Any]:
        return self.cols.setdefault(name, [])


def _decode(path: Path, lineno: int, line: str, start: int) -> Any:
    """The JSON value from ``line[start:]`` (without copying the line in the usual case)."""
    try:
        obj, end = _RAW_DECODE(line, start)
        if end == len(line) or line[end:].isspace():
            return obj
    except ValueError:
        pass
    try:  # the slow path gives json's own message (and allows extra blanks)
        return json.loads(line[start:])
    except ValueError as exc:
        what = f"the message is not valid JSON ({exc})"
        raise _fail(path, lineno, what, line, _HINT_LINE, as_text=True) from exc


def _scan_file(path: Path, file_no: int, stream: str, out: _Columns) -> tuple[int, set[str]]:
    """Append the messages of ``stream`` in ``path`` to ``out``; return (count, kinds seen)."""
    lines = _read_lines(path)
    target = _KIND_NAME.get(stream, "snapshot")
    kinds: dict[str, str] = {}  # stream name -> kind, for the few names of a file
    has_snapshot = False
    count = 0
    first_symbol: str | None = None
    pending_snapshots: list[int] = []  # rows of out.cols["symbol"] still to fill
    c = out.col
    ts_l, sym_l, file_l, line_l = c("ts"), c("symbol"), out.msg_file, out.msg_line
    # the columns of the stream, bound once (a KeyError below names the missing field)
    side_l, price_l, size_l, levels_l = c("side"), c("price"), c("size"), out.levels
    uid_l, first_l, prev_l = c("update_id"), c("first_update_id"), c("prev_update_id")
    tev_l, tid_l = c("ts_event"), c("trade_id")
    bp_l, bs_l, ap_l, as_l = c("bid_price"), c("bid_size"), c("ask_price"), c("ask_size")
    for lineno, line in enumerate(lines, 1):
        sp = line.find(" ")
        obj: Any = None
        if sp > 0 and line.startswith(_STREAM_PREFIX, sp + 1):
            name = line[sp + 12 : line.find('"', sp + 12)]
            kind = kinds.get(name)
            if kind is None:
                kind = kinds[name] = _kind_of(name)
                first_symbol = first_symbol or name.partition("@")[0].upper()
        elif sp > 0 and line.startswith(_SNAPSHOT_PREFIX, sp + 1):
            kind = "snapshot"
            has_snapshot = True
        elif not line.strip():
            continue
        else:  # an envelope in another key order, or a malformed line
            if sp <= 0 or not (line[:sp].isascii() and line[:sp].isdigit()):
                raise _fail(path, lineno, "not a '<ts> <json>' line", line, _HINT_LINE, as_text=True)
            obj = _decode(path, lineno, line, sp + 1)
            if isinstance(obj, dict) and "lastUpdateId" in obj:
                kind = "snapshot"
                has_snapshot = True
            elif isinstance(obj, dict) and isinstance(obj.get("stream"), str) and "data" in obj:
                name = obj["stream"]
                kind = kinds.setdefault(name, _kind_of(name))
                first_symbol = first_symbol or obj["stream"].partition("@")[0].upper()
            else:
                what = "the JSON is neither a stream envelope nor a depth snapshot"
                raise _fail(path, lineno, what, line, _HINT_LINE, as_text=True)
        if kind != target:
            continue
        try:
            ts = int(line[:sp])
        except ValueError:
            what = "the receive time is not an integer"
            raise _fail(path, lineno, what, line[:sp], _HINT_LINE, as_text=True) from None
        if obj is None:
            obj = _decode(path, lineno, line, sp + 1)
        field = "data"
        try:
            if target == "snapshot":
                field = "lastUpdateId"
                uid = int(obj["lastUpdateId"])
                field = "bids/asks"
                levels_l.append(_levels(side_l, price_l, size_l, obj["bids"], obj["asks"]))
                uid_l.append(uid)
                tev_l.append(obj.get("E"))
                sym = obj.get("symbol")
                if sym is None:
                    pending_snapshots.append(len(sym_l))
            elif target == "trade":
                data = obj["data"]
                field = "s"
                sym = data["s"]
                field = "p"
                price_l.append(data["p"])
                field = "q"
                size_l.append(data["q"])
                field = "m"
                m = data["m"]
                if m is not True and m is not False:
                    raise TypeError(f"{m!r} is not a boolean")
                side_l.append(-1 if m else 1)
                field = "t"
                tid_l.append(int(data["t"]))
                field = "T"
                tev_l.append(int(data["T"]))
            elif target == "bookTicker":
                data = obj["data"]
                field = "s"
                sym = data["s"]
                field = "b"
                bp_l.append(data["b"])
                field = "B"
                bs_l.append(data["B"])
                field = "a"
                ap_l.append(data["a"])
                field = "A"
                as_l.append(data["A"])
                field = "u"
                uid_l.append(int(data["u"]))
                tev_l.append(data.get("T"))
            else:
                data = obj["data"]
                field = "s"
                sym = data["s"]
                field = "U"
                first = int(data["U"])
                field = "u"
                uid = int(data["u"])
                field = "pu"
                pu = data.get("pu")
                prev_l.append(None if pu is None else int(pu))
                tev_l.append(data.get("E"))
                field = "b/a"
                levels_l.append(_levels(side_l, price_l, size_l, data["b"], data["a"]))
                uid_l.append(uid)
                first_l.append(first)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            what = f"the {stream} message lacks a valid {field!r} field ({exc.__class__.__name__}: {exc})"
            raise _fail(path, lineno, what, line, _HINT_FIELD, as_text=True) from exc
        ts_l.append(ts)
        sym_l.append(sym)
        file_l.append(file_no)
        line_l.append(lineno)
        count += 1
    if pending_snapshots:
        fallback = first_symbol or path.name.split(".")[0].rsplit("_", 1)[0].upper()
        for i in pending_snapshots:
            sym_l[i] = fallback
    seen = set(kinds.values()) | ({"snapshot"} if has_snapshot else set())
    return count, seen


def _levels(side: list[int], price: list[Any], size: list[Any], bids: Any, asks: Any) -> int:
    """Append ``[[p, q], ...]`` bid then ask levels; return the number of rows added."""
    n = 0
    for sgn, levels in ((1, bids), (-1, asks)):
        for p, q in levels:
            price.append(p)
            size.append(q)
        side.extend([sgn] * len(levels))
        n += len(levels)
    if n == 0:  # keep the message: one placeholder row
        side.append(0)
        price.append(None)
        size.append(None)
        return 1
    return n


def _numbers(
    values: list[Any],
    name: str,
    *,
    rows: np.ndarray,
    paths: list[Path],
    out: _Columns,
    positive: bool,
    placeholder: pl.Series | None = None,
) -> pl.Series:
    """Parse decimal strings to Float64; bad text or out-of-range values raise DataError.

    ``rows[i]`` is the message of value ``i``; ``placeholder`` marks rows allowed to be null.
    """
    num = pl.Series(name, values, dtype=pl.String, strict=False).cast(pl.Float64, strict=False)
    ok = (num.is_finite() & ((num > 0.0) if positive else (num >= 0.0))).fill_null(False)
    if placeholder is not None:
        ok = ok | placeholder
    if not ok.all():
        row = int((~ok).arg_true()[0])
        msg_i = int(rows[row])
        need = "a positive finite number" if positive else "a finite number >= 0"
        raise _fail(
            paths[out.msg_file[msg_i]], out.msg_line[msg_i],
            f"{name} must be {need} written as a decimal string", values[row],
            "The recording is damaged or not a Binance one; fix or drop that line",
        )  # fmt: skip
    return num


def _ms_to_ts(values: list[Any], *, paths: list[Path], out: _Columns) -> pl.Series | None:
    """Venue milliseconds (one per message, ``None`` when absent) to UTC nanoseconds."""
    if all(v is None for v in values):
        return None
    for i, v in enumerate(values):
        if v is not None and (type(v) is not int or v < 0):
            raise _fail(
                paths[out.msg_file[i]], out.msg_line[i], "the venue time (E or T) must be integer ms",
                v, "The recording is damaged or not a Binance one; fix or drop that line",
            )  # fmt: skip
    return (pl.Series("ts_event", values, dtype=pl.Int64) * _MS).cast(TS)


def read_binance(paths: str | Path | Sequence[str | Path], *, stream: Stream) -> pl.DataFrame:
    """Read one stream of Binance websocket recordings into an ntlab frame.

    Parameters
    ----------
    paths
        One file or several, read in the given order (e.g. the ``_20240808`` then the
        ``_20240809`` file of a symbol); gzip or plain text, ``<recv_ts_ns> <json>`` lines.
    stream
        ``"trades"`` (``@trade``), ``"quotes"`` (``@bookTicker``), ``"depth"`` (diff depth
        ``@depth...``) or ``"snapshot"`` (the REST depth snapshot lines).

    Returns
    -------
    pl.DataFrame
        Conformed to kind ``trades``, ``quotes`` or ``depth`` (``depth`` for snapshots); see
        the module docstring for the columns and conventions.

    Raises
    ------
    ConfigError
        ``stream`` is not one of :data:`STREAMS`, or ``paths`` is empty.
    DataError
        A file cannot be read, a line is malformed, a message lacks a field or holds a bad
        number, a file has no message of ``stream``, or no file has a snapshot.
    """
    if stream not in STREAMS:
        msg = f"stream={stream!r} is not known; use one of {', '.join(STREAMS)}"
        raise ConfigError(msg)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = [Path(p) for p in paths]
    if not files:
        msg = "read_binance() got no paths; pass a file or a list of files"
        raise ConfigError(msg)
    out = _Columns()
    for i, path in enumerate(files):
        count, seen = _scan_file(path, i, stream, out)
        if count == 0 and stream != "snapshot":
            kinds = ", ".join(sorted(seen)) or "nothing"
            msg = (
                f"{path} has no {stream} messages (<sym>@{_KIND_NAME[stream]} stream); it holds "
                f"{kinds}. Pass the recording that has them, or another stream="
            )
            raise DataError(msg)
    if stream == "snapshot" and not out.msg_line:
        names = ", ".join(p.name for p in files)
        msg = (
            f"no depth snapshot line ({{\"lastUpdateId\": ...}}) in {names}; the snapshot is "
            f"in the first file of a recording (the *_20240808 file here): pass it too"
        )
        raise DataError(msg)
    return _build(stream, out, files)


def _build(stream: str, out: _Columns, files: list[Path]) -> pl.DataFrame:
    c = out.cols
    nmsg = len(out.msg_line)
    ts = pl.Series("ts", c["ts"], dtype=pl.Int64).cast(TS)
    symbol = pl.Series("symbol", c["symbol"], dtype=pl.String, strict=False)
    ts_event = _ms_to_ts(c["ts_event"], paths=files, out=out)
    if stream in ("trades", "quotes"):
        rows = np.arange(nmsg)
        cols: dict[str, pl.Series] = {"ts": ts, "symbol": symbol}
        names = (
            [("price", "price", True), ("size", "size", False)]
            if stream == "trades"
            else [
                ("bid_price", "bid_price", True),
                ("ask_price", "ask_price", True),
                ("bid_size", "bid_size", False),
                ("ask_size", "ask_size", False),
            ]
        )
        for key, name, positive in names:
            cols[name] = _numbers(c[key], name, rows=rows, paths=files, out=out, positive=positive)
        if stream == "trades":
            cols["side"] = pl.Series("side", c["side"], dtype=pl.Int8)
            cols["trade_id"] = pl.Series("trade_id", c["trade_id"], dtype=pl.Int64)
        else:
            cols["update_id"] = pl.Series("update_id", c["update_id"], dtype=pl.Int64)
        if ts_event is not None:
            cols["ts_event"] = ts_event
        return conform(pl.DataFrame(cols), "trades" if stream == "trades" else "quotes")
    # depth and snapshot: message-level columns repeated over their level rows
    counts = np.asarray(out.levels, dtype=np.int64)
    rows = np.repeat(np.arange(nmsg), counts)
    uid = pl.Series("update_id", c["update_id"], dtype=pl.Int64)
    msg_cols = {"ts": ts, "symbol": symbol, "update_id": uid}
    if stream == "depth":
        first = pl.Series("first_update_id", c["first_update_id"], dtype=pl.Int64)
        msg_cols["first_update_id"] = first
        pu = pl.Series("prev_update_id", c["prev_update_id"], dtype=pl.Int64)
        if pu.null_count() < len(pu):
            msg_cols["prev_update_id"] = pu
    else:
        msg_cols["first_update_id"] = uid.alias("first_update_id")
    if ts_event is not None:
        msg_cols["ts_event"] = ts_event
    frame = pl.DataFrame(msg_cols)[rows]
    side = pl.Series("side", c["side"], dtype=pl.Int8)
    empty = side == 0
    kw = {"rows": rows, "paths": files, "out": out, "placeholder": empty}
    price = _numbers(c["price"], "price", positive=True, **kw)
    size = _numbers(c["size"], "size", positive=False, **kw)
    frame = frame.with_columns(side=side, price=price, size=size)
    return conform(frame, "depth")
