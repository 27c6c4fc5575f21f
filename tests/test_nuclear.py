"""Nuclear-norm decay (asr.nuclear): the proximal step shrinks singular values and nothing else."""

import pytest
import torch

from asr.model import PRESETS, ASRModel
from asr.nuclear import lstm_matrices, nuclear_norm, soft_threshold


def _model():
    torch.manual_seed(0)
    return ASRModel(PRESETS["tiny"])


def test_the_matrices_are_the_lstm_layers_input_and_recurrent_weights():
    model = _model()
    names = [name for name, _ in lstm_matrices(model)]
    assert names[:2] == ["encoder.0.weight_ih_l0", "encoder.0.weight_hh_l0"]  # bidirectional: 4 per layer
    assert all(n.startswith(("encoder.", "decoder.")) for n in names)
    per_layer = {path: sum(n.startswith(path + ".") for n in names) for path in model.compressible_layers()}
    assert all(count in (2, 4) for count in per_layer.values()), per_layer


def test_soft_threshold_lowers_every_singular_value_by_tau_and_keeps_the_rest_of_the_model():
    model = _model()
    before = {name: p.detach().clone() for name, p in lstm_matrices(model)}
    others = {n: p.detach().clone() for n, p in model.named_parameters() if n not in before}
    tau = 0.05
    soft_threshold(model, tau)
    for name, p in lstm_matrices(model):
        u, s, vh = torch.linalg.svd(before[name], full_matrices=False)
        expected = (s - tau).clamp(min=0.0)
        torch.testing.assert_close(torch.linalg.svdvals(p.detach()), expected, atol=1e-5, rtol=1e-4)
        # the singular vectors stay: projecting on the old ones gives the shrunk diagonal
        torch.testing.assert_close(u.T @ p.detach() @ vh.T, torch.diag(expected), atol=1e-5, rtol=1e-4)
    for n, p in model.named_parameters():
        if n in others:
            assert torch.equal(p.detach(), others[n]), n
    assert nuclear_norm(model) == pytest.approx(
        sum(float((torch.linalg.svdvals(b) - tau).clamp(min=0).sum()) for b in before.values()), rel=1e-5)


def test_a_large_step_zeroes_the_matrices_and_a_bad_one_is_refused():
    model = _model()
    soft_threshold(model, 1e6)
    assert all(torch.count_nonzero(p) == 0 for _, p in lstm_matrices(model))
    assert nuclear_norm(model) == 0.0
    with pytest.raises(ValueError, match="tau must be >= 0; got -1"):
        soft_threshold(model, -1.0)
