"""Sequential (error-propagation-aware) fitting: the fit, the env and search that use it."""

from __future__ import annotations

import pytest
import torch

from agents.config import SearchConfig
from agents.search import run_search
from agents.targets import load_toy_model, toy_search_target
from shrinkml_env.compression import (
    SearchModel,
    SVDBank,
    all_matrices,
    describe_layers,
    export_factorised,
)
from shrinkml_env.compression.calibration import input_hooks, input_moments
from shrinkml_env.compression.ranks import uniform_ranks_at_size
from shrinkml_env.compression.sequential import fit_sequential
from shrinkml_env.env import ShrinkMLEnv
from shrinkml_env.target import toy_target


@pytest.fixture(scope="module")
def fitted():
    target = toy_target()
    layers = describe_layers(target.model, target.layers)
    whitened = SVDBank.compute(target.model, layers, method="whitened",
                               moments=input_moments(target.model, layers, target.calibrate))
    ranks, _ = uniform_ranks_at_size(all_matrices(layers), 0.3)
    sequential = fit_sequential(target.model, layers, ranks, target.calibrate, whitened)
    return target, layers, ranks, whitened, sequential


def _rows(model, path, key, run):
    rows = []
    with input_hooks(model, [path], lambda k, x: rows.append(x.reshape(-1, x.shape[-1]).double()) if k == key else None):
        run(model)
    return torch.cat(rows)


def test_the_first_layer_sees_the_dense_inputs_so_its_input_matrix_fit_is_the_whitened_one(fitted):
    _, _, ranks, whitened, sequential = fitted
    key = "encoder.0.weight_ih_l0"
    assert sequential.method == "sequential"
    assert torch.allclose(sequential.reconstruct(key, ranks[key]), whitened.reconstruct(key, ranks[key]), atol=1e-4)


def test_a_later_layer_reproduces_the_dense_outputs_from_compressed_inputs_better_than_whitened(fitted):
    target, layers, ranks, whitened, sequential = fitted
    key, path = "encoder.1.weight_ih_l0", "encoder.1"
    # What encoder.1 sees once encoder.0 is compressed (its inputs do not depend on itself).
    compressed = SearchModel(target.model, sequential)
    compressed.apply(ranks)
    x = _rows(target.model, path, key, target.calibrate)
    x_tilde = _rows(compressed.model, path, key, target.calibrate)
    weight = whitened.original(key).double()
    wanted = x @ weight.T

    def error(bank):
        return float((wanted - x_tilde @ bank.reconstruct(key, ranks[key]).double().T).square().mean())

    assert error(sequential) < 0.99 * error(whitened), (error(sequential), error(whitened))
    # The exported model holds the refitted factors, two per matrix as ever.
    module = export_factorised(target.model, layers, ranks, sequential).encoder[1]
    assert module.config()["ranks"]["weight_ih_l0"] == ranks[key]
    assert not torch.equal(sequential.reconstruct(key, ranks[key]), whitened.reconstruct(key, ranks[key]))


def test_a_calibration_that_feeds_the_two_models_different_data_is_refused(fitted):
    target, layers, ranks, whitened, _ = fitted
    calls = []

    def drifting(model):
        calls.append(1)
        model(torch.randn(4 + len(calls), 16, model.encoder[0].input_size))

    with pytest.raises(ValueError, match="same data in the same order"):
        fit_sequential(target.model, layers, ranks, drifting, whitened)
    calls.clear()

    def shrinking(model):  # the second (compressed) pass feeds one batch fewer
        calls.append(1)
        for _ in range(2 + len(calls) % 2):
            model(torch.randn(4, 16, model.encoder[0].input_size, generator=torch.Generator().manual_seed(0)))

    with pytest.raises(ValueError, match="fewer times in the compressed model"):
        fit_sequential(target.model, layers, ranks, shrinking, whitened)
    with pytest.raises(ValueError, match="fitted per configuration"):
        SVDBank.compute(target.model, layers, method="sequential")


def test_a_sequential_env_scores_as_whitened_and_exports_the_refit():
    target = toy_target()
    whitened = ShrinkMLEnv(target=target, budget=0.4, factorisation="whitened")
    sequential = ShrinkMLEnv(target=target, budget=0.4, factorisation="sequential")
    assert sequential.evaluation_fingerprint == whitened.evaluation_fingerprint
    ranks = sequential.plan.ranks([1] * sequential.steps)
    assert sequential.plan.evaluate(ranks) == whitened.plan.evaluate(ranks)
    assert whitened.plan.export_bank(ranks) is whitened.plan.bank
    refit = sequential.plan.export(ranks).state_dict()
    plain = whitened.plan.export(ranks).state_dict()
    assert refit.keys() == plain.keys()
    assert not all(torch.equal(refit[k], plain[k]) for k in refit)


def test_a_sequential_search_exports_the_refitted_model(tmp_path):
    kit = toy_search_target()
    config = SearchConfig(agent="random", target="toy", budget=0.4, evaluations=6, factorisation="sequential")
    result = run_search(config, tmp_path / "run", kit)
    exported = load_toy_model(tmp_path / "run" / "model.pt")
    env = ShrinkMLEnv(target=kit.target, budget=0.4, factorisation="sequential")
    expected = env.plan.export(result.best.ranks).state_dict()
    assert all(torch.allclose(v, expected[k]) for k, v in exported.state_dict().items())
    assert result.best.test_wer == pytest.approx(kit.test_error(exported))


def test_the_exporter_exports_as_the_plan_does_for_every_method_and_keeps_the_last_export():
    from shrinkml_env.plan import Exporter

    target = toy_target()
    exporter = Exporter(target)
    for method in ("plain", "whitened", "sequential"):
        env = ShrinkMLEnv(target=target, budget=0.4, factorisation=method)
        ranks = env.plan.ranks([1] * env.steps)
        expected = env.plan.export(ranks).state_dict()
        model = exporter.export(ranks, method)
        assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)
        assert exporter.export(ranks, method) is model  # the same configuration again: no refit
        assert exporter.export(dict(exporter.rank_map(ranks)), method) is model
    with pytest.raises(ValueError, match=r"one rank per matrix \(\d+\); got 1"):
        exporter.export([1], "plain")
    with pytest.raises(ValueError, match="unknown factorisation 'svd'"):
        exporter.export(ranks, "svd")
