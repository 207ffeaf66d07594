"""Every notebook, template and benchmark runs end to end (through papermill, as users run them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from ntlab.cli import main
from ntlab.runs.notebook import notebook_parameters, run_notebook

pytestmark = pytest.mark.notebook

RUNNABLE = [
    "notebooks/01_data.ipynb",
    "notebooks/02_features.ipynb",
    "notebooks/03_backtest.ipynb",
    "notebooks/04_models.ipynb",
    "notebooks/05_portfolio.ipynb",
    "notebooks/06_live_paper.ipynb",
    "notebooks/07_live_websocket.ipynb",
    "templates/demo.ipynb",
    "bench_notebooks/data.ipynb",
    "bench_notebooks/kernels.ipynb",
    "bench_notebooks/backtest_peers.ipynb",
    "bench_notebooks/inference.ipynb",
    "bench_notebooks/portfolio.ipynb",
    "bench_notebooks/live_latency.ipynb",
    "bench_notebooks/websocket.ipynb",
]


def _outputs(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _images(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.parametrize("notebook", RUNNABLE)
def test_parameters_are_typed_and_documented(repo: Path, notebook: str) -> None:
    params = notebook_parameters(repo / notebook)
    assert params
    for param in params.values():
        assert param.help, f"{notebook}: parameter {param.name} has no # help comment"


def test_tutorial_runs(repo: Path, tmp_path: Path) -> None:
    result = run_notebook(repo / "notebooks/01_data.ipynb", out_dir=tmp_path, cwd=repo)
    text = _outputs(result.notebook)
    assert "streaming bars == Polars bars: True" in text
    assert "rows_written=0" in text  # the second ingest of the same trades adds nothing
    assert "100.0000%" in text  # the rebuilt book matches the venue's bookTicker
    assert _images(result.notebook) >= 1


def test_features_tutorial_runs(repo: Path, tmp_path: Path) -> None:
    result = run_notebook(repo / "notebooks/02_features.ipynb", out_dir=tmp_path, cwd=repo)
    assert "streaming EMA == batch EMA: True" in _outputs(result.notebook)
    assert _images(result.notebook) == 3


def test_kernels_benchmark_writes_the_common_json(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    out = tmp_path / "kernels.json"
    small = ["-p", "rows", "20000", "-p", "stream_events", "20000", "-p", "grid_rows", "5000", "-p", "grid_windows", "4", "-p", "repeat", "1"]
    result = CliRunner().invoke(main, ["bench", "kernels", "--json", str(out), *small])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    for name in ("ema_speedup_vs_polars", "rolling_std_speedup_vs_polars", "ema_speedup_vs_pandas", "stream_10_features_ns"):
        assert doc["metrics"][name]["value"] > 0
    assert doc["metrics"]["ema_speedup_vs_polars"]["peer"] == "polars"
    assert doc["metrics"]["stream_10_features_ns"]["better"] == "lower"
    assert "grid_gpu_speedup_vs_cpu" not in doc["metrics"] or doc["machine"]["gpu"]


def test_demo_template_writes_its_report(repo: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    sheet, book_sheet = tmp_path / "backtest.html", tmp_path / "portfolio.html"
    args = ["run", str(repo / "templates/demo.ipynb"), "-o", str(tmp_path), "-p", "catalog", str(catalog), "-p", "tearsheet", str(sheet)]
    args += ["-p", "portfolio_tearsheet", str(book_sheet), "-p", "portfolio_stocks", "20"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = tmp_path / "demo.html"
    html = report.read_text()
    assert "book BBO match share" in html and "100.0000%" in html
    assert "SPY crossover trades" in html and "Sharpe" in html
    assert html.count("data:image/png;base64") >= 3  # the two figures and the sweep heatmap
    assert sheet.read_text().count("data:image/png;base64") == 4
    assert (catalog / "kind=trades" / "symbol=ES").is_dir()
    assert "equal-weight book return" in html and "48 monthly rebalances" in _outputs(tmp_path / "demo.ipynb")
    assert "Rebalancing: max_sharpe" in book_sheet.read_text()
    assert "streaming == Polars" in _outputs(tmp_path / "demo.ipynb")
    assert "live over WebSockets == venue" in html and "each once at the venue" in _outputs(tmp_path / "demo.ipynb")


def test_data_benchmark_writes_the_common_json(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    out = tmp_path / "data.json"
    args = ["bench", "data", "--json", str(out), "-p", "synthetic_trades", "200000", "-p", "python_loop_trades", "20000", "-p", "repeat", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["bench"] == "data"
    assert set(doc["machine"]) == {"cpu", "cores", "gpu", "python", "packages"}
    for name in ("ingest_rows_per_s", "scan_rows_per_s", "bars_speedup_vs_pandas", "stream_bars_events_per_s", "book_updates_per_s", "book_bbo_match_share"):
        entry = doc["metrics"][name]
        assert set(entry) == {"value", "unit", "better", "peer"}
        assert entry["value"] > 0
    assert doc["metrics"]["bars_speedup_vs_pandas"]["unit"] == "x"
    assert doc["metrics"]["bars_speedup_vs_pandas"]["peer"] == "pandas"
    assert doc["metrics"]["book_bbo_match_share"]["value"] == 1.0
    assert "bars_speedup_vs_pandas" in result.output


def test_backtest_tutorial_runs(repo: Path, tmp_path: Path) -> None:
    params = {"rows": 8000, "out_dir": str(tmp_path / "out")}
    result = run_notebook(repo / "notebooks/03_backtest.ipynb", out_dir=tmp_path, cwd=repo, parameters=params)
    text = _outputs(result.notebook)
    assert "compiled trades == vectorised trades: True" in text
    assert "folds; out-of-sample total return" in text
    assert _images(result.notebook) == 4  # equity, drawdown, the sweep heatmap and the fused sweep's
    assert (tmp_path / "out" / "sma_cross.html").read_text().count("data:image/png;base64,") == 4


def test_backtest_peers_benchmark_runs_without_peers(repo: Path, tmp_path: Path, monkeypatch) -> None:
    """The peers' venvs are not built by `make test` (vectorbt's alone is 1 GB); the notebook
    says which it skipped and still measures ntlab. The peers themselves are tested in test_peers.py."""
    monkeypatch.chdir(repo)
    out = tmp_path / "peers.json"
    small = ["-p", "w1_bars", "20000", "-p", "w2_bars", "5000", "-p", "w3_ticks", "5000", "-p", "repeat", "1", "-p", "peers", ""]
    result = CliRunner().invoke(main, ["bench", "backtest_peers", "--json", str(out), *small])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    for name in ("w1_ntlab_s", "w1_ntlab_event_s", "w2_ntlab_s", "w2_ntlab_per_run_s", "w3_compiled_ns_per_event", "w3_python_ns_per_event"):
        assert doc["metrics"][name]["value"] > 0
    assert not any(name.startswith(("w1_speedup", "w2_speedup", "w3_compiled_speedup")) for name in doc["metrics"])


def test_inference_benchmark_writes_the_common_json(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    out = tmp_path / "inference.json"
    small = ["-p", "calls", "300", "-p", "block", "100", "-p", "blocks", "5", "-p", "batch", "1000", "-p", "train_samples", "2000", "-p", "epochs", "1", "-p", "try_compile", "False"]
    result = CliRunner().invoke(main, ["bench", "inference", "--json", str(out), *small])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    for name in ("mlp_batch1_median_us", "mlp_batch1_p99_us", "mlp_speedup_vs_torch_eager", "train_samples_per_s"):
        assert doc["metrics"][name]["value"] > 0
    assert doc["metrics"]["mlp_speedup_vs_torch_eager"]["peer"] == "torch eager"


def test_models_tutorial_runs(repo: Path, tmp_path: Path) -> None:
    params = {"rows": 6000, "epochs": 2, "hidden": 8, "registry_dir": str(tmp_path / "registry")}
    result = run_notebook(repo / "notebooks/04_models.ipynb", out_dir=tmp_path, cwd=repo, parameters=params)
    text = _outputs(result.notebook)
    assert "out of sample: sign accuracy" in text
    assert "production after promote: 2" in text and "production after rollback: 1" in text
    assert "exported kernel vs torch: max |diff|" in text
    assert (tmp_path / "registry" / "spy_direction" / "v0002" / "manifest.json").is_file()


def test_portfolio_tutorial_runs(repo: Path, tmp_path: Path) -> None:
    params = {"universe": 12, "every": 63, "out_dir": str(tmp_path / "05")}
    result = run_notebook(repo / "notebooks/05_portfolio.ipynb", out_dir=tmp_path, cwd=repo, parameters=params)
    text = _outputs(result.notebook)
    assert "using 12: AAL, AAPL" in text and "rebalances from 2014-02-07 to 2018-02-07" in text
    assert "historical: 1-day 95% VaR" in text and "left in cash" in text
    assert _images(result.notebook) == 4  # frontier, risk contributions, growth of 1, weights
    assert (tmp_path / "05" / "max_sharpe_rebalance.html").is_file()


def test_live_paper_tutorial_runs(repo: Path, tmp_path: Path) -> None:
    # 16,432 events at 1,500/s: an 11 s replay, longer than the live steps take (they stop it early)
    params = {"rows": 60_000, "rate": 1_500.0, "poll_s": 1.0, "out_dir": str(tmp_path / "06")}
    result = run_notebook(repo / "notebooks/06_live_paper.ipynb", out_dir=tmp_path, cwd=repo, parameters=params)
    text = _outputs(result.notebook)
    assert "16,432 events, 2,271 fills, 1,135 round trips" in text  # the backtest
    assert "Snapshot('es-paper' running/active" in text and "tick-to-order p50" in text
    assert "after flatten: position 0" in text and "trading state 'reducing'" in text
    assert "orders sent since the change: 0" in text and "'risk: order quantity above max_order_qty'" in text
    assert "final status 'stopped'" in text
    assert "live fills == backtest fills: True (2,271 fills)" in text
    assert "Recovery(cash" in text and "torn: none" in text and "resumed at event" in text
    assert _images(result.notebook) == 1  # live fills on the price, P&L per snapshot
    (session,) = (tmp_path / "06").iterdir()
    assert (session / "es-paper" / "journal").is_dir() and (session / "parity" / "venue").is_dir()


def test_live_websocket_tutorial_runs(repo: Path, tmp_path: Path) -> None:
    result = run_notebook(repo / "notebooks/07_live_websocket.ipynb", out_dir=tmp_path, cwd=repo, parameters={"watch_s": 1.0})
    text = _outputs(result.notebook)
    assert "ReplayServer(ws://127.0.0.1:" in text and "VenueServer(ws://127.0.0.1:" in text
    assert "Snapshot('engine' running/active" in text
    assert "connects 1 -> 2, depth snapshots 1 -> 2" in text
    assert "trading state 'halted'; alarm:" in text and "no market data for" in text and "data flows again" in text
    assert "trading state 'active'" in text and "'connects': 2, 'disconnects': 1" in text
    assert "cash equal: True" in text
    line = next(t for t in text.splitlines() if t.startswith("orders at the venue"))
    venue, distinct, sent = (int(x.replace(",", "")) for x in re.findall(r"[0-9][0-9,]*", line))
    assert venue == distinct == sent > 0
    position = next(t for t in text.splitlines() if t.startswith("position: engine"))
    assert position.split("engine ")[1].split(" BTC")[0] == position.split("venue ")[1].split(" BTC")[0]
    assert _images(result.notebook) == 1


def test_websocket_benchmark_writes_the_common_json(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    out = tmp_path / "websocket.json"
    result = CliRunner().invoke(main, ["bench", "websocket", "--json", str(out), "-p", "repeat", "1", "-p", "speed", "200"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc["metrics"]) == {"ws_msgs_per_s", "ws_msgs_per_s_vs_websockets_json", "wire_to_order_p50_us", "wire_to_order_p99_us",
                                   "ws_tick_to_order_p50_us"}  # fmt: skip
    m = {k: v["value"] for k, v in doc["metrics"].items()}
    assert m["ws_msgs_per_s"] > 0 and m["ws_msgs_per_s_vs_websockets_json"] > 0
    assert 0 < m["wire_to_order_p50_us"] <= m["wire_to_order_p99_us"] and m["ws_tick_to_order_p50_us"] > 0


def test_portfolio_benchmark_writes_the_common_json(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    out = tmp_path / "portfolio.json"
    small = ["-p", "sizes", "'5,10'", "-p", "days", "120", "-p", "repeat", "1", "-p", "objectives", "max_sharpe,hrp", "-p", "rebalance_assets", "8"]
    result = CliRunner().invoke(main, ["bench", "portfolio", "--json", str(out), *small])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    timed = {"max_sharpe_5_s", "hrp_5_s", "max_sharpe_10_s", "hrp_10_s", "rebalance_max_sharpe_8_s"}
    ratios = {"max_sharpe_10_speedup_vs_pypfopt", "hrp_10_speedup_vs_pypfopt"}
    assert set(doc["metrics"]) == timed | ratios
    assert all(doc["metrics"][m]["value"] > 0 and doc["metrics"][m]["better"] == "lower" for m in timed)
    assert all(doc["metrics"][m]["peer"] == "pypfopt" and doc["metrics"][m]["better"] == "higher" for m in ratios)


def test_live_latency_benchmark_writes_the_common_json(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    out = tmp_path / "live_latency.json"
    small = ["-p", "repeat", "1", "-p", "rss_first", "20000", "-p", "rss_events", "60000", "-p", "cell_runs", "3"]
    result = CliRunner().invoke(main, ["bench", "live_latency", "--json", str(out), *small])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc["metrics"]) == {
        "tick_to_order_p50_us", "tick_to_order_p99_us", "tick_to_order_p999_us", "events_per_s",
        "live_vs_backtest_events_per_s", "headless_rss_mb", "rss_growth_10m_mb", "notebook_cell_ms",
    }  # fmt: skip
    m = {k: v["value"] for k, v in doc["metrics"].items()}
    assert 0 < m["tick_to_order_p50_us"] <= m["tick_to_order_p99_us"] <= m["tick_to_order_p999_us"]
    assert m["events_per_s"] > 0 and m["headless_rss_mb"] > 50 and m["notebook_cell_ms"] > 0
    assert "live fills == backtest fills" in _outputs(tmp_path / "live_latency.ipynb")
