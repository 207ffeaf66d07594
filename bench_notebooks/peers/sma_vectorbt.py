"""Reference run: long-only SMA(fast)/SMA(slow) crossover in vectorbt (run in .peers/vectorbt).

    .peers/vectorbt/bin/python bench_notebooks/peers/sma_vectorbt.py \
        --bars /tmp/spy_1min.parquet --out /tmp/vbt_spy.parquet [--timing /tmp/vbt_spy.json]

Rule (shared by all sma_*.py): SMA = simple rolling mean of close with min_periods = window
(vectorbt's own ``vbt.MA``). Entry at bar t when fast[t] > slow[t] and fast[t-1] <= slow[t-1];
exit when fast[t] < slow[t] and fast[t-1] >= slow[t-1] (a NaN on either bar = no signal). Fill
at bar t's close, ``size`` units (``size_type="amount"``), fee = fee * price * size per fill,
``init_cash`` large. ``direction="longonly"`` + ``accumulate=False``: an entry is only taken when
flat, an exit only when long. A position open at the end stays open (JSON ``open_position``).

The cross is written out explicitly rather than with ``MA.ma_crossed_above``: vectorbt's cross
functions remember a "was strictly below" state, so they do not fire for
above -> equal -> above, which the rule (``<=`` on t-1) does.

Timing: ``backtest_s`` = median over ``--repeat`` runs of MA + signals + ``from_signals`` +
trade-record extraction, after one warm-up run (the first Numba compile; ``warmup_s``). The
DatetimeIndex given to vectorbt is tz-naive UTC (a tz-aware one is ~50x slower under pandas 3).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# run.py (next to this file, standard library only) holds the CLI contract shared by sma_*.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as peers


def backtest(close, fast: int, slow: int, fee: float, size: float, init_cash: float,
             eps: float = 0.0):
    import numpy as np
    import vectorbt as vbt

    f = vbt.MA.run(close, window=fast).ma.to_numpy()
    s = vbt.MA.run(close, window=slow).ma.to_numpy()
    d = f - s  # sign-exact: f - s > 0  <=>  f > s
    dp = np.empty_like(d)
    dp[0] = np.nan
    dp[1:] = d[:-1]
    # NaN compares False, so "both SMAs defined at t-1 and t" is implied.
    entries = (d > eps) & (dp <= eps)
    exits = (d < -eps) & (dp >= -eps)
    pf = vbt.Portfolio.from_signals(
        close, entries, exits,
        price=close,  # fill at the signal bar's close
        size=size, size_type="amount",
        fees=fee, fixed_fees=0.0, slippage=0.0,
        init_cash=init_cash,
        direction="longonly", accumulate=False,
        freq="1min",
    )
    return pf, pf.trades.values  # structured array, dtype vectorbt.portfolio.enums.trade_dt


def main(argv=None) -> dict:
    args = peers.parse_args(__doc__.splitlines()[0], argv)
    import numpy as np
    import pandas as pd
    import vectorbt as vbt
    from vectorbt.portfolio.enums import TradeStatus

    t0 = time.perf_counter()
    bars = peers.read_bars(args.bars)
    ts_utc = pd.DatetimeIndex(bars["ts"])
    close = pd.Series(bars["close"].to_numpy(), index=ts_utc.tz_convert(None), name="close")
    load_s = time.perf_counter() - t0

    (_pf, rec), timing = peers.timed_runs(
        lambda: backtest(close, args.fast, args.slow, args.fee, args.size, args.init_cash,
                         args.eps),
        repeat=args.repeat, warmup=True)

    closed = rec[rec["status"] == TradeStatus.Closed]
    opened = rec[rec["status"] == TradeStatus.Open]
    trades = pd.DataFrame({
        "entry_ts": ts_utc[closed["entry_idx"]],
        "exit_ts": ts_utc[closed["exit_idx"]],
        "entry_price": closed["entry_price"],
        "exit_price": closed["exit_price"],
        "qty": closed["size"],
        "fees": closed["entry_fees"] + closed["exit_fees"],
        "pnl": closed["pnl"],
    })
    open_position = None
    if len(opened):
        o = opened[-1]
        open_position = {"entry_ts": ts_utc[int(o["entry_idx"])].isoformat(),
                         "entry_price": float(o["entry_price"]), "qty": float(o["size"]),
                         "entry_fees": float(o["entry_fees"])}
    return peers.write_results(
        args, trades, peer="vectorbt",
        versions={"vectorbt": vbt.__version__, "numpy": np.__version__,
                  "pandas": pd.__version__, "numba": __import__("numba").__version__},
        n_bars=len(bars), timing={"load_s": load_s, **timing}, open_position=open_position,
        notes=["SMA: vbt.MA (rolling mean via a running cumulative sum, minp=window)",
               ("signals: explicit cross rule; fills: from_signals at close, longonly, "
                "accumulate=False")])


if __name__ == "__main__":
    info = main()
    print(f"vectorbt: {info['n_trades']} closed trades, pnl {info['total_pnl']:.6f}, "
          f"backtest {info['backtest_s']:.3f} s, open={info['open_position'] is not None}")
