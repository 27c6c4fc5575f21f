"""describe_layers: matrix discovery, keys and caller errors."""

import pytest
from torch import nn

from shrinkml_env.compression import all_matrices, describe_layers


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleList([nn.LSTM(6, 5, bidirectional=True), nn.LSTM(10, 5, num_layers=2)])
        self.cell = nn.LSTMCell(5, 7)
        self.head = nn.Linear(7, 3)
        self.norm = nn.LayerNorm(3)


def test_bidirectional_lstm_has_four_matrices_in_one_layer():
    (layer,) = describe_layers(_Model(), ["encoder.0"])
    assert layer.key == "encoder.0"
    assert [m.key for m in layer.matrices] == [
        "encoder.0.weight_ih_l0", "encoder.0.weight_hh_l0",
        "encoder.0.weight_ih_l0_reverse", "encoder.0.weight_hh_l0_reverse",
    ]
    assert [(m.kind, m.direction, m.shape) for m in layer.matrices] == [
        ("ih", 0, (20, 6)), ("hh", 0, (20, 5)), ("ih", 1, (20, 6)), ("hh", 1, (20, 5)),
    ]


def test_each_index_of_a_multilayer_lstm_is_its_own_layer():
    layers = describe_layers(_Model(), ["encoder.1"])
    assert [layer.key for layer in layers] == ["encoder.1[0]", "encoder.1[1]"]
    assert [m.param_name for m in layers[1].matrices] == ["weight_ih_l1", "weight_hh_l1"]
    assert layers[1].matrices[0].shape == (20, 5) and layers[1].layer_index == 1


def test_order_follows_the_paths_and_cells_and_linears_are_described():
    layers = describe_layers(_Model(), ["head", "cell", "encoder.0"])
    assert [layer.key for layer in layers] == ["head", "cell", "encoder.0"]
    assert [m.param_name for m in layers[1].matrices] == ["weight_ih", "weight_hh"]
    assert layers[0].matrices[0].kind == "linear" and layers[0].matrices[0].full_rank == 3
    assert len(all_matrices(layers)) == 1 + 2 + 4
    assert layers[1].dense_parameter_count == 28 * 5 + 28 * 7


def test_unknown_path_is_rejected_with_the_known_modules():
    with pytest.raises(ValueError, match=r"unknown layer path 'encoder\.7'.*'encoder\.0'"):
        describe_layers(_Model(), ["encoder.7"])


def test_module_of_another_type_is_rejected():
    with pytest.raises(TypeError, match=r"'norm' is LayerNorm; compressible modules are nn\.LSTM"):
        describe_layers(_Model(), ["norm"])


def test_repeated_and_empty_paths_are_rejected():
    with pytest.raises(ValueError, match="repeated"):
        describe_layers(_Model(), ["cell", "cell"])
    with pytest.raises(ValueError, match="empty"):
        describe_layers(_Model(), [])
    with pytest.raises(TypeError, match="sequence of paths"):
        describe_layers(_Model(), "cell")


def test_projected_lstm_is_rejected():
    model = nn.Sequential(nn.LSTM(4, 6, proj_size=2))
    with pytest.raises(ValueError, match="proj_size=2"):
        describe_layers(model, ["0"])
