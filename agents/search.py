"""One rank search, end to end: agent, evaluation budget, run directory, test WER, export.

:func:`run_search` drives ``ShrinkML-v0`` with the configured agent until it has spent its
evaluations (unique decodes of the search subset; cache hits are free), picks the best
configuration within the size budget by search-subset WER (ties: the smaller model), exports
it truly factorised, and quotes its *test* WER next to the dense model's and next to uniform
compression at the budget. A rerun on the same run directory resumes: evaluations already
logged are loaded into the env's cache and are never decoded again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from agents.baselines import BASELINES, uniform_action
from agents.budget import EvaluationRecord, EvaluationRecorder, SearchLog, SearchProgress
from agents.config import OPTUNA_AGENTS, SearchConfig
from agents.run_dir import RunDir
from agents.targets import SearchTarget, make_search_target
from agents.workers import make_pool
from shrinkml_env.compression import uniform_ranks_at_size
from shrinkml_env.compression.timing import interleaved_medians_ms
from shrinkml_env.env import ShrinkMLEnv

__all__ = ["Candidate", "SearchResult", "run_search", "uniform_curve"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A compressed configuration and its scores.

    Attributes:
        label: how reports name it (``"ppo"``, ``"uniform 0.25"``…).
        ranks: rank of every compressible matrix, in plan order.
        size_ratio: compressible parameters after ÷ before.
        search_wer: error on the search subset.
        test_wer: error of the exported model on the test set.
        model_params: all parameters of the exported model.
    """

    label: str
    ranks: tuple[int, ...]
    size_ratio: float
    search_wer: float
    test_wer: float
    model_params: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ranks": list(self.ranks)}


@dataclass(frozen=True)
class SearchResult:
    """What a search found and what it cost.

    Attributes:
        config: the search's settings.
        run_dir: where its files are.
        evaluations: unique search-subset evaluations spent (restored ones included).
        new_evaluations: of those, how many this call paid for.
        episodes: episodes played, cache hits included.
        cache_hits: episodes this call answered from the cache.
        stop_reason: ``"budget"``, ``"episode_limit"`` or ``"done"`` (the agent finished).
        best: the best configuration within the budget; None if no evaluation fits it.
        uniform: uniform compression at the largest menu fraction within the budget.
        uniform_at_size: uniform compression at the best configuration's size or just above
            it (any common rank fraction, not only the menu's): the like-for-like opponent;
            under a latency budget, at its predicted latency or just above (menu fractions);
            None when nothing fits the budget. Measured outside the evaluation budget.
        baseline_search_wer: the dense model's search-subset error.
        baseline_test_wer: the dense model's test error.
        dense_model_params: all parameters of the dense model.
        seconds: wall time of this call.
        latency: latency budgets only: the exported model's ``predicted_ratio`` (the table's)
            and ``measured_ratio`` of the dense model's time on the target's latency workload
            (timed interleaved after the search, outside the evaluation budget), with both
            models' ``measured_ms``; None otherwise or when nothing fits the budget.
    """

    config: SearchConfig
    run_dir: Path
    evaluations: int
    new_evaluations: int
    episodes: int
    cache_hits: int
    stop_reason: str
    best: Candidate | None
    uniform: Candidate
    uniform_at_size: Candidate | None
    baseline_search_wer: float
    baseline_test_wer: float
    dense_model_params: int
    seconds: float
    latency: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        """The ``shrinkml search --json`` object."""
        best = None
        if self.best is not None:
            best = {k: self.best.to_dict()[k] for k in ("ranks", "size_ratio", "search_wer", "test_wer")}
        return {
            "agent": self.config.agent,
            "budget": self.config.budget,
            "evaluations": self.evaluations,
            "best": best,
            "baseline": {"test_wer": self.baseline_test_wer},
            "run_dir": str(self.run_dir),
            **({"latency": self.latency} if self.latency is not None else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (``result.json``)."""
        data = {k: getattr(self, k) for k in ("evaluations", "new_evaluations", "episodes", "cache_hits",
                                              "stop_reason", "baseline_search_wer", "baseline_test_wer",
                                              "dense_model_params", "seconds")}
        return {
            **self.summary(),
            **data,
            "config": self.config.to_dict(),
            "best_detail": None if self.best is None else self.best.to_dict(),
            "uniform": self.uniform.to_dict(),
            "uniform_at_size": None if self.uniform_at_size is None else self.uniform_at_size.to_dict(),
        }


def run_search(
    config: SearchConfig,
    run_dir: str | os.PathLike[str],
    search_target: SearchTarget | None = None,
    *,
    progress: Callable[[SearchProgress], None] | None = None,
) -> SearchResult:
    """Search ranks with ``config`` and write the run directory.

    Args:
        config: what to search and with which agent.
        run_dir: the run directory; an existing one with the same settings is resumed.
        search_target: the target and its test scorer (default: built from
            ``config.target``).
        progress: called with the search's state after every new evaluation.

    Returns:
        The result, also written to ``run_dir/result.json``.

    Raises:
        ValueError: ``run_dir`` holds a different search, or a setting does not fit the
            target (e.g. a budget below what the rank menu can reach).
        RunDirInUse: another process is searching in ``run_dir`` right now.
    """
    started = time.perf_counter()
    kit = search_target or make_search_target(
        config.target, test_utterances=config.test_utterances, device=config.device, score=config.score
    )
    scored_by = kit.target.score
    if scored_by is not None and scored_by != config.score:
        raise ValueError(
            f"the search target scores {scored_by!r} but the config steers by {config.score!r}; "
            f"build the target with score={config.score!r} or set SearchConfig(score={scored_by!r})"
        )
    env = ShrinkMLEnv(  # before the folder is touched: a setting the target cannot take writes nothing
        target=kit.target, budget=config.budget, reward=config.reward, constraint=config.constraint,
        rank_menu=config.rank_menu, granularity=config.granularity, device=config.device,
        factorisation=config.factorisation, budget_metric=config.budget_metric,
        latency_batch=config.latency_batch,
    )
    run = RunDir(run_dir)
    with run.lock():  # a second process on this folder is refused, never interleaved
        return _search_in(run, env, config, kit, progress, started)


def _search_in(run: RunDir, env: ShrinkMLEnv, config: SearchConfig, kit: SearchTarget,
               progress: Callable[[SearchProgress], None] | None, started: float) -> SearchResult:
    """:func:`run_search`'s work, in a run directory this process holds."""
    from agents.report import write_run_report

    restored = run.prepare(config, kit.target)

    def on_new(record: EvaluationRecord) -> None:
        run.append_evaluation(record)
        if progress is not None:
            progress(log.progress())

    log = SearchLog(config.evaluations, env, restored, on_new)
    if progress is not None:
        progress(log.progress())
    stop_reason = "budget"
    if not log.exhausted:
        recorder = EvaluationRecorder(env, log)
        recorder.reset(seed=config.seed)
        if config.is_rl:
            runner = _rl_runner()
        elif config.agent in OPTUNA_AGENTS:
            from agents.optuna_search import run_optuna as runner
        else:
            runner = BASELINES[config.agent]
        recorder.pool = make_pool(env, config.workers, address=config.ray_address, threads=config.worker_threads,
                                  gpus=config.worker_gpus, device=config.device)
        try:
            stop_reason = runner(config, recorder, log, np.random.default_rng(config.seed))
        finally:
            recorder.pool.close()
    curve = run.uniform_curve()
    if curve is None:
        curve = uniform_curve(env, log)
        run.write_json(run.curve_file, curve)
    best = log.best()
    if best is None:
        logger.warning("no evaluated configuration fits the budget %s; nothing exported", config.budget)
    uniform_point = curve[uniform_action(env, config.budget)]
    uniform = _test(kit, env, f"uniform {uniform_point['fraction']:.4g}", tuple(uniform_point["ranks"]),
                    uniform_point["search_wer"])
    chosen = matched = latency = None
    if best is not None:
        model = env.plan.export(best.ranks)
        chosen = _candidate(kit, env, config.agent, best.ranks, best.search_wer, model)
        kit.save_model(run.model_file, model, _model_meta(config, env, chosen))
        matched = (_uniform_at_latency(kit, env, log, best.latency_ratio) if config.budget_metric == "latency"
                   else _uniform_at_size(kit, env, log, chosen.size_ratio))
        if config.budget_metric == "latency":
            latency = _measured_latency(env, model, best.latency_ratio)
    result = SearchResult(
        config=config,
        run_dir=run.path,
        evaluations=log.count,
        new_evaluations=log.new_evaluations,
        episodes=log.episodes,
        cache_hits=log.cache_hits,
        stop_reason=stop_reason,
        best=chosen,
        uniform=uniform,
        uniform_at_size=matched,
        baseline_search_wer=float(kit.target.baseline_error),
        baseline_test_wer=float(kit.test_error(kit.target.model)),
        dense_model_params=_count(kit.target.model),
        seconds=time.perf_counter() - started,
        latency=latency,
    )
    run.write_json(run.result_file, result.to_dict())
    write_run_report(run, result, log.records, curve, kit.test_description)
    return result


def uniform_curve(env: ShrinkMLEnv, log: SearchLog) -> list[dict[str, Any]]:
    """Size and search WER of every uniform menu action (dense included), for comparison.

    Not charged to the search's budget: the points are measured after the search (or taken
    from its log), and never enter the cache the agent used.
    """
    curve = []
    for action in range(env.menu.size):
        ranks = env.plan.ranks([action] * env.steps)
        wer = _search_wer(env, log, tuple(ranks))
        fraction = env.menu.fraction(action)
        curve.append({
            "action": action,
            "fraction": 1.0 if fraction is None else fraction,
            "ranks": list(ranks),
            "size_ratio": env.plan.params(ranks) / env.plan.dense_total,
            "search_wer": float(wer),
        })
    return curve


def _uniform_at_size(kit: SearchTarget, env: ShrinkMLEnv, log: SearchLog, size: float) -> Candidate:
    """Uniform compression at ``size`` or just above, scored on the search subset and test set."""
    rank_map, _ = uniform_ranks_at_size(env.plan.matrices, size, at_least=True)
    ranks = tuple(rank_map[m.key] for m in env.plan.matrices)
    fraction = max(r / m.full_rank for r, m in zip(ranks, env.plan.matrices))
    return _test(kit, env, f"uniform {fraction:.3g} (same size)", ranks, _search_wer(env, log, ranks))


def _uniform_at_latency(kit: SearchTarget, env: ShrinkMLEnv, log: SearchLog, ratio: float) -> Candidate:
    """Uniform compression at the menu fraction whose predicted latency is ``ratio`` or just
    above (never faster than the choice it is set against), scored on the search subset and test."""
    ratios = [env.costs.ratio([action] * env.steps) for action in range(env.menu.size)]
    slower = [a for a, r in enumerate(ratios) if r >= ratio - 1e-9]
    action = min(slower, key=lambda a: ratios[a]) if slower else int(np.argmax(ratios))
    ranks = tuple(env.plan.ranks([action] * env.steps))
    fraction = env.menu.fraction(action)
    label = f"uniform {1.0 if fraction is None else fraction:.3g} (same latency)"
    return _test(kit, env, label, ranks, _search_wer(env, log, ranks))


def _search_wer(env: ShrinkMLEnv, log: SearchLog, ranks: tuple[int, ...]) -> float:
    """Search-subset error of ``ranks``: from the search's log when it evaluated them (no
    decode, and not charged to the budget either way), else decoded now."""
    known = log.known.get(ranks)
    return known.search_wer if known is not None else env.plan.target.checked_error(_applied(env, ranks))


def _applied(env: ShrinkMLEnv, ranks: tuple[int, ...]) -> nn.Module:
    search = env.plan.search_model
    search.apply(env.plan.rank_map(ranks))
    return search.model


def _rl_runner():
    from agents.rl import run_rl  # SB3 loads only for RL agents

    return run_rl


def _measured_latency(env: ShrinkMLEnv, exported: nn.Module, predicted_ratio: float | None,
                      repeats: int = 3) -> dict[str, float]:
    """The exported model timed end to end on the latency workload, interleaved with the dense one."""
    workload, batch, dense = env.plan.target.inference, env.latency_batch, env.plan.target.model
    exported = exported.eval()
    times = interleaved_medians_ms({"dense": lambda: workload(dense, batch), "exported": lambda: workload(exported, batch)},
                                   repeats=repeats, warmup=1)
    return {"predicted_ratio": float("nan") if predicted_ratio is None else float(predicted_ratio),
            "measured_ratio": times["exported"] / times["dense"],
            "dense_ms": times["dense"], "exported_ms": times["exported"], "batch_size": batch, "repeats": repeats}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _candidate(kit: SearchTarget, env: ShrinkMLEnv, label: str, ranks: tuple[int, ...],
               search_wer: float, model: nn.Module) -> Candidate:
    return Candidate(
        label=label,
        ranks=tuple(int(r) for r in ranks),
        size_ratio=env.plan.params(ranks) / env.plan.dense_total,
        search_wer=float(search_wer),
        test_wer=float(kit.test_error(model)),
        model_params=_count(model),
    )


def _test(kit: SearchTarget, env: ShrinkMLEnv, label: str, ranks: tuple[int, ...], search_wer: float) -> Candidate:
    return _candidate(kit, env, label, ranks, search_wer, env.plan.export(ranks))


def _model_meta(config: SearchConfig, env: ShrinkMLEnv, chosen: Candidate) -> dict[str, Any]:
    return {
        "search_config": config.to_dict(),
        "ranks": env.plan.rank_map(chosen.ranks),
        "size_ratio": chosen.size_ratio,
        "search_wer": chosen.search_wer,
        "test_wer": chosen.test_wer,
        "target_fingerprint": env.target.fingerprint,
    }
