"""Optuna-backed agents on the toy target: exact budgets, the constraint, determinism, resuming."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("optuna")

from agents.budget import EvaluationRecorder, SearchLog
from agents.config import SearchConfig
from agents.optuna_search import run_optuna
from agents.search import run_search
from shrinkml_env.env import ShrinkMLEnv


def _search(target, agent, evaluations, budget=0.4, seed=0, restored=()):
    config = SearchConfig(agent=agent, target="toy", evaluations=evaluations, budget=budget, seed=seed)
    env = ShrinkMLEnv(target=target, budget=budget)
    log = SearchLog(evaluations, env, restored)
    recorder = EvaluationRecorder(env, log)
    recorder.reset(seed=seed)
    return run_optuna(config, recorder, log, np.random.default_rng(seed)), log, env


@pytest.mark.parametrize("agent", ["tpe", "cmaes", "nsga2"])
def test_optuna_agents_spend_exactly_their_budget_and_decode_nothing_over_it(target, decodes, agent):
    reason, log, env = _search(target, agent, 12)
    assert reason == "budget"
    assert log.count == 12 == len(decodes) == len(set(decodes))
    # The constraint is checked from the ranks before decoding: every decode fits.
    assert all(r.size_ratio <= 0.4 + 1e-9 for r in log.records)


@pytest.mark.parametrize("agent", ["tpe", "cmaes", "nsga2"])
def test_optuna_agents_are_seeded_and_resume_without_decoding_twice(target, decodes, agent):
    _, whole, _ = _search(target, agent, 10, seed=3)
    first = [r.ranks for r in whole.records]
    _, part, _ = _search(target, agent, 4, seed=3)
    assert [r.ranks for r in part.records] == first[:4]
    decodes.clear()
    # A resumed search replays the paid-for start from the log (free), then goes on as the
    # uninterrupted one did.
    _, resumed, _ = _search(target, agent, 10, seed=3, restored=part.records)
    assert [r.ranks for r in resumed.records] == first
    assert decodes == first[4:]


def test_tpe_runs_through_run_search_and_resumes_from_the_run_directory(tmp_path, target):
    config = SearchConfig(agent="tpe", target="toy", evaluations=8, budget=0.4, seed=0)
    result = run_search(config, tmp_path / "run")
    assert result.evaluations == 8 and result.best is not None
    assert result.best.size_ratio <= 0.4 + 1e-9
    again = run_search(config, tmp_path / "run")  # resumes: nothing new to decode
    assert again.new_evaluations == 0 and again.best.ranks == result.best.ranks
