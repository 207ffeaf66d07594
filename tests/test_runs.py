"""Notebook runs: parameters are checked before any kernel starts; bench JSON has one shape."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from ntlab.cli import main
from ntlab.exceptions import ConfigError
from ntlab.runs.bench import bench_dir, machine, metric, run_bench, time_best, write_results
from ntlab.runs.notebook import check_parameters, notebook_parameters, parse_value, run_notebook


def _notebook(path: Path, parameters: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


PARAMS = 'rows: int = 3  # how many rows\ncolor = "#1f77b4"  # line colour\nratio: float = 0.5  # a share\nlabel = "x"  # a name\nmaybe: str | None = None  # optional\nflag: bool = False  # a switch'


def test_parameters_are_read_with_types_and_help(tmp_path) -> None:
    path = _notebook(tmp_path / "t.ipynb", PARAMS, "print(rows)")
    params = notebook_parameters(path)
    assert {n: p.types for n, p in params.items()} == {
        "rows": ("int",),
        "color": ("str",),
        "ratio": ("float",),
        "label": ("str",),
        "maybe": ("str", "None"),
        "flag": ("bool",),
    }
    assert params["rows"].help == "how many rows"
    assert params["color"].help == "line colour" and params["color"].default == "'#1f77b4'"
    check_parameters(path, {"rows": 5, "ratio": 1, "maybe": None, "flag": True})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"rowz": 5}, r"has no parameter\(s\) \['rowz'\]; it declares"),
        ({"rows": "5"}, r"parameter 'rows' must be int \(default 3\); got '5' of type str"),
        ({"rows": True}, r"parameter 'rows' must be int"),
        ({"ratio": "high"}, r"parameter 'ratio' must be float"),
        ({"maybe": 3}, r"parameter 'maybe' must be str \| None.*quote it: -p maybe"),
    ],
)
def test_unknown_or_mistyped_parameters_are_errors(tmp_path, given, message) -> None:
    path = _notebook(tmp_path / "t.ipynb", PARAMS, "raise SystemExit('must not run')")
    with pytest.raises(ConfigError, match=message):
        run_notebook(path, out_dir=tmp_path / "out", parameters=given)
    assert not (tmp_path / "out").exists()


def test_bad_parameter_cells(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        notebook_parameters(tmp_path / "none.ipynb")
    odd = _notebook(tmp_path / "odd.ipynb", "when: datetime = None  # a time", "")
    with pytest.raises(ConfigError, match=r"parameter 'when' has type 'datetime'"):
        notebook_parameters(odd)
    expr = _notebook(tmp_path / "expr.ipynb", "size = 2 ** 10  # computed", "")
    with pytest.raises(ConfigError, match=r"parameter 'size' has a default '2 \*\* 10' that is not a literal"):
        notebook_parameters(expr)
    code = _notebook(tmp_path / "code.ipynb", "import os", "")
    with pytest.raises(ConfigError, match=r"may only hold `name: type = literal  # help` lines; got 'import os'"):
        notebook_parameters(code)
    nb = nbformat.read(code, as_version=4)
    nb.cells[0].metadata["tags"] = []
    nbformat.write(nb, code)
    with pytest.raises(ConfigError, match="exactly one code cell tagged 'parameters'; it has 0"):
        notebook_parameters(code)


def test_parse_value() -> None:
    assert parse_value("3") == 3
    assert parse_value("0.25") == 0.25
    assert parse_value("['a', 'b']") == ["a", "b"]
    assert parse_value("out/demo") == "out/demo"
    assert parse_value("None") is None


@pytest.mark.notebook
def test_run_notebook_writes_executed_notebook_and_report(tmp_path) -> None:
    path = _notebook(tmp_path / "t.ipynb", PARAMS, "print('rows are', rows * 2, label)")
    result = run_notebook(path, out_dir=tmp_path / "out", parameters={"rows": 21})
    executed = nbformat.read(result.notebook, as_version=4)
    outputs = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "rows are 42 x" in outputs
    html = result.report.read_text()
    assert "rows are 42 x" in html and "<html" in html
    assert result.parameters == {"rows": 21}


def test_metric_and_results_shape(tmp_path) -> None:
    metrics = {"a_per_s": metric(10.0, "rows/s", better="higher"), "a_vs_b": metric(2, "x", better="higher", peer="b")}
    doc = write_results("unit", metrics, tmp_path / "r" / "x.json")
    again = json.loads((tmp_path / "r" / "x.json").read_text())
    assert again == doc
    assert set(doc) == {"bench", "when", "machine", "metrics"}
    assert set(doc["machine"]) == {"cpu", "cores", "gpu", "python", "packages"}
    assert doc["machine"]["gpu"] is None or isinstance(doc["machine"]["gpu"], str)
    assert doc["metrics"]["a_vs_b"] == {"value": 2.0, "unit": "x", "better": "higher", "peer": "b"}
    with pytest.raises(ConfigError, match="better='up' must be"):
        metric(1.0, "x", better="up")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="finite number, got nan"):
        metric(float("nan"), "x", better="lower")
    with pytest.raises(ConfigError, match="must be built with ntlab.runs.bench.metric"):
        write_results("unit", {"bad": {"value": 1}}, tmp_path / "y.json")
    assert "numpy" in machine()["packages"]
    calls = []
    assert time_best(lambda: calls.append(1), repeat=4) >= 0 and len(calls) == 4


def test_bench_errors(tmp_path, monkeypatch, repo) -> None:
    monkeypatch.chdir(repo)
    assert bench_dir() == repo / "bench_notebooks"
    with pytest.raises(ConfigError, match=r"no benchmark named 'nope'; bench_notebooks/ has \[.*'data'"):
        run_bench("nope", json_out=tmp_path / "x.json")
    result = CliRunner().invoke(main, ["bench", "nope", "--json", str(tmp_path / "x.json")])
    assert result.exit_code == 1 and "Error: ConfigError: no benchmark named 'nope'" in result.output


def test_cli_run_rejects_bad_parameter(tmp_path) -> None:
    path = _notebook(tmp_path / "t.ipynb", PARAMS, "")
    result = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "o"), "-p", "rows", "many"])
    assert result.exit_code == 1
    assert "parameter 'rows' must be int (default 3); got 'many'" in result.output


@pytest.mark.notebook
def test_bench_that_writes_nothing_is_an_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "bench_notebooks").mkdir()
    _notebook(tmp_path / "bench_notebooks" / "quiet.ipynb", 'json_out: str = "x.json"  # results', "print('no results')")
    stale = tmp_path / "out.json"
    stale.write_text('{"bench": "quiet", "metrics": {}}')  # an earlier run's file must not be read back
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"quiet.ipynb ran but wrote no results to .*out.json"):
        run_bench("quiet", json_out=stale)
    assert not stale.exists()
