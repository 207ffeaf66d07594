"""Benchmark W3: price/EMA cross on trade ticks in NautilusTrader (run in .peers/nautilus).

    .peers/nautilus/bin/python bench_notebooks/peers/ema_ticks_nautilus.py \
        --ticks /tmp/ticks_1m.parquet --out /tmp/nt_ema_ticks.parquet \
        [--timing /tmp/nt_ema_ticks.json] [--repeat 3] [--span 100] [--fee 0] \
        [--size 1] [--init-cash 1e9] [--oms netting|hedging]

IN (Parquet): ts (timestamp[ns, UTC]), price, size (float64), one instrument, sorted by ts (equal
stamps allowed; their file order is kept: ``BacktestEngine.add_data`` sorts stably by ts_init).

Rule: a Python ``Strategy`` gets every ``TradeTick``. EMA = Nautilus'
``ExponentialMovingAverage(span)`` registered with ``register_indicator_for_trade_ticks`` (updated
before ``on_trade_tick``): alpha = 2 / (span + 1), then value = alpha * price + (1 - alpha) *
value from the first price on, i.e. pandas ``ewm(span, adjust=False)``, used once its
``initialized`` flag is set (after ``span`` ticks), as ntlab's ``ema_cross`` (pandas
``min_periods=span``). With d = price - EMA on each tick: entry (market BUY ``size``) when
d > 0, the previous tick's d <= 0 and flat (``portfolio.is_flat``); exit (market SELL ``size``)
when d < 0, the previous tick's d >= 0 and long (``portfolio.is_net_long``); no signal while
either d is undefined. A position open at the end stays open (JSON ``open_position``).
Checked against pandas (``ewm(span=100, adjust=False, min_periods=100)`` and the same state
machine): the same fills, tick for tick, on 100 k and 1 M synthetic ticks.

OMS. Default ``--oms netting``: one netting ``Position`` per instrument, the exit is a plain
market SELL of ``size``. ``--oms hedging`` (as in ``sma_nautilus.py``: one ``Position`` per round
trip) exits with ``close_all_positions``; same fills, but Nautilus' cache answers
``positions_open(instrument, strategy)`` by intersecting index sets that hold every position ever
opened, so each order costs O(round trips so far) and the run is quadratic (300 k ticks / 48 k
orders: 26 s hedging vs 15 s netting; 100 k: 5 s both). ``close_all_positions`` under netting is
superlinear too (it is not used).

Fills: with an L1_MBP book every trade tick sets the simulated top of book (bid = ask = the
trade price, size = the trade size) *before* the data engine hands the tick to the strategy
(``BacktestEngine._run``: exchange -> data engine -> ``exchange.process(ts)``), so the market
order submitted in ``on_trade_tick`` is matched in the same iteration at the signal tick's price
and stamped with its ts (checked: every fill is at its signal tick's price and ts).
``trade_execution`` stays at its default (False); it is not needed for this.

Set-up: price precision = the fewest decimals that hold every input price exactly (as in
``sma_nautilus.py``); size precision likewise from ``size``. Whole sizes: an ``Equity``
ASSET.SIM (size precision 0, like ``sma_nautilus.py``); fractional sizes: a crypto-like
``CurrencyPair`` ASSET/USD.SIM (base currency ASSET, CRYPTO, with that size precision).
Fees: ``--fee`` (default 0) as maker and taker fee with the default ``MakerTakerFeeModel``
(rounded to the cent per fill). Venue SIM: CASH account with ``--init-cash`` USD, default
``FillModel`` (no slippage), no latency model.

OUT (Parquet): the fills in order: ts (timestamp[ns, UTC]), side ("BUY"/"SELL"), qty, price
(float64, the exact decimals of Nautilus' ``Quantity``/``Price``), from the ``OrderFilled``
events of Nautilus' orders.

JSON (``--timing``, default OUT with suffix ``.json``): peer, benchmark, versions, n_events,
params, load_s, build_s (Parquet rows -> ``TradeTick`` objects with
``TradeTick.from_raw_arrays_to_list``), add_data_s (``engine.add_data``, median), both outside
``backtest_s``; backtest_runs_s, backtest_s (median over ``--repeat`` of ``engine.run()`` on a
fresh engine each time, log level ERROR, ``run_analysis=False``, no warm-up run, as in
``sma_nautilus.py``), ns_per_event (backtest_s / n_events), peak_rss_mb,
peak_rss_after_runs_mb (after each run: a disposed engine is not freed, ~0.75 GB per 1 M-tick
run stays, so the first entry is the one-run figure), n_fills, n_trades
(closed round trips = ``PositionClosed`` events seen by the strategy), total_pnl (their
``realized_pnl``, net of fees, in USD cents per round trip: meaningless for tiny sizes),
open_position, instrument, price_precision, size_precision.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

# run.py (next to this file, standard library only) holds the helpers shared by the peer scripts
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as peers
from nautilus_trader.config import StrategyConfig
from nautilus_trader.indicators import ExponentialMovingAverage
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy
from sma_nautilus import price_precision  # fewest decimals holding every value exactly


class EmaCrossConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    span: int = 100
    size: float = 1.0
    hedging: bool = False  # exit with close_all_positions (HEDGING OMS) instead of a SELL


class EmaCross(Strategy):
    def __init__(self, config: EmaCrossConfig) -> None:
        super().__init__(config)
        self.ema = ExponentialMovingAverage(config.span)
        self.prev_d = math.nan
        self.qty = None
        self.n_closed = 0  # closed round trips (PositionClosed events)
        self.closed_pnl = 0.0  # their realized pnl (quote currency)

    def on_start(self) -> None:
        instrument = self.cache.instrument(self.config.instrument_id)
        self.qty = instrument.make_qty(self.config.size)
        self.register_indicator_for_trade_ticks(self.config.instrument_id, self.ema)
        self.subscribe_trade_ticks(self.config.instrument_id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        # the EMA (already updated with this tick) is defined once it has seen `span` ticks, as
        # ntlab's ema_nb (NaN during warm-up); NaN comparisons are false: no signal then
        d = tick.price.as_double() - self.ema.value if self.ema.initialized else math.nan
        prev, self.prev_d = self.prev_d, d
        if d > 0.0 and prev <= 0.0:
            iid = self.config.instrument_id
            if self.portfolio.is_flat(iid):
                self.submit_order(self.order_factory.market(iid, OrderSide.BUY, self.qty))
        elif d < 0.0 and prev >= 0.0:
            iid = self.config.instrument_id
            if self.portfolio.is_net_long(iid):
                if self.config.hedging:
                    self.close_all_positions(iid)
                else:  # long-only, one lot: the position is exactly self.qty
                    self.submit_order(self.order_factory.market(iid, OrderSide.SELL, self.qty))

    def on_position_closed(self, event) -> None:
        self.n_closed += 1
        self.closed_pnl += event.realized_pnl.as_double()


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", required=True, type=Path, help="input Parquet (ts, price, size)")
    p.add_argument("--out", required=True, type=Path, help="output Parquet of the fills")
    p.add_argument("--span", type=int, default=100, help="EMA span (alpha = 2 / (span + 1))")
    p.add_argument("--fee", type=float, default=0.0, help="fee rate on traded notional")
    p.add_argument("--size", type=float, default=1.0, help="units per order")
    p.add_argument("--init-cash", type=float, default=1e9)
    p.add_argument("--oms", choices=("netting", "hedging"), default="netting",
                   help="netting: exit with a market SELL (default, linear cost); hedging: "
                        "one Position per round trip, exit with close_all_positions "
                        "(quadratic in the number of round trips)")
    p.add_argument("--timing", type=Path, default=None,
                   help="results/timing JSON (default: OUT with suffix .json)")
    p.add_argument("--repeat", type=int, default=3,
                   help="timed runs of the backtest; the median is reported")
    args = p.parse_args(argv)
    if args.span < 1:
        p.error("--span must be >= 1")
    if args.size <= 0:
        p.error("--size must be > 0")
    if args.timing is None:
        args.timing = args.out.with_suffix(".json")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def read_ticks(path: Path):
    """Input trades as a pandas DataFrame (ts: datetime64[ns, UTC]; price, size: float64)."""
    import pandas as pd

    df = pd.read_parquet(path, columns=["ts", "price", "size"])
    ts = pd.DatetimeIndex(df["ts"])
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    df["ts"] = ts.as_unit("ns")
    if not df["ts"].is_monotonic_increasing:
        raise ValueError(f"{path}: ts is not sorted")
    for c in ("price", "size"):
        df[c] = df[c].astype("float64")
    if not (df["size"] > 0).all():
        raise ValueError(f"{path}: sizes must be > 0")
    return df.reset_index(drop=True)


def make_instrument(price_prec: int, size_prec: int, fee: float):
    """Equity ASSET.SIM for whole sizes, else a crypto-like CurrencyPair ASSET/USD.SIM."""
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import CurrencyType
    from nautilus_trader.model.identifiers import Symbol
    from nautilus_trader.model.instruments import CurrencyPair, Equity
    from nautilus_trader.model.objects import Currency, Price, Quantity

    fee_d = Decimal(str(fee))
    tick = Price(10.0**-price_prec, price_prec)
    if size_prec == 0:
        return Equity(
            instrument_id=InstrumentId.from_str("ASSET.SIM"), raw_symbol=Symbol("ASSET"),
            currency=USD, price_precision=price_prec, price_increment=tick,
            lot_size=Quantity.from_int(1), ts_event=0, ts_init=0,
            maker_fee=fee_d, taker_fee=fee_d,
        )
    base = Currency("ASSET", size_prec, 0, "ASSET", CurrencyType.CRYPTO)
    Currency.register(base, overwrite=True)  # else balances use an 8-decimal default "ASSET"
    return CurrencyPair(
        instrument_id=InstrumentId.from_str("ASSET/USD.SIM"), raw_symbol=Symbol("ASSET/USD"),
        base_currency=base, quote_currency=USD, price_precision=price_prec,
        size_precision=size_prec, price_increment=tick,
        size_increment=Quantity(10.0**-size_prec, size_prec), ts_event=0, ts_init=0,
        maker_fee=fee_d, taker_fee=fee_d,
    )


def make_engine(args, instrument, ticks):
    from nautilus_trader.backtest.engine import BacktestEngine
    from nautilus_trader.config import BacktestEngineConfig, LoggingConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.instruments import Equity
    from nautilus_trader.model.objects import Money

    engine = BacktestEngine(BacktestEngineConfig(
        trader_id="BACKTESTER-001",
        logging=LoggingConfig(log_level="ERROR"),
        run_analysis=False,
    ))
    engine.add_venue(
        venue=Venue("SIM"),
        oms_type=OmsType.HEDGING if args.oms == "hedging" else OmsType.NETTING,
        account_type=AccountType.CASH,
        # single-currency USD account for the Equity; multi-currency (USD + base) for the pair
        base_currency=USD if isinstance(instrument, Equity) else None,
        starting_balances=[Money(args.init_cash, USD)],
    )
    engine.add_instrument(instrument)
    t0 = time.perf_counter()
    engine.add_data(ticks)
    add_data_s = time.perf_counter() - t0
    strategy = EmaCross(EmaCrossConfig(
        instrument_id=instrument.id, span=args.span, size=args.size,
        hedging=args.oms == "hedging"))
    engine.add_strategy(strategy)
    return engine, strategy, add_data_s


def main(argv=None) -> dict:
    args = parse_args(argv)
    import nautilus_trader
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from nautilus_trader.model.enums import AggressorSide, order_side_to_str
    from nautilus_trader.model.events import OrderFilled

    t0 = time.perf_counter()
    df = read_ticks(args.ticks)
    load_s = time.perf_counter() - t0
    p_prec = price_precision(df, cols=("price",))
    s_prec = price_precision(df, cols=("size",))
    instrument = make_instrument(p_prec, s_prec, args.fee)
    size_ok = args.size * 10.0**s_prec
    if abs(size_ok - round(size_ok)) > 1e-6:
        raise SystemExit(f"--size {args.size} does not fit the size precision {s_prec}")

    t0 = time.perf_counter()
    n = len(df)
    ts = pd.DatetimeIndex(df["ts"]).asi8.astype(np.uint64)
    ticks = TradeTick.from_raw_arrays_to_list(
        instrument.id, p_prec, s_prec,
        np.ascontiguousarray(df["price"].to_numpy(), dtype=np.float64),
        np.ascontiguousarray(df["size"].to_numpy(), dtype=np.float64),
        np.full(n, AggressorSide.NO_AGGRESSOR, dtype=np.uint8),
        [str(i) for i in range(n)],
        ts, ts,
    )
    build_s = time.perf_counter() - t0

    runs, add_data, rss_runs = [], [], []
    engine = None
    for _ in range(args.repeat):
        if engine is not None:
            engine.dispose()
        engine, strategy, add_s = make_engine(args, instrument, ticks)
        add_data.append(add_s)
        t0 = time.perf_counter()
        engine.run()
        runs.append(time.perf_counter() - t0)
        rss_runs.append(peers.peak_rss_mb())
    backtest_s = statistics.median(runs)

    cache = engine.cache
    fills = [e for o in cache.orders() for e in o.events if isinstance(e, OrderFilled)]
    fills.sort(key=lambda e: e.ts_event)  # stable: orders come in submission order
    table = pa.table({
        "ts": pa.array(np.array([e.ts_event for e in fills], dtype=np.int64),
                       pa.timestamp("ns", tz="UTC")),
        "side": pa.array([order_side_to_str(e.order_side) for e in fills], pa.string()),
        "qty": pa.array([float(e.last_qty.as_decimal()) for e in fills], pa.float64()),
        "price": pa.array([float(e.last_px.as_decimal()) for e in fills], pa.float64()),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out)

    open_positions = cache.positions_open()
    open_position = None
    if open_positions:
        q = open_positions[-1]
        open_position = {"entry_ts": pd.Timestamp(q.ts_opened, unit="ns", tz="UTC").isoformat(),
                         "entry_price": float(q.avg_px_open), "qty": q.quantity.as_double()}
    info = {
        "peer": "nautilus",
        "benchmark": "W3 price/EMA cross on trade ticks",
        "versions": {"python": sys.version.split()[0],
                     "nautilus_trader": nautilus_trader.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__},
        "ticks": str(args.ticks),
        "out": str(args.out),
        "n_events": n,
        "params": {"span": args.span, "fee": args.fee, "size": args.size,
                   "init_cash": args.init_cash, "oms": args.oms},
        "load_s": load_s,
        "build_s": build_s,
        "add_data_s": statistics.median(add_data),
        "backtest_runs_s": runs,
        "backtest_s": backtest_s,
        "ns_per_event": backtest_s / n * 1e9,
        "peak_rss_mb": peers.peak_rss_mb(),
        "peak_rss_after_runs_mb": rss_runs,
        "n_fills": len(fills),
        "n_trades": strategy.n_closed,
        "total_pnl": strategy.closed_pnl,
        "open_position": open_position,
        "instrument": f"{type(instrument).__name__} {instrument.id}",
        "price_precision": p_prec,
        "size_precision": s_prec,
        "notes": [("EMA: nautilus_trader.indicators.ExponentialMovingAverage on trade ticks, "
                   "value used from the first tick (pandas ewm adjust=False)"),
                  ("fills: market orders matched in the same iteration at the signal tick's "
                   "price (L1 book set by the trade tick)"),
                  (f"OMS {args.oms}: exit by "
                   + ("close_all_positions" if args.oms == "hedging" else "a market SELL")),
                  f"fee rate {args.fee} (maker = taker); {len(cache.orders())} orders"],
    }
    engine.dispose()
    args.timing.parent.mkdir(parents=True, exist_ok=True)
    args.timing.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info


if __name__ == "__main__":
    info = main()
    print(f"nautilus ticks: {info['n_events']} ticks, {info['n_fills']} fills, "
          f"{info['n_trades']} round trips, backtest {info['backtest_s']:.3f} s "
          f"({info['ns_per_event']:.0f} ns/event), build {info['build_s']:.2f} s")
