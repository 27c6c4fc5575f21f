"""SVDBank: Eckart-Young optimality, exact full rank, break-even keeps dense."""

import math

import pytest
import torch
from torch import nn

from shrinkml_env.compression import SVDBank, describe_layers


@pytest.fixture
def linear_bank():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 30))
    return model, SVDBank.compute(model, describe_layers(model, ["0"]))


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_truncation_is_the_best_rank_r_approximation(linear_bank, rank):
    model, bank = linear_bank
    weight = model[0].weight.detach()
    approx = bank.reconstruct("0.weight", rank)
    error = torch.linalg.matrix_norm(weight - approx).item()
    sigma = torch.linalg.svdvals(weight.double())
    assert error == pytest.approx(math.sqrt(float(sigma[rank:].square().sum())), rel=1e-4)
    assert error == pytest.approx(bank.truncation_error("0.weight", rank), rel=1e-4)
    assert torch.linalg.matrix_rank(approx).item() == rank
    generator = torch.Generator().manual_seed(rank)
    for _ in range(5):  # projections onto random rank-r subspaces are worse
        basis, _ = torch.linalg.qr(torch.randn(30, rank, generator=generator))
        rival = basis @ (basis.T @ weight)
        assert torch.linalg.matrix_norm(weight - rival).item() > error
    # Keeping the r *smallest* singular directions instead is worse too.
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    tail = (u[:, -rank:] * s[-rank:]) @ vh[-rank:]
    assert torch.linalg.matrix_norm(weight - tail).item() > error


def test_full_rank_and_break_even_return_the_original_bit_for_bit(linear_bank):
    model, bank = linear_bank
    weight = model[0].weight.detach()
    # 30x12: break-even 360/42 = 8.57, so ranks 9..12 keep the matrix dense.
    for rank in (9, 12):
        assert torch.equal(bank.reconstruct("0.weight", rank), weight)
    assert not torch.equal(bank.reconstruct("0.weight", 8), weight)
    with pytest.raises(ValueError, match="at or above the break-even rank 8.6"):
        bank.factors("0.weight", 9)


def test_balanced_factors_multiply_to_the_truncation(linear_bank):
    _, bank = linear_bank
    u, v = bank.factors("0.weight", 4)
    assert u.shape == (30, 4) and v.shape == (4, 12)
    torch.testing.assert_close(u @ v, bank.reconstruct("0.weight", 4), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(u.norm(dim=0), v.norm(dim=1), rtol=1e-4, atol=1e-6)


def test_reconstruct_into_a_preallocated_tensor(linear_bank):
    _, bank = linear_bank
    out = torch.empty(30, 12)
    result = bank.reconstruct("0.weight", 2, out=out)
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, bank.reconstruct("0.weight", 2))


def test_bad_queries_are_rejected(linear_bank):
    _, bank = linear_bank
    with pytest.raises(ValueError, match=r"rank 13 for matrix '0\.weight' outside \[1, 12\]"):
        bank.reconstruct("0.weight", 13)
    with pytest.raises(ValueError, match="not in the SVD bank"):
        bank.reconstruct("1.weight", 1)
    model = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="dtype must be"):
        SVDBank.compute(model, describe_layers(model, ["0"]), dtype=torch.float16)


def test_float64_spectrum_matches_float32(linear_bank):
    model, bank = linear_bank
    bank64 = SVDBank.compute(model, describe_layers(model, ["0"]), dtype=torch.float64)
    torch.testing.assert_close(bank64.singular_values("0.weight"), bank.singular_values("0.weight"))
