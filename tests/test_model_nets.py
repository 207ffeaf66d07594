"""The networks of ntlab.models.nets: shapes, causality, layer layout, configs and their checks."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from ntlab.exceptions import ConfigError, DataError
from ntlab.models.nets import (
    MLP,
    TCN,
    GRUConfig,
    GRUNet,
    LSTMConfig,
    LSTMNet,
    MLPConfig,
    TCNConfig,
    TransformerConfig,
    TransformerNet,
    build,
    config_from_dict,
    config_to_dict,
)

BATCH, LOOKBACK, FEATURES = 3, 12, 4

SEQUENCE_CONFIGS = [
    GRUConfig(inputs=FEATURES, hidden=8, layers=2, outputs=3, dropout=0.1),
    LSTMConfig(inputs=FEATURES, hidden=8, outputs=3),
    TCNConfig(inputs=FEATURES, channels=(6, 6, 5), kernel_size=2, outputs=3),
    TCNConfig(inputs=FEATURES, channels=(FEATURES,), kernel_size=1, outputs=3),
    TransformerConfig(inputs=FEATURES, d_model=8, heads=2, layers=1, ff=16, outputs=3),
    TransformerConfig(inputs=FEATURES, d_model=5, heads=1, layers=2, ff=8, outputs=3, positional="learned", max_len=16),
]
ALL_CONFIGS = [MLPConfig(inputs=LOOKBACK * FEATURES, hidden=(8, 4), outputs=3, dropout=0.2), *SEQUENCE_CONFIGS]


def _windows(seed: int = 0, lookback: int = LOOKBACK) -> torch.Tensor:
    return torch.randn(BATCH, lookback, FEATURES, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: type(c).__name__)
def test_output_shape_of_windows(config: object) -> None:
    model = build(config)
    assert model.config is config
    out = model(_windows())
    assert out.shape == (BATCH, 3)
    assert out.dtype == torch.float32


def test_mlp_takes_flat_rows_and_flattens_windows_row_major() -> None:
    model = build(MLPConfig(inputs=LOOKBACK * FEATURES, hidden=(8,))).eval()
    x = _windows()
    torch.testing.assert_close(model(x), model(x.reshape(BATCH, -1)), rtol=0, atol=0)
    assert model(x[:0]).shape == (0, 1)


def test_mlp_is_a_sequential_of_linear_activation_dropout() -> None:
    model = build(MLPConfig(inputs=6, hidden=(5, 4), outputs=2, activation="gelu", dropout=0.3))
    assert isinstance(model, MLP)
    assert [type(layer) for layer in model.net] == [
        nn.Linear,
        nn.GELU,
        nn.Dropout,
        nn.Linear,
        nn.GELU,
        nn.Dropout,
        nn.Linear,
    ]
    assert [(layer.in_features, layer.out_features) for layer in model.net if isinstance(layer, nn.Linear)] == [
        (6, 5),
        (5, 4),
        (4, 2),
    ]
    plain = build(MLPConfig(inputs=6, hidden=(5,), activation="tanh"))
    assert [type(layer) for layer in plain.net] == [nn.Linear, nn.Tanh, nn.Linear]
    linear = build(MLPConfig(inputs=6, hidden=()))
    assert [type(layer) for layer in linear.net] == [nn.Linear]


def test_gru_layout_for_export() -> None:
    model = build(GRUConfig(inputs=FEATURES, hidden=7))
    assert isinstance(model, GRUNet)
    assert isinstance(model.rnn, nn.GRU) and model.rnn.batch_first and model.rnn.hidden_size == 7
    assert isinstance(model.head, nn.Linear)
    x = _windows()
    torch.testing.assert_close(model(x), model.head(model.rnn(x)[0][:, -1]))
    assert isinstance(build(LSTMConfig(inputs=FEATURES)), LSTMNet)


def test_recurrent_dropout_only_between_layers() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about dropout with one layer
        one = build(GRUConfig(inputs=2, dropout=0.5))
        two = build(LSTMConfig(inputs=2, layers=2, dropout=0.5))
    assert one.rnn.dropout == 0.0
    assert two.rnn.dropout == 0.5


def test_tcn_residual_projection_only_when_widths_differ() -> None:
    model = build(TCNConfig(inputs=3, channels=(5, 5), kernel_size=3))
    assert isinstance(model, TCN)
    first, second = model.blocks
    assert isinstance(first.skip, nn.Conv1d)
    assert isinstance(second.skip, nn.Identity)
    assert [block.body[0].dilation[0] for block in model.blocks] == [1, 2]


def test_transformer_positional_table() -> None:
    fixed = build(TransformerConfig(inputs=2, d_model=8, heads=2))
    learned = build(TransformerConfig(inputs=2, d_model=8, heads=2, positional="learned"))
    assert isinstance(fixed, TransformerNet)
    assert "positional" not in fixed.state_dict()
    assert fixed.positional.shape == (512, 8)
    torch.testing.assert_close(fixed.positional[0], torch.tensor([0.0, 1.0] * 4))
    assert isinstance(learned.positional, nn.Parameter)
    assert "positional" in learned.state_dict()


@pytest.mark.parametrize("config", SEQUENCE_CONFIGS, ids=lambda c: type(c).__name__)
def test_sequence_nets_are_causal(config: object) -> None:
    model = build(config).eval()
    x = _windows()
    changed = x.clone()
    changed[:, -1] += 100.0
    with torch.no_grad():
        before, after = model.encode(x), model.encode(changed)
        # changing the last step changes nothing before it...
        torch.testing.assert_close(after[:, :-1], before[:, :-1], rtol=0, atol=1e-6)
        # ...but does change the last step itself
        assert not torch.allclose(after[:, -1], before[:, -1])
        # and a window cut at step t gives the states of steps < t
        for t in (1, 5, LOOKBACK - 1):
            torch.testing.assert_close(model.encode(x[:, :t]), before[:, :t], rtol=0, atol=1e-5)
            torch.testing.assert_close(model(x[:, :t]), model.head(before[:, t - 1]), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        TCNConfig(inputs=FEATURES, channels=(4, 4, 4), kernel_size=2),
        TransformerConfig(inputs=FEATURES, d_model=8, heads=2),
    ],
    ids=["TCN", "Transformer"],
)
def test_last_step_sees_the_first(config: object) -> None:
    """The receptive field reaches back: the padding is on the left, not a cut of the history."""
    model = build(config).eval()
    x = _windows(lookback=8)
    changed = x.clone()
    changed[:, 0] += 100.0
    with torch.no_grad():
        assert not torch.allclose(model(changed), model(x))


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: type(c).__name__)
def test_config_round_trip(config: object) -> None:
    data = config_to_dict(config)
    assert data["kind"] == type(config).kind
    assert next(iter(data)) == "kind"
    again = config_from_dict(json.loads(json.dumps(data)))  # lists from JSON become tuples again
    assert again == config
    assert type(again) is type(config)
    assert type(build(data)) is type(build(config))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MLPConfig(inputs=0), r"MLPConfig\.inputs must be an int >= 1, got 0"),
        (lambda: MLPConfig(inputs=True), r"MLPConfig\.inputs must be an int >= 1, got True"),
        (lambda: MLPConfig(inputs=4, outputs=2.0), r"MLPConfig\.outputs must be an int >= 1"),
        (lambda: MLPConfig(inputs=4, hidden=(8, 0)), r"MLPConfig\.hidden must be a tuple of ints >= 1, got \(8, 0\)"),
        (lambda: MLPConfig(inputs=4, hidden=8), r"MLPConfig\.hidden must be a tuple of ints >= 1, got 8"),
        (lambda: MLPConfig(inputs=4, activation="sigmoid"), r"activation must be one of \['relu', 'tanh', 'gelu'\]"),
        (lambda: MLPConfig(inputs=4, dropout=1.0), r"MLPConfig\.dropout must be a number in \[0, 1\), got 1\.0"),
        (lambda: MLPConfig(inputs=4, dropout=-0.1), r"dropout must be a number in \[0, 1\), got -0\.1"),
        (lambda: MLPConfig(inputs=4, dropout="0.1"), r"dropout must be a number in \[0, 1\), got '0\.1'"),
        (lambda: GRUConfig(inputs=4, hidden=0), r"GRUConfig\.hidden must be an int >= 1, got 0"),
        (lambda: LSTMConfig(inputs=4, layers=0), r"LSTMConfig\.layers must be an int >= 1, got 0"),
        (lambda: GRUConfig(inputs=4, dropout=True), r"GRUConfig\.dropout must be a number"),
        (lambda: TCNConfig(inputs=4, channels=()), r"TCNConfig\.channels must be a non-empty tuple of ints >= 1"),
        (lambda: TCNConfig(inputs=4, channels=(4, True)), r"TCNConfig\.channels must be a non-empty tuple"),
        (lambda: TCNConfig(inputs=4, kernel_size=0), r"TCNConfig\.kernel_size must be an int >= 1, got 0"),
        (lambda: TransformerConfig(inputs=4, d_model=30, heads=4), r"d_model \(30\) must be divisible by heads \(4\)"),
        (lambda: TransformerConfig(inputs=4, heads=0), r"TransformerConfig\.heads must be an int >= 1, got 0"),
        (lambda: TransformerConfig(inputs=4, max_len=0), r"TransformerConfig\.max_len must be an int >= 1"),
        (
            lambda: TransformerConfig(inputs=4, positional="rope"),
            r"positional must be one of \['sinusoidal', 'learned'\]",
        ),
        (lambda: TransformerConfig(inputs=4, dropout=1.5), r"TransformerConfig\.dropout must be a number in \[0, 1\)"),
    ],
)
def test_bad_config_values(make: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"inputs": 4}, r"config kind None is not one of \['gru', 'lstm', 'mlp', 'tcn', 'transformer'\]"),
        ({"kind": "resnet", "inputs": 4}, r"config kind 'resnet' is not one of"),
        ({"kind": "gru", "inputs": 4, "width": 3}, r"GRUConfig has no field\(s\) \['width'\]"),
        ({"kind": "tcn", "channels": [4]}, r"TCNConfig needs 'inputs'"),
        ({"kind": "mlp", "inputs": 4, "hidden": [4, -1]}, r"MLPConfig\.hidden must be a tuple of ints >= 1"),
    ],
)
def test_bad_config_dicts(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_build_and_to_dict_need_a_config() -> None:
    with pytest.raises(ConfigError, match=r"build needs one of \['MLPConfig', .*got str"):
        build("mlp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"config_to_dict needs one of .*got dict"):
        config_to_dict({"kind": "mlp"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "x", "match"),
    [
        (
            MLPConfig(inputs=8),
            torch.zeros(2, 3, 2),
            r"MLP takes \(batch, 8\) or windows with lookback \* features = 8, got \(2, 3, 2\)",
        ),
        (MLPConfig(inputs=8), torch.zeros(8), r"MLP takes \(batch, 8\).*got \(8,\)"),
        (GRUConfig(inputs=4), torch.zeros(2, 4), r"GRUNet takes windows of shape \(batch, lookback, 4\), got \(2, 4\)"),
        (LSTMConfig(inputs=4), torch.zeros(2, 5, 3), r"LSTMNet takes windows of shape \(batch, lookback, 4\)"),
        (
            TCNConfig(inputs=4),
            torch.zeros(2, 5, 3),
            r"TCN takes windows of shape \(batch, lookback, 4\), got \(2, 5, 3\)",
        ),
        (TransformerConfig(inputs=4), torch.zeros(2, 5), r"TransformerNet takes windows of shape"),
        (TransformerConfig(inputs=4, max_len=6), torch.zeros(2, 7, 4), r"at most max_len=6 steps, got 7"),
    ],
)
def test_bad_input_shapes(config: object, x: torch.Tensor, match: str) -> None:
    with pytest.raises(DataError, match=match):
        build(config)(x)
