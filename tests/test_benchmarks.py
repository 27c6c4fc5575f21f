"""The benchmark scripts' toy modes: each writes its JSON, summary and plots into a tmp folder."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agents.budget import EvaluationRecord
from agents.config import SearchConfig
from agents.run_dir import RunDir
from benchmarks import (
    bench_headline,
    bench_inference,
    bench_rewards,
    bench_scaling,
    bench_search,
    bench_search_space,
    comparisons,
)
from benchmarks.search_study import (
    Arm,
    MemoisedTestError,
    StudySettings,
    _curve_key,
    _RankScorer,
    _run_one,
    build_kit,
    run_study,
    running_best,
)
from benchmarks.study_output import spread, summarise
from tests.conftest import tiny_model, toy_batch


def _record(index: int, wer: float, size: float) -> EvaluationRecord:
    return EvaluationRecord(index=index, ranks=(index,), actions=(0,), search_wer=wer, size_ratio=size, params=1,
                            reward=0.0, episode=index)


def test_running_best_follows_the_best_within_budget() -> None:
    records = [_record(0, 0.2, 0.5), _record(1, 0.5, 0.3), _record(2, 0.4, 0.2), _record(3, 0.4, 0.25)]
    bests = running_best(records, 0.3)
    assert [None if b is None else b.index for b in bests] == [None, 1, 2, 2]


def test_spread_ignores_missing_values() -> None:
    assert spread([3.0, None, 1.0, 2.0]) == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0, "q1": 1.5, "q3": 2.5}
    assert spread([None])["median"] is None


def test_study_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="seeds must be"):
        StudySettings(seeds=(1, 1))
    with pytest.raises(ValueError, match="search_utterances applies"):
        StudySettings(target="toy", search_utterances=10)
    with pytest.raises(ValueError, match=r"dev_pool_at must lie in 1..evaluations \(100\)"):
        StudySettings(dev_pool_at=(100, 300))
    with pytest.raises(ValueError, match="toy target has no dev pool"):
        StudySettings(target="toy", dev_pool_at=(10,))
    with pytest.raises(ValueError, match="unknown score 'bleu'; accepted: wer, cer, loss, distill"):
        StudySettings(score="bleu")
    with pytest.raises(ValueError, match="score 'distill' needs a speech recogniser"):
        StudySettings(target="toy", score="distill")


def test_study_refuses_an_arm_of_another_score_unless_told_and_best_seen_stays_in_one_score() -> None:
    settings = StudySettings(target="toy", evaluations=2, seeds=(0,), test_every=0)
    kit = build_kit(settings)
    assert math.isnan(kit.test_error(kit.target.model))  # a design study's kit decodes no test
    arm = bench_search.arms_for(0.4, ("random",), settings, 0, 0)[0]
    other = replace(arm, config=replace(arm.config, target="default", score="distill"))
    with pytest.raises(ValueError, match="steers by score 'distill' but the study scores 'wer'.*mixed_scores"):
        run_study("s", [other], settings, kit)
    runs = [{"best": {"search_wer": 0.9, "size_ratio": 0.3}}]
    arms = {"ppo+warm": {"config": {"score": "wer"}, "runs": [{"best": {"search_wer": 0.4, "size_ratio": 0.3}}]},
            "ppo+warm:distill": {"config": {"score": "distill"}, "runs": [{"best": {"search_wer": 0.1,
                                                                                   "size_ratio": 0.3}}]},
            "older": {"config": {}, "runs": runs}}  # written before the score setting: WER
    assert set(bench_search.same_score(arms, "wer")) == {"ppo+warm", "older"}


def test_study_arms_name_their_score_and_keep_their_uniform_curve_apart() -> None:
    settings = StudySettings(evaluations=2, seeds=(0,))
    arms = {a.label: a for a in bench_search.arms_for(0.4, ("ppo+warm", "ppo+warm:distill", "tpe:loss"),
                                                     settings, 0, 0)}
    assert arms["ppo+warm"].config.score == "wer"  # the study's score
    assert arms["ppo+warm:distill"].config.score == "distill" and arms["ppo+warm:distill"].config.warm_started
    assert (arms["tpe:loss"].config.agent, arms["tpe:loss"].config.score) == ("tpe", "loss")
    # A uniform curve's search-subset points are in one score: never shared across scores.
    assert _curve_key(arms["ppo+warm"].config) != _curve_key(arms["ppo+warm:distill"].config)
    with pytest.raises(ValueError, match="unknown score 'bleu'; accepted: AGENT:wer, AGENT:cer"):
        bench_search.parse_arm("ppo+warm:bleu")
    with pytest.raises(ValueError, match="unknown agent 'sgd'"):
        bench_search.parse_arm("sgd:wer")


def test_bench_search_toy(tmp_path) -> None:
    assert bench_search.main(["--target", "toy", "--agents", "uniform,random", "--budgets", "0.4",
                              "--evaluations", "3", "--seeds", "0,1", "--reference-factor", "2",
                              "--output-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "search.json").read_text())
    block = data["budgets"]["0.4"]
    assert set(block["arms"]) == {"uniform", "random", "reference"}
    random_arm = block["arms"]["random"]
    assert random_arm["summary"]["runs"] == 2
    assert len(random_arm["summary"]["test_wer_curve"]["median"]) == 3
    assert block["reference"]["found_at"] <= 6
    assert data["best_known"]["0.4"]["ranks"]
    assert {"date", "commit", "threads", "machine"} <= set(data["meta"])
    assert (tmp_path / "search_budget0.4.png").stat().st_size > 0
    assert "Budget 0.4" in (tmp_path / "search.md").read_text()


def test_bench_search_jobs_give_the_same_results(tmp_path) -> None:
    # Searches in pool processes are the same seeded searches: same evaluations, same best.
    args = ["--target", "toy", "--agents", "random,evolution", "--budgets", "0.4", "--evaluations", "4",
            "--seeds", "0,1", "--reference-factor", "0"]
    found = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        assert bench_search.main([*args, "--jobs", str(jobs), "--output-dir", str(out)]) == 0
        arms = json.loads((out / "search.json").read_text())["budgets"]["0.4"]["arms"]
        found[jobs] = {label: [(r["best"]["ranks"], r["best"]["test_wer"], r["evaluations"], r["resumed"])
                               for r in arm["runs"]] for label, arm in arms.items()}
    assert found[1] == found[2]
    assert all(not resumed for runs in found[2].values() for *_, resumed in runs)


def _plain_target(model: torch.nn.Module):
    from shrinkml_env.target import CompressionTarget

    return CompressionTarget(model=model, layers=model.compressible_layers(), evaluate=lambda _m: 0.0)


class _DistanceScore:
    """A stand-in test set: 40 "utterances" whose errors grow with the distance of the model's
    outputs from the dense model's, so that keeping more rank really scores better."""

    def __init__(self, dense: torch.nn.Module) -> None:
        self.batch = toy_batch(4, torch.Generator().manual_seed(9))
        with torch.no_grad():
            self.reference = dense.eval()(*self.batch[:2], self.batch[2])[0]
        self.calls = 0

    def __call__(self, model: torch.nn.Module) -> SimpleNamespace:
        self.calls += 1
        with torch.no_grad():
            distance = float((model.eval()(*self.batch[:2], self.batch[2])[0] - self.reference).abs().mean())
        errors = [int(distance * 50 * (1 + i % 3)) for i in range(40)]
        return SimpleNamespace(utterance_errors=lambda: (errors, [10] * 40))


def test_uniform_comparison_opposes_uniform_at_equal_or_larger_size(tmp_path) -> None:
    dense = tiny_model()
    scorer = _DistanceScore(dense)
    compare = bench_search.UniformComparison(_plain_target(dense), scorer, resamples=200, store=tmp_path / "paired")
    full = [m.full_rank for m in compare.matrices]
    # Starve the first half of the matrices, keep the rest near full rank.
    ranks = [1 if i < len(full) // 2 else max(1, f - 1) for i, f in enumerate(full)]
    row = compare(ranks, factorisation="plain")
    assert row["uniform_size_ratio"] >= row["size_ratio"]
    assert row["low"] <= row["difference"] <= row["high"]
    assert row["difference"] == pytest.approx(row["test_wer"] - row["uniform_test_wer"])
    assert scorer.calls == 2
    compare(ranks, factorisation="plain")  # memoised: nothing decoded again
    assert scorer.calls == 2
    resumed = bench_search.UniformComparison(_plain_target(dense), scorer, resamples=200, store=tmp_path / "paired")
    assert resumed(ranks, factorisation="plain") == row and scorer.calls == 2  # kept on disk
    arms = {"ppo": {"runs": [{"seed": 0, "best": {"ranks": ranks}}, {"seed": 1, "best": None}]}}
    summary = bench_search.compare_with_uniform(arms, ("ppo", "random"), compare)
    assert list(summary) == ["ppo"] and summary["ppo"]["seeds"] == 1
    assert summary["ppo"]["median_difference"] == row["difference"]


def test_bench_rewards_toy(tmp_path) -> None:
    assert bench_rewards.main(["--target", "toy", "--evaluations", "2", "--seeds", "0", "--rewards", "wer_size,amc",
                               "--constraints", "clamp,punish", "--output-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "rewards.json").read_text())
    assert set(data["arms"]) == {"wer_size/clamp", "amc/clamp", "wer_size/punish", "amc/punish"}
    assert "reward_best" in data["arms"]["amc/punish"]["summary"]


def test_bench_search_space_toy(tmp_path) -> None:
    assert bench_search_space.main(["--target", "toy", "--evaluations", "2", "--seeds", "0", "--agents", "random",
                                    "--menus", "linear8,full_range8", "--output-dir", str(tmp_path)]) == 0
    menus = json.loads((tmp_path / "search_space.json").read_text())["menus"]
    assert menus["linear8"]["facts"]["share_of_choices_at_or_above_break_even"] == 0.0
    assert menus["full_range8"]["facts"]["share_of_choices_at_or_above_break_even"] > 0.0


def test_bench_search_space_result_name_keeps_a_second_budget_apart(tmp_path) -> None:
    assert bench_search_space.main(["--target", "toy", "--evaluations", "2", "--seeds", "0", "--agents", "random",
                                    "--menus", "budget7", "--budget", "0.5", "--result-name", "space_b05",
                                    "--output-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("space_b05.*")) == ["space_b05.json", "space_b05.md", "space_b05.png"]
    assert not (tmp_path / "search_space.json").exists()
    assert json.loads((tmp_path / "space_b05.json").read_text())["settings"]["budget"] == 0.5
    with pytest.raises(SystemExit):
        bench_search_space.main(["--target", "toy", "--result-name", "x.json", "--output-dir", str(tmp_path)])


def test_bench_inference_toy(tmp_path) -> None:
    assert bench_inference.main(["--target", "toy", "--utterances", "2", "--batches", "1,2", "--repeats", "1",
                                 "--budgets", "0.3", "--large-preset", "", "--output-dir", str(tmp_path)]) == 0
    variants = json.loads((tmp_path / "inference.json").read_text())["models"][0]["variants"]
    assert set(variants) == {"original", "uniform@0.3"}
    compressed = variants["uniform@0.3"]
    assert compressed["parameter_ratio"] < 1.0 and compressed["checkpoint_bytes"] < variants["original"]["checkpoint_bytes"]
    assert compressed["batch1"]["theoretical_lstm_speedup"] > 1.0


def test_bench_headline_toy(tmp_path) -> None:
    assert bench_headline.main(["--target", "toy", "--quick", "--sizes", "0.5,0.3", "--seeds", "0,1",
                                "--evaluations", "8", "--repeats", "1", "--output-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "headline.json").read_text())
    methods = [(s["method"], s["size"]) for s in data["summary"]]
    assert methods == [("dense", 1.0), ("uniform", 0.5), ("search", 0.5), ("uniform", 0.3), ("search", 0.3)]
    for row in data["rows"][1:]:
        assert row["size_ratio"] <= row["budget"] + 1e-9 or row["method"] == "uniform"
        assert row["megabytes"] < data["rows"][0]["megabytes"] and row["speedup"] > 0
    searched = [r for r in data["rows"] if r["method"] == "search"]
    uniform = [r for r in data["rows"] if r["method"] == "uniform"]
    assert all(u["size_ratio"] >= s["size_ratio"] - 1e-9 for s, u in zip(searched, uniform))  # never smaller
    assert "| ShrinkML search, size 0.3 |" in (tmp_path / "headline.md").read_text()
    # The table says what the default search steered by (WER on the toy target, no distill there).
    assert data["meta"]["score"] == "wer" and all(r["score"] == "wer" for r in searched)
    assert "steered by wer" in (tmp_path / "headline.md").read_text()
    assert (tmp_path / "headline.png").stat().st_size > 1000
    # --retime: the same models timed again from their recorded ranks, nothing else changed.
    retimed_dir = tmp_path / "retimed"
    assert bench_headline.main(["--retime", str(tmp_path / "headline.json"), "--timing-utterances", "2",
                                "--repeats", "2", "--output-dir", str(retimed_dir)]) == 0
    retimed = json.loads((retimed_dir / "headline.json").read_text())
    assert retimed["meta"]["retimed"]["repeats"] == 2 and retimed["meta"]["retimed"]["previous"]["repeats"] == 1
    for before, after in zip(data["rows"], retimed["rows"]):
        assert (after["name"], after["test_wer"], after["megabytes"]) == (before["name"], before["test_wer"],
                                                                         before["megabytes"])
        assert after["batch1_ms"] > 0


def test_transfer_fractions_maps_deeper_layers_to_the_deepest_source() -> None:
    from asr.model import build_model

    torch.manual_seed(0)
    small, big = build_model("tiny"), build_model("tiny", encoder_layers=3, encoder_hidden_size=64)
    source = bench_inference._matrices(small)
    ranks = {m.key: max(1, m.full_rank // 4) for m in source}
    moved = bench_inference.transfer_fractions(source, ranks, bench_inference._matrices(big))
    assert moved["encoder.2.weight_hh_l0"] == 16  # encoder.1's quarter rank, at hidden 64


def test_bench_scaling_toy(tmp_path) -> None:
    assert bench_scaling.main(["--target", "toy", "--no-isolate", "--subset-sizes", "16,32", "--presets", "tiny",
                               "--model-utterances", "2", "--repeats", "1", "--output-dir", str(tmp_path)]) == 0
    points = json.loads((tmp_path / "scaling.json").read_text())["points"]
    assert [(p["kind"], p["size"]) for p in points] == [("subset", 16), ("subset", 32), ("model", 2)]


def test_bench_search_test_every_thins_test_decodes_but_keeps_the_final_one(tmp_path) -> None:
    assert bench_search.main(["--target", "toy", "--agents", "random", "--budgets", "0.4", "--evaluations", "5",
                              "--seeds", "0", "--reference-factor", "0", "--test-every", "2",
                              "--output-dir", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "search.json").read_text())["budgets"]["0.4"]["arms"]["random"]["runs"][0]
    curve = run["curve"]["test_wer"]
    assert len(curve) == 5
    assert curve[0] is None and curve[2] is None  # evaluations 1 and 3: not scored
    assert curve[-1] == run["best"]["test_wer"] is not None  # the last is always scored
    assert all(curve[k] is not None for k in (1, 3) if run["curve"]["search_wer"][k] is not None)


def test_bench_search_keeps_other_budgets_measured_with_the_same_settings(tmp_path) -> None:
    args = ["--target", "toy", "--agents", "random", "--evaluations", "3", "--seeds", "0", "--reference-factor", "0",
            "--output-dir", str(tmp_path)]
    assert bench_search.main([*args, "--budgets", "0.3"]) == 0
    assert bench_search.main([*args, "--budgets", "0.5"]) == 0
    data = json.loads((tmp_path / "search.json").read_text())
    assert list(data["budgets"]) == ["0.5", "0.3"] and data["settings"]["budgets"] == [0.5, 0.3]
    assert set(data["best_known"]) == {"0.5", "0.3"}
    assert "Budget 0.3" in (tmp_path / "search.md").read_text()
    # A file written before a setting existed (here: score) had its default, so it is kept.
    data = json.loads((tmp_path / "search.json").read_text())
    assert data["settings"].pop("score") == "wer"
    (tmp_path / "search.json").write_text(json.dumps(data))
    assert bench_search.main([*args, "--budgets", "0.5"]) == 0
    assert list(json.loads((tmp_path / "search.json").read_text())["budgets"]) == ["0.5", "0.3"]
    # Different settings: the earlier budgets are not mixed in.
    assert bench_search.main([*args[:5], "4", *args[6:], "--budgets", "0.4"]) == 0
    assert list(json.loads((tmp_path / "search.json").read_text())["budgets"]) == ["0.4"]
    # Same settings, another model: nothing measured on the old one is kept.
    data = json.loads((tmp_path / "search.json").read_text())
    assert set(data["target_identity"]) == {"name", "fingerprint", "data_fingerprint"}
    data["target_identity"]["fingerprint"] = "an-older-model"
    (tmp_path / "search.json").write_text(json.dumps(data))
    assert bench_search.main([*args[:5], "4", *args[6:], "--budgets", "0.3"]) == 0
    assert list(json.loads((tmp_path / "search.json").read_text())["budgets"]) == ["0.3"]


def test_bench_search_adds_a_reference_run_made_apart(tmp_path) -> None:
    study, ref = tmp_path / "study", tmp_path / "ref"
    common = ["--target", "toy", "--evaluations", "3", "--seeds", "0", "--budgets", "0.4"]
    assert bench_search.main([*common, "--agents", "random", "--reference-factor", "0", "--output-dir", str(study)]) == 0
    assert bench_search.main([*common, "--agents", "", "--reference-factor", "4", "--output-dir", str(ref)]) == 0
    reference = json.loads((ref / "search.json").read_text())["budgets"]["0.4"]["reference"]

    assert bench_search.main(["--add-reference", str(ref / "search.json"), "--output-dir", str(study)]) == 0
    data = json.loads((study / "search.json").read_text())
    block = data["budgets"]["0.4"]
    assert set(block["arms"]) == {"random", "reference"} and block["reference"] == reference
    assert data["settings"]["reference_factor"] == 4 and block["reference_meta"]["source"] == str(ref / "search.json")
    own = block["arms"]["random"]["runs"][0]["best"]
    better = min((own, reference), key=lambda b: (b["search_wer"], b["size_ratio"]))
    assert data["best_known"]["0.4"]["ranks"] == better["ranks"] == block["best_seen"]["ranks"]
    assert "| reference |" in (study / "search.md").read_text()

    # A reference measured with other settings, or for a budget the study lacks, is refused.
    other = json.loads((ref / "search.json").read_text())
    other["settings"]["test_every"] = 5
    with pytest.raises(ValueError, match=r"test_every \(5 against the study's 1\)"):
        bench_search.add_reference(data, other)
    other = json.loads((ref / "search.json").read_text())
    other["budgets"]["0.3"] = other["budgets"].pop("0.4")
    with pytest.raises(ValueError, match="no budget 0.3"):
        bench_search.add_reference(data, other)


def test_compare_uniform_scores_every_agent_of_a_saved_study(tmp_path, monkeypatch) -> None:
    from benchmarks import compare_uniform

    dense = tiny_model()
    scorer = _DistanceScore(dense)
    comparison = bench_search.UniformComparison(_plain_target(dense), scorer, resamples=200)
    monkeypatch.setattr(bench_search.UniformComparison, "on_test_set", classmethod(lambda cls, *a: comparison))
    full = [m.full_rank for m in comparison.matrices]
    starved = [1 if i < len(full) // 2 else max(1, f - 1) for i, f in enumerate(full)]
    even = [max(1, f // 2) for f in full]

    def arm(ranks):
        return {"runs": [{"seed": s, "best": {"ranks": ranks}} for s in (0, 1)]}

    study = {"settings": {"target": "default"}, "meta": {},
             "budgets": {"0.5": {"arms": {"skewed": arm(starved), "even": arm(even), "reference": arm(even)}}}}
    path = tmp_path / "search.json"
    path.write_text(json.dumps(study))
    assert compare_uniform.main(["--search-json", str(path)]) == 0
    out = json.loads((tmp_path / "search_vs_uniform.json").read_text())["budgets"]["0.5"]
    assert set(out) == {"skewed", "even"}  # the long-evolution reference is not an agent
    for runs in (out["skewed"]["runs"], out["even"]["runs"]):
        assert [r["seed"] for r in runs] == [0, 1]
        assert all(r["uniform_size_ratio"] >= r["size_ratio"] for r in runs)
        assert all(r["difference"] == pytest.approx(r["test_wer"] - r["uniform_test_wer"]) for r in runs)
    # "even" is itself uniform, so it is its own opponent: three distinct models, each decoded once.
    assert all(r["difference"] == 0 for r in out["even"]["runs"])
    assert scorer.calls == 3
    assert "| skewed |" in (tmp_path / "search_vs_uniform.md").read_text()
    # A study searched on another model is refused, not silently compared on this one.
    study["target_identity"] = {"name": "default", "fingerprint": "an-older-model", "data_fingerprint": "x"}
    path.write_text(json.dumps(study))
    with pytest.raises(SystemExit):
        compare_uniform.main(["--search-json", str(path)])
    study["target_identity"]["fingerprint"] = compare_uniform.weights_fingerprint(dense)
    path.write_text(json.dumps(study))
    assert compare_uniform.main(["--search-json", str(path)]) == 0
    with pytest.raises(SystemExit):
        compare_uniform.main(["--search-json", str(tmp_path / "missing.json")])


def test_inference_times_searched_ranks_only_from_a_search_of_the_same_model(tmp_path) -> None:
    from benchmarks.bench_inference import _matrices, searched_ranks
    from benchmarks.search_study import weights_fingerprint

    model = tiny_model()
    ranks = [max(1, m.full_rank // 2) for m in _matrices(model)]
    path = tmp_path / "search.json"
    study = {"best_known": {"0.5": {"ranks": ranks}},
             "target_identity": {"name": "default", "fingerprint": weights_fingerprint(model), "data_fingerprint": "x"}}
    path.write_text(json.dumps(study))
    assert list(searched_ranks(path, model)["0.5"].values()) == ranks
    study["target_identity"]["fingerprint"] = "an-older-model"
    path.write_text(json.dumps(study))
    assert searched_ranks(path, model) == {}


def test_compare_uniform_reads_a_search_space_study_per_menu(tmp_path, monkeypatch) -> None:
    from benchmarks import compare_uniform

    dense = tiny_model()
    comparison = bench_search.UniformComparison(_plain_target(dense), _DistanceScore(dense), resamples=200)
    monkeypatch.setattr(bench_search.UniformComparison, "on_test_set", classmethod(lambda cls, *a: comparison))
    even = [max(1, m.full_rank // 2) for m in comparison.matrices]
    arms = {"ppo": {"runs": [{"seed": 0, "best": {"ranks": even}}]}}
    study = {"settings": {"target": "default", "budget": 0.3}, "meta": {},
             "menus": {"linear8": {"arms": arms}, "budget7": {"arms": arms}}}
    path = tmp_path / "search_space.json"
    path.write_text(json.dumps(study))
    assert compare_uniform.main(["--search-json", str(path)]) == 0
    out = json.loads((tmp_path / "search_space_vs_uniform.json").read_text())["budgets"]
    assert set(out) == {"0.3/linear8", "0.3/budget7"}
    assert out["0.3/budget7"]["ppo"]["runs"][0]["difference"] == 0  # uniform against itself
    assert not (tmp_path / "search_vs_uniform.json").exists()


def _arm(name: str, test_wer: float, *, compression: float = 5.2, baseline: float = 0.30, **settings) -> dict:
    result = {"compression": compression, "test_wer": test_wer, "size_ratio": 1 / compression,
              "finetune_updates": 600}
    if name == "iterative":
        result.update(within_tolerance=True, rounds=[], evaluations=150)
    return {"arm": name, "baseline_test_wer": baseline, "result": result,
            "settings": {"budget": 0.4, "target_size": 0.2, **settings}}


def test_finetune_arms_merge_into_one_result_with_relative_increases():
    from benchmarks.bench_finetune import merge_arms

    merged = merge_arms([_arm("iterative", 0.312), _arm("rl_finetuned", 0.33), _arm("uniform_finetuned", 0.36),
                         _arm("dense_finetuned", 0.29, compression=1.0)])
    assert merged["baseline_test_wer"] == 0.30
    assert merged["iterative"]["relative_test_wer_increase"] == pytest.approx(0.04)
    assert merged["aim_met"] is True and merged["equal_updates"] is True
    worse = merge_arms([_arm("iterative", 0.33), _arm("rl_finetuned", 0.33), _arm("uniform_finetuned", 0.36),
                        _arm("dense_finetuned", 0.29, compression=1.0)])
    assert worse["aim_met"] is False  # 10 % over the dense model


@pytest.mark.parametrize("parts, match", [
    ([_arm("iterative", 0.3)], "arms missing: rl_finetuned, uniform_finetuned, dense_finetuned"),
    ([_arm("iterative", 0.3), _arm("iterative", 0.3)], "arm 'iterative' given twice"),
    ([{"arm": "bogus"}], "not a bench_finetune arm record"),
    ([_arm("iterative", 0.3), _arm("rl_finetuned", 0.3, budget=0.5), _arm("uniform_finetuned", 0.3),
      _arm("dense_finetuned", 0.3)], r"arm 'rl_finetuned' ran with other settings \(budget\)"),
    ([_arm("iterative", 0.3), _arm("rl_finetuned", 0.3, baseline=0.4), _arm("uniform_finetuned", 0.3),
      _arm("dense_finetuned", 0.3)], "the arms scored different dense models"),
])
def test_finetune_merge_refuses_incomplete_or_mismatched_arms(parts, match):
    from benchmarks.bench_finetune import merge_arms

    with pytest.raises(ValueError, match=match):
        merge_arms(parts)


def test_finetune_iterative_arm_with_no_round_says_why(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from benchmarks import bench_finetune

    empty = SimpleNamespace(rounds=[], final=None, stop_reason="search_found_nothing")
    monkeypatch.setattr(bench_finetune, "run_iterative", lambda *a, **k: empty)
    data = SimpleNamespace(test=[])
    with pytest.raises(RuntimeError, match="finished no round.*search_found_nothing.*raise --evaluations"):
        bench_finetune.run_arm("iterative", bench_finetune.BenchConfig(), tmp_path, data)


def test_finetune_planned_rounds_follow_the_budget_schedule():
    from benchmarks.bench_finetune import BenchConfig

    assert BenchConfig(budget=0.4, target_size=0.2).planned_rounds() == 3  # 0.4, 0.28, 0.2
    assert BenchConfig(budget=0.5, target_size=0.2).planned_rounds() == 4  # 0.5, 0.35, 0.245, 0.2
    assert BenchConfig(budget=0.2, target_size=0.2).planned_rounds() == 1


def test_study_arms_name_warm_agents_and_run_deterministic_agents_once() -> None:
    settings = StudySettings(target="toy", evaluations=5, seeds=(3, 4))
    arms = {a.label: a for a in bench_search.arms_for(0.4, ("ppo+warm", "ppo", "greedy", "uniform", "tpe"),
                                                     settings, 0, 0)}
    assert arms["ppo+warm"].config.warm_start and arms["ppo+warm"].config.agent == "ppo"
    assert not arms["ppo"].config.warm_start
    assert arms["greedy"].seeds == arms["uniform"].seeds == (3,)  # nothing random in them
    assert arms["tpe"].seeds is None  # the study's seeds
    for bad in ("greedy+warm", "dqn+warm", "ppo+cold", "sgd"):
        with pytest.raises(ValueError, match=f"unknown agent '{re.escape(bad)}'"):
            bench_search.parse_agent(bad)
    with pytest.raises(SystemExit):
        bench_search.main(["--target", "toy", "--agents", "random+warm", "--output-dir", "/nonexistent"])


def test_memoised_scores_are_kept_on_disk_for_a_resumed_study(tmp_path) -> None:
    calls = []

    def error(model: torch.nn.Module) -> float:
        calls.append(1)
        return float(sum(p.detach().sum() for p in model.parameters()))

    model = tiny_model()
    first = MemoisedTestError(error, tmp_path / "test-300")
    value = first(model)
    assert first(model) == value and len(calls) == 1
    (tmp_path / "test-300" / "99999.jsonl").write_text('{"key": "cut sh')  # a line a killed process left
    again = MemoisedTestError(error, tmp_path / "test-300")  # another process, or a resumed study
    assert again(model) == value and len(calls) == 1
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert again(model) != value and len(calls) == 2


def test_study_scores_configurations_exported_by_the_searchs_factorisation(tmp_path) -> None:
    # The running best is decoded on test as `shrinkml search` exports it (whitened by default),
    # not by plain SVD.
    assert bench_search.main(["--target", "toy", "--agents", "random", "--budgets", "0.4", "--evaluations", "3",
                              "--seeds", "0", "--reference-factor", "0", "--output-dir", str(tmp_path)]) == 0
    arm = json.loads((tmp_path / "search.json").read_text())["budgets"]["0.4"]["arms"]["random"]
    assert arm["config"]["factorisation"] == "whitened"
    best = arm["runs"][0]["best"]
    kit = build_kit(StudySettings(target="toy"))
    scorer = _RankScorer(kit)
    assert best["test_wer"] == pytest.approx(scorer(best["ranks"], "whitened"))
    assert best["test_wer"] != pytest.approx(scorer(best["ranks"], "plain"))


def test_study_decodes_the_running_best_on_the_dev_pool_at_chosen_counts(tmp_path) -> None:
    kit = build_kit(StudySettings(target="toy"))
    scored = []

    def dev_error(model: torch.nn.Module) -> float:
        scored.append(model)
        return 0.5 + len(scored) / 100

    scorer = _RankScorer(kit, dev_error)
    arm = Arm("random", SearchConfig(agent="random", budget=0.4, evaluations=4, target="toy"))
    row = _run_one(arm, 0, kit, scorer, tmp_path / "random", {}, False, 3, (2, 4))
    records = RunDir(next((tmp_path / "random").iterdir())).evaluations()
    bests = running_best(records, 0.4)
    assert row["dev_pool"]["2"]["ranks"] == list(bests[1].ranks)
    assert row["dev_pool"]["2"]["dev_pool_wer"] == 0.51 and row["dev_pool"]["4"]["dev_pool_wer"] == 0.52
    assert row["dev_pool"]["4"]["ranks"] == row["best"]["ranks"]
    # Test WER is scored at the dev-pool counts too (and at every 3rd and the last), so both
    # columns of the table have a value there.
    assert [v is not None for v in row["curve"]["test_wer"]] == [False, True, True, True]
    summary = summarise([row, row], 4)
    assert summary["dev_pool_wer"]["4"]["median"] == 0.52
    # A run that stopped after one evaluation keeps its best for later counts.
    uniform = Arm("uniform", SearchConfig(agent="uniform", budget=0.4, evaluations=4, target="toy"))
    row = _run_one(uniform, 0, kit, scorer, tmp_path / "uniform", {}, False, 1, (2, 4))
    assert row["evaluations"] == 1 and row["dev_pool"]["4"]["ranks"] == row["best"]["ranks"]
    # A seed with nothing within the budget at a count has no dev-pool score, and the spread counts it out.
    empty = {**row, "dev_pool": {"2": None, "4": None}}
    assert summarise([row, empty], 4)["dev_pool_wer"]["2"]["n"] == 1


def test_best_baseline_comparison_and_dev_pool_choice() -> None:
    dense = tiny_model()
    scorer = _DistanceScore(dense)
    compare = bench_search.UniformComparison(_plain_target(dense), scorer, resamples=200)
    full = [m.full_rank for m in compare.matrices]
    half = [max(1, f // 2) for f in full]
    starved = [1 if i < len(full) // 2 else max(1, f - 1) for i, f in enumerate(full)]

    def arm(test_wer, ranks, seeds=(0, 1), dev=None, found=None):
        runs = [{"seed": s, "best": {"ranks": ranks}} for s in seeds]
        n = len(seeds) if found is None else found
        summary = {"runs": len(seeds), "test_wer": {"median": test_wer, "n": n},
                   "dev_pool_wer": {"100": {"median": dev if dev is not None else test_wer, "n": n}}}
        return {"runs": runs, "summary": summary, "config": {"factorisation": "plain"}}

    arms = {"ppo+warm": arm(0.30, starved), "dqn": arm(0.20, half), "greedy": arm(0.31, half, seeds=(0,)),
            "tpe": arm(0.33, starved), "random": arm(0.05, half, found=1), "uniform": arm(0.10, half, seeds=(0,))}
    # The best baseline is greedy: uniform and RL agents (dqn, however steered) are not
    # baselines, and random's median stands on one seed of two.
    assert comparisons.best_baseline({**arms, "ppo:distill": arm(0.01, half)}, "ppo+warm") == ("greedy", "dev pool")
    # An arm's recorded config names its agent whatever its label says.
    relabelled = {**arm(0.01, half), "config": {"factorisation": "plain", "agent": "a2c"}}
    assert comparisons.best_baseline({**arms, "mine": relabelled}, "ppo+warm") == ("greedy", "dev pool")
    out = comparisons.compare_with_best_baseline(arms, "ppo+warm", compare)
    assert out["baseline"] == "greedy" and [r["seed"] for r in out["runs"]] == [0, 1]  # one greedy run for both
    assert out["unpaired_seeds"] == []
    assert all(r["difference"] == pytest.approx(r["test_wer"] - r["other_test_wer"]) for r in out["runs"])
    # A seeded baseline is paired seed by seed: its seed 1 found nothing, so seed 1 goes unpaired.
    arms["tpe"] = arm(0.25, half)
    arms["tpe"]["runs"][1]["best"] = None
    out = comparisons.compare_with_best_baseline(arms, "ppo+warm", compare)
    assert out["baseline"] == "tpe" and [r["seed"] for r in out["runs"]] == [0] and out["unpaired_seeds"] == [1]
    arms["tpe"] = arm(0.33, starved)
    payload = {"settings": {"dev_pool_at": [100]},
               "budgets": {"0.3": {"arms": arms},
                           "0.2": {"arms": {**arms, "tpe": arm(0.5, starved, dev=0.26)}}}}
    choice = comparisons.choose_agent(payload)["100"]
    # tpe: mean of 0.33 and 0.26 = 0.295 beats ppo+warm (0.30); dqn (0.20) is lowest of all;
    # random, with one seed of two, does not compete.
    assert list(choice["mean_dev_pool_wer"])[:3] == ["dqn", "tpe", "ppo+warm"]
    assert choice["chosen"] == "dqn" and {"uniform", "random"}.isdisjoint(choice["mean_dev_pool_wer"])
    assert comparisons.choose_agent({"settings": {"dev_pool_at": [100]}, "budgets": {}}) == {}
    # Equal medians (the same configuration): the lower mean over seeds wins, whatever the names.
    for first, second in (("aa", "zz"), ("zz", "aa")):
        tied = {first: arm(0.30, half), second: arm(0.30, half)}
        tied[first]["runs"] = [{"seed": s, "best": {}, "dev_pool": {"100": {"dev_pool_wer": w}}}
                               for s, w in ((0, 0.30), (1, 0.31))]
        tied[second]["runs"] = [{"seed": s, "best": {}, "dev_pool": {"100": {"dev_pool_wer": w}}}
                                for s, w in ((0, 0.30), (1, 0.29))]
        choice = comparisons.choose_agent({"settings": {"dev_pool_at": [100]}, "budgets": {"0.3": {"arms": tied}}})
        assert choice["100"]["chosen"] == second


def test_search_summary_shows_dev_pool_columns_choice_and_both_comparisons() -> None:
    def spread_of(v):
        return {"median": v, "min": v, "max": v, "n": 1}

    summary = {"runs": 1, "test_wer": spread_of(0.4), "search_wer": spread_of(0.41), "size_ratio": spread_of(0.3),
               "found_at": spread_of(50), "seconds": spread_of(9.0), "dev_pool_wer": {"100": spread_of(0.42)},
               "test_wer_curve": {"evaluations": [1, 2], "median": [0.5, 0.4], "min": [0.5, 0.4], "max": [0.5, 0.4]}}
    paired = {"seed": 0, "size_ratio": 0.3, "test_wer": 0.4, "difference": -0.01, "low": -0.02, "high": 0.0,
              "confidence": 0.95, "utterances": 1500}
    payload = {"settings": {"evaluations": 2, "seeds": [0], "dev_pool_at": [100], "export": bench_search.EXPORT},
               "test_description": "test", "choice": {"100": {"chosen": "ppo+warm", "budgets": ["0.3"],
                                                              "mean_dev_pool_wer": {"ppo+warm": 0.42}}},
               "budgets": {"0.3": {"baseline_test_wer": 0.3, "plot": "p.png", "arms": {"ppo+warm": {"summary": summary}},
                                   "versus_uniform": {"ppo+warm": {"runs": [{**paired, "uniform_size_ratio": 0.31,
                                                                             "uniform_test_wer": 0.41}],
                                                                   "median_difference": -0.01, "seeds_better": 1,
                                                                   "seeds_better_beyond_interval": 0, "seeds": 1}},
                                   "versus_best_baseline": {"ppo+warm": {
                                       "baseline": "greedy", "baseline_chosen_on": "dev pool", "unpaired_seeds": [],
                                       "runs": [{**paired, "other_size_ratio": 0.29, "other_test_wer": 0.41}],
                                       "median_difference": -0.01, "seeds_better": 1,
                                       "seeds_better_beyond_interval": 0, "seeds": 1}}}}}
    text = bench_search.summary_markdown(payload)
    assert "**Recommended at 100 evaluations" in text and ": ppo+warm.**" in text
    assert "run once (`runs`)." in text and "The dev pool (dev utterances 600–1200" in text
    assert "| ppo+warm | 1 | 0.4000 [0.4000, 0.4000] | 0.4000 [0.4000, 0.4000] | 0.4200 [0.4200, 0.4200] |" in text
    assert "against the best baseline, greedy" in text and "| 0 | 0.300 | 0.290 | 0.4000 | 0.4100 |" in text


def test_bench_train_parallel_refuses_settings_it_cannot_measure(capsys) -> None:
    from benchmarks import bench_train_parallel

    for argv in (["--cores", "1"], ["--updates", "4", "--skip", "3"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_train_parallel.main(argv)
        assert exit_info.value.code == 2
    assert "--cores >= 2" in capsys.readouterr().err


def test_bench_reverb_pairs_each_simulated_room_with_our_response_of_its_measured_rt60() -> None:
    pytest.importorskip("pyroomacoustics")
    from benchmarks.bench_reverb import response_facts, response_pools

    pools, facts = response_pools([0.3], count=3, seed=0)
    for room, ours in zip(pools["simulator", 0.3], pools["ours", 0.3], strict=True):
        room_rt60 = response_facts(room)["rt60"]
        assert 0.2 < room_rt60 < 0.6  # about what was asked (Sabine's formula is approximate)
        assert response_facts(ours)["rt60"] == pytest.approx(room_rt60, rel=0.05)
    assert set(facts) == {"ours", "simulator"} and facts["ours"]["0.3"]["drr_db"]["median"] < 0


def test_bench_noise_measures_each_colours_power_law() -> None:
    from asr.corpus.augment import coloured_noise
    from benchmarks.bench_noise import LAW_DB_PER_OCTAVE, spectrum_facts

    rng = np.random.default_rng(0)
    for colour in ("white", "pink", "brown"):
        facts = spectrum_facts(coloured_noise(80_000, colour, rng))
        assert facts["slope_db_per_octave"] == pytest.approx(LAW_DB_PER_OCTAVE[colour], abs=0.2)
    assert spectrum_facts(rng.standard_normal(80_000) ** 3)["excess_kurtosis"] > 10  # far from Gaussian


def test_bench_compressibility_spectrum_counts_the_kept_energy_of_every_lstm_matrix() -> None:
    from asr.model import PRESETS, ASRModel
    from asr.nuclear import lstm_matrices
    from benchmarks.bench_compressibility import spectrum

    model = ASRModel(PRESETS["tiny"])
    with torch.no_grad():
        for i, (_, matrix) in enumerate(lstm_matrices(model)):
            rows, cols = matrix.shape
            u, v = torch.linalg.qr(torch.randn(rows, 2))[0], torch.linalg.qr(torch.randn(cols, 2))[0]
            # singular values 3 and 1 (i even) or 1 and 1 (i odd): rank 1 keeps 0.9 or 0.5
            matrix.copy_(u @ torch.diag(torch.tensor([3.0 if i % 2 == 0 else 1.0, 1.0])) @ v.T)
    n = len(lstm_matrices(model))
    got = spectrum(model, fractions=(1e-9, 1.0))
    assert got["nuclear_norm"] == pytest.approx(sum(4.0 if i % 2 == 0 else 2.0 for i in range(n)), rel=1e-5)
    assert got["energy_kept_at_1e-09"] == pytest.approx(sum(0.9 if i % 2 == 0 else 0.5 for i in range(n)) / n, rel=1e-5)
    assert got["energy_kept_at_1"] == pytest.approx(1.0)

