"""Trained networks exported to Numba kernels over float32 weights: inference without torch.

The live path (and compiled strategies in backtests) cannot afford torch: its eager call costs
~18 µs at batch 1 and its import ~1 s. An exported model is two arrays, ``params`` (float32,
every weight and bias side by side) and ``layout`` (int64, one row per layer), plus a scratch
buffer, read by ``@njit`` functions that a compiled strategy can call on each event:

* :func:`export_mlp` for :class:`ntlab.models.nets.MLP` (or any ``nn.Sequential`` of ``Linear``
  layers, ReLU/Tanh/GELU/Sigmoid activations and ``Dropout``, which is the identity at inference):
  :func:`mlp_forward_nb` computes one input vector, :meth:`ExportedMLP.predict` a batch;
* :func:`export_gru` for :class:`ntlab.models.nets.GRUNet` (``rnn`` an ``nn.GRU``, ``head`` a
  ``Linear``): :func:`gru_step_nb` advances the hidden state by one input (the live engine's way:
  O(hidden²) per event), :meth:`ExportedGRU.predict` runs whole sequences.

Outputs equal a float64 evaluation of the same network to 1e-5 and torch's float32 results to
about 1e-6 on one machine (accumulation order differs); torch's own float32 kernels move by up
to ~3e-5 between CPUs with and without AVX-512, so tests against torch allow 1e-4. Exported models save to and load from ``.npz`` without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from ntlab.exceptions import ConfigError, ModelError
from ntlab.kernels._common import _KW

__all__ = ["ExportedGRU", "ExportedMLP", "export_gru", "export_mlp", "gru_step_nb", "load_exported", "mlp_forward_nb"]

# Activations
IDENTITY, RELU, TANH, GELU, SIGMOID = 0, 1, 2, 3, 4
_ACTIVATIONS = {"ReLU": RELU, "Tanh": TANH, "GELU": GELU, "Sigmoid": SIGMOID}

# MLP layout rows: inputs, outputs, activation after the layer, offset of W (outputs x inputs), offset of b
L_IN, L_OUT, L_ACT, L_W, L_B = 0, 1, 2, 3, 4


@njit(**_KW)
def _activate_nb(v: np.ndarray, at: int, n: int, act: int) -> None:
    """Apply activation ``act`` to ``v[at:at + n]`` in place (offsets, not slices: a slice is a
    new array object, ~25 ns)."""
    if act == RELU:
        for i in range(at, at + n):
            v[i] = v[i] if v[i] > 0 else np.float32(0.0)
    elif act == TANH:
        for i in range(at, at + n):
            v[i] = math.tanh(v[i])
    elif act == GELU:  # exact (erf) GELU, as torch's default
        for i in range(at, at + n):
            v[i] = np.float32(0.5) * v[i] * (np.float32(1.0) + math.erf(v[i] * np.float32(0.7071067811865476)))
    elif act == SIGMOID:
        for i in range(at, at + n):
            v[i] = np.float32(1.0) / (np.float32(1.0) + math.exp(-v[i]))


@njit(**_KW, fastmath=True)  # reassociated sums vectorise; torch's summation order differs anyway
def _dense_nb(params: np.ndarray, w: int, b: int, n_in: int, n_out: int, x: np.ndarray, xo: int, y: np.ndarray, yo: int) -> None:
    """y[yo:yo + n_out] = W x[xo:xo + n_in] + b, W at params[w:] (row-major, n_out x n_in), in float32.

    Indexing by range variables over 2-D views (not computed offsets) lets LLVM drop Numba's
    negative-index checks and vectorise the dot products."""
    weights = params[w : w + n_out * n_in].reshape((n_out, n_in))
    bias = params[b : b + n_out]
    xv = x[xo : xo + n_in]
    for o in range(n_out):
        acc = np.float32(0.0)
        for i in range(n_in):
            acc += weights[o, i] * xv[i]
        y[yo + o] = acc + bias[o]


@njit(**_KW)
def mlp_forward_nb(params: np.ndarray, layout: np.ndarray, x: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:
    """One input vector ``x`` (float32[inputs]) through the exported MLP into ``out``
    (float32[outputs]); ``scratch`` is float32[2 * widest layer] (see :meth:`ExportedMLP.scratch`)."""
    width = scratch.shape[0] // 2
    src, dst = 0, width
    for i in range(layout[0, L_IN]):
        scratch[i] = x[i]
    for k in range(layout.shape[0]):
        n_out = layout[k, L_OUT]
        _dense_nb(params, layout[k, L_W], layout[k, L_B], layout[k, L_IN], n_out, scratch, src, scratch, dst)
        _activate_nb(scratch, dst, n_out, layout[k, L_ACT])
        src, dst = dst, src
    for i in range(out.shape[0]):
        out[i] = scratch[src + i]


@njit(**_KW)
def _mlp_batch_nb(params: np.ndarray, layout: np.ndarray, x: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        mlp_forward_nb(params, layout, x[r], scratch, out[r])


@dataclass(frozen=True)
class ExportedMLP:
    """An MLP as float32 ``params`` and an int64 ``layout`` (rows: inputs, outputs, activation,
    weight offset, bias offset); :meth:`predict` runs a batch, :func:`mlp_forward_nb` one row."""

    params: np.ndarray
    layout: np.ndarray

    @property
    def inputs(self) -> int:
        return int(self.layout[0, L_IN])

    @property
    def outputs(self) -> int:
        return int(self.layout[-1, L_OUT])

    def scratch(self) -> np.ndarray:
        """A fresh scratch buffer for :func:`mlp_forward_nb`."""
        return np.zeros(2 * int(max(self.layout[:, L_IN].max(), self.layout[:, L_OUT].max())), dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32[batch, outputs] for ``x`` of shape (batch, inputs) or (batch, lookback, features)."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        if x.shape[1] != self.inputs:
            msg = f"the model takes {self.inputs} inputs per row, got {x.shape[1]}"
            raise ConfigError(msg)
        out = np.empty((x.shape[0], self.outputs), dtype=np.float32)
        _mlp_batch_nb(self.params, self.layout, x, self.scratch(), out)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the arrays to ``path`` (``.npz``); :func:`load_exported` reads them without torch."""
        np.savez(path, kind=np.array("mlp"), params=self.params, layout=self.layout)
        return Path(path)


def export_mlp(model: Any) -> ExportedMLP:
    """Export an MLP: a module with a ``net`` ``nn.Sequential`` (or an ``nn.Sequential``) of
    ``Linear`` layers, supported activations and ``Dropout``."""
    import torch

    seq = getattr(model, "net", model)
    if not isinstance(seq, torch.nn.Sequential):
        msg = f"export_mlp needs an nn.Sequential (or a module whose .net is one), got {type(model).__name__}"
        raise ModelError(msg)
    rows, chunks, offset = [], [], 0
    for layer in seq:
        name = type(layer).__name__
        if isinstance(layer, torch.nn.Linear):
            w = layer.weight.detach().cpu().float().numpy()
            b = layer.bias.detach().cpu().float().numpy() if layer.bias is not None else np.zeros(w.shape[0], np.float32)
            rows.append([w.shape[1], w.shape[0], IDENTITY, offset, offset + w.size])
            chunks += [w.ravel(), b]
            offset += w.size + b.size
        elif name in _ACTIVATIONS and rows and rows[-1][L_ACT] == IDENTITY:
            if name == "GELU" and getattr(layer, "approximate", "none") != "none":
                msg = "GELU(approximate='tanh') is not supported by the exporter; use the exact GELU"
                raise ModelError(msg)
            rows[-1][L_ACT] = _ACTIVATIONS[name]
        elif not isinstance(layer, torch.nn.Dropout):
            msg = f"cannot export layer {name}: an MLP for export holds Linear, {'/'.join(_ACTIVATIONS)} and Dropout"
            raise ModelError(msg)
    if not rows:
        msg = "the model has no Linear layer to export"
        raise ModelError(msg)
    return ExportedMLP(params=np.concatenate(chunks).astype(np.float32), layout=np.asarray(rows, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# GRU: torch's gates (r, z, n) per layer, then a Linear head on the last hidden state.
# layout rows (one per GRU layer, then one for the head): inputs, hidden (or outputs), _, offset
# of W_ih (3H x in), offset of W_hh (3H x H) [head: offset of W, offset of b], b_ih, b_hh.
G_IN, G_HID, G_WIH, G_WHH, G_BIH, G_BHH = 0, 1, 3, 4, 5, 6


@njit(**_KW)
def _sigmoid_nb(v: float) -> float:
    return np.float32(1.0) / (np.float32(1.0) + math.exp(-v))


@njit(**_KW)
def gru_step_nb(params: np.ndarray, layout: np.ndarray, h: np.ndarray, x: np.ndarray, gates: np.ndarray, out: np.ndarray) -> None:
    """Advance the hidden states ``h`` (float32[layers * hidden], layer after layer) by one input
    ``x`` and write the head's output for it to ``out``; ``gates`` is float32[6 * hidden] scratch.

    h' = (1 - z) * n + z * h with r = σ(W_ir x + b_ir + W_hr h + b_hr), z likewise, and
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) — torch's GRU."""
    layers = layout.shape[0] - 1
    hidden = layout[0, G_HID]
    gh = 3 * hidden  # gates[:3H] from the input, gates[3H:] from the hidden state
    for k in range(layers):
        if k == 0:
            _dense_nb(params, layout[k, G_WIH], layout[k, G_BIH], layout[k, G_IN], 3 * hidden, x, 0, gates, 0)
        else:
            _dense_nb(params, layout[k, G_WIH], layout[k, G_BIH], hidden, 3 * hidden, h, (k - 1) * hidden, gates, 0)
        _dense_nb(params, layout[k, G_WHH], layout[k, G_BHH], hidden, 3 * hidden, h, k * hidden, gates, gh)
        for j in range(hidden):
            r = _sigmoid_nb(gates[j] + gates[gh + j])
            z = _sigmoid_nb(gates[hidden + j] + gates[gh + hidden + j])
            n = math.tanh(gates[2 * hidden + j] + r * gates[gh + 2 * hidden + j])
            h[k * hidden + j] = (np.float32(1.0) - z) * n + z * h[k * hidden + j]
    head = layout[layers]
    _dense_nb(params, head[G_WIH], head[G_WHH], head[G_IN], head[G_HID], h, (layers - 1) * hidden, out, 0)


@njit(**_KW)
def _gru_batch_nb(params: np.ndarray, layout: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    layers, hidden = layout.shape[0] - 1, layout[0, G_HID]
    h = np.zeros(layers * hidden, dtype=np.float32)
    gates = np.zeros(6 * hidden, dtype=np.float32)
    for s in range(x.shape[0]):
        h[:] = 0.0
        for t in range(x.shape[1]):
            gru_step_nb(params, layout, h, x[s, t], gates, out[s])


@dataclass(frozen=True)
class ExportedGRU:
    """A GRU network as float32 ``params`` and an int64 ``layout``; :func:`gru_step_nb` is the
    streaming form (one event), :meth:`predict` the batch form over whole sequences."""

    params: np.ndarray
    layout: np.ndarray

    @property
    def hidden(self) -> int:
        return int(self.layout[0, G_HID])

    @property
    def layers(self) -> int:
        return int(self.layout.shape[0] - 1)

    @property
    def outputs(self) -> int:
        return int(self.layout[-1, G_HID])

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """Fresh (hidden states, gate scratch) for :func:`gru_step_nb`."""
        return np.zeros(self.layers * self.hidden, dtype=np.float32), np.zeros(6 * self.hidden, dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32[batch, outputs] for sequences ``x`` (batch, steps, inputs), from a zero state."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if x.ndim != 3 or x.shape[2] != self.layout[0, G_IN]:
            msg = f"the model takes sequences of shape (batch, steps, {self.layout[0, G_IN]}), got {x.shape}"
            raise ConfigError(msg)
        out = np.empty((x.shape[0], self.outputs), dtype=np.float32)
        _gru_batch_nb(self.params, self.layout, x, out)
        return out

    def save(self, path: str | Path) -> Path:
        np.savez(path, kind=np.array("gru"), params=self.params, layout=self.layout)
        return Path(path)


def export_gru(model: Any) -> ExportedGRU:
    """Export a module with ``rnn`` (``nn.GRU``, ``batch_first``, unidirectional) and ``head``
    (``nn.Linear``) applied to the last step's hidden state."""
    import torch

    rnn, head = getattr(model, "rnn", None), getattr(model, "head", None)
    if not isinstance(rnn, torch.nn.GRU) or not isinstance(head, torch.nn.Linear):
        msg = f"export_gru needs a module with .rnn (nn.GRU) and .head (nn.Linear), got {type(model).__name__}"
        raise ModelError(msg)
    if rnn.bidirectional or not rnn.batch_first or not rnn.bias or getattr(rnn, "proj_size", 0):
        msg = "export_gru supports unidirectional, batch_first GRUs with biases and no projection"
        raise ModelError(msg)
    chunks, rows, offset = [], [], 0

    def put(t: Any) -> int:
        nonlocal offset
        a = t.detach().cpu().float().numpy().ravel()
        chunks.append(a)
        offset += a.size
        return offset - a.size

    for k in range(rnn.num_layers):
        n_in = rnn.input_size if k == 0 else rnn.hidden_size
        wih, whh = put(getattr(rnn, f"weight_ih_l{k}")), put(getattr(rnn, f"weight_hh_l{k}"))
        bih, bhh = put(getattr(rnn, f"bias_ih_l{k}")), put(getattr(rnn, f"bias_hh_l{k}"))
        rows.append([n_in, rnn.hidden_size, 0, wih, whh, bih, bhh])
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    w, b = put(head.weight), put(bias)
    rows.append([head.in_features, head.out_features, 0, w, b, 0, 0])
    return ExportedGRU(params=np.concatenate(chunks).astype(np.float32), layout=np.asarray(rows, dtype=np.int64))


def load_exported(path: str | Path) -> ExportedMLP | ExportedGRU:
    """An exported model saved with ``.save(path)`` (no torch needed)."""
    try:
        with np.load(path) as f:
            kind, params, layout = str(f["kind"]), f["params"], f["layout"]
    except (OSError, KeyError, ValueError) as exc:
        msg = f"{path} is not an exported ntlab model ({exc}); write one with ExportedMLP.save / ExportedGRU.save"
        raise ModelError(msg) from exc
    cls = {"mlp": ExportedMLP, "gru": ExportedGRU}.get(kind)
    if cls is None or params.dtype != np.float32 or layout.dtype != np.int64:
        msg = f"{path} holds an unknown or damaged exported model (kind={kind!r})"
        raise ModelError(msg)
    return cls(params=params, layout=layout)
