"""Reference run: long-only SMA(fast)/SMA(slow) crossover in backtrader (run in .peers/backtrader).

    .peers/backtrader/bin/python bench_notebooks/peers/sma_backtrader.py \
        --bars /tmp/spy_1min.parquet --out /tmp/bt_spy.parquet [--timing /tmp/bt_spy.json]

Rule (shared by all sma_*.py): SMA = ``bt.indicators.SimpleMovingAverage`` of close (NaN during
the warm-up; backtrader sums each window with ``math.fsum``). Entry at bar t when
fast[t] > slow[t] and fast[t-1] <= slow[t-1]; exit when fast[t] < slow[t] and
fast[t-1] >= slow[t-1] (NaN on either bar = no signal). The cross is written out, not taken from
``bt.ind.CrossOver``, whose tie handling differs. Orders: market, ``size`` units, entry only when
flat, exit (``close()``) only when long. Broker: cash ``init_cash``, Cheat-On-Close
(``broker.set_coc(True)``: a market order placed in ``next()`` of bar t is filled at bar t's close
and stamped with bar t's time), commission ``fee`` as a fraction of notional (COMM_PERC,
percabs, stock-like).

Final-bar caveat: with coc the fill itself happens in the broker step of the *next* bar, so an
order placed on the last bar never fills. By default this script appends one sentinel bar (a copy
of the last bar, one bar-interval later) on which the strategy does nothing: it only lets the
broker fill the last real bar's order at that bar's close. ``--no-flush`` turns this off (then a
signal on the final bar is dropped; the JSON's ``final_bar_flush`` says which).

Numbers written are backtrader's own: pnl = ``Trade.pnlcomm``, fees = ``Trade.commission``,
prices/timestamps from the entry and exit orders' ``executed`` fields (``Trade.dtopen`` and
``dtclose`` are the bar on which the broker ran the fill, i.e. one bar late under coc).

Timing: ``backtest_s`` = median over ``--repeat`` fresh ``Cerebro.run()`` calls (including
backtrader's own PandasData preload, reported on its own as ``preload_s``); building the
pandas frame from Parquet is ``load_s``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

# run.py (next to this file, standard library only) holds the CLI contract shared by sma_*.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
import backtrader as bt
import run as peers


class TimedPandasData(bt.feeds.PandasData):
    """PandasData that records how long its preload (backtrader's data ingestion) takes."""

    preload_s = 0.0

    def preload(self):
        t0 = time.perf_counter()
        out = super().preload()
        TimedPandasData.preload_s = time.perf_counter() - t0
        return out


class SmaCross(bt.Strategy):
    params = (("fast", 10), ("slow", 50), ("size", 1.0), ("eps", 0.0), ("n_real", None))

    def __init__(self):
        self.fast = bt.indicators.SimpleMovingAverage(self.data.close, period=self.p.fast)
        self.slow = bt.indicators.SimpleMovingAverage(self.data.close, period=self.p.slow)
        self.closed_trades = []  # closed bt.Trade objects (tradehistory=True)
        self.open_trade = None

    def next(self):
        if self.p.n_real is not None and len(self.data) > self.p.n_real:
            return  # sentinel bar: only there to let the broker fill the last bar's order
        f0, s0, f1, s1 = self.fast[0], self.slow[0], self.fast[-1], self.slow[-1]
        if math.isnan(f1) or math.isnan(s1) or math.isnan(f0) or math.isnan(s0):
            return
        d0, d1, eps = f0 - s0, f1 - s1, self.p.eps  # sign-exact: f0 - s0 > 0  <=>  f0 > s0
        if not self.position:
            if d0 > eps and d1 <= eps:
                self.buy(size=self.p.size)
        elif d0 < -eps and d1 >= -eps:
            self.close()

    def notify_trade(self, trade):
        if trade.isclosed:
            self.closed_trades.append(trade)
            self.open_trade = None
        elif trade.justopened:
            self.open_trade = trade


def backtest(df, args, n_real):
    cerebro = bt.Cerebro(stdstats=False, tradehistory=True)
    cerebro.adddata(TimedPandasData(dataname=df, datetime=None, open="open", high="high",
                                    low="low", close="close", volume="volume",
                                    openinterest=None))
    cerebro.addstrategy(SmaCross, fast=args.fast, slow=args.slow, size=args.size,
                        eps=args.eps, n_real=n_real)
    cerebro.broker.setcash(args.init_cash)
    cerebro.broker.set_coc(True)
    cerebro.broker.setcommission(commission=args.fee, commtype=bt.CommInfoBase.COMM_PERC,
                                 percabs=True, stocklike=True)
    (strat,) = cerebro.run()
    return strat, TimedPandasData.preload_s


def main(argv=None) -> dict:
    args = peers.parse_args(__doc__.splitlines()[0], argv, extra=lambda p: p.add_argument(
        "--no-flush", action="store_true",
        help="do not append the sentinel bar (a signal on the final bar then never fills)"))
    args.flush = not args.no_flush

    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    bars = peers.read_bars(args.bars)
    ts_utc = pd.DatetimeIndex(bars["ts"])
    df = bars.set_index(pd.DatetimeIndex(ts_utc.tz_convert(None), name="datetime")).drop(
        columns="ts")
    n_real = len(df)
    if args.flush:
        step = df.index[-1] - df.index[-2] if n_real > 1 else pd.Timedelta(minutes=1)
        sentinel = df.iloc[[-1]].copy()
        sentinel.index = sentinel.index + step
        df = pd.concat([df, sentinel])
    load_s = time.perf_counter() - t0

    preload = []

    def one():
        strat, pre = backtest(df, args, n_real if args.flush else None)
        preload.append(pre)
        return strat

    if n_real <= args.slow:
        # No cross is possible (it needs slow + 1 bars), and backtrader's vectorised (runonce)
        # SMA raises IndexError on data shorter than its period: report zero trades.
        return peers.write_results(
            args, pd.DataFrame({c: [] for c in peers.TRADE_COLUMNS}), peer="backtrader",
            versions={"backtrader": bt.__version__}, n_bars=n_real,
            timing={"load_s": load_s, "backtest_s": None, "backtest_runs_s": []},
            open_position=None, notes=["fewer bars than slow + 1: not run, no signal possible"])

    strat, timing = peers.timed_runs(one, repeat=args.repeat, warmup=False)
    timing["preload_s"] = sorted(preload)[len(preload) // 2]

    ts_naive = pd.DatetimeIndex(df.index[:n_real])

    def bar_ts(num: float) -> pd.Timestamp:
        # backtrader keeps datetimes as float days: map back to the exact input bar
        t = pd.Timestamp(bt.num2date(num)).round("ms")
        i = ts_naive.searchsorted(t)
        if i >= n_real or ts_naive[i] != t:
            raise RuntimeError(f"fill time {t} is not a bar time")
        return ts_utc[i]

    rows = []
    for tr in strat.closed_trades:
        entry_o = tr.history[0].event.order
        exit_o = tr.history[-1].event.order
        rows.append({
            "entry_ts": bar_ts(entry_o.executed.dt), "exit_ts": bar_ts(exit_o.executed.dt),
            "entry_price": entry_o.executed.price, "exit_price": exit_o.executed.price,
            "qty": abs(tr.history[0].event.size), "fees": tr.commission, "pnl": tr.pnlcomm,
        })
    trades = pd.DataFrame(rows, columns=list(peers.TRADE_COLUMNS))
    if not rows:
        trades = trades.astype({c: "float64" for c in peers.TRADE_COLUMNS[2:]})
        trades["entry_ts"] = pd.to_datetime(trades["entry_ts"], utc=True)
        trades["exit_ts"] = pd.to_datetime(trades["exit_ts"], utc=True)
    open_position = None
    if strat.open_trade is not None:
        o = strat.open_trade.history[0].event.order
        open_position = {"entry_ts": bar_ts(o.executed.dt).isoformat(),
                         "entry_price": float(o.executed.price),
                         "qty": float(strat.open_trade.size),
                         "entry_fees": float(strat.open_trade.commission)}
    return peers.write_results(
        args, trades, peer="backtrader",
        versions={"backtrader": bt.__version__, "numpy": np.__version__,
                  "pandas": pd.__version__},
        n_bars=n_real, timing={"load_s": load_s, **timing, "final_bar_flush": args.flush},
        open_position=open_position,
        notes=["SMA: bt.indicators.SimpleMovingAverage (math.fsum per window)",
               "fills: broker coc at the signal bar's close; "
               + ("sentinel bar appended so a final-bar signal fills" if args.flush
                  else "no sentinel: a signal on the final bar is never filled")])


if __name__ == "__main__":
    info = main()
    secs = "not run" if info["backtest_s"] is None else (
        f"{info['backtest_s']:.3f} s (preload {info['preload_s']:.3f} s)")
    print(f"backtrader: {info['n_trades']} closed trades, pnl {info['total_pnl']:.6f}, "
          f"backtest {secs}, open={info['open_position'] is not None}")
