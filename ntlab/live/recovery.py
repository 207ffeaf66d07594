"""Restart after a crash: rebuild the books from the journal and reconcile them with the venue.

Two records survive a crash: the engine's journal (intents, venue events as the engine received
them, risk rejections, trading-state changes) and the paper venue's own record of what it did.
Recovery:

1. reads both (a torn last record is reported and dropped; damage elsewhere raises);
2. checks that the venue events in the journal are a prefix of the venue's record, record for
   record: anything else (a fill the venue never made, a different price) refuses recovery;
3. appends to the journal the venue events it missed (the crash came after the venue acted and
   before the engine recorded it): acknowledged events are neither lost nor doubled;
4. rebuilds cash, positions, average prices, realised P&L and open orders by replaying the venue
   events through the broker's own accounting, and checks the result against an independent fold
   of the venue's record (plain Python); a difference refuses recovery and says what differs;
5. reports intents that never reached the venue (sent just before the crash: not working);
6. finds the next event to process: after the last batch the journal marked done, or after the
   last event that left a record, whichever is later.

Strategy state (indicators, a model's inputs) is not in the journal: a resumed strategy starts
from its ``init`` / constructor again, with the recovered books.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ntlab.exceptions import DataError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.live import step as st
from ntlab.live.journal import Journal, read_journal

__all__ = ["Recovery", "RecoveryError", "recover"]


class RecoveryError(DataError):
    """The journal and the venue's record disagree: the engine refuses to trade."""


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` rebuilt (the arrays are the broker's, see :mod:`ntlab.execution.broker`)."""

    cash: float
    start_cash: float
    position: np.ndarray
    avg_price: np.ndarray
    realised: np.ndarray
    open_orders: np.ndarray  # rows of O_WIDTH
    open_trade: np.ndarray  # the broker's open round trips (rows of OT_WIDTH per asset)
    next_order_id: int
    next_event: int
    trading_state: int
    appended: int  # venue events the journal had missed, now appended
    unacknowledged: list[int] = field(default_factory=list)  # intents the venue never saw
    torn: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        held = int((self.position != 0).sum())
        return (
            f"Recovery(cash {self.cash:,.2f}, {held} position(s), {len(self.open_orders)} open order(s), "
            f"trading {('active', 'reducing', 'halted')[self.trading_state]}, "
            f"next event {self.next_event:,}, {self.appended} venue event(s) re-appended, "
            f"{len(self.unacknowledged)} intent(s) never reached the venue, torn: {self.torn or 'none'})"
        )


def _python_fold(venue: np.ndarray, cash: float, n_assets: int) -> dict[str, np.ndarray | float]:
    """Cash, positions, average prices and realised P&L from fills, in plain Python."""
    pos, avg, real = [0.0] * n_assets, [0.0] * n_assets, [0.0] * n_assets
    for e in venue:
        if int(e[o.E_KIND]) not in (o.FILLED, o.PARTIALLY_FILLED):
            continue
        a, q, p, fee = int(e[o.E_ASSET]), float(e[o.E_QTY]), float(e[o.E_PRICE]), float(e[o.E_FEE])
        cash -= q * p + fee
        if pos[a] == 0 or (pos[a] > 0) == (q > 0):
            avg[a] = (avg[a] * abs(pos[a]) + p * abs(q)) / abs(pos[a] + q)
        else:
            closing = min(abs(q), abs(pos[a]))
            real[a] += closing * (p - avg[a]) * (1 if pos[a] > 0 else -1)
            if abs(q) > abs(pos[a]):
                avg[a] = p
            elif abs(q) == abs(pos[a]):
                avg[a] = 0.0
        pos[a] += q
    return {"cash": cash, "position": np.array(pos), "avg_price": np.array(avg), "realised": np.array(real)}


def _book_fills(ctx: b.Ctx, venue: np.ndarray) -> None:
    """Book the fills through the broker's accounting (the engine's own arithmetic)."""
    a = b.arrays(ctx)
    for e in venue:
        if int(e[o.E_KIND]) in (o.FILLED, o.PARTIALLY_FILLED):
            a["clock"][b.C_BAR] = int(e[o.E_BAR])  # round trips keep their entry event
            b._account_nb(ctx, int(e[o.E_ASSET]), float(e[o.E_QTY]), float(e[o.E_PRICE]), float(e[o.E_FEE]))
            a["n_trades"][0] = 0  # closed round trips are not needed, only the open ones


def _open_orders(venue: np.ndarray) -> np.ndarray:
    rows: dict[int, np.ndarray] = {}
    for e in venue:
        oid, kind = int(e[o.E_ORDER]), int(e[o.E_KIND])
        if kind == o.ACCEPTED:
            row = np.zeros(o.O_WIDTH)
            row[o.O_ID], row[o.O_KIND], row[o.O_ASSET], row[o.O_QTY] = oid, o.RQ_NEW, e[o.E_ASSET], e[o.E_QTY]
            for w, col in enumerate(st._TERMS):
                row[col] = e[o.E_WIDTH + w]
            row[o.O_BAR], row[o.O_TAG] = e[o.E_BAR], e[o.E_TAG]
            rows[oid] = row
        elif kind == o.PARTIALLY_FILLED and oid in rows:
            rows[oid][o.O_QTY] -= e[o.E_QTY]
            rows[oid][o.O_FILLED] += e[o.E_QTY]
            rows[oid][o.O_NOTIONAL] += abs(e[o.E_QTY]) * e[o.E_PRICE]
        elif kind in (o.FILLED, o.CANCELLED):
            rows.pop(oid, None)
    return np.array(list(rows.values())).reshape(-1, o.O_WIDTH)


def recover(journal_dir: str | Path, n_assets: int, *, model_params: np.ndarray | None = None) -> Recovery:
    """Rebuild the books from ``journal_dir`` (``journal/`` and ``venue/``) and reconcile them.

    Raises
    ------
    RecoveryError
        The journal holds a venue event the venue's record does not (or a different one), or
        the rebuilt books differ from the venue's; the message names the record or the field.
    """
    root = Path(journal_dir)
    mine, venue = read_journal(root / "journal"), read_journal(root / "venue")
    torn = [f"{name}: {scan.torn}" for name, scan in (("journal", mine), ("venue", venue)) if scan.torn]
    starts = np.flatnonzero(mine.kinds == st.K_START)
    if starts.size == 0:
        raise RecoveryError(f"the journal in {root / 'journal'} has no start record: nothing to recover from")
    start_cash = float(mine.payload[starts[0], 0])
    starts_at = mine.payload[starts, 2]
    theirs = venue.payload[venue.kinds == st.K_VENUE]
    ours = mine.payload[mine.kinds == st.K_VENUE]
    if ours.shape[0] > theirs.shape[0]:
        raise RecoveryError(
            f"the journal holds {ours.shape[0]} venue events, the venue's record only {theirs.shape[0]}: "
            f"the journal's event {theirs.shape[0] + 1} (order {int(ours[theirs.shape[0], o.E_ORDER])}) never happened at the venue"
        )
    differ = np.flatnonzero(~np.all((ours == theirs[: ours.shape[0]]) | (np.isnan(ours) & np.isnan(theirs[: ours.shape[0]])), axis=1))
    if differ.size:
        i = int(differ[0])
        raise RecoveryError(
            f"venue event {i + 1} differs: journal {ours[i, : o.E_WIDTH].tolist()} vs venue {theirs[i, : o.E_WIDTH].tolist()} "
            "(columns: event number, order, kind, reason, asset, qty, price, fee, tag)"
        )
    missing = theirs[ours.shape[0] :]
    if missing.shape[0]:
        with Journal.open(root / "journal") as journal:
            for row in missing:
                journal.append(st.K_VENUE, row)
    ctx = b.new_ctx(n_assets, 1, np.zeros(o.P_WIDTH) if model_params is None else model_params, cash=start_cash)
    _book_fills(ctx, theirs)
    a = b.arrays(ctx)
    check = _python_fold(theirs, start_cash, n_assets)
    problems = []
    if not np.isclose(a["cash"][0], check["cash"], rtol=1e-12, atol=1e-9):
        problems.append(f"cash {a['cash'][0]!r} vs venue {check['cash']!r}")
    for name in ("position", "avg_price", "realised"):
        bad = np.flatnonzero(~np.isclose(a[name], check[name], rtol=1e-12, atol=1e-9))
        problems += [f"{name}[{i}] {a[name][i]!r} vs venue {check[name][i]!r}" for i in bad]
    if problems:
        raise RecoveryError("the rebuilt books differ from the venue's: " + "; ".join(problems))
    intents = mine.payload[mine.kinds == st.K_INTENT]
    seen = set(theirs[:, o.E_ORDER].astype(np.int64).tolist())
    unacked = [int(r[o.O_ID]) for r in intents if r[o.O_KIND] == o.RQ_NEW and int(r[o.O_ID]) not in seen]
    ids = np.concatenate([intents[:, o.O_ID], theirs[:, o.E_ORDER], [0.0]])
    controls = mine.payload[mine.kinds == st.K_CONTROL]
    done = mine.payload[mine.kinds == st.K_PROGRESS][:, 0] - 1  # the last event of a finished batch
    bars = np.concatenate([intents[:, o.O_WIDTH], theirs[:, o.E_BAR], controls[:, 0], done, starts_at - 1, [-1.0]])
    return Recovery(
        cash=float(a["cash"][0]),
        start_cash=start_cash,
        position=a["position"].copy(),
        avg_price=a["avg_price"].copy(),
        realised=a["realised"].copy(),
        open_orders=_open_orders(theirs),
        open_trade=a["open_trade"].copy(),
        next_order_id=int(ids.max()) + 1,
        next_event=int(bars.max()) + 1,
        trading_state=int(controls[-1, 1]) if controls.shape[0] else 0,
        appended=int(missing.shape[0]),
        unacknowledged=unacked,
        torn=torn,
    )
