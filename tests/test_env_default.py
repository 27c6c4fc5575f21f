"""ShrinkML-v0 on the shipped recogniser (the corpus' dev split is synthesised on first use;
about 25 s here once it exists: each terminal step decodes the 150-utterance search subset)."""

import pytest

from asr.default import DEFAULT_CHECKPOINT, SEARCH_SUBSET

pytestmark = [
    pytest.mark.skipif(
        not (DEFAULT_CHECKPOINT.is_file() and SEARCH_SUBSET.is_file()),
        reason="no shipped default model or search subset in this tree",
    ),
]


@pytest.fixture(scope="module")
def env():
    import gymnasium as gym

    import shrinkml_env  # noqa: F401

    return gym.make("ShrinkML-v0").unwrapped


def test_default_env_passes_both_checkers(env):
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)


def test_default_env_has_six_lstm_steps_and_scores_wer():
    import gymnasium as gym

    env = gym.make("ShrinkML-v0", budget=1.0).unwrapped
    assert env.steps >= 6
    env.reset(seed=0)
    for _ in range(env.steps):
        *_, terminated, _, info = env.step(env.menu.dense_action)
    assert terminated and info["size_ratio"] == 1.0
    assert info["wer"] == pytest.approx(info["baseline_wer"])
