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
    # The plain agents (a warm start's scan evaluates single layers, over the budget by design).
    config = SearchConfig(agent=agent, target="toy", budget=0.5, evaluations=6, warm_start=False,
                          sb3=(("policy_kwargs", {"net_arch": [16]}),))
    log, reason = search(target, config)
    assert reason == "budget"
    assert log.count == 6 == len(decodes) == len(set(decodes))
    assert all(r.size_ratio <= 0.5 + 1e-9 for r in log.records)  # clamp and mask keep the budget


def test_on_policy_agents_warm_start_by_default_and_not_when_told():
    assert SearchConfig().agent == "ppo" and SearchConfig().warm_started
    assert SearchConfig(agent="a2c").warm_started and SearchConfig(agent="maskable_ppo").warm_started
    assert not SearchConfig(agent="ppo", warm_start=False).warm_started
    assert not SearchConfig(agent="dqn").warm_started and not SearchConfig(agent="greedy").warm_started
    with pytest.raises(ValueError, match="warm_start applies to the on-policy RL agents"):
        SearchConfig(agent="dqn", warm_start=True)
    with pytest.raises(TypeError, match="warm_start must be True, False or None"):
        SearchConfig(warm_start="yes")


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


def _greedy(target, config):
    from agents.baselines import run_greedy

    env = ShrinkMLEnv(target=target, budget=config.budget)
    log = SearchLog(config.evaluations, env)
    recorder = EvaluationRecorder(env, log)
    recorder.reset(seed=0)
    run_greedy(SearchConfig(agent="greedy", target="toy", budget=config.budget, evaluations=config.evaluations),
               recorder, log, np.random.default_rng(0))
    return log


@pytest.mark.parametrize("agent", ["ppo", "maskable_ppo"])
def test_a_warm_start_scans_like_greedy_starts_at_its_allocation_and_then_learns(target, monkeypatch, agent):
    import agents.rl as rl

    config = SearchConfig(agent=agent, target="toy", budget=0.4, evaluations=30, warm_start=True)
    greedy = _greedy(target, config)
    cloned = {}
    imitate = rl._imitate

    def watched(model, env, allocation):
        cloned["probability"] = imitate(model, env, allocation)
        cloned["shape"] = model.observation_space.shape
        return cloned["probability"]

    monkeypatch.setattr(rl, "_imitate", watched)
    log, reason = search(target, config)
    assert reason == "budget" and log.count == 30
    scan = len([r for r in greedy.records if r.size_ratio > 0.4 + 1e-9])
    # The scan is greedy's (same configurations, same order), then greedy's predicted-best allocation.
    assert [r.ranks for r in log.records[: scan + 1]] == [r.ranks for r in greedy.records[: scan + 1]]
    assert cloned["probability"] >= 0.5 and cloned["shape"] == (16 + 9,)
    assert log.best().search_wer <= greedy.records[scan].search_wer


def test_sensitivity_features_are_the_steps_rise_scaled_into_unit_range(target):
    from agents.rl import SensitivityFeatures

    env = ShrinkMLEnv(target=target, budget=0.5)
    rise = np.arange(env.steps * env.menu.size, dtype=float).reshape(env.steps, env.menu.size)
    wrapped = SensitivityFeatures(env, rise)
    obs, _ = wrapped.reset()
    assert wrapped.observation_space.contains(obs)
    np.testing.assert_allclose(obs[16:], rise[0] / rise.max(), rtol=1e-6)
    obs, *_ = wrapped.step(3)
    np.testing.assert_allclose(obs[16:], rise[1] / rise.max(), rtol=1e-6)
    with pytest.raises(ValueError, match="sensitivity of shape"):
        SensitivityFeatures(env, rise[:-1])
    with pytest.raises(ValueError, match="warm_start applies to the on-policy RL agents"):
        SearchConfig(agent="greedy", warm_start=True)
