"""ntlab against vectorbt and backtrader on the same data and rules.

The rule: long-only SMA(10)/SMA(50) crossover on closes, 1 unit, filled at the signal bar's
close, 0.1 % fee per fill. The peers run the reference scripts of ``bench_notebooks/peers``
(the ones the benchmark times) with this test environment's Python, where both are installed
as test extras; their trade lists come from their own trade records.

On synthetic prices (no ties) every trade must agree: times, prices, fees and P&L to 1e-9. On
real cent prices SMA(10) and SMA(50) are sometimes exactly equal; each engine rounds its
averages differently there, so a signal can move by one bar. The real-data test checks that
every disagreement sits at such an exact tie (found in integer cents) and that they are rare.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import ntlab.datasets
from ntlab.backtest import backtest, backtest_signals
from ntlab.data.synthetic import gbm_bars
from ntlab.execution import ExecutionModel
from ntlab.features import batch
from ntlab.strategy.examples import sma_cross

PEERS = Path(__file__).resolve().parent.parent / "bench_notebooks" / "peers"
MODEL = ExecutionModel(fee_bps=10.0)
COLUMNS = ["entry_ts", "exit_ts", "entry_price", "exit_price", "qty", "fees", "pnl"]


def run_peer(script: str, bars: pl.DataFrame, tmp: Path) -> pl.DataFrame:
    """Closed trades of a peer's reference run on ``bars``."""
    src, out = tmp / f"{script}.bars.parquet", tmp / f"{script}.trades.parquet"
    bars.select("ts", "open", "high", "low", "close", "volume").write_parquet(src)
    cmd = [sys.executable, str(PEERS / script), "--bars", str(src), "--out", str(out), "--repeat", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    trades = pl.read_parquet(out).select(COLUMNS)
    return trades.with_columns(pl.col("entry_ts", "exit_ts").dt.cast_time_unit("ns").dt.convert_time_zone("UTC"))


def ours(bars: pl.DataFrame) -> pl.DataFrame:
    """ntlab's closed trades, by the vectorised API (checked equal to the event engine)."""
    close = bars["close"].to_numpy()
    diff = batch("rolling_mean", close, window=10) - batch("rolling_mean", close, window=50)
    prev = np.concatenate([[np.nan], diff[:-1]])
    vector = backtest_signals(bars, (diff > 0) & (prev <= 0), (diff < 0) & (prev >= 0), model=MODEL)
    event = backtest(bars, sma_cross, model=MODEL, fast=10, slow=50)
    assert vector.trades.equals(event.trades)
    return vector.trades.select(COLUMNS)


def assert_same_trades(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.select("entry_ts", "exit_ts").equals(b.select("entry_ts", "exit_ts"))
    for column in ("entry_price", "exit_price", "qty", "fees", "pnl"):
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=column)


@pytest.fixture(scope="module")
def synthetic() -> pl.DataFrame:
    return gbm_bars(50_000, seed=42)


@pytest.mark.parametrize("script", ["sma_vectorbt.py", "sma_backtrader.py"])
def test_synthetic_bars_agree_trade_for_trade(synthetic, script, tmp_path) -> None:  # noqa: ANN001
    mine = ours(synthetic)
    theirs = run_peer(script, synthetic, tmp_path)
    assert mine.height > 500
    assert_same_trades(mine, theirs)


def exact_ties(close: np.ndarray, fast: int = 10, slow: int = 50) -> set[int]:
    """Bars where SMA(fast) == SMA(slow) exactly (integer cents)."""
    cents = np.rint(close * 100).astype(np.int64)
    assert np.allclose(cents / 100, close)
    c = np.concatenate([[0], np.cumsum(cents)])
    t = np.arange(slow - 1, close.size)
    equal = (c[t + 1] - c[t + 1 - fast]) * slow == (c[t + 1] - c[t + 1 - slow]) * fast
    return set(t[equal].tolist())


@pytest.mark.parametrize("script", ["sma_vectorbt.py", "sma_backtrader.py"])
def test_real_spy_minutes_agree_but_at_exact_ties(script, tmp_path) -> None:  # noqa: ANN001
    spy = ntlab.datasets.load("spy_1min")
    mine, theirs = ours(spy), run_peer(script, spy, tmp_path)
    ts = spy["ts"].dt.epoch("ns").to_numpy()
    ties = exact_ties(spy["close"].to_numpy())
    near = {int(ts[i]) for t in ties for i in (t, t + 1) if i < ts.size}

    def keyed(frame: pl.DataFrame) -> dict[tuple[int, int], dict]:
        rows = frame.with_columns(pl.col("entry_ts", "exit_ts").dt.epoch("ns")).iter_rows(named=True)
        return {(r["entry_ts"], r["exit_ts"]): r for r in rows}

    a, b = keyed(mine), keyed(theirs)
    same = a.keys() & b.keys()
    assert len(same) >= 0.95 * max(len(a), len(b)) and len(ties) > 0
    for key in same:
        for column in ("entry_price", "exit_price", "fees", "pnl"):
            assert a[key][column] == pytest.approx(b[key][column], rel=1e-9, abs=1e-12)
    # A differing trade must start or end at a tie (or the bar after), or share its start or
    # its end with a differing trade of the other engine (the tie moved its other end).
    only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
    for mine_only, other_only in ((only_a, only_b), (only_b, only_a)):
        for entry, exit_ in mine_only:
            shares = any(entry == e or exit_ == x for e, x in other_only)
            assert entry in near or exit_ in near or shares, f"trade {entry}->{exit_} differs away from any exact tie"
