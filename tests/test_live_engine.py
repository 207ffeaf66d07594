"""The live engine: parity with the backtest on real data, commands, faults, risk, journal, recovery."""

from __future__ import annotations

import time
import warnings

import numpy as np
import polars as pl
import pytest
from numba import njit

import ntlab.datasets
from ntlab.backtest import backtest
from ntlab.exceptions import ConfigError
from ntlab.execution import ExecutionModel
from ntlab.execution import orders as o
from ntlab.live import step as st
from ntlab.live.engine import CommandTimeout, EngineError, LiveEngine, Snapshot
from ntlab.live.feeds import ReplayFeed
from ntlab.live.journal import read_journal
from ntlab.live.recovery import RecoveryError, recover
from ntlab.live.risk import RiskLimits
from ntlab.strategy import CompiledStrategy, Strategy
from ntlab.strategy.examples import EmaCross, ema_cross, mlp_signal


@pytest.fixture(scope="module")
def es() -> pl.DataFrame:
    """Real ES futures trades (the first 20,000)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ntlab.datasets.load("es_ticks").head(20_000).select("ts", "price", "size")


@pytest.fixture(scope="module")
def btc() -> pl.DataFrame:
    """Real Binance BTCUSDT spot trades."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ntlab.datasets.load("binance_spot_btcusdt_trades").select("ts", "price", "size")


def _backtest_events(result) -> np.ndarray:
    return result._logs["events"]


def _live_events(engine: LiveEngine) -> np.ndarray:
    frame = engine.events()
    e = np.zeros((frame.height, o.E_WIDTH))
    e[:, o.E_BAR] = frame["event_number"]
    e[:, o.E_ORDER] = frame["order_id"]
    e[:, o.E_KIND] = [o.EVENT_KINDS.index(k) for k in frame["event"]]
    e[:, o.E_REASON] = [o.REJECT_REASONS.index(r) for r in frame["reason"]]
    e[:, o.E_ASSET] = 0
    e[:, o.E_QTY] = frame["qty"]
    e[:, o.E_PRICE] = frame["price"]
    e[:, o.E_FEE] = frame["fee"]
    e[:, o.E_TAG] = frame["tag"]
    return e


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.nan_to_num(a, nan=-7.0), np.nan_to_num(b, nan=-7.0))


@pytest.mark.parametrize("fill_on", ["close", "next_open"])
def test_compiled_strategy_parity_with_the_backtest_on_es_ticks(es: pl.DataFrame, fill_on: str, tmp_path) -> None:
    model = ExecutionModel(fill_on=fill_on, fee_bps=0.5, slippage_bps=1.0, volume_limit=0.5)
    expected = backtest(es, ema_cross, model=model, span=200, size=2.0)
    engine = LiveEngine(ema_cross, ReplayFeed(es), model=model, journal_dir=tmp_path, span=200, size=2.0, batch=333)
    final = engine.run(timeout=120)
    assert final.status == "finished" or final.status == "stopped"
    live = _live_events(engine)
    assert live.shape[0] >= 15
    _same(live, _backtest_events(expected))
    assert engine.events()["ts"].equals(expected.events["ts"])  # the market event's time, to the nanosecond
    assert final.equity == pytest.approx(expected.final_equity, rel=1e-12)
    assert final.counters["fills"] == int((expected.events["event"].is_in(["filled", "partially_filled"])).sum())
    assert final.events == expected.equity.height
    trades, want = engine.trades(), expected.trades
    assert trades.height == want.height >= 2
    assert trades.drop("entry_event", "exit_event").equals(want.select(trades.drop("entry_event", "exit_event").columns))


def test_python_strategy_parity_with_the_backtest_on_binance_trades(btc: pl.DataFrame, tmp_path) -> None:
    fills = []

    class Recording(EmaCross):
        def on_fill(self, ctx, fill) -> None:
            fills.append((fill.order_id, fill.qty, fill.price))

    expected_fills: list = []

    class Expected(EmaCross):
        def on_fill(self, ctx, fill) -> None:
            expected_fills.append((fill.order_id, fill.qty, fill.price))

    model = ExecutionModel(fee_bps=1.0)
    expected = backtest(btc, Expected(span=50, size=0.01), model=model)
    engine = LiveEngine(Recording(span=50, size=0.01), ReplayFeed(btc), model=model, journal_dir=tmp_path)
    engine.run(timeout=120)
    _same(_live_events(engine), _backtest_events(expected))
    assert fills == expected_fills and len(fills) > 20


def test_start_returns_at_once_and_commands_apply_between_batches(es: pl.DataFrame, tmp_path) -> None:
    engine = LiveEngine(ema_cross, ReplayFeed(es, speed=2_000.0), journal_dir=tmp_path, span=50, size=1.0)
    began = time.perf_counter()
    engine.start()
    assert time.perf_counter() - began < 1.0 and engine.running
    with pytest.raises(EngineError, match="starts once"):
        engine.start()
    first = engine.snapshot()
    assert isinstance(first, Snapshot) and first.status == "running"
    engine.pause()
    paused = engine.snapshot()
    assert paused.status == "paused"
    time.sleep(0.05)
    # paused: events keep coming (positions marked) but the strategy sends nothing new
    assert engine.snapshot().counters["orders_sent"] == paused.counters["orders_sent"]
    engine.resume()
    assert engine.snapshot().status == "running"
    with pytest.raises(dataclasses_frozen_error()):
        first.cash = 0.0  # snapshots are immutable
    html = engine._repr_html_()
    assert "LiveEngine" in html and "running" in html
    final = engine.stop()
    assert final.status == "stopped" and not engine.running
    assert engine.snapshot().events == final.events  # inspectable after stop
    with pytest.raises(EngineError, match="not running"):
        engine.pause()


def dataclasses_frozen_error() -> type:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_flatten_kill_switch_and_trading_states(es: pl.DataFrame, tmp_path) -> None:
    engine = LiveEngine(ema_cross, ReplayFeed(es, speed=500.0), journal_dir=tmp_path, span=20, size=3.0).start()
    deadline = time.monotonic() + 30
    while engine.snapshot().positions["qty"][0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.flatten()
    deadline = time.monotonic() + 30
    while (snap := engine.snapshot()).positions["qty"][0] != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert snap.positions["qty"][0] == 0 and snap.trading_state == "reducing"
    engine.kill()
    killed = engine.snapshot()
    assert killed.trading_state == "halted" and killed.open_orders.height == 0
    with pytest.raises(EngineError, match="HALTED"):
        engine.flatten()
    engine.set_trading_state("active")
    assert engine.snapshot().trading_state == "active"
    with pytest.raises(ConfigError, match="trading state must be one of"):
        engine.set_trading_state("paused")
    with pytest.raises(ConfigError, match="unknown symbol"):
        engine.flatten("NQ")
    engine.stop()
    kinds = read_journal(tmp_path / "journal").kinds
    assert (kinds == st.K_CONTROL).sum() >= 3  # reducing, halted, active


def test_risk_limits_stop_orders_before_the_venue(es: pl.DataFrame, tmp_path) -> None:
    engine = LiveEngine(ema_cross, ReplayFeed(es), journal_dir=tmp_path, risk=RiskLimits(max_order_qty=2.5), span=30, size=3.0)
    final = engine.run(timeout=60)
    assert final.counters["risk_rejects"] > 0 and final.counters["orders_sent"] == 0
    assert sum(final.risk_rejects.values()) == final.counters["risk_rejects"]
    venue = read_journal(tmp_path / "venue")
    assert venue.n_records == 0  # nothing reached the venue
    events = engine.events()
    assert (events["reason"].str.contains("max_order_qty")).all()


def test_risk_limits_change_while_running(es: pl.DataFrame, tmp_path) -> None:
    engine = LiveEngine(ema_cross, ReplayFeed(es, speed=300.0), journal_dir=tmp_path, span=30, size=3.0).start()
    engine.set_risk_limits(RiskLimits(max_order_qty=1.0))
    sent_before = engine.snapshot().counters["orders_sent"]  # orders may have left before the change
    with pytest.raises(ConfigError, match="RiskLimits"):
        engine.set_risk_limits({"max_order_qty": 1})
    with pytest.raises(ConfigError, match=r"unknown risk limit\(s\) \['max_qty'\]; the limits are \[.*'max_order_qty'"):
        engine.set_risk_limits(max_qty=1.0)
    with pytest.raises(ConfigError, match="not both"):
        engine.set_risk_limits(RiskLimits(), max_order_qty=1.0)
    with pytest.raises(ConfigError, match="nothing to change"):
        engine.set_risk_limits()
    engine.set_risk_limits(max_position=50.0)  # one field changed, the others kept
    assert engine.limits == RiskLimits(max_order_qty=1.0, max_position=50.0)
    deadline = time.monotonic() + 30
    while engine.snapshot().counters["risk_rejects"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    final = engine.stop()
    assert final.counters["risk_rejects"] > 0
    assert final.counters["orders_sent"] == sent_before  # nothing left after the new limits applied


class Boom(Strategy):
    def __init__(self, at: int) -> None:
        self.at, self.n = at, 0

    def on_bar(self, ctx) -> None:
        self.n += 1
        if self.n == 5:
            ctx.submit("asset", 1.0, "limit", limit=1.0)  # rests far below the market
        if self.n == self.at:
            raise ZeroDivisionError(f"strategy bug at event {self.at}")


def test_strategy_exception_halts_and_keeps_the_engine_inspectable(es: pl.DataFrame, tmp_path) -> None:
    engine = LiveEngine(Boom(at=500), ReplayFeed(es), journal_dir=tmp_path)
    final = engine.run(timeout=60)
    assert final.status == "failed" and final.trading_state == "halted"
    assert "ZeroDivisionError: strategy bug at event 500" in final.error
    assert final.open_orders.height == 0  # the resting limit was cancelled
    assert "cancelled" in engine.events()["event"].to_list()
    assert "strategy bug" in engine._repr_html_()
    with pytest.raises(EngineError, match="failed: ZeroDivisionError"):
        engine.kill()


@njit
def _raising_on_bar(ctx, state) -> None:
    state[0] += 1.0
    if state[0] == 300.0:
        raise ValueError("compiled strategy bug")


def test_compiled_strategy_exception_halts(es: pl.DataFrame, tmp_path) -> None:
    strategy = CompiledStrategy(on_bar=_raising_on_bar, init=lambda: np.zeros(1))
    final = LiveEngine(strategy, ReplayFeed(es), journal_dir=tmp_path).run(timeout=60)
    assert final.status == "failed" and "compiled strategy bug" in final.error


class Sleepy(Strategy):
    def on_bar(self, ctx) -> None:
        time.sleep(0.5)


def test_command_timeout_names_the_engine(es: pl.DataFrame, tmp_path) -> None:
    engine = LiveEngine(Sleepy(), ReplayFeed(es.head(20)), journal_dir=tmp_path, batch=20).start()
    time.sleep(0.1)
    with pytest.raises(CommandTimeout, match="was not applied within 0.05 s"):
        engine.pause(timeout=0.05)
    engine.stop(timeout=30)


def test_model_swap_and_rollback_between_events(tmp_path) -> None:
    torch = pytest.importorskip("torch", reason="torch builds the models to export")
    from ntlab.models.export import export_mlp
    from ntlab.models.nets import MLPConfig, build

    torch.manual_seed(0)
    n = 3000
    rng = np.random.default_rng(1)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    bars = pl.DataFrame({
        "ts": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1) + pl.duration(minutes=n - 1), "1m", eager=True, time_zone="UTC"),
        "open": price, "high": price, "low": price, "close": price, "volume": np.full(n, 1e6),
        "f1": rng.normal(size=n), "f2": rng.normal(size=n),
    })
    nets = [export_mlp(build(MLPConfig(inputs=2, hidden=(4,), outputs=1)).eval()) for _ in range(2)]
    engine = LiveEngine(mlp_signal, ReplayFeed(bars, features=["f1", "f2"], speed=20_000.0), journal_dir=tmp_path, net=nets[0]).start()
    state = engine._state
    original = state[0].copy()
    seconds = engine.swap_model(nets[1])
    assert seconds < 1.0
    np.testing.assert_array_equal(state[0], nets[1].params)
    engine.rollback_model()
    np.testing.assert_array_equal(state[0], original)
    wrong = export_mlp(build(MLPConfig(inputs=2, hidden=(5,), outputs=1)).eval())
    with pytest.raises(EngineError, match="same architecture"):
        engine.swap_model(wrong)
    engine.stop()


def test_journal_and_recovery_rebuild_the_books(es: pl.DataFrame, tmp_path) -> None:
    model = ExecutionModel(fee_bps=0.5)
    final = LiveEngine(ema_cross, ReplayFeed(es), model=model, journal_dir=tmp_path, span=40, size=2.0).run(timeout=60)
    rec = recover(tmp_path, 1)
    assert rec.cash == pytest.approx(final.cash, rel=1e-12)
    assert rec.position[0] == final.positions["qty"][0]
    assert rec.avg_price[0] == pytest.approx(final.positions["avg_price"][0], rel=1e-12)
    assert rec.realised[0] == pytest.approx(final.positions["realised"][0], rel=1e-9, abs=1e-9)
    assert rec.appended == 0 and rec.unacknowledged == [] and not rec.torn
    assert "Recovery(" in repr(rec)


def test_recovery_appends_what_the_journal_missed_and_refuses_a_mismatch(es: pl.DataFrame, tmp_path) -> None:
    from ntlab.live.journal import Journal

    LiveEngine(ema_cross, ReplayFeed(es.head(3000)), journal_dir=tmp_path, span=40, size=2.0).run(timeout=60)
    venue = read_journal(tmp_path / "venue")
    # the venue acted once more after the engine's last record (a crash between the two writes)
    extra = venue.payload[-1].copy()
    extra[o.E_ORDER] = 10_000
    extra[o.E_KIND] = o.CANCELLED
    with Journal.open(tmp_path / "venue") as j:
        j.append(st.K_VENUE, extra)
    rec = recover(tmp_path, 1)
    assert rec.appended == 1
    assert read_journal(tmp_path / "journal").payload[-1][o.E_ORDER] == 10_000
    assert recover(tmp_path, 1).appended == 0  # exactly once
    # a fill the venue never made: refuse
    other = tmp_path / "other"
    LiveEngine(ema_cross, ReplayFeed(es.head(3000)), journal_dir=other, span=40, size=2.0).run(timeout=60)
    fake = read_journal(other / "venue").payload[-1].copy()
    fake[o.E_PRICE] += 1.0
    with Journal.open(other / "journal") as j:
        j.append(st.K_VENUE, fake)
    with pytest.raises(RecoveryError, match="never happened at the venue"):
        recover(other, 1)


def test_several_engines_in_one_process(es: pl.DataFrame, btc: pl.DataFrame, tmp_path) -> None:
    a = LiveEngine(ema_cross, ReplayFeed(es), journal_dir=tmp_path / "a", name="es", span=50, size=1.0).start()
    b_ = LiveEngine(EmaCross(span=50, size=0.01), ReplayFeed(btc), journal_dir=tmp_path / "b", name="btc").start()
    assert a.wait(60) and b_.wait(60)
    sa, sb = a.stop(), b_.stop()
    assert sa.name == "es" and sb.name == "btc" and sa.events == len(ReplayFeed(es)) and sb.events == len(ReplayFeed(btc))
    assert "LiveEngine('es', compiled strategy" in repr(a)


def test_bad_arguments(es: pl.DataFrame) -> None:
    with pytest.raises(ConfigError, match="feed must be"):
        LiveEngine(ema_cross, es)
    with pytest.raises(ConfigError, match="cash"):
        LiveEngine(ema_cross, ReplayFeed(es), cash=-1.0)
    with pytest.raises(ConfigError, match="batch"):
        LiveEngine(ema_cross, ReplayFeed(es), batch=0)
    with pytest.raises(ConfigError, match="Python strategies"):
        LiveEngine(EmaCross(span=5), ReplayFeed(es), span=3)
    with pytest.raises(ConfigError, match="CompiledStrategy or a Strategy"):
        LiveEngine(object(), ReplayFeed(es))
    with pytest.raises(ConfigError, match="speed"):
        ReplayFeed(es, speed=0)
    with pytest.raises(ConfigError, match="start"):
        ReplayFeed(es, start=-1)
    assert "as fast as possible" in repr(ReplayFeed(es))


def test_mlp_returns_trades_on_the_returns_a_torch_model_sees(es: pl.DataFrame, tmp_path) -> None:
    torch = pytest.importorskip("torch", reason="torch is the reference for the exported model")
    from ntlab.backtest.engine import bar_data
    from ntlab.models.export import export_mlp
    from ntlab.models.nets import MLPConfig, build
    from ntlab.strategy.examples import mlp_returns

    torch.manual_seed(3)
    net = build(MLPConfig(inputs=8, hidden=(16,), outputs=1)).eval()
    threshold = 0.05
    engine = LiveEngine(mlp_returns, ReplayFeed(es), journal_dir=tmp_path, net=export_mlp(net), threshold=threshold, size=1.0)
    engine.run(timeout=120)
    orders = engine.events().filter(pl.col("event") == "accepted")
    # independent reference: the returns with NumPy, the prediction with torch, the rule by hand
    close = bar_data(es).ohlcv[:, 0, 3]
    logs = np.log(close)
    x = np.stack([logs[8:] - logs[8 - 1 - i : len(logs) - 1 - i] for i in range(8)], axis=1) * 1e4
    with torch.no_grad():
        pred = net(torch.from_numpy(x.astype(np.float32))).numpy()[:, 0]
    held, expected = 0.0, []
    for t, p in enumerate(pred, start=8):  # a market order fills at its event's close
        if p > threshold and held == 0.0:
            expected.append((t, 1.0))
            held = 1.0
        elif p < -threshold and held > 0.0:
            expected.append((t, -1.0))
            held = 0.0
    got = list(zip(orders["event_number"].to_list(), orders["qty"].to_list(), strict=True))
    assert len(got) > 20
    assert got == expected
