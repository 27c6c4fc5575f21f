"""Latency tables and latency budgets on the toy target: measuring, caching, staleness, the env."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from agents.budget import best_within_budget
from agents.config import SearchConfig
from shrinkml_env.budget import BudgetCosts
from shrinkml_env.compression import describe_layers
from shrinkml_env.compression.latency import (
    LatencyTable,
    current_key,
    load_or_measure,
    options_key,
    read_table,
)
from shrinkml_env.env import ShrinkMLEnv
from shrinkml_env.plan import CompressionPlan
from shrinkml_env.search_space import make_menu
from shrinkml_env.target import toy_target


def _key(target, batch_size=1):
    return current_key(batch_size=batch_size, model=target.fingerprint, workload=target.inference_fingerprint)


def _fake_table(target, path, slow_module=None):
    """A table in which a module costs 1 ms + 0.05 ms per rank; ``slow_module`` is 3× slower
    factorised than dense at every rank (as factorised LSTMs at hidden 256 are on a CPU)."""
    plan = CompressionPlan(target, make_menu(None), "layer")
    entries = {}
    for module, options in plan.latency_options().items():
        dense = options[-1]
        entries[module] = {}
        for ranks in options:
            ms = 1.0 + 0.05 * sum(ranks.values())
            if module == slow_module and ranks != dense:
                ms = 3.0 * (1.0 + 0.05 * sum(dense.values()))
            entries[module][options_key(ranks)] = ms
    table = LatencyTable(key=_key(target), dense_ms=10.0, rest_ms=4.0, entries=entries, repeats=1)
    table.write(path)
    return table


def test_measured_table_predicts_dense_end_to_end_and_is_reused(tmp_path):
    target = toy_target()
    layers = describe_layers(target.model, target.layers)
    plan = CompressionPlan(target, make_menu(None), "layer")
    key = _key(target)
    path = tmp_path / "table.json"
    table = load_or_measure(target.model, layers, plan.latency_options(), lambda m: target.inference(m, 1),
                            key, bank=plan.bank, path=path, repeats=2)
    # Every menu option of every module was timed, and rest + dense entries = dense end to end.
    for module, options in plan.latency_options().items():
        assert all(table.entry(module, ranks) > 0 for ranks in options)
    dense_ranks = plan.ranks([plan.menu.size - 1] * plan.n_units)
    assert plan.predicted_latency_ms(table, dense_ranks) == pytest.approx(table.dense_ms)
    # A second call with the same conditions reads the file instead of measuring again.
    again = load_or_measure(target.model, layers, plan.latency_options(), _no_workload, key, path=path)
    assert again == table


class _FakeClock:
    """``perf_counter`` for the latency module: each module call lasts what ``pending`` says."""

    def __init__(self):
        self.now, self.pending = 0.0, 0.0

    def perf_counter(self):
        value, self.now, self.pending = self.now, self.now + self.pending, 0.0
        return value


def test_entries_are_each_modules_own_time_in_place_scaled_to_the_dense_calls(monkeypatch):
    """Every call of a module costs (its parameters / 1e6) s on a fake clock, the rest 5 ms per
    pass, and a model with a factorised decoder runs the workload 1.5 times as often (as a
    compressed decoder may decode more steps): entries are the dense model's calls' worth."""
    from shrinkml_env.compression import latency

    clock = _FakeClock()
    monkeypatch.setattr(latency, "time", clock)
    target = toy_target()
    layers = describe_layers(target.model, target.layers)
    plan = CompressionPlan(target, make_menu(None), "layer")

    def workload(model):
        modules = [model.get_submodule(p) for p in target.layers]
        handles = [m.register_forward_pre_hook(lambda m, _: setattr(clock, "pending", _cost(m)), prepend=True)
                   for m in modules]
        try:
            target.inference(model, 1)
            if modules[2] is not target.model.decoder:
                target.inference(model, 2)  # half as many calls again
        finally:
            for h in handles:
                h.remove()
        clock.now += 0.005

    calls = {p: 0 for p in target.layers}
    counters = [target.model.get_submodule(p).register_forward_pre_hook(lambda m, _, p=p: calls.__setitem__(p, calls[p] + 1))
                for p in target.layers]
    target.inference(target.model, 1)
    for h in counters:
        h.remove()
    table = latency.measure_latency(target.model, layers, plan.latency_options(), workload, _key(target),
                                    bank=plan.bank, repeats=2)
    assert table.rest_ms == pytest.approx(5.0)
    expected = {}
    for layer in layers:
        path = layer.module_path
        for ranks in plan.latency_options()[path]:
            module = latency._module_at(target.model, path, layer.matrices, ranks, plan.bank)
            expected[path, options_key(ranks)] = calls[path] * _cost(module) * 1e3
    assert {(p, o): v for p, opts in table.entries.items() for o, v in opts.items()} == pytest.approx(expected)
    dense = sum(calls[p] * _cost(target.model.get_submodule(p)) * 1e3 for p in target.layers)
    assert table.dense_ms == pytest.approx(5.0 + dense)


def _cost(module):
    return sum(p.numel() for p in module.parameters()) / 1e6


def _no_workload(model):
    raise AssertionError("the cached table should have been reused")


def test_stale_table_is_refused_naming_the_field_or_remeasured_with_a_warning(tmp_path, caplog):
    target = toy_target()
    path = tmp_path / "table.json"
    table = _fake_table(target, path)
    data = json.loads(path.read_text())
    data["key"]["torch"] = "1.0.0"
    data["key"]["threads"] = 64
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"torch: '1\.0\.0' != .*threads: 64 != "):
        read_table(path, expect=table.key)
    layers = describe_layers(target.model, target.layers)
    plan = CompressionPlan(target, make_menu(None), "layer")
    with caplog.at_level(logging.WARNING):
        fresh = load_or_measure(target.model, layers, plan.latency_options(), lambda m: target.inference(m, 1),
                                table.key, bank=plan.bank, path=path, repeats=1)
    assert "torch: '1.0.0'" in caplog.text and "measuring the latency table again" in caplog.text
    assert fresh.key == table.key and read_table(path, expect=table.key).key.torch != "1.0.0"


def test_not_a_table_and_missing_entries_are_clear_errors(tmp_path):
    target = toy_target()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a 'shrinkml-latency/2' latency table"):
        read_table(bad)
    table = _fake_table(target, tmp_path / "t.json")
    with pytest.raises(KeyError, match="no entry for 'decoder' at 'weight_hh=1,weight_ih=1'"):
        table.entry("decoder", {"weight_ih": 1, "weight_hh": 1})


def test_latency_budget_clamps_to_the_predicted_latency_and_keeps_slow_layers_dense(tmp_path):
    target = toy_target()
    path = tmp_path / "t.json"
    _fake_table(target, path, slow_module="encoder.1")
    env = ShrinkMLEnv(target=target, budget=0.8, budget_metric="latency", latency_table=str(path))
    assert env.costs.metric == "latency" and env.costs.fixed == 4.0
    # encoder.1 (step 1) is cheapest dense: the clamp keeps it dense whatever the agent asks.
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.reset(seed=0)
        actions = rng.integers(0, env.menu.size, env.steps)
        for a in actions:
            _, reward, done, _, info = env.step(int(a))
        assert info["latency_ratio"] <= 0.8 + 1e-9
        assert info["actions"][1] == env.menu.size - 1
        assert info["latency_ms"] == pytest.approx(env.costs.total(info["actions"]))
        assert reward == pytest.approx(env.score(info["wer"], info["params"], info["latency_ratio"]))
    masks = ShrinkMLEnv(target=target, budget=0.8, budget_metric="latency", latency_table=str(path),
                        constraint="mask")
    masks.reset()
    masks.step(0)
    assert masks.action_masks()[-1] and not masks.action_masks()[:-1].any()


def test_fastest_routes_multiply_back_only_the_modules_the_table_prices_above_dense(tmp_path):
    import torch
    from torch import nn

    from shrinkml_env.compression import FactorisedLSTM, export_factorised, fastest_routes

    target = toy_target()
    table = _fake_table(target, tmp_path / "t.json", slow_module="encoder.1")
    plan = CompressionPlan(target, make_menu(None), "layer")
    layers = describe_layers(target.model, target.layers)
    actions = [1, 1, plan.menu.size - 1, 1]  # the decoder stays dense
    exported = export_factorised(target.model, layers, plan.rank_map(plan.ranks(actions)), plan.bank).eval()
    routed, routes = fastest_routes(exported, table)
    assert routes == {"encoder.0": "factorised", "encoder.1": "dense product", "decoder": "dense", "head": "factorised"}
    assert type(routed.encoder[1]) is nn.LSTM and isinstance(routed.encoder[0], FactorisedLSTM)
    assert isinstance(exported.encoder[1], FactorisedLSTM)  # the input model is not modified
    x = torch.randn(3, 16, target.model.encoder[0].input_size)
    with torch.inference_mode():
        torch.testing.assert_close(routed(x), exported(x), rtol=1e-4, atol=1e-5)


def test_latency_budget_errors_name_the_value():
    target = toy_target()
    with pytest.raises(ValueError, match="unknown budget_metric 'speed'; accepted: size, latency"):
        ShrinkMLEnv(target=target, budget_metric="speed")
    with pytest.raises(ValueError, match="latency_batch must be an integer >= 1.*got 0"):
        ShrinkMLEnv(target=target, budget_metric="latency", latency_batch=0)
    with pytest.raises(ValueError, match="needs granularity='layer'"):
        ShrinkMLEnv(target=target, budget_metric="latency", granularity="matrix")
    no_workload = dataclasses.replace(toy_target(), inference=None)
    with pytest.raises(ValueError, match="needs an inference workload"):
        ShrinkMLEnv(target=no_workload, budget=1.0, budget_metric="latency")
    with pytest.raises(ValueError, match="fraction of the dense model's predicted latency in \\(0, 1\\]; got 1.5"):
        SearchConfig(agent="random", target="toy", budget=1.5, budget_metric="latency")
    with pytest.raises(ValueError, match="latency_batch must be an integer >= 1; got 0"):
        SearchConfig(agent="random", target="toy", budget_metric="latency", latency_batch=0)


def test_budget_costs_ratio_and_best_within_a_latency_budget():
    costs = BudgetCosts("latency", np.array([[1.0, 3.0, 2.0], [2.0, 1.0, 4.0]]), fixed=4.0, unit="ms")
    assert costs.dense_total == 10.0
    assert costs.ratio([0, 1]) == pytest.approx(0.6)
    assert costs.smallest_ratio() == pytest.approx(0.6)
    assert costs.capacity(0.8) == pytest.approx(4.0)
    from agents.budget import EvaluationRecord

    records = [
        EvaluationRecord(0, (1,), (0,), 0.20, 0.3, 10, 0.0, 0, latency_ratio=0.9),
        EvaluationRecord(1, (2,), (1,), 0.25, 0.5, 10, 0.0, 1, latency_ratio=0.7),
    ]
    assert best_within_budget(records, 0.8, "latency").index == 1
    assert best_within_budget(records, 0.8, "size").index == 0
    assert EvaluationRecord.from_dict(records[1].to_dict()) == records[1]
    assert "latency_ratio" not in EvaluationRecord(2, (1,), (0,), 0.2, 0.3, 10, 0.0, 2).to_dict()


def test_search_under_a_latency_budget_end_to_end(tmp_path, monkeypatch):
    from agents.search import run_search
    from shrinkml_env.compression.latency import default_table_path

    monkeypatch.setenv("SHRINKML_CACHE", str(tmp_path / "cache"))
    target = toy_target()
    table = _fake_table(target, tmp_path / "t.json", slow_module="encoder.1")
    table.write(default_table_path(table.key))  # where the search looks for this machine's table
    config = SearchConfig(agent="random", target="toy", budget=0.8, budget_metric="latency", evaluations=6,
                          factorisation="plain")
    result = run_search(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["latency_ratio"] <= 0.8 + 1e-9 for r in records)
    assert result.best is not None
    best = min(records, key=lambda r: (r["search_wer"], r["latency_ratio"], r["index"]))
    assert list(result.best.ranks) == best["ranks"]
    # The export is timed against the dense model on the latency workload, beside the prediction.
    chosen = next(r for r in records if r["ranks"] == best["ranks"])
    assert result.latency["predicted_ratio"] == pytest.approx(chosen["latency_ratio"])
    assert result.latency["measured_ratio"] == pytest.approx(result.latency["exported_ms"] / result.latency["dense_ms"])
    assert json.loads((tmp_path / "run" / "result.json").read_text())["latency"] == result.latency
    assert "* Latency (batch 1, this machine): predicted" in (tmp_path / "run" / "report.md").read_text()
    # The like-for-like uniform opponent is matched by predicted latency: never faster than the choice.
    opponent = result.uniform_at_size
    assert opponent.label.endswith("(same latency)")
    env = ShrinkMLEnv(target=target, budget=0.8, budget_metric="latency", latency_table=str(tmp_path / "t.json"))
    action = next(a for a in range(env.menu.size) if env.plan.ranks([a] * env.steps) == opponent.ranks)
    assert env.costs.ratio([action] * env.steps) >= chosen["latency_ratio"] - 1e-9
    again = run_search(config, tmp_path / "run")  # resumes: nothing evaluated twice
    assert again.new_evaluations == 0 and again.best.ranks == result.best.ranks
