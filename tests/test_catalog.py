"""The Parquet catalog: round trips, idempotent and atomic writes, pruned scans, introspection."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntlab.datasets
from ntlab.data import catalog as catalog_mod
from ntlab.data.catalog import Catalog, WriteReport
from ntlab.data.bars import StreamingBars
from ntlab.data.schemas import TS, check_symbol, conform
from ntlab.data.synthetic import correlated_bars, gbm_bars, trade_ticks
from ntlab.exceptions import CatalogError, ConfigError, DataError, DataQualityWarning, SchemaError

UTC = dt.UTC


def _ts(*values: str) -> pl.Series:
    return pl.Series("ts", values).str.to_datetime(time_unit="ns", time_zone="UTC")


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (temp files included) with the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    keys = ["symbol", "ts"] if "symbol" in frame.columns else ["ts"]
    return frame.sort(keys, maintain_order=True)


@pytest.fixture(scope="module")
def es() -> pl.DataFrame:
    """Real ES trade prints: 500k rows over three UTC dates, many identical rows."""
    return ntlab.datasets.load("es_ticks")


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "cat")


@pytest.fixture(params=["hash", "collisions"])
def hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a dedupe test with the real row hash and with one where every row collides."""
    if request.param == "collisions":
        monkeypatch.setattr(
            catalog_mod, "_row_hash", lambda frame: pl.Series("h", [7] * frame.height, pl.UInt64)
        )
    return request.param


# ----------------------------------------------------------------- round trips
def _quotes() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": _ts("2024-03-01T23:59:59.999999999", "2024-03-02T00:00:00", "2024-03-02T10:00"),
            "symbol": ["EURUSD"] * 3,
            "bid_price": [1.1, 1.2, 1.3],
            "ask_price": [1.11, 1.21, 1.31],
            "bid_size": [1.0, None, 3.0],
            "update_id": [1, 2, 3],
        }
    )


def _depth() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": _ts(*["2024-05-05T12:00:00"] * 3, "2024-05-06T00:00:01"),
            "symbol": ["BTCUSDT"] * 4,
            "side": [1, -1, -1, 1],
            "price": [100.0, 101.0, 102.0, 100.5],
            "size": [1.0, 0.0, 2.0, 3.0],
            "update_id": [10, 10, 10, 11],
            "first_update_id": [9, 9, 9, 11],
        }
    )


@pytest.mark.parametrize("kind", ["trades", "quotes", "depth", "bars"])
def test_round_trip_of_each_long_kind(cat: Catalog, kind: str) -> None:
    frames = {
        "trades": pl.concat(
            [trade_ticks(3_000, symbol=s, mean_interarrival=120.0, seed=i) for i, s in enumerate("AB")]
        ),
        "quotes": _quotes(),
        "depth": _depth(),
        "bars": correlated_bars(2_000, symbols=["X", "Y"], freq="1m", seed=4),
    }
    frame = frames[kind]
    report = cat.write(frame, kind=kind)
    assert report.rows_written == frame.height and report.rows_skipped == 0
    back = cat.scan(kind).collect()
    assert back.equals(_sorted(conform(frame, kind)))
    assert back.columns == conform(frame, kind).columns


def test_round_trip_of_a_real_prices_table(cat: Catalog) -> None:
    prices = ntlab.datasets.load("etf_daily_closes")
    report = cat.write(prices, kind="prices", symbol="etf")
    years = sorted(prices["ts"].dt.year().unique().to_list())  # daily rows: one file per year
    assert report == WriteReport(
        kind="prices", rows_written=prices.height, rows_skipped=0, partitions=len(years)
    )
    folders = sorted(p.name for p in (cat.root / "kind=prices/symbol=etf").iterdir())
    assert folders == [f"date={y}" for y in years]
    back = cat.scan("prices").collect()
    assert back.equals(prices.sort("ts", maintain_order=True))
    assert "symbol" not in back.columns
    window = cat.scan("prices", symbols="etf", start="2010-01-01", end="2010-02-01").collect()
    assert window["ts"].dt.month().unique().to_list() == [1]
    assert window.height == 19


def test_prices_gain_an_asset_in_a_later_batch(cat: Catalog) -> None:
    day = _ts("2024-01-02", "2024-01-03")
    cat.write(pl.DataFrame({"ts": day, "A": [1.0, 2.0]}), kind="prices", symbol="t")
    cat.write(pl.DataFrame({"ts": day[1:], "B": [5.0]}), kind="prices", symbol="t")
    back = cat.scan("prices").collect()
    assert back.columns == ["ts", "A", "B"]
    assert back.rows() == [  # one row per date: the new column is merged on ts
        (dt.datetime(2024, 1, 2, tzinfo=UTC), 1.0, None),
        (dt.datetime(2024, 1, 3, tzinfo=UTC), 2.0, 5.0),
    ]


def test_prices_merge_on_ts_and_reingest_adds_nothing(cat: Catalog) -> None:
    day = _ts("2024-01-02", "2024-01-03", "2024-01-04")
    first = pl.DataFrame({"ts": day[:2], "A": [1.0, float("nan")], "B": [None, 3.0]})
    assert cat.write(first, kind="prices", symbol="t").rows_written == 2
    before = _snapshot(cat.root)
    assert cat.write(first, kind="prices", symbol="t") == WriteReport(
        kind="prices", rows_written=0, rows_skipped=2, partitions=0
    )
    subset = pl.DataFrame({"ts": day[1:2], "B": [3.0]})  # a null never overwrites a value
    assert cat.write(subset, kind="prices", symbol="t").rows_skipped == 1
    assert _snapshot(cat.root) == before  # nothing rewritten
    # fills a stored null, repeats a value, adds a date; a repeated row in the batch is one row
    batch = pl.DataFrame({"ts": day[[0, 1, 2, 2]], "A": [1.0, None, 4.0, 4.0], "B": [2.0, 3.0, None, 5.0]})
    report = cat.write(batch, kind="prices", symbol="t")
    assert (report.rows_written, report.rows_skipped, report.partitions) == (2, 2, 1)
    back = cat.scan("prices").collect()
    assert back.with_columns(pl.col("A").fill_nan(-1.0)).rows() == [
        (day[0], 1.0, 2.0), (day[1], -1.0, 3.0), (day[2], 4.0, 5.0)  # NaN is a value too
    ]
    assert cat.write(back, kind="prices", symbol="t").rows_written == 0


@pytest.mark.parametrize(
    ("second", "match"),
    [
        ({"ts": ["2024-01-02", "2024-01-03"], "B": [5.0, 6.0]},
         r"prices conflict at ts=2024-01-03T00:00:00\+00:00, column 'B': the catalog holds 5\.0, "
         r"the batch 6\.0; nothing was written"),
        ({"ts": ["2024-01-03"], "A": [float("nan")]}, r"column 'A': the catalog holds 2\.0, the batch nan"),
        ({"ts": ["2025-03-01", "2025-03-01"], "A": [1.0, 1.5]},
         r"ts=2025-03-01T00:00:00\+00:00, column 'A': the batch holds 1\.0 and 1\.5; nothing"),
    ],
)
def test_prices_value_conflicts_raise_and_write_nothing(
    cat: Catalog, second: dict[str, list], match: str
) -> None:
    first = pl.DataFrame({"ts": _ts("2024-01-02", "2024-01-03"), "A": [1.0, 2.0], "B": [None, 5.0]})
    cat.write(first, kind="prices", symbol="t")
    before = _snapshot(cat.root)
    frame = pl.DataFrame(second).with_columns(_ts(*second["ts"]))
    with pytest.raises(CatalogError, match=match):
        cat.write(frame, kind="prices", symbol="t")
    assert _snapshot(cat.root) == before
    assert cat.scan("prices").collect().equals(first)


def test_symbol_keyword_fills_the_column_and_dates_are_utc(cat: Catalog) -> None:
    frame = pl.DataFrame(
        {
            "ts": pl.Series(["2024-01-01T20:00:00"]).str.to_datetime(
                time_unit="us", time_zone="America/New_York"
            ),
            "price": [1],
            "size": [2],
        }
    )
    cat.write(frame, kind="trades", symbol="ES")
    (part,) = (cat.root / "kind=trades" / "symbol=ES").iterdir()
    assert part.name == "date=2024-01-02"  # 20:00 in New York is 01:00 UTC the next day
    assert cat.scan("trades").collect()["ts"].to_list() == [
        dt.datetime(2024, 1, 2, 1, tzinfo=UTC)
    ]


def test_optional_columns_missing_from_some_files_read_as_null(cat: Catalog) -> None:
    cat.write(trade_ticks(10, symbol="A", seed=1), kind="trades")
    cat.write(trade_ticks(10, symbol="B", seed=1).drop("side", "trade_id"), kind="trades")
    back = cat.scan("trades").collect()
    assert back.columns == ["ts", "symbol", "price", "size", "side", "trade_id"]
    assert back.filter(symbol="B")["side"].null_count() == 10
    assert back.filter(symbol="A")["side"].null_count() == 0
    only_b = cat.scan("trades", symbols="B").collect()
    assert only_b.columns == ["ts", "symbol", "price", "size"]


def test_catalog_is_readable_as_a_plain_hive_dataset(cat: Catalog) -> None:
    cat.write(gbm_bars(3 * 1440, symbol="S", seed=2), kind="bars")
    hive = pl.scan_parquet(cat.root / "kind=bars", hive_partitioning=True).collect()
    assert hive.drop("date").equals(cat.scan("bars").collect())
    assert hive["date"].n_unique() == 3


# ------------------------------------------------------------------ idempotence
def test_reingesting_real_es_ticks_adds_nothing_and_keeps_identical_prints(
    cat: Catalog, es: pl.DataFrame, hashing: str
) -> None:
    batch = es.head(60_000)
    assert batch.is_duplicated().sum() > 10_000  # legit identical prints inside one batch
    first = cat.write(batch, kind="trades")
    assert first.rows_written == batch.height and first.rows_skipped == 0
    again = cat.write(batch, kind="trades")
    assert again == WriteReport(
        kind="trades", rows_written=0, rows_skipped=batch.height, partitions=0
    )
    assert cat.scan("trades").collect().equals(batch)
    # the same rows, shuffled, are still all recognised (no equality fast path)
    shuffled = batch.sample(fraction=1.0, shuffle=True, seed=3)
    assert cat.write(shuffled, kind="trades").rows_written == 0
    assert cat.scan("trades").collect().equals(batch)


def test_overlapping_batches_of_real_ticks_give_each_row_once(
    cat: Catalog, es: pl.DataFrame, hashing: str
) -> None:
    data = es.head(80_000)
    ts = data["ts"]
    # cut where ts changes so that no run of identical prints straddles a cut
    cut_a = next(i for i in range(50_000, 80_000) if ts[i] != ts[i - 1])
    cut_b = next(i for i in range(30_000, 80_000) if ts[i] != ts[i - 1])
    cat.write(data[:cut_a], kind="trades")
    report = cat.write(data[cut_b:], kind="trades")
    assert report.rows_skipped == cut_a - cut_b
    assert report.rows_written == data.height - cut_a
    assert cat.scan("trades").collect().equals(data)


def test_append_of_new_days_leaves_old_partitions_alone(cat: Catalog, es: pl.DataFrame) -> None:
    day1 = es.filter(pl.col("ts").dt.date() == dt.date(2013, 9, 1))
    rest = es.filter(pl.col("ts").dt.date() > dt.date(2013, 9, 1))
    cat.write(day1, kind="trades")
    old_file = cat.root / "kind=trades/symbol=ES/date=2013-09-01/data.parquet"
    before = old_file.stat().st_mtime_ns, old_file.read_bytes()
    report = cat.write(rest, kind="trades")
    assert report == WriteReport(
        kind="trades", rows_written=rest.height, rows_skipped=0, partitions=2
    )
    assert (old_file.stat().st_mtime_ns, old_file.read_bytes()) == before
    assert cat.scan("trades").collect().equals(es)


_row = st.tuples(
    st.integers(0, 3),  # second of the day
    st.sampled_from([1.0, 2.0, float("nan")]),
    st.sampled_from([1.0, None]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(_row, max_size=12), second=st.lists(_row, max_size=12))
def test_dedupe_counts_multiplicity_like_a_multiset(
    tmp_path_factory: pytest.TempPathFactory,
    hashing: str,
    first: list[tuple[int, float, float | None]],
    second: list[tuple[int, float, float | None]],
) -> None:
    cat = Catalog(tmp_path_factory.mktemp("prop"))

    def frame(rows: list[tuple[int, float, float | None]]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "ts": [dt.datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s, _, _ in rows],
                "price": [p for _, p, _ in rows],
                "size": [q for _, _, q in rows],
            },
            schema={"ts": TS, "price": pl.Float64, "size": pl.Float64},
        )

    def key(row: tuple[int, float, float | None]) -> tuple[int, str, str]:
        return (row[0], repr(row[1]), repr(row[2]))  # NaN == NaN as the catalog treats it

    cat.write(frame(first), kind="trades", symbol="P")
    report = cat.write(frame(second), kind="trades", symbol="P")
    have, new = Counter(map(key, first)), Counter(map(key, second))
    assert report.rows_written == sum(max(0, n - have[k]) for k, n in new.items())
    assert report.rows_written + report.rows_skipped == len(second)
    back = cat.scan("trades").collect()
    got = Counter((r[0].second, repr(r[2]), repr(r[3])) for r in back.iter_rows())
    assert got == have | new  # per distinct row: the larger of the two counts
    assert back["ts"].is_sorted()


def test_unsorted_interleaved_input_is_split_stably(cat: Catalog) -> None:
    frame = pl.DataFrame(
        {
            "ts": _ts("2024-01-02T00:00", "2024-01-01T00:00", "2024-01-02T00:00", "2024-01-01T05:00"),
            "symbol": ["A", "B", "A", "A"],
            "price": [3.0, 1.0, 2.0, 4.0],
            "size": [1.0, 1.0, 1.0, 1.0],
        }
    )
    report = cat.write(frame, kind="trades")
    assert report.partitions == 3
    back = cat.scan("trades").collect()
    assert back["price"].to_list() == [4.0, 3.0, 2.0, 1.0]  # equal ts keep input order


def test_empty_frame_writes_nothing(cat: Catalog) -> None:
    empty = trade_ticks(5, seed=1).clear()
    assert cat.write(empty, kind="trades") == WriteReport(
        kind="trades", rows_written=0, rows_skipped=0, partitions=0
    )
    assert not cat.root.exists()


# ---------------------------------------------------------------------- atomicity
def test_interrupted_write_leaves_the_catalog_unchanged(
    cat: Catalog, es: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat.write(es.head(1_000), kind="trades")
    before = _snapshot(cat.root)
    expected = cat.scan("trades").collect()
    real_write = pl.DataFrame.write_parquet
    calls: list[Path] = []

    def flaky_write(self: pl.DataFrame, file: Path, **kwargs: object) -> None:
        calls.append(Path(file))
        if len(calls) < 3:
            real_write(self, file, **kwargs)
            return
        Path(file).write_bytes(b"PAR1 half a file")  # a partial file, then the failure
        raise OSError("No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", flaky_write)
    with pytest.raises(CatalogError, match="No space left on device.*unchanged"):
        cat.write(es, kind="trades")  # touches 2013-09-01 (merge), -02 and -03 (new)
    assert len(calls) == 3
    assert all(p.name.startswith(".data.parquet.") for p in calls)
    assert _snapshot(cat.root) == before  # no temp files, no new folders, same bytes
    assert cat.scan("trades").collect().equals(expected)
    monkeypatch.undo()
    assert cat.write(es, kind="trades").rows_written == es.height - 1_000


def test_keyboard_interrupt_is_not_wrapped_and_cleans_up(
    cat: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: pl.DataFrame, file: Path, **kwargs: object) -> None:
        Path(file).write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cat.write(gbm_bars(10, seed=1), kind="bars")
    assert not cat.root.exists()  # the folders it created are gone too


def test_stale_temp_files_are_ignored_by_scan_and_removed_by_the_next_write(
    cat: Catalog,
) -> None:
    bars = gbm_bars(1440, seed=1)
    cat.write(bars, kind="bars")
    folder = cat.root / "kind=bars/symbol=SYN/date=2024-01-01"
    stale = folder / ".data.parquet.deadbeef.tmp"
    stale.write_bytes(b"left by a killed process")
    orphan = cat.root / "kind=bars/symbol=SYN/date=2024-01-05"
    orphan.mkdir()
    (orphan / ".data.parquet.0.tmp").write_bytes(b"")
    assert cat.scan("bars").collect().equals(bars)
    assert cat.summary()["partitions"].to_list() == [1]
    cat.write(bars.head(1).with_columns(close=pl.lit(1.0)), kind="bars")
    assert not stale.exists()


# ------------------------------------------------------------------------- scans
def _two_symbols(cat: Catalog) -> pl.DataFrame:
    frame = correlated_bars(3 * 1440, symbols=["ES", "NQ"], freq="1m", seed=8)
    cat.write(frame, kind="bars")
    return frame


def test_scan_filters_symbols_and_half_open_time_range(cat: Catalog) -> None:
    frame = _two_symbols(cat)
    got = cat.scan(
        "bars", symbols=["NQ"], start="2024-01-01T23:00", end=dt.datetime(2024, 1, 2, 1)
    ).collect()
    assert got["symbol"].unique().to_list() == ["NQ"]
    assert got["ts"].min() == dt.datetime(2024, 1, 1, 23, tzinfo=UTC)
    assert got["ts"].max() == dt.datetime(2024, 1, 2, 0, 59, tzinfo=UTC)  # end excluded
    assert got.height == 120
    assert cat.scan("bars", symbols="ES").collect().equals(frame.filter(symbol="ES"))
    assert cat.scan("bars", symbols=("ES", "NQ")).collect().height == frame.height


@pytest.mark.parametrize(
    ("start", "end", "rows"),
    [
        (dt.date(2024, 1, 2), None, 2 * 1440),
        (None, dt.date(2024, 1, 2), 1440),
        ("2024-01-02T00:00:00Z", "2024-01-02T00:02+00:00", 2),
        (dt.datetime(2024, 1, 1, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2024-01-02", 60),
        (pd.Timestamp("2024-01-01T00:00:00.000000001"), "2024-01-01T00:01", 0),
        ("2024-01-01T00:00:00.000000000", "2024-01-01T00:00:00.000000001", 1),
        ("2024-01-01T00:00:00.0000001", "2024-01-01T00:01:00.0000001", 1),
        ("2024-01-02", "2024-01-02", 0),
    ],
)
def test_scan_time_bounds_accept_dates_datetimes_and_strings(
    cat: Catalog, start: object, end: object, rows: int
) -> None:
    cat.write(gbm_bars(3 * 1440, seed=1), kind="bars")
    assert cat.scan("bars", start=start, end=end).collect().height == rows  # type: ignore[arg-type]


def test_scan_prunes_partitions_a_damaged_file_outside_the_filter_is_never_opened(
    cat: Catalog,
) -> None:
    _two_symbols(cat)
    (cat.root / "kind=bars/symbol=NQ/date=2024-01-02/data.parquet").write_bytes(b"garbage")
    (cat.root / "kind=bars/symbol=ES/date=2024-01-03/data.parquet").write_bytes(b"garbage")
    assert cat.scan("bars", symbols="ES", end="2024-01-03").collect().height == 2 * 1440
    assert cat.scan("bars", start="2024-01-01", end="2024-01-02").collect().height == 2 * 1440
    lf = cat.scan("bars", symbols="NQ", start="2024-01-03")
    assert lf.collect().height == 1440
    assert "date=2024-01-03" in lf.explain() and "date=2024-01-02" not in lf.explain()
    with pytest.raises(CatalogError, match=r"date=2024-01-02.*damaged"):
        cat.scan("bars", symbols="NQ")
    with pytest.raises(CatalogError, match=r"damaged: delete its folder"):
        cat.write(gbm_bars(10, symbol="ES", start="2024-01-03", seed=1), kind="bars")


def test_scan_of_a_kind_or_range_without_data_is_empty_with_its_schema(cat: Catalog) -> None:
    _two_symbols(cat)
    empty = cat.scan("trades").collect()
    assert empty.height == 0
    assert empty.schema == pl.Schema(
        {"ts": TS, "symbol": pl.String, "price": pl.Float64, "size": pl.Float64}
    )
    assert cat.scan("bars", symbols="CL").collect().height == 0
    assert cat.scan("bars", start="2030-01-01").collect().columns[:2] == ["ts", "symbol"]
    assert cat.scan("prices").collect().columns == ["ts"]


# ------------------------------------------------------------------ introspection
def test_summary_counts_from_footers(cat: Catalog, es: pl.DataFrame) -> None:
    cat.write(es, kind="trades")
    _two_symbols(cat)
    summary = cat.summary()
    assert summary.columns == [
        "kind", "symbol", "granularity", "first_date", "last_date", "partitions", "rows", "bytes"
    ]
    assert summary.drop("bytes").rows() == [
        ("bars", "ES", "day", dt.date(2024, 1, 1), dt.date(2024, 1, 3), 3, 3 * 1440),
        ("bars", "NQ", "day", dt.date(2024, 1, 1), dt.date(2024, 1, 3), 3, 3 * 1440),
        ("trades", "ES", "day", dt.date(2013, 9, 1), dt.date(2013, 9, 3), 3, 500_000),
    ]
    on_disk = sum(p.stat().st_size for p in cat.root.rglob("data.parquet"))
    assert summary["bytes"].sum() == on_disk
    assert cat.kinds() == ["bars", "trades"]
    assert cat.symbols("bars") == ["ES", "NQ"]
    (cat.root / "kind=bars/symbol=ES/date=2024-01-02/data.parquet").write_bytes(b"bad")
    with pytest.raises(CatalogError, match="cannot read the footer"):
        cat.summary()


def test_kinds_and_symbols_ignore_foreign_and_empty_folders(cat: Catalog) -> None:
    assert cat.kinds() == [] and cat.symbols("bars") == []
    assert cat.summary().height == 0
    cat.write(gbm_bars(5, seed=1), kind="bars")
    (cat.root / "kind=unknown/symbol=X/date=2024-01-01").mkdir(parents=True)
    (cat.root / "kind=quotes/symbol=EMPTY/date=2024-01-01").mkdir(parents=True)
    (cat.root / "notes.txt").write_text("hello")
    assert cat.kinds() == ["bars"]
    assert cat.symbols("quotes") == []


def test_reprs_describe_the_layout(cat: Catalog) -> None:
    assert repr(cat).endswith("(empty)")
    assert "(empty)" in cat._repr_html_()
    _two_symbols(cat)
    cat.write(ntlab.datasets.load("etf_daily_closes").head(3), kind="prices", symbol="etf")
    text = repr(cat)
    assert text.splitlines()[1:] == [
        "  bars    2 symbols, 6 partitions by day, 2024-01-01 .. 2024-01-03",
        "  prices  1 table, 1 partition by year, 2008 .. 2008",
    ]
    page = cat._repr_html_()
    assert page.count("<tr>") == 4 and "<td>NQ</td>" in page and "more rows" not in page


def test_repr_html_escapes_and_truncates(cat: Catalog) -> None:
    frame = pl.concat(
        [gbm_bars(1, symbol=f"S{i:03d}<&>", seed=i) for i in range(catalog_mod._REPR_HTML_MAX_ROWS + 2)]
    )
    cat.write(frame, kind="bars", progress=False)
    page = cat._repr_html_()
    assert "S000&lt;&amp;&gt;" in page and "<&>" not in page
    assert "... 2 more rows" in page


def test_progress_bar_shows_for_many_partitions(cat: Catalog, capsys: pytest.CaptureFixture[str]) -> None:
    cat.write(gbm_bars(25 * 24, freq="1h", seed=1), kind="bars")
    assert "write bars" in capsys.readouterr().err
    cat.write(gbm_bars(3, start="2025-01-01", seed=1), kind="bars")
    assert capsys.readouterr().err == ""
    cat.write(gbm_bars(3, start="2026-01-01", seed=1), kind="bars", progress=True)
    assert "partition" in capsys.readouterr().err
    cat.write(gbm_bars(25 * 24, freq="1h", start="2027-01-01", seed=1), kind="bars", progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------- errors
def test_unknown_kind_is_a_schema_error(cat: Catalog) -> None:
    with pytest.raises(SchemaError, match="unknown data kind 'tick'"):
        cat.write(gbm_bars(2, seed=1), kind="tick")
    with pytest.raises(SchemaError, match="unknown data kind 'tick'"):
        cat.scan("tick")
    with pytest.raises(SchemaError, match="unknown data kind"):
        cat.symbols("tick")


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no catalog at .*does not exist"):
        Catalog(tmp_path / "nope").scan("trades")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CatalogError, match="is a file; give a folder"):
        Catalog(tmp_path / "file")


@pytest.mark.parametrize(
    ("frame", "kwargs", "error", "match"),
    [
        (pl.DataFrame({"ts": [1], "price": [1.0], "size": [1.0]}).cast({"ts": TS}), {},
         SchemaError, "lacks required column"),
        (gbm_bars(2, symbol="A", seed=1), {"symbol": "B"}, SchemaError, r"contradicts.*\['A'\]"),
        (gbm_bars(2, seed=1).with_columns(symbol=pl.lit("EUR/USD")), {}, ConfigError,
         r"symbol='EUR/USD' cannot name a catalog folder \(it contains '/'\); use 'EUR-USD'"),
        (gbm_bars(2, seed=1), {"symbol": ".."}, ConfigError, "is a relative folder name"),
        (gbm_bars(2, seed=1), {"symbol": " ES"}, ConfigError, "leading or trailing whitespace"),
        (gbm_bars(2, seed=1).with_columns(ts=pl.lit(None, TS)), {}, DataError, "2 null ts"),
        (gbm_bars(2, seed=1).with_columns(symbol=pl.lit(None, pl.String)), {}, DataError,
         "2 null symbol"),
        (gbm_bars(2, seed=1).to_pandas(), {}, SchemaError, "polars DataFrame, got DataFrame"),
    ],
)
def test_bad_writes_are_rejected_with_the_fix(
    cat: Catalog, frame: object, kwargs: dict[str, str], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        cat.write(frame, kind="bars", **kwargs)  # type: ignore[arg-type]
    assert not cat.root.exists()


def test_prices_need_a_table_name_and_scan_one_table(cat: Catalog) -> None:
    prices = pl.DataFrame({"ts": _ts("2024-01-02"), "A": [1.0]})
    with pytest.raises(SchemaError, match="name the table with symbol="):
        cat.write(prices, kind="prices")
    with pytest.raises(ConfigError, match="symbol=3 must be a string"):
        cat.write(prices, kind="prices", symbol=3)  # type: ignore[arg-type]
    cat.write(prices, kind="prices", symbol="t1")
    cat.write(prices, kind="prices", symbol="t2")
    with pytest.raises(CatalogError, match="scan one table at a time"):
        cat.scan("prices")
    with pytest.raises(CatalogError, match="scan one table at a time"):
        cat.scan("prices", symbols=["t1", "t2"])
    assert cat.scan("prices", symbols="t2").collect().equals(prices)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": "2024-01-03", "end": "2024-01-02"}, "is after end"),
        ({"start": "yesterday"}, "not an ISO date"),
        ({"end": 1_700_000_000}, "must be a datetime, date or ISO string"),
        ({"start": "2024-01-01T00:00:00.1234567891"}, "more than 9 fractional digits"),
    ],
)
def test_bad_time_bounds_are_config_errors(cat: Catalog, kwargs: dict[str, object], match: str) -> None:
    cat.write(gbm_bars(2, seed=1), kind="bars")
    with pytest.raises(ConfigError, match=match):
        cat.scan("bars", **kwargs)  # type: ignore[arg-type]


def test_bad_symbol_filter_is_rejected(cat: Catalog) -> None:
    cat.write(gbm_bars(2, seed=1), kind="bars")
    with pytest.raises(ConfigError, match="cannot name a catalog folder"):
        cat.scan("bars", symbols="../x")


@pytest.mark.parametrize("symbol", ["EUR/USD", "EUR\\USD", "", ".", "..", " ES", "ES\n", "A\0B", 3])
def test_one_symbol_check_for_the_generators_the_stream_and_the_catalog(
    cat: Catalog, symbol: object
) -> None:
    with pytest.raises(ConfigError) as expected:
        check_symbol(symbol)
    message = str(expected.value)
    assert repr(symbol) in message
    frame = pl.DataFrame({"ts": _ts("2024-01-02"), "price": [1.0], "size": [1.0]})
    calls = [
        lambda: gbm_bars(2, symbol=symbol, seed=1),  # type: ignore[arg-type]
        lambda: StreamingBars(by="tick", every=2, symbol=symbol),  # type: ignore[arg-type]
        lambda: cat.write(frame, kind="trades", symbol=symbol),  # type: ignore[arg-type]
        lambda: cat.write(frame.with_columns(A=1.0).drop("price", "size"), kind="prices", symbol=symbol),
        lambda: cat.scan("trades", symbols=[symbol]),  # type: ignore[list-item]
    ]
    cat.root.mkdir()
    for call in calls:
        with pytest.raises(ConfigError) as got:
            call()
        assert str(got.value) == message
    if symbol == "EUR/USD":
        assert message.endswith("use 'EUR-USD' instead")
        cat.write(frame, kind="trades", symbol="EUR-USD")
        assert StreamingBars(by="tick", every=2, symbol="EUR-USD").symbol == "EUR-USD"
    assert check_symbol(".SPX") == ".SPX"  # a leading dot is a valid folder name


def test_interleaved_symbols_are_split_by_partition_by(cat: Catalog) -> None:
    frame = correlated_bars(10, symbols=[f"S{i}" for i in range(5)], corr=np.eye(5), seed=1)
    report = cat.write(frame, kind="bars")  # interleaved symbols: the partition_by path
    assert report.partitions == 5
    assert cat.scan("bars").collect().equals(_sorted(frame))


def test_rows_are_ordered_by_symbol_then_ts_and_files_hold_the_symbol(cat: Catalog) -> None:
    frame = _two_symbols(cat)
    path = cat.root / "kind=bars/symbol=NQ/date=2024-01-02/data.parquet"
    assert pl.read_parquet(path)["symbol"].unique().to_list() == ["NQ"]
    assert cat.scan("bars").collect().equals(_sorted(frame))
    assert os.listdir(path.parent) == ["data.parquet"]


def test_a_failed_rename_is_reported_and_a_second_write_completes(
    cat: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = gbm_bars(3 * 1440, seed=1)
    real_replace = os.replace
    calls: list[str] = []

    def flaky_replace(src: str, dst: str) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise PermissionError("read-only file system")
        real_replace(src, dst)

    monkeypatch.setattr(catalog_mod.os, "replace", flaky_replace)
    with pytest.raises(CatalogError, match=r"after 1 of 3 partitions.*writing the same frame again"):
        cat.write(bars, kind="bars")
    monkeypatch.undo()
    assert not list(cat.root.rglob("*.tmp"))
    assert cat.scan("bars").collect().height == 1440
    report = cat.write(bars, kind="bars")
    assert (report.rows_written, report.rows_skipped) == (2 * 1440, 1440)
    assert cat.scan("bars").collect().equals(bars)


def test_renames_are_made_durable_by_fsyncing_their_folders(
    cat: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open, real_fsync = os.open, os.fsync
    opened: dict[int, str] = {}
    synced: list[str] = []

    def open_(path: Path, flags: int) -> int:
        fd = real_open(path, flags)
        opened[fd] = str(path)
        return fd

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(opened[fd])
            raise OSError("this platform refuses to fsync folders")  # ignored by the catalog
        real_fsync(fd)

    monkeypatch.setattr(catalog_mod.os, "open", open_)
    monkeypatch.setattr(catalog_mod.os, "fsync", fsync)
    cat.write(gbm_bars(2 * 1440, seed=1), kind="bars")
    monkeypatch.undo()
    assert cat.scan("bars").collect().height == 2 * 1440
    sym = cat.root / "kind=bars" / "symbol=SYN"
    new_dirs = [sym / "date=2024-01-01", sym / "date=2024-01-02", sym, sym.parent, cat.root]
    assert synced == [str(p) for p in [*new_dirs, cat.root.parent]]  # deepest first


def test_prices_written_with_two_rows_per_ts_are_merged_on_the_next_write(cat: Catalog) -> None:
    day = _ts("2024-01-03", "2024-01-03")
    cat.write(pl.DataFrame({"ts": day[:1], "A": [2.0]}), kind="prices", symbol="t")
    path = next(cat.root.rglob("data.parquet"))
    pl.DataFrame({"ts": day, "A": [2.0, None], "B": [None, 5.0]}).write_parquet(path)  # older layout
    report = cat.write(pl.DataFrame({"ts": day[:1], "B": [5.0]}), kind="prices", symbol="t")
    assert (report.rows_written, report.partitions) == (0, 1)
    assert cat.scan("prices").collect().rows() == [(day[0], 2.0, 5.0)]


# ------------------------------------------------------------------- granularity
def _folders(cat: Catalog, kind: str, symbol: str) -> list[str]:
    return sorted(p.name for p in (cat.root / f"kind={kind}" / f"symbol={symbol}").iterdir())


def _daily(
    n: int = 1_100, symbols: tuple[str, ...] = ("A", "B"), start: str = "2020-01-01"
) -> pl.DataFrame:
    """Daily bars at 00:00 UTC, one run per symbol."""
    return pl.concat(
        [gbm_bars(n, symbol=s, freq="1d", start=start, seed=i) for i, s in enumerate(symbols)]
    )


def test_daily_bars_get_one_file_per_symbol_and_year(cat: Catalog) -> None:
    bars = _daily()  # 2020-01-01 .. 2023-01-04: four years per symbol
    report = cat.write(bars, kind="bars")
    pairs = bars.select("symbol", pl.col("ts").dt.year()).unique()
    assert report.partitions == pairs.height == 8
    assert len(list(cat.root.rglob("data.parquet"))) == pairs.height
    assert _folders(cat, "bars", "A") == ["date=2020", "date=2021", "date=2022", "date=2023"]
    assert cat.scan("bars").collect().equals(bars)
    assert cat.summary().drop("bytes").rows()[0] == (
        "bars", "A", "year", dt.date(2020, 1, 1), dt.date(2023, 1, 4), 4, 1_100
    )
    # the interleaved (partition_by) path groups by year as well
    wide = correlated_bars(400, symbols=["X", "Y"], freq="1d", seed=3)
    assert cat.write(wide, kind="bars").partitions == 4
    assert _folders(cat, "bars", "Y") == ["date=2024", "date=2025"]


def test_intraday_trades_get_one_file_per_day(cat: Catalog, es: pl.DataFrame) -> None:
    report = cat.write(es, kind="trades")
    assert report.partitions == 3
    assert _folders(cat, "trades", "ES") == [f"date=2013-09-0{d}" for d in (1, 2, 3)]
    hourly = gbm_bars(24 * 5, symbol="H", freq="1h", seed=1)  # gap of an hour: day partitions
    assert cat.write(hourly, kind="bars").partitions == 5
    assert cat.summary()["granularity"].to_list() == ["day", "day"]


def test_explicit_month_partitions_prune_and_are_kept_by_later_writes(cat: Catalog) -> None:
    bars = gbm_bars(120, symbol="M", freq="1d", start="2023-11-15", seed=2)  # to 2024-03-13
    report = cat.write(bars, kind="bars", partition="month")
    assert report.partitions == 5
    assert _folders(cat, "bars", "M") == [
        "date=2023-11", "date=2023-12", "date=2024-01", "date=2024-02", "date=2024-03"
    ]
    assert cat.summary()["granularity"].to_list() == ["month"]
    # a December partition ends at the next year's start
    (cat.root / "kind=bars/symbol=M/date=2024-01/data.parquet").write_bytes(b"garbage")
    dec = cat.scan("bars", start="2023-12-01", end="2024-01-01").collect()
    assert dec.equals(bars.filter(pl.col("ts").dt.month() == 12))
    lf = cat.scan("bars", start="2024-02-10", end="2024-03-02")
    assert lf.collect().height == 21
    assert "date=2024-02" in lf.explain() and "date=2024-03" in lf.explain()
    assert "date=2024-01" not in lf.explain()
    # None reuses "month" even for data that alone would be partitioned by year
    more = gbm_bars(30, symbol="M", freq="1d", start="2024-03-14", seed=3)
    assert cat.write(more, kind="bars").partitions == 2  # 2024-03 (merged) and 2024-04
    assert _folders(cat, "bars", "M")[-1] == "date=2024-04"


def test_a_partition_that_conflicts_with_the_catalog_is_an_error(cat: Catalog) -> None:
    cat.write(_daily(30), kind="bars")
    before = _snapshot(cat.root)
    with pytest.raises(
        CatalogError,
        match=r"partition='day' conflicts with bars 'A', which the catalog holds by year; "
        r"drop partition= \(or pass 'year'\).*repartition",
    ):
        cat.write(gbm_bars(3, symbol="A", freq="1d", seed=9), kind="bars", partition="day")
    assert _snapshot(cat.root) == before
    # an explicit partition that agrees is fine, and so is one for a new symbol
    assert cat.write(_daily(30), kind="bars", partition="year").rows_written == 0
    new = gbm_bars(3, symbol="C", freq="1d", seed=9)
    assert cat.write(new, kind="bars", partition="day").partitions == 3
    with pytest.raises(ConfigError, match="partition='week': use 'day', 'month', 'year' or None"):
        cat.write(_daily(3), kind="bars", partition="week")  # type: ignore[arg-type]


def test_a_symbol_folder_that_mixes_granularities_is_an_error(cat: Catalog) -> None:
    cat.write(_daily(30), kind="bars")
    stray = cat.root / "kind=bars/symbol=A/date=2020-02-01"
    stray.mkdir()
    year_file = cat.root / "kind=bars/symbol=A/date=2020/data.parquet"
    (stray / "data.parquet").write_bytes(year_file.read_bytes())
    mixed = r"symbol=A' mixes partition granularities: day \(date=2020-02-01\), year"
    with pytest.raises(CatalogError, match=mixed):
        cat.write(_daily(31), kind="bars")
    with pytest.raises(CatalogError, match="mixes partition granularities"):
        cat.write(_daily(31), kind="bars", partition="year")
    assert cat.summary()["granularity"].to_list() == ["day, year", "year"]
    assert "by day, year" in repr(cat)


def test_a_new_symbol_with_one_timestamp_borrows_the_batch_granularity(cat: Catalog) -> None:
    cat.write(_daily(10, symbols=("A", "B")), kind="bars")
    one_day = _daily(1, symbols=("A", "B", "IPO"), start="2020-01-11")
    cat.write(one_day, kind="bars")  # IPO alone says nothing; A and B are by year
    assert _folders(cat, "bars", "IPO") == ["date=2020"]
    # two new symbols: the lone row uses the spacing of the whole batch
    pooled = pl.concat(
        [_daily(50, symbols=("N1",)), _daily(1, symbols=("N2",), start="2020-03-01")]
    )
    cat.write(pooled, kind="bars")
    assert _folders(cat, "bars", "N2") == ["date=2020"]
    # nothing to go by: day partitions
    cat.write(gbm_bars(1, symbol="LONE", seed=1), kind="bars")
    assert _folders(cat, "bars", "LONE") == ["date=2024-01-01"]


def test_one_batch_can_mix_granularities_across_symbols(cat: Catalog) -> None:
    cat.write(_daily(60, symbols=("D",)), kind="bars", partition="month")
    batch = pl.concat(
        [_daily(5, symbols=("D",), start="2020-03-01"), gbm_bars(3 * 1440, symbol="I", seed=1)]
    )
    report = cat.write(batch, kind="bars")
    assert report.partitions == 1 + 3  # D's March (merged), I's three days
    assert _folders(cat, "bars", "I") == ["date=2024-01-01", "date=2024-01-02", "date=2024-01-03"]
    assert _folders(cat, "bars", "D")[-1] == "date=2020-03"
    assert cat.scan("bars", symbols="D").collect().height == 65


def test_scans_prune_year_partitions_by_their_whole_year(cat: Catalog) -> None:
    bars = _daily()
    cat.write(bars, kind="bars")
    for sym, year in (("A", 2021), ("A", 2023), ("B", 2022)):
        (cat.root / f"kind=bars/symbol={sym}/date={year}/data.parquet").write_bytes(b"garbage")
    march = pl.col("ts").is_between(
        dt.datetime(2022, 3, 1, tzinfo=UTC), dt.datetime(2022, 4, 1, tzinfo=UTC), closed="left"
    )
    want = bars.filter(march, symbol="A")
    got = cat.scan("bars", symbols="A", start="2022-03-01", end="2022-04-01").collect()
    assert got.equals(want) and got.height == 31
    # [2020-06-01, 2021-01-01) touches 2020 only; 2021's file is never opened
    late_2020 = cat.scan("bars", symbols="A", start="2020-06-01", end="2021-01-01")
    assert late_2020.collect().height == 214
    # a filter that intersects a year opens it, even by one nanosecond
    with pytest.raises(CatalogError, match=r"date=2021.*damaged"):
        cat.scan("bars", symbols="A", start="2020-06-01", end="2021-01-01T00:00:00.000000001")
    with pytest.raises(CatalogError, match=r"date=2023.*damaged"):
        cat.scan("bars", symbols="A", start="2022-12-31T23:59:59.999999999")
    lf = cat.scan("bars", start="2020-12-31", end="2021-01-01")  # A 2020 and B 2020
    assert lf.collect()["symbol"].to_list() == ["A", "B"]
    assert lf.explain().count("date=2020") == 2 and "date=2021" not in lf.explain()


def test_reingesting_daily_data_adds_no_rows(cat: Catalog) -> None:
    prices = ntlab.datasets.load("etf_daily_closes")
    cat.write(prices, kind="prices", symbol="etf")
    before = _snapshot(cat.root)
    again = cat.write(prices, kind="prices", symbol="etf")
    assert again == WriteReport(
        kind="prices", rows_written=0, rows_skipped=prices.height, partitions=0
    )
    assert _snapshot(cat.root) == before
    # the next day lands in the last year's file
    last = prices.tail(1).with_columns(pl.col("ts") + pl.duration(days=3, time_unit="ns"))
    assert cat.write(pl.concat([prices.tail(5), last]), kind="prices", symbol="etf") == WriteReport(
        kind="prices", rows_written=1, rows_skipped=5, partitions=1
    )
    assert cat.scan("prices", symbols="etf").collect().height == prices.height + 1


def test_summary_falls_back_to_the_period_and_foreign_folders_are_ignored(cat: Catalog) -> None:
    bars = _daily(800, symbols=("A",), start="2020-03-05")  # 2020-03-05 .. 2022-05-13
    cat.write(bars, kind="bars")
    path = cat.root / "kind=bars/symbol=A/date=2022/data.parquet"
    pl.read_parquet(path).write_parquet(path, statistics=False)  # written by another tool
    for name in ("date=latest", "date=2024-13", "date=2023-02-30", "date=9999"):
        (cat.root / "kind=bars/symbol=A" / name).mkdir()
        (cat.root / "kind=bars/symbol=A" / name / "data.parquet").write_bytes(b"not ours")
    row = cat.summary().row(0)
    assert row[2:7] == ("year", dt.date(2020, 3, 5), dt.date(2022, 12, 31), 3, 800)
    assert cat.scan("bars").collect().equals(bars)


def test_real_sp500_daily_bars_are_stored_by_symbol_and_year(cat: Catalog) -> None:
    with pytest.warns(DataQualityWarning, match="11 rows dropped"):
        bars = ntlab.datasets.load("sp500_daily")
    report = cat.write(bars, kind="bars", progress=False)
    pairs = bars.select("symbol", pl.col("ts").dt.year()).unique()
    assert bars["symbol"].n_unique() == 505 and 2_500 < pairs.height < 3_100
    assert report == WriteReport(
        kind="bars", rows_written=bars.height, rows_skipped=0, partitions=pairs.height
    )
    assert len(list(cat.root.rglob("data.parquet"))) == pairs.height
    assert not list(cat.root.rglob("*.tmp"))
    got = cat.scan("bars", symbols="AAPL", start="2016-01-01", end=dt.date(2017, 1, 1)).collect()
    want = bars.filter(pl.col("ts").dt.year() == 2016, symbol="AAPL")
    assert got.equals(want) and got.height == 252
    summary = cat.summary()
    assert summary.height == 505 and summary["rows"].sum() == bars.height
    assert summary["granularity"].unique().to_list() == ["year"]
    # re-ingesting a slice (a few symbols, all their years) adds nothing
    few = bars.filter(pl.col("symbol").is_in(["AAPL", "MSFT", "XOM"]))
    assert cat.write(few, kind="bars").rows_written == 0
