"""Resuming a journalled live session, headless sessions and the ``ntlab live`` command."""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import ntlab.datasets
from ntlab.backtest.engine import BarData, bar_data
from ntlab.cli import main
from ntlab.exceptions import ConfigError
from ntlab.execution import ExecutionModel
from ntlab.execution import orders as o
from ntlab.live import step as st
from ntlab.live.engine import LiveEngine
from ntlab.live.feeds import ReplayFeed, SyntheticFeed
from ntlab.live.headless import load_strategy, replay_engine, replay_frame, run_session
from ntlab.live.journal import Journal, JournalError, read_journal
from ntlab.live.recovery import recover
from ntlab.strategy import Strategy


@pytest.fixture(scope="module")
def es() -> BarData:
    """Real ES futures trades as events (the first 30,000 trades)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bar_data(ntlab.datasets.load("es_ticks").head(30_000).select("ts", "price", "size"))


def _head(data: BarData, n: int) -> BarData:
    return dataclasses.replace(data, ts=data.ts[:n], ohlcv=data.ohlcv[:n], features=data.features[:n])


class Ladder(Strategy):
    """Rests a limit order a tick away and cancels it every 40 events; it decides from the event,
    the position and the open orders only, so a resumed run must equal an uninterrupted one."""

    def on_bar(self, ctx) -> None:
        s = ctx.symbols[0]
        orders = ctx.open_orders(s)
        if orders and ctx.bar_index % 40 == 0:
            ctx.cancel(orders[0]["id"])
        elif not orders:
            pos, px = ctx.position(s), ctx.price(s)
            if pos <= 0:
                ctx.submit(s, 2.0 - pos, "limit", limit=px - 0.25)
            else:
                ctx.submit(s, -pos, "limit", limit=px + 0.25)


def _venue(journal_dir: Path) -> np.ndarray:
    scan = read_journal(journal_dir / "venue")
    return scan.payload[scan.kinds == st.K_VENUE]


@pytest.mark.parametrize("split", [1, 4_321, 7_000])
def test_a_resumed_session_equals_an_uninterrupted_one(es: BarData, tmp_path: Path, split: int) -> None:
    model = ExecutionModel(fee_bps=0.5)
    whole = LiveEngine(Ladder(), ReplayFeed(es), model=model, journal_dir=tmp_path / "whole").run(timeout=120)
    first = LiveEngine(Ladder(), ReplayFeed(_head(es, split)), model=model, journal_dir=tmp_path / "split").run(timeout=120)
    resumed = LiveEngine(Ladder(), ReplayFeed(es), model=model, journal_dir=tmp_path / "split", resume=True)
    rec = resumed.recovery
    assert rec.next_event == split and resumed.feed.position == split
    assert rec.cash == pytest.approx(first.cash, rel=1e-12) and rec.position[0] == first.positions["qty"][0]
    assert sorted(rec.open_orders[:, o.O_ID].astype(int).tolist()) == first.open_orders["order_id"].to_list()
    final = resumed.run(timeout=120)
    assert final.status == "finished" and final.events == es.ts.size  # counters go on across the restart
    session = ("events", "orders_sent", "cancels_sent", "venue_events", "fills", "venue_rejects", "risk_rejects")
    assert {k: final.counters[k] for k in session} == {k: whole.counters[k] for k in session} and final.risk_rejects == whole.risk_rejects
    np.testing.assert_array_equal(_venue(tmp_path / "split"), _venue(tmp_path / "whole"))
    assert (_venue(tmp_path / "whole")[:, o.E_KIND] == o.FILLED).sum() > 50
    assert final.cash == pytest.approx(whole.cash, rel=1e-12)
    assert final.positions.equals(whole.positions)
    kinds = read_journal(tmp_path / "split" / "journal").kinds
    assert (kinds == st.K_START).sum() == 2 and (kinds == st.K_PROGRESS).sum() > 0


def test_resume_keeps_the_halted_state_and_order_ids(es: BarData, tmp_path: Path) -> None:
    engine = LiveEngine(Ladder(), ReplayFeed(es, rate=20_000), journal_dir=tmp_path).start()
    deadline = time.monotonic() + 30
    while engine.snapshot().counters["orders_sent"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.kill()
    stopped = engine.stop()
    resumed = LiveEngine(Ladder(), ReplayFeed(es), journal_dir=tmp_path, resume=True)
    assert resumed.recovery.trading_state == 2 and resumed.snapshot().trading_state == "halted"
    assert resumed.recovery.next_event == stopped.events
    before = resumed.snapshot()
    assert before.counters["orders_sent"] == stopped.counters["orders_sent"] and before.events == stopped.events
    final = resumed.run(timeout=60)
    assert final.counters["orders_sent"] == stopped.counters["orders_sent"]  # still halted: nothing more sent
    assert final.counters["risk_rejects"] > stopped.counters["risk_rejects"]
    assert sum(final.risk_rejects.values()) == final.counters["risk_rejects"]
    ids = _venue(tmp_path)[:, o.E_ORDER]
    assert np.unique(ids).size == ids.size or ids.max() < resumed.recovery.next_order_id


def test_resume_errors_name_the_fix(es: BarData, tmp_path: Path) -> None:
    LiveEngine(Ladder(), ReplayFeed(_head(es, 100)), journal_dir=tmp_path).run(timeout=30)
    with pytest.raises(ConfigError, match="pass resume=True to continue it"):
        LiveEngine(Ladder(), ReplayFeed(es), journal_dir=tmp_path)
    with pytest.raises(ConfigError, match="holds no journal of an earlier run"):
        LiveEngine(Ladder(), ReplayFeed(es), journal_dir=tmp_path / "empty", resume=True)
    with pytest.raises(ConfigError, match="cannot continue at event 100"):  # the journal is past this replay's end
        LiveEngine(Ladder(), ReplayFeed(_head(es, 50)), journal_dir=tmp_path, resume=True)


def test_a_session_that_died_before_its_start_record_resumes_from_scratch(es: BarData, tmp_path: Path) -> None:
    Journal(tmp_path / "journal").close()  # the process died right after creating its journal
    engine = LiveEngine(Ladder(), ReplayFeed(_head(es, 500)), journal_dir=tmp_path, resume=True)
    assert engine.recovery is None
    final = engine.run(timeout=30)
    assert final.events == 500 and recover(tmp_path, 1).next_event == 500


def test_a_session_resumed_twice_at_once_is_refused(es: BarData, tmp_path: Path) -> None:
    """Two engines resuming one journal at once would both append after its end, overwriting each
    other's records (the crash test once started its final run twice): the second is refused."""
    LiveEngine(Ladder(), ReplayFeed(_head(es, 100)), journal_dir=tmp_path).run(timeout=30)
    first = LiveEngine(Ladder(), ReplayFeed(_head(es, 300)), journal_dir=tmp_path, resume=True)
    with pytest.raises(JournalError, match="already open for appending"):
        LiveEngine(Ladder(), ReplayFeed(_head(es, 300)), journal_dir=tmp_path, resume=True)
    first.run(timeout=30)
    rec = recover(tmp_path, 1)
    assert rec.next_event == 300 and rec.appended == 0
    assert (read_journal(tmp_path / "journal").kinds == st.K_START).sum() == 2


def test_replay_at_a_steady_rate(es: BarData) -> None:
    feed = ReplayFeed(_head(es, 400), rate=2_000)
    feed.open()
    first = feed.next_batch(1_000)
    assert len(first) == 1  # only the first event is due at once
    wait = feed.next_batch(1_000)
    assert isinstance(wait, float) and 0 < wait <= 1 / 2_000
    time.sleep(0.05)
    assert 50 <= len(feed.next_batch(1_000)) <= 400
    assert "2000 events/s" in repr(feed)
    with pytest.raises(ConfigError, match="not both"):
        ReplayFeed(es, speed=2.0, rate=10.0)
    with pytest.raises(ConfigError, match="rate must be a number > 0"):
        ReplayFeed(es, rate=-1)
    with pytest.raises(ConfigError, match="cannot continue at event -1"):
        feed.seek(-1)


def test_load_strategy_and_replay_frame_errors(tmp_path: Path) -> None:
    strategy, params = load_strategy("ntlab.strategy.examples:ema_cross", {"span": 5})
    assert params == {"span": 5} and type(strategy).__name__ == "CompiledStrategy"
    for spec, message in [
        ("ema_cross", "must be 'module:attribute'"),
        ("ntlab.nothing_here:x", "cannot import 'ntlab.nothing_here'"),
        ("ntlab.strategy.examples:nope", "has no 'nope'"),
        ("ntlab.strategy.examples:np", "not a CompiledStrategy or a Strategy class"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_strategy(spec, {})
    with pytest.raises(ConfigError, match=r"test_live_resume:Crashes\(colour=1\): .*unexpected keyword argument 'colour'"):
        load_strategy("test_live_resume:Crashes", {"colour": 1})
    frame = pl.DataFrame({"ts": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1, 0, 9), "1m", eager=True),
                          "price": np.arange(10.0) + 100, "size": np.ones(10)})  # fmt: skip
    frame.write_parquet(tmp_path / "ticks.parquet")
    assert replay_frame(str(tmp_path / "ticks.parquet"), rows=4).height == 4
    with pytest.raises(ConfigError, match="no Parquet file"):
        replay_frame(str(tmp_path / "missing.parquet"))
    with pytest.raises(ConfigError, match="neither a data set"):
        replay_frame("no_such_data")


def test_run_session_reports_and_stops_at_its_timeout(tmp_path: Path) -> None:
    engine = replay_engine("ntlab.strategy.examples:EmaCross", "es_ticks", params={"span": 20}, rate=2_000, journal_dir=tmp_path)
    seen = []
    final = run_session(engine, every=0.1, timeout=0.35, report=seen.append)
    assert final.status == "stopped" and len(seen) >= 3 and seen[-1] is final
    assert 0 < final.events < 5_000


def test_cli_live_run_resume_and_recover(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["live", "run", "ntlab.strategy.examples:EmaCross", "-d", "es_ticks", "-p", "span", "20", "--journal", str(tmp_path)]
    first = runner.invoke(main, [*args, "--rows", "3000"])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("started") and "finished/active" in first.output
    second = runner.invoke(main, [*args, "--rows", "6000", "--resume"])
    assert second.exit_code == 0, second.output
    assert second.output.startswith("resumed: Recovery(") and "finished" in second.output
    shown = runner.invoke(main, ["live", "recover", str(tmp_path)])
    assert shown.exit_code == 0 and shown.output.startswith("Recovery(cash")
    assert recover(tmp_path, 1).next_event > 1_000
    usage = runner.invoke(main, ["live", "run", "ntlab.strategy.examples:EmaCross", "-d", "es_ticks", "--resume"])
    assert usage.exit_code == 2 and "--resume needs the --journal" in usage.output
    bad = runner.invoke(main, ["live", "run", "nope:x", "-d", "es_ticks"])
    assert bad.exit_code == 1 and "ConfigError: cannot import 'nope'" in bad.output


class Crashes(Strategy):
    def __init__(self) -> None:
        super().__init__()

    def on_bar(self, ctx) -> None:
        if ctx.bar_index == 10:
            raise RuntimeError("boom at event 10")


def test_cli_live_run_exits_1_when_the_strategy_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("ntlab.strategy.examples.Crashes", Crashes, raising=False)
    result = CliRunner().invoke(main, ["live", "run", "ntlab.strategy.examples:Crashes", "-d", "es_ticks", "--rows", "2000", "--journal", str(tmp_path)])
    assert result.exit_code == 1 and "boom at event 10" in result.output


def test_synthetic_feed_is_a_reproducible_random_walk_made_batch_by_batch() -> None:
    feed, again = SyntheticFeed(1_000, seed=4), SyntheticFeed(1_000, seed=4)
    feed.open()
    parts = [feed.next_batch(300) for _ in range(4)]
    assert [len(p) for p in parts] == [300, 300, 300, 100] and feed.next_batch(300) is None
    close = np.concatenate([p.ohlcv[:, 0, 3] for p in parts])
    steps = np.round(np.diff(np.concatenate([[100.0], close])) / 0.01)
    assert set(np.unique(steps)) <= {-1.0, 0.0, 1.0}
    ts = np.concatenate([p.ts for p in parts])
    assert np.all(np.diff(ts) == 1_000_000)
    np.testing.assert_array_equal(again.next_batch(1_000).ohlcv[:, 0, 3], close)
    again.seek(990)
    assert len(again.next_batch(100)) == 10 and len(again) == 1_000
    with pytest.raises(ConfigError, match="cannot continue at event 1001"):
        again.seek(1_001)
    with pytest.raises(ConfigError, match="events must be an int >= 0"):
        SyntheticFeed(-5)
    assert repr(again) == "SyntheticFeed(1,000 events, at 1,000, seed 4)"
