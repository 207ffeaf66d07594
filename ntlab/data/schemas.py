"""Polars schemas of the market-data kinds ntlab understands.

Conventions shared by every kind:

* ``ts`` is ``pl.Datetime("ns", "UTC")``: int64 nanoseconds since the Unix epoch, UTC.
  ``frame["ts"].to_physical()`` gives the int64 array without a copy.
* ``symbol`` is a plain string (``"BTCUSDT"``, ``"ES"``...).
* ``side`` is ``Int8``: ``+1`` buy (the aggressor bought, or the bid side of a book) and
  ``-1`` sell (aggressor sold, or the ask side); ``0`` when the venue does not say.
* Prices and sizes are ``Float64``.
* Where a venue stamps its own event time, ``ts`` is when the data became known to us (the
  local receive time of a recording) and ``ts_event`` the venue's time; a backtest that uses
  ``ts`` cannot look ahead.

Kinds
-----
trades  ts, symbol, price, size [, side, trade_id, ts_event]
quotes  ts, symbol, bid_price, ask_price [, bid_size, ask_size, update_id, ts_event]  (BBO)
depth   ts, symbol, side, price, size, update_id, first_update_id [, prev_update_id, ts_event]
        L2 deltas: one row per price level; ``size`` is the new total at that level and 0
        removes it. All rows of one venue message share ``update_id``; a message without
        levels is one placeholder row with side 0 and null price and size.
snapshot  the columns of depth: a full book at one moment (a venue's REST snapshot), kept apart
        from the diffs so that a book can be rebuilt from a catalog
bars    ts, symbol, open, high, low, close [, volume, notional, trades]
        ``ts`` is the bar's open time; vendor bars whose open is unknown (``es_dollar_bars``)
        are stamped by their last trade and say so in their description.
prices  ts and one Float64 column per asset (wide adjusted-close tables; null before listing)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ntlab.exceptions import ConfigError, SchemaError

__all__ = ["KINDS", "TS", "Schema", "check_symbol", "conform", "schema"]

TS = pl.Datetime("ns", "UTC")


@dataclass(frozen=True, kw_only=True)
class Schema:
    """Columns of one data kind: the required ones, then the optional ones, in order."""

    kind: str
    required: dict[str, pl.DataType]
    optional: dict[str, pl.DataType] = field(default_factory=dict)
    extra_columns: pl.DataType | None = None
    """dtype of any further column (wide tables); ``None`` rejects unknown columns."""

    @property
    def columns(self) -> dict[str, pl.DataType]:
        return {**self.required, **self.optional}


# L2 levels: the rows of depth diffs and of book snapshots
_LEVELS = {
    "ts": TS,
    "symbol": pl.String,
    "side": pl.Int8,
    "price": pl.Float64,
    "size": pl.Float64,
    "update_id": pl.Int64,
    "first_update_id": pl.Int64,
}
_LEVELS_OPTIONAL = {"prev_update_id": pl.Int64, "ts_event": TS}

_SCHEMAS = {
    s.kind: s
    for s in (
        Schema(
            kind="trades",
            required={"ts": TS, "symbol": pl.String, "price": pl.Float64, "size": pl.Float64},
            optional={"side": pl.Int8, "trade_id": pl.Int64, "ts_event": TS},
        ),
        Schema(
            kind="quotes",
            required={
                "ts": TS,
                "symbol": pl.String,
                "bid_price": pl.Float64,
                "ask_price": pl.Float64,
            },
            optional={
                "bid_size": pl.Float64,
                "ask_size": pl.Float64,
                "update_id": pl.Int64,
                "ts_event": TS,
            },
        ),
        Schema(kind="depth", required=_LEVELS, optional=_LEVELS_OPTIONAL),
        Schema(kind="snapshot", required=_LEVELS, optional=_LEVELS_OPTIONAL),
        Schema(
            kind="bars",
            required={
                "ts": TS,
                "symbol": pl.String,
                "open": pl.Float64,
                "high": pl.Float64,
                "low": pl.Float64,
                "close": pl.Float64,
            },
            optional={"volume": pl.Float64, "notional": pl.Float64, "trades": pl.Int64},
        ),
        Schema(kind="prices", required={"ts": TS}, extra_columns=pl.Float64),
    )
}

KINDS: tuple[str, ...] = tuple(_SCHEMAS)


def schema(kind: str) -> Schema:
    """Return the :class:`Schema` of ``kind`` (one of :data:`KINDS`)."""
    try:
        return _SCHEMAS[kind]
    except KeyError:
        msg = f"unknown data kind {kind!r}; use one of {', '.join(KINDS)}"
        raise SchemaError(msg) from None


def conform(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Cast ``frame`` to the schema of ``kind`` and order its columns.

    Missing required columns and columns the kind does not know raise :class:`SchemaError`;
    a value that cannot be cast raises it too (nothing is turned into null silently).
    """
    sch = schema(kind)
    missing = [c for c in sch.required if c not in frame.columns]
    if missing:
        msg = (
            f"{kind} frame lacks required column(s) {missing}; it has {frame.columns}. "
            f"Rename columns with the loader's `columns=` mapping."
        )
        raise SchemaError(msg)
    known = sch.columns
    unknown = [c for c in frame.columns if c not in known]
    if unknown and sch.extra_columns is None:
        msg = f"{kind} frame has unknown column(s) {unknown}; {kind} columns are {list(known)}"
        raise SchemaError(msg)
    target = {c: known.get(c, sch.extra_columns) for c in frame.columns}
    exprs = []
    for name, dtype in target.items():
        col = frame[name]
        if col.dtype == dtype:
            exprs.append(pl.col(name))
        elif isinstance(dtype, pl.Datetime) and isinstance(col.dtype, pl.Datetime):
            if col.dtype.time_zone is None:
                msg = (
                    f"{kind}.{name} is a naive datetime; say which time zone it is in "
                    f"(the loaders' `tz=` argument) so that it can be converted to UTC"
                )
                raise SchemaError(msg)
            exprs.append(pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("ns"))
        else:
            exprs.append(pl.col(name).cast(dtype, strict=True))
    order = [c for c in known if c in target] + [c for c in target if c not in known]
    try:
        out = frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        msg = f"{kind} frame cannot be cast to its schema {target}: {exc}"
        raise SchemaError(msg) from exc
    return out.select(order)


def check_symbol(symbol: object, *, name: str = "symbol") -> str:
    """Return ``symbol`` if it can name data everywhere in ntlab, else raise ``ConfigError``.

    A symbol is a non-empty string that can be a catalog folder name (``symbol=<symbol>``):
    no ``/``, ``\\`` or NUL character, not ``.`` or ``..``, and no leading or trailing
    whitespace. ``"BTCUSDT"``, ``"ES"``, ``"EUR-USD"`` and ``".SPX"`` pass; ``"EUR/USD"`` does
    not (write ``"EUR-USD"``). ``name`` is the parameter named in the message.

    Examples
    --------
    >>> from ntlab.data.schemas import check_symbol
    >>> check_symbol("EUR-USD")
    'EUR-USD'
    >>> check_symbol("EUR/USD")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ntlab.exceptions.ConfigError: symbol='EUR/USD' cannot name a catalog folder ...'EUR-USD'...
    """

    if not isinstance(symbol, str):
        msg = f"{name}={symbol!r} must be a string such as 'BTCUSDT', not {type(symbol).__name__}"
        raise ConfigError(msg)
    bad = [f"contains {c!r}" for c in ("/", "\\", "\0") if c in symbol]
    if symbol != symbol.strip():
        bad.append("has leading or trailing whitespace")
    if symbol in ("", ".", ".."):
        bad.append("is empty" if not symbol else "is a relative folder name")
    if bad:
        fix = symbol.strip().replace("/", "-").replace("\\", "-").replace("\0", "")
        hint = f"use {fix!r} instead" if fix not in ("", ".", "..") else "use e.g. 'BTCUSDT'"
        msg = f"{name}={symbol!r} cannot name a catalog folder (it {', '.join(bad)}); {hint}"
        raise ConfigError(msg)
    return symbol
