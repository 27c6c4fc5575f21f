"""Optuna-backed searchers: TPE, CMA-ES and NSGA-II, by ask-and-tell over the env.

The tools an AutoML engineer reaches for first on a ~20-dimensional integer search under a
constraint. Each trial asks one menu index per env step (``step0``, ``step1``, …), so the
search space is exactly the env's (per layer or per matrix). The size budget is the
constraint, computed from the ranks alone, so a configuration over the budget is told to
Optuna as infeasible and **never decoded**:

* ``tpe`` — Optuna's TPE sampler with ``constraints_func`` (infeasible trials are modelled
  as such), maximising the search reward;
* ``cmaes`` — CMA-ES (Optuna's ``CmaEsSampler`` on the ``cmaes`` package), maximising the
  reward; it has no constraint handling, so an infeasible trial is told a penalty below the
  worst reward seen, growing with the excess size;
* ``nsga2`` — NSGA-II with ``constraints_func``, minimising (search WER, size ratio): its
  result is the size–WER Pareto front within the budget, which ``shrinkml report`` plots
  from ``evaluations.jsonl`` like any other run's.

Every decode goes through the same :class:`~agents.budget.EvaluationRecorder` as the other
agents, so the currency is the same: unique search-subset evaluations, cache hits free.
Resuming works like the other seeded baselines: the sampler is seeded by the search's seed,
and a rerun asks the same trials in the same order; the evaluations already in the run
directory are cache hits, told back at no cost, until the search reaches new ground. (An
Optuna storage would only duplicate ``evaluations.jsonl``, which is what the run directory
already resumes from.)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from agents.budget import EvaluationRecorder, SearchLog, play, search_reward
from agents.config import SearchConfig
from agents.workers import play_batch

__all__ = ["OPTUNA_SAMPLERS", "run_optuna"]

logger = logging.getLogger(__name__)

OPTUNA_SAMPLERS = ("tpe", "cmaes", "nsga2")
_TOLERANCE = 1e-9


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as e:
        raise ImportError(
            "the tpe, cmaes and nsga2 agents need Optuna: pip install 'shrinkml[optuna]' "
            "(optuna and cmaes)"
        ) from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _excess(trial: Any) -> list[float]:
    return [float(trial.user_attrs["size_excess"])]


def _native_constraints(optuna: Any) -> bool:
    """Optuna >= 5 takes constraints on the trial (``Trial.set_constraint``); 4 through
    the sampler's ``constraints_func``, deprecated since."""
    return hasattr(optuna.trial.Trial, "set_constraint")


def _sampler(optuna: Any, agent: str, seed: int, evaluations: int) -> Any:
    startup = int(np.clip(evaluations // 5, 5, 20))  # random trials before the model is used
    constraints = {} if _native_constraints(optuna) else {"constraints_func": _excess}
    if agent == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, **constraints)
    if agent == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if agent == "nsga2":
        population = int(np.clip(evaluations // 5, 4, 50))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population, **constraints)
    raise ValueError(f"unknown Optuna agent {agent!r}; accepted: {', '.join(OPTUNA_SAMPLERS)}")


def run_optuna(config: SearchConfig, env: EvaluationRecorder, log: SearchLog, rng: np.random.Generator) -> str:
    """Search with the Optuna sampler ``config.agent`` names until the evaluations are spent.

    Returns:
        ``"budget"`` when the evaluations are spent, ``"episode_limit"`` when
        ``config.episode_limit`` trials (infeasible and cached ones included) found nothing new.
    """
    optuna = _import_optuna()
    main = env.unwrapped
    unit_params = main.costs.unit_costs  # (steps, menu size): parameters, or ms of a latency budget
    steps, menu_size = unit_params.shape
    dense_total = main.costs.dense_total
    capacity = main.costs.capacity(main.budget)
    multi = config.agent == "nsga2"
    study = optuna.create_study(
        sampler=_sampler(optuna, config.agent, config.seed, config.evaluations),
        directions=["minimize", "minimize"] if multi else ["maximize"],
    )
    native = _native_constraints(optuna)
    worst_reward = None
    trials = 0
    pool = getattr(env, "pool", None)
    ask = pool.workers if pool is not None and pool.workers > 1 else 1
    while not log.exhausted:
        batch = []  # ``ask`` feasible trials at a time, decoded together on the workers
        while len(batch) < ask:
            if trials >= config.episode_limit:
                logger.warning("%s: %d trials found no new configuration; stopping", config.agent, trials)
                return "episode_limit"
            trial = study.ask()
            trials += 1
            actions = [trial.suggest_int(f"step{t}", 0, menu_size - 1) for t in range(steps)]
            params = float(unit_params[np.arange(steps), actions].sum())
            excess = (params - capacity) / dense_total
            trial.set_user_attr("size_excess", excess)
            if native and config.agent != "cmaes":
                trial.set_constraint("size_excess", excess)
            if excess > _TOLERANCE:  # over the budget: told as infeasible, never decoded
                if multi:
                    study.tell(trial, [1.0 + excess, (main.costs.fixed + params) / dense_total])
                else:
                    study.tell(trial, (worst_reward if worst_reward is not None else -1.0) - 1.0 - 10.0 * excess)
                continue
            batch.append((trial, actions))
        if ask == 1:
            infos = [play(env, batch[0][1])]
        else:
            infos = play_batch(env, pool, [actions for _, actions in batch], log.limit - log.count)
        for (trial, _), info in zip(batch, infos):
            # From the info, not the log: a hit in a cache shared with other runs is not in it.
            # NSGA-II's second objective is the budgeted ratio: size, or predicted latency.
            wer, ratio = float(info["wer"]), float(info.get("latency_ratio", info["size_ratio"]))
            reward = search_reward(main, wer, int(info["params"]), info.get("latency_ratio"))
            worst_reward = reward if worst_reward is None else min(worst_reward, reward)
            study.tell(trial, [wer, ratio] if multi else reward)
    return "budget"
