"""Factorised modules against stock modules holding the same (truncated) weights."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from shrinkml_env.compression import FactorisedLinear, FactorisedLSTM, FactorisedLSTMCell


def _factorise(module: nn.Module, ranks: dict[str, int]) -> dict:
    """Random-free factors: truncated SVD of each named weight, written back into ``module``."""
    factors = {}
    with torch.no_grad():
        for name, rank in ranks.items():
            weight = getattr(module, name)
            u, s, vh = torch.linalg.svd(weight, full_matrices=False)
            factors[name] = ((u[:, :rank] * s[:rank]).contiguous(), vh[:rank].contiguous())
            weight.copy_(factors[name][0] @ factors[name][1])
    return factors


CASES = [  # (num_layers, bidirectional, batch_first, ranks)
    (1, True, True, {"weight_ih_l0": 2, "weight_hh_l0": 3, "weight_ih_l0_reverse": 1,
                     "weight_hh_l0_reverse": 2}),
    (2, False, False, {"weight_hh_l0": 2, "weight_ih_l1": 3}),
    (2, True, True, {"weight_hh_l1": 2, "weight_hh_l0_reverse": 3}),  # mixed dense/factorised hh
    (1, True, False, {}),
]


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, ranks", CASES)
def test_lstm_matches_stock_on_packed_padded_and_full_batches(num_layers, bidirectional,
                                                              batch_first, ranks):
    torch.manual_seed(0)
    stock = nn.LSTM(5, 6, num_layers=num_layers, bidirectional=bidirectional,
                    batch_first=batch_first)
    factorised = FactorisedLSTM.from_dense(stock, _factorise(stock, ranks))
    x = torch.randn(3, 7, 5) if batch_first else torch.randn(7, 3, 5)
    lengths = torch.tensor([4, 7, 2])
    directions = 2 if bidirectional else 1
    hx = (torch.randn(num_layers * directions, 3, 6), torch.randn(num_layers * directions, 3, 6))
    with torch.no_grad():
        for args in ((x,), (x, hx)):
            expected, (h, c) = stock(*args)
            got, (h2, c2) = factorised(*args)
            torch.testing.assert_close(got, expected)
            torch.testing.assert_close((h2, c2), (h, c))
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        expected, (h, c) = stock(packed, hx)
        got, (h2, c2) = factorised(packed, hx)
        assert torch.equal(got.batch_sizes, expected.batch_sizes)
        assert torch.equal(got.unsorted_indices, expected.unsorted_indices)
        torch.testing.assert_close(got.data, expected.data)
        torch.testing.assert_close((h2, c2), (h, c))
        padded, _ = pad_packed_sequence(expected, batch_first=batch_first, total_length=7)
        got, (h3, _) = factorised(x, hx, lengths=lengths)
        torch.testing.assert_close(got, padded)  # zeros at padded steps
        torch.testing.assert_close(h3, h)


def test_lstm_unbatched_input_and_parameter_count():
    torch.manual_seed(1)
    stock = nn.LSTM(4, 8, bidirectional=True)
    ranks = {"weight_ih_l0": 2, "weight_hh_l0_reverse": 3}
    factorised = FactorisedLSTM.from_dense(stock, _factorise(stock, ranks))
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(factorised(x)[0], stock(x)[0])
    dense = sum(p.numel() for p in stock.parameters())
    saved = (32 * 4 - 2 * 36) + (32 * 8 - 3 * 40)
    assert sum(p.numel() for p in factorised.parameters()) == dense - saved
    assert "weight_ih_l0_u" in dict(factorised.named_parameters())
    assert "weight_ih_l0" not in dict(factorised.named_parameters())


def test_lstm_cache_follows_weight_updates_and_gradients_reach_factors():
    torch.manual_seed(2)
    stock = nn.LSTM(3, 4, bidirectional=True, batch_first=True)
    factorised = FactorisedLSTM.from_dense(stock, _factorise(stock, {"weight_hh_l0": 2}))
    x = torch.randn(2, 5, 3)
    with torch.inference_mode():
        before = factorised(x)[0]
    with torch.no_grad():
        factorised.weight_hh_l0_u.mul_(2.0)
        stock.weight_hh_l0.mul_(2.0)
    with torch.inference_mode():
        after = factorised(x)[0]
        torch.testing.assert_close(after, stock(x)[0])
    assert not torch.allclose(before, after)
    factorised(x)[0].sum().backward()
    assert factorised.weight_hh_l0_u.grad is not None and factorised.weight_hh_l0_v.grad.abs().sum() > 0


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, ranks", CASES)
def test_training_through_the_dense_product_matches_the_factorised_loop(num_layers, bidirectional,
                                                                         batch_first, ranks):
    # the GPU training route (stock fused kernel on U @ V), forced on here: same outputs, states
    # and factor gradients as the per-step loop, on padded (with lengths), packed and full batches
    torch.manual_seed(3)
    stock = nn.LSTM(5, 6, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    factors = _factorise(stock, ranks)
    loop = FactorisedLSTM.from_dense(stock, factors).train()
    fused = FactorisedLSTM.from_dense(stock, factors).train()
    fused.train_through_dense = True
    x = torch.randn(3, 7, 5) if batch_first else torch.randn(7, 3, 5)
    lengths = torch.tensor([4, 7, 2])
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    for args, kwargs in (((x,), {"lengths": lengths}), ((packed,), {}), ((x,), {})):
        results = []
        for module in (loop, fused):
            module.zero_grad()
            out, (h, c) = module(*args, **kwargs)
            data = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
            (data.square().sum() + h.sum() + c.sum()).backward()
            results.append((data, h, c, {n: p.grad.clone() for n, p in module.named_parameters()}))
        torch.testing.assert_close(results[1][:3], results[0][:3])
        torch.testing.assert_close(results[1][3], results[0][3])
    assert any(name.endswith("_u") for name in results[1][3]) or not ranks
    fused.eval()  # inference keeps the factorised loop, whatever the setting
    assert not fused._through_dense(x)


def test_cell_and_linear_match_stock():
    torch.manual_seed(3)
    cell = nn.LSTMCell(5, 6)
    factorised = FactorisedLSTMCell.from_dense(cell, _factorise(cell, {"weight_hh": 2}))
    x, h, c = torch.randn(3, 5), torch.randn(3, 6), torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(factorised(x, (h, c)), cell(x, (h, c)))
        torch.testing.assert_close(factorised(x), cell(x))
        torch.testing.assert_close(factorised(x[0], (h[0], c[0])), cell(x[0], (h[0], c[0])))
    linear = nn.Linear(7, 9)
    factorised = FactorisedLinear.from_dense(linear, _factorise(linear, {"weight": 3}))
    x = torch.randn(2, 4, 7)
    with torch.no_grad():
        torch.testing.assert_close(factorised(x), linear(x))
    assert factorised.weight_u.shape == (9, 3) and factorised.weight_v.shape == (3, 7)


def test_bad_constructions_and_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"rank 5 for matrix 'weight_hh_l0' \(16x4\) outside \[1, 4\]"):
        FactorisedLSTM(3, 4, ranks={"weight_hh_l0": 5})
    with pytest.raises(ValueError, match=r"ranks name matrices \['weight_hh_l3'\] that this LSTM does not have"):
        FactorisedLSTM(3, 4, ranks={"weight_hh_l3": 1})
    lstm = FactorisedLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\], got \[6, 2\]"):
        lstm(torch.randn(2, 5, 3), lengths=torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="2-D or 3-D input"):
        lstm(torch.randn(5, 3, 2, 1))
