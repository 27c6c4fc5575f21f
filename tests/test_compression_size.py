"""Parameter counting, break-even rank, size ratio and rank assignments."""

import pytest
from torch import nn

from shrinkml_env.compression import (
    all_matrices,
    break_even_rank,
    compressible_parameter_count,
    describe_layers,
    keeps_dense,
    matrix_parameter_count,
    ranks_from_layer_fractions,
    size_ratio,
    uniform_ranks_at_size,
    validate_ranks,
)


@pytest.mark.parametrize("rows, cols", [(1024, 256), (1024, 512), (20, 5), (7, 7)])
def test_break_even_separates_growth_from_saving(rows, cols):
    edge = break_even_rank(rows, cols)
    assert edge == pytest.approx(rows * cols / (rows + cols))
    for rank in range(1, min(rows, cols) + 1):
        dense = keeps_dense(rows, cols, rank)
        assert dense == (rank >= edge)
        count = matrix_parameter_count(rows, cols, rank)
        assert count <= rows * cols  # compression never grows a matrix
        assert count == (rows * cols if dense else rank * (rows + cols))


def test_matrix_parameter_count_examples():
    assert matrix_parameter_count(1024, 256) == 1024 * 256
    assert matrix_parameter_count(1024, 256, 64) == 64 * 1280
    assert matrix_parameter_count(1024, 256, 205) == 1024 * 256  # at or above 204.8: dense
    assert matrix_parameter_count(1024, 256, 204) == 204 * 1280
    assert matrix_parameter_count(1024, 256, 256) == 1024 * 256
    with pytest.raises(ValueError, match=r"rank 0 for a 4x3 matrix outside \[1, 3\]"):
        matrix_parameter_count(4, 3, 0)


def test_size_ratio_counts_only_compressible_matrices():
    model = nn.Sequential(nn.LSTM(8, 4), nn.Linear(4, 16))
    layers = describe_layers(model, ["0", "1"])
    matrices = [m for layer in layers for m in layer.matrices]
    assert size_ratio(matrices, {}) == 1.0
    ranks = {"0.weight_ih_l0": 2, "1.weight": 1}
    before = 16 * 8 + 16 * 4 + 16 * 4
    after = 2 * (16 + 8) + 16 * 4 + 1 * (16 + 4)
    assert compressible_parameter_count(matrices) == before
    assert compressible_parameter_count(matrices, ranks) == after
    assert size_ratio(matrices, ranks) == pytest.approx(after / before)


def test_fractions_give_the_same_fraction_of_each_matrix_full_rank():
    model = nn.Sequential(nn.LSTM(8, 4, num_layers=2), nn.Linear(4, 16))
    layers = describe_layers(model, ["0", "1"])
    ranks = ranks_from_layer_fractions(layers, [0.5, 1.0, 0.25])
    assert ranks == {"0.weight_ih_l0": 4, "0.weight_hh_l0": 2, "0.weight_ih_l1": 4,
                     "0.weight_hh_l1": 4, "1.weight": 1}
    assert ranks_from_layer_fractions(layers, {"1": 0.01}) == {"1.weight": 1}


def test_bad_rank_assignments_are_rejected():
    layers = describe_layers(nn.Sequential(nn.LSTM(8, 4)), ["0"])
    with pytest.raises(ValueError, match=r"rank 5 for matrix '0\.weight_hh_l0' outside \[1, 4\]"):
        validate_ranks(layers, {"0.weight_hh_l0": 5})
    with pytest.raises(ValueError, match=r"rank 0 for matrix '0\.weight_ih_l0' outside \[1, 8\]"):
        validate_ranks(layers, {"0.weight_ih_l0": 0})
    with pytest.raises(ValueError, match="unknown matrix keys"):
        validate_ranks(layers, {"0.weight_hh_l9": 1})
    with pytest.raises(TypeError, match="must be an int, got 0.5"):
        validate_ranks(layers, {"0.weight_hh_l0": 0.5})
    with pytest.raises(ValueError, match=r"rank fraction 1.5 .* outside \(0, 1\]"):
        ranks_from_layer_fractions(layers, [1.5])
    with pytest.raises(ValueError, match="got 2 rank fractions for 1 layers"):
        ranks_from_layer_fractions(layers, [0.5, 0.5])
    assert validate_ranks(layers, {}) == {"0.weight_ih_l0": 8, "0.weight_hh_l0": 4}


def test_uniform_ranks_at_size_brackets_the_requested_size():
    layers = describe_layers(nn.LSTM(48, 64, num_layers=2, bidirectional=True), [""])
    matrices = all_matrices(layers)
    for size in (0.1, 0.3, 0.55):
        below, below_ratio = uniform_ranks_at_size(matrices, size)
        above, above_ratio = uniform_ranks_at_size(matrices, size, at_least=True)
        assert below_ratio <= size <= above_ratio
        assert below_ratio == pytest.approx(size_ratio(matrices, below))
        assert above_ratio == pytest.approx(size_ratio(matrices, above))
        # One common fraction: every matrix keeps the same share of its full rank (up to
        # rounding), and the two answers are adjacent steps, not far apart.
        shares = [above[m.key] / m.full_rank for m in matrices]
        assert max(shares) - min(shares) <= max(1 / m.full_rank for m in matrices)
        assert all(0 <= above[k] - below[k] <= 1 for k in below)
    with pytest.raises(ValueError, match=r"size ratio 1.5 outside \(0, 1\]"):
        uniform_ranks_at_size(matrices, 1.5)
    with pytest.raises(ValueError, match="no uniform rank fraction gives a size ratio <= 0.001"):
        uniform_ranks_at_size(matrices, 0.001)
