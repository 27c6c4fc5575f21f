"""The configuration of one rank search: which agent, which budget, how many evaluations.

:class:`SearchConfig` is parsed once by the command line (or built in code), validated on
construction, written into every run directory and exported checkpoint, and compared on
resume. Run state (evaluations so far, best so far) never lives here.
"""

from __future__ import annotations

import ast
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shrinkml_env.compression.svd import FACTORISATIONS
from shrinkml_env.config_fields import check_known_fields

__all__ = [
    "AGENTS",
    "BASELINE_AGENTS",
    "DEFAULT_SCORE",
    "OPTUNA_AGENTS",
    "RL_AGENTS",
    "WARM_START_AGENTS",
    "SearchConfig",
    "parse_sb3_overrides",
    "read_sb3_config",
]

RL_AGENTS = ("ppo", "a2c", "dqn", "maskable_ppo")
# What a search steers by on a speech recogniser unless told: warm PPO steered by the
# teacher-forced cross-entropy against the dense model had the lowest dev-pool WER of all
# agents over budgets 0.2-0.4 (benchmarks/results/search.json).
DEFAULT_SCORE = "distill"
BASELINE_AGENTS = ("uniform", "random", "greedy", "evolution")
OPTUNA_AGENTS = ("tpe", "cmaes", "nsga2")  # Optuna's samplers (the optional `optuna` extra)
AGENTS = RL_AGENTS + BASELINE_AGENTS + OPTUNA_AGENTS
WARM_START_AGENTS = ("ppo", "a2c", "maskable_ppo")  # on-policy: can be cloned from the sensitivity scan

# Fields that may differ when a run directory is resumed: they change where or how fast the
# search runs, or how long it may go on, not what any evaluation means.
RESUMABLE_CHANGES = ("evaluations", "device", "tensorboard", "workers", "ray_address", "worker_threads",
                     "worker_gpus")


@dataclass(frozen=True)
class SearchConfig:
    """One search of per-layer SVD ranks under a size budget.

    Attributes:
        agent: who proposes configurations: an SB3 algorithm (``ppo``, ``a2c``, ``dqn``,
            ``maskable_ppo``), a baseline (``uniform``, ``random``, ``greedy``,
            ``evolution``) or an Optuna sampler (``tpe``, ``cmaes``, ``nsga2``).
        budget: size ratio to reach (compressible parameters after ÷ before), in (0, 1].
        reward: the env's reward name (``shrinkml_env.rewards.reward_names()``).
        evaluations: unique search-subset evaluations the search may spend; cache hits are
            free. The same currency for every agent.
        seed: seeds the agent, its networks and the env.
        target: ``"toy"`` (tests), ``"default"`` (the shipped recogniser) or an ASR
            checkpoint path.
        constraint: the env's budget constraint; None picks ``"mask"`` for
            ``maskable_ppo`` and ``"clamp"`` for every other agent.
        rank_menu: the env's rank-menu preset.
        granularity: one action per LSTM layer (``"layer"``) or per matrix (``"matrix"``).
        warmup_episodes: random episodes before the agent learns (DQN: ``learning_starts``;
            on-policy agents: random episodes played first); None: the agent's default.
        max_episodes: give up after this many episodes, cache hits included, so an agent
            that only revisits known configurations still ends; None: 20 × evaluations.
        sb3: Stable-Baselines3 hyperparameter overrides as ``(name, value)`` pairs, applied
            over the problem-specific defaults (RL agents only).
        test_utterances: test utterances decoded for the reported test WER (ASR targets);
            None: the whole test split.
        device: torch device for evaluation and networks.
        tensorboard: folder for SB3's TensorBoard logs; None: no TensorBoard.
        score: what the search steers by on the search subset (ASR targets; one of
            ``asr.scores.SCORES``): ``"wer"`` (greedy WER), ``"cer"``, ``"loss"``
            (teacher-forced cross-entropy of the references) or ``"distill"``
            (cross-entropy against the dense model's outputs). None (default):
            :data:`DEFAULT_SCORE` on a speech recogniser, ``"wer"`` on the toy target.
            Reported results are test WER whatever the score.
        factorisation: ``"whitened"`` (default: activation-aware SVD on the target's
            calibration data, measured better than plain SVD on the dev pool at every size
            and searched configuration tried, ``benchmarks/results/methods.json``) or
            ``"plain"`` (truncated SVD; needs no calibration data) or ``"sequential"``
            (whitened scores during the search; every exported model refitted layer by
            layer to the dense outputs given the compressed layers below, 1–2 minutes per
            export on the shipped model; no better than whitened on the dev pool there).
            The exported models have the same structure whichever it is.
        workers: terminal evaluations run on this many Ray actors (1: in this process);
            may change when a search resumes.
        ray_address: an existing Ray cluster to run the workers on (None: a local one).
        worker_threads: torch threads (and CPUs reserved) per worker.
        worker_gpus: GPUs reserved per worker, fractions allowed (0.25: four workers share
            one GPU); with ``device="cuda"`` the workers' models live there.
        budget_metric: what ``budget`` limits: ``"size"`` (default) or ``"latency"`` (the
            predicted latency of the model on this machine, from a measured per-layer table).
        latency_batch: utterances per call in the latency measurement (``"latency"`` only).
        warm_start: on-policy RL agents (``ppo``, ``a2c``, ``maskable_ppo``) only: run the
            sensitivity scan first (its evaluations count), show each step's sensitivity in
            the observation and start the policy at the allocation it predicts best
            (:mod:`agents.rl`). None (default): on for those agents (:attr:`warm_started`),
            since warm PPO measured better than plain PPO on the dev pool; False: the plain
            agent.
    """

    agent: str = "ppo"  # warm-started: lowest dev-pool WER at 100 evaluations (benchmarks/results/search.json)
    budget: float = 0.3
    reward: str = "wer_size"
    evaluations: int = 100
    seed: int = 0
    target: str = "default"
    constraint: str | None = None
    rank_menu: str = "linear8"
    granularity: str = "layer"
    warmup_episodes: int | None = None
    max_episodes: int | None = None
    sb3: tuple[tuple[str, Any], ...] = ()
    test_utterances: int | None = None
    device: str = "cpu"
    tensorboard: str | None = None
    score: str | None = None  # resolved in __post_init__: DEFAULT_SCORE, or "wer" on the toy target
    factorisation: str = "whitened"
    workers: int = 1
    ray_address: str | None = None
    worker_threads: int = 1
    worker_gpus: float = 0.0
    budget_metric: str = "size"
    latency_batch: int = 1
    warm_start: bool | None = None

    def __post_init__(self) -> None:
        _check_agent(self.agent)
        _check_choice("budget_metric", self.budget_metric, ("size", "latency"))
        _check_budget(self.budget, self.budget_metric)
        _check_positive_int("latency_batch", self.latency_batch)
        if self.budget_metric == "latency" and self.granularity != "layer":
            raise ValueError(
                f"a latency budget needs granularity 'layer' (got {self.granularity!r}): a layer's latency "
                "depends on all its matrices together"
            )
        _check_positive_int("evaluations", self.evaluations)
        _check_reward(self.reward)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an integer; got {self.seed!r}")
        constraint = self.constraint or ("mask" if self.agent == "maskable_ppo" else "clamp")
        _check_choice("constraint", constraint, ("clamp", "mask", "punish"))
        _check_choice("granularity", self.granularity, ("layer", "matrix"))
        _check_rank_menu(self.rank_menu)
        if self.warmup_episodes is not None and (not isinstance(self.warmup_episodes, int) or self.warmup_episodes < 0):
            raise ValueError(f"warmup_episodes must be an integer >= 0 or None; got {self.warmup_episodes!r}")
        if self.max_episodes is not None:
            _check_positive_int("max_episodes", self.max_episodes)
        if self.test_utterances is not None:
            _check_positive_int("test_utterances", self.test_utterances)
        sb3 = _normalise_pairs(self.sb3)
        if sb3 and self.agent not in RL_AGENTS:
            raise ValueError(
                f"SB3 hyperparameters {[k for k, _ in sb3]} given for the baseline agent "
                f"{self.agent!r}; they apply only to {', '.join(RL_AGENTS)}"
            )
        if sb3:
            from agents.rl import check_hyperparameters

            check_hyperparameters(self.agent, dict(sb3))
        if not isinstance(self.target, str) or not self.target:
            raise ValueError(f"target must be 'toy', 'default' or a checkpoint path; got {self.target!r}")
        score = self.score if self.score is not None else ("wer" if self.target == "toy" else DEFAULT_SCORE)
        check_score(score, self.target)
        _check_choice("factorisation", self.factorisation, FACTORISATIONS)
        _check_positive_int("workers", self.workers)
        _check_positive_int("worker_threads", self.worker_threads)
        if isinstance(self.worker_gpus, bool) or not isinstance(self.worker_gpus, (int, float)) or not (
            0.0 <= self.worker_gpus <= 64.0
        ):
            raise ValueError(f"worker_gpus must be a number of GPUs >= 0 (fractions allowed); got {self.worker_gpus!r}")
        if self.workers > 1 and self.agent == "dqn":
            raise ValueError(
                "dqn learns from whole episodes one env at a time, so it cannot collect episodes on "
                f"{self.workers} workers; use --workers 1 with dqn, or an on-policy agent (ppo, a2c, maskable_ppo)"
            )
        if self.warm_start is not None and not isinstance(self.warm_start, bool):
            raise TypeError(f"warm_start must be True, False or None (the agent's default); got {self.warm_start!r}")
        if self.warm_start and self.agent not in WARM_START_AGENTS:
            raise ValueError(
                f"warm_start applies to the on-policy RL agents {', '.join(WARM_START_AGENTS)}; agent "
                f"{self.agent!r} cannot start from the sensitivity scan (greedy is the scan itself)"
            )
        object.__setattr__(self, "budget", float(self.budget))
        object.__setattr__(self, "constraint", constraint)
        object.__setattr__(self, "sb3", sb3)
        object.__setattr__(self, "score", score)

    @property
    def is_rl(self) -> bool:
        return self.agent in RL_AGENTS

    @property
    def warm_started(self) -> bool:
        """Whether the search warm-starts: ``warm_start``, or by default for the agents that can."""
        return self.warm_start if self.warm_start is not None else self.agent in WARM_START_AGENTS

    @property
    def episode_limit(self) -> int:
        """Episodes (cache hits included) after which the search gives up."""
        return self.max_episodes if self.max_episodes is not None else 20 * self.evaluations

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``sb3`` as an object)."""
        data = asdict(self)
        data["sb3"] = {k: v for k, v in self.sb3}
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        check_known_fields(cls, data, "search config")
        # Run directories written before these settings existed searched plain SVDs by WER;
        # they resume as what they were, whatever today's defaults are.
        values = {"score": "wer", "factorisation": "plain", **data}
        if isinstance(values.get("sb3"), Mapping):
            values["sb3"] = tuple(values["sb3"].items())
        return cls(**values)

    def differences(self, other: SearchConfig) -> list[str]:
        """Fields that differ from ``other`` and forbid resuming its run (``field: a != b``)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{name}: {theirs[name]!r} != {mine[name]!r}"
            for name in mine
            if name not in RESUMABLE_CHANGES and mine[name] != theirs[name]
        ]


def parse_sb3_overrides(items: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    """``["learning_rate=1e-3", "policy_kwargs={'net_arch': [32]}"]`` to name/value pairs.

    Values are Python literals (numbers, strings, tuples, lists, dicts, ``None``); anything
    else is kept as a string (``policy=MlpPolicy``).

    Raises:
        ValueError: an item without ``=`` or with an empty name.
    """
    pairs = []
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"SB3 override {item!r} is not NAME=VALUE (e.g. learning_rate=0.001)")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        pairs.append((name, value))
    return tuple(pairs)


def read_sb3_config(path: str | os.PathLike[str]) -> tuple[tuple[str, Any], ...]:
    """Hyperparameters from a JSON file holding one object (``{"learning_rate": 0.001}``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"SB3 config file {str(path)!r} does not exist") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"SB3 config file {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"SB3 config file {str(path)!r} must hold one JSON object; got {type(data).__name__}")
    return tuple(data.items())


def _normalise_pairs(pairs: Any) -> tuple[tuple[str, Any], ...]:
    if isinstance(pairs, Mapping):
        pairs = tuple(pairs.items())
    merged: dict[str, Any] = {}
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise TypeError(f"sb3 overrides must be (name, value) pairs; got {pair!r}")
        merged[pair[0]] = pair[1]  # later pairs win: file first, then the command line
    return tuple(merged.items())


def _check_agent(agent: Any) -> None:
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; accepted: {', '.join(AGENTS)}")


def _check_budget(budget: Any, metric: str = "size") -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or not 0.0 < budget <= 1.0:
        what = "a size ratio" if metric == "size" else "a fraction of the dense model's predicted latency"
        raise ValueError(f"budget must be {what} in (0, 1]; got {budget!r}")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def check_score(score: str, target: str) -> None:
    """Refuse a search score that is unknown, or that ``target`` cannot give (ValueError)."""
    from asr.scores import SCORES

    _check_choice("score", score, SCORES)
    if target == "toy" and score != "wer":
        raise ValueError(
            f"score {score!r} needs a speech recogniser; the toy target has one error "
            "(misclassification), so use score 'wer' with it"
        )


def _check_choice(name: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")


def _check_reward(reward: Any) -> None:
    from shrinkml_env.rewards import reward_names

    _check_choice("reward", reward, reward_names())


def _check_rank_menu(menu: Any) -> None:
    from shrinkml_env.search_space import MENUS

    _check_choice("rank_menu", menu, tuple(MENUS))
