"""The model registry: round trips, manifests, stages, corruption, atomic saves, errors and reprs.

Every test runs from a fresh working directory outside any git repository (git discovery is
stopped at its parent), so the manifests record ``git: None`` unless a test makes a repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from ntlab.exceptions import ConfigError, ModelError
from ntlab.models import registry as reg_module
from ntlab.models.registry import LoadedModel, ModelVersion, Registry

CONFIG = {"kind": "mlp", "layers": [4, 8, 1]}
SPEC = {"features": ["ret_1", "vol_20"], "lookback": 16, "scaler": {"mean": [0.1, 0.2], "std": [1.0, 2.0]}}


def make_net(config: dict[str, Any] = CONFIG, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    sizes = config["layers"]
    return nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2]))


def save(registry: Registry, name: str = "mlp", *, seed: int = 0, **overrides: Any) -> ModelVersion:
    kwargs: dict[str, Any] = {
        "name": name,
        "config": CONFIG,
        "feature_spec": SPEC,
        "data_hash": f"hash{seed}",
        "metrics": {"sharpe": 1.0 + seed, "n_trades": 10 * seed},
    }
    return registry.save(make_net(seed=seed), **(kwargs | overrides))


def writable(path: Path) -> Path:
    """Artifacts are saved read-only; corrupting them on purpose needs write permission back."""
    os.chmod(path, 0o644)
    return path


def rewrite_manifest(version: ModelVersion, mutate: Callable[[dict[str, Any]], Any]) -> None:
    path = writable(version.path / "manifest.json")
    manifest = json.loads(path.read_text())
    replaced = mutate(manifest)
    path.write_text(json.dumps(manifest if replaced is None else replaced))


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(autouse=True)
def outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


# ---------------------------------------------------------------------------------------------
# Round trip and manifest


def test_round_trip_is_bit_identical(registry: Registry) -> None:
    net = make_net(seed=3)
    saved = registry.save(net, name="mlp", config=CONFIG, feature_spec=SPEC, data_hash="h", metrics={})
    loaded = registry.load("mlp")
    assert isinstance(loaded, LoadedModel) and (loaded.name, loaded.version, loaded.path) == ("mlp", 1, saved.path)
    original = net.state_dict()
    assert list(loaded.state_dict) == list(original)
    for key, tensor in original.items():
        assert loaded.state_dict[key].dtype == tensor.dtype
        assert torch.equal(loaded.state_dict[key].view(torch.int32), tensor.view(torch.int32)), key

    rebuilt = loaded.build(make_net)
    assert not rebuilt.training
    x = torch.randn(5, 4)
    assert torch.equal(rebuilt(x), net(x))
    assert loaded.manifest == saved.manifest


def test_manifest_contents(registry: Registry) -> None:
    spec = {"lookback": np.int64(16), "mean": np.array([0.5, 1.5]), "pair": (1, "a"), "scale": np.float32(0.25)}
    saved = save(registry, feature_spec=spec, notes="first try", metrics={"sharpe": 1.5, "ok": True, "tag": "x"})
    path = saved.path
    assert path == registry.root / "mlp" / "v0001" and sorted(os.listdir(path)) == ["manifest.json", "weights.pt"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest == saved.manifest
    assert manifest["format"] == 1 and (manifest["name"], manifest["version"]) == ("mlp", 1)
    assert manifest["config"] == CONFIG and manifest["data_hash"] == "hash0" and manifest["notes"] == "first try"
    assert manifest["feature_spec"] == {"lookback": 16, "mean": [0.5, 1.5], "pair": [1, "a"], "scale": 0.25}
    assert manifest["metrics"] == {"sharpe": 1.5, "ok": True, "tag": "x"}
    created = datetime.fromisoformat(manifest["created"])
    assert created.tzinfo is not None and abs(datetime.now(UTC) - created).total_seconds() < 60
    packages = manifest["packages"]
    assert set(packages) == {"python", "torch", "numpy", "polars", "ntlab"} and all(packages.values())
    assert packages["torch"] == torch.__version__ and packages["numpy"] == np.__version__
    assert manifest["git"] is None
    weights = (path / "weights.pt").read_bytes()
    assert manifest["artifacts"] == {
        "weights.pt": {"sha256": hashlib.sha256(weights).hexdigest(), "size": len(weights)}
    }
    assert all(os.stat(path / f).st_mode & 0o777 == 0o444 for f in ("manifest.json", "weights.pt"))


def test_git_commit_is_recorded_inside_a_repository(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('train')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "init")
    head = git(repo, "rev-parse", "HEAD").strip()
    monkeypatch.chdir(repo)

    assert save(registry).manifest["git"] == {"commit": head, "dirty": False}
    (repo / "train.py").write_text("print('changed')\n")
    assert save(registry).manifest["git"] == {"commit": head, "dirty": True}


def test_git_missing_records_none(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert save(registry).manifest["git"] is None


def test_package_not_installed_records_none(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg_module, "PACKAGES", (*reg_module.PACKAGES, "ntlab-no-such-package"))
    packages = save(registry).manifest["packages"]
    assert packages["ntlab-no-such-package"] is None and packages["torch"] == torch.__version__


def test_loaded_config_is_a_copy(registry: Registry) -> None:
    save(registry)
    loaded = registry.load("mlp")
    config = loaded.config
    config["layers"].append(99)
    assert loaded.manifest["config"] == CONFIG == loaded.config


# ---------------------------------------------------------------------------------------------
# Versions, listing, stages


def test_versions_increase_and_list(registry: Registry) -> None:
    assert registry.names() == []
    for seed in range(3):
        assert save(registry, seed=seed).version == seed + 1
    save(registry, "other", metrics={"ic": 0.05})
    (registry.root / "junk").mkdir()
    (registry.root / "mlp" / "notes.txt").write_text("ignored")
    (registry.root / "mlp" / "v01").mkdir()

    assert registry.names() == ["mlp", "other"]
    assert registry.versions("mlp") == [1, 2, 3] and registry.versions("other") == [1]
    assert sorted(os.listdir(registry.root / "mlp")) == ["notes.txt", "v0001", "v0002", "v0003", "v01"]
    for version in (1, 2, 3):
        assert registry.load("mlp", version).manifest["data_hash"] == f"hash{version - 1}"

    frame = registry.list()
    assert frame.columns == [
        "name",
        "version",
        "created",
        "data_hash",
        "metric_ic",
        "metric_n_trades",
        "metric_sharpe",
        "stage",
    ]
    assert frame.schema["created"] == pl.Datetime("us", "UTC") and frame.schema["metric_sharpe"] == pl.Float64
    assert frame.select("name", "version", "data_hash", "stage").rows() == [
        ("mlp", 1, "hash0", ""),
        ("mlp", 2, "hash1", ""),
        ("mlp", 3, "hash2", ""),
        ("other", 1, "hash0", ""),
    ]
    assert frame["metric_sharpe"].to_list() == [1.0, 2.0, 3.0, None]
    assert frame["metric_n_trades"].to_list() == [0.0, 10.0, 20.0, None]
    assert frame["metric_ic"].to_list() == [None, None, None, 0.05]
    assert registry.list("other").columns == ["name", "version", "created", "data_hash", "metric_ic", "stage"]


def test_list_of_an_empty_registry(registry: Registry) -> None:
    frame = registry.list()
    assert frame.is_empty() and frame.columns == ["name", "version", "created", "data_hash", "stage"]


def test_promote_and_rollback(registry: Registry) -> None:
    for seed in range(3):
        save(registry, seed=seed)
    assert registry.production("mlp") is None
    assert registry.load("mlp").version == 3
    with pytest.raises(ModelError, match=r"no earlier promoted version to roll back to \(production: none\)"):
        registry.rollback("mlp")

    assert registry.promote("mlp", 1) == 1
    assert registry.load("mlp").version == 1 and registry.load("mlp", "latest").version == 3
    assert registry.promote("mlp", 2) == 2
    assert registry.promote("mlp", 2) == 2  # promoting production again changes nothing
    assert registry.production("mlp") == 2 and registry.load("mlp").version == 2
    assert registry.list()["stage"].to_list() == ["archived", "production", ""]

    assert registry.rollback("mlp") == 1
    assert registry.production("mlp") == 1 and registry.load("mlp").version == 1
    assert registry.list()["stage"].to_list() == ["production", "archived", ""]
    with pytest.raises(ModelError, match=r"'mlp' has no earlier promoted version .*production: v1"):
        registry.rollback("mlp")

    assert registry.promote("mlp", "latest") == 3
    reopened = Registry(registry.root)
    assert reopened.production("mlp") == 3
    history = reopened.history("mlp")
    assert [(h["action"], h["version"], h["from"]) for h in history] == [
        ("promote", 1, None),
        ("promote", 2, 1),
        ("rollback", 1, 2),
        ("promote", 3, 1),
    ]
    assert all(datetime.fromisoformat(h["at"]).tzinfo is not None for h in history)
    stages = json.loads((registry.root / "mlp" / "stages.json").read_text())
    assert stages["production"] == 3 and stages["stack"] == [1, 3]
    assert [p for p in os.listdir(registry.root / "mlp") if p.startswith(".")] == []


def test_production_of_a_deleted_version(registry: Registry) -> None:
    save(registry, seed=0)
    save(registry, seed=1)
    registry.promote("mlp", 1)
    shutil.rmtree(registry.root / "mlp" / "v0001")
    with pytest.raises(ModelError, match=r"'mlp' has no version 1; known: v2"):
        registry.load("mlp")


@pytest.mark.parametrize(
    "content",
    ["not json", '{"stack": [1]}', '{"stack": "1", "history": []}', '{"stack": [1.5], "history": []}', "[1, 2]"],
)
def test_unreadable_stages(registry: Registry, content: str) -> None:
    save(registry)
    (registry.root / "mlp" / "stages.json").write_text(content)
    with pytest.raises(ModelError, match=r"stages\.json' is unreadable .*fix or delete it"):
        registry.production("mlp")
    with pytest.raises(ModelError, match="unreadable"):
        registry.list()
    assert "production: unreadable" in repr(registry)


# ---------------------------------------------------------------------------------------------
# Corruption: every case raises before torch.load is reached


def flip_byte(version: ModelVersion) -> None:
    path = writable(version.path / "weights.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(version: ModelVersion) -> None:
    path = writable(version.path / "weights.pt")
    path.write_bytes(path.read_bytes()[:-10])


CORRUPTIONS: dict[str, tuple[Callable[[ModelVersion], Any], str]] = {
    "flipped byte": (flip_byte, r"weights\.pt of .* is corrupted: sha256 expected {sha}, actual [0-9a-f]{{64}}"),
    "truncated": (truncate, r"weights\.pt of .* has {short} bytes, the manifest says {size} \(sha256 expected {sha}"),
    "deleted": (lambda v: (v.path / "weights.pt").unlink(), r"weights\.pt of .* is missing \(expected sha256 {sha}\)"),
    "manifest garbage": (
        lambda v: writable(v.path / "manifest.json").write_text("{not json"),
        r"manifest\.json' is not readable JSON",
    ),
    "manifest deleted": (lambda v: (v.path / "manifest.json").unlink(), r"'mlp' v1 has no manifest\.json"),
    "manifest a list": (
        lambda v: rewrite_manifest(v, lambda m: [m]),
        r"not a registry manifest \(missing name, version",
    ),
    "manifest lacks metrics": (lambda v: rewrite_manifest(v, lambda m: m.pop("metrics") and None), "missing metrics"),
    "artifacts not a table": (
        lambda v: rewrite_manifest(v, lambda m: m.update(artifacts=["weights.pt"])),
        "'artifacts' and 'metrics' must be tables",
    ),
    "newer format": (lambda v: rewrite_manifest(v, lambda m: m.update(format=2)), "has format 2; this ntlab reads"),
    "other version": (
        lambda v: rewrite_manifest(v, lambda m: m.update(version=7)),
        r"describes 'mlp' v7, not 'mlp' v1",
    ),
    "weights not listed": (lambda v: rewrite_manifest(v, lambda m: m.update(artifacts={})), r"lists no weights\.pt"),
    "path in artifact": (
        lambda v: rewrite_manifest(v, lambda m: m["artifacts"].update({"../x": {"sha256": "0", "size": 1}})),
        r"malformed artifact entry '\.\./x'",
    ),
    "artifact entry not a table": (
        lambda v: rewrite_manifest(v, lambda m: m["artifacts"].update({"weights.pt": "abc"})),
        r"malformed artifact entry 'weights\.pt'",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corruption_is_detected_before_loading(registry: Registry, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    saved = save(registry)
    expected = saved.manifest["artifacts"]["weights.pt"]
    corrupt, pattern = CORRUPTIONS[case]
    corrupt(saved)
    calls: list[object] = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    message = pattern.format(sha=expected["sha256"], size=expected["size"], short=expected["size"] - 10)
    with pytest.raises(ModelError, match=message):
        registry.load("mlp", 1)
    assert calls == []


# ---------------------------------------------------------------------------------------------
# Atomic saves


def broken_torch_save(obj: object, handle: Any) -> None:
    handle.write(b"half a checkpoint")
    raise KeyboardInterrupt


def broken_json_dump(document: object, handle: Any, **kwargs: Any) -> None:
    handle.write('{"format": 1, "na')
    raise OSError("disk full")


@pytest.mark.parametrize("stage", ["weights", "manifest", "rename"])
def test_failed_save_leaves_nothing(registry: Registry, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    save(registry)
    folder = registry.root / "mlp"
    if stage == "weights":
        monkeypatch.setattr(torch, "save", broken_torch_save)
    elif stage == "manifest":
        monkeypatch.setattr(json, "dump", broken_json_dump)
    else:
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if Path(dst).name.startswith("v0"):
                raise OSError("device busy")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises((KeyboardInterrupt, OSError)):
        save(registry, seed=1)
    monkeypatch.undo()
    assert os.listdir(folder) == ["v0001"]
    assert registry.versions("mlp") == [1]
    assert save(registry, seed=2).version == 2
    assert registry.load("mlp").manifest["data_hash"] == "hash2"


def test_failed_first_save_leaves_no_model(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "save", broken_torch_save)
    with pytest.raises(KeyboardInterrupt):
        save(registry)
    assert registry.names() == [] and os.listdir(registry.root / "mlp") == []


def test_save_racing_another_writer(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    save(registry)
    real_write = reg_module._write_version

    def write_then_lose_the_race(tmp: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        manifest = real_write(tmp, *args, **kwargs)
        other = tmp.parent / "v0002"
        other.mkdir()
        (other / "weights.pt").write_bytes(b"another writer")
        return manifest

    monkeypatch.setattr(reg_module, "_write_version", write_then_lose_the_race)
    with pytest.raises(ModelError, match=r"version 2 of 'mlp' was written by another save meanwhile; save again"):
        save(registry, seed=1)
    assert sorted(os.listdir(registry.root / "mlp")) == ["v0001", "v0002"]


def test_stale_temporaries_are_ignored_then_removed(registry: Registry) -> None:
    save(registry)
    folder = registry.root / "mlp"
    old_dir, old_file, fresh = folder / ".tmp-old", folder / ".tmp-old.json", folder / ".tmp-fresh"
    for path in (old_dir, fresh):
        path.mkdir()
        (path / "weights.pt").write_bytes(b"partial")
    old_file.write_text("{")
    hours_ago = time.time() - 2 * 3600
    for path in (old_dir, old_file):
        os.utime(path, (hours_ago, hours_ago))
    assert registry.versions("mlp") == [1] and registry.list().height == 1

    assert save(registry, seed=1).version == 2
    assert sorted(os.listdir(folder)) == [".tmp-fresh", "v0001", "v0002"]


def test_fsync_of_an_unopenable_folder_is_ignored_unless_strict(tmp_path: Path) -> None:
    from ntlab._fs import fsync

    fsync(tmp_path / "missing", strict=False)  # what the registry does for folders
    with pytest.raises(FileNotFoundError):
        fsync(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "-dash", "with space", "x" * 101, 3])
def test_unsafe_names(registry: Registry, name: Any) -> None:
    with pytest.raises(ConfigError, match="is not a safe folder name"):
        save(registry, name)
    with pytest.raises(ConfigError, match="is not a safe folder name"):
        registry.load(name)
    assert not registry.root.exists() or os.listdir(registry.root) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"config": {"layers": [4, object()]}}, r"config\['layers'\]\[1\] is a object .*not JSON-serialisable"),
        ({"metrics": {"sharpe": torch.tensor(1.0)}}, r"metrics\['sharpe'\] is a Tensor"),
        (
            {"feature_spec": {"scaler": {1: 2.0}}},
            r"feature_spec\['scaler'\] has the key 1 \(int\); JSON keys must be str",
        ),
        ({"config": [1, 2]}, "config must be a dict, got list"),
        ({"data_hash": 123}, "data_hash must be a str, got int"),
        ({"notes": None}, "notes must be a str, got NoneType"),
    ],
)
def test_invalid_save_arguments(registry: Registry, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        save(registry, **overrides)
    assert not registry.root.exists()


def test_model_must_be_a_module(registry: Registry) -> None:
    with pytest.raises(ConfigError, match=r"model must be a torch\.nn\.Module, got dict"):
        registry.save({}, name="m", config={}, feature_spec={}, data_hash="h", metrics={})  # type: ignore[arg-type]


def test_unknown_names_and_versions(registry: Registry) -> None:
    with pytest.raises(ModelError, match=r"no model named 'mlp' in registry .*; known: none"):
        registry.load("mlp")
    save(registry, seed=0)
    save(registry, seed=1)
    save(registry, "other")
    for call in (registry.load, registry.versions, registry.production, registry.rollback, registry.history):
        with pytest.raises(ModelError, match=r"no model named 'nope' .*; known: 'mlp', 'other'"):
            call("nope")
    with pytest.raises(ModelError, match="no model named 'nope'"):
        registry.list("nope")
    with pytest.raises(ModelError, match=r"'mlp' has no version 9; known: v1, v2"):
        registry.load("mlp", 9)
    with pytest.raises(ModelError, match=r"'mlp' has no version 0; known: v1, v2"):
        registry.promote("mlp", 0)
    for bad in ("production", True, 1.0, "2"):
        with pytest.raises(ConfigError, match=r"version must be an int, 'latest' or None"):
            registry.load("mlp", bad)  # type: ignore[arg-type]


def test_build_errors(registry: Registry) -> None:
    save(registry)
    loaded = registry.load("mlp")
    with pytest.raises(ModelError, match=r"the builder returned dict, not a torch\.nn\.Module"):
        loaded.build(lambda config: config)  # type: ignore[arg-type,return-value]
    with pytest.raises(ModelError, match=r"the weights of 'mlp' v1 do not fit the module built from its config"):
        loaded.build(lambda config: make_net({"layers": [4, 3, 1]}))


# ---------------------------------------------------------------------------------------------
# Display


def test_reprs(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r&d")
    assert repr(registry) == f"Registry({str(registry.root)!r}) (empty)"
    assert registry._repr_html_() == f"<div><b>Registry</b> <code>{tmp_path}/r&amp;d</code> (empty)</div>"
    save(registry, seed=0)
    save(registry, seed=1)
    save(registry, "a.b")
    registry.promote("mlp", 2)
    assert repr(registry) == "\n".join(
        [
            f"Registry({str(registry.root)!r})",
            "  a.b: v1  (production: none)",
            "  mlp: v1, v2*  (production: v2)",
        ]
    )
    page = registry._repr_html_()
    assert page.startswith(f"<div><b>Registry</b> <code>{tmp_path}/r&amp;d</code><table>")
    assert "<tr><td>a.b</td><td>v1</td><td>none</td></tr>" in page
    assert '<tr><td>mlp</td><td>v1, <b style="background:#d4f4d4">v2</b></td><td>v2</td></tr>' in page
    path = registry.root / "mlp" / "v0003"
    assert repr(save(registry, seed=2)) == f"ModelVersion(name='mlp', version=3, path={path!r})"
    assert "state_dict" not in repr(registry.load("mlp"))
