"""The evaluation budget: every agent pays in unique evaluations of the search subset.

An episode whose rank vector the env's cache already knows is free; one that makes the env
decode the search subset costs one evaluation. :class:`EvaluationRecorder` wraps the env and
reports each finished episode to a :class:`SearchLog`, which keeps every unique evaluation,
tells the agent when the budget is spent, and knows the best configuration within the size
budget. RL agents stop through a callback that reads :attr:`SearchLog.exhausted` after every
env step; baselines check it before every episode. Either way a search never spends more
than its budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym

from shrinkml_env.cache import cache_key
from shrinkml_env.env import ShrinkMLEnv

__all__ = [
    "EvaluationRecord",
    "EvaluationRecorder",
    "SearchLog",
    "SearchProgress",
    "best_within_budget",
    "play",
    "search_reward",
]

_SIZE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class EvaluationRecord:
    """One unique evaluation of the search subset (a line of ``evaluations.jsonl``).

    Attributes:
        index: 0-based order in which the search paid for it.
        ranks: rank of every compressible matrix, in plan order (full rank = dense).
        actions: menu action per step that produced ``ranks``.
        search_wer: error on the search subset.
        size_ratio: compressible parameters after ÷ before.
        params: compressible parameters after compression.
        reward: the search's reward at the search's budget.
        episode: the episode (cache hits included) of the search that paid for it.
        latency_ratio: predicted latency ÷ the dense model's, under a latency budget
            (None under a size budget).
    """

    index: int
    ranks: tuple[int, ...]
    actions: tuple[int, ...]
    search_wer: float
    size_ratio: float
    params: int
    reward: float
    episode: int
    latency_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ranks"], data["actions"] = list(self.ranks), list(self.actions)
        if self.latency_ratio is None:
            del data["latency_ratio"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationRecord:
        try:
            return cls(
                index=int(data["index"]),
                ranks=tuple(int(r) for r in data["ranks"]),
                actions=tuple(int(a) for a in data["actions"]),
                search_wer=float(data["search_wer"]),
                size_ratio=float(data["size_ratio"]),
                params=int(data["params"]),
                reward=float(data["reward"]),
                episode=int(data["episode"]),
                latency_ratio=None if data.get("latency_ratio") is None else float(data["latency_ratio"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not an evaluation record ({type(e).__name__}: {e}): {data!r}") from e


@dataclass(frozen=True)
class SearchProgress:
    """What a progress display shows after each new evaluation."""

    evaluations: int
    limit: int
    episodes: int
    cache_hits: int
    best_reward: float | None
    best_wer: float | None


def best_within_budget(records: Sequence[EvaluationRecord], budget: float, metric: str = "size"
                       ) -> EvaluationRecord | None:
    """Lowest search WER among records within ``budget``; ties: smaller ratio, then earlier.

    ``metric``: what the budget limits, ``"size"`` (``size_ratio``) or ``"latency"``
    (``latency_ratio``). Returns None when no record fits the budget.
    """
    def ratio(r: EvaluationRecord) -> float:
        if metric == "size":
            return r.size_ratio
        if r.latency_ratio is None:
            raise ValueError(f"evaluation {r.index} has no latency_ratio; it was not made under a latency budget")
        return r.latency_ratio

    fitting = [r for r in records if ratio(r) <= budget + _SIZE_TOLERANCE]
    return min(fitting, key=lambda r: (r.search_wer, ratio(r), r.index), default=None)


def search_reward(env: ShrinkMLEnv, wer: float, params: int, latency_ratio: float | None = None) -> float:
    """The reward ``env`` gives a compressed model with this error and size (and predicted
    latency ratio, which a latency budget needs).

    Used to score every evaluation at the search's own budget, including those measured
    through a helper env with another budget (the greedy agent's sensitivity scan).
    """
    return env.score(wer, params, latency_ratio)


class SearchLog:
    """Unique evaluations of one search, its budget and its best configuration.

    Args:
        limit: evaluations the search may spend (restored ones included).
        scorer: the search's env, which defines the reward and the size budget.
        restored: evaluations a previous, interrupted run already paid for.
        on_new: called with each new record (e.g. to append it to the run directory).
    """

    def __init__(
        self,
        limit: int,
        scorer: ShrinkMLEnv,
        restored: Sequence[EvaluationRecord] = (),
        on_new: Callable[[EvaluationRecord], None] | None = None,
    ) -> None:
        if len(restored) > limit:
            raise ValueError(
                f"the run already holds {len(restored)} evaluations, more than the budget of "
                f"{limit}; raise the number of evaluations or use a new run directory"
            )
        self.limit = limit
        self.scorer = scorer
        self.records: list[EvaluationRecord] = list(restored)
        self.known = {r.ranks: r for r in self.records}
        self.on_new = on_new
        # Episodes of this call: a resumed search replays its start (free, from the cache)
        # and counts those episodes again, as the uninterrupted run did.
        self.episodes = 0
        self.cache_hits = 0
        self.new_evaluations = 0
        fingerprint, data = scorer.target.fingerprint, scorer.evaluation_fingerprint
        for r in self.records:  # what the run already knows is free from now on
            scorer.cache.put(cache_key(fingerprint, data, r.ranks), r.search_wer)

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def exhausted(self) -> bool:
        return len(self.records) >= self.limit

    @property
    def budget(self) -> float:
        return self.scorer.budget

    def best(self) -> EvaluationRecord | None:
        return best_within_budget(self.records, self.scorer.budget, self.scorer.budget_metric)

    def best_reward(self) -> float | None:
        return max((r.reward for r in self.records), default=None)

    def progress(self) -> SearchProgress:
        best = self.best()
        return SearchProgress(
            evaluations=self.count,
            limit=self.limit,
            episodes=self.episodes,
            cache_hits=self.cache_hits,
            best_reward=self.best_reward(),
            best_wer=None if best is None else best.search_wer,
        )

    def observe(self, info: dict[str, Any]) -> EvaluationRecord | None:
        """Account for one finished episode; returns its record (None if unknown and free)."""
        ranks = tuple(int(r) for r in info["ranks"])
        self.episodes += 1
        if info.get("unevaluated"):  # a batched episode beyond the budget: nothing was paid
            return None
        if info["cache_hit"]:
            self.cache_hits += 1
            return self.known.get(ranks)
        if self.exhausted:
            raise RuntimeError(
                f"an agent evaluated configuration {list(ranks)} after the budget of "
                f"{self.limit} evaluations was spent; agents must stop when the log is exhausted"
            )
        record = EvaluationRecord(
            index=len(self.records),
            ranks=ranks,
            actions=tuple(int(a) for a in info["actions"]),
            search_wer=float(info["wer"]),
            size_ratio=float(info["size_ratio"]),
            params=int(info["params"]),
            reward=search_reward(self.scorer, float(info["wer"]), int(info["params"]), info.get("latency_ratio")),
            episode=self.episodes - 1,
            latency_ratio=info.get("latency_ratio"),
        )
        self.records.append(record)
        self.known[ranks] = record
        self.new_evaluations += 1
        if self.on_new is not None:
            self.on_new(record)
        return record


class EvaluationRecorder(gym.Wrapper):
    """Reports every finished episode of ``env`` to ``log``; otherwise transparent.

    ``action_masks()`` is forwarded, so sb3-contrib's MaskablePPO sees the env's masks.
    """

    def __init__(self, env: gym.Env, log: SearchLog) -> None:
        super().__init__(env)
        self.log = log
        self.pool = None  # the search's EvaluationPool (agents.workers), set by run_search

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated:
            self.log.observe(info)
        return obs, reward, terminated, truncated, info

    def action_masks(self):
        return self.env.unwrapped.action_masks()


def play(env: gym.Env, actions: Sequence[int]) -> dict[str, Any]:
    """Play one episode with fixed ``actions``; returns the terminal ``info``."""
    env.reset()
    info: dict[str, Any] = {}
    for action in actions:
        _, _, terminated, _, info = env.step(int(action))
    assert terminated, "an episode takes exactly one action per step"
    return info
