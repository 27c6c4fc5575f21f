"""SB3 agents by name on the toy target: exact budgets, defaults, overrides, TensorBoard."""

import importlib.util

import numpy as np
import pytest

from agents.budget import EvaluationRecorder, SearchLog
from agents.config import RL_AGENTS, SearchConfig
from agents.rl import algorithm_class, hyperparameters, run_rl
from shrinkml_env.env import ShrinkMLEnv
from shrinkml_env.plan import CompressionPlan


def search(target, config):
    env = ShrinkMLEnv(target=target, budget=config.budget, constraint=config.constraint)
    log = SearchLog(config.evaluations, env)
    recorder = EvaluationRecorder(env, log)
    recorder.reset(seed=config.seed)
    return log, run_rl(config, recorder, log, np.random.default_rng(config.seed))


@pytest.mark.parametrize("agent", RL_AGENTS)
def test_each_agent_spends_exactly_its_budget(target, monkeypatch, agent):
    decodes = []
    original = CompressionPlan.evaluate
    monkeypatch.setattr(CompressionPlan, "evaluate", lambda self, r: decodes.append(tuple(r)) or original(self, r))
    config = SearchConfig(agent=agent, target="toy", budget=0.5, evaluations=6,
                          sb3=(("policy_kwargs", {"net_arch": [16]}),))
    log, reason = search(target, config)
    assert reason == "budget"
    assert log.count == 6 == len(decodes) == len(set(decodes))
    assert all(r.size_ratio <= 0.5 + 1e-9 for r in log.records)  # clamp and mask keep the budget


def test_learning_leaves_no_logger_folder_behind(target, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger would write
    search(target, SearchConfig(agent="ppo", target="toy", budget=0.5, evaluations=6))
    assert list(tmp_path.iterdir()) == []


def test_episode_limit_stops_learning(target):
    config = SearchConfig(agent="a2c", target="toy", budget=0.5, evaluations=500, max_episodes=5)
    log, reason = search(target, config)
    assert (reason, log.episodes) == ("episode_limit", 5)


def test_defaults_suit_short_fixed_episodes_and_overrides_win():
    steps = 4
    ppo = hyperparameters(SearchConfig(agent="ppo"), steps)
    assert ppo["gamma"] == 1.0 and ppo["n_steps"] % steps == 0 and ppo["n_steps"] // ppo["batch_size"] >= 1
    a2c = hyperparameters(SearchConfig(agent="a2c"), steps)
    assert a2c["n_steps"] == steps
    dqn = hyperparameters(SearchConfig(agent="dqn", evaluations=100), steps)
    assert dqn["learning_starts"] == 20 * steps and dqn["train_freq"] == (1, "episode")
    assert dqn["exploration_fraction"] == pytest.approx(2 * 100 / (20 * 100))
    tuned = hyperparameters(SearchConfig(agent="dqn", warmup_episodes=0, sb3=(("train_freq", [2, "step"]), ("gamma", 0.9))), steps)
    assert (tuned["learning_starts"], tuned["train_freq"], tuned["gamma"]) == (0, (2, "step"), 0.9)


def test_every_default_is_a_real_hyperparameter_of_its_algorithm():
    import inspect

    for agent in RL_AGENTS:
        accepted = inspect.signature(algorithm_class(agent).__init__).parameters
        assert set(hyperparameters(SearchConfig(agent=agent), 4)) <= set(accepted)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_a_clear_error(target, tmp_path):
    config = SearchConfig(agent="ppo", target="toy", evaluations=2, tensorboard=str(tmp_path))
    with pytest.raises(ValueError, match=r"needs the `tensorboard` package"):
        search(target, config)
