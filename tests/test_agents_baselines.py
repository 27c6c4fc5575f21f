"""Non-RL baselines on the toy target: exact budgets, allocations, determinism."""

import itertools

import numpy as np
import pytest

from agents.baselines import BASELINES, pareto_allocations, uniform_action
from agents.budget import EvaluationRecorder, SearchLog
from agents.config import SearchConfig
from shrinkml_env.env import ShrinkMLEnv


def search(target, agent, evaluations, budget=0.5, seed=0, **kwargs):
    config = SearchConfig(agent=agent, target="toy", evaluations=evaluations, budget=budget, seed=seed, **kwargs)
    env = ShrinkMLEnv(target=target, budget=budget)
    log = SearchLog(evaluations, env)
    recorder = EvaluationRecorder(env, log)
    recorder.reset(seed=seed)
    reason = BASELINES[agent](config, recorder, log, np.random.default_rng(seed))
    return log, reason, env


@pytest.mark.parametrize(("agent", "evaluations"), [("random", 7), ("evolution", 15), ("greedy", 9), ("greedy", 40)])
def test_baselines_spend_exactly_their_budget(target, decodes, agent, evaluations):
    log, reason, _ = search(target, agent, evaluations)
    assert reason == "budget"
    assert log.count == evaluations == len(decodes) == len(set(decodes))
    assert [r.ranks for r in log.records] == decodes


def test_uniform_evaluates_one_configuration_the_largest_uniform_fraction_that_fits(target, decodes):
    log, reason, env = search(target, "uniform", 5, budget=0.3)
    assert (reason, log.count, len(decodes)) == ("done", 1, 1)
    action = uniform_action(env, 0.3)
    assert log.records[0].actions == (action,) * env.steps
    assert log.records[0].size_ratio <= 0.3 < env.plan.unit_params[:, action + 1].sum() / env.plan.dense_total


def test_greedy_scans_every_layer_alone_then_allocates_within_the_budget(target):
    log, _, env = search(target, "greedy", 40)
    steps, dense = env.steps, env.menu.size - 1
    # First each layer alone at each menu rank (fewer records where two ranks round alike) …
    scan = list(itertools.takewhile(lambda r: sum(a != dense for a in r.actions) == 1, log.records))
    assert {r.actions.index(min(r.actions)) for r in scan} == set(range(steps))
    assert steps * dense - 4 <= len(scan) <= steps * dense
    # … then allocations within the budget.
    assert all(r.size_ratio <= 0.5 + 1e-9 for r in log.records[len(scan) :])
    assert log.best() is not None


def test_searches_are_reproducible_from_the_seed(target):
    first = [r.ranks for r in search(target, "evolution", 12, seed=3)[0].records]
    again = [r.ranks for r in search(target, "evolution", 12, seed=3)[0].records]
    other = [r.ranks for r in search(target, "evolution", 12, seed=4)[0].records]
    assert first == again != other


def test_episode_limit_ends_a_search_that_finds_nothing_new(target):
    log, reason, _ = search(target, "random", 1000, max_episodes=6)
    assert (reason, log.episodes) == ("episode_limit", 6)


def test_pareto_allocations_match_brute_force():
    rng = np.random.default_rng(0)
    params = np.sort(rng.integers(1, 50, size=(4, 5)), axis=1).astype(float)
    cost = np.sort(rng.random((4, 5)), axis=1)[:, ::-1]  # more rank, less WER rise
    capacity = 0.5 * params[:, -1].sum()
    allocations = pareto_allocations(params, cost, capacity)
    feasible = [a for a in itertools.product(range(5), repeat=4) if params[range(4), a].sum() <= capacity]
    best = min(cost[range(4), a].sum() for a in feasible)
    assert cost[range(4), allocations[0]].sum() == pytest.approx(best)
    assert all(params[range(4), a].sum() <= capacity for a in allocations)
