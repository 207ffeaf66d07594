"""Validation of market-data frames, with counted and reported decisions.

:func:`validate` checks a frame against the rules of its kind. By default a broken rule raises
:class:`~ntlab.exceptions.DataError` naming the rows and values; with ``fix="drop"`` the
offending rows are dropped, with ``fix="repair"`` they are repaired where a repair is sound
(sorting, OHLC envelopes, duplicate bars) and dropped otherwise. Either way the returned
:class:`ValidationReport` says what was done to how many rows: nothing disappears silently.

Rules
-----
all kinds   ``ts`` not null; ``ts`` non-decreasing within each symbol
trades      price finite and > 0; size finite and > 0; no duplicate ``trade_id`` per symbol
quotes      bid/ask finite and > 0; sizes finite and >= 0; bid <= ask (no crossed quote)
depth,      price finite and > 0; size finite and >= 0 (0 removes a level); side is +1 or -1
snapshot    (or 0 with null price and size: the placeholder row of a message without levels);
            a message breaking a rule is dropped whole, never in part
bars        OHLC finite and > 0; volume >= 0; high >= max(open, close), low <= min(open, close),
            high >= low; one bar per (symbol, ts)
prices      dates increasing, each once; prices > 0 or null (null before listing is normal)

Example
-------
>>> import polars as pl
>>> from ntlab.data.validation import validate
>>> bars = pl.DataFrame({
...     "ts": [0, 60_000_000_000], "symbol": ["X", "X"],
...     "open": [10.0, 10.5], "high": [10.2, 10.4], "low": [9.9, 10.1], "close": [10.1, 10.3],
... }).with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
>>> clean, report = validate(bars, "bars", fix="repair")
>>> print(report)
bars: 2 rows in, 2 rows out
  high_below_open_close: 1 row repaired (high/low widened to cover open and close) e.g. row 1 (X 1970-01-01 00:01:00+00:00): open=10.5, high=10.4, low=10.1, close=10.3
>>> clean["high"].to_list()
[10.2, 10.5]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import polars as pl

from ntlab.data.schemas import conform, schema
from ntlab.exceptions import ConfigError, DataError

__all__ = ["Fix", "ValidationIssue", "ValidationReport", "validate"]

Fix = Literal["raise", "drop", "repair"]
_FIXES = ("raise", "drop", "repair")
_ROW = "__row__"
_EXAMPLES = 3


@dataclass(frozen=True, kw_only=True)
class ValidationIssue:
    """One broken rule: how many rows, what was done, and a few examples."""

    rule: str
    description: str
    rows: int
    action: str
    examples: tuple[str, ...]

    def __str__(self) -> str:
        noun = "row" if self.rows == 1 else "rows"
        ex = "; ".join(self.examples)
        return f"{self.rule}: {self.rows} {noun} {self.action} e.g. {ex}"


@dataclass(frozen=True, kw_only=True)
class ValidationReport:
    """What :func:`validate` found and did."""

    kind: str
    rows_in: int
    rows_out: int
    issues: tuple[ValidationIssue, ...]

    @property
    def ok(self) -> bool:
        """True when no rule was broken."""
        return not self.issues

    @property
    def rows_dropped(self) -> int:
        return self.rows_in - self.rows_out

    def to_frame(self) -> pl.DataFrame:
        """One row per broken rule."""
        return pl.DataFrame(
            {
                "rule": [i.rule for i in self.issues],
                "rows": [i.rows for i in self.issues],
                "action": [i.action for i in self.issues],
                "description": [i.description for i in self.issues],
            },
            schema={"rule": pl.String, "rows": pl.Int64, "action": pl.String, "description": pl.String},
        )

    def __str__(self) -> str:
        head = f"{self.kind}: {self.rows_in} rows in, {self.rows_out} rows out"
        if self.ok:
            return head + ", no issues"
        return "\n".join([head, *(f"  {issue}" for issue in self.issues)])

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(i.rule)}</td><td>{i.rows}</td><td>{escape(i.action)}</td>"
            f"<td>{escape('; '.join(i.examples))}</td></tr>"
            for i in self.issues
        )
        status = "no issues" if self.ok else f"{len(self.issues)} rule(s) broken"
        return (
            f"<b>{escape(self.kind)}</b>: {self.rows_in} rows in, {self.rows_out} rows out, "
            f"{status}<table><tr><th>rule</th><th>rows</th><th>action</th><th>examples</th></tr>"
            f"{rows}</table>"
        )


@dataclass(frozen=True)
class _Rule:
    name: str
    description: str
    bad: Callable[[pl.DataFrame], pl.Expr]
    show: tuple[str, ...]
    repair: Callable[[pl.DataFrame, pl.Expr], pl.DataFrame] | None = None
    repair_note: str = ""


def _not_positive(col: str) -> pl.Expr:
    c = pl.col(col)
    return c.is_null() | c.is_nan() | c.is_infinite() | (c <= 0)


def _negative(col: str) -> pl.Expr:
    c = pl.col(col)
    return c.is_null() | c.is_nan() | c.is_infinite() | (c < 0)


def _by_symbol(expr: pl.Expr, frame: pl.DataFrame) -> pl.Expr:
    return expr.over("symbol") if "symbol" in frame.columns else expr


def _unsorted(frame: pl.DataFrame) -> pl.Expr:
    # below the running maximum: dropping exactly these rows leaves a sorted frame
    previous_max = _by_symbol(pl.col("ts").cum_max().shift(1), frame)
    return (pl.col("ts") < previous_max).fill_null(False)


def _sort(frame: pl.DataFrame, _: pl.Expr) -> pl.DataFrame:
    return frame.sort("ts", maintain_order=True)


def _widen_ohlc(frame: pl.DataFrame, bad: pl.Expr) -> pl.DataFrame:
    ohlc = ["open", "high", "low", "close"]
    return frame.with_columns(
        pl.when(bad).then(pl.max_horizontal(ohlc)).otherwise(pl.col("high")).alias("high"),
        pl.when(bad).then(pl.min_horizontal(ohlc)).otherwise(pl.col("low")).alias("low"),
    )


def _keep_first(frame: pl.DataFrame, bad: pl.Expr) -> pl.DataFrame:
    return frame.filter(~bad)


def _duplicated(cols: list[str]) -> Callable[[pl.DataFrame], pl.Expr]:
    def bad(frame: pl.DataFrame) -> pl.Expr:
        keys = [c for c in ["symbol", *cols] if c in frame.columns]
        known = pl.all_horizontal(pl.col(c).is_not_null() for c in cols)  # null ids are unknown, not equal
        return known & (pl.int_range(pl.len()).over(keys) > 0)

    return bad


def _rules(kind: str, frame: pl.DataFrame) -> list[_Rule]:
    cols = set(frame.columns)
    rules = [
        _Rule("null_timestamp", "ts is null", lambda f: pl.col("ts").is_null(), ("ts",)),
        _Rule(
            "unsorted_timestamp",
            "ts goes backwards within a symbol",
            _unsorted,
            ("ts",),
            repair=_sort,
            repair_note="sorted by ts (stable)",
        ),
    ]
    if kind == "trades":
        rules += [
            _Rule("bad_price", "price is null, NaN, infinite or <= 0", lambda f: _not_positive("price"), ("price",)),
            _Rule("bad_size", "size is null, NaN, infinite or <= 0", lambda f: _not_positive("size"), ("size",)),
        ]
        if "trade_id" in cols:
            rules.append(
                _Rule(
                    "duplicate_trade_id",
                    "trade_id seen before for this symbol",
                    _duplicated(["trade_id"]),
                    ("trade_id", "price", "size"),
                    repair=_keep_first,
                    repair_note="dropped (first kept)",
                )
            )
    elif kind == "quotes":
        rules += [
            _Rule("bad_bid", "bid_price is null, NaN, infinite or <= 0", lambda f: _not_positive("bid_price"), ("bid_price",)),
            _Rule("bad_ask", "ask_price is null, NaN, infinite or <= 0", lambda f: _not_positive("ask_price"), ("ask_price",)),
        ]
        rules += [
            _Rule(f"bad_{c}", f"{c} is null, NaN, infinite or < 0", lambda f, c=c: _negative(c), (c,))
            for c in ("bid_size", "ask_size")
            if c in cols
        ]
        rules.append(
            _Rule("crossed_quote", "bid_price > ask_price", lambda f: pl.col("bid_price") > pl.col("ask_price"), ("bid_price", "ask_price"))
        )
    elif kind in ("depth", "snapshot"):
        # A venue message without any level is kept as one placeholder row (side 0, null
        # price and size) so that its update id stays in the sequence the book checks.
        placeholder = (pl.col("side") == 0) & pl.col("price").is_null() & pl.col("size").is_null()
        rules += [
            _Rule("bad_price", "price is null, NaN, infinite or <= 0", lambda f: _not_positive("price") & ~placeholder, ("price",)),
            _Rule("bad_size", "size is null, NaN, infinite or < 0", lambda f: _negative("size") & ~placeholder, ("size",)),
            _Rule(
                "bad_side",
                "side is not +1 (bid) or -1 (ask), nor 0 on an empty message's placeholder row",
                lambda f: ~(pl.col("side").is_in([1, -1]).fill_null(False) | placeholder),
                ("side",),
            ),
        ]
    elif kind == "bars":
        rules += [
            _Rule(f"bad_{c}", f"{c} is null, NaN, infinite or <= 0", lambda f, c=c: _not_positive(c), (c,))
            for c in ("open", "high", "low", "close")
        ]
        if "volume" in cols:
            rules.append(_Rule("bad_volume", "volume is null, NaN, infinite or < 0", lambda f: _negative("volume"), ("volume",)))
        ohlc = ("open", "high", "low", "close")
        rules += [
            _Rule(
                "high_below_open_close",
                "high < max(open, close) or high < low",
                lambda f: (pl.col("high") < pl.max_horizontal("open", "close", "low")),
                ohlc,
                repair=_widen_ohlc,
                repair_note="repaired (high/low widened to cover open and close)",
            ),
            _Rule(
                "low_above_open_close",
                "low > min(open, close)",
                lambda f: (pl.col("low") > pl.min_horizontal("open", "close")),
                ohlc,
                repair=_widen_ohlc,
                repair_note="repaired (high/low widened to cover open and close)",
            ),
            _Rule(
                "duplicate_bar",
                "a second bar with the same symbol and ts",
                _duplicated(["ts"]),
                ohlc,
                repair=_keep_first,
                repair_note="dropped (first kept)",
            ),
        ]
    elif kind == "prices":
        rules = [
            rules[0],
            _Rule(
                "unsorted_timestamp",
                "ts goes backwards",
                lambda f: (pl.col("ts") < pl.col("ts").cum_max().shift(1)).fill_null(False),
                ("ts",),
                repair=_sort,
                repair_note="sorted by ts (stable)",
            ),
            _Rule(
                "duplicate_timestamp",
                "a second row with the same ts",
                lambda f: (pl.col("ts") == pl.col("ts").shift(1)).fill_null(False),
                ("ts",),
                repair=_keep_first,
                repair_note="dropped (first kept)",
            ),
        ]
        for c in frame.columns:
            if c not in ("ts", _ROW):
                rules.append(
                    _Rule(
                        f"bad_price[{c}]",
                        f"{c} is NaN, infinite or <= 0",
                        lambda f, c=c: (pl.col(c).is_nan() | pl.col(c).is_infinite() | (pl.col(c) <= 0)).fill_null(False),
                        (c,),
                        repair=lambda f, bad, c=c: f.with_columns(pl.when(bad).then(None).otherwise(pl.col(c)).alias(c)),
                        repair_note="set to null",
                    )
                )
    return rules


def _describe(frame: pl.DataFrame, rule: _Rule, mask: pl.Expr) -> tuple[int, tuple[str, ...]]:
    hits = frame.filter(mask.fill_null(True))
    examples = []
    for row in hits.head(_EXAMPLES).iter_rows(named=True):
        where = " ".join(str(row[c]) for c in ("symbol", "ts") if c in row and c not in rule.show)
        values = ", ".join(f"{c}={row[c]!r}" for c in rule.show)
        examples.append(f"row {row[_ROW]} ({where}): {values}" if where else f"row {row[_ROW]}: {values}")
    return hits.height, tuple(examples)


def validate(
    frame: pl.DataFrame,
    kind: str,
    *,
    fix: Fix = "raise",
) -> tuple[pl.DataFrame, ValidationReport]:
    """Check ``frame`` against the rules of ``kind`` and return ``(frame, report)``.

    Parameters
    ----------
    frame
        A frame of the given kind; it is first cast with :func:`~ntlab.data.schemas.conform`.
    kind
        ``"trades"``, ``"quotes"``, ``"depth"``, ``"bars"`` or ``"prices"``.
    fix
        ``"raise"`` (default): raise :class:`DataError` at the first broken rule, naming the
        rows and values. ``"drop"``: drop offending rows. ``"repair"``: repair what can be
        repaired soundly (sort, widen OHLC envelopes, keep the first of duplicate bars or
        trade ids) and drop the rest. Row numbers in messages are 0-based positions in the
        input frame.

    Returns
    -------
    tuple of (pl.DataFrame, ValidationReport)
        The conformed (and, if asked, fixed) frame and the report of what was found.
    """
    if fix not in _FIXES:
        msg = f"fix={fix!r} is not allowed; use one of {_FIXES}"
        raise ConfigError(msg)
    schema(kind)  # unknown kind -> SchemaError
    work = conform(frame, kind).with_row_index(_ROW)
    rows_in = work.height
    issues: list[ValidationIssue] = []
    for rule in _rules(kind, work):
        mask = rule.bad(work)
        if kind in ("depth", "snapshot"):
            # a message is applied whole or not at all: dropping one bad level of it would
            # leave a book that looks valid but is not (the gap shows in the replay instead)
            mask = mask.fill_null(True).any().over("symbol", "update_id")
        count, examples = _describe(work, rule, mask)
        if count == 0:
            continue
        if fix == "raise":
            hint = "repair them" if rule.repair else "drop them"
            msg = (
                f"{kind}: {count} row(s) break rule {rule.name} ({rule.description}): "
                f"{'; '.join(examples)}. Pass fix='{'repair' if rule.repair else 'drop'}' to {hint}."
            )
            raise DataError(msg)
        if fix == "repair" and rule.repair is not None:
            work = rule.repair(work, mask.fill_null(True))
            action = rule.repair_note
        else:
            work = work.filter(~mask.fill_null(True))
            action = "dropped"
        issues.append(
            ValidationIssue(rule=rule.name, description=rule.description, rows=count, action=action, examples=examples)
        )
    out = work.drop(_ROW)
    return out, ValidationReport(kind=kind, rows_in=rows_in, rows_out=out.height, issues=tuple(issues))
