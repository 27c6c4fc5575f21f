"""Terminal evaluations on Ray workers: one search, many devices or machines.

A search spends its time decoding the search subset once per new configuration. With
``shrinkml search --workers N`` those decodes run on N Ray actors, each holding the target
model (and its SVD bank) once, on its own CPU threads or (fractional) GPU; the driver keeps
the agent, the environment, the evaluation cache and the budget. An
:class:`EvaluationPool` takes a batch of rank vectors and returns their errors in order:

* :class:`LocalPool` evaluates them one by one in the driver (``--workers 1``, the default).
* :class:`RayPool` spreads them over its actors (``ray.wait`` hands each finished actor the
  next configuration). Actors are created with unlimited restarts and task retries: an
  actor whose process dies is restarted by Ray and its configuration run again. Evaluations
  are deterministic, so a rerun returns the same error; the search's budget counts unique
  configurations on the driver, so a lost worker costs no evaluation and repeats none in
  the log (it costs only the time of the lost decode).

Agents use a pool through :func:`play_batch` (baselines and Optuna: ask k, evaluate k in
parallel, tell k) and :class:`PooledVecEnv` (SB3: N environments whose terminal steps are
evaluated together). Ray is used as the library it is; what is written here is only the
glue between its actors and the environment's cache and budget, which no library knows.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

from stable_baselines3.common.vec_env import DummyVecEnv

from shrinkml_env.cache import cache_key
from shrinkml_env.env import ShrinkMLEnv
from shrinkml_env.target import CompressionTarget

__all__ = ["EvaluationPool", "LocalPool", "PooledVecEnv", "RayPool", "make_pool", "play_batch", "prefetch"]

logger = logging.getLogger(__name__)


class EvaluationPool:
    """Evaluates batches of rank vectors (per matrix, plan order); ``workers`` at once."""

    workers = 1

    def evaluate(self, batch: Sequence[Sequence[int]]) -> list[float]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (idempotent)."""


class LocalPool(EvaluationPool):
    """Evaluations in the driver, one after another, with the env's own plan."""

    def __init__(self, env: ShrinkMLEnv) -> None:
        self.env = env

    def evaluate(self, batch: Sequence[Sequence[int]]) -> list[float]:
        return [float(self.env.plan.evaluate(tuple(ranks))) for ranks in batch]


class _Evaluator:
    """A Ray actor's state: the target (received once), its plan and search model."""

    def __init__(self, target: CompressionTarget, factorisation: str, threads: int | None, device: str) -> None:
        import torch

        from shrinkml_env.plan import CompressionPlan
        from shrinkml_env.search_space import DEFAULT_MENU

        if threads:
            torch.set_num_threads(threads)
        self.target = target
        self.plan = CompressionPlan(self.target, DEFAULT_MENU, "matrix", device=torch.device(device),
                                    factorisation=factorisation)
        self.evaluations = 0

    def identity(self) -> tuple[str, str]:
        return self.target.fingerprint, self.target.data_fingerprint

    def evaluate(self, ranks: Sequence[int]) -> float:
        self.evaluations += 1
        return float(self.plan.evaluate(tuple(ranks)))

    def pid(self) -> int:
        import os

        return os.getpid()


class RayPool(EvaluationPool):
    """Evaluations on ``workers`` Ray actors.

    Args:
        target: the driver's target (model, evaluation data, calibration), put in Ray's
            object store once and received by every actor; each checks that its copy has the
            driver's fingerprints.
        workers: actors.
        factorisation: the env's factorisation.
        threads: torch threads per actor (and CPUs reserved for it).
        gpus: GPUs per actor (fractions allowed, e.g. 0.25 for four actors per GPU).
        device: torch device of the actors' models.
        address: an existing Ray cluster to join (``ray.init(address=...)``); None starts a
            local one unless Ray is already initialised.
    """

    def __init__(self, target: CompressionTarget, *, workers: int, factorisation: str = "plain",
                 threads: int | None = 1, gpus: float = 0.0, device: str = "cpu", address: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise ImportError(
                "--workers above 1 evaluates on Ray, which is not installed; install the extra: "
                "pip install 'shrinkml[ray]'"
            ) from e
        if workers < 1:
            raise ValueError(f"workers must be >= 1; got {workers}")
        if gpus < 0 or (threads is not None and threads < 1):
            raise ValueError(f"gpus must be >= 0 and threads >= 1; got {gpus}, {threads}")
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"num_cpus": max(workers * (threads or 1), 1)}))
        expected = (target.fingerprint, target.data_fingerprint)
        shared = ray.put(target)
        actor = ray.remote(max_restarts=-1, max_task_retries=-1)(_Evaluator)
        options = {"num_cpus": threads or 1, "num_gpus": gpus}
        self._spawn = lambda: actor.options(**options).remote(shared, factorisation, threads, device)
        self.actors = [self._spawn() for _ in range(workers)]
        self.workers = workers
        identities = ray.get([a.identity.remote() for a in self.actors])
        for i, identity in enumerate(identities):
            if tuple(identity) != tuple(expected):
                self.close()
                raise ValueError(
                    f"worker {i} holds target {identity}, not the driver's {expected}: its copy of "
                    "the model or the evaluation data differs (a custom target that does not pickle "
                    "faithfully?)"
                )

    def evaluate(self, batch: Sequence[Sequence[int]]) -> list[float]:
        ray = self._ray
        batch = [tuple(int(r) for r in ranks) for ranks in batch]
        results: list[float | None] = [None] * len(batch)
        pending: dict[Any, tuple[int, int]] = {}  # object ref -> (batch index, actor index)
        queue = list(range(len(batch)))
        idle = list(range(len(self.actors)))
        while queue or pending:
            while queue and idle:
                i, a = queue.pop(0), idle.pop(0)
                pending[self.actors[a].evaluate.remote(batch[i])] = (i, a)
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i, a = pending.pop(ref)
                try:
                    results[i] = float(ray.get(ref))
                except ray.exceptions.RayActorError:
                    # Restarts are unlimited, so this means the actor cannot come back (e.g.
                    # its node left): replace it and run the configuration again.
                    logger.warning("worker %d died; replacing it and evaluating %s again", a, list(batch[i]))
                    self.actors[a] = self._spawn()
                    queue.insert(0, i)
                idle.append(a)
        return [float(r) for r in results]

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            self._ray.kill(actor)
        self.actors = []


def make_pool(env: ShrinkMLEnv, workers: int, *, address: str | None = None, threads: int | None = 1,
              gpus: float = 0.0, device: str = "cpu") -> EvaluationPool:
    """:class:`LocalPool` for one worker without a cluster, else a :class:`RayPool` of the env's
    target."""
    if workers == 1 and address is None:
        return LocalPool(env)
    return RayPool(env.target, workers=workers, factorisation=env.factorisation, threads=threads, gpus=gpus,
                   device=device, address=address)


def prefetch(env: ShrinkMLEnv, pool: EvaluationPool, batch: Sequence[Sequence[int]], room: int) -> int:
    """Evaluate on ``pool`` the rank vectors of ``batch`` that the env's cache does not know
    (each once, in order, at most ``room`` of them) and hand their errors to the env, which
    claims each as a paid evaluation the first time an episode ends on it. Returns how many
    were evaluated."""
    fresh: list[tuple[int, ...]] = []
    keys: list[str] = []
    for ranks in batch:
        ranks = tuple(int(r) for r in ranks)
        key = cache_key(env.target.fingerprint, env.evaluation_fingerprint, ranks)
        if key in keys or key in env.prefetched or env.cache.peek(key) is not None:
            continue
        if len(fresh) == room:
            break
        fresh.append(ranks)
        keys.append(key)
    for key, error in zip(keys, pool.evaluate(fresh) if fresh else [], strict=True):
        env.prefetched[key] = error
    return len(fresh)


def play_batch(env, pool: EvaluationPool, episodes: Sequence[Sequence[int]], room: int) -> list[dict[str, Any]]:
    """Play the episodes (menu actions per step) in order, their new terminal evaluations
    computed on ``pool`` first, in parallel. ``env`` is the search's recorder-wrapped env:
    each episode is logged as if played alone, so budgets and records are those of a serial
    run of the same episodes. Only the first ``room`` new configurations are played; the
    terminal infos of the played episodes are returned."""
    base = env.unwrapped
    ranks = [base.final_ranks(actions) for actions in episodes]
    prefetch(base, pool, ranks, room)
    infos = []
    for actions, r in zip(episodes, ranks):
        key = cache_key(base.target.fingerprint, base.evaluation_fingerprint, r)
        if key not in base.prefetched and base.cache.peek(key) is None:
            break  # beyond the budget: the evaluations it had room for are played
        env.reset()
        info: dict[str, Any] = {}
        for action in actions:
            _, _, _, _, info = env.step(int(action))
        infos.append(info)
    return infos


class PooledVecEnv(DummyVecEnv):
    """An SB3 ``VecEnv`` of ``n`` copies of one (recorder-wrapped) environment whose terminal
    evaluations are computed together on a pool.

    All copies start together and every episode has the same length, so they end on the
    same vector step: there the configurations are known before any copy is stepped, the
    new ones are evaluated on the pool at once, and the copies are then stepped in order,
    each logged as if alone. At most the remaining budget is evaluated; a copy whose
    configuration would exceed it ends with reward 0, unevaluated (``info["unevaluated"]``),
    and the budget callback stops learning on that step.
    """

    def __init__(self, env, n: int, pool: EvaluationPool, log) -> None:
        if n < 1:
            raise ValueError(f"a pooled vector env needs n >= 1 copies; got {n}")
        copies = [env] + [_clone(env) for _ in range(n - 1)]
        super().__init__([_monitored(c) for c in copies])
        self.pool, self.log = pool, log

    def step_wait(self):
        bases = [e.unwrapped for e in self.envs]
        ending = [i for i, e in enumerate(bases) if e.steps_left == 1]
        if ending:
            ranks = [bases[i].final_ranks([*bases[i].actions_so_far, int(self.actions[i])]) for i in ending]
            prefetch(bases[0], self.pool, ranks, self.log.limit - self.log.count)
            for i, r in zip(ending, ranks):
                key = cache_key(bases[i].target.fingerprint, bases[i].evaluation_fingerprint, r)
                bases[i].unpaid = key not in bases[i].prefetched and bases[i].cache.peek(key) is None
        return super().step_wait()


def _clone(env):
    """A copy of a wrapped env with its own episode state; the target, plan, cache, the
    pool's results (``prefetched``) and the recorder's log stay shared."""
    layers = []
    inner = env
    while True:
        layers.append(copy.copy(inner))
        if not hasattr(inner, "env"):
            break
        inner = inner.env
    for outer, below in zip(layers, layers[1:]):
        outer.env = below
    return layers[0]


def _monitored(env):
    from stable_baselines3.common.monitor import Monitor

    return lambda: Monitor(env)
