"""Networks for windows of features: an MLP, a GRU, an LSTM, a TCN and a Transformer.

Each network is an ordinary :class:`torch.nn.Module` built from a frozen dataclass config
(:class:`MLPConfig` → :class:`MLP`, ...) with :func:`build`; :func:`config_to_dict` and
:func:`config_from_dict` turn a config into a JSON-friendly dict (with its ``"kind"``) and back,
for the model registry.

Conventions
-----------
* Input is ``(batch, lookback, features)`` float32, time ascending along ``lookback`` (the last
  step is the most recent), as :class:`ntlab.models.datasets.WindowDataset` yields it. Output is
  ``(batch, outputs)``: regression values, or logits for ``"bce"`` / ``"cross_entropy"`` losses
  (no sigmoid or softmax in the network).
* :class:`MLP` takes ``(batch, inputs)`` or flattens ``(batch, lookback, features)`` row-major
  (``x.reshape(batch, -1)``: all features of the oldest step first), so ``inputs`` is
  ``lookback * features`` for windows. Its layers are one ``nn.Sequential`` ``net`` holding only
  ``Linear``, activation modules and ``Dropout`` (only when ``dropout > 0``), in order, which
  :func:`ntlab.models.export.export_mlp` walks.
* The sequence networks (:class:`GRUNet`, :class:`LSTMNet`, :class:`TCN`,
  :class:`TransformerNet`) take ``(batch, lookback, features)`` with ``features == inputs``;
  ``encode(x)`` returns the per-step hidden states ``(batch, lookback, hidden)`` and ``forward``
  applies the Linear ``head`` to the last step's. Every one is causal: the state at step ``t``
  depends on steps ``<= t`` only (the TCN pads its dilated convolutions on the left, the
  Transformer masks attention to later steps), so ``encode(x[:, :t])`` equals
  ``encode(x)[:, :t]``. :class:`GRUNet` keeps ``rnn`` (``nn.GRU``, ``batch_first``) and ``head``
  as :func:`ntlab.models.export.export_gru` reads them.
* Configs check their values when made and raise :class:`~ntlab.exceptions.ConfigError`; a
  window of the wrong shape raises :class:`~ntlab.exceptions.DataError`. ``model.config`` is the
  config a network was built from.

Example
-------
>>> import torch
>>> from ntlab.models.nets import GRUConfig, build, config_from_dict, config_to_dict
>>> config = GRUConfig(inputs=5, hidden=8)
>>> config_to_dict(config)
{'kind': 'gru', 'inputs': 5, 'hidden': 8, 'layers': 1, 'outputs': 1, 'dropout': 0.0}
>>> config_from_dict(config_to_dict(config)) == config
True
>>> build(config)(torch.zeros(3, 20, 5)).shape
torch.Size([3, 1])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from ntlab.exceptions import ConfigError, DataError

__all__ = [
    "MLP",
    "TCN",
    "GRUConfig",
    "GRUNet",
    "LSTMConfig",
    "LSTMNet",
    "MLPConfig",
    "NetConfig",
    "TCNConfig",
    "TransformerConfig",
    "TransformerNet",
    "build",
    "config_from_dict",
    "config_to_dict",
]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
_POSITIONAL = ("sinusoidal", "learned")


# ---------------------------------------------------------------------------------------------
# Checks shared by the configs


def _check_size(config: object, *names: str) -> None:
    """Each named field is an int >= 1 (bools are not sizes)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{type(config).__name__}.{name} must be an int >= 1, got {value!r}"
            raise ConfigError(msg)


def _check_sizes(config: object, name: str, *, allow_empty: bool) -> None:
    """The named field is a tuple of ints >= 1 (a list is made a tuple, for dicts read from JSON)."""
    value = getattr(config, name)
    if isinstance(value, list | tuple):
        object.__setattr__(config, name, tuple(value))
        value = tuple(value)
    ok = isinstance(value, tuple) and (allow_empty or value)
    if not ok or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        need = "a tuple" if allow_empty else "a non-empty tuple"
        msg = f"{type(config).__name__}.{name} must be {need} of ints >= 1, got {value!r}"
        raise ConfigError(msg)


def _check_dropout(config: object) -> None:
    value = config.dropout  # type: ignore[attr-defined]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        msg = f"{type(config).__name__}.dropout must be a number in [0, 1), got {value!r}"
        raise ConfigError(msg)
    object.__setattr__(config, "dropout", float(value))


def _check_choice(config: object, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        msg = f"{type(config).__name__}.{name} must be one of {list(choices)}, got {value!r}"
        raise ConfigError(msg)


# ---------------------------------------------------------------------------------------------
# Configs


@dataclass(frozen=True)
class MLPConfig:
    """A multilayer perceptron: ``Linear → activation (→ Dropout)`` per hidden layer, then a Linear head.

    Parameters
    ----------
    inputs
        Input width (``lookback * features`` for flattened windows).
    hidden
        Widths of the hidden layers; ``()`` makes a linear model.
    outputs
        Output width.
    activation
        ``"relu"``, ``"tanh"`` or ``"gelu"`` (exact, erf-based).
    dropout
        Dropout probability after each hidden activation, in ``[0, 1)``.
    """

    kind: ClassVar[str] = "mlp"
    inputs: int
    hidden: tuple[int, ...] = (64, 64)
    outputs: int = 1
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_size(self, "inputs", "outputs")
        _check_sizes(self, "hidden", allow_empty=True)
        _check_choice(self, "activation", tuple(_ACTIVATIONS))
        _check_dropout(self)


@dataclass(frozen=True)
class GRUConfig:
    """A GRU over the window, then a Linear head on the last step's hidden state.

    Parameters
    ----------
    inputs
        Features per step.
    hidden
        Hidden state size.
    layers
        Stacked GRU layers.
    outputs
        Output width.
    dropout
        Dropout between stacked layers, in ``[0, 1)`` (none after the last layer, so no effect
        when ``layers == 1``).
    """

    kind: ClassVar[str] = "gru"
    inputs: int
    hidden: int = 32
    layers: int = 1
    outputs: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_size(self, "inputs", "hidden", "layers", "outputs")
        _check_dropout(self)


@dataclass(frozen=True)
class LSTMConfig(GRUConfig):
    """An LSTM over the window, then a Linear head on the last step's hidden state (fields as :class:`GRUConfig`)."""

    kind: ClassVar[str] = "lstm"


@dataclass(frozen=True)
class TCNConfig:
    """A temporal convolutional network: residual blocks of causal dilated convolutions.

    Parameters
    ----------
    inputs
        Features per step.
    channels
        Output channels of each residual block; block ``i`` has dilation ``2**i``, so the
        receptive field is ``1 + 2 * (kernel_size - 1) * (2**len(channels) - 1)`` steps.
    kernel_size
        Convolution width.
    outputs
        Output width.
    dropout
        Dropout after each convolution's activation, in ``[0, 1)``.
    """

    kind: ClassVar[str] = "tcn"
    inputs: int
    channels: tuple[int, ...] = (32, 32)
    kernel_size: int = 3
    outputs: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_size(self, "inputs", "kernel_size", "outputs")
        _check_sizes(self, "channels", allow_empty=False)
        _check_dropout(self)


@dataclass(frozen=True)
class TransformerConfig:
    """A causal Transformer encoder (pre-norm) over the window, then a Linear head on the last step.

    Parameters
    ----------
    inputs
        Features per step.
    d_model
        Model width; a multiple of ``heads``.
    heads
        Attention heads.
    layers
        Encoder layers.
    ff
        Width of each layer's feed-forward block.
    outputs
        Output width.
    dropout
        Dropout inside the encoder layers, in ``[0, 1)``.
    max_len
        Longest window accepted (size of the positional table).
    positional
        ``"sinusoidal"`` (fixed, as in Vaswani et al. 2017) or ``"learned"`` (a trained table).
    """

    kind: ClassVar[str] = "transformer"
    inputs: int
    d_model: int = 32
    heads: int = 4
    layers: int = 2
    ff: int = 64
    outputs: int = 1
    dropout: float = 0.0
    max_len: int = 512
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"

    def __post_init__(self) -> None:
        _check_size(self, "inputs", "d_model", "heads", "layers", "ff", "outputs", "max_len")
        _check_dropout(self)
        _check_choice(self, "positional", _POSITIONAL)
        if self.d_model % self.heads:
            msg = f"TransformerConfig.d_model ({self.d_model}) must be divisible by heads ({self.heads})"
            raise ConfigError(msg)


NetConfig = MLPConfig | GRUConfig | LSTMConfig | TCNConfig | TransformerConfig


# ---------------------------------------------------------------------------------------------
# Networks


def _check_window(x: torch.Tensor, inputs: int, name: str) -> None:
    """``x`` is ``(batch, lookback, inputs)``."""
    if x.ndim != 3 or x.shape[2] != inputs:
        msg = f"{name} takes windows of shape (batch, lookback, {inputs}), got {tuple(x.shape)}"
        raise DataError(msg)


class MLP(nn.Module):
    """A multilayer perceptron (see :class:`MLPConfig`); flattens ``(batch, lookback, features)`` windows."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.inputs
        for size in config.hidden:
            layers += [nn.Linear(width, size), _ACTIVATIONS[config.activation]()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = size
        layers.append(nn.Linear(width, config.outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, outputs)`` from ``(batch, inputs)`` or ``(batch, lookback, features)``."""
        flat = x.flatten(1) if x.ndim == 3 else x
        if flat.ndim != 2 or flat.shape[1] != self.config.inputs:
            msg = (
                f"MLP takes (batch, {self.config.inputs}) or windows with lookback * features = "
                f"{self.config.inputs}, got {tuple(x.shape)}"
            )
            raise DataError(msg)
        return self.net(flat)


class _RecurrentNet(nn.Module):
    """A recurrent layer ``rnn`` (batch first) and a Linear ``head`` on the last step."""

    rnn: nn.GRU | nn.LSTM

    def __init__(self, config: GRUConfig, rnn: type[nn.GRU | nn.LSTM]) -> None:
        super().__init__()
        self.config = config
        dropout = config.dropout if config.layers > 1 else 0.0  # torch drops between layers only
        self.rnn = rnn(config.inputs, config.hidden, num_layers=config.layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(config.hidden, config.outputs)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states of the last layer at every step, ``(batch, lookback, hidden)``."""
        _check_window(x, self.config.inputs, type(self).__name__)
        return self.rnn(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, outputs)`` from the last step's hidden state."""
        return self.head(self.encode(x)[:, -1])


class GRUNet(_RecurrentNet):
    """A GRU and a Linear head on the last step (see :class:`GRUConfig`)."""

    def __init__(self, config: GRUConfig) -> None:
        super().__init__(config, nn.GRU)


class LSTMNet(_RecurrentNet):
    """An LSTM and a Linear head on the last step (see :class:`LSTMConfig`)."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config, nn.LSTM)


class _CausalConv1d(nn.Conv1d):
    """A dilated Conv1d padded on the left only: output step ``t`` sees input steps ``<= t``."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__(n_in, n_out, kernel_size, dilation=dilation)
        self.left = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class _TemporalBlock(nn.Module):
    """Two causal convolutions (ReLU, dropout) plus a residual connection (1x1 conv when widths differ)."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _CausalConv1d(n_in, n_out, kernel_size, dilation),
            nn.ReLU(),
            nn.Dropout(dropout),
            _CausalConv1d(n_out, n_out, kernel_size, dilation),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.skip = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class TCN(nn.Module):
    """A temporal convolutional network (Bai, Kolter & Koltun 2018), head on the last step (see :class:`TCNConfig`)."""

    def __init__(self, config: TCNConfig) -> None:
        super().__init__()
        self.config = config
        widths = (config.inputs, *config.channels)
        self.blocks = nn.Sequential(
            *(
                _TemporalBlock(widths[i], widths[i + 1], config.kernel_size, 2**i, config.dropout)
                for i in range(len(config.channels))
            )
        )
        self.head = nn.Linear(config.channels[-1], config.outputs)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Last block's channels at every step, ``(batch, lookback, channels[-1])``."""
        _check_window(x, self.config.inputs, "TCN")
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, outputs)`` from the last step."""
        return self.head(self.encode(x)[:, -1])


def _sinusoidal(max_len: int, d_model: int) -> torch.Tensor:
    """The fixed ``(max_len, d_model)`` table of sines (even columns) and cosines (odd columns)."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


class TransformerNet(nn.Module):
    """A causal Transformer encoder with a head on the last step (see :class:`TransformerConfig`).

    The positional table counts from the window's first step, so ``encode(x[:, :t])`` equals
    ``encode(x)[:, :t]``. A sinusoidal table is a non-persistent buffer (rebuilt from the
    config, not in the ``state_dict``); a learned one is the parameter ``positional``.
    """

    positional: torch.Tensor

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.project = nn.Linear(config.inputs, config.d_model)
        if config.positional == "learned":
            self.positional = nn.Parameter(torch.randn(config.max_len, config.d_model) * 0.02)
        else:
            self.register_buffer("positional", _sinusoidal(config.max_len, config.d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.heads, config.ff, config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, config.layers, norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False
        )
        self.head = nn.Linear(config.d_model, config.outputs)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output at every step, ``(batch, lookback, d_model)``; step ``t`` attends to steps ``<= t``."""
        _check_window(x, self.config.inputs, "TransformerNet")
        steps = x.shape[1]
        if steps > self.config.max_len:
            msg = f"TransformerNet takes windows of at most max_len={self.config.max_len} steps, got {steps}"
            raise DataError(msg)
        h = self.project(x) + self.positional[:steps]
        mask = nn.Transformer.generate_square_subsequent_mask(steps, device=x.device, dtype=h.dtype)
        return self.encoder(h, mask=mask, is_causal=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, outputs)`` from the last step."""
        return self.head(self.encode(x)[:, -1])


# ---------------------------------------------------------------------------------------------
# Building and (de)serialising

_NETS: dict[type, type[nn.Module]] = {
    MLPConfig: MLP,
    GRUConfig: GRUNet,
    LSTMConfig: LSTMNet,
    TCNConfig: TCN,
    TransformerConfig: TransformerNet,
}
_CONFIGS: dict[str, type] = {cls.kind: cls for cls in _NETS}


def build(config: NetConfig | Mapping[str, Any]) -> nn.Module:
    """The network of a config (or of a dict from :func:`config_to_dict`), freshly initialised.

    Parameters
    ----------
    config
        One of the ``*Config`` dataclasses, or its dict with ``"kind"``.

    Returns
    -------
    nn.Module
        The network, in training mode, on the CPU; initialised from torch's global generator
        (seed it, e.g. with :func:`ntlab.models.train.seed_everything`, for a reproducible start).
    """
    if isinstance(config, Mapping):
        config = config_from_dict(config)
    net = _NETS.get(type(config))
    if net is None:
        msg = f"build needs one of {[cls.__name__ for cls in _NETS]} (or its dict), got {type(config).__name__}"
        raise ConfigError(msg)
    return net(config)


def config_to_dict(config: NetConfig) -> dict[str, Any]:
    """A JSON-friendly dict of ``config``: ``"kind"`` first, then its fields (tuples as lists)."""
    if type(config) not in _NETS:
        msg = f"config_to_dict needs one of {[cls.__name__ for cls in _NETS]}, got {type(config).__name__}"
        raise ConfigError(msg)
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    return {"kind": config.kind, **values}


def config_from_dict(data: Mapping[str, Any]) -> NetConfig:
    """The config of a dict made by :func:`config_to_dict` (checked as when made directly)."""
    values = dict(data)
    kind = values.pop("kind", None)
    cls = _CONFIGS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        msg = f"config kind {kind!r} is not one of {sorted(_CONFIGS)}"
        raise ConfigError(msg)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        msg = f"{cls.__name__} has no field(s) {unknown}; its fields are {sorted(names)}"
        raise ConfigError(msg)
    if "inputs" not in values:
        msg = f"{cls.__name__} needs 'inputs' (features per step, or lookback * features for an MLP)"
        raise ConfigError(msg)
    return cls(**values)
