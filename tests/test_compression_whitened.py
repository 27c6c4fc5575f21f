"""Activation-aware (whitened) factorisation: input moments, the bank, the env and searches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.config import SearchConfig
from agents.search import run_search
from agents.targets import load_toy_model, toy_search_target
from shrinkml_env.compression import SVDBank, all_matrices, describe_layers, export_factorised
from shrinkml_env.compression.calibration import input_moments
from shrinkml_env.env import ShrinkMLEnv
from shrinkml_env.target import CompressionTarget, toy_target


def _output_error(weight, approx, moment):
    diff = (weight - approx).double()
    return float(torch.trace(diff @ moment @ diff.T))


def test_moments_are_the_second_moments_of_each_matrix_input(target):
    model = target.model
    layers = describe_layers(model, target.layers)
    inputs = torch.randn(8, 16, model.encoder[0].input_size, generator=torch.Generator().manual_seed(1))
    moments = input_moments(model, layers, lambda m: m(inputs))
    x = inputs.reshape(-1, inputs.shape[-1]).double()
    assert torch.allclose(moments["encoder.0.weight_ih_l0"], x.T @ x / len(x))
    assert torch.allclose(moments["encoder.0.weight_ih_l0_reverse"], x.T @ x / len(x))
    with torch.no_grad():
        out, _ = model.encoder[0](inputs)
    hidden = model.encoder[0].hidden_size
    h = out[..., hidden:].reshape(-1, hidden).double()
    assert torch.allclose(moments["encoder.0.weight_hh_l0_reverse"], h.T @ h / len(h), atol=1e-6)
    assert {m.key for m in all_matrices(layers)} == set(moments)


def test_whitened_truncation_has_lower_output_error_than_plain_at_every_rank(target):
    layers = describe_layers(target.model, target.layers)
    moments = input_moments(target.model, layers, target.calibrate)
    plain = SVDBank.compute(target.model, layers)
    whitened = SVDBank.compute(target.model, layers, method="whitened", moments=moments)
    assert whitened.method == "whitened" and plain.method == "plain"
    for spec in all_matrices(layers):
        weight = plain.original(spec.key)
        for rank in (1, spec.full_rank // 4, spec.full_rank // 3):
            ours = _output_error(weight, whitened.reconstruct(spec.key, rank), moments[spec.key])
            theirs = _output_error(weight, plain.reconstruct(spec.key, rank), moments[spec.key])
            assert ours <= theirs * (1 + 1e-4) + 1e-9, (spec.key, rank, ours, theirs)
        # Near full rank both reproduce the weight; the factors multiply to the reconstruction.
        left, right = whitened.factors(spec.key, spec.full_rank // 4 or 1)
        assert torch.allclose(left @ right, whitened.reconstruct(spec.key, spec.full_rank // 4 or 1), atol=1e-5)
    full = whitened._get(all_matrices(layers)[0].key)
    assert torch.allclose(full.left @ full.right, full.dense, atol=1e-4)


def test_bad_methods_and_missing_calibration_are_refused(target):
    layers = describe_layers(target.model, target.layers)
    with pytest.raises(ValueError, match="unknown factorisation method 'sparse'; accepted: plain, whitened"):
        SVDBank.compute(target.model, layers, method="sparse")
    with pytest.raises(ValueError, match="needs the input moments"):
        SVDBank.compute(target.model, layers, method="whitened")
    bare = CompressionTarget(model=target.model, layers=target.layers, evaluate=target.evaluate, name="bare")
    with pytest.raises(ValueError, match="'whitened' needs calibration data, and target 'bare' has none"):
        ShrinkMLEnv(target=bare, budget=0.5, factorisation="whitened")
    with pytest.raises(ValueError, match="unknown factorisation 'svd'"):
        ShrinkMLEnv(target=target, budget=0.5, factorisation="svd")
    with pytest.raises(ValueError, match="unknown factorisation 'svd'; accepted: plain, whitened"):
        SearchConfig(target="toy", factorisation="svd")
    stacked = nn.LSTM(4, 4, num_layers=2)
    two_layer = CompressionTarget(
        model=nn.Sequential(stacked), layers=["0"], evaluate=lambda m: 0.0, calibrate=lambda m: None
    )
    with pytest.raises(ValueError, match="one layer each; '0' has num_layers=2"):
        ShrinkMLEnv(target=two_layer, budget=0.9, factorisation="whitened")


def test_whitened_env_scores_other_models_under_its_own_cache_keys():
    target = toy_target()
    plain = ShrinkMLEnv(target=target, budget=0.4)
    whitened = ShrinkMLEnv(target=target, budget=0.4, factorisation="whitened")
    assert plain.evaluation_fingerprint != whitened.evaluation_fingerprint
    errors = {}
    for name, env in (("plain", plain), ("whitened", whitened)):
        env.reset(seed=0)
        for _ in range(env.steps):
            _, _, done, _, info = env.step(1)
        errors[name] = info["wer"]
    assert errors["plain"] >= 0 and errors["whitened"] >= 0
    # Same ranks, different truncations: the compressed models differ.
    assert not torch.equal(
        plain.plan.search_model.model.decoder.weight_ih, whitened.plan.search_model.model.decoder.weight_ih
    )


def test_a_whitened_search_exports_the_model_it_scored(tmp_path):
    kit = toy_search_target()
    config = SearchConfig(agent="random", target="toy", budget=0.4, evaluations=6, factorisation="whitened")
    result = run_search(config, tmp_path / "run", kit)
    assert '"factorisation": "whitened"' in (tmp_path / "run" / "config.json").read_text()
    exported = load_toy_model(tmp_path / "run" / "model.pt")
    # The exported factors are the whitened ones the search scored (one sample of 256 may
    # flip on float rounding between the product and the two factors).
    assert kit.target.evaluate(exported) == pytest.approx(result.best.search_wer, abs=1 / 256 + 1e-9)
    layers = describe_layers(kit.target.model, kit.target.layers)
    ranks = dict(zip((m.key for m in all_matrices(layers)), result.best.ranks))
    plain = export_factorised(kit.target.model, layers, ranks)
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), exported.state_dict().values()))
    with pytest.raises(ValueError, match="factorisation"):
        run_search(SearchConfig(agent="random", target="toy", budget=0.4, evaluations=6, factorisation="plain"),
                   tmp_path / "run")
    assert SearchConfig().factorisation == "whitened"  # the measured best is the search default
    # A run directory from before the setting existed was a plain search and resumes as one.
    legacy = {k: v for k, v in config.to_dict().items() if k not in ("factorisation", "score")}
    assert SearchConfig.from_dict(legacy).factorisation == "plain"
