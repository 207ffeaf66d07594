"""Training loop: :func:`fit` a network on a dataset, :func:`predict` with it.

:func:`fit` trains any :class:`torch.nn.Module` (the networks of :mod:`ntlab.models.nets` are
made for it) with AdamW, gradient clipping, a per-epoch learning-rate schedule, early stopping
that restores the best weights, optional checkpoints to resume from, and a tqdm bar that shows
in notebooks. It returns a :class:`TrainResult`: the trained model, a Polars ``history`` and a
``plot()`` of the losses. :func:`predict` runs a model over a tensor, an array or a dataset in
batches.

Conventions
-----------
* Datasets are map-style :class:`torch.utils.data.Dataset` of ``(x, y)`` pairs, such as
  :class:`ntlab.models.datasets.WindowDataset` or a ``TensorDataset(x, y)``. Floating inputs are
  cast to the model's dtype (float32 for the nets).
* Losses: ``"mse"``; ``"bce"`` (binary cross-entropy on logits, targets 0/1); ``"cross_entropy"``
  (logits ``(batch, classes)``, targets class indices, or class probabilities shaped as the
  logits); or a callable ``loss(output, y) -> scalar tensor`` (a mean over the batch), given the
  model's output and ``y`` as the dataset yields it, on the device. For ``"mse"`` and ``"bce"``,
  targets are reshaped to the output's shape when they hold as many values (``(batch,)`` targets
  for ``(batch, 1)`` outputs).
* Epochs are numbered from 1. An epoch's ``train_loss`` is the mean loss over its samples,
  measured while the weights change; ``val_loss`` is measured after the epoch, in eval mode.
  The *monitored* loss is ``val_loss``, or ``train_loss`` without ``val_ds``: the best epoch has
  the lowest one (strictly lower than any before), early stopping ends training after
  ``patience`` epochs in a row without a new best, and the ``"plateau"`` schedule follows it.
  The returned model holds the best epoch's weights.
* Schedules, stepped once per epoch: ``"cosine"`` sets epoch ``e``'s learning rate to
  ``lr * (1 + cos(pi * (e - 1) / epochs)) / 2``; ``"plateau"`` halves it after the third epoch
  in a row whose monitored loss is not 0.01 % below the best
  (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau` with ``factor=0.5, patience=2``).
  ``history["lr"]`` is the rate used during each epoch.
* Determinism: :func:`fit` seeds Python's, NumPy's and torch's global generators with ``seed``,
  shuffles with its own seeded generator, and runs under
  ``torch.use_deterministic_algorithms(True, warn_only=True)`` (the previous setting is restored
  afterwards). Weights are initialised when the network is built, before :func:`fit`: call
  :func:`seed_everything` first for a reproducible start. Same seed, data, model and thread
  count give bit-identical weights on the CPU.
* Checkpoints: with ``checkpoint_dir``, ``last.pt`` is written after every epoch and ``best.pt``
  after each new best, atomically (a temporary file then :func:`os.replace`). Each is a dict
  for :func:`torch.save` with ``"model"`` (the ``state_dict``), ``"optimizer"``,
  ``"scheduler"``, ``"epoch"`` (epochs done), the history, the best weights so far and the
  random generators' states. ``fit(..., resume_from=path)`` continues after the checkpoint's
  epoch up to ``epochs`` (the total): with the same settings, an interrupted run resumed from
  ``last.pt`` ends with the same weights as an uninterrupted one.
* A NaN or infinite loss stops training with :class:`~ntlab.exceptions.ModelError`; the model
  keeps the weights it had then.

Example
-------
>>> import torch
>>> from torch.utils.data import TensorDataset
>>> from ntlab.models.nets import MLPConfig, build
>>> from ntlab.models.train import fit, predict, seed_everything
>>> seed_everything(0)
>>> x = torch.randn(256, 4)
>>> data = TensorDataset(x, x.sum(dim=1, keepdim=True))
>>> result = fit(build(MLPConfig(inputs=4, hidden=(16,))), data, epochs=3, batch_size=32, progress=False)
>>> result.history.columns
['epoch', 'train_loss', 'val_loss', 'lr', 'seconds']
>>> predict(result.model, x[:5]).shape
(5, 1)
"""

from __future__ import annotations

import html
import math
import os
import pickle
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ntlab.exceptions import ConfigError, DataError, ModelError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["TrainResult", "fit", "predict", "resolve_device", "seed_everything"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_FORMAT = "ntlab.models.train/1"
_LOSSES: dict[str, type[nn.Module]] = {
    "mse": nn.MSELoss,
    "bce": nn.BCEWithLogitsLoss,
    "cross_entropy": nn.CrossEntropyLoss,
}
_SCHEDULERS = ("cosine", "plateau")
_PLATEAU = {"factor": 0.5, "patience": 2}
_HISTORY_SCHEMA = {
    "epoch": pl.Int64,
    "train_loss": pl.Float64,
    "val_loss": pl.Float64,
    "lr": pl.Float64,
    "seconds": pl.Float64,
}


# ---------------------------------------------------------------------------------------------
# Result


@dataclass(repr=False)
class TrainResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model
        The trained network (the object passed to :func:`fit`), holding the best epoch's
        weights, in eval mode, on the CPU.
    history
        One row per epoch: ``epoch`` (from 1), ``train_loss``, ``val_loss`` (null without
        validation data), ``lr`` and ``seconds``.
    best_epoch
        The epoch whose weights the model holds.
    stopped_early
        Whether early stopping ended training before ``epochs``.
    device
        Where it trained (``"cpu"``, ``"cuda"``...).
    best_loss
        The monitored loss (validation, else training) at ``best_epoch``.
    """

    model: nn.Module
    history: pl.DataFrame
    best_epoch: int
    stopped_early: bool
    device: str
    best_loss: float

    def plot(self, ax: Axes | None = None) -> Figure:
        """Training and validation loss per epoch, the best epoch marked; a log scale when all are positive.

        Parameters
        ----------
        ax
            Axes to draw on; by default a new :class:`matplotlib.figure.Figure` (no pyplot).

        Returns
        -------
        Figure
            The figure drawn on.
        """
        if ax is None:
            from ntlab.backtest.tearsheet import _NotebookFigure

            ax = _NotebookFigure(figsize=(7.0, 3.5), layout="constrained").add_subplot()
        epochs = self.history["epoch"].to_numpy()
        losses = [(name, self.history[name].to_numpy()) for name in ("train_loss", "val_loss")]
        for name, values in losses:
            if self.history[name].null_count() < self.history.height:
                ax.plot(epochs, values, marker=".", label=name.replace("_", " "))
        ax.axvline(
            self.best_epoch, color="#7f8c8d", linestyle="--", linewidth=1, label=f"best (epoch {self.best_epoch})"
        )
        if all(np.nanmin(values) > 0 for _, values in losses if not np.isnan(values).all()):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax.figure

    def __repr__(self) -> str:
        early = ", stopped early" if self.stopped_early else ""
        return (
            f"TrainResult({type(self.model).__name__}, {self.history.height} epochs on {self.device}{early}, "
            f"best epoch {self.best_epoch} (loss {self.best_loss:.6g}))"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in (
                ("model", type(self.model).__name__),
                ("epochs", f"{self.history.height}" + (" (stopped early)" if self.stopped_early else "")),
                ("best epoch", str(self.best_epoch)),
                ("best loss", f"{self.best_loss:.6g}"),
                ("device", self.device),
                ("seconds", f"{self.history['seconds'].sum():.1f}"),
            )
        )
        return f"<div><b>Training result</b><table>{rows}</table></div>"


# ---------------------------------------------------------------------------------------------
# Public helpers


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch's (CPU and CUDA) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``"auto"`` (CUDA when available, else the CPU), ``"cpu"`` or ``"cuda[:i]"``.

    Raises
    ------
    ConfigError
        For CUDA when torch cannot use it here, or for another kind of device.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        msg = f"device={device!r} is not 'auto', 'cpu' or 'cuda'"
        raise ConfigError(msg) from exc
    if resolved.type not in ("cpu", "cuda"):
        msg = f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'"
        raise ConfigError(msg)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        msg = f"device={device!r} but CUDA is not available (torch {torch.__version__}, {build}); use 'auto' or 'cpu'"
        raise ConfigError(msg)
    return resolved


# ---------------------------------------------------------------------------------------------
# fit


@dataclass
class _Progress:
    """The state of a run that a checkpoint carries, besides the model and optimizer."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    best_model: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False


@dataclass
class _Run:
    """Everything one epoch needs."""

    model: nn.Module
    criterion: LossFn
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_loader: DataLoader
    val_loader: DataLoader | None
    generator: torch.Generator
    device: torch.device
    dtype: torch.dtype
    clip_norm: float | None


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None = None,
    *,
    loss: Literal["mse", "bce", "cross_entropy"] | LossFn = "mse",
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: Literal["cosine", "plateau"] | None = "cosine",
    clip_norm: float | None = 1.0,
    patience: int | None = 5,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool = True,
    num_workers: int = 0,
    shuffle: bool = True,
) -> TrainResult:
    """Train ``model`` on ``train_ds`` (in place) and return it with its history.

    Parameters
    ----------
    model
        The network; trained in place and returned in the result.
    train_ds, val_ds
        Datasets of ``(x, y)`` pairs; ``val_ds`` drives early stopping, the best epoch and the
        ``"plateau"`` schedule (the training loss does without it).
    loss
        ``"mse"``, ``"bce"``, ``"cross_entropy"`` or a callable ``loss(output, y)`` (see the module notes).
    epochs
        Total number of epochs (counting those of a checkpoint resumed from).
    batch_size
        Samples per batch (the last batch may be smaller).
    lr, weight_decay
        AdamW's learning rate and decoupled weight decay (0: plain Adam).
    scheduler
        ``"cosine"``, ``"plateau"`` or None for a constant rate.
    clip_norm
        Largest L2 norm of all gradients together (clipped before each step); None: no clipping.
    patience
        Epochs in a row without a new best before stopping; None: never stop early.
    seed
        Seed of the generators (weight initialisation excepted: see :func:`seed_everything`).
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    checkpoint_dir
        Folder for ``last.pt`` and ``best.pt`` (made if missing); None: no checkpoints.
    resume_from
        A checkpoint written by :func:`fit` to continue from, for the same model and settings.
    progress
        Show a tqdm bar over epochs with the losses.
    num_workers
        DataLoader worker processes (0: load in this process).
    shuffle
        Shuffle the training samples each epoch.

    Returns
    -------
    TrainResult
        The model with the best weights (eval mode, CPU), the history, the best epoch...

    Raises
    ------
    ConfigError
        For a setting out of range, an unknown loss or schedule, or CUDA asked for without it.
    DataError
        For an empty dataset, items that are not ``(x, y)`` pairs or targets that do not match the output.
    ModelError
        When the loss becomes NaN or infinite, or the checkpoint to resume from cannot be used.
    """
    _check_settings(epochs, batch_size, lr, weight_decay, scheduler, clip_norm, patience, num_workers)
    criterion = _loss_fn(loss)
    target = resolve_device(device)
    for name, ds in (("train_ds", train_ds), ("val_ds", val_ds)):
        if ds is not None and len(ds) == 0:  # type: ignore[arg-type]
            msg = f"{name} is empty; fit needs at least one (x, y) sample"
            raise DataError(msg)
    with _deterministic(target):
        seed_everything(seed)
        run = _make_run(
            model,
            train_ds,
            val_ds,
            criterion,
            target,
            seed=seed,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            scheduler=scheduler,
            epochs=epochs,
            clip_norm=clip_norm,
            num_workers=num_workers,
            shuffle=shuffle,
        )
        state = _Progress() if resume_from is None else _resume(Path(resume_from), run, scheduler)
        folder = None if checkpoint_dir is None else Path(checkpoint_dir)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        _train(run, state, epochs=epochs, patience=patience, folder=folder, scheduler=scheduler, progress=progress)
    model.load_state_dict(state.best_model)  # type: ignore[arg-type]
    model.cpu().eval()
    history = pl.DataFrame(state.history, schema=_HISTORY_SCHEMA)
    return TrainResult(model, history, state.best_epoch, state.stopped_early, str(target), state.best_loss)


def _check_settings(
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    scheduler: str | None,
    clip_norm: float | None,
    patience: int | None,
    num_workers: int,
) -> None:
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
        _check_int(name, value, low)
    if patience is not None:
        _check_int("patience", patience, 1)
    for name, value, optional in (("lr", lr, False), ("clip_norm", clip_norm, True)):
        if not (optional and value is None) and not _finite_number(value, above=0.0):
            msg = f"{name} must be a finite number > 0{' or None' if optional else ''}, got {value!r}"
            raise ConfigError(msg)
    if not _finite_number(weight_decay) or weight_decay < 0:
        msg = f"weight_decay must be a finite number >= 0, got {weight_decay!r}"
        raise ConfigError(msg)
    if scheduler is not None and scheduler not in _SCHEDULERS:
        msg = f"scheduler must be one of {list(_SCHEDULERS)} or None, got {scheduler!r}"
        raise ConfigError(msg)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        msg = f"{name} must be an int >= {low}, got {value!r}"
        raise ConfigError(msg)


def _finite_number(value: object, above: float = -math.inf) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value > above


def _loss_fn(loss: str | LossFn) -> LossFn:
    """The loss callable for a name (targets aligned with the output), or ``loss`` itself."""
    if callable(loss):
        return loss
    if loss not in _LOSSES:
        msg = f"loss must be one of {list(_LOSSES)} or a callable loss(output, y), got {loss!r}"
        raise ConfigError(msg)
    criterion = _LOSSES[loss]()
    align = _classes if loss == "cross_entropy" else _aligned
    return lambda out, y: criterion(out, align(y, out))


def _classes(y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Cross-entropy targets: class probabilities shaped as the logits, else flat class indices."""
    return y if y.is_floating_point() and y.shape == out.shape else y.reshape(-1).long()


def _aligned(y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``y`` in the output's shape and dtype (same number of values), for element-wise losses."""
    if y.shape != out.shape:
        if y.numel() != out.numel():
            msg = f"targets of shape {tuple(y.shape)} do not match the model's output of shape {tuple(out.shape)}"
            raise DataError(msg)
        y = y.reshape(out.shape)
    return y.to(out.dtype)


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (warn only) and no cuDNN benchmarking inside; the previous settings after."""
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":  # pragma: no cover - needs a GPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def _make_run(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    criterion: LossFn,
    device: torch.device,
    *,
    seed: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    scheduler: str | None,
    epochs: int,
    clip_norm: float | None,
    num_workers: int,
    shuffle: bool,
) -> _Run:
    generator = torch.Generator().manual_seed(seed)
    options = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": _seed_worker,
    }
    train_loader = DataLoader(train_ds, shuffle=shuffle, generator=generator, **options)
    val_loader = None if val_ds is None else DataLoader(val_ds, shuffle=False, **options)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return _Run(
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=_make_scheduler(scheduler, optimizer, epochs),
        train_loader=train_loader,
        val_loader=val_loader,
        generator=generator,
        device=device,
        dtype=_dtype(model),
        clip_norm=clip_norm,
    )


def _seed_worker(worker_id: int) -> None:
    """Seed a DataLoader worker's ``random`` and NumPy from its torch seed (set from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _make_scheduler(kind: str | None, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    if kind == "cosine":
        # closed form of the epoch (not CosineAnnealingLR's recursion): a resumed run with more
        # epochs follows the longer curve from where it is
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5 * (1.0 + math.cos(math.pi * e / epochs)))
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **_PLATEAU)
    return None


def _dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter (float32 without one)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _train(
    run: _Run,
    state: _Progress,
    *,
    epochs: int,
    patience: int | None,
    folder: Path | None,
    scheduler: str | None,
    progress: bool,
) -> None:
    """Epochs ``state.epoch + 1 .. epochs``, updating ``state`` (and the checkpoints) after each."""
    remaining = range(state.epoch + 1, epochs + 1)
    with tqdm(remaining, total=epochs, initial=state.epoch, desc="fit", unit="epoch", disable=not progress) as bar:
        for epoch in bar:
            if patience is not None and state.bad_epochs >= patience:
                state.stopped_early = True
                break
            row = _run_epoch(run, epoch)
            improved = _record(state, run.model, row)
            if folder is not None:
                _write_checkpoints(folder, run, state, scheduler, best=improved)
            bar.set_postfix(_postfix(row))


def _run_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """Train one epoch, validate, step the schedule; the epoch's history row."""
    start = time.perf_counter()
    lr = run.optimizer.param_groups[0]["lr"]
    train_loss = _check_finite(_train_epoch(run), "training", epoch, lr)
    val_loss = None
    if run.val_loader is not None:
        val_loss = _check_finite(_evaluate(run, run.val_loader), "validation", epoch, lr)
    _step_scheduler(run.scheduler, train_loss if val_loss is None else val_loss)
    seconds = time.perf_counter() - start
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr, "seconds": seconds}


def _record(state: _Progress, model: nn.Module, row: dict[str, Any]) -> bool:
    """Add an epoch's row to the progress, keeping the weights of a new best; whether it is one."""
    monitored = row["train_loss"] if row["val_loss"] is None else row["val_loss"]
    state.epoch = row["epoch"]
    state.history.append(row)
    if monitored >= state.best_loss:
        state.bad_epochs += 1
        return False
    state.best_epoch, state.best_loss, state.bad_epochs = row["epoch"], monitored, 0
    state.best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return True


def _postfix(row: dict[str, Any]) -> dict[str, str]:
    shown = {"train": f"{row['train_loss']:.4g}", "lr": f"{row['lr']:.2e}"}
    if row["val_loss"] is not None:
        shown["val"] = f"{row['val_loss']:.4g}"
    return shown


def _batches(run: _Run, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` on the device, floating ``x`` in the model's dtype."""
    for batch in loader:
        if not isinstance(batch, list | tuple) or len(batch) != 2:
            parts = len(batch) if isinstance(batch, list | tuple) else 1
            msg = f"fit needs datasets of (x, y) pairs; an item here has {parts} part(s)"
            raise DataError(msg)
        yield _to_device(batch[0], run.device, run.dtype), batch[1].to(run.device, non_blocking=True)


def _to_device(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.to(dtype) if x.is_floating_point() else x


def _train_epoch(run: _Run) -> float:
    """One pass over the training data; the mean loss over its samples."""
    run.model.train()
    total, count = torch.zeros((), dtype=torch.float64, device=run.device), 0
    for x, y in _batches(run, run.train_loader):
        run.optimizer.zero_grad(set_to_none=True)
        loss = run.criterion(run.model(x), y)
        loss.backward()
        if run.clip_norm is not None:
            nn.utils.clip_grad_norm_(run.model.parameters(), run.clip_norm)
        run.optimizer.step()
        total += loss.detach().double() * len(x)
        count += len(x)
    return total.item() / count


@torch.no_grad()
def _evaluate(run: _Run, loader: DataLoader) -> float:
    """The mean loss over ``loader``'s samples, in eval mode."""
    run.model.eval()
    total, count = torch.zeros((), dtype=torch.float64, device=run.device), 0
    for x, y in _batches(run, loader):
        total += run.criterion(run.model(x), y).double() * len(x)
        count += len(x)
    return total.item() / count


def _check_finite(value: float, which: str, epoch: int, lr: float) -> float:
    if not math.isfinite(value):
        msg = (
            f"the {which} loss is {value} at epoch {epoch}: training diverged. Try a lower lr "
            f"(now {lr:.3g}), scaling the inputs and targets (standardise them), or clip_norm"
        )
        raise ModelError(msg)
    return value


def _step_scheduler(scheduler: Any, monitored: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitored)
    elif scheduler is not None:
        scheduler.step()


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _write_checkpoints(folder: Path, run: _Run, state: _Progress, scheduler: str | None, *, best: bool) -> None:
    payload = {
        "format": _FORMAT,
        "epoch": state.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": None if run.scheduler is None else run.scheduler.state_dict(),
        "scheduler_kind": scheduler,
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_loss": state.best_loss,
        "best_model": state.best_model,
        "bad_epochs": state.bad_epochs,
        "rng": _rng_state(run),
    }
    _save(payload, folder / "last.pt")
    if best:
        _save(payload, folder / "best.pt")


def _save(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        msg = f"cannot write the checkpoint {path}: {exc}"
        raise ModelError(msg) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def _rng_state(run: _Run) -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "loader": run.generator.get_state(),
        "numpy": (name, keys.tolist(), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if run.device.type == "cuda":  # pragma: no cover - needs a GPU
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], run: _Run) -> None:
    torch.set_rng_state(state["torch"])
    run.generator.set_state(state["loader"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and run.device.type == "cuda":  # pragma: no cover - needs a GPU
        torch.cuda.set_rng_state_all(state["cuda"])


def _resume(path: Path, run: _Run, scheduler: str | None) -> _Progress:
    """Load a checkpoint into the run (model, optimizer, schedule, generators); its progress."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        msg = f"cannot read the checkpoint {path}: {exc}"
        raise ModelError(msg) from exc
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        msg = f"{path} is not a checkpoint written by ntlab.models.train.fit"
        raise ModelError(msg)
    if payload["scheduler_kind"] != scheduler:
        msg = f"{path} was trained with scheduler={payload['scheduler_kind']!r}; resume with it, not {scheduler!r}"
        raise ModelError(msg)
    try:
        run.model.load_state_dict(payload["model"])
        run.optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        msg = f"the checkpoint {path} does not fit this model: {exc}"
        raise ModelError(msg) from exc
    if run.scheduler is not None:
        run.scheduler.load_state_dict(payload["scheduler"])
    _set_rng_state(payload["rng"], run)
    return _Progress(
        epoch=payload["epoch"],
        history=list(payload["history"]),
        best_epoch=payload["best_epoch"],
        best_loss=payload["best_loss"],
        best_model=payload["best_model"],
        bad_epochs=payload["bad_epochs"],
    )


# ---------------------------------------------------------------------------------------------
# predict


@torch.no_grad()
def predict(
    model: nn.Module,
    data: torch.Tensor | np.ndarray | Dataset,
    batch_size: int = 4096,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """The model's outputs for every sample, computed in batches without gradients, in eval mode.

    Parameters
    ----------
    model
        The network; its training mode and device are restored afterwards.
    data
        Inputs stacked on the first axis (a tensor or an array), or a dataset of ``x`` or
        ``(x, y, ...)`` items (only ``x`` is used).
    batch_size
        Samples per forward pass.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    numpy.ndarray
        The outputs stacked on the first axis, ``(n, outputs)`` for the nets, in the model's dtype.
    """
    _check_int("batch_size", batch_size, 1)
    target = resolve_device(device)
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    batches: Iterable[Any] = (
        data.split(batch_size) if isinstance(data, torch.Tensor) else DataLoader(data, batch_size=batch_size)
    )
    training = model.training
    home = next(model.parameters(), torch.empty(0)).device
    model.eval().to(target)
    dtype = _dtype(model)
    try:
        outputs = [model(_to_device(_inputs(batch), target, dtype)).cpu() for batch in batches]
    finally:
        model.train(training).to(home)
    if not outputs:
        msg = "predict got an empty dataset"
        raise DataError(msg)
    return torch.cat(outputs).numpy()


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, list | tuple) else batch
