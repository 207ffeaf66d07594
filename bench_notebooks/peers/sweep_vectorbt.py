"""Benchmark W2: a 100-combination SMA-crossover parameter sweep in vectorbt (.peers/vectorbt).

    .peers/vectorbt/bin/python bench_notebooks/peers/sweep_vectorbt.py \
        --bars /tmp/bars_100k.parquet --out /tmp/vbt_sweep.parquet \
        [--timing /tmp/vbt_sweep.json] [--repeat 3] [--fee 0.001]

Grid: fast windows 5, 10, ..., 50 (10 values) x slow windows 20, 40, ..., 200 (10 values) = 100
combinations, all of them kept, including fast >= slow (the rule is the same for every pair).

Rule per combination (as in ``sma_*.py``): SMA = ``vbt.MA`` (simple rolling mean of close,
min_periods = window). Entry at bar t when fast[t] > slow[t] and fast[t-1] <= slow[t-1]; exit
when fast[t] < slow[t] and fast[t-1] >= slow[t-1] (a NaN on either bar = no signal; the cross
is written out explicitly because vectorbt's ``ma_crossed_above`` does not fire for
above -> equal -> above). Fill at bar t's close, ``size`` units (``size_type="amount"``),
fee = fee * price * size per fill, ``init_cash`` per column (no cash sharing),
``direction="longonly"`` + ``accumulate=False``. A position open at the end stays open: it is not
a trade in ``n_trades``/``total_pnl`` but is marked to the last close in ``final_value``.

The vectorbt way: every combination is a column. ``vbt.MA.run`` gets the 100 fast windows
(``np.repeat``) and, once more, the 100 slow windows (``np.tile``); its cache function computes
each distinct window once (10 + 10 rolling means) and hands out columns. The signals are a
100-column boolean array and a single ``Portfolio.from_signals`` simulates all 100 columns.

OUT (Parquet): one row per combination, in grid order (fast-major): fast, slow (int64),
n_trades (int64; closed trades from vectorbt's trade records), total_pnl (float64; sum of the
closed trades' ``pnl``, net of both fees), final_value (float64; ``Portfolio.final_value()``).

JSON (``--timing``, default OUT with suffix ``.json``): peer, benchmark, versions (incl. the
engine: numba unless ``vectorbt_rust`` is installed), n_bars, n_combinations, params, load_s,
warmup_s, backtest_runs_s, backtest_s, peak_rss_mb, n_trades (sum over combinations), n_open
(combinations ending with an open position), total_pnl (sum over combinations).

Timing: ``backtest_s`` = median over ``--repeat`` runs of MA + signals + ``from_signals`` +
per-column trade stats (closed-trade count and pnl sum, final value), after one warm-up run (the
first Numba compile/cache load; ``warmup_s``). Reading the Parquet is ``load_s``, outside. The
DatetimeIndex given to vectorbt is tz-naive UTC (a tz-aware one is much slower under pandas 3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# run.py (next to this file, standard library only) holds the helpers shared by the peer scripts
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as peers

FAST_WINDOWS = tuple(range(5, 51, 5))  # 5..50 step 5
SLOW_WINDOWS = tuple(range(20, 201, 20))  # 20..200 step 20


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", required=True, type=Path, help="input Parquet (ts, OHLCV)")
    p.add_argument("--out", required=True, type=Path,
                   help="output Parquet, one row per combination")
    p.add_argument("--fee", type=float, default=0.001, help="fee rate on traded notional")
    p.add_argument("--size", type=float, default=1.0, help="units per order")
    p.add_argument("--init-cash", type=float, default=1e9)
    p.add_argument("--timing", type=Path, default=None,
                   help="results/timing JSON (default: OUT with suffix .json)")
    p.add_argument("--repeat", type=int, default=3,
                   help="timed runs of the sweep; the median is reported")
    args = p.parse_args(argv)
    if args.timing is None:
        args.timing = args.out.with_suffix(".json")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def sweep(close, fast_windows, slow_windows, fee: float, size: float, init_cash: float):
    """All len(fast) * len(slow) combinations at once; returns (pf, per-column stats dict)."""
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    fw = np.repeat(np.asarray(fast_windows), len(slow_windows))
    sw = np.tile(np.asarray(slow_windows), len(fast_windows))
    f = vbt.MA.run(close, window=fw, short_name="fast").ma.to_numpy()  # (n_bars, 100)
    s = vbt.MA.run(close, window=sw, short_name="slow").ma.to_numpy()
    d = f - s  # sign-exact: f - s > 0  <=>  f > s
    dp = np.empty_like(d)
    dp[0] = np.nan
    dp[1:] = d[:-1]
    # NaN compares False, so "both SMAs defined at t-1 and t" is implied.
    columns = pd.MultiIndex.from_arrays([fw, sw], names=["fast", "slow"])
    entries = pd.DataFrame((d > 0) & (dp <= 0), index=close.index, columns=columns)
    exits = pd.DataFrame((d < 0) & (dp >= 0), index=close.index, columns=columns)
    pf = vbt.Portfolio.from_signals(
        close, entries, exits,
        price=close,  # fill at the signal bar's close
        size=size, size_type="amount",
        fees=fee, fixed_fees=0.0, slippage=0.0,
        init_cash=init_cash,
        direction="longonly", accumulate=False,
        freq="1min",
    )
    closed = pf.trades.closed
    stats = {
        "fast": fw.astype(np.int64),
        "slow": sw.astype(np.int64),
        "n_trades": closed.count().to_numpy().astype(np.int64),
        "total_pnl": closed.pnl.sum().to_numpy().astype(np.float64),
        "final_value": pf.final_value().to_numpy().astype(np.float64),
    }
    return pf, stats


def main(argv=None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import vectorbt as vbt
    from vectorbt._engine import is_rust_available

    t0 = time.perf_counter()
    bars = peers.read_bars(args.bars)
    ts_utc = pd.DatetimeIndex(bars["ts"])
    close = pd.Series(bars["close"].to_numpy(), index=ts_utc.tz_convert(None), name="close")
    load_s = time.perf_counter() - t0

    (pf, stats), timing = peers.timed_runs(
        lambda: sweep(close, FAST_WINDOWS, SLOW_WINDOWS, args.fee, args.size, args.init_cash),
        repeat=args.repeat, warmup=True)

    n_open = int(np.count_nonzero(pf.trades.open.count().to_numpy()))
    schema = pa.schema([("fast", pa.int64()), ("slow", pa.int64()), ("n_trades", pa.int64()),
                        ("total_pnl", pa.float64()), ("final_value", pa.float64())])
    table = pa.Table.from_pydict(stats, schema=schema)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out)

    info = {
        "peer": "vectorbt",
        "benchmark": "W2 sma-crossover sweep",
        "versions": {"python": sys.version.split()[0], "vectorbt": vbt.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__,
                     "numba": __import__("numba").__version__,
                     "engine": "rust" if is_rust_available() else "numba"},
        "bars": str(args.bars),
        "out": str(args.out),
        "n_bars": len(bars),
        "n_combinations": int(table.num_rows),
        "params": {"fast_windows": list(FAST_WINDOWS), "slow_windows": list(SLOW_WINDOWS),
                   "fee": args.fee, "size": args.size, "init_cash": args.init_cash},
        "load_s": load_s,
        **timing,
        "peak_rss_mb": peers.peak_rss_mb(),
        "n_trades": int(stats["n_trades"].sum()),
        "n_open": n_open,
        "total_pnl": float(stats["total_pnl"].sum()),
        "notes": [("SMA: vbt.MA over repeated/tiled windows (its cache computes each distinct "
                   "window once); explicit cross rule; one from_signals over all columns, "
                   "longonly, accumulate=False, fills at the signal bar's close"),
                  "fast >= slow combinations kept (same rule)"],
    }
    args.timing.parent.mkdir(parents=True, exist_ok=True)
    args.timing.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info


if __name__ == "__main__":
    info = main()
    print(f"vectorbt sweep: {info['n_combinations']} combinations, {info['n_trades']} closed "
          f"trades, backtest {info['backtest_s']:.3f} s (warm-up {info['warmup_s']:.2f} s)")
