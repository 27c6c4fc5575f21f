"""Non-RL searchers, paying for evaluations exactly like the RL agents.

Each baseline drives the same env (wrapped by :class:`~agents.budget.EvaluationRecorder`),
so a configuration costs one evaluation the first time and nothing afterwards, and each
stops when the :class:`~agents.budget.SearchLog` is exhausted:

* ``uniform`` — the same rank fraction for every layer: the largest menu action whose uniform
  configuration fits the budget (the paper's manual comparison). One evaluation.
* ``random`` — every step draws uniformly among the actions that keep the budget reachable.
* ``greedy`` — per-layer sensitivity (each layer alone at each menu rank, the rest dense),
  an allocation minimising the predicted (additive) WER rise under the budget, then hill
  climbing on measured rewards by moving one menu step of rank between two layers.
* ``evolution`` — regularised evolution (Real et al. 2019): tournament selection, one-gene
  mutation, the oldest member dies.

Every function returns why it stopped: ``"budget"``, ``"episode_limit"`` or ``"done"``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agents.budget import EvaluationRecorder, SearchLog, play
from agents.config import SearchConfig
from agents.workers import play_batch
from shrinkml_env.env import ShrinkMLEnv

__all__ = ["BASELINES", "Sensitivity", "pareto_allocations", "random_actions", "random_episode",
           "sensitivity_scan", "uniform_action"]

logger = logging.getLogger(__name__)
_TOLERANCE = 1e-9


def uniform_action(env: ShrinkMLEnv, budget: float) -> int:
    """Largest menu action that fits ``budget`` when every step takes it (0 if none does)."""
    totals = env.costs.unit_costs.sum(axis=0)
    fitting = np.nonzero(totals <= env.costs.capacity(budget) + _TOLERANCE)[0]
    return int(fitting.max()) if fitting.size else 0


def _stop_reason(log: SearchLog, config: SearchConfig) -> str | None:
    if log.exhausted:
        return "budget"
    if log.episodes >= config.episode_limit:
        return "episode_limit"
    return None


def random_episode(env: EvaluationRecorder, rng: np.random.Generator) -> dict:
    """One episode of uniformly drawn feasible actions; returns the terminal info."""
    env.reset()
    while True:
        feasible = np.flatnonzero(env.action_masks())
        _, _, terminated, _, info = env.step(int(rng.choice(feasible)))
        if terminated:
            return info


def run_uniform(config: SearchConfig, env: EvaluationRecorder, log: SearchLog, rng: np.random.Generator) -> str:
    main = env.unwrapped
    play(env, [uniform_action(main, main.budget)] * main.steps)
    return _stop_reason(log, config) or "done"


def random_actions(env: ShrinkMLEnv, rng: np.random.Generator) -> list[int]:
    """The actions :func:`random_episode` draws with the same ``rng``, without playing them."""
    used, actions = 0.0, []
    for t in range(env.steps):
        feasible = np.arange(env.menu.size) if env.constraint == "punish" else np.flatnonzero(env._feasible(t, used))
        action = int(rng.choice(feasible))
        actions.append(action)
        used += float(env.costs.unit_costs[t, action])
    return actions


def _pool(env: EvaluationRecorder):
    """The search's worker pool when it has several workers, else None (play serially)."""
    pool = getattr(env, "pool", None)
    return pool if pool is not None and pool.workers > 1 else None


def run_random(config: SearchConfig, env: EvaluationRecorder, log: SearchLog, rng: np.random.Generator) -> str:
    pool = _pool(env)
    while (reason := _stop_reason(log, config)) is None:
        if pool is None:
            random_episode(env, rng)
        else:  # the same draws, evaluated ``workers`` at a time: the serial run's results
            batch = [random_actions(env.unwrapped, rng) for _ in range(pool.workers)]
            play_batch(env, pool, batch, log.limit - log.count)
    return reason


def run_evolution(
    config: SearchConfig,
    env: EvaluationRecorder,
    log: SearchLog,
    rng: np.random.Generator,
    population_size: int | None = None,
    sample_size: int | None = None,
) -> str:
    """Regularised evolution; population and tournament sizes scale with the budget."""
    population_size = population_size or int(np.clip(config.evaluations // 5, 2, 32))
    sample_size = sample_size or max(2, population_size // 4)
    menu_size = env.unwrapped.menu.size
    population: deque[tuple[tuple[int, ...], float]] = deque()
    while (reason := _stop_reason(log, config)) is None:
        if len(population) < population_size:
            info = random_episode(env, rng)
        else:
            picks = rng.choice(len(population), size=min(sample_size, len(population)), replace=False)
            parent = max((population[i] for i in picks), key=lambda member: member[1])[0]
            child = list(parent)
            gene = int(rng.integers(len(child)))
            child[gene] = int(rng.choice([a for a in range(menu_size) if a != child[gene]]))
            info = play(env, child)
            population.popleft()
        record = log.known.get(tuple(int(r) for r in info["ranks"]))
        if record is not None:
            population.append((tuple(int(a) for a in info["actions"]), record.reward))
    return reason


@dataclass(frozen=True)
class Sensitivity:
    """What the sensitivity scan measured and predicts.

    Attributes:
        rise: ``(steps, K)`` search-score rise over the dense model of each menu action at
            each step with every other step dense (measured where scanned, interpolated
            between scanned actions elsewhere; 0 at "keep dense").
        allocation: the allocation within the budget of the lowest summed rise (one action
            per step), or None when none fits.
        capacity: the budget in the env's budgeted units (parameters or milliseconds).
    """

    rise: np.ndarray
    allocation: tuple[int, ...] | None
    capacity: float


def sensitivity_scan(config: SearchConfig, env: EvaluationRecorder, log: SearchLog
                     ) -> tuple[Sensitivity | None, str | None]:
    """Each step alone at evenly spaced menu actions (every other step dense), then the
    allocation those measurements predict best (an exact multiple-choice knapsack).

    The scan spends at most ``steps × (K − 1)`` evaluations, fewer when the budget is small
    (``(evaluations − 1) // steps`` levels), from the whole budget so a resumed run replays it.

    Returns:
        ``(sensitivity, None)``; ``(None, None)`` when the budget cannot scan one level per
        step; ``(None, reason)`` when the search must stop during the scan.
    """
    main: ShrinkMLEnv = env.unwrapped
    steps, menu_size = main.costs.unit_costs.shape
    dense = menu_size - 1
    levels = min(dense, (log.limit - 1) // steps)
    if levels < 1:
        logger.warning("sensitivity scan: %d evaluations cannot scan %d layers", log.limit, steps)
        return None, None
    scanned = np.unique(np.round(np.linspace(0, dense - 1, levels)).astype(int))
    # Single-layer configurations exceed the budget, so they are measured through an
    # unconstrained twin env sharing the cache and the log.
    twin = ShrinkMLEnv(
        target=main.target, budget=1.0, reward=main.reward_fn, constraint="clamp",
        rank_menu=main.menu, granularity=main.granularity, device=str(main.plan.device or "cpu"),
        factorisation=main.factorisation, budget_metric=main.budget_metric,
        latency_batch=main.latency_batch, latency_table=main.latency_table_path,
    )
    twin.cache = main.cache
    twin_env = EvaluationRecorder(twin, log)
    baseline = main.target.baseline_error
    wer = np.full((steps, menu_size), np.nan)
    wer[:, dense] = baseline
    scan = [(t, int(action)) for t in range(steps) for action in scanned]
    episodes = [[dense] * t + [action] + [dense] * (steps - t - 1) for t, action in scan]
    if (pool := _pool(env)) is not None:  # the whole scan at once, on the workers
        infos = play_batch(twin_env, pool, episodes, log.limit - log.count)
        for (t, action), info in zip(scan, infos):
            wer[t, action] = info["wer"]
        if (reason := _stop_reason(log, config)) is not None and len(infos) < len(scan):
            return None, reason
    else:
        for (t, action), actions in zip(scan, episodes):
            if (reason := _stop_reason(log, config)) is not None:
                return None, reason
            wer[t, action] = play(twin_env, actions)["wer"]
    known = np.append(scanned, dense)
    for t in range(steps):  # unscanned menu ranks: interpolate between measured neighbours
        wer[t] = np.interp(np.arange(menu_size), known, wer[t, known])
    capacity = main.costs.capacity(main.budget)
    allocations = pareto_allocations(main.costs.unit_costs, wer - baseline, capacity)
    return Sensitivity(wer - baseline, allocations[0] if allocations else None, capacity), None


def run_greedy(config: SearchConfig, env: EvaluationRecorder, log: SearchLog, rng: np.random.Generator) -> str:
    """Sensitivity scan, predicted-best allocation, then hill climbing on measured rewards."""
    scan, reason = sensitivity_scan(config, env, log)
    if reason is not None:
        return reason
    if scan is None or scan.allocation is None:
        logger.warning("greedy: evaluating uniform compression instead")
        return run_uniform(config, env, log, rng)
    return _hill_climb(config, env, log, scan.allocation, scan.rise, scan.capacity)


def _hill_climb(
    config: SearchConfig,
    env: EvaluationRecorder,
    log: SearchLog,
    start: tuple[int, ...],
    predicted_rise: np.ndarray,
    capacity: float,
) -> str:
    params = env.unwrapped.costs.unit_costs
    current = start
    info = play(env, current)
    best_reward = log.known[tuple(info["ranks"])].reward
    while True:
        neighbours = []
        for candidate in _moves(current, params.shape[1]):
            if params[np.arange(len(candidate)), candidate].sum() > capacity + _TOLERANCE:
                continue
            predicted = float(predicted_rise[np.arange(len(candidate)), candidate].sum())
            neighbours.append((predicted, candidate))
        improved = False
        for _, candidate in sorted(set(neighbours)):
            if (reason := _stop_reason(log, config)) is not None:
                return reason
            record = log.known.get(tuple(play(env, candidate)["ranks"]))
            if record is not None and record.reward > best_reward + 1e-12:
                current, best_reward, improved = candidate, record.reward, True
                break
        if not improved:
            return "done"


def _moves(actions: tuple[int, ...], menu_size: int) -> set[tuple[int, ...]]:
    """Allocations one menu step away: rank moved from layer ``j`` to ``i``, or ``i`` shrunk."""
    moves = set()
    for i in range(len(actions)):
        for j in range(len(actions)):
            candidate = list(actions)
            candidate[j] -= 1
            if i != j:
                candidate[i] += 1
            if min(candidate) >= 0 and max(candidate) < menu_size:
                moves.add(tuple(candidate))
    return moves


def pareto_allocations(unit_params: np.ndarray, cost: np.ndarray, capacity: float) -> list[tuple[int, ...]]:
    """Allocations of one action per step within ``capacity`` parameters, cheapest first.

    Exact multiple-choice knapsack by dynamic programming over Pareto-optimal partial
    allocations (fewer parameters or lower summed cost).

    Args:
        unit_params: ``(steps, K)`` parameters each action leaves at each step.
        cost: ``(steps, K)`` predicted cost (WER rise) of each action at each step.
        capacity: largest total of parameters allowed.

    Returns:
        The Pareto-optimal complete allocations, by ascending predicted cost.
    """
    steps = unit_params.shape[0]
    min_rest = np.concatenate([np.cumsum(unit_params.min(axis=1)[::-1])[::-1], [0.0]])
    states: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]  # (params, cost, actions)
    for t in range(steps):
        grown = [
            (p + unit_params[t, a], c + cost[t, a], actions + (a,))
            for p, c, actions in states
            for a in range(unit_params.shape[1])
            if p + unit_params[t, a] + min_rest[t + 1] <= capacity + _TOLERANCE
        ]
        grown.sort(key=lambda s: (s[0], s[1]))
        states, lowest = [], np.inf
        for state in grown:  # keep a state only if no smaller one is as cheap
            if state[1] < lowest - 1e-15:
                states.append(state)
                lowest = state[1]
    return [actions for _, _, actions in sorted(states, key=lambda s: (s[1], s[0]))]


BASELINES: dict[str, Callable[[SearchConfig, EvaluationRecorder, SearchLog, np.random.Generator], str]] = {
    "uniform": run_uniform,
    "random": run_random,
    "greedy": run_greedy,
    "evolution": run_evolution,
}
