"""ShrinkML-v0 on the toy target: API conformance, constraints, determinism, records, errors."""

import math
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import shrinkml_env  # noqa: F401  (registers the env)
from shrinkml_env.env import OBSERVATION_FEATURES, ShrinkMLEnv
from shrinkml_env.records import EpisodeRecord
from shrinkml_env.search_space import MENUS, RankMenu
from shrinkml_env.target import CompressionTarget


def make(target, **kw):
    return ShrinkMLEnv(target=target, **kw)


def run_episode(env, actions):
    obs, _ = env.reset(seed=0)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        assert not truncated
    assert terminated
    return observations, rewards, info


def test_registered_and_made_by_id():
    env = gym.make("ShrinkML-v0", target="toy", budget=0.5)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (len(OBSERVATION_FEATURES),)
    assert env.observation_space.contains(obs)
    assert gym.spec("ShrinkML-v0").entry_point == "shrinkml_env.env:ShrinkMLEnv"


@pytest.mark.parametrize("granularity", ["layer", "matrix"])
@pytest.mark.parametrize("continuous", [False, True])
def test_gymnasium_and_sb3_checkers(target, granularity, continuous):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(target, budget=0.5, granularity=granularity, continuous=continuous)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)


def test_episode_length_rewards_and_terminal_info(target):
    env = make(target, budget=0.5)
    assert env.steps == 4
    _, rewards, info = run_episode(env, [3] * env.steps)
    assert rewards[:-1] == [0.0] * (env.steps - 1)
    for key in ("ranks", "wer", "baseline_wer", "size_ratio", "params", "reward_name", "cache_hit"):
        assert key in info
    assert 0 < info["size_ratio"] <= 0.5
    assert info["reward_name"] == "wer_size"
    assert info["baseline_wer"] == pytest.approx(target.baseline_error)


def test_all_dense_is_exact(target):
    env = make(target, budget=1.0)
    _, rewards, info = run_episode(env, [env.menu.dense_action] * env.steps)
    assert info["size_ratio"] == 1.0
    assert info["wer"] == pytest.approx(target.baseline_error)
    assert rewards[-1] == pytest.approx(0.0)


def test_same_actions_same_everything_and_cache(target):
    a = make(target, budget=0.4)
    b = make(target, budget=0.4)
    actions = [5, 2, 7, 1]
    obs_a, rew_a, info_a = run_episode(a, actions)
    obs_b, rew_b, info_b = run_episode(b, actions)
    np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))
    assert rew_a == rew_b and info_a == info_b
    assert not info_a["cache_hit"]
    _, rew_again, info_again = run_episode(a, actions)
    assert info_again["cache_hit"] and rew_again == rew_a
    assert (a.cache.hits, a.cache.misses) == (1, 1)


@settings(max_examples=40, deadline=None)
@given(
    actions=st.lists(st.integers(0, 8), min_size=4, max_size=4),
    budget=st.floats(0.1, 1.0),
    constraint=st.sampled_from(["clamp", "mask"]),
)
def test_constraints_always_respect_the_budget(target, actions, budget, constraint):
    env = make(target, budget=budget, constraint=constraint)
    env.reset()
    for a in actions:
        if constraint == "mask":
            mask = env.action_masks()
            assert mask.any() and mask[0]
            if not mask[a]:
                a = int(np.nonzero(mask)[0].max())
        *_, terminated, _, info = env.step(a)
    assert terminated
    assert info["size_ratio"] <= budget + 1e-9


def test_punish_penalises_excess(target):
    env = make(target, budget=0.2, constraint="punish", reward="budget_wer")
    _, rewards, info = run_episode(env, [env.menu.dense_action] * env.steps)
    assert info["size_ratio"] == 1.0
    assert rewards[-1] <= -5 * (1.0 - 0.2) / 0.2 + 1e-9 - math.log(info["wer"] / info["baseline_wer"]) + 1e-6


def test_continuous_actions_map_onto_the_menu(target):
    env = make(target, budget=1.0, continuous=True)
    env.reset()
    _, _, _, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["action_taken"] == env.menu.dense_action
    _, _, _, _, info = env.step(np.array([-1.0], dtype=np.float32))
    assert info["action_taken"] == 0


def test_records_round_trip_and_validate(target, tmp_path):
    env = make(target, budget=0.45, reward="accuracy_guaranteed")
    _, rewards, info = run_episode(env, [4, 4, 2, 6])
    record = env.record(info, rewards[-1])
    again = EpisodeRecord.from_json(record.to_json())
    assert again == record
    fresh = make(target, budget=0.45, reward="accuracy_guaranteed")
    assert fresh.validate(again)
    forged = EpisodeRecord.from_dict({**again.to_dict(), "reward": again.reward + 1})
    with pytest.raises(ValueError, match="reward .* != recorded"):
        fresh.validate(forged)
    other = make(target, budget=0.5, reward="accuracy_guaranteed")
    with pytest.raises(ValueError, match="budget is 0.45 in the record but 0.5"):
        other.apply(again)


def test_persistent_cache_is_shared(target, tmp_path):
    path = tmp_path / "cache.sqlite"
    first = make(target, budget=0.5, cache=str(path))
    _, _, info = run_episode(first, [1, 2, 3, 4])
    assert not info["cache_hit"]
    second = make(target, budget=0.5, cache=str(path))
    _, _, info2 = run_episode(second, [1, 2, 3, 4])
    assert info2["cache_hit"] and info2["wer"] == info["wer"]
    assert len(second.cache) == 1


def test_env_pickles(target):
    env = make(target, budget=0.5, cache=None)
    clone = pickle.loads(pickle.dumps(env))
    _, r1, _ = run_episode(env, [0, 1, 2, 3])
    _, r2, _ = run_episode(clone, [0, 1, 2, 3])
    assert r1 == r2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0.0}, r"budget must be a size ratio in \(0, 1\]; got 0.0"),
        ({"budget": 1.5}, r"got 1.5"),
        ({"reward": "speed"}, r"unknown reward 'speed'; registered: wer_size"),
        ({"constraint": "hope"}, r"unknown constraint 'hope'; accepted: clamp, mask, punish"),
        ({"granularity": "block"}, r"unknown granularity 'block'"),
        ({"rank_menu": "tiny"}, r"unknown rank menu 'tiny'"),
        ({"rank_menu": (0.5, 0.25)}, r"strictly ascending"),
        ({"budget": 0.01}, r"below the smallest size ratio"),
        ({"score": "loss"}, r"score 'loss' applies to the built-in speech targets; a CompressionTarget"),
    ],
)
def test_bad_arguments(target, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(target, **kwargs)


def test_bad_steps(target):
    env = make(target, budget=0.5)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.reset()
    for bad in (9, -1, 2.5, "a"):
        with pytest.raises(ValueError, match=r"integer in \[0, 8\]"):
            env.step(bad)
    for _ in range(env.steps):
        env.step(1)
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(1)


def test_bad_targets(target):
    with pytest.raises(ValueError, match="empty list"):
        CompressionTarget(model=target.model, layers=[], evaluate=target.evaluate)
    with pytest.raises(ValueError, match="'nope' is not a submodule"):
        CompressionTarget(model=target.model, layers=["nope"], evaluate=target.evaluate)
    nan_target = CompressionTarget(model=target.model, layers=["head"], evaluate=lambda m: float("nan"))
    with pytest.raises(ValueError, match="returned nan"):
        make(nan_target, budget=0.9).reset()
        _ = nan_target.baseline_error


def _toy_env():
    return gym.make("ShrinkML-v0", target="toy", budget=0.5)


def test_vector_envs():
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    actions = np.array([3, 5])
    for vec in (
        DummyVecEnv([_toy_env, _toy_env]),
        SubprocVecEnv([_toy_env, _toy_env], start_method="spawn"),
    ):
        vec.reset()
        for _ in range(4):
            _, rewards, dones, infos = vec.step(actions)
        assert dones.all() and rewards[0] != 0.0
        assert all(i["size_ratio"] <= 0.5 for i in infos)
        vec.close()
    for vec in (
        gym.vector.SyncVectorEnv([_toy_env, _toy_env]),
        gym.vector.AsyncVectorEnv([_toy_env, _toy_env], context="spawn"),
    ):
        vec.reset(seed=0)
        for _ in range(4):
            _, rewards, terminated, _, _ = vec.step(actions)
        assert terminated.all()
        vec.close()


def test_module_prefixed_id_from_a_bare_interpreter():
    import subprocess
    import sys

    code = (
        "import gymnasium as gym; "
        "env = gym.make('shrinkml_env:ShrinkML-v0', target='toy'); "
        "print(env.reset(seed=0)[0].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "(16,)" in out.stdout


@pytest.mark.parametrize("budget", [0.3, 0.5])
def test_budget_relative_menu_holds_uniform_compression_at_the_budget(target, budget):
    from shrinkml_env.compression import all_matrices, describe_layers, uniform_ranks_at_size

    env = make(target, budget=budget, rank_menu="budget7")
    assert not env.menu.relative and env.menu.name.startswith("budget7@")
    one = list(MENUS["budget7"].fractions).index(1.0)
    _, _, info = run_episode(env, [one] * env.steps)
    uniform, size = uniform_ranks_at_size(all_matrices(describe_layers(target.model, target.layers)), budget)
    assert info["ranks"] == list(uniform.values())  # "1x everywhere" is uniform at the budget
    assert info["size_ratio"] == pytest.approx(size) and size <= budget
    # Every other point reallocates around it: the menu spans below and above that fraction.
    assert env.menu.fractions[0] < env.menu.fractions[one] < env.menu.fractions[-1]


def test_relative_menu_multipliers_are_checked_and_clipped_to_full_rank():
    with pytest.raises(ValueError, match="multipliers must be > 0"):
        RankMenu((0.0, 1.0), relative=True)
    menu = RankMenu((0.5, 1.0, 3.0, 4.0), "wide", relative=True).at_budget(0.4)
    assert menu.fractions == pytest.approx((0.2, 0.4, 1.0)) and not menu.relative
    absolute = RankMenu((0.25, 0.5))
    assert absolute.at_budget(0.3) is absolute
