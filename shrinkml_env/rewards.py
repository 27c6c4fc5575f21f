"""Named terminal rewards: each maps (error, size) of a compressed model to one number.

Every reward is a small frozen dataclass with a ``name`` and ``__call__(outcome) -> float``.
The error is the target's (WER for speech); "relative error" means ``error / baseline``,
which makes rewards comparable across targets with very different baseline errors. All
rewards are bounded (clipped to ``[-REWARD_BOUND, REWARD_BOUND]``) and sized so that one
WER doubling costs about 0.7, the scale at which SB3's default hyperparameters learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "REWARD_BOUND",
    "AccuracyGuaranteedReward",
    "AMCReward",
    "BudgetWERReward",
    "LinearTradeoffReward",
    "Outcome",
    "Reward",
    "WERSizeReward",
    "make_reward",
    "register_reward",
    "reward_names",
]

REWARD_BOUND = 5.0


@dataclass(frozen=True)
class Outcome:
    """What an episode produced.

    Attributes:
        error: the compressed model's error (WER as a fraction for speech).
        baseline_error: the uncompressed model's error on the same data.
        size_ratio: compressible parameters after ÷ before (1.0 = all dense).
        budget: the size ratio the episode was asked to reach.
        params: compressible parameters after compression.
        dense_params: compressible parameters before compression.
    """

    error: float
    baseline_error: float
    size_ratio: float
    budget: float
    params: int
    dense_params: int

    @property
    def relative_error(self) -> float:
        """``error / baseline`` with both floored at 1e-3 (a perfect baseline stays usable)."""
        return max(self.error, 1e-3) / max(self.baseline_error, 1e-3)


def _clip(value: float) -> float:
    return float(min(max(value, -REWARD_BOUND), REWARD_BOUND))


class Reward:
    """Base class: ``name`` identifies the reward in configs, records and results."""

    name = "reward"

    def __call__(self, outcome: Outcome) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class WERSizeReward(Reward):
    """Default. ``R = -log(error/baseline) - size_weight · log(size_ratio/budget)``.

    Equivalent to maximising ``1 / (relative_error · (size_ratio/budget)^size_weight)``: the
    WER/size trade-off of the design card in one scale-free number. Logs make equal *relative*
    changes count equally, so the reward means the same on a 5%-WER and a 30%-WER model; it
    is 0 for a model as accurate as the baseline at exactly the budget. With the default
    weight 0.5, a 10% relative WER rise is worth a 19% smaller model.
    """

    size_weight: float = 0.5
    name = "wer_size"

    def __post_init__(self) -> None:
        if self.size_weight < 0:
            raise ValueError(f"size_weight must be >= 0; got {self.size_weight}")

    def __call__(self, outcome: Outcome) -> float:
        size = max(outcome.size_ratio, 1e-6) / outcome.budget
        return _clip(-math.log(outcome.relative_error) - self.size_weight * math.log(size))


@dataclass(frozen=True)
class BudgetWERReward(Reward):
    """``R = -log(error/baseline)``: only accuracy counts; the constraint enforces the budget."""

    name = "budget_wer"

    def __call__(self, outcome: Outcome) -> float:
        return _clip(-math.log(outcome.relative_error))


@dataclass(frozen=True)
class AccuracyGuaranteedReward(Reward):
    """Maximise compression subject to ``error <= baseline · (1 + tolerance)``.

    ``R = 1 - size_ratio`` inside the tolerance (in ``[0, 1)``: smaller is better); beyond it
    ``R = -log(error / (baseline · (1 + tolerance)))`` scaled by ``penalty``, a graded
    punishment that grows with the excess and is always below any compliant reward.
    """

    tolerance: float = 0.05
    penalty: float = 2.0
    name = "accuracy_guaranteed"

    def __post_init__(self) -> None:
        if self.tolerance < 0 or self.penalty <= 0:
            raise ValueError(
                f"tolerance must be >= 0 and penalty > 0; got {self.tolerance}, {self.penalty}"
            )

    def __call__(self, outcome: Outcome) -> float:
        excess = outcome.relative_error / (1.0 + self.tolerance)
        if excess <= 1.0:
            return _clip(1.0 - outcome.size_ratio)
        return _clip(-self.penalty * math.log(excess) - 1e-3)


@dataclass(frozen=True)
class AMCReward(Reward):
    """AMC's ``R = -error · log(params)`` (He et al. 2018), divided by ``log(dense params)``.

    The division keeps it in ``[-error, 0]``-ish whatever the model size; the logarithm makes
    it mildly favour smaller models at equal error.
    """

    name = "amc"

    def __call__(self, outcome: Outcome) -> float:
        scale = math.log(max(outcome.dense_params, 2))
        return _clip(-min(outcome.error, 2.0) * math.log(max(outcome.params, 2)) / scale)


@dataclass(frozen=True)
class LinearTradeoffReward(Reward):
    """``R = -(wer_weight · (error/baseline - 1) + size_weight · size_ratio)``.

    A weighted linear trade-off between relative WER increase and size.
    """

    wer_weight: float = 1.0
    size_weight: float = 1.0
    name = "linear"

    def __post_init__(self) -> None:
        if self.wer_weight < 0 or self.size_weight < 0:
            raise ValueError(f"weights must be >= 0; got {self.wer_weight}, {self.size_weight}")

    def __call__(self, outcome: Outcome) -> float:
        return _clip(
            -(self.wer_weight * (outcome.relative_error - 1.0) + self.size_weight * outcome.size_ratio)
        )


_REGISTRY: dict[str, Callable[[], Reward]] = {
    WERSizeReward.name: WERSizeReward,
    BudgetWERReward.name: BudgetWERReward,
    AccuracyGuaranteedReward.name: AccuracyGuaranteedReward,
    AMCReward.name: AMCReward,
    LinearTradeoffReward.name: LinearTradeoffReward,
}


def register_reward(name: str, factory: Callable[[], Reward]) -> None:
    """Make a custom reward available by name (``gym.make(..., reward=name)``)."""
    if name in _REGISTRY:
        raise ValueError(f"a reward named {name!r} is already registered")
    _REGISTRY[name] = factory


def reward_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def make_reward(reward: str | Reward) -> Reward:
    """A reward object from a registered name (or the object itself)."""
    if isinstance(reward, Reward):
        return reward
    if reward not in _REGISTRY:
        raise ValueError(f"unknown reward {reward!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[reward]()


def budget_penalty(size_ratio: float, budget: float, weight: float = 5.0) -> float:
    """Terminal penalty of the ``punish`` constraint: grows linearly with the relative excess."""
    return -weight * max(size_ratio - budget, 0.0) / budget
