"""SearchConfig validation, SB3 override parsing and resume comparison."""

import json

import pytest

from agents.config import AGENTS, DEFAULT_SCORE, SearchConfig, parse_sb3_overrides, read_sb3_config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agent": "sac"}, r"unknown agent 'sac'; accepted: ppo, a2c, dqn, maskable_ppo, uniform"),
        ({"evaluations": 0}, r"evaluations must be an integer >= 1; got 0"),
        ({"evaluations": 2.5}, r"evaluations must be an integer >= 1; got 2.5"),
        ({"budget": 0.0}, r"budget must be a size ratio in \(0, 1\]; got 0.0"),
        ({"budget": 1.2}, r"budget must be a size ratio in \(0, 1\]; got 1.2"),
        ({"budget": float("nan")}, r"budget must be a size ratio in \(0, 1\]; got nan"),
        ({"reward": "speed"}, r"unknown reward 'speed'; accepted: wer_size"),
        ({"constraint": "ignore"}, r"unknown constraint 'ignore'; accepted: clamp, mask, punish"),
        ({"rank_menu": "linear3"}, r"unknown rank_menu 'linear3'"),
        ({"max_episodes": 0}, r"max_episodes must be an integer >= 1"),
        ({"warmup_episodes": -1}, r"warmup_episodes must be an integer >= 0"),
        ({"agent": "random", "sb3": (("gamma", 0.9),)}, r"given for the baseline agent 'random'"),
        ({"agent": "ppo", "sb3": (("buffer_size", 10),)}, r"ppo takes no hyperparameter\(s\) \['buffer_size'\]"),
        ({"agent": "dqn", "sb3": (("seed", 3),)}, r"dqn takes no hyperparameter\(s\) \['seed'\]"),
        ({"score": "bleu"}, r"unknown score 'bleu'; accepted: wer, cer, loss, distill"),
        ({"score": "loss"}, r"score 'loss' needs a speech recogniser; the toy target"),
    ],
)
def test_bad_settings_are_refused_with_the_value_and_the_accepted_ones(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchConfig(target="toy", **kwargs)


def test_score_defaults_per_target_and_is_recorded_resolved():
    assert SearchConfig().score == DEFAULT_SCORE == "distill"  # the measured best on a recogniser
    assert SearchConfig(target="toy").score == "wer"  # the toy target has only an error rate
    assert SearchConfig(score="wer").score == "wer"
    # A run directory records the score it steered by, not "the default", so a later change
    # of the default cannot change what a resumed search means.
    assert SearchConfig().to_dict()["score"] == "distill"
    assert SearchConfig.from_dict(SearchConfig(target="toy").to_dict()).score == "wer"


def test_constraint_defaults_to_masks_for_maskable_ppo_only():
    assert SearchConfig(agent="maskable_ppo").constraint == "mask"
    assert SearchConfig(agent="ppo").constraint == "clamp"
    assert SearchConfig(agent="ppo", constraint="punish").constraint == "punish"


def test_round_trip_through_json_and_resume_differences():
    config = SearchConfig(agent="dqn", target="toy", sb3=(("train_freq", (1, "episode")), ("gamma", 0.99)))
    again = SearchConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.to_dict() == config.to_dict()
    assert again.differences(config) == []
    # More evaluations resume the same search; another agent or seed is another search.
    assert SearchConfig(agent="dqn", target="toy", evaluations=500, sb3=config.sb3).differences(config) == []
    assert SearchConfig(agent="dqn", target="toy", seed=1, sb3=config.sb3).differences(config) == ["seed: 0 != 1"]
    with pytest.raises(ValueError, match=r"unknown search config fields \['colour'\]"):
        SearchConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_sb3_overrides_parse_literals_and_later_values_win(tmp_path):
    pairs = parse_sb3_overrides(["learning_rate=3e-4", "policy=MlpPolicy", "policy_kwargs={'net_arch': [8]}",
                                 "train_freq=(1, 'episode')"])
    assert dict(pairs) == {"learning_rate": 3e-4, "policy": "MlpPolicy",
                           "policy_kwargs": {"net_arch": [8]}, "train_freq": (1, "episode")}
    file = tmp_path / "ppo.json"
    file.write_text(json.dumps({"learning_rate": 0.1, "n_epochs": 3}))
    config = SearchConfig(agent="ppo", sb3=read_sb3_config(file) + parse_sb3_overrides(["learning_rate=0.2"]))
    assert dict(config.sb3) == {"learning_rate": 0.2, "n_epochs": 3}
    with pytest.raises(ValueError, match=r"SB3 override 'gamma' is not NAME=VALUE"):
        parse_sb3_overrides(["gamma"])
    file.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"must hold one JSON object; got list"):
        read_sb3_config(file)
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        read_sb3_config(tmp_path / "missing.json")


def test_every_agent_is_a_valid_setting():
    assert {SearchConfig(agent=a).agent for a in AGENTS} == set(AGENTS)
