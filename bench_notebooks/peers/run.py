"""Driver for the peer-backtester reference runs (vectorbt, backtrader, NautilusTrader).

Each peer lives in its own virtualenv under ``<repo>/.peers/<peer>/`` (made by
``bench_notebooks/peers/setup_peers.sh``) and each reference run is a CLI script in this folder
that is executed *inside* that venv as a subprocess::

    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("peers_run", "bench_notebooks/peers/run.py")
    peers_run = importlib.util.module_from_spec(spec); spec.loader.exec_module(peers_run)
    info = peers_run.run_peer("vectorbt", "sma_vectorbt.py", "/tmp/bars.parquet",
                              "/tmp/vbt.parquet", fast=10, slow=50, repeat=3)

This file is standard-library only so that it imports in the ntlab venv *and* in every peer venv:
the second half holds the small CLI contract the ``sma_*.py`` scripts share (arguments, output
schema, the results/timing JSON).

The common contract of every ``sma_<peer>.py``::

    python sma_<peer>.py --bars IN.parquet --out OUT.parquet
                         [--fast 10 --slow 50 --fee 0.001 --size 1 --init-cash 1e9]
                         [--eps 0] [--timing OUT.json] [--repeat 3]

* IN: ts (timestamp[ns, UTC]), open, high, low, close, volume (float64), one symbol, sorted.
* OUT (Parquet): the *closed* round-trip trades, one row each, the peer's own numbers:
  entry_ts, exit_ts (timestamp[ns, UTC], the signal bar's ts), entry_price, exit_price, qty,
  fees (entry + exit fee), pnl (net of both fees).
* JSON (``--timing``, default OUT with suffix ``.json``): peer, versions, n_bars, params,
  backtest_s (median of the timed runs), backtest_runs_s, warmup_s, load_s, peak_rss_mb,
  n_trades, total_pnl, total_fees, and ``open_position`` (a position still open at the end is
  NOT closed and NOT in OUT; it is reported here as entry_ts/entry_price/qty/entry_fees, or null).
  Peer-specific extras: vectorbt ``warmup_s`` (the untimed first run = Numba compile/cache
  load); backtrader ``preload_s`` (its PandasData preload, part of ``backtest_s``) and
  ``final_bar_flush``; nautilus ``wrangle_s``, ``add_data_s`` (outside ``backtest_s``) and
  ``price_precision``.

Ties. On cent-priced data (SPY) fast == slow happens exactly in decimal arithmetic, and each peer
computes the SMAs with different float rounding (vectorbt: running cumulative sum; backtrader:
``math.fsum`` per window; nautilus: mean of a deque), so "==" comes out as "<" or ">" depending
on the peer and the signal lands one bar early or late. ``--eps E`` (e.g. 1e-6 for cents) makes
|fast - slow| <= E count as equal in every peer; with it all three agree trade for trade.
Use :func:`compare_trades` (with ``**NAUTILUS_TOL`` when one side is NautilusTrader).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
PEERS = ("vectorbt", "backtrader", "nautilus")
SETUP_SCRIPT = HERE / "setup_peers.sh"

TRADE_COLUMNS = ("entry_ts", "exit_ts", "entry_price", "exit_price", "qty", "fees", "pnl")


# ----------------------------------------------------------------------------- driver side


def peers_dir() -> Path:
    """Root of the peer venvs: ``$PEERS_DIR`` (as for setup_peers.sh) or ``<repo>/.peers``."""
    env = os.environ.get("PEERS_DIR")
    return Path(env) if env else REPO_ROOT / ".peers"


def peer_python(peer: str) -> Path:
    """The Python interpreter of ``peer``'s venv; raises if the venv has not been built."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")
    venv = peers_dir() / peer
    py = venv / "bin" / "python"
    if not py.exists() or not (venv / ".stamp").exists():
        prefix = f"PEERS_DIR={peers_dir()} " if os.environ.get("PEERS_DIR") else ""
        raise FileNotFoundError(
            f"peer venv for {peer!r} is missing or incomplete ({venv}); create it with "
            f"(from {REPO_ROOT}): {prefix}bash {SETUP_SCRIPT.relative_to(REPO_ROOT)} {peer}"
        )
    return py


def run_peer(
    peer: str,
    script: str | os.PathLike[str],
    bars_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    timing_path: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    capture: bool = True,
    input_flag: str = "--bars",
    **kwargs: Any,
) -> dict:
    """Run ``script`` (a name in this folder, or a path) inside ``peer``'s venv.

    ``kwargs`` become CLI options (``fast=10`` -> ``--fast 10``; ``init_cash=1e9`` ->
    ``--init-cash 1e9``; ``True`` -> a bare flag; ``None``/``False`` -> omitted). Raises
    ``subprocess.CalledProcessError`` (with the peer's stderr) when the script fails.
    Returns the results/timing JSON as a dict.
    """
    py = peer_python(peer)
    script_path = Path(script)
    if not script_path.is_absolute() and not script_path.exists():
        script_path = HERE / script_path
    out_path = Path(out_path)
    timing = Path(timing_path) if timing_path is not None else out_path.with_suffix(".json")
    cmd = [str(py), str(script_path), input_flag, str(bars_path), "--out", str(out_path),
           "--timing", str(timing)]
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        cmd.append(flag) if value is True else cmd.extend([flag, str(value)])
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # keep the ntlab venv's paths out of the peer's interpreter
    env.pop("VIRTUAL_ENV", None)
    try:
        subprocess.run(cmd, check=True, env=env, timeout=timeout,
                       capture_output=capture, text=True)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "")[-4000:]
        raise subprocess.CalledProcessError(
            exc.returncode, exc.cmd, output=exc.output,
            stderr=f"{peer} reference run failed:\n{tail}") from None
    return json.loads(timing.read_text())


# NautilusTrader keeps money in cents: per fill, fee = round(round(price * qty, 2) * fee_rate, 2)
# (half up, the notional rounded first), and Position.realized_pnl = round((exit - entry) * qty, 2)
# - fees. Against an unrounded peer that is <= 0.005 + fee_rate * 0.005 per fill on the fee and
# one more half cent on the pnl (fee_rate <= 0.02 assumed here).
NAUTILUS_TOL = {"fees_atol": 2 * 0.00511, "pnl_atol": 3 * 0.00511}


def compare_trades(a, b, *, rtol: float = 1e-9, atol: float = 0.0,
                   fees_atol: float | None = None, pnl_atol: float | None = None) -> dict:
    """Compare two trade lists (Parquet paths or DataFrames with TRADE_COLUMNS).

    Trades are matched on (entry_ts, exit_ts). Prices, qty, fees and pnl must agree to
    ``rtol``/``atol`` (``numpy.isclose``), except that ``fees``/``pnl`` use the absolute
    tolerances ``fees_atol``/``pnl_atol`` per round trip when given (for NautilusTrader, which
    rounds money to the cent, pass ``**NAUTILUS_TOL``). Returns a summary dict with ``equal``
    (bool), counts, the unmatched trades (``only_a``/``only_b``), the matched rows whose numbers
    differ (``mismatched``), the largest absolute difference per column and both total pnls.
    """
    import numpy as np
    import pandas as pd

    da = a if isinstance(a, pd.DataFrame) else pd.read_parquet(a)
    db = b if isinstance(b, pd.DataFrame) else pd.read_parquet(b)
    key = ["entry_ts", "exit_ts"]
    m = da.merge(db, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    only_a = m[m["_merge"] == "left_only"][key]
    only_b = m[m["_merge"] == "right_only"][key]
    both = m[m["_merge"] == "both"]
    bad = np.zeros(len(both), dtype=bool)
    worst = {}
    abs_tol = {"fees": fees_atol, "pnl": pnl_atol}
    for c in TRADE_COLUMNS[2:]:
        x, y = both[f"{c}_a"].to_numpy(), both[f"{c}_b"].to_numpy()
        if abs_tol.get(c) is not None:
            ok = np.abs(x - y) <= abs_tol[c]
        else:
            ok = np.isclose(x, y, rtol=rtol, atol=atol)
        bad |= ~ok
        worst[c] = float(np.max(np.abs(x - y))) if len(x) else 0.0
    return {
        "equal": not (len(only_a) or len(only_b) or bad.any()),
        "n_a": len(da), "n_b": len(db), "n_matched": len(both),
        "only_a": only_a.reset_index(drop=True), "only_b": only_b.reset_index(drop=True),
        "n_mismatched": int(bad.sum()), "mismatched": both[bad].reset_index(drop=True),
        "max_abs_diff": worst,
        "total_pnl_a": float(da["pnl"].sum()), "total_pnl_b": float(db["pnl"].sum()),
    }


# ------------------------------------------------------------------- peer-script side (CLI)


def parse_args(description: str, argv: list[str] | None = None, default_repeat: int = 3,
               extra: Callable[[Any], None] | None = None):
    """The CLI shared by the sma_<peer>.py scripts (``extra(parser)`` adds a peer's options)."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(p)
    p.add_argument("--bars", required=True, type=Path, help="input Parquet (ts, OHLCV)")
    p.add_argument("--out", required=True, type=Path, help="output Parquet of closed trades")
    p.add_argument("--fast", type=int, default=10)
    p.add_argument("--slow", type=int, default=50)
    p.add_argument("--fee", type=float, default=0.001, help="fee rate on traded notional")
    p.add_argument("--size", type=float, default=1.0, help="units per order")
    p.add_argument("--init-cash", type=float, default=1e9)
    p.add_argument("--eps", type=float, default=0.0,
                   help="tie tolerance on fast - slow (0 = the plain rule); with eps > 0, "
                        "'above' is fast - slow > eps, 'below' is fast - slow < -eps, and a "
                        "cross needs the previous bar not above (not below)")
    p.add_argument("--timing", type=Path, default=None,
                   help="results/timing JSON (default: OUT with suffix .json)")
    p.add_argument("--repeat", type=int, default=default_repeat,
                   help="timed runs of the backtest; the median is reported")
    args = p.parse_args(argv)
    if not 0 < args.fast < args.slow:
        p.error("need 0 < fast < slow")
    if args.timing is None:
        args.timing = args.out.with_suffix(".json")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.eps < 0:
        p.error("--eps must be >= 0")
    return args


def read_bars(path: Path):
    """Input bars as a pandas DataFrame (ts: datetime64[ns, UTC]); needs pandas + pyarrow."""
    import pandas as pd

    df = pd.read_parquet(path, columns=["ts", "open", "high", "low", "close", "volume"])
    ts = pd.DatetimeIndex(df["ts"])
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    df["ts"] = ts.as_unit("ns")
    if not df["ts"].is_monotonic_increasing:
        raise ValueError(f"{path}: ts is not sorted")
    for c in ("open", "high", "low", "close", "volume"):
        df[c] = df[c].astype("float64")
    return df.reset_index(drop=True)


def timed_runs(fn: Callable[[], Any], repeat: int, warmup: bool) -> tuple[Any, dict]:
    """Call ``fn`` (optionally once untimed-for-the-median as warm-up), then ``repeat`` times."""
    t = {}
    if warmup:
        t0 = time.perf_counter()
        fn()
        t["warmup_s"] = time.perf_counter() - t0
    runs = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    t["backtest_runs_s"] = runs
    t["backtest_s"] = statistics.median(runs)
    return result, t


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB: VmHWM from /proc (its own memory since exec).

    Not ``ru_maxrss``: on Linux it starts at the parent's peak (kept across fork and exec), so
    a peer started from a 700 MB Jupyter kernel would report at least 700 MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:  # not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_results(args, trades, *, peer: str, versions: dict, n_bars: int, timing: dict,
                  open_position: dict | None, notes: list[str] | None = None) -> dict:
    """Write the closed trades (``trades``: DataFrame with TRADE_COLUMNS) and the JSON."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = pd.DataFrame({c: trades[c] for c in TRADE_COLUMNS})
    for c in ("entry_ts", "exit_ts"):
        ts = pd.DatetimeIndex(df[c])
        df[c] = (ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")).as_unit("ns")
    schema = pa.schema([("entry_ts", pa.timestamp("ns", tz="UTC")),
                        ("exit_ts", pa.timestamp("ns", tz="UTC"))]
                       + [(c, pa.float64()) for c in TRADE_COLUMNS[2:]])
    table = pa.Table.from_pandas(df.reset_index(drop=True), schema=schema, preserve_index=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out)
    info = {
        "peer": peer,
        "versions": {"python": sys.version.split()[0], **versions},
        "bars": str(args.bars),
        "out": str(args.out),
        "n_bars": int(n_bars),
        "params": {"fast": args.fast, "slow": args.slow, "fee": args.fee, "size": args.size,
                   "init_cash": args.init_cash, "eps": args.eps},
        **timing,
        "peak_rss_mb": peak_rss_mb(),
        "n_trades": len(df),
        "total_pnl": float(df["pnl"].sum()),
        "total_fees": float(df["fees"].sum()),
        "open_position": open_position,
        "notes": notes or [],
    }
    args.timing.parent.mkdir(parents=True, exist_ok=True)
    args.timing.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info
