"""Reference run: long-only SMA(fast)/SMA(slow) crossover in NautilusTrader (.peers/nautilus).

    .peers/nautilus/bin/python bench_notebooks/peers/sma_nautilus.py \
        --bars /tmp/spy_1min.parquet --out /tmp/nt_spy.parquet [--timing /tmp/nt_spy.json]

Rule (shared by all sma_*.py): SMA = Nautilus' ``SimpleMovingAverage`` on bar closes (registered
with ``register_indicator_for_bars``; a value only once ``initialized``, i.e. after ``window``
bars). Entry at bar t when fast[t] > slow[t] and fast[t-1] <= slow[t-1]; exit when
fast[t] < slow[t] and fast[t-1] >= slow[t-1] (no signal unless both SMAs are initialized at t-1
and t). Market orders of ``size`` units; entry only when flat, exit (``close_all_positions``)
only when long. A position open at the end stays open (JSON ``open_position``).

Set-up: one ``Equity`` instrument ASSET.SIM (price precision: the fewest decimals that hold every
input price exactly, up to 12; size precision 0, so ``--size`` must be a whole number),
``taker_fee = fee`` with the default ``MakerTakerFeeModel`` (fee = fee * notional per fill,
rounded by Nautilus to the cent: USD ``Money`` has 2 decimals). Venue SIM: HEDGING OMS (each
round trip is its own ``Position``), CASH account with ``init_cash`` USD, L1 book, default
``FillModel`` (no slippage). Bars: ``ASSET.SIM-1-MINUTE-LAST-EXTERNAL``, built by
``BarDataWrangler`` with ts_event = ts_init = the input ts.

Why fills are at the signal bar's close: with ``bar_execution=True`` the simulated exchange
replays each bar as trades O -> H -> L -> C *before* the data engine hands the bar to the
strategy (``BacktestEngine._run``: ``exchange.process_bar`` -> ``data_engine.process`` ->
``exchange.process(ts)``), so when ``on_bar`` runs the L1 book was last updated by the close
trade; the market order submitted there is matched in the same iteration, i.e. at the close,
stamped with the bar's ts (checked: every fill price equals the signal bar's close). The size
at the close is max(volume / 4, 1 lot), so a 1-lot order never walks the book.

Numbers written are Nautilus' own: per closed ``Position``: ts_opened/ts_closed, avg_px_open,
avg_px_close, peak_qty, commissions() (entry + exit), realized_pnl (net of commissions).

Timing: ``backtest_s`` = median over ``--repeat`` of ``BacktestEngine.run()`` on a fresh engine
(log level ERROR, ``run_analysis=False``); wrangling Parquet rows into ``Bar`` objects is
``wrangle_s`` and ``engine.add_data`` is ``add_data_s`` (both outside ``backtest_s``).
"""

from __future__ import annotations

import math
import sys
import time
from decimal import Decimal
from pathlib import Path

# run.py (next to this file, standard library only) holds the CLI contract shared by sma_*.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as peers
from nautilus_trader.config import StrategyConfig
from nautilus_trader.indicators import SimpleMovingAverage
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


class SmaCrossConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    fast: int = 10
    slow: int = 50
    size: int = 1
    eps: float = 0.0


class SmaCross(Strategy):
    def __init__(self, config: SmaCrossConfig) -> None:
        super().__init__(config)
        self.fast = SimpleMovingAverage(config.fast)
        self.slow = SimpleMovingAverage(config.slow)
        self.prev_d = math.nan
        self.qty = None

    def on_start(self) -> None:
        instrument = self.cache.instrument(self.config.instrument_id)
        self.qty = instrument.make_qty(self.config.size)
        self.register_indicator_for_bars(self.config.bar_type, self.fast)
        self.register_indicator_for_bars(self.config.bar_type, self.slow)
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        if not (self.fast.initialized and self.slow.initialized):
            return
        d = self.fast.value - self.slow.value  # sign-exact: d > 0  <=>  fast > slow
        prev, self.prev_d = self.prev_d, d  # prev is NaN on the first initialized bar
        eps = self.config.eps
        iid = self.config.instrument_id
        if self.portfolio.is_flat(iid):
            if d > eps and prev <= eps:
                self.submit_order(self.order_factory.market(iid, OrderSide.BUY, self.qty))
        elif self.portfolio.is_net_long(iid) and d < -eps and prev >= -eps:
            self.close_all_positions(iid)


def price_precision(df, cols=("open", "high", "low", "close"), max_p: int = 12) -> int:
    """Fewest decimals p (<= max_p) such that every price is an exact multiple of 10**-p."""
    import numpy as np

    x = np.concatenate([df[c].to_numpy() for c in cols])
    for p in range(max_p + 1):
        y = x * 10.0**p
        if np.all(np.abs(y - np.rint(y)) <= 1e-6):
            return p
    return max_p


def make_engine(args, instrument, bar_type, bars):
    from nautilus_trader.backtest.engine import BacktestEngine
    from nautilus_trader.config import BacktestEngineConfig, LoggingConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money

    engine = BacktestEngine(BacktestEngineConfig(
        trader_id="BACKTESTER-001",
        logging=LoggingConfig(log_level="ERROR"),
        run_analysis=False,
    ))
    engine.add_venue(
        venue=Venue("SIM"),
        oms_type=OmsType.HEDGING,
        account_type=AccountType.CASH,
        base_currency=USD,
        starting_balances=[Money(args.init_cash, USD)],
        bar_execution=True,
    )
    engine.add_instrument(instrument)
    t0 = time.perf_counter()
    engine.add_data(bars)
    add_data_s = time.perf_counter() - t0
    engine.add_strategy(SmaCross(SmaCrossConfig(
        instrument_id=instrument.id, bar_type=bar_type, fast=args.fast, slow=args.slow,
        size=int(args.size), eps=args.eps)))
    return engine, add_data_s


def main(argv=None) -> dict:
    args = peers.parse_args(__doc__.splitlines()[0], argv)
    if args.size != int(args.size) or args.size < 1:
        raise SystemExit("sma_nautilus: --size must be a whole number >= 1 (Equity lots)")
    import nautilus_trader
    import numpy as np
    import pandas as pd
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.identifiers import Symbol
    from nautilus_trader.model.instruments import Equity
    from nautilus_trader.model.objects import Price, Quantity
    from nautilus_trader.persistence.wranglers import BarDataWrangler

    t0 = time.perf_counter()
    bars_df = peers.read_bars(args.bars)
    load_s = time.perf_counter() - t0
    p = price_precision(bars_df)
    iid = InstrumentId.from_str("ASSET.SIM")
    instrument = Equity(
        instrument_id=iid, raw_symbol=Symbol("ASSET"), currency=USD,
        price_precision=p, price_increment=Price(10.0**-p, p), lot_size=Quantity.from_int(1),
        ts_event=0, ts_init=0, maker_fee=Decimal(str(args.fee)), taker_fee=Decimal(str(args.fee)),
    )
    bar_type = BarType.from_str("ASSET.SIM-1-MINUTE-LAST-EXTERNAL")
    t0 = time.perf_counter()
    frame = bars_df.set_index("ts")[["open", "high", "low", "close", "volume"]]
    bars = BarDataWrangler(bar_type, instrument).process(frame)
    wrangle_s = time.perf_counter() - t0

    runs, add_data = [], []
    engine = None
    for _ in range(args.repeat):
        if engine is not None:
            engine.dispose()
        engine, add_s = make_engine(args, instrument, bar_type, bars)
        add_data.append(add_s)
        t0 = time.perf_counter()
        engine.run()
        runs.append(time.perf_counter() - t0)
    timing = {"load_s": load_s, "wrangle_s": wrangle_s, "add_data_s": float(np.median(add_data)),
              "backtest_runs_s": runs, "backtest_s": float(np.median(runs)),
              "price_precision": p}

    cache = engine.cache

    def utc(ns: int) -> pd.Timestamp:
        return pd.Timestamp(ns, unit="ns", tz="UTC")

    def fees(pos) -> float:
        (c,) = pos.commissions()  # one currency (USD)
        return c.as_double()

    closed = sorted(cache.positions_closed(), key=lambda q: q.ts_opened)
    ts_dtype = "datetime64[ns, UTC]"
    trades = pd.DataFrame({
        "entry_ts": pd.DatetimeIndex([utc(q.ts_opened) for q in closed], dtype=ts_dtype),
        "exit_ts": pd.DatetimeIndex([utc(q.ts_closed) for q in closed], dtype=ts_dtype),
        "entry_price": np.array([q.avg_px_open for q in closed], dtype=np.float64),
        "exit_price": np.array([q.avg_px_close for q in closed], dtype=np.float64),
        "qty": np.array([q.peak_qty.as_double() for q in closed], dtype=np.float64),
        "fees": np.array([fees(q) for q in closed], dtype=np.float64),
        "pnl": np.array([q.realized_pnl.as_double() for q in closed], dtype=np.float64),
    })
    open_positions = cache.positions_open()
    open_position = None
    if open_positions:
        q = open_positions[-1]
        open_position = {"entry_ts": utc(q.ts_opened).isoformat(),
                         "entry_price": float(q.avg_px_open), "qty": q.quantity.as_double(),
                         "entry_fees": fees(q)}
    n_orders = len(cache.orders())
    engine.dispose()
    return peers.write_results(
        args, trades, peer="nautilus",
        versions={"nautilus_trader": nautilus_trader.__version__, "numpy": np.__version__,
                  "pandas": pd.__version__},
        n_bars=len(bars_df), timing=timing, open_position=open_position,
        notes=["SMA: nautilus_trader.indicators.SimpleMovingAverage (mean of a deque)",
               ("fills: bar_execution replays O-H-L-C before on_bar; market order matched "
                "at the close in the same iteration"),
               f"fees rounded to cents per fill (USD Money); {n_orders} orders"])


if __name__ == "__main__":
    info = main()
    print(f"nautilus: {info['n_trades']} closed trades, pnl {info['total_pnl']:.6f}, "
          f"backtest {info['backtest_s']:.3f} s, open={info['open_position'] is not None}")
