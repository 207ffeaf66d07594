"""Headless live sessions: what ``ntlab live run`` does, callable from a script.

Sessions run on a replay of recorded data (:func:`replay_engine`) or on a WebSocket market-data
feed with orders to a venue server (:func:`ws_engine`). A strategy is named as ``module:attribute``: a :class:`~ntlab.strategy.CompiledStrategy`
(parameters go to its ``init``) or a :class:`~ntlab.strategy.Strategy` class (parameters go to
its constructor). Replay data is a data set name (``ntlab data names``) or a Parquet file of
bars or trade ticks.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import polars as pl

from ntlab.exceptions import ConfigError
from ntlab.live.engine import LiveEngine, Snapshot
from ntlab.live.feeds import ReplayFeed
from ntlab.strategy.base import CompiledStrategy, Strategy

__all__ = ["ServerProcess", "load_strategy", "replay_engine", "replay_frame", "run_session", "ws_engine"]


def load_strategy(spec: str, params: dict[str, Any]) -> tuple[CompiledStrategy | Strategy, dict[str, Any]]:
    """``"module:attribute"`` → (strategy, parameters left for a compiled strategy's ``init``).

    >>> load_strategy("ntlab.strategy.examples:EmaCross", {"span": 20})[0].span
    20
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"strategy {spec!r} must be 'module:attribute', e.g. 'ntlab.strategy.examples:ema_cross'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for strategy {spec!r}: {exc}") from exc
    if not hasattr(module, attribute):
        raise ConfigError(f"module {module_name!r} has no {attribute!r}")
    target = getattr(module, attribute)
    if isinstance(target, CompiledStrategy):
        return target, params
    if isinstance(target, type) and issubclass(target, Strategy):
        try:
            return target(**params), {}
        except TypeError as exc:  # a constructor of its own
            raise ConfigError(f"{spec}({', '.join(f'{k}={v!r}' for k, v in params.items())}): {exc}") from exc
    if isinstance(target, Strategy):
        if params:
            raise ConfigError(f"{spec} is a Strategy instance: it takes no parameters ({sorted(params)})")
        return target, {}
    raise ConfigError(f"{spec} is a {type(target).__name__}, not a CompiledStrategy or a Strategy class")


def replay_frame(source: str, rows: int | None = None) -> pl.DataFrame:
    """Bars or trade ticks to replay: a data set name or a Parquet file; the first ``rows``."""
    path = Path(source)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise ConfigError(f"no Parquet file at {path}")
        frame = pl.read_parquet(path)
    else:
        import warnings

        from ntlab import datasets

        if source not in datasets.names():
            raise ConfigError(f"{source!r} is neither a data set (see `ntlab data names`) nor a .parquet file")
        with warnings.catch_warnings():  # the loader's data-quality report is for ingest
            warnings.simplefilter("ignore")
            frame = datasets.load(source)
    return frame if rows is None else frame.head(rows)


def run_session(
    engine: LiveEngine,
    *,
    every: float = 1.0,
    report: Callable[[Snapshot], None] = print,
    timeout: float | None = None,
) -> Snapshot:
    """Start ``engine``, report a snapshot every ``every`` seconds until its feed ends (or
    ``timeout``), stop it and return the final snapshot. Ctrl-C stops it cleanly."""
    engine.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not engine.wait(every):
            report(engine.snapshot())
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    final = engine.stop()
    report(final)
    return final


def replay_engine(
    strategy: str,
    data: str,
    *,
    params: dict[str, Any] | None = None,
    rows: int | None = None,
    speed: float | None = None,
    rate: float | None = None,
    features: tuple[str, ...] = (),
    **engine_kwargs: Any,
) -> LiveEngine:
    """A :class:`LiveEngine` for ``strategy`` (``module:attribute``) on a replay of ``data``."""
    chosen, init_params = load_strategy(strategy, dict(params or {}))
    feed = ReplayFeed(replay_frame(data, rows), speed=speed, rate=rate, features=features)
    return LiveEngine(chosen, feed, **engine_kwargs, **init_params)


def ws_engine(
    strategy: str,
    url: str,
    streams: list[str],
    *,
    params: dict[str, Any] | None = None,
    market: str = "spot",
    venue: str | None = None,
    account: str = "paper",
    end_after_idle: float | None = None,
    **engine_kwargs: Any,
) -> LiveEngine:
    """A :class:`LiveEngine` for ``strategy`` on a :class:`~ntlab.live.ws_feed.BinanceFeed` of
    ``streams`` at ``url``, sending its orders to the venue server at ``venue`` (None: the
    in-process paper venue)."""
    from ntlab.live.venue_client import RemoteVenue
    from ntlab.live.ws_feed import BinanceFeed

    chosen, init_params = load_strategy(strategy, dict(params or {}))
    feed = BinanceFeed(url, streams, market=market, end_after_idle=end_after_idle)  # type: ignore[arg-type]
    remote = RemoteVenue(url=venue, account=account) if venue else None
    return LiveEngine(chosen, feed, venue=remote, **engine_kwargs, **init_params)


class ServerProcess:
    """``ntlab feed serve ...`` or ``ntlab venue serve ...`` in a child process (its own GIL),
    as the benchmark and the tests run them; ``url`` is read from its first line of output.

    ``with ServerProcess(["feed", "serve", path]) as feed: ...`` stops it at the end
    (SIGTERM, then SIGKILL after ``timeout`` seconds)."""

    def __init__(self, args: list[str], *, timeout: float = 60.0) -> None:
        self.args = list(args)
        self.timeout = timeout
        self.proc = subprocess.Popen([sys.executable, "-c", "from ntlab.cli import main; main()", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout is not None
        self.line = self.proc.stdout.readline().strip()
        found = re.search(r"ws://[0-9.]+:[0-9]+", self.line)
        if found is None:
            if self.proc.poll() is None:
                self.proc.terminate()
            _, err = self.proc.communicate(timeout=self.timeout)
            raise ConfigError(f"`ntlab {' '.join(self.args)}` did not start: {self.line!r} {err[-2000:]}")
        self.url = found.group(0)
        self.rest_url = self.url.replace("ws://", "http://")

    def stop(self) -> int:
        """Stop the server; its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return int(self.proc.returncode)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerProcess(ntlab {' '.join(self.args[:2])}, {self.url}, {'running' if self.proc.poll() is None else 'stopped'})"
