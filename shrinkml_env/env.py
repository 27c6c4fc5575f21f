"""``ShrinkML-v0``: choose an SVD rank for each LSTM layer of a recogniser, one step at a time."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from shrinkml_env.budget import BUDGET_METRICS, BudgetCosts
from shrinkml_env.cache import EvaluationCache, cache_key
from shrinkml_env.plan import STATIC_FEATURES, CompressionPlan
from shrinkml_env.records import EpisodeRecord
from shrinkml_env.rewards import Outcome, Reward, budget_penalty, make_reward
from shrinkml_env.search_space import RankMenu, make_menu
from shrinkml_env.target import CompressionTarget, resolve_target

__all__ = ["CONSTRAINTS", "GRANULARITIES", "ShrinkMLEnv", "OBSERVATION_FEATURES"]

CONSTRAINTS = ("clamp", "mask", "punish")
GRANULARITIES = ("layer", "matrix")
DYNAMIC_FEATURES = (
    "size_removed",
    "size_to_decide",
    "previous_action",
    "budget",
    "budget_slack",
)
OBSERVATION_FEATURES = STATIC_FEATURES + DYNAMIC_FEATURES


class ShrinkMLEnv(gym.Env):
    """
    ## Description

    Low-rank (SVD) compression of a trained speech recogniser made of LSTM layers, after
    ShrinkML (Dudziak et al., Interspeech 2019). An episode walks through the compressible
    layers in a fixed order (encoder first, then decoder); at each step the agent picks the
    rank of the next layer (``granularity="layer"``: every weight matrix of that LSTM at the
    same fraction of its full rank) or of the next weight matrix (``granularity="matrix"``).
    After the last choice the model is compressed with the precomputed SVDs, decoded on a
    small, representative search subset, and the terminal reward combines its word error
    rate (WER) and size. Nothing is trained: the episode scores a compression.

    ## Action Space

    ``Discrete(K)`` over the rank menu (``rank_menu``; default ``linear8``: fractions 1/16,
    2/16, …, 8/16 of each matrix's full rank, then "keep dense"), so ``K = 9``. Action ``k <
    K-1`` gives each matrix rank ``round(fraction_k · min(m, n))``; action ``K-1`` keeps the
    layer dense; a rank at or above a matrix's break-even rank ``m·n/(m+n)`` also keeps it
    dense. With ``continuous=True`` the action is ``Box(-1, 1, (1,))``, mapped linearly onto
    the menu indices (and rounded).

    ## Observation Space

    ``Box(0, 1, (16,), float32)``; static features describe the layer (or matrix) about to be
    compressed, dynamic ones the episode so far. Sizes count compressible parameters only;
    under a latency budget (``budget_metric="latency"``) features 11–15 count the budgeted
    quantity instead: predicted milliseconds, as shares of the dense model's prediction.

    | Num | Feature          | Min | Max | Meaning                                                     |
    |-----|------------------|-----|-----|-------------------------------------------------------------|
    | 0   | position         | 0   | 1   | step index / (steps - 1)                                     |
    | 1   | is_decoder       | 0   | 1   | 1 for decoder layers, 0 for encoder (role given by target)   |
    | 2   | bidirectional    | 0   | 1   | 1 when the layer has a reverse direction                     |
    | 3   | input_size       | 0   | 1   | input width / widest input of any layer                      |
    | 4   | hidden_size      | 0   | 1   | hidden width / widest hidden size of any layer               |
    | 5   | param_share      | 0   | 1   | this step's dense parameters / all compressible parameters   |
    | 6   | break_even       | 0   | 1   | break-even rank / full rank (parameter-weighted)             |
    | 7   | energy_1_8       | 0   | 1   | singular-value energy kept at 1/8 of full rank               |
    | 8   | energy_1_4       | 0   | 1   | … at 1/4 of full rank                                        |
    | 9   | energy_1_2       | 0   | 1   | … at 1/2 of full rank                                        |
    | 10  | recurrent_share  | 0   | 1   | share of this step's parameters in recurrent (hh) matrices   |
    | 11  | size_removed     | 0   | 1   | parameters removed so far / all                              |
    | 12  | size_to_decide   | 0   | 1   | dense parameters of this and later steps / all               |
    | 13  | previous_action  | 0   | 1   | previous action / (K - 1); 0 at the first step               |
    | 14  | budget           | 0   | 1   | the target size ratio                                        |
    | 15  | budget_slack     | 0   | 1   | (budget·all - used - smallest possible rest) / all, clipped  |

    ## Rewards

    Intermediate steps give 0. The terminal reward is a named reward object (``reward``);
    with ``e`` the error (WER), ``b`` the baseline error, ``s`` the size ratio, ``B`` the budget:

    * ``wer_size`` (default): ``-log(e/b) - 0.5·log(s/B)`` — WER and size in one scale-free
      number (maximises ``1/((e/b)·(s/B)^0.5)``, the design card's WER/size trade-off). It is
      0 for baseline accuracy at exactly the budget, means the same on any baseline WER, and
      still prefers the smaller of two equally accurate models.
    * ``budget_wer``: ``-log(e/b)``; the budget is left to the constraint.
    * ``accuracy_guaranteed``: ``1 - s`` while ``e ≤ b·(1 + 0.05)``, else
      ``-2·log(e / (b·1.05))``: maximal compression at bounded WER loss.
    * ``amc``: ``-e · log(params) / log(dense params)`` (AMC, He et al. 2018).
    * ``linear``: ``-((e/b - 1) + s)``.

    All are clipped to ``[-5, 5]``. With ``constraint="punish"`` a penalty
    ``-5·max(s - B, 0)/B`` is added. Under a latency budget ``s`` is the predicted latency
    ratio (the rest of the model included) and ``B`` the latency budget.

    ## Starting State

    The first compressible layer, nothing compressed yet. The environment has no randomness:
    ``reset(seed=...)`` only seeds ``np_random`` for wrappers and agents that use it.

    ## Episode End

    1. Termination: after the last layer's (or matrix's) rank is chosen.
    2. Truncation: none; episodes always have exactly ``steps`` steps.

    ## Arguments

    ```python
    gym.make("ShrinkML-v0", target=None, budget=0.3, reward="wer_size", constraint="clamp",
             rank_menu="linear8", granularity="layer", cache=None, device="cpu",
             continuous=False, score="wer", factorisation="plain", budget_metric="size",
             latency_batch=1, latency_table=None)
    ```

    * ``target``: ``None``/``"default"`` (the shipped recogniser scored on the shipped search
      subset), ``"toy"`` (a millisecond test target), an ASR checkpoint path, or a
      :class:`~shrinkml_env.target.CompressionTarget` wrapping your own model.
    * ``budget``: ratio to reach, in (0, 1]: compressible parameters after ÷ before, or with
      ``budget_metric="latency"`` the model's predicted latency ÷ the dense model's.
    * ``reward``: a registered reward name (:func:`shrinkml_env.rewards.reward_names`) or object.
    * ``constraint``: ``"clamp"`` (AMC-style: an action is lowered until the budget stays
      reachable with the cheapest choices for the remaining steps; under a latency budget,
      where a lower rank can cost more, raised to the nearest feasible one if no lower one
      is), ``"mask"`` (infeasible
      actions masked out through ``action_masks()``, for sb3-contrib's MaskablePPO; an
      infeasible action is clamped like ``"clamp"``), ``"punish"`` (no limit; terminal penalty).
    * ``rank_menu``: menu preset name (``linear8``, ``linear4``, ``linear16``,
      ``geometric6``, ``full_range8``, ``budget7``), fractions, or a :class:`RankMenu`.
      ``budget7`` is relative: its fractions are 0.5×–2× the common fraction at which all
      matrices alike just fit ``budget``, so action 3 everywhere is uniform compression at
      the budget and the agent searches reallocations around it.
    * ``granularity``: ``"layer"`` or ``"matrix"``.
    * ``cache``: None (in-memory cache) or a path to an SQLite cache shared between processes.
    * ``device``: torch device for evaluation.
    * ``continuous``: ``Box(-1, 1)`` actions instead of ``Discrete(K)``.
    * ``score``: the error of a built-in speech target (``asr.scores.SCORES``): ``"wer"``
      (greedy decoding), ``"cer"``, ``"loss"`` (teacher-forced cross-entropy of the reference
      transcripts: no autoregressive decoding) or ``"distill"`` (cross-entropy against the
      dense model's outputs). Rewards use ``error / baseline``, so any of them fits every
      reward. A :class:`~shrinkml_env.target.CompressionTarget` brings its own.
    * ``factorisation``: ``"plain"`` (truncated SVD of each matrix) or ``"whitened"``
      (activation-aware: the SVD of ``W S`` with ``S Sᵀ`` the second moment of the matrix's
      inputs on the target's calibration data, so truncation minimises the error of the
      matrix's outputs; exported models keep two factors per matrix, so size and speed are
      the same), or ``"sequential"`` (each matrix refitted, layer by layer from the input
      up, to the dense layer's outputs given the inputs of the compressed layers below it:
      reduced-rank regression, :mod:`shrinkml_env.compression.sequential`). The refit
      depends on the whole configuration, so a ``sequential`` env scores configurations
      with the ``whitened`` bank (and shares its cached scores) and
      ``env.plan.export(ranks)`` refits the one exported. ``whitened`` and ``sequential``
      need a target with ``calibrate``.
    * ``budget_metric``: ``"size"`` (default) or ``"latency"``: the budget, clamp, masks,
      penalty, reward and features then use the predicted latency of the model on this
      machine, ``rest + Σ layer entries`` from a per-layer latency table
      (:mod:`shrinkml_env.compression.latency`) measured once with the target's
      ``inference`` workload and cached. Entries need not fall with the rank: where a
      factorised layer is slower than the dense one, the clamp keeps it dense. Needs
      ``granularity="layer"``.
    * ``latency_batch``: utterances (sequences) per call in the latency workload.
    * ``latency_table``: a table file to read, or to write when it is missing or was measured
      under other conditions (machine, processor, torch, threads, batch, model, workload: a
      warning names which changed); default ``$SHRINKML_CACHE/latency/``.

    Terminal ``info``: ``ranks`` (per matrix, in plan order), ``wer`` (the target's error:
    WER unless ``score`` says otherwise), ``baseline_wer``,
    ``size_ratio``, ``params``, ``reward_name``, ``cache_hit`` (and under a latency budget
    ``latency_ratio`` and the predicted ``latency_ms``); every step's ``info`` has
    ``actions`` so far and the ``action_taken`` after clamping.

    ## Version History

    * v0: initial version; ``budget_metric``, ``latency_batch`` and ``latency_table`` added
      later (size budgets behave exactly as before).

    ## Example

    >>> import gymnasium as gym
    >>> import shrinkml_env
    >>> env = gym.make("ShrinkML-v0", target="toy", budget=0.4)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (16,)
    >>> terminated = False
    >>> while not terminated:
    ...     obs, reward, terminated, truncated, info = env.step(2)
    >>> info["size_ratio"] <= 0.4
    True
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        target: CompressionTarget | str | None = None,
        budget: float = 0.3,
        reward: str | Reward = "wer_size",
        constraint: str = "clamp",
        rank_menu: str | RankMenu | tuple[float, ...] | None = None,
        granularity: str = "layer",
        cache: str | None = None,
        device: str = "cpu",
        continuous: bool = False,
        score: str = "wer",
        factorisation: str = "plain",
        budget_metric: str = "size",
        latency_batch: int = 1,
        latency_table: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 < float(budget) <= 1.0:
            what = "a size ratio" if budget_metric != "latency" else "a fraction of the dense model's predicted latency"
            raise ValueError(f"budget must be {what} in (0, 1]; got {budget!r}")
        if budget_metric not in BUDGET_METRICS:
            raise ValueError(f"unknown budget_metric {budget_metric!r}; accepted: {', '.join(BUDGET_METRICS)}")
        if isinstance(latency_batch, bool) or not isinstance(latency_batch, int) or latency_batch < 1:
            raise ValueError(f"latency_batch must be an integer >= 1 (utterances per call); got {latency_batch!r}")
        if constraint not in CONSTRAINTS:
            raise ValueError(f"unknown constraint {constraint!r}; accepted: {', '.join(CONSTRAINTS)}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; accepted: {', '.join(GRANULARITIES)}")
        self.budget = float(budget)
        self.reward_fn = make_reward(reward)
        self.constraint = constraint
        self.menu = make_menu(rank_menu)
        self.granularity = granularity
        self.continuous = bool(continuous)
        self.target = resolve_target(target, device=device, score=score)
        self.menu = menu_at_budget(self.menu, self.target, self.budget)
        self.factorisation = factorisation
        self.plan = CompressionPlan(
            self.target, self.menu, granularity, device=torch.device(device), factorisation=factorisation
        )
        self.budget_metric = budget_metric
        self.latency = None  # the LatencyTable of a latency budget
        self.latency_batch, self.latency_table_path = latency_batch, latency_table
        if budget_metric == "latency":
            if granularity != "layer":
                raise ValueError(
                    f"budget_metric='latency' needs granularity='layer' (got {granularity!r}): a "
                    "module's latency depends on all its matrices together"
                )
            self.latency = self.plan.latency_table(latency_batch, latency_table)
            self.costs = BudgetCosts("latency", self.plan.latency_costs(self.latency), self.latency.rest_ms, "ms")
        else:
            self.costs = BudgetCosts("size", self.plan.unit_params)
        self.cache = EvaluationCache(cache)
        # Errors computed on workers, waiting for the episode that ends on them (agents.workers).
        self.prefetched: dict[str, float] = {}
        self.unpaid = False
        self.steps = self.plan.n_units
        self.observation_space = spaces.Box(0.0, 1.0, (len(OBSERVATION_FEATURES),), np.float32)
        if self.continuous:
            self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        else:
            self.action_space = spaces.Discrete(self.menu.size)
        # The cheapest any completion of steps t.. can cost, for clamping and masks.
        self._min_rest = self.costs.min_rest()
        smallest = self.costs.smallest_ratio()
        if constraint != "punish" and self.budget < smallest:
            raise ValueError(
                f"budget {self.budget} is below the smallest {budget_metric} ratio this rank menu can "
                f"reach ({smallest:.4f}); raise the budget or add smaller fractions to the menu"
            )
        self._t: int | None = None
        self._done = False

    # -- Gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._done = False
        self._actions: list[int] = []
        self._used = 0.0  # budgeted cost (parameters or ms) of the decided steps after compression
        return self._observation(), {}

    def step(self, action):
        if self._t is None:
            raise RuntimeError("step() called before reset(); call env.reset() first")
        if self._done:
            raise RuntimeError("step() called after the episode ended; call env.reset() first")
        index = self._action_index(action)
        if self.constraint != "punish":
            index = self._clamp(index)
        t = self._t
        self._actions.append(index)
        self._used += float(self.costs.unit_costs[t, index])
        self._t += 1
        info: dict[str, Any] = {"actions": list(self._actions), "action_taken": index}
        if self._t < self.steps:
            return self._observation(), 0.0, False, False, info
        self._done = True
        reward, terminal = self._finish()
        info.update(terminal)
        return self._observation(), reward, True, False, info

    def action_masks(self) -> np.ndarray:
        """Feasible actions at this step (sb3-contrib MaskablePPO); never all False."""
        mask = np.zeros(self.menu.size, dtype=bool)
        if self._t is None or self._done:
            mask[:] = True
            return mask
        if self.constraint == "punish":
            mask[:] = True
            return mask
        return self._feasible()

    @property
    def evaluation_fingerprint(self) -> str:
        """What an evaluation's error depends on besides the weights and ranks: the data
        (and score), and for activation-aware factorisation the method and calibration data."""
        if self.factorisation == "plain":
            return self.target.data_fingerprint
        # A sequential env scores with the whitened bank, so its scores are whitened scores.
        method = "whitened" if self.factorisation == "sequential" else self.factorisation
        return f"{self.target.data_fingerprint}|{method}:{self.target.calibration_fingerprint}"

    # -- records ---------------------------------------------------------------------------
    def record(self, info: dict[str, Any], reward: float) -> EpisodeRecord:
        """The serialisable record of the episode that ended with ``info``/``reward``."""
        return EpisodeRecord(
            target=self.target.name,
            target_fingerprint=self.target.fingerprint,
            data_fingerprint=self.evaluation_fingerprint,
            granularity=self.granularity,
            menu=self.menu.fractions,
            budget=self.budget,
            constraint=self.constraint,
            reward_name=self.reward_fn.name,
            actions=tuple(info["actions"]),
            ranks=tuple(info["ranks"]),
            wer=info["wer"],
            size_ratio=info["size_ratio"],
            reward=float(reward),
        )

    def apply(self, record: EpisodeRecord) -> tuple[float, dict[str, Any]]:
        """Replay a record's actions; returns ``(reward, terminal info)``."""
        mismatches = record.mismatches(self)
        if mismatches:
            raise ValueError("record does not fit this environment: " + "; ".join(mismatches))
        self.reset()
        for action in record.actions:
            _, reward, terminated, _, info = self.step(action)
        assert terminated
        return float(reward), info

    def validate(self, record: EpisodeRecord, tolerance: float = 1e-6) -> bool:
        """Replay a record and check that ranks, size and reward reproduce.

        Raises:
            ValueError: naming what differs.
        """
        reward, info = self.apply(record)
        problems = []
        if tuple(info["ranks"]) != tuple(record.ranks):
            problems.append(f"ranks {tuple(info['ranks'])} != recorded {tuple(record.ranks)}")
        if abs(info["size_ratio"] - record.size_ratio) > tolerance:
            problems.append(f"size_ratio {info['size_ratio']} != recorded {record.size_ratio}")
        if abs(reward - record.reward) > tolerance:
            problems.append(f"reward {reward} != recorded {record.reward}")
        if problems:
            raise ValueError("record does not reproduce: " + "; ".join(problems))
        return True

    def score(self, error: float, params: int, latency_ratio: float | None = None) -> float:
        """The terminal reward of a compressed model with this error and parameter count
        (and, under a latency budget, this predicted latency ratio: required there)."""
        size_ratio = params / self.plan.dense_total
        if self.budget_metric == "latency":
            if latency_ratio is None:
                raise ValueError("this env budgets latency: score() needs the latency_ratio")
            size_ratio = float(latency_ratio)  # the budgeted ratio is what rewards weigh
        outcome = Outcome(
            error=error,
            baseline_error=self.target.baseline_error,
            size_ratio=size_ratio,
            budget=self.budget,
            params=int(params),
            dense_params=int(self.plan.dense_total),
        )
        reward = self.reward_fn(outcome)
        if self.constraint == "punish":
            reward += budget_penalty(size_ratio, self.budget)
        return float(reward)

    # -- internals -------------------------------------------------------------------------
    def _action_index(self, action) -> int:
        if self.continuous:
            value = np.asarray(action, dtype=np.float64).reshape(-1)
            if value.size != 1 or not np.isfinite(value[0]):
                raise ValueError(f"continuous action must be one finite number in [-1, 1]; got {action!r}")
            scaled = (float(np.clip(value[0], -1.0, 1.0)) + 1.0) / 2.0 * (self.menu.size - 1)
            return int(round(scaled))
        try:
            index = int(action)
        except (TypeError, ValueError) as e:
            raise ValueError(f"action must be an integer in [0, {self.menu.size - 1}]; got {action!r}") from e
        if index != action or not 0 <= index < self.menu.size:
            raise ValueError(f"action must be an integer in [0, {self.menu.size - 1}]; got {action!r}")
        return index

    def _feasible(self, t: int | None = None, used: float | None = None) -> np.ndarray:
        """Actions at step ``t`` (default: this step), with ``used`` budgeted cost decided
        before it, that leave the budget reachable; never all False."""
        t = self._t if t is None else t
        used = self._used if used is None else used
        allowance = self.costs.capacity(self.budget) - used - self._min_rest[t + 1]
        feasible = self.costs.unit_costs[t] <= allowance + 1e-9
        if not feasible.any():  # only reachable through rounding: the cheapest action
            feasible[int(np.argmin(self.costs.unit_costs[t]))] = True
        return feasible

    def _largest_feasible(self, t: int | None = None, used: float | None = None) -> int:
        """Largest feasible action at step ``t`` (see :meth:`_feasible`)."""
        return int(np.flatnonzero(self._feasible(t, used)).max())

    def _clamp(self, index: int, t: int | None = None, used: float | None = None) -> int:
        """``index`` if feasible, else the largest feasible action below it, else (costs that
        do not fall with the rank: a latency budget) the smallest feasible one above it."""
        feasible = np.flatnonzero(self._feasible(t, used))
        below = feasible[feasible <= index]
        return int(below.max()) if below.size else int(feasible.min())

    # -- batched evaluation (agents.workers) -------------------------------------------------
    @property
    def steps_left(self) -> int:
        """Steps until the episode ends (0 once it has)."""
        return 0 if self._t is None or self._done else self.steps - self._t

    @property
    def actions_so_far(self) -> list[int]:
        """The menu actions taken in this episode, after the constraint's clamping."""
        return list(self._actions) if self._t is not None else []

    def final_ranks(self, actions) -> tuple[int, ...]:
        """The ranks an episode of these actions ends at (after clamping), without playing it."""
        if len(actions) != self.steps:
            raise ValueError(f"an episode takes {self.steps} actions; got {len(actions)}")
        used, taken = 0.0, []
        for t, action in enumerate(actions):
            index = self._action_index(action)
            if self.constraint != "punish":
                index = self._clamp(index, t, used)
            taken.append(index)
            used += float(self.costs.unit_costs[t, index])
        return self.plan.ranks(taken)

    def _observation(self) -> np.ndarray:
        t = min(self._t or 0, self.steps - 1)
        total = self.costs.dense_total
        dense = self.costs.unit_costs[:, -1]
        decided_dense = float(dense[: self._t or 0].sum())
        previous = self._actions[-1] / (self.menu.size - 1) if self._t else 0.0
        rest = dense[self._t or 0 :].sum() / total if not self._done else 0.0
        slack = (self.costs.capacity(self.budget) - self._used - self._min_rest[self._t or 0]) / total
        dynamic = np.array(
            [
                (decided_dense - self._used) / total,
                rest,
                previous,
                self.budget,
                slack,
            ],
            dtype=np.float64,
        )
        obs = np.concatenate([self.plan.static_features[t], dynamic])
        return np.clip(obs, 0.0, 1.0).astype(np.float32)

    def _finish(self) -> tuple[float, dict[str, Any]]:
        ranks = self.plan.ranks(self._actions)
        key = cache_key(self.target.fingerprint, self.evaluation_fingerprint, ranks)
        error = self.cache.get(key)
        hit = error is not None
        if error is None and self.unpaid:  # beyond a batched search's budget: not evaluated
            self.unpaid = False
            return 0.0, {"ranks": list(ranks), "unevaluated": True, "cache_hit": False,
                         "reward_name": self.reward_fn.name}
        if error is None:
            # An error a worker pool computed for this episode is claimed here, once: the
            # first episode to end on it pays for it, as if it had been decoded now.
            claimed = self.prefetched.pop(key, None)
            error = self.cache.put(key, claimed if claimed is not None else self.plan.evaluate(ranks))
        params = int(self.plan.params(ranks))
        size_ratio = params / self.plan.dense_total
        info = {
            "ranks": list(ranks),
            "wer": float(error),
            "baseline_wer": float(self.target.baseline_error),
            "size_ratio": float(size_ratio),
            "params": params,
            "reward_name": self.reward_fn.name,
            "cache_hit": hit,
        }
        if self.latency is not None:
            info["latency_ratio"] = self.costs.ratio(self._actions)
            info["latency_ms"] = self.costs.total(self._actions)
        return self.score(error, params, info.get("latency_ratio")), info


def menu_at_budget(menu: RankMenu, target: CompressionTarget, budget: float) -> RankMenu:
    """``menu`` as the env uses it at ``budget``: a relative menu resolved around the common
    rank fraction at which every compressible matrix alike just fits the budget; an absolute
    menu as it is."""
    if not menu.relative:
        return menu
    from shrinkml_env.compression import all_matrices, describe_layers

    return menu_for_matrices(menu, all_matrices(describe_layers(target.model, target.layers)), budget)


def menu_for_matrices(menu: RankMenu, matrices, budget: float) -> RankMenu:
    """:func:`menu_at_budget` for a model's described ``matrices`` (no target needed)."""
    from shrinkml_env.compression import uniform_fraction_at_size

    return menu.at_budget(uniform_fraction_at_size(matrices, budget)) if menu.relative else menu
