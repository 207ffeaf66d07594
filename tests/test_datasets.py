"""Every named data set loads from its real file, with the conventions its docstring states."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import polars as pl
import pytest

import ntlab.datasets
from ntlab.data.loaders.files import read_csv, read_parquet
from ntlab.data.paths import data_dir, data_file
from ntlab.data.schemas import TS, schema
from ntlab.exceptions import ConfigError, DataError, DataQualityWarning, SchemaError

UTC = dt.UTC


def _lines(relative: str) -> int:
    path = data_file(relative)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return sum(1 for line in fh if line.strip())


# name -> (rows in the source file(s) minus header lines, first ts, last ts)
EXPECTED = {
    "es_ticks": (500_000, dt.datetime(2013, 9, 1, 22, 0, 0, 83000, tzinfo=UTC), dt.datetime(2013, 9, 3, 18, 51, 44, 578000, tzinfo=UTC)),
    "es_dollar_bars": (1_000, dt.datetime(2015, 1, 1, 23, 0, 23, 723000, tzinfo=UTC), None),
    "etf_daily_closes": (2_141, dt.datetime(2008, 1, 2, tzinfo=UTC), dt.datetime(2016, 7, 1, tzinfo=UTC)),
    "spy_1min": (14_180 + 17_577, dt.datetime(2011, 1, 3, 9, 0, tzinfo=UTC), dt.datetime(2011, 3, 31, 23, 58, tzinfo=UTC)),
    "mtgox_trades": (2_331, None, None),
    "bitstamp_30min": (1_968, dt.datetime(2014, 6, 23, 22, 0, tzinfo=UTC), dt.datetime(2014, 8, 3, 23, 0, tzinfo=UTC)),
    "btc_perp_1min": (45_031, dt.datetime(2021, 12, 31, 23, 0, tzinfo=UTC), dt.datetime(2022, 2, 1, 5, 30, tzinfo=UTC)),
    "cme_6e_1min": (29_996, dt.datetime(2024, 1, 1, 23, 0, tzinfo=UTC), None),
    "usdjpy_ticks": (1_000, dt.datetime(2013, 1, 1, 22, 0, 0, 295000, tzinfo=UTC), None),
    "fxcm_gbpusd_bid_1min": (30_117, dt.datetime(2012, 1, 31, 23, 59, tzinfo=UTC), dt.datetime(2012, 2, 29, 23, 59, tzinfo=UTC)),
    "fxcm_gbpusd_ask_1min": (30_117, None, None),
    "fxcm_usdjpy_bid_1min": (28_761, dt.datetime(2013, 1, 31, 23, 59, tzinfo=UTC), None),
    "fxcm_usdjpy_ask_1min": (28_761, None, None),
    "pypfopt_stock_prices": (8_796, dt.datetime(1990, 1, 2, tzinfo=UTC), dt.datetime(2024, 11, 29, tzinfo=UTC)),
    "pypfopt_test_prices": (7_126, dt.datetime(1989, 12, 29, tzinfo=UTC), dt.datetime(2018, 4, 11, tzinfo=UTC)),
    "spy_daily": (6_765, dt.datetime(1993, 1, 29, tzinfo=UTC), None),
    "skfolio_sp500": (8_313, dt.datetime(1990, 1, 2, tzinfo=UTC), dt.datetime(2022, 12, 28, tzinfo=UTC)),
    "sp500_index": (8_313, None, None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_loads_every_row_with_its_schema(name: str) -> None:
    rows, first, last = EXPECTED[name]
    ds = ntlab.datasets.info(name)
    header = 0 if name in ("spy_1min",) else len(ds.files)
    assert sum(_lines(f) for f in ds.files) - header == rows
    frame, report = ntlab.datasets.load(name, report=True)
    assert report.ok, str(report)
    assert frame.height == rows
    assert frame["ts"].dtype == TS
    assert set(schema(ds.kind).required) <= set(frame.columns)
    if first is not None:
        assert frame["ts"][0] == first
    if last is not None:
        assert frame["ts"][-1] == last


def test_es_ticks_are_chicago_time_converted_to_utc() -> None:
    es = ntlab.datasets.load("es_ticks")
    # Globex reopens Sunday 17:00 America/Chicago (CDT, UTC-5) = 22:00 UTC.
    assert es["ts"][0].hour == 22
    assert es["size"].sum() == 1_844_058  # the MANIFEST's total volume
    assert es["price"].n_unique() == 78
    assert ((es["price"] * 4) % 1 == 0).all()  # 0.25 tick grid
    assert es["symbol"].unique().to_list() == ["ES"]


def test_spy_minute_bars_are_utc_and_open_labelled() -> None:
    spy = ntlab.datasets.load("spy_1min")
    jan = spy.filter(pl.col("ts").dt.month() == 1)
    by_minute = jan.group_by(pl.col("ts").dt.strftime("%H:%M").alias("hm")).agg(pl.col("volume").sum()).sort("volume")
    # In January (EST = UTC-5) the closing cross (16:00 ET) prints in the 21:00 UTC bar and the
    # opening auction (09:30 ET) in the 14:30 bar: the two busiest minutes of their halves.
    assert by_minute["hm"][-1] == "21:00"
    assert by_minute.filter(pl.col("hm") < "18:00")["hm"][-1] == "14:30"


def test_sp500_daily_real_quirks_are_counted_not_hidden() -> None:
    with pytest.warns(DataQualityWarning, match=r"11 rows dropped.*BHF 2017-07-26"):
        frame, report = ntlab.datasets.load("sp500_daily", report=True)
    assert report.rows_in == 619_040 and frame.height == 619_029
    rules = {i.rule: (i.rows, i.action) for i in report.issues}
    assert rules["bad_open"] == (11, "dropped")
    assert rules["high_below_open_close"][0] == 1
    assert frame["symbol"].n_unique() == 505
    with pytest.raises(DataError, match=r"sp500_daily: bars: 11 row\(s\) break rule bad_open"):
        ntlab.datasets.load("sp500_daily", fix="raise")


def test_bitstamp_zero_size_trade_is_dropped_and_reported() -> None:
    with pytest.warns(DataQualityWarning, match=r"bad_size: 1 row dropped .*2012-05-21 10:28:01"):
        frame = ntlab.datasets.load("bitstamp_trades")
    assert frame.height == 9_998


def test_mtgox_side_and_microsecond_ids() -> None:
    frame = ntlab.datasets.load("mtgox_trades")
    raw = pl.read_csv(data_file("pyalgotrade_bitstamp_mtgox_spy1m/trades-mgtox-usd-2013-01-01.csv"))
    assert (frame["side"] == 1).sum() == (raw["type"] == "bid").sum()
    assert (frame["side"] == -1).sum() == (raw["type"] == "ask").sum()
    assert frame["ts"][0] == dt.datetime(2013, 1, 1, 0, 4, 19, 486096, tzinfo=UTC)


def test_fx_bid_below_ask() -> None:
    bid = ntlab.datasets.load("fxcm_usdjpy_bid_1min")
    ask = ntlab.datasets.load("fxcm_usdjpy_ask_1min")
    both = bid.join(ask, on="ts", suffix="_ask")
    assert both.height == bid.height
    # Bid and ask bars are built from separate tick streams, so a bid close can exceed an
    # ask close when the last ask tick of the minute came earlier (2.4 % of these bars);
    # the spread itself is positive and about 0.3 pips.
    assert (both["close"] <= both["close_ask"]).mean() > 0.95
    assert 0.001 < (both["close_ask"] - both["close"]).median() < 0.01


def test_wide_tables_keep_nulls_before_listing() -> None:
    frame = ntlab.datasets.load("pypfopt_stock_prices")
    assert frame.columns[0] == "ts" and "AAPL" in frame.columns and len(frame.columns) == 20
    assert frame["META"][0] is None and frame["META"][-1] is not None


def test_names_info_describe(repo) -> None:
    names = ntlab.datasets.names()
    assert f"`ntlab.datasets.names()`: {len(names)} sets" in (repo / "README.md").read_text()
    assert set(EXPECTED) <= set(names)
    assert "sp500_daily" in names and "bitstamp_trades" in names
    assert ntlab.datasets.names(kind="quotes") == sorted(n for n in names if ntlab.datasets.info(n).kind == "quotes")
    table = ntlab.datasets.describe()
    assert table.height == len(names) and table.columns == ["name", "kind", "description", "files"]
    with pytest.raises(ConfigError, match=r"unknown data set 'es_tick'; did you mean 'es_ticks'"):
        ntlab.datasets.info("es_tick")
    with pytest.raises(ConfigError, match=r"unknown data set 'zzz'; see ntlab.datasets.names"):
        ntlab.datasets.load("zzz")


def test_data_dir_env_override(monkeypatch, tmp_path) -> None:
    assert (data_dir() / "MANIFEST.md").is_file()
    monkeypatch.setenv("NTLAB_DATA", str(tmp_path))
    assert data_dir() == tmp_path.resolve()
    with pytest.raises(DataError, match=r"data file 'x.csv' is missing"):
        data_file("x.csv")
    monkeypatch.setenv("NTLAB_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"NTLAB_DATA=.*nope' is not a folder"):
        data_dir()


def test_data_dir_found_from_a_clone(monkeypatch, tmp_path) -> None:
    import ntlab.data.paths as paths

    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    (clone / ".git" / "config").write_text(f'[remote "origin"]\n\turl = {data_dir().parents[1] / "main"}\n')
    monkeypatch.delenv("NTLAB_DATA", raising=False)
    monkeypatch.chdir(clone)
    monkeypatch.setattr(paths, "__file__", str(clone / "ntlab" / "data" / "paths.py"))
    assert paths.data_dir() == data_dir()
    (clone / ".git" / "config").write_text("[core]\n")
    with pytest.raises(DataError, match="set NTLAB_DATA="):
        paths.data_dir()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_generic_csv_loader(tmp_path) -> None:
    path = _write(tmp_path / "q.csv", "t,b,a\n1700000000000,1.0,1.1\n1700000001000,1.05,1.15\n")
    quotes, report = read_csv(path, kind="quotes", symbol="EURUSD", ts_unit="ms", columns={"t": "ts", "b": "bid_price", "a": "ask_price"}, report=True)
    assert quotes["ts"][1] == dt.datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC)
    assert report.ok and quotes.columns == ["ts", "symbol", "bid_price", "ask_price"]
    bad = _write(tmp_path / "bad.csv", "t,p,q\n2020-01-02 00:00:00,1.0,1\n2020-01-01 00:00:00,1.0,1\n")
    with pytest.raises(DataError, match=r"bad.csv: trades: 1 row\(s\) break rule unsorted_timestamp"):
        read_csv(bad, kind="trades", symbol="X", columns={"t": "ts", "p": "price", "q": "size"})
    with pytest.warns(DataQualityWarning, match="sorted by ts"):
        fixed = read_csv(bad, kind="trades", symbol="X", columns={"t": "ts", "p": "price", "q": "size"}, fix="repair")
    assert fixed["ts"].is_sorted()


def test_epoch_units_are_exact(tmp_path) -> None:
    cols = {"t": "ts", "p": "price", "q": "size"}
    frac = _write(tmp_path / "f.csv", "t,p,q\n1700000000.25,1.0,1\n1700000000.75,1.0,1\n")
    frame = read_csv(frac, kind="trades", symbol="X", columns=cols, ts_unit="s")
    assert frame["ts"].dt.epoch("ns").to_list() == [1_700_000_000_250_000_000, 1_700_000_000_750_000_000]
    nan = _write(tmp_path / "g.csv", "t,p,q\nNaN,1.0,1\n")
    with pytest.raises(DataError, match=r"non-finite values like \[nan\]"):
        read_csv(nan, kind="trades", symbol="X", columns=cols, ts_unit="s")
    millis = _write(tmp_path / "m.csv", "t,p,q\n1700000000000,1.0,1\n")
    with pytest.raises(DataError, match=r"overflow int64 nanoseconds with ts_unit='s'; are they in ms\?"):
        read_csv(millis, kind="trades", symbol="X", columns=cols, ts_unit="s")


def test_generic_csv_loader_errors(tmp_path) -> None:
    path = _write(tmp_path / "t.csv", "t,p,q\n2020-01-01 00:00:00,1.0,1\n2020-13-45 00:00:00,1.0,1\n")
    cols = {"t": "ts", "p": "price", "q": "size"}
    with pytest.raises(DataError, match="does not exist"):
        read_csv(tmp_path / "missing.csv", kind="trades", columns=cols)
    with pytest.raises(DataError, match=r"cannot parse timestamps like \['2020-13-45 00:00:00'\]"):
        read_csv(path, kind="trades", symbol="X", columns=cols, ts_format="%Y-%m-%d %H:%M:%S")
    with pytest.raises(SchemaError, match=r"columns \['zz'\] named in `columns=` are not in the file"):
        read_csv(path, kind="trades", columns={"zz": "ts"})
    with pytest.raises(SchemaError, match="no column is mapped to 'ts'"):
        read_csv(path, kind="trades", columns={"p": "price"})
    with pytest.raises(SchemaError, match="needs a numeric timestamp column"):
        read_csv(path, kind="trades", symbol="X", columns=cols, ts_unit="s")
    with pytest.raises(SchemaError, match="ts_unit='h' is not allowed"):
        read_csv(path, kind="trades", symbol="X", columns=cols, ts_unit="h")  # type: ignore[arg-type]
    sym = _write(tmp_path / "s.csv", "t,s,p,q\n2020-01-01,A,1.0,1\n")
    with pytest.raises(SchemaError, match="already has a symbol column"):
        read_csv(sym, kind="trades", symbol="X", columns={"t": "ts", "s": "symbol", "p": "price", "q": "size"})
    floats = _write(tmp_path / "f.csv", "t,p,q\n1.5,1.0,1\n")
    with pytest.raises(SchemaError, match="has dtype Float64; pass ts_unit"):
        read_csv(floats, kind="trades", symbol="X", columns=cols)
    gap = _write(tmp_path / "dst.csv", "t,p,q\n2021-03-14 02:30:00,1.0,1\n")
    with pytest.raises(DataError, match="cannot be placed in time zone 'America/New_York'"):
        read_csv(gap, kind="trades", symbol="X", columns=cols, tz="America/New_York")
    notcsv = tmp_path / "b.csv"
    notcsv.write_bytes(b"a,b\n1,2,3,4\n")
    with pytest.raises(DataError, match="cannot read as CSV"):
        read_csv(notcsv, kind="trades", columns=cols)


def test_generic_parquet_loader(tmp_path) -> None:
    path = tmp_path / "bars.parquet"
    pl.DataFrame(
        {"d": [dt.date(2020, 1, 2), dt.date(2020, 1, 3)], "o": [1.0, 2.0], "h": [1.5, 2.5], "l": [0.5, 1.5], "c": [1.2, 2.2]}
    ).write_parquet(path)
    cols = {"d": "ts", "o": "open", "h": "high", "l": "low", "c": "close"}
    frame = read_parquet(path, kind="bars", symbol="X", columns=cols)
    assert frame["ts"][0] == dt.datetime(2020, 1, 2, tzinfo=UTC)
    aware = tmp_path / "aware.parquet"
    pl.DataFrame({"ts": [dt.datetime(2020, 1, 2, 9, 30)], "price": [1.0], "size": [2.0]}).with_columns(
        pl.col("ts").dt.replace_time_zone("America/New_York")
    ).write_parquet(aware)
    trades = read_parquet(aware, kind="trades", symbol="X")
    assert trades["ts"][0] == dt.datetime(2020, 1, 2, 14, 30, tzinfo=UTC)
    with pytest.raises(DataError, match="does not exist"):
        read_parquet(tmp_path / "none.parquet", kind="bars")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read as Parquet"):
        read_parquet(broken, kind="bars")
