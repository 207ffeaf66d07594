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

__all__ = ["Batch", "Feed", "ReplayFeed"]

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
        features: Sequence[str] = (),
        start: int = 0,
    ) -> None:
        if speed is not None and not (isinstance(speed, (int, float)) and np.isfinite(speed) and speed > 0):
            raise ConfigError(f"speed must be a number > 0 (or None for as fast as possible), got {speed!r}")
        self.data = bar_data(data, features)
        if not (isinstance(start, int) and 0 <= start <= self.data.ts.size):
            raise ConfigError(f"start must be an event number in 0..{self.data.ts.size}, got {start!r}")
        self.symbols = list(self.data.symbols)
        self.feature_names = list(self.data.feature_names)
        self.speed = speed
        self.start = start
        self.position = start
        self._wall0 = 0.0

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
        self.position = stop
        return Batch(d.ts[i:stop], d.ohlcv[i:stop], d.features[i:stop])

    def __repr__(self) -> str:
        pace = "as fast as possible" if self.speed is None else f"{self.speed:g}x real time"
        return f"ReplayFeed({len(self.symbols)} symbol(s), {self.data.ts.size:,} events, at {self.position:,}, {pace})"
