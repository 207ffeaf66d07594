"""The command line: data names, ingest and ls against a real catalog."""

from __future__ import annotations

from click.testing import CliRunner

from ntlab.cli import main


def test_data_names_lists_every_dataset() -> None:
    import ntlab.datasets

    result = CliRunner().invoke(main, ["data", "names"])
    assert result.exit_code == 0
    assert len(result.output.strip().splitlines()) == len(ntlab.datasets.names())
    assert "es_ticks" in result.output and "America/Chicago" in result.output


def test_ingest_then_ls_then_reingest(tmp_path) -> None:
    runner = CliRunner()
    root = tmp_path / "cat"
    first = runner.invoke(main, ["data", "ingest", "mtgox_trades", "usdjpy_ticks", "-c", str(root)])
    assert first.exit_code == 0, first.output
    assert "mtgox_trades: WriteReport(kind='trades', rows_written=2331" in first.output
    listing = runner.invoke(main, ["data", "ls", "-c", str(root)])
    assert listing.exit_code == 0
    assert "BTCUSD" in listing.output and "USDJPY" in listing.output and "2331" in listing.output
    again = runner.invoke(main, ["data", "ingest", "mtgox_trades", "-c", str(root)])
    assert "rows_written=0, rows_skipped=2331" in again.output


def test_ingest_reports_quality_fixes(tmp_path) -> None:
    result = CliRunner().invoke(main, ["data", "ingest", "bitstamp_trades", "-c", str(tmp_path / "c")])
    assert result.exit_code == 0
    assert "bitstamp_trades: 9999 rows in, 9998 rows out" in result.output
    assert "bad_size: 1 row dropped" in result.output


def test_cli_errors(tmp_path) -> None:
    runner = CliRunner()
    empty = runner.invoke(main, ["data", "ingest", "-c", str(tmp_path)])
    assert empty.exit_code == 2 and "name at least one data set" in empty.output
    unknown = runner.invoke(main, ["data", "ingest", "es_tick", "-c", str(tmp_path)])
    assert unknown.exit_code == 1 and "ConfigError: unknown data set 'es_tick'; did you mean 'es_ticks'" in unknown.output
    missing = runner.invoke(main, ["data", "ls", "-c", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "CatalogError" in missing.output
    (tmp_path / "fresh").mkdir()
    empty_ls = runner.invoke(main, ["data", "ls", "-c", str(tmp_path / "fresh")])
    assert empty_ls.exit_code == 0 and "is empty" in empty_ls.output


def test_markets_and_snapshots_never_mix_in_a_catalog(tmp_path) -> None:
    from ntlab.data.catalog import Catalog

    names = ["binance_spot_btcusdt_trades", "binance_usdm_btcusdt_trades", "binance_spot_btcusdt_depth", "binance_spot_btcusdt_snapshot"]
    result = CliRunner().invoke(main, ["data", "ingest", *names, "-c", str(tmp_path)])
    assert result.exit_code == 0, result.output
    store = Catalog(tmp_path)
    assert store.symbols("trades") == ["BTCUSDT", "BTCUSDT-PERP"]
    spot = store.scan("trades", symbols="BTCUSDT").collect()
    perp = store.scan("trades", symbols="BTCUSDT-PERP").collect()
    assert spot["trade_id"].max() < 4e9 < perp["trade_id"].min()  # distinct venues, distinct ids
    assert store.kinds() == ["depth", "snapshot", "trades"]
    snapshot = store.scan("snapshot").collect()
    assert snapshot["update_id"].n_unique() == 1
