"""The dev-pool tuning study of the RL agent: its grid, arms, choice rule and table."""

from __future__ import annotations

import pytest

from agents.config import SearchConfig
from benchmarks.bench_agent_tuning import build_arms, choose, parse_grid, summary_markdown
from benchmarks.search_study import StudySettings, _RankScorer, _run_one, build_kit, run_study
from benchmarks.study_output import summarise


def test_grid_parses_literals_and_refuses_malformed_items() -> None:
    assert parse_grid(["ent_coef=0.01,0.05", "n_epochs=4"]) == [("ent_coef", [0.01, 0.05]), ("n_epochs", [4])]
    with pytest.raises(ValueError, match="NAME=V1,V2"):
        parse_grid(["ent_coef"])
    with pytest.raises(ValueError, match="twice"):
        parse_grid(["ent_coef=0.01", "ent_coef=0.05"])
    with pytest.raises(ValueError, match="repeats a value"):
        parse_grid(["learning_rate=1e-3,0.001"])


def test_arms_are_every_combination_and_mark_the_current_default() -> None:
    arms = build_arms("ppo", True, parse_grid(["ent_coef=0.01,0.05", "learning_rate=1e-3,3e-4"]),
                      SearchConfig(budget=0.3, evaluations=10, target="toy"))
    assert [a.label for a in arms] == ["ent_coef=0.01 learning_rate=0.001", "ent_coef=0.01 learning_rate=0.0003",
                                       "ent_coef=0.05 learning_rate=0.001", "ent_coef=0.05 learning_rate=0.0003"]
    assert [a.extras["current_default"] for a in arms] == [True, False, False, False]
    # SB3's own defaults count too; a default that scales with the episode length is never claimed.
    assert build_arms("ppo", True, parse_grid(["clip_range=0.2,0.1"]), SearchConfig(target="toy"))[0].extras[
        "current_default"]
    assert not any(a.extras["current_default"] for a in
                   build_arms("ppo", True, parse_grid(["n_steps=8,48"]), SearchConfig(target="toy")))
    assert all(a.config.warm_started and dict(a.config.sb3) == a.extras["overrides"] for a in arms)
    with pytest.raises(ValueError, match="takes no hyperparameter"):
        build_arms("ppo", True, parse_grid(["epsilon=0.1"]), SearchConfig(target="toy"))


def test_score_in_the_grid_sets_the_search_score_not_an_sb3_override() -> None:
    arms = build_arms("ppo", True, parse_grid(["ent_coef=0.01", "score=wer,distill"]),
                      SearchConfig(budget=0.3, evaluations=10))
    assert [a.label for a in arms] == ["ent_coef=0.01 score=wer", "ent_coef=0.01 score=distill"]
    assert [a.config.score for a in arms] == ["wer", "distill"]
    assert all(dict(a.config.sb3) == {"ent_coef": 0.01} for a in arms)
    assert [a.extras["current_default"] for a in arms] == [False, True]  # ShrinkML steers by distill by default
    with pytest.raises(ValueError, match="unknown score 'bleu'; accepted: wer, cer, loss, distill"):
        build_arms("ppo", True, parse_grid(["score=wer,bleu"]), SearchConfig(budget=0.3))


def test_zero_test_every_draws_no_test_curve(tmp_path) -> None:
    kit = build_kit(StudySettings(target="toy"))
    tested: list[tuple[int, ...]] = []

    class Scorer(_RankScorer):
        def __call__(self, ranks, factorisation: str) -> float:  # the curve's test decode
            tested.append(tuple(ranks))
            return 0.5

    scorer = Scorer(kit, lambda model: 0.4)
    arm = build_arms("ppo", False, parse_grid(["ent_coef=0.05"]), SearchConfig(budget=0.4, evaluations=4,
                                                                               target="toy"))[0]
    row = _run_one(arm, 0, kit, scorer, tmp_path, {}, False, 0, (2, 4))
    assert tested == [] and row["curve"]["test_wer"] == [None] * 4 and row["best"]["test_wer"] is None
    assert row["dev_pool"]["4"]["dev_pool_wer"] == 0.4
    with pytest.raises(ValueError, match="test_every >= 0"):
        StudySettings(target="toy", test_every=-1)
    # A whole study runs and logs with no test WER anywhere.
    lines: list[str] = []
    out = run_study("tuning", [arm], StudySettings(target="toy", evaluations=3, seeds=(0,), test_every=0), kit,
                    log=lines.append)
    assert out[arm.label]["summary"]["test_wer"]["n"] == 0 and lines[0].endswith("test –")


def _arm(dev: dict[str, list[float | None]], *, default: bool = False) -> dict:
    runs = [{"seed": s, "evaluations": 300, "episodes": 6000, "search_seconds_per_evaluation": 1.5,
             "within_budget_share": 1.0, "seconds": 400.0,
             "curve": {"test_wer": [None], "search_wer": [0.4], "size_ratio": [0.3]},
             "best": {"ranks": [1], "size_ratio": 0.3, "search_wer": 0.4, "test_wer": None, "found_at": 50},
             "dev_pool": {c: None if v[s] is None else {"dev_pool_wer": v[s]} for c, v in dev.items()}}
            for s in range(3)]
    return {"summary": summarise(runs, 1), "runs": runs, "overrides": {}, "current_default": default}


def test_choice_takes_the_lowest_mean_of_medians_and_skips_incomplete_arms() -> None:
    arms = {"a": _arm({"100": [0.41, 0.42, 0.40], "300": [0.41, 0.42, 0.40]}, default=True),
            "b": _arm({"100": [0.42, 0.40, 0.39], "300": [0.39, 0.40, 0.38]}),
            "c": _arm({"100": [0.30, None, 0.30], "300": [0.30, 0.30, 0.30]})}  # a seed missing at 100
    choice = choose(arms)
    assert choice["arm"] == "b" and choice["score"] == pytest.approx((0.40 + 0.39) / 2)
    # An exact tie of medians goes to the lower mean over seeds.
    tie = {"x": _arm({"300": [0.40, 0.40, 0.46]}), "y": _arm({"300": [0.40, 0.40, 0.41]})}
    assert choose(tie)["arm"] == "y"
    assert choose({"c": arms["c"]}) is None
    payload = {"settings": {"agent": "ppo+warm", "budget": 0.3, "evaluations": 300, "seeds": [0, 1, 2],
                            "dev_pool_at": [100, 300]},
               "meta": {"date": "today", "commit": "abc"}, "dense_dev_pool_wer": 0.33, "arms": arms, "choice": choice}
    text = summary_markdown(payload)
    assert "| **b** |" in text and "a (current default)" in text and "No test WER is read" in text
