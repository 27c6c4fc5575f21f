"""The budgeted quantity of a search: model size (parameters) or predicted latency.

One abstraction serves clamping, masks, the ``punish`` penalty, rewards and observations:
:class:`BudgetCosts` says what every action costs at every step, plus a fixed cost outside
the compressible layers, so that a configuration's ratio is
``(fixed + Σ_t cost[t, a_t]) / (fixed + Σ_t cost[t, dense])``.

* ``size``: costs are the compressible parameters each choice leaves; nothing is fixed, so
  the ratio is the size ratio of the compressible layers (the default, as before).
* ``latency``: costs are a measured latency table's entries (milliseconds of each module at
  each rank, :mod:`shrinkml_env.compression.latency`) and the fixed cost is the rest of the
  model. Costs need not fall with the rank: where a factorised module is slower than the
  dense one, keeping it dense is the cheaper choice, and the clamp takes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BUDGET_METRICS", "BudgetCosts"]

BUDGET_METRICS = ("size", "latency")


@dataclass(frozen=True)
class BudgetCosts:
    """What each action costs at each step, in the budgeted quantity.

    Attributes:
        metric: ``"size"`` or ``"latency"``.
        unit_costs: ``(steps, K)`` cost of each action at each step; the last action keeps
            the step dense.
        fixed: cost outside the compressible steps (0 for size; the rest of the model's
            latency for latency).
        unit: what the costs count (``"parameters"``, ``"ms"``).
    """

    metric: str
    unit_costs: np.ndarray
    fixed: float = 0.0
    unit: str = "parameters"

    def __post_init__(self) -> None:
        if self.metric not in BUDGET_METRICS:
            raise ValueError(f"unknown budget metric {self.metric!r}; accepted: {', '.join(BUDGET_METRICS)}")
        costs = np.asarray(self.unit_costs, dtype=np.float64)
        if costs.ndim != 2 or not np.isfinite(costs).all():
            raise ValueError(f"unit_costs must be a finite (steps, K) array; got shape {costs.shape}")
        object.__setattr__(self, "unit_costs", costs)
        if self.dense_total <= 0:
            raise ValueError(f"the dense model's {self.metric} must be positive; got {self.dense_total}")

    @property
    def dense_total(self) -> float:
        """The dense model's cost (fixed part included)."""
        return float(self.fixed + self.unit_costs[:, -1].sum())

    def capacity(self, budget: float) -> float:
        """What the compressible steps together may cost at ``budget`` (a ratio)."""
        return budget * self.dense_total - self.fixed

    def total(self, actions: Sequence[int]) -> float:
        """Cost of one action per step, fixed part included."""
        steps = np.arange(self.unit_costs.shape[0])
        return float(self.fixed + self.unit_costs[steps, np.asarray(actions, dtype=np.int64)].sum())

    def ratio(self, actions: Sequence[int]) -> float:
        """``total(actions) / dense_total``."""
        return self.total(actions) / self.dense_total

    def min_rest(self) -> np.ndarray:
        """``(steps + 1,)``: the cheapest the steps ``t..`` can cost together (0 at the end)."""
        return np.concatenate([np.cumsum(self.unit_costs.min(axis=1)[::-1])[::-1], [0.0]])

    def smallest_ratio(self) -> float:
        """The lowest ratio any configuration reaches."""
        return float((self.fixed + self.min_rest()[0]) / self.dense_total)
