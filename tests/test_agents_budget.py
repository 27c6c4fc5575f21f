"""The evaluation budget: unique evaluations counted through the env's cache, best within budget."""

import pytest

from agents.budget import (
    EvaluationRecord,
    EvaluationRecorder,
    SearchLog,
    best_within_budget,
    play,
    search_reward,
)
from shrinkml_env.env import ShrinkMLEnv


def record(index, wer, size, ranks=None):
    return EvaluationRecord(index=index, ranks=ranks or (index,), actions=(0,), search_wer=wer,
                            size_ratio=size, params=1, reward=-wer, episode=index)


def test_best_within_budget_prefers_low_wer_then_small_size_then_earlier():
    records = [
        record(0, 0.20, 0.31),  # best WER, but over the budget
        record(1, 0.25, 0.30),
        record(2, 0.25, 0.28),  # same WER, smaller: wins
        record(3, 0.25, 0.28),  # identical, later: loses the tie
        record(4, 0.40, 0.10),
    ]
    assert best_within_budget(records, 0.3).index == 2
    assert best_within_budget(records, 0.35).index == 0
    assert best_within_budget(records, 0.05) is None
    assert best_within_budget([], 0.3) is None


def test_log_counts_unique_evaluations_and_refuses_to_overshoot(target):
    env = ShrinkMLEnv(target=target, budget=0.5)
    seen = []
    log = SearchLog(2, env, on_new=seen.append)
    recorder = EvaluationRecorder(env, log)
    play(recorder, [1, 1, 1, 1])
    play(recorder, [1, 1, 1, 1])  # a cache hit: free
    assert (log.count, log.cache_hits, log.episodes, log.exhausted) == (1, 1, 2, False)
    info = play(recorder, [2, 2, 2, 2])
    assert log.exhausted and [r.index for r in seen] == [0, 1]
    assert seen[1].ranks == tuple(info["ranks"]) and seen[1].episode == 2
    play(recorder, [1, 1, 1, 1])  # known configurations stay free after the budget is spent
    with pytest.raises(RuntimeError, match=r"after the budget of 2 evaluations was spent"):
        play(recorder, [3, 3, 3, 3])


def test_restored_evaluations_are_free_and_count_towards_the_budget(target):
    first = ShrinkMLEnv(target=target, budget=0.5)
    log = SearchLog(3, first)
    play(EvaluationRecorder(first, log), [1, 2, 3, 0])
    env = ShrinkMLEnv(target=target, budget=0.5)
    resumed = SearchLog(3, env, restored=log.records)
    play(EvaluationRecorder(env, resumed), [1, 2, 3, 0])
    assert (resumed.count, resumed.new_evaluations, env.cache.misses, env.cache.hits) == (1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"already holds 1 evaluations, more than the budget of 0"):
        SearchLog(0, env, restored=log.records)


@pytest.mark.parametrize("constraint", ["clamp", "punish"])
def test_logged_reward_is_the_envs_reward(target, constraint):
    env = ShrinkMLEnv(target=target, budget=0.3, constraint=constraint)
    log = SearchLog(5, env)
    recorder = EvaluationRecorder(env, log)
    recorder.reset()
    for action in [8, 8, 8, 8]:
        _, reward, terminated, _, info = recorder.step(action)
    assert terminated
    assert log.records[0].reward == pytest.approx(reward)
    assert search_reward(env, info["wer"], info["params"]) == pytest.approx(reward)
    assert recorder.action_masks().shape == (env.menu.size,)
