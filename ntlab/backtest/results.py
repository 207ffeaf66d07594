"""Results of a backtest as Polars frames, with metrics, a tear sheet and a Jupyter repr.

Frames (times are ``Datetime[ns, UTC]``):

* ``equity``: per bar ``ts, cash, position_value, gross_exposure, equity, traded, fees``;
* ``events``: every order event, in order: ``ts, order_id, event`` (accepted, rejected,
  partially_filled, filled, cancelled), ``reason`` (why rejected or cancelled), ``symbol, qty,
  price, fee, tag``; ``fills`` are its fill events;
* ``trades``: round trips, flat to flat: ``symbol, side, qty, entry_ts, exit_ts, entry_price,
  exit_price, fees, pnl`` (net of fees) and ``return`` (pnl over the entry notional);
* ``positions``: at the end, per symbol: ``qty, avg_price, mark, realised, unrealised``.
"""

from __future__ import annotations

import html
import functools
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ntlab.exceptions import DataError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.execution.orders import ExecutionModel

__all__ = ["Result"]

_TS = pl.Datetime("ns", "UTC")


def _times(ns: np.ndarray) -> pl.Series:
    # a cast straight to the zoned type: Series.dt.replace_time_zone runs a query (~80 µs a call)
    return pl.Series(ns.astype(np.int64)).cast(pl.Datetime("ns", "UTC"))


class Result:
    """What a backtest produced; see the module docstring for the frames' columns.

    The frames are built from the run's logs on first access (a sweep that only needs the
    final equity never builds a million-row frame).
    """

    def __init__(self, logs: dict[str, np.ndarray], data: Any, *, model: ExecutionModel, cash: float, params: dict[str, Any]) -> None:
        self._logs = logs
        self._ts = data.ts
        self.symbols: list[str] = list(data.symbols)
        self.model = model
        self.cash = float(cash)
        self.params = dict(params)

    @classmethod
    def from_ctx(cls, ctx: b.Ctx, data: Any, *, model: ExecutionModel, cash: float, params: dict[str, Any]) -> Result:
        """The result of a finished run's context (its logs, trimmed; no copy of the bars)."""
        a = b.arrays(ctx)
        logs = {
            "equity": a["equity"],
            "events": a["events"][: a["n_events"][0]],
            "trades": a["trades"][: a["n_trades"][0]],
            **{k: a[k].copy() for k in ("position", "avg_price", "mark", "realised")},
        }
        return cls(logs, data, model=model, cash=cash, params=params)

    def _at(self, bars: np.ndarray) -> pl.Series:
        """Times of bar numbers (the logs hold bar numbers: exact in float64, ns times are not)."""
        return _times(self._ts[bars.astype(np.int64)])

    def _names(self, index: np.ndarray) -> list[str]:
        """Symbols of asset numbers; "" for the unknown ones of rejected requests."""
        symbols = np.asarray([*self.symbols, ""], dtype=object)
        i = index.astype(np.int64)
        return symbols[np.where((i >= 0) & (i < len(self.symbols)), i, -1)].tolist()

    @functools.cached_property
    def equity(self) -> pl.DataFrame:
        q = self._logs["equity"]
        return pl.DataFrame({
            "ts": self._at(q[:, b.Q_BAR]),
            "cash": q[:, b.Q_CASH],
            "position_value": q[:, b.Q_POSITION_VALUE],
            "gross_exposure": q[:, b.Q_GROSS],
            "equity": q[:, b.Q_EQUITY],
            "traded": q[:, b.Q_TRADED],
            "fees": q[:, b.Q_FEES],
        })

    @functools.cached_property
    def events(self) -> pl.DataFrame:
        e = self._logs["events"]
        kinds = e[:, o.E_KIND].astype(np.int64)
        reasons = e[:, o.E_REASON].astype(np.int64)
        return pl.DataFrame({
            "ts": self._at(e[:, o.E_BAR]),
            "order_id": e[:, o.E_ORDER].astype(np.int64),
            "event": pl.Series(np.asarray(o.EVENT_KINDS, dtype=object)[kinds].tolist(), dtype=pl.Utf8),
            "reason": pl.Series(np.asarray(o.REJECT_REASONS, dtype=object)[reasons].tolist(), dtype=pl.Utf8),
            "symbol": pl.Series(self._names(e[:, o.E_ASSET]), dtype=pl.Utf8),
            "qty": e[:, o.E_QTY],
            "price": e[:, o.E_PRICE],
            "fee": e[:, o.E_FEE],
            "tag": e[:, o.E_TAG],
        })

    @functools.cached_property
    def trades(self) -> pl.DataFrame:
        tr = self._logs["trades"]
        return pl.DataFrame({
            "symbol": pl.Series(self._names(tr[:, b.T_ASSET]), dtype=pl.Utf8),
            "side": pl.Series(np.where(tr[:, b.T_SIDE] > 0, "long", "short").tolist(), dtype=pl.Utf8),
            "qty": tr[:, b.T_QTY],
            "entry_ts": self._at(tr[:, b.T_ENTRY_BAR]),
            "exit_ts": self._at(tr[:, b.T_EXIT_BAR]),
            "entry_price": tr[:, b.T_ENTRY_PRICE],
            "exit_price": tr[:, b.T_EXIT_PRICE],
            "fees": tr[:, b.T_FEES],
            "pnl": tr[:, b.T_PNL],
            "return": tr[:, b.T_PNL] / (tr[:, b.T_ENTRY_PRICE] * tr[:, b.T_QTY]),  # NumPy: with_columns runs a query
        })

    @functools.cached_property
    def positions(self) -> pl.DataFrame:
        g = self._logs
        mark = np.nan_to_num(g["mark"], nan=0.0)
        return pl.DataFrame({
            "symbol": pl.Series(self.symbols, dtype=pl.Utf8),
            "qty": g["position"],
            "avg_price": g["avg_price"],
            "mark": g["mark"],
            "realised": g["realised"],
            "unrealised": g["position"] * (mark - g["avg_price"]),
        })

    @property
    def fills(self) -> pl.DataFrame:
        """The fill events: ``ts, order_id, symbol, qty, price, fee, tag, partial``."""
        return self.events.filter(pl.col("event").is_in(["filled", "partially_filled"])).select(
            "ts", "order_id", "symbol", "qty", "price", "fee", "tag", partial=pl.col("event") == "partially_filled"
        )

    @property
    def rejections(self) -> pl.DataFrame:
        """Rejected requests with their reasons."""
        return self.events.filter(pl.col("event") == "rejected")

    @property
    def final_equity(self) -> float:
        return float(self._logs["equity"][-1, b.Q_EQUITY])

    @property
    def n_trades(self) -> int:
        """Closed round trips."""
        return int(self._logs["trades"].shape[0])

    def metrics(self, *, periods_per_year: float | None = None, risk_free: float = 0.0) -> Any:
        """Performance metrics (:func:`ntlab.backtest.metrics.summary`)."""
        from ntlab.backtest.metrics import summary

        return summary(self.equity, self.trades, periods_per_year=periods_per_year, risk_free=risk_free)

    def tearsheet(self, path: str | Path | None = None, *, title: str = "Backtest", benchmark: pl.DataFrame | None = None) -> str:
        """The HTML tear sheet; written to ``path`` when given."""
        from ntlab.backtest.tearsheet import tearsheet_html, write_tearsheet

        if path is not None:
            write_tearsheet(path, self.equity, self.trades, title=title, metrics=self.metrics(), benchmark=benchmark)
            return Path(path).read_text()
        return tearsheet_html(self.equity, self.trades, title=title, metrics=self.metrics(), benchmark=benchmark)

    def __repr__(self) -> str:
        ret = self.final_equity / self.cash - 1 if self.cash else float("nan")
        return (
            f"Result({len(self.symbols)} symbol(s), {self._ts.size:,} bars, {self.n_trades:,} trades, "
            f"{self.rejections.height:,} rejections, final equity {self.final_equity:,.2f} ({ret:+.2%}))"
        )

    def _repr_html_(self) -> str:
        try:
            metrics = self.metrics()._repr_html_()
        except DataError as exc:  # e.g. equity that went to zero: no returns to measure
            metrics = f"<p>metrics unavailable: {html.escape(str(exc))}</p>"
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in (
                ("bars", f"{self.equity.height:,}"),
                ("symbols", ", ".join(self.symbols[:8]) + (" ..." if len(self.symbols) > 8 else "")),
                ("trades", f"{self.trades.height:,}"),
                ("rejections", f"{self.rejections.height:,}"),
                ("final equity", f"{self.final_equity:,.2f}"),
            )
        )
        return f"<div><b>Backtest result</b><table>{rows}</table>{metrics}</div>"
