"""The real market data sets, by name: ``names()``, ``info(name)``, ``load(name)``.

Every loader returns a validated Polars frame of one of ntlab's kinds (see
:mod:`ntlab.data.schemas`) with UTC nanosecond timestamps. The files live in the shared data
folder (found by :func:`ntlab.data.paths.data_dir`, override with ``NTLAB_DATA``); they are
never copied into the repository.

Time conventions, decided per source and checked against the data:

* ES ticks are in exchange-local time (America/Chicago: the file starts at the Sunday 17:00
  Globex open) and are converted to UTC. The ES dollar bars are stamped in UTC (most bars
  close between 14:30 and 21:15 UTC, the regular session) by the time of their last trade.
* SPY NinjaTrader minute bars and the Nautilus 1-minute files (FTX BTC-PERP, FXCM FX, CME 6E)
  are UTC and labelled by their close (the SPY opening-auction volume spike sits on 14:31 in
  January; the FX month files run from 00:00 on the 1st to 00:00 on the 1st of the next
  month); ntlab labels bars by their open, so one minute is subtracted.
* Daily bars and adjusted-close tables are stamped at 00:00 UTC of the trading date.
* Binance recordings: ``ts`` is the local receive time in ns, ``ts_event`` the venue's time.
  Symbols are the venue's, except that the USD-M perpetuals get ``-PERP`` (``BTCUSDT-PERP``)
  so that they never mix with the spot pair of the same name in a catalog (COIN-M symbols,
  ``BTCUSD_PERP``, are distinct already). REST snapshots are kind ``snapshot``.

Real quirks are kept visible: the S&P 500 daily file has 11 rows with missing prices (dropped;
they hold the 27 null cells) and one row whose high is below its open (repaired), and the
Bitstamp trades hold one trade of size 0 (dropped); ``load`` warns with a
:class:`~ntlab.exceptions.DataQualityWarning` naming them, and ``report=True`` returns the
full :class:`~ntlab.data.validation.ValidationReport`.

Example
-------
>>> import ntlab.datasets
>>> "es_ticks" in ntlab.datasets.names()
True
>>> ntlab.datasets.load("es_ticks").head(2).select("ts", "price", "size").rows()[0][1:]
(1640.25, 8.0)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, overload

import polars as pl

from ntlab.data.loaders.files import finish, to_kind
from ntlab.data.paths import data_file
from ntlab.data.validation import Fix, ValidationReport
from ntlab.exceptions import ConfigError

__all__ = ["Dataset", "describe", "info", "load", "names"]

_MINUTE = dt.timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """One named data set: its kind, files, and how to read them."""

    name: str
    kind: str
    files: tuple[str, ...]
    description: str
    read: Callable[[list[Path]], pl.DataFrame] = field(repr=False)
    fix: Fix = "raise"
    """What :func:`load` does with rows that break a validation rule, unless told otherwise."""

    def paths(self) -> list[Path]:
        return [data_file(f) for f in self.files]


def _csv(paths: list[Path], **options: Any) -> pl.DataFrame:
    read = options.pop("read", {})
    return pl.concat([to_kind(pl.read_csv(path, **read), **options) for path in paths])


def _mtgox(paths: list[Path]) -> pl.DataFrame:
    raw = pl.read_csv(paths[0])
    raw = raw.with_columns(
        pl.col("type").replace_strict({"bid": 1, "ask": -1}, return_dtype=pl.Int8).alias("side")
    )
    return to_kind(
        raw,
        kind="trades",
        symbol="BTCUSD",
        columns={"id": "ts", "price": "price", "amount": "size", "side": "side"},
        ts_unit="us",
    )


def _binance(paths: list[Path], *, stream: str, market: str) -> pl.DataFrame:
    from ntlab.data.loaders.binance import read_binance

    frame = read_binance(paths, stream=stream)  # type: ignore[arg-type]
    if market == "usdm":  # the USD-M perpetual shares its venue symbol with the spot pair
        frame = frame.with_columns(pl.col("symbol") + "-PERP")
    return frame


def _registry() -> dict[str, Dataset]:
    ohlc = {"open": "open", "high": "high", "low": "low", "close": "close"}
    sets = [
        Dataset(
            name="es_ticks",
            kind="trades",
            files=("es_emini_ticks_2013/es_tick_data.csv.gz",),
            description="500,000 E-mini S&P 500 futures trades, 2013-09-01..03 (America/Chicago -> UTC)",
            read=partial(
                _csv,
                kind="trades",
                symbol="ES",
                tz="America/Chicago",
                columns={"DateTime": "ts", "Price": "price", "Volume": "size"},
            ),
        ),
        Dataset(
            name="es_dollar_bars",
            kind="bars",
            files=("es_emini_ticks_2013/es_dollar_bar_sample.csv",),
            description="1,000 ES dollar bars of ~$70M, Jan 2015, stamped (UTC) by their last trade (open time unknown)",
            read=partial(
                _csv,
                kind="bars",
                symbol="ES",
                columns={"date_time": "ts", **ohlc, "cum_vol": "volume", "cum_dollar": "notional", "cum_ticks": "trades"},
            ),
        ),
        Dataset(
            name="etf_daily_closes",
            kind="prices",
            files=("es_emini_ticks_2013/etf_stock_prices_2008_2016.csv",),
            description="daily closes of 23 ETFs, 2008-01-02..2016-07-01 (wide)",
            read=partial(_csv, kind="prices", columns={"Date": "ts"}),
        ),
        Dataset(
            name="spy_1min",
            kind="bars",
            files=("pyalgotrade_bitstamp_mtgox_spy1m/nt-spy-minute-2011.csv", "pyalgotrade_bitstamp_mtgox_spy1m/nt-spy-minute-2011-03.csv"),
            description="SPY 1-minute bars, Jan and Mar 2011 incl. extended hours (NinjaTrader, UTC, close-labelled -> open)",
            read=partial(
                _csv,
                read={"separator": ";", "has_header": False, "new_columns": ["stamp", "open", "high", "low", "close", "volume"]},
                kind="bars",
                symbol="SPY",
                ts_format="%Y%m%d %H%M%S",
                ts_offset=-_MINUTE,
                columns={"stamp": "ts", **ohlc, "volume": "volume"},
            ),
        ),
        Dataset(
            name="bitstamp_trades",
            kind="trades",
            files=("pyalgotrade_bitstamp_mtgox_spy1m/bitstampUSD.csv",),
            description="9,999 Bitstamp BTC/USD trades, 2011-09-13..2012-05-31 (epoch seconds)",
            read=partial(
                _csv,
                read={"has_header": False, "new_columns": ["unix", "price", "amount"]},
                kind="trades",
                symbol="BTCUSD",
                ts_unit="s",
                columns={"unix": "ts", "price": "price", "amount": "size"},
            ),
            fix="drop",
        ),
        Dataset(
            name="mtgox_trades",
            kind="trades",
            files=("pyalgotrade_bitstamp_mtgox_spy1m/trades-mgtox-usd-2013-01-01.csv",),
            description="2,331 Mt.Gox BTC/USD trades on 2013-01-01 (side from the taker's order type)",
            read=_mtgox,
        ),
        Dataset(
            name="bitstamp_30min",
            kind="bars",
            files=("pyalgotrade_bitstamp_mtgox_spy1m/30min-bitstampUSD-2.csv",),
            description="Bitstamp BTC/USD 30-minute bars, 2014-06-23..2014-08-03 (open-labelled)",
            read=partial(
                _csv, kind="bars", symbol="BTCUSD", columns={"Date Time": "ts", "Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
            ),
        ),
        Dataset(
            name="btc_perp_1min",
            kind="bars",
            files=("nautilus_intraday_1min/btc-perp-20211231-20220201_1m.csv",),
            description="FTX BTC-PERP 1-minute bars, Jan 2022 (volume in USD notional as given)",
            read=partial(_csv, kind="bars", symbol="BTC-PERP", ts_offset=-_MINUTE, columns={"timestamp": "ts", **ohlc, "volume": "volume"}),
        ),
        Dataset(
            name="cme_6e_1min",
            kind="bars",
            files=("nautilus_intraday_1min/xcme/6EH4.XCME_1min_bars_20240101_20240131.csv.gz",),
            description="CME Euro FX future 6EH4 1-minute bars, Jan 2024",
            read=partial(_csv, kind="bars", symbol="6EH4", ts_offset=-_MINUTE, columns={"timestamp_utc": "ts", **ohlc, "volume": "volume"}),
        ),
        Dataset(
            name="usdjpy_ticks",
            kind="quotes",
            files=("nautilus_intraday_1min/truefx/usdjpy-ticks.csv",),
            description="1,000 TrueFX USD/JPY bid/ask ticks from 2013-01-01",
            read=partial(_csv, kind="quotes", symbol="USDJPY", columns={"timestamp": "ts", "bid": "bid_price", "ask": "ask_price"}),
        ),
        Dataset(
            name="sp500_daily",
            kind="bars",
            files=("sp500_daily_2013_2018/all_stocks_5yr.csv.gz",),
            description="daily OHLCV of 505 S&P 500 stocks, 2013-02-08..2018-02-07 (long)",
            read=partial(_csv, kind="bars", columns={"date": "ts", **ohlc, "volume": "volume", "Name": "symbol"}),
            fix="repair",
        ),
    ]
    for pair, year, month in (("gbpusd", 2012, "Feb 2012"), ("usdjpy", 2013, "Feb 2013")):
        for side in ("bid", "ask"):
            sets.append(
                Dataset(
                    name=f"fxcm_{pair}_{side}_1min",
                    kind="bars",
                    files=(f"nautilus_intraday_1min/fxcm/{pair}-m1-{side}-{year}.csv",),
                    description=f"FXCM {pair.upper()} {side} 1-minute bars, {month}",
                    read=partial(_csv, kind="bars", symbol=pair.upper(), ts_offset=-_MINUTE, columns={"timestamp": "ts", **ohlc}),
                )
            )
    wide = {
        "pypfopt_stock_prices": ("pypfopt_cookbook_stock_prices_1990_2024.csv", "date", "adjusted closes of 19 large caps, 1990..2024 (PyPortfolioOpt cookbook)"),
        "pypfopt_test_prices": ("pypfopt_tests_stock_prices_1989_2018.csv", "date", "adjusted closes of 20 large caps, 1989..2018 (PyPortfolioOpt tests)"),
        "spy_daily": ("pypfopt_spy_prices_1993_2019.csv", "date", "SPY adjusted close, 1993..2019"),
        "skfolio_sp500": ("skfolio_sp500_dataset_1990_2022.csv.gz", "Date", "adjusted closes of 20 S&P 500 stocks, 1990..2022 (skfolio)"),
        "sp500_index": ("skfolio_sp500_index_1990_2022.csv.gz", "Date", "S&P 500 index level, 1990..2022"),
    }
    for name, (file, ts_col, text) in wide.items():
        sets.append(
            Dataset(
                name=name,
                kind="prices",
                files=(f"us_equities_daily_adjclose/{file}",),
                description=text + " (wide, null before listing)",
                read=partial(_csv, kind="prices", columns={ts_col: "ts"}),
            )
        )
    binance = {
        "spot": {"btcusdt": ("20240808", "20240809"), "ethusdt": ("20240808", "20240809")},
        "usdm": {"btcusdt": ("20240808",), "ethusdt": ("20240808",)},
        "coinm": {"btcusd_perp": ("20240808", "20240809")},
    }
    folders = {"spot": "spot", "usdm": "usdm", "coinm": "cm"}
    streams = {"trades": "trades", "quotes": "bookTicker (best bid/ask)", "depth": "L2 depth diffs", "snapshot": "REST depth snapshot"}
    kinds = {"trades": "trades", "quotes": "quotes", "depth": "depth", "snapshot": "snapshot"}
    for market, symbols in binance.items():
        for symbol, days in symbols.items():
            for stream, what in streams.items():
                files = tuple(f"binance_l2_trades_2024-08-08/{folders[market]}/{symbol}_{d}.gz" for d in days)
                if stream == "snapshot":
                    files = files[:1]
                sets.append(
                    Dataset(
                        name=f"binance_{market}_{symbol}_{stream}",
                        kind=kinds[stream],
                        files=files,
                        description=f"Binance {market} {symbol.upper()} {what}, 2024-08-08 23:54..00:05 UTC",
                        read=partial(_binance, stream=stream, market=market),
                    )
                )
    return {d.name: d for d in sets}


_DATASETS = _registry()


def names(*, kind: str | None = None) -> list[str]:
    """Names of the data sets, optionally only those of one kind (``"trades"``...)."""
    return sorted(n for n, d in _DATASETS.items() if kind is None or d.kind == kind)


def info(name: str) -> Dataset:
    """The :class:`Dataset` called ``name``."""
    try:
        return _DATASETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _DATASETS, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see ntlab.datasets.names()"
        msg = f"unknown data set {name!r}{hint}"
        raise ConfigError(msg) from None


def describe() -> pl.DataFrame:
    """One row per data set: name, kind, description, files."""
    rows = [(d.name, d.kind, d.description, ", ".join(d.files)) for d in _DATASETS.values()]
    return pl.DataFrame(rows, schema=["name", "kind", "description", "files"], orient="row").sort("name")


@overload
def load(name: str, *, fix: Fix | None = None, report: Literal[False] = ...) -> pl.DataFrame: ...
@overload
def load(name: str, *, fix: Fix | None = None, report: Literal[True]) -> tuple[pl.DataFrame, ValidationReport]: ...
def load(name: str, *, fix: Fix | None = None, report: bool = False) -> pl.DataFrame | tuple[pl.DataFrame, ValidationReport]:
    """Load the data set ``name`` as a validated Polars frame.

    Parameters
    ----------
    name
        One of :func:`names`.
    fix
        What to do with rows that break a validation rule (``"raise"``, ``"drop"`` or
        ``"repair"``); defaults to the data set's own choice (``info(name).fix``). Rows
        dropped or repaired are reported by a :class:`~ntlab.exceptions.DataQualityWarning`.
    report
        Also return the :class:`~ntlab.data.validation.ValidationReport`.
    """
    ds = info(name)
    frame = ds.read(ds.paths())
    return finish(frame, kind=ds.kind, fix=fix or ds.fix, source=ds.name, report=report)
