"""The live engine: a strategy on a feed, in a background thread, behind a command queue.

``engine.start()`` returns at once; the engine's thread reads batches from its feed and runs
each event through the compiled phases of :mod:`ntlab.live.step` (the same broker phases as the
event-driven backtest, plus pre-trade risk and the journal). A compiled strategy runs inside one
compiled loop over a batch; a Python strategy is called between two compiled calls per event.
No event loop of the kernel is used: the engine runs the same in a notebook, a script or
``ntlab live``, and several engines may run in one process.

Commands from other threads (pause, resume, flatten, kill, trading state, risk limits, model
swap, snapshot, stop) go through a queue and are applied between two batches (a batch is at
most ``batch`` events: a few hundred microseconds); the caller waits until its command is
applied and gets :class:`CommandTimeout` after ``timeout`` seconds otherwise.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import html
import queue
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numba import njit

from ntlab.exceptions import ConfigError, NtlabError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.execution.orders import ExecutionModel
from ntlab.live import risk as rk
from ntlab.live import step as st
from ntlab.live.feeds import Batch, Feed
from ntlab.live.journal import Journal, read_journal
from ntlab.live.latency import LatencyHistogram
from ntlab.live.recovery import Recovery, recover
from ntlab.live.ring import Ring
from ntlab.live.venue_client import RemoteVenue, VenueLink
from ntlab.strategy import verbs as v
from ntlab.strategy.base import CompiledStrategy, Context, Fill, Strategy

__all__ = ["CommandTimeout", "EngineError", "LiveEngine", "Snapshot"]

STATUSES = ("created", "running", "paused", "finished", "stopped", "failed")


class EngineError(NtlabError, RuntimeError):
    """A command the engine cannot apply in its current state."""


class CommandTimeout(EngineError, TimeoutError):
    """A command was not applied in time (the engine thread is busy or stuck)."""


@dataclass(frozen=True, repr=False)
class Snapshot:
    """An immutable view of an engine at one moment (between two batches)."""

    name: str
    status: str
    trading_state: str
    events: int
    last_ts: dt.datetime | None
    cash: float
    equity: float
    start_cash: float
    positions: pl.DataFrame
    open_orders: pl.DataFrame
    counters: dict[str, int]
    risk_rejects: dict[str, int]
    latency_us: dict[str, float]
    events_per_s: float
    queues: dict[str, int]
    journal: dict[str, Any]
    error: str | None = None
    alarms: tuple[str, ...] = ()
    connections: dict[str, Any] = field(default_factory=dict)
    taken_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def pnl(self) -> float:
        return self.equity - self.start_cash

    def __repr__(self) -> str:
        lat = self.latency_us
        timing = f", tick-to-order p50 {lat['p50']:.1f} us p99 {lat['p99']:.1f} us" if lat.get("count") else ""
        return (
            f"Snapshot({self.name!r} {self.status}/{self.trading_state}, {self.events:,} events, "
            f"equity {self.equity:,.2f} (P&L {self.pnl:+,.2f}), {self.open_orders.height} open orders, "
            f"{self.counters.get('fills', 0):,} fills, {self.counters.get('risk_rejects', 0):,} risk rejects{timing})"
        )

    def _repr_html_(self) -> str:
        colour = {"running": "#2a7", "paused": "#d90", "failed": "#c33"}.get(self.status, "#666")
        rows = [
            ("status", f"<b style='color:{colour}'>{self.status}</b> / {self.trading_state}"),
            ("events", f"{self.events:,} ({self.events_per_s:,.0f}/s)"),
            ("last event", str(self.last_ts) if self.last_ts else "none yet"),
            ("equity", f"{self.equity:,.2f} (P&amp;L {self.pnl:+,.2f})"),
            ("cash", f"{self.cash:,.2f}"),
            ("tick-to-order", ", ".join(f"{k} {v:.1f} us" for k, v in self.latency_us.items() if k != "count") or "no orders yet"),
            ("counters", ", ".join(f"{k} {v:,}" for k, v in self.counters.items() if v)),
            ("risk rejects", ", ".join(f"{html.escape(k)}: {v}" for k, v in self.risk_rejects.items() if v) or "none"),
            ("journal", html.escape(str(self.journal))),
        ]
        if self.alarms:
            rows.append(("alarms", "<br>".join(f"<b style='color:#c33'>{html.escape(a)}</b>" for a in self.alarms[-5:])))
        for key, value in self.connections.items():
            rows.append((key, html.escape(", ".join(f"{k} {v}" for k, v in value.items()))))
        if self.error:
            rows.append(("error", f"<pre style='color:#c33'>{html.escape(self.error[-2000:])}</pre>"))
        table = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>" for k, v in rows)
        positions = self.positions.filter(pl.col("qty") != 0)._repr_html_() if self.positions.height else ""
        return f"<div><b>LiveEngine {html.escape(self.name)}</b><table>{table}</table>{positions}</div>"


_LOOPS: dict[Any, Any] = {}
_KEPT_TRADES = 16_384  # round trips kept for trades()


def _compiled_loop(on_bar: Any) -> Any:
    """The batch loop with ``on_bar`` compiled in (once per strategy function)."""
    loop = _LOOPS.get(on_bar)
    if loop is None:

        @njit(nogil=True, error_model="numpy")
        def loop(ctx, state, ts, ohlcv, features, recv, t0, io, run):
            for k in range(ts.shape[0]):
                if not st.room_nb(ctx, io):
                    return k
                in_ns = recv[k] if recv.shape[0] > 0 else st.lt.now_ns_nb()
                st.begin_nb(ctx, k, ts, ohlcv, features, t0 + k)
                if run:
                    on_bar(ctx, state)
                st.end_nb(ctx, in_ns, io)
            return ts.shape[0]

        _LOOPS[on_bar] = loop
    return loop


@njit(nogil=True, error_model="numpy", cache=True)
def _flatten_nb(ctx: b.Ctx, asset: int) -> None:
    for a in range(ctx.position.shape[0]):
        if asset < 0 or a == asset:
            v.flatten(ctx, a)


@njit(nogil=True, error_model="numpy", cache=True)
def _kill_nb(ctx: b.Ctx, risk_state: np.ndarray, io: tuple) -> int:
    n = rk.kill_switch_nb(ctx, risk_state)
    ctx.n_requests[0] = 0
    st.drain_nb(ctx, io)
    st.control_nb(io, ctx.clock[b.C_BAR], rk.HALTED, 0)
    return n


def _has_segments(directory: Path) -> bool:
    return any(p.suffix != ".tmp" for p in directory.glob("journal.*"))


def _started(journal: Path) -> bool:
    """Whether the journal holds a start record (a run that died while setting up has none)."""
    return _has_segments(journal) and bool((read_journal(journal).kinds == st.K_START).any())


class LiveEngine:
    """Run ``strategy`` live on ``feed`` against the paper venue, with risk and a journal.

    Parameters
    ----------
    strategy
        A :class:`~ntlab.strategy.CompiledStrategy` (its state from ``init(**params)``) or a
        :class:`~ntlab.strategy.Strategy` instance, unchanged from the backtest.
    feed
        Where events come from (:class:`~ntlab.live.feeds.ReplayFeed`, WebSocket feeds).
    cash
        Starting cash of the paper account.
    model
        The paper venue's fill rules (the backtest's :class:`ExecutionModel`).
    risk
        Pre-trade limits (:class:`~ntlab.live.risk.RiskLimits`); none by default.
    venue
        A :class:`~ntlab.live.venue_client.RemoteVenue`: orders go over a WebSocket to a venue
        server (``ntlab venue serve``) and the books change on its reports; None: the in-process
        paper venue (``model``'s fill rules). A remote venue takes market and limit orders.
    journal_dir
        Folder of the journal (``journal/``) and of the paper venue's record (``venue/``);
        a new temporary folder when None.
    resume
        Continue the run journalled in ``journal_dir`` (after a crash or a stop): the books
        (cash, positions, average prices, realised P&L, open orders, order ids, trading state)
        are rebuilt and reconciled by :func:`~ntlab.live.recovery.recover` (see
        :attr:`recovery`), and the feed continues at the first event not processed. The
        strategy starts from its ``init`` / constructor again.
    name
        Label in snapshots and thread names.
    batch
        Most events per compiled call (commands wait at most one batch).
    ring_capacity
        Rows of the event ring read by :meth:`events` (oldest rows are overwritten, counted).
    **params
        Parameters of a compiled strategy's ``init``.
    """

    def __init__(
        self,
        strategy: CompiledStrategy | Strategy,
        feed: Feed,
        *,
        cash: float = 1_000_000.0,
        model: ExecutionModel | None = None,
        risk: rk.RiskLimits | None = None,
        venue: RemoteVenue | None = None,
        journal_dir: str | Path | None = None,
        name: str = "engine",
        batch: int = 256,
        ring_capacity: int = 1 << 16,
        equity_rows: int = 4096,
        resume: bool = False,
        **params: Any,
    ) -> None:
        if not isinstance(feed, Feed):
            raise ConfigError(f"feed must be a ntlab.live.feeds.Feed (e.g. ReplayFeed), got {type(feed).__name__}")
        if not (isinstance(cash, (int, float)) and np.isfinite(cash) and cash >= 0):
            raise ConfigError(f"cash={cash!r} must be a finite number >= 0")
        if not (isinstance(batch, int) and batch >= 1):
            raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
        self.name = name
        self.strategy = strategy
        self.feed = feed
        self.model = model or ExecutionModel()
        self.limits = risk or rk.RiskLimits()
        self.cash = float(cash)
        self.batch = batch
        self.symbols = list(feed.symbols)
        n = len(self.symbols)
        if venue is not None and not isinstance(venue, RemoteVenue):
            raise ConfigError(f"venue must be a ntlab.live.venue_client.RemoteVenue (or None for the in-process paper venue), got {type(venue).__name__}")
        self.venue = venue
        model_params = self.model.params()
        model_params[o.P_REMOTE] = venue is not None
        self._ctx = b.new_ctx(n, equity_rows, model_params, cash=cash, n_features=len(feed.feature_names), max_open_orders=self.model.max_open_orders)
        self._view: Context | None = None
        if isinstance(strategy, CompiledStrategy):
            self._state = strategy.state(params)
            self._loop = _compiled_loop(strategy.on_bar)
        elif isinstance(strategy, Strategy):
            if params:
                raise ConfigError(f"parameters {sorted(params)} go to the Strategy's constructor for Python strategies")
            self._state = None
            self._view = Context(self._ctx, self.symbols, list(feed.feature_names))
        else:
            raise ConfigError(f"strategy must be a CompiledStrategy or a Strategy instance, got {type(strategy).__name__}")
        self.journal_dir = Path(journal_dir) if journal_dir is not None else Path(tempfile.mkdtemp(prefix="ntlab-live-"))
        self._t = feed.first_event  # next event number
        self.recovery: Recovery | None = None
        self.latency = LatencyHistogram()
        self.ring = Ring(ring_capacity, st.R_WIDTH, overflow="overwrite_oldest", name=f"{name} events")
        self._risk_params = self.limits.params()
        self._risk_state = rk.new_state(self.limits, n)
        self._risk_counters = np.zeros(rk.N_WIDTH, dtype=np.int64)
        self._counters = np.zeros(st.N_WIDTH, dtype=np.int64)
        self._payload = np.zeros(16)
        self._outbox = np.zeros((64 * self._ctx_arrays["requests"].shape[0], st.X_WIDTH))
        self._outbox_count = np.zeros(1, dtype=np.int64)
        self._link = VenueLink(venue) if venue is not None else None
        self._asset_of = {s: i for i, s in enumerate(self.symbols)}
        self._alarms: list[str] = []
        self._events_before = 0  # events of the journalled run a resumed engine continues
        if resume:
            self._resume()
        else:
            held = [p for p in (self.journal_dir / "journal", self.journal_dir / "venue") if p.is_dir() and _has_segments(p)]
            if held:
                raise ConfigError(
                    f"{held[0]} holds the journal of an earlier run: pass resume=True to continue it, "
                    "or give a new journal_dir"
                )
            self.journal = Journal(self.journal_dir / "journal")
            self.venue_record = Journal(self.journal_dir / "venue")
        self._io = self._make_io()
        if self._link is not None:  # compile the report path now too (a no-op report): the first fill must not wait for Numba
            st.remote_nb(self._ctx, self._io, -1, -1.0, 0, 0.0, np.nan, 0.0, 0.0)
        if self._state is not None:  # compile the loop now, in the caller's thread: start() is instant
            n, f = len(self.symbols), len(feed.feature_names)
            self._loop(self._ctx, self._state, np.zeros(0, np.int64), np.zeros((0, n, 5)), np.zeros((0, n, f)), np.zeros(0, np.int64), self._t, self._io, False)
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._status = "created"
        self._error: str | None = None
        self._last_ts = 0
        self._busy_ns = 0
        self._history: collections.deque = collections.deque(maxlen=100_000)
        self._trades = np.zeros((_KEPT_TRADES, b.T_WIDTH))  # a ring of the last round trips
        self._log, self._log_count = self._ctx_arrays["trades"], self._ctx_arrays["n_trades"]  # the broker's round-trip log
        self._n_trades = 0
        self._previous_model: tuple[np.ndarray, ...] | None = None
        self._pending_fills = np.zeros((0, o.E_WIDTH))
        self._done = threading.Event()
        self._lock = threading.Lock()

    # -- set-up ----------------------------------------------------------------------------------
    def _resume(self) -> None:
        mine, theirs = self.journal_dir / "journal", self.journal_dir / "venue"
        if not mine.is_dir():
            raise ConfigError(f"resume=True, but {self.journal_dir} holds no journal of an earlier run; start without resume")
        if not _started(mine):  # the last run died before it started: nothing happened yet
            self.journal = Journal.open(mine) if _has_segments(mine) else Journal(mine)
            self.venue_record = Journal.open(theirs) if _has_segments(theirs) else Journal(theirs)
            return
        rec = recover(self.journal_dir, len(self.symbols), model_params=self.model.params())
        a = self._ctx_arrays
        k = rec.open_orders.shape[0]
        if k > a["orders"].shape[0]:
            raise ConfigError(f"the recovered run has {k} open orders, more than max_open_orders={a['orders'].shape[0]} of this model")
        a["cash"][0] = rec.cash
        for name in ("position", "avg_price", "realised", "open_trade"):
            a[name][:] = getattr(rec, name)
        a["orders"][:k] = rec.open_orders
        a["n_orders"][0] = k
        a["next_id"][0] = rec.next_order_id
        rk.set_state_nb(self._risk_state, rec.trading_state)
        self.cash = rec.start_cash
        self.feed.seek(rec.next_event)
        self._t = rec.next_event
        self.recovery = rec
        jr = read_journal(mine)
        intents, venue_rows = jr.payload[jr.kinds == st.K_INTENT], jr.payload[jr.kinds == st.K_VENUE]
        first_event = int(jr.payload[jr.kinds == st.K_START][0, 2])  # where the journalled session began
        self._continue_counters(rec.next_event - first_event, intents, venue_rows, jr.payload[jr.kinds == st.K_RISK_REJECT])
        if self._link is not None:  # the venue re-sends what came after the last report booked; orders still open are sent again (deduped by cid)
            self._link.last_seq = int(venue_rows[:, st.V_SEQ].max()) if venue_rows.shape[0] else 0
            asked = set(intents[intents[:, o.O_KIND] == o.RQ_CANCEL, o.O_ID].astype(np.int64).tolist())
            for row in rec.open_orders:
                self._send_new(row[o.O_ID], row[o.O_ASSET], row[o.O_QTY], row[o.O_TYPE], row[o.O_LIMIT], rec.next_event - 1)
                if int(row[o.O_ID]) in asked:  # its cancel got no answer before the restart: ask again
                    self._link.send_cancel(self._cid(row[o.O_ID]))
        self.journal = Journal.open(self.journal_dir / "journal")
        self.venue_record = Journal.open(self.journal_dir / "venue")

    def _continue_counters(self, events: int, intents: np.ndarray, venue: np.ndarray, risk_rejects: np.ndarray) -> None:
        """Counters go on from the journalled session's (a restart does not reset the fills a
        desk watches); ring drops, journal rolls, tick-to-order samples and the events-per-second
        rate are this run's, like the latency histogram."""
        c, kinds = self._counters, venue[:, o.E_KIND]
        new = int((intents[:, o.O_KIND] == o.RQ_NEW).sum())
        c[st.N_EVENTS] = events
        c[st.N_INTENTS], c[st.N_CANCELS] = new, intents.shape[0] - new
        c[st.N_VENUE_EVENTS] = venue.shape[0]
        c[st.N_FILLS] = int(np.isin(kinds, (o.FILLED, o.PARTIALLY_FILLED)).sum())
        c[st.N_VENUE_REJECTS] = int((kinds == o.REJECTED).sum())
        c[st.N_RISK_REJECTS] = risk_rejects.shape[0]
        r = self._risk_counters
        r[rk.N_PASSED], r[rk.N_REJECTED] = new, risk_rejects.shape[0]
        r[rk.N_CHECKED] = new + risk_rejects.shape[0]
        for reason in risk_rejects[:, o.E_REASON].astype(np.int64):
            r[rk.N_BY_REASON + reason - o.R_RISK_ORDER_SIZE] += 1
        self._events_before = int(c[st.N_EVENTS])

    def _make_io(self) -> tuple:
        jw, jf, js = self.journal.arrays()
        vw, vf, vs = self.venue_record.arrays()
        (hist,) = self.latency.arrays()
        data, control = self.ring.arrays()
        return (self._risk_params, self._risk_state, self._risk_counters, jw, jf, js, vw, vf, vs, hist, data, control,
                self._counters, self._payload, self._outbox, self._outbox_count)  # fmt: skip

    def _roll_journals(self) -> None:
        worst = b.worst_case_nb(self._ctx) + self._ctx_arrays["requests"].shape[0]
        for j in (self.journal, self.venue_record):
            words, _, state = j.arrays()
            if st.free_nb(words, state) < worst:
                j.roll()
        self._counters[st.N_JOURNAL_FULL] += 1
        self._io = self._make_io()

    @property
    def _ctx_arrays(self) -> dict[str, np.ndarray]:
        return b.arrays(self._ctx)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LiveEngine:
        """Start the engine's thread and return at once."""
        if self._status != "created":
            raise EngineError(f"engine {self.name!r} is {self._status}; a LiveEngine starts once (make a new one)")
        self._status = "running"
        payload = np.zeros(16)
        payload[:4] = (self.cash, len(self.symbols), self._t, self.recovery is not None)
        self.journal.append(st.K_START, payload)
        self._io = self._make_io()  # in case that append rolled the segment over
        self._thread = threading.Thread(target=self._run, name=f"ntlab-live-{self.name}", daemon=True)
        self._thread.start()
        return self

    def run(self, timeout: float | None = None) -> Snapshot:
        """Start, wait until the feed ends (or ``timeout``), stop; the final snapshot (headless use)."""
        self.start()
        self.wait(timeout)
        return self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the engine has finished its feed, stopped or failed; False on timeout."""
        return self._done.wait(timeout)

    @property
    def status(self) -> str:
        return self._status

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> Snapshot:
        """Stop the engine (after the current batch), flush and close the journals; the final snapshot."""
        if self.running:
            self._command("stop", timeout=timeout)
            self._thread.join(timeout)
        self._close()
        return self.snapshot()

    def _close(self) -> None:
        if self._status in ("running", "paused", "created"):
            self._status = "stopped"
        self.journal.close()  # closing twice is fine
        self.venue_record.close()
        self._done.set()

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        link = self._link
        try:
            if link is not None:
                link.connect()
            self.feed.open()
            if isinstance(self.strategy, Strategy):
                self.strategy.on_start(self._view)
            while self._status in ("running", "paused"):
                self._apply_commands()
                if self._status not in ("running", "paused"):
                    break
                if link is not None:
                    self._venue_poll()
                got = self.feed.next_batch(self.batch)
                if self.feed.new_alarms:
                    self._feed_alarms()
                if got is None:
                    self._status = "finished"
                    break
                if isinstance(got, Batch):
                    self._process(got)
                elif got > 0:  # nothing due yet: wait for it, or for a command
                    self._apply_commands(block=min(max(float(got), 1e-4), 0.05))
            if link is not None:
                self._venue_settle()
            if isinstance(self.strategy, Strategy) and self._status != "failed":
                self.strategy.on_stop(self._view)
        except Exception:  # noqa: BLE001  # strategy code (or a feed) raised: halt trading, keep the engine inspectable
            self._fail(traceback.format_exc())
        finally:
            self._apply_commands()
            if link is not None:
                link.close()
            self.feed.close()
            self.journal.sync()
            self.venue_record.sync()
            with self._lock:  # a command queued from now on is applied by its caller
                self._done.set()
            self._drain_waiting_commands()

    def _fail(self, text: str) -> None:
        self._error = text
        self._status = "failed"
        self._kill()

    def _kill(self) -> None:
        a = self._ctx_arrays
        open_ids = [r[o.O_ID] for r in a["orders"][: a["n_orders"][0]] if r[o.O_KIND] != b.DEAD]
        _kill_nb(self._ctx, self._risk_state, self._io)
        if self._link is not None:  # cancelled here at once; the venue is asked too (a fill on its way still books)
            for oid in open_ids:
                self._link.send_cancel(self._cid(oid))

    def _alarm(self, text: str, *, halt: bool) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        self._alarms.append(f"{stamp} {text}" + (" - trading HALTED" if halt else ""))
        del self._alarms[:-100]
        if halt and int(self._risk_state[rk.S_STATE]) != rk.HALTED:
            self._set_state(rk.HALTED)

    def _feed_alarms(self) -> None:
        for text, halt in self.feed.new_alarms:
            self._alarm(f"feed: {text}", halt=halt)
        self.feed.new_alarms.clear()

    # -- remote venue --------------------------------------------------------------------------------
    def _cid(self, order_id: float) -> str:
        return f"{self.name}-{int(order_id)}"

    def _send_new(self, order_id: float, asset: float, qty: float, typ: float, limit: float, event: float) -> None:
        assert self._link is not None
        limit_order = int(typ) == o.LIMIT
        self._link.send_new(self._cid(order_id), self.symbols[int(asset)], float(qty), "limit" if limit_order else "market",
                            float(limit) if limit_order else None, self.feed.event_ref(int(event)))  # fmt: skip

    def _venue_send(self) -> None:
        """Send the outbox (orders decided in the last compiled call) over the venue's socket."""
        rows = self._outbox[: self._outbox_count[0]]
        for x in rows:
            if x[st.X_KIND] == o.RQ_NEW:
                self._send_new(x[st.X_ORDER], x[st.X_ASSET], x[st.X_QTY], x[st.X_TYPE], x[st.X_LIMIT], x[st.X_EVENT])
            else:
                self._link.send_cancel(self._cid(x[st.X_ORDER]))  # type: ignore[union-attr]
        self._outbox_count[0] = 0

    def _venue_poll(self, wait: float = 0.0) -> None:
        """Book the venue's reports (each journalled with its sequence number) and reconcile."""
        link = self._link
        assert link is not None
        for r in link.poll(wait):
            status = r["status"]
            if status not in ("rejected", "partially_filled", "filled", "cancelled"):
                continue
            prefix, _, number = str(r.get("cid", "")).rpartition("-")
            asset = self._asset_of.get(r.get("symbol"), -1)
            if prefix != self.name or not number.isdigit() or asset < 0:
                link.stats["foreign_reports"] += 1  # another engine's order on this account: not ours to book
                continue
            kind = {"rejected": o.REJECTED, "partially_filled": o.PARTIALLY_FILLED, "filled": o.FILLED, "cancelled": o.CANCELLED}[status]
            sign = 1.0 if r.get("side") == "buy" else -1.0
            qty = sign * float(r.get("fill_qty") or 0.0)
            price = float(r["fill_price"]) if r.get("fill_price") is not None else np.nan
            if not st.room_nb(self._ctx, self._io):
                self._roll_journals()
            st.remote_nb(self._ctx, self._io, kind, float(number), asset, qty, price, float(r.get("fee") or 0.0), float(r["seq"]))
            if kind != o.CANCELLED and kind != o.REJECTED and self._view is not None and type(self.strategy).on_fill is not Strategy.on_fill:
                self._deliver(self._ctx_arrays["events"][:1].copy(), self._last_ts)  # the fill just booked (its row stays after the drain)
        if link.fatal and link.fatal not in "".join(self._alarms):
            self._alarm(f"venue: {link.fatal}", halt=True)
        reply = link.positions_reply
        if reply is not None and reply.get("last_seq") == link.last_seq:
            link.positions_reply = None
            theirs = reply.get("positions") or {}
            mine = self._ctx_arrays["position"]
            wrong = [f"{s}: engine {mine[i]:g}, venue {float(theirs.get(s, 0.0)):g}" for s, i in self._asset_of.items()
                     if abs(mine[i] - float(theirs.get(s, 0.0))) > 1e-9 * max(1.0, abs(mine[i]))]  # fmt: skip
            if wrong:
                self._alarm("positions differ from the venue's (" + "; ".join(wrong) + ")", halt=True)

    def _venue_settle(self) -> None:
        """At the end of the feed: wait (bounded) for the answers to orders still in flight."""
        link = self._link
        assert link is not None
        deadline = time.monotonic() + link.config.settle_timeout
        while (link.in_flight or not link.connected) and time.monotonic() < deadline and not link.fatal:
            self._venue_poll(wait=0.01)
            self._apply_commands()

    def _process(self, batch: Batch) -> None:
        start = time.perf_counter_ns()
        k, n = 0, len(batch)
        run = self._status == "running"
        part = batch
        while k < n:
            if k:  # the rest of the batch, after a journal roll
                part = Batch(batch.ts[k:], batch.ohlcv[k:], batch.features[k:], batch.recv_ns[k:] if batch.recv_ns.size else batch.recv_ns)
            if self._state is not None:
                done = self._loop(self._ctx, self._state, part.ts, part.ohlcv, part.features, part.recv_ns, self._t, self._io, run)
            else:
                done = self._python_steps(part, run)
            self._t += done
            k += done
            self._collect()
            if self._outbox_count[0]:
                self._venue_send()
            if k < n and not st.room_nb(self._ctx, self._io):
                self._roll_journals()
        self._payload[0] = self._t
        self.journal.append(st.K_PROGRESS, self._payload[:1])  # a restart continues after this batch
        if self.journal.arrays()[0] is not self._io[3]:  # that append rolled the segment over
            self._io = self._make_io()
        self._last_ts = int(batch.ts[-1])
        self._busy_ns += time.perf_counter_ns() - start

    def _python_steps(self, part: Batch, run: bool) -> int:
        strategy, view, ctx, io = self.strategy, self._view, self._ctx, self._io
        on_event = strategy.on_trade if self.feed.ticks and type(strategy).on_trade is not Strategy.on_trade else strategy.on_bar
        wants_fills = type(strategy).on_fill is not Strategy.on_fill
        events = self._ctx_arrays["events"]
        for k in range(len(part)):
            if not st.room_nb(ctx, io):
                return k
            in_ns = int(part.recv_ns[k]) if part.recv_ns.size else time.monotonic_ns()
            matched = st.begin_nb(ctx, k, part.ts, part.ohlcv, part.features, self._t + k)
            if wants_fills:
                self._deliver(np.vstack([self._pending_fills, events[:matched]]), int(part.ts[k]))
            if run:
                on_event(view)
            drained = st.end_nb(ctx, in_ns, io)
            if wants_fills:
                self._pending_fills = events[matched:drained].copy()
        return len(part)

    def _deliver(self, rows: np.ndarray, ts_ns: int) -> None:
        for e in rows:
            kind = int(e[o.E_KIND])
            if kind in (o.FILLED, o.PARTIALLY_FILLED):
                ts = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)
                fill = Fill(int(e[o.E_ORDER]), self.symbols[int(e[o.E_ASSET])], float(e[o.E_QTY]), float(e[o.E_PRICE]),
                            float(e[o.E_FEE]), ts, kind == o.PARTIALLY_FILLED, float(e[o.E_TAG]))  # fmt: skip
                self.strategy.on_fill(self._view, fill)

    def _collect(self) -> None:
        """Move round trips out of the broker's log (memory stays flat)."""
        count = self._log_count
        n = int(count[0])
        if n:
            rows = (self._n_trades + np.arange(n)) % _KEPT_TRADES
            self._trades[rows] = self._log[:n]
            self._n_trades += n
            count[0] = 0

    # -- commands --------------------------------------------------------------------------------
    def _command(self, name: str, *args: Any, timeout: float = 5.0) -> Any:
        if threading.current_thread() is self._thread:
            return self._apply(name, args)
        if not self.running or self._done.is_set():  # no thread left to apply it
            if self._thread is not None:
                self._thread.join()
            if name in ("snapshot", "stop"):
                return self._apply(name, args)
            state = self._status if self._error is None else f"failed: {self._error.strip().splitlines()[-1]}"
            raise EngineError(f"engine {self.name!r} is not running ({state}); {name} needs a running engine")
        future: Future = Future()
        with self._lock:
            if self._done.is_set():
                return self._command(name, *args, timeout=timeout)
            self._commands.put((name, args, future))
        try:
            return future.result(timeout)
        except TimeoutError:
            raise CommandTimeout(
                f"{name} was not applied within {timeout} s: the engine thread of {self.name!r} is busy or stuck "
                f"(status {self._status}); try a longer timeout or engine.snapshot()"
            ) from None

    def _apply_commands(self, block: float = 0.0) -> bool:
        """Apply the queued commands; with ``block``, wait up to that long for the first. True if any."""
        applied = False
        while True:
            try:
                name, args, future = self._commands.get(timeout=block) if block and not applied else self._commands.get_nowait()
            except queue.Empty:
                return applied
            applied = True
            try:
                future.set_result(self._apply(name, args))
            except Exception as exc:  # noqa: BLE001  # the caller gets the error; the engine goes on
                future.set_exception(exc)

    def _drain_waiting_commands(self) -> None:
        while True:
            try:
                name, args, future = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(self._apply(name, args) if name in ("snapshot", "stop") else None)
            except Exception as exc:  # noqa: BLE001
                future.set_exception(exc)

    def _apply(self, name: str, args: tuple) -> Any:
        if name == "snapshot":
            return self._snapshot()
        if name == "stop":
            if self._status in ("running", "paused"):
                self._status = "stopped"
            return None
        if name == "pause":
            self._status = "paused"
        elif name == "resume":
            self._status = "running"
        elif name == "flatten":
            (asset,) = args
            if int(self._risk_state[rk.S_STATE]) == rk.HALTED:
                raise EngineError("trading is HALTED: closing orders would be refused; call engine.set_trading_state('reducing') first")
            self._set_state(rk.REDUCING)
            _flatten_nb(self._ctx, asset)
        elif name == "kill":
            self._kill()
        elif name == "trading_state":
            self._set_state(args[0])
        elif name == "limits":
            (limits,) = args
            self._risk_params[:] = limits.params()
            self.limits = limits
        elif name == "swap":
            return self._swap(*args)
        return None

    def _set_state(self, state: int) -> None:
        rk.set_state_nb(self._risk_state, state)
        st.control_nb(self._io, self._t - 1, state, 0)  # after the last event processed

    def _swap(self, arrays: tuple[np.ndarray, ...] | None) -> float:
        start = time.perf_counter()
        if self._state is None:
            raise EngineError("swap_model needs a compiled strategy whose state starts with the model's arrays")
        if arrays is None:
            if self._previous_model is None:
                raise EngineError("no previous model to roll back to")
            arrays = self._previous_model
        current = self._state if isinstance(self._state, tuple) else (self._state,)
        for i, (new, old) in enumerate(zip(arrays, current, strict=False)):
            if new.shape != old.shape or new.dtype != old.dtype:
                raise EngineError(
                    f"model array {i} is {new.dtype}{list(new.shape)}, the running strategy's is {old.dtype}{list(old.shape)}; "
                    "a hot swap needs the same architecture (export the new model with the same layers)"
                )
        self._previous_model = tuple(c.copy() for c in current[: len(arrays)])
        for new, old in zip(arrays, current, strict=False):
            np.copyto(old, new)
        return time.perf_counter() - start

    # -- the public commands ---------------------------------------------------------------------
    def pause(self, timeout: float = 5.0) -> None:
        """Stop calling the strategy (events still mark positions and fill resting orders)."""
        self._command("pause", timeout=timeout)

    def resume(self, timeout: float = 5.0) -> None:
        """Call the strategy again."""
        self._command("resume", timeout=timeout)

    def flatten(self, symbol: str | None = None, timeout: float = 5.0) -> None:
        """Cancel open orders and close positions (of ``symbol``, or all) with market orders at the
        next event; trading becomes REDUCING so that the strategy cannot open new positions."""
        asset = -1 if symbol is None else self._asset(symbol)
        self._command("flatten", asset, timeout=timeout)

    def kill(self, timeout: float = 5.0) -> None:
        """Kill switch: cancel every open order and HALT trading (only cancels pass risk after)."""
        self._command("kill", timeout=timeout)

    def set_trading_state(self, state: str, timeout: float = 5.0) -> None:
        """``"active"``, ``"reducing"`` (only orders that reduce a position) or ``"halted"``."""
        if state not in rk.STATES:
            raise ConfigError(f"trading state must be one of {rk.STATES}, got {state!r}")
        self._command("trading_state", rk.STATES.index(state), timeout=timeout)

    def set_risk_limits(self, limits: rk.RiskLimits | None = None, *, timeout: float = 5.0, **changes: Any) -> None:
        """Replace the pre-trade limits (applied from the next event): a whole ``RiskLimits``,
        or the current ones with some fields changed (``set_risk_limits(max_order_qty=1.0)``;
        ``None`` turns a limit off)."""
        if limits is not None and changes:
            raise ConfigError("give either a RiskLimits or the fields to change, not both")
        if limits is None:
            known = {f.name for f in dataclasses.fields(rk.RiskLimits)}
            unknown = sorted(set(changes) - known)
            if unknown or not changes:
                raise ConfigError(f"unknown risk limit(s) {unknown}; the limits are {sorted(known)}" if unknown else "nothing to change: give a RiskLimits or fields of it")
            limits = dataclasses.replace(self.limits, **changes)
        if not isinstance(limits, rk.RiskLimits):
            raise ConfigError(f"limits must be a RiskLimits, got {type(limits).__name__}")
        self._command("limits", limits, timeout=timeout)

    def swap_model(self, model: Any, timeout: float = 5.0) -> float:
        """Replace the model's weights between two events; returns the seconds the swap took.

        ``model`` is an exported model (:func:`~ntlab.models.export.export_mlp`: its ``params``
        and ``layout`` must match the first arrays of the compiled strategy's state, as
        ``mlp_signal`` lays them out) or a tuple of arrays in state order."""
        arrays = (model.params, model.layout) if hasattr(model, "params") and hasattr(model, "layout") else tuple(model)
        return self._command("swap", arrays, timeout=timeout)

    def rollback_model(self, timeout: float = 5.0) -> float:
        """Put back the model that the last :meth:`swap_model` replaced."""
        return self._command("swap", None, timeout=timeout)

    def _asset(self, symbol: str) -> int:
        if symbol not in self.symbols:
            raise ConfigError(f"unknown symbol {symbol!r}; this engine trades {self.symbols}")
        return self.symbols.index(symbol)

    # -- views -----------------------------------------------------------------------------------
    def snapshot(self, timeout: float = 5.0) -> Snapshot:
        """An immutable view of the engine, taken between two batches."""
        return self._command("snapshot", timeout=timeout)

    def _snapshot(self) -> Snapshot:
        a = self._ctx_arrays
        mark = np.nan_to_num(a["mark"], nan=0.0)
        value = float((a["position"] * mark).sum())
        positions = pl.DataFrame({
            "symbol": self.symbols,
            "qty": a["position"].copy(),
            "avg_price": a["avg_price"].copy(),
            "mark": a["mark"].copy(),
            "unrealised": a["position"] * (mark - a["avg_price"]),
            "realised": a["realised"].copy(),
        })
        rows = [r for r in a["orders"][: a["n_orders"][0]] if r[o.O_KIND] != b.DEAD]
        open_orders = pl.DataFrame(
            {
                "order_id": [int(r[o.O_ID]) for r in rows],
                "symbol": [self.symbols[int(r[o.O_ASSET])] for r in rows],
                "qty": [float(r[o.O_QTY]) for r in rows],
                "type": [o.ORDER_TYPES[int(r[o.O_TYPE])] for r in rows],
                "limit": [float(r[o.O_LIMIT]) for r in rows],
                "stop": [float(r[o.O_STOP]) for r in rows],
            },
            schema={"order_id": pl.Int64, "symbol": pl.Utf8, "qty": pl.Float64, "type": pl.Utf8, "limit": pl.Float64, "stop": pl.Float64},
        )
        counters = dict(zip(st.COUNTER_NAMES, (int(x) for x in self._counters), strict=True))
        reasons = o.REJECT_REASONS[o.R_RISK_ORDER_SIZE : o.R_RISK_LAST + 1]
        risk = {text: int(n) for i, text in enumerate(reasons) if (n := self._risk_counters[rk.N_BY_REASON + i])}
        lat = self.latency.percentiles((50, 99, 99.9))
        latency = {"p50": lat[50] / 1e3, "p99": lat[99] / 1e3, "p99.9": lat[99.9] / 1e3, "count": self.latency.count} if self.latency.count else {}
        seconds = self._busy_ns / 1e9
        return Snapshot(
            name=self.name,
            status=self._status,
            trading_state=rk.STATES[int(self._risk_state[rk.S_STATE])],
            events=int(self._counters[st.N_EVENTS]),
            last_ts=dt.datetime.fromtimestamp(self._last_ts / 1e9, tz=dt.UTC) if self._last_ts else None,
            cash=float(a["cash"][0]),
            equity=float(a["cash"][0]) + value,
            start_cash=self.cash,
            positions=positions,
            open_orders=open_orders,
            counters=counters,
            risk_rejects=risk,
            latency_us=latency,
            events_per_s=(self._counters[st.N_EVENTS] - self._events_before) / seconds if seconds else 0.0,
            queues={"commands": self._commands.qsize(), "event_ring": len(self.ring)},
            journal={"dir": str(self.journal_dir), "records": self.journal.next_seq - 1, "durable": self.journal.durable_seq},
            error=self._error,
            alarms=tuple(self._alarms),
            connections=self._connections(),
        )

    def _connections(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        feed_stats = self.feed.stats()
        if feed_stats:
            out["feed"] = feed_stats
        if self._link is not None:
            out["venue"] = {"connected": self._link.connected, "last_seq": self._link.last_seq, "in_flight": self._link.in_flight,
                            **{k: v for k, v in self._link.stats.items() if v}}  # fmt: skip
        return out

    def events(self) -> pl.DataFrame:
        """Order events so far (the event ring's rows, read now; at most the last 100,000):
        ``ts`` (the time of the market event they happened at, as in a backtest's events; null
        for a venue report booked before any market event),
        ``event_number``, ``order_id``, ``event``, ``reason``, ``symbol``, ``qty``, ``price``,
        ``fee``, ``tag``."""
        rows = self.ring.pop_many()
        self._history.extend(rows)
        e = np.asarray(self._history).reshape(-1, st.R_WIDTH)
        kinds, reasons, assets = e[:, o.E_KIND].astype(int), e[:, o.E_REASON].astype(int), e[:, o.E_ASSET].astype(int)
        names = np.asarray([*self.symbols, ""], dtype=object)
        ns = e[:, st.R_TS_S].astype(np.int64) * 1_000_000_000 + e[:, st.R_TS_NS].astype(np.int64)
        return pl.DataFrame({
            "ts": pl.Series(ns).cast(pl.Datetime("ns", "UTC")).set(pl.Series(ns <= 0), None),  # null: before any market event
            "event_number": e[:, o.E_BAR].astype(np.int64),
            "order_id": e[:, o.E_ORDER].astype(np.int64),
            "event": pl.Series([o.EVENT_KINDS[k] for k in kinds], dtype=pl.Utf8),
            "reason": pl.Series([o.REJECT_REASONS[r] for r in reasons], dtype=pl.Utf8),
            "symbol": pl.Series(names[np.where((assets >= 0) & (assets < len(self.symbols)), assets, -1)].tolist(), dtype=pl.Utf8),
            "qty": e[:, o.E_QTY],
            "price": e[:, o.E_PRICE],
            "fee": e[:, o.E_FEE],
            "tag": e[:, o.E_TAG],
        })

    def trades(self) -> pl.DataFrame:
        """Closed round trips (flat to flat), oldest first: the last 16,384 of them."""
        n = min(self._n_trades, _KEPT_TRADES)
        t = self._trades[(self._n_trades - n + np.arange(n)) % _KEPT_TRADES]
        return pl.DataFrame({
            "symbol": pl.Series([self.symbols[int(a)] for a in t[:, b.T_ASSET]], dtype=pl.Utf8),
            "side": pl.Series(["long" if s > 0 else "short" for s in t[:, b.T_SIDE]], dtype=pl.Utf8),
            "qty": t[:, b.T_QTY],
            "entry_event": t[:, b.T_ENTRY_BAR].astype(np.int64),
            "exit_event": t[:, b.T_EXIT_BAR].astype(np.int64),
            "entry_price": t[:, b.T_ENTRY_PRICE],
            "exit_price": t[:, b.T_EXIT_PRICE],
            "fees": t[:, b.T_FEES],
            "pnl": t[:, b.T_PNL],
        })

    def __repr__(self) -> str:
        kind = "compiled" if self._state is not None else "Python"
        return f"LiveEngine({self.name!r}, {kind} strategy, {len(self.symbols)} symbol(s), {self._status}, {int(self._counters[st.N_EVENTS]):,} events)"

    def _repr_html_(self) -> str:
        return self.snapshot()._repr_html_()
