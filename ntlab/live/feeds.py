"""Event sources of the live engine: the :class:`Feed` interface and an in-process replay.

A feed hands the engine **batches** of events laid out as the backtest reads bars
(:class:`~ntlab.backtest.engine.BarData`): ``ts`` int64[k] (ns, UTC), ``ohlcv`` float64[k, N, 5]
and ``features`` float64[k, N, F] for its N symbols and F feature columns, plus ``recv_ns``
int64[k], the monotonic clock (``time.monotonic_ns``) at which each event reached the process,
or an empty array when the engine should stamp events as it picks them up (a replay).

Trade ticks are one-trade bars, exactly as in the backtest: the same data through a feed and
through :func:`~ntlab.backtest.backtest` is the same sequence of events.

WebSocket feeds implement the same three methods: they decode frames into a ring buffer and
``next_batch`` hands over what has arrived.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ntlab.backtest.engine import BarData, bar_data
from ntlab.exceptions import ConfigError

__all__ = ["Batch", "Feed", "ReplayFeed", "SyntheticFeed"]

_NO_STAMPS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Batch:
    """Events for the engine (see the module docstring); ``len(batch)`` events."""

    ts: np.ndarray
    ohlcv: np.ndarray
    features: np.ndarray
    recv_ns: np.ndarray = field(default_factory=lambda: _NO_STAMPS)

    def __len__(self) -> int:
        return int(self.ts.shape[0])


class Feed(abc.ABC):
    """What the live engine reads events from.

    ``next_batch(max_events)`` returns a :class:`Batch` of 1 to ``max_events`` events, or a
    float: the seconds until the next event is due (the engine waits for that long or for a
    command), or ``None`` when the feed has ended. ``open`` is called once, in the engine's
    thread, before the first batch; ``close`` once after the last.
    """

    symbols: list[str]
    feature_names: list[str]
    first_event = 0  # the number the engine gives the feed's first event
    ticks = False  # events are trade ticks (a Python strategy's on_trade is called), not bars
    new_alarms: list[tuple[str, bool]] | tuple[()] = ()  # (text, halt trading?) raised since the engine last looked; live feeds own a list

    def event_ref(self, event: int) -> object:
        """A JSON value naming the market-data message behind event ``event`` (sent with the
        orders it caused, to measure wire-to-order latency); None when the feed has none."""
        return None

    def stats(self) -> dict[str, object]:
        """Connection counters for snapshots (live feeds); empty for replays."""
        return {}

    def seek(self, event: int) -> None:
        """Continue at event number ``event`` (a restarted engine calls it with the first event it
        has not processed). Live feeds ignore it: they go on with what arrives now."""

    def open(self) -> None:
        """Connect, subscribe, start the clock."""

    @abc.abstractmethod
    def next_batch(self, max_events: int) -> Batch | float | None:
        """The next events, the wait until there are some, or None at the end."""

    def close(self) -> None:
        """Disconnect."""


class ReplayFeed(Feed):
    """Replay bars or trade ticks from memory, as fast as possible or at ``speed`` x real time.

    Parameters
    ----------
    data
        A Polars frame the backtest accepts (bars, or trade ticks ``ts, price, size``) or a
        prepared :class:`~ntlab.backtest.engine.BarData`.
    speed
        ``None``: as fast as the engine takes events. A number: the original gaps between
        events divided by ``speed`` (``speed=60`` plays an hour of data in a minute).
    rate
        Instead of ``speed``: a steady ``rate`` events per second, whatever the data's own gaps
        (a feed at a known load).
    features
        Feature columns of ``data`` carried with each event (the strategy's ``ctx.features``).
    start
        First event to play (to resume a replay after a restart).
    """

    def __init__(
        self,
        data: pl.DataFrame | BarData,
        *,
        speed: float | None = None,
        rate: float | None = None,
        features: Sequence[str] = (),
        start: int = 0,
    ) -> None:
        for name, value in (("speed", speed), ("rate", rate)):
            if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a number > 0 (or None for as fast as possible), got {value!r}")
        if speed is not None and rate is not None:
            raise ConfigError("give speed (x real time) or rate (events per second), not both")
        self.data = bar_data(data, features)
        if not (isinstance(start, int) and 0 <= start <= self.data.ts.size):
            raise ConfigError(f"start must be an event number in 0..{self.data.ts.size}, got {start!r}")
        self.symbols = list(self.data.symbols)
        self.feature_names = list(self.data.feature_names)
        self.ticks = bool(self.data.ticks)
        self.speed = speed
        self.rate = rate
        self.start = start
        self.position = start
        self._wall0 = 0.0

    @property
    def first_event(self) -> int:  # type: ignore[override]
        return self.start

    def seek(self, event: int) -> None:
        """Play from data row ``event`` (event numbers are rows of the data)."""
        if not (isinstance(event, (int, np.integer)) and 0 <= event <= self.data.ts.size):
            raise ConfigError(f"cannot continue at event {event!r}: this replay has events 0..{self.data.ts.size}")
        self.start = self.position = int(event)

    def __len__(self) -> int:
        return int(self.data.ts.size)

    def open(self) -> None:
        self._wall0 = time.monotonic()

    def next_batch(self, max_events: int) -> Batch | float | None:
        d, i = self.data, self.position
        if i >= d.ts.size:
            return None
        stop = min(d.ts.size, i + max_events)
        if self.speed is not None:
            elapsed = (time.monotonic() - self._wall0) * self.speed * 1e9
            due = int(np.searchsorted(d.ts, d.ts[self.start] + elapsed, side="right"))
            if due <= i:
                return (d.ts[i] - d.ts[self.start] - elapsed) / 1e9 / self.speed
            stop = min(stop, due)
        elif self.rate is not None:
            elapsed = time.monotonic() - self._wall0
            due = self.start + int(elapsed * self.rate) + 1
            if due <= i:
                return (i - self.start) / self.rate - elapsed
            stop = min(stop, due)
        self.position = stop
        return Batch(d.ts[i:stop], d.ohlcv[i:stop], d.features[i:stop])

    def __repr__(self) -> str:
        pace = f"{self.speed:g}x real time" if self.speed else f"{self.rate:g} events/s" if self.rate else "as fast as possible"
        return f"ReplayFeed({len(self.symbols)} symbol(s), {self.data.ts.size:,} events, at {self.position:,}, {pace})"


class SyntheticFeed(Feed):
    """``events`` one-trade events of a random walk, made batch by batch (memory stays flat
    however long it runs): for load, memory and latency tests, never for research.

    Prices move by -1, 0 or +1 ``tick`` per event from ``price``; events are ``step_ns`` apart
    from 2024-01-01 UTC; sizes are 1 to 10.

    >>> feed = SyntheticFeed(5, seed=1)
    >>> feed.open(); batch = feed.next_batch(3); len(batch), batch.ohlcv.shape, feed.next_batch(9).ts.size, feed.next_batch(9)
    (3, (3, 1, 5), 2, None)
    """

    def __init__(self, events: int, *, symbol: str = "SYN", seed: int = 0, price: float = 100.0, tick: float = 0.01,
                 step_ns: int = 1_000_000) -> None:  # fmt: skip
        if not (isinstance(events, int) and events >= 0):
            raise ConfigError(f"events must be an int >= 0, got {events!r}")
        self.symbols, self.feature_names, self.ticks = [symbol], [], True
        self.events, self.tick, self.step_ns, self.seed, self.price0 = events, tick, step_ns, seed, price
        self.position = 0
        self._rng = np.random.default_rng(seed)
        self._ticks = 0.0
        self._t0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z

    def seek(self, event: int) -> None:
        """Continue at ``event`` (the walk restarts from its start price: it has no history)."""
        if not (isinstance(event, (int, np.integer)) and 0 <= event <= self.events):
            raise ConfigError(f"cannot continue at event {event!r}: this feed has events 0..{self.events}")
        self.position = int(event)

    def next_batch(self, max_events: int) -> Batch | None:
        k = min(max_events, self.events - self.position)
        if k <= 0:
            return None
        u = self._rng.random((k, 2))  # one 64-bit draw per number: the walk does not depend on the batches
        moves = np.floor(u[:, 0] * 3.0) - 1.0
        ticks = self._ticks + np.cumsum(moves)  # whole ticks from the start price: exact in float64
        self._ticks = float(ticks[-1])
        prices = self.price0 + ticks * self.tick
        ohlcv = np.empty((k, 1, 5))
        ohlcv[:, 0, :4] = prices[:, None]
        ohlcv[:, 0, 4] = np.floor(u[:, 1] * 10.0) + 1.0
        ts = self._t0 + (self.position + np.arange(k, dtype=np.int64)) * self.step_ns
        self.position += k
        return Batch(ts, ohlcv, np.empty((k, 1, 0)))

    def __len__(self) -> int:
        return self.events

    def __repr__(self) -> str:
        return f"SyntheticFeed({self.events:,} events, at {self.position:,}, seed {self.seed})"
