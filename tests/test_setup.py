"""The install and the repository layout keep their promises."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_top_level_layout(repo: Path) -> None:
    for folder in ("ntlab", "notebooks", "templates", "extensions", "tests", "bench_notebooks"):
        assert (repo / folder).is_dir(), folder
    for file in ("environment.yml", "pyproject.toml", "README.md", "Makefile", ".ci/run", "constraints.txt"):
        assert (repo / file).is_file(), file
    assert "make test" in (repo / ".ci/run").read_text()


def test_environment_yml_matches_pyproject(repo: Path) -> None:
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip_names = {"pytorch": "torch"}  # conda-forge's name -> pip's
    conda = {pip_names.get(_name(d), _name(d)) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == wanted
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_part == ["-e ."]
    assert project["optional-dependencies"]["gpu"] == ["cupy-cuda12x>=13"]


def test_torch_is_pinned_exactly(repo: Path) -> None:
    pins = [line.strip() for line in (repo / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert "torch==2.13.0" in pins
    assert "-c constraints.txt" in (repo / "Makefile").read_text()


def test_cpu_install_pulls_no_nvidia_packages() -> None:
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    packages = [line.split("==")[0].lower() for line in freeze.splitlines()]
    assert len(packages) > 20  # the freeze really listed the environment
    assert not [p for p in packages if p.startswith("nvidia-") or p.startswith("cupy")]
    torch = [line for line in freeze.splitlines() if line.lower().startswith("torch==")]
    assert torch in ([], ["torch==2.13.0+cpu"])


def test_import_ntlab_is_light() -> None:
    code = "import ntlab, sys; print(sorted(m for m in ('numba','torch','cupy','panel','papermill','pandas','matplotlib','polars','numpy','pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_help_and_version() -> None:
    out = subprocess.run([str(BIN / "ntlab"), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("data", "run", "bench"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command
    version = subprocess.run([str(BIN / "ntlab"), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == "ntlab, version 0.1.0"


def test_readme_tour_runs(repo: Path, tmp_path: Path, monkeypatch) -> None:
    import pytest

    from ntlab.exceptions import DataQualityWarning

    blocks = re.findall(r"```python\n(.*?)```", (repo / "README.md").read_text(), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)  # the tour writes ./catalog
    namespace: dict = {}
    with pytest.warns(DataQualityWarning, match="sp500_daily"):
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["compare_bbo"](namespace["replay"], namespace["ntlab"].datasets.load("binance_spot_btcusdt_quotes")).matched_share == 1.0
    assert (tmp_path / "catalog" / "kind=trades" / "symbol=ES").is_dir()
    dollar, monday = namespace["dollar"], namespace["monday"].collect()
    assert dollar["trades"].sum() == monday.height and dollar.height >= 5
    live = namespace["live"]  # the streaming aggregator fed the same trades ends on the same open bar
    assert tuple(live.flush())[2:] == dollar.row(-1)[2:]
