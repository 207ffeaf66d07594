"""The training loop of ntlab.models.train on tiny synthetic data: learning, early stopping,
determinism, clipping, schedules, checkpoints and resume, devices, NaN losses, predict, plots."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import TensorDataset

from ntlab.exceptions import ConfigError, DataError, ModelError
from ntlab.models import train
from ntlab.models.nets import GRUConfig, MLPConfig, build
from ntlab.models.train import fit, predict, resolve_device, seed_everything

QUIET = {"progress": False}


def _sum_data(n: int, features: int = 4, seed: int = 0, scale: float = 1.0) -> TensorDataset:
    """``y = scale * sum(x)``, noise-free, ``y`` shaped ``(n, 1)``."""
    x = torch.randn(n, features, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(x, scale * x.sum(dim=1, keepdim=True))


def _mlp(seed: int = 0, **options: object) -> nn.Module:
    seed_everything(seed)
    return build(MLPConfig(**{"inputs": 4, "hidden": (8,), **options}))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _mse(model: nn.Module, data: TensorDataset) -> float:
    x, y = data.tensors
    with torch.no_grad():
        return float(F.mse_loss(model(x), y).double())


def test_learns_a_sum(capsys: pytest.CaptureFixture[str]) -> None:
    train_ds, val_ds = _sum_data(512), _sum_data(128, seed=1)
    model = _mlp(hidden=(16,))
    result = fit(model, train_ds, val_ds, epochs=25, batch_size=32, lr=1e-2, patience=None)
    assert "fit" in capsys.readouterr().err  # the tqdm bar
    assert result.model is model
    assert not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert result.device == "cpu"
    history = result.history
    assert history.columns == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    assert history["epoch"].to_list() == list(range(1, 26))
    assert history["val_loss"][-1] < 0.02  # var(y) = 4
    assert history["val_loss"][-1] < history["val_loss"][0] / 50
    assert (history["seconds"] > 0).all()
    assert result.best_epoch == history["val_loss"].arg_min() + 1
    assert result.best_loss == pytest.approx(history["val_loss"].min())
    assert _mse(model, val_ds) == pytest.approx(result.best_loss, rel=1e-4)
    assert not result.stopped_early


def test_sequence_net_with_flat_targets() -> None:
    """A GRU on (batch, lookback, features) windows; (n,) targets meet (n, 1) outputs."""
    x = torch.randn(64, 6, 3, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, x[:, -1].sum(dim=1))
    seed_everything(0)
    result = fit(build(GRUConfig(inputs=3, hidden=8)), data, epochs=3, batch_size=16, lr=1e-2, **QUIET)
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert predict(result.model, x).shape == (64, 1)


def _constant_data(target: float, n: int = 8) -> TensorDataset:
    return TensorDataset(torch.ones(n, 1), torch.full((n, 1), target))


def test_early_stopping_restores_the_best_weights() -> None:
    """Training pulls the output from 0 towards 1; validation wants 0.5, so its loss falls then rises."""
    seed_everything(0)
    model = build(MLPConfig(inputs=1, hidden=()))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    train_ds, val_ds = _constant_data(1.0), _constant_data(0.5)
    result = fit(model, train_ds, val_ds, epochs=40, batch_size=8, lr=0.05, patience=3, scheduler=None, **QUIET)
    val = result.history["val_loss"]
    assert result.stopped_early
    assert 2 < result.best_epoch < 20
    assert result.best_epoch == val.arg_min() + 1
    assert result.history.height == result.best_epoch + 3
    assert val[-1] > val.min()
    assert _mse(result.model, val_ds) == pytest.approx(val.min(), rel=1e-6, abs=1e-12)
    assert result.best_loss == val.min()
    assert f"{result.history.height} epochs on cpu, stopped early, best epoch {result.best_epoch}" in repr(result)
    assert "(stopped early)" in result._repr_html_()


def test_without_validation_the_training_loss_is_monitored() -> None:
    result = fit(_mlp(), _sum_data(64), epochs=3, batch_size=16, patience=None, **QUIET)
    assert result.history["val_loss"].null_count() == 3
    assert result.best_epoch == result.history["train_loss"].arg_min() + 1
    assert result.best_loss == result.history["train_loss"].min()


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    data = _sum_data(96)
    settings = {"epochs": 3, "batch_size": 16, "lr": 1e-2, **QUIET}
    states = [_state(fit(_mlp(dropout=0.2), data, seed=seed, **settings).model) for seed in (1, 1, 2)]
    assert _same(states[0], states[1])
    assert not _same(states[0], states[2])


def test_deterministic_mode_is_scoped() -> None:
    def mode() -> tuple[bool, bool]:
        return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()

    before = mode()
    try:
        for setting in ((False, False), (True, False)):
            torch.use_deterministic_algorithms(setting[0], warn_only=setting[1])
            fit(_mlp(), _sum_data(16), epochs=1, **QUIET)
            assert mode() == setting
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.parametrize("clip_norm", [0.5, None])
def test_gradient_clipping(clip_norm: float | None) -> None:
    norms: list[float] = []

    def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        fit(_mlp(), _sum_data(64, scale=1000.0), epochs=2, batch_size=16, clip_norm=clip_norm, **QUIET)
    finally:
        handle.remove()
    assert len(norms) == 8
    if clip_norm is None:
        assert min(norms) > 10.0
    else:
        assert max(norms) <= clip_norm * (1 + 1e-5)


def test_cosine_schedule() -> None:
    result = fit(_mlp(), _sum_data(32), epochs=4, batch_size=32, lr=0.1, scheduler="cosine", **QUIET)
    expected = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert result.history["lr"].to_list() == pytest.approx(expected)


def test_plateau_schedule_halves_the_rate_after_three_flat_epochs() -> None:
    # at lr 1e-6 the loss is flat for the scheduler (it wants 0.01 % better)
    result = fit(_mlp(), _sum_data(32), epochs=7, batch_size=32, lr=1e-6, scheduler="plateau", patience=None, **QUIET)
    assert result.history["lr"].to_list() == pytest.approx([1e-6] * 4 + [5e-7] * 3)


def test_no_schedule_keeps_the_rate() -> None:
    result = fit(_mlp(), _sum_data(32), epochs=3, batch_size=32, lr=0.01, scheduler=None, **QUIET)
    assert result.history["lr"].to_list() == [0.01] * 3


def test_checkpoint_files(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "ckpt"
    result = fit(_mlp(), _sum_data(32), _sum_data(16, seed=1), epochs=3, batch_size=16, checkpoint_dir=folder, **QUIET)
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
    last = torch.load(folder / "last.pt", weights_only=True)
    best = torch.load(folder / "best.pt", weights_only=True)
    assert last["epoch"] == 3
    assert {"model", "optimizer", "scheduler", "epoch"} <= last.keys()
    assert best["epoch"] == result.best_epoch
    assert _same(best["model"], result.model.state_dict())
    assert _same(last["best_model"], result.model.state_dict())


class _PowerCut:
    """MSE that fails on its ``fail_at``-th call, as an interrupted run."""

    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("power cut")
        return F.mse_loss(out, y)


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    train_ds, val_ds = _sum_data(48), _sum_data(16, seed=1)
    settings = {"epochs": 6, "batch_size": 16, "lr": 1e-2, "scheduler": "cosine", "seed": 3, **QUIET}
    whole = fit(_mlp(dropout=0.2), train_ds, val_ds, **settings)

    crashing = _PowerCut(fail_at=3 * (3 + 1) + 1)  # 3 train + 1 validation batches per epoch: dies in epoch 4
    with pytest.raises(RuntimeError, match="power cut"):
        fit(_mlp(dropout=0.2), train_ds, val_ds, loss=crashing, checkpoint_dir=tmp_path, **settings)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 3

    resumed = fit(_mlp(seed=99, dropout=0.2), train_ds, val_ds, resume_from=tmp_path / "last.pt", **settings)
    assert _same(_state(resumed.model), _state(whole.model))
    columns = ["epoch", "train_loss", "val_loss", "lr"]
    assert resumed.history.select(columns).equals(whole.history.select(columns))
    assert resumed.best_epoch == whole.best_epoch

    # a finished run resumed with the same number of epochs has nothing left to do
    again = fit(_mlp(dropout=0.2), train_ds, val_ds, resume_from=tmp_path / "last.pt", **{**settings, "epochs": 3})
    assert again.history.height == 3


def test_resume_continues_to_more_epochs(tmp_path: Path) -> None:
    data = _sum_data(32)
    fit(_mlp(), data, epochs=2, batch_size=16, scheduler="plateau", checkpoint_dir=tmp_path, **QUIET)
    more = fit(_mlp(), data, epochs=4, batch_size=16, scheduler="plateau", resume_from=tmp_path / "last.pt", **QUIET)
    assert more.history["epoch"].to_list() == [1, 2, 3, 4]


def test_resume_errors(tmp_path: Path) -> None:
    data = _sum_data(16)
    fit(_mlp(), data, epochs=1, checkpoint_dir=tmp_path, **QUIET)
    last = tmp_path / "last.pt"
    with pytest.raises(ModelError, match=r"cannot read the checkpoint .*missing\.pt"):
        fit(_mlp(), data, resume_from=tmp_path / "missing.pt", **QUIET)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read the checkpoint"):
        fit(_mlp(), data, resume_from=garbage, **QUIET)
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(ModelError, match=r"is not a checkpoint written by ntlab\.models\.train\.fit"):
        fit(_mlp(), data, resume_from=other, **QUIET)
    with pytest.raises(ModelError, match=r"trained with scheduler='cosine'; resume with it, not 'plateau'"):
        fit(_mlp(), data, resume_from=last, scheduler="plateau", **QUIET)
    with pytest.raises(ModelError, match="does not fit this model"):
        fit(_mlp(hidden=(3,)), data, resume_from=last, **QUIET)


def test_checkpoint_write_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(obj: object, f: object) -> None:
        Path(f).write_bytes(b"partial")  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(ModelError, match=r"cannot write the checkpoint .*last\.pt: .*No space left"):
        fit(_mlp(), _sum_data(16), epochs=1, checkpoint_dir=tmp_path, **QUIET)
    assert list(tmp_path.iterdir()) == []


def test_devices() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"device='bogus' is not 'auto', 'cpu' or 'cuda'"):
        resolve_device("bogus")
    with pytest.raises(ConfigError, match=r"device='meta' is not supported"):
        resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_raises() -> None:
    with pytest.raises(ConfigError, match=r"device='cuda' but CUDA is not available"):
        fit(_mlp(), _sum_data(16), device="cuda", **QUIET)
    with pytest.raises(ConfigError, match=r"device='cuda:0' but CUDA is not available"):
        predict(_mlp(), torch.zeros(2, 4), device="cuda:0")


def test_nan_training_loss_raises() -> None:
    def nan_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y) * float("nan")

    with pytest.raises(ModelError, match=r"training loss is nan at epoch 1: training diverged\. Try a lower lr"):
        fit(_mlp(), _sum_data(16), loss=nan_loss, **QUIET)


def test_huge_lr_diverges_with_a_clear_error() -> None:
    with pytest.raises(
        ModelError, match=r"loss is (nan|inf) at epoch \d+: .*lower lr \(now 1e\+30\).*scaling the inputs"
    ):
        fit(_mlp(), _sum_data(64, scale=1e3), epochs=20, batch_size=8, lr=1e30, clip_norm=None, scheduler=None, **QUIET)


def test_nan_validation_loss_raises() -> None:
    x, y = _sum_data(8).tensors
    bad = TensorDataset(x.clone().fill_(float("nan")), y)
    with pytest.raises(ModelError, match="validation loss is nan at epoch 1"):
        fit(_mlp(), _sum_data(16), bad, **QUIET)


def test_named_classification_losses() -> None:
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    up = (x.sum(dim=1) > 0).long()
    settings = {"epochs": 4, "batch_size": 16, "lr": 1e-2, **QUIET}
    bce = fit(_mlp(), TensorDataset(x, up.float()), loss="bce", **settings)
    indices = fit(_mlp(outputs=2), TensorDataset(x, up), loss="cross_entropy", **settings)
    probabilities = fit(_mlp(outputs=2), TensorDataset(x, F.one_hot(up, 2).float()), loss="cross_entropy", **settings)
    for result in (bce, indices, probabilities):
        assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert indices.history["train_loss"].to_list() == pytest.approx(probabilities.history["train_loss"].to_list())


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"epochs": 0}, r"epochs must be an int >= 1, got 0"),
        ({"batch_size": True}, r"batch_size must be an int >= 1, got True"),
        ({"num_workers": -1}, r"num_workers must be an int >= 0, got -1"),
        ({"patience": 0}, r"patience must be an int >= 1, got 0"),
        ({"lr": 0.0}, r"lr must be a finite number > 0, got 0\.0"),
        ({"lr": float("nan")}, r"lr must be a finite number > 0, got nan"),
        ({"clip_norm": -1.0}, r"clip_norm must be a finite number > 0 or None, got -1\.0"),
        ({"weight_decay": -0.1}, r"weight_decay must be a finite number >= 0, got -0\.1"),
        ({"scheduler": "step"}, r"scheduler must be one of \['cosine', 'plateau'\] or None, got 'step'"),
        ({"loss": "hinge"}, r"loss must be one of \['mse', 'bce', 'cross_entropy'\] or a callable"),
    ],
)
def test_bad_settings(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fit(_mlp(), _sum_data(8), **options, **QUIET)


def test_bad_data() -> None:
    x = torch.zeros(8, 4)
    with pytest.raises(DataError, match="train_ds is empty"):
        fit(_mlp(), TensorDataset(x[:0], x[:0]), **QUIET)
    with pytest.raises(DataError, match="val_ds is empty"):
        fit(_mlp(), _sum_data(8), TensorDataset(x[:0], x[:0]), **QUIET)
    with pytest.raises(DataError, match=r"datasets of \(x, y\) pairs; an item here has 1 part"):
        fit(_mlp(), TensorDataset(x), **QUIET)
    with pytest.raises(DataError, match=r"targets of shape \(8, 2\) do not match the model's output of shape \(8, 1\)"):
        fit(_mlp(), TensorDataset(x, torch.zeros(8, 2)), batch_size=8, **QUIET)


def test_worker_processes_and_their_seeds() -> None:
    result = fit(_mlp(), _sum_data(16), epochs=1, batch_size=8, num_workers=1, **QUIET)
    assert result.history.height == 1
    train._seed_worker(0)  # runs in the workers; here, for its effect
    seed = torch.initial_seed() % 2**32
    assert np.random.get_state()[1][0] == np.random.RandomState(seed).get_state()[1][0]
    assert random.random() == random.Random(seed).random()


def test_predict_matches_the_model() -> None:
    model = _mlp(dropout=0.5)  # training mode: dropout on, so predict must switch it off
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    model.train()
    from_tensor = predict(model, x, batch_size=3)
    assert model.training  # mode restored
    np.testing.assert_allclose(from_tensor, expected, rtol=1e-6, atol=1e-6)
    assert from_tensor.dtype == np.float32 and from_tensor.shape == (10, 1)
    np.testing.assert_allclose(predict(model, x.double().numpy(), batch_size=4), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(predict(model, TensorDataset(x, x), batch_size=4), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(DataError, match="predict got an empty dataset"):
        predict(model, TensorDataset(x[:0]))
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1"):
        predict(model, x, batch_size=0)


def test_plot_repr_and_html() -> None:
    with_val = fit(_mlp(), _sum_data(32), _sum_data(16, seed=1), epochs=3, batch_size=16, **QUIET)
    figure = with_val.plot()
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.lines] == ["train loss", "val loss", f"best (epoch {with_val.best_epoch})"]
    assert ax.get_yscale() == "log"
    assert figure._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # shows in Jupyter without pyplot
    assert "3 epochs on cpu" in repr(with_val)
    assert "<b>Training result</b>" in with_val._repr_html_()
    assert "best epoch" in with_val._repr_html_()

    def shifted(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y) - 100.0  # negative: no log scale

    without_val = fit(_mlp(), _sum_data(32), epochs=2, batch_size=16, loss=shifted, **QUIET)
    other = Figure()
    assert without_val.plot(other.add_subplot()) is other
    ax = other.axes[0]
    assert [line.get_label() for line in ax.lines] == ["train loss", f"best (epoch {without_val.best_epoch})"]
    assert ax.get_yscale() == "linear"
