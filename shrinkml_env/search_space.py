"""The search space: which ranks an agent may choose for a layer (the paper's second study).

A :class:`RankMenu` is an ascending tuple of rank *fractions* of each matrix's full rank
``min(m, n)``, followed implicitly by "keep dense". Action ``k < K-1`` picks fraction
``fractions[k]``; action ``K-1`` keeps the layer dense. A fraction whose rank reaches a
matrix's break-even rank ``m·n/(m+n)`` also keeps that matrix dense, so no choice grows a
layer. Only ranks below break-even save space — for LSTM matrices (4H × H or 4H × 2H) that is
below 67–80% of full rank — and a prototype found useful ranks at or below half of full rank,
hence the default: eight steps of 1/16 up to 1/2.

A *relative* menu (``budget7``) holds multiples of the budget's uniform fraction instead; the
environment resolves it for its budget (:meth:`RankMenu.at_budget`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MENU", "MENUS", "RankMenu", "make_menu"]


@dataclass(frozen=True)
class RankMenu:
    """Ascending rank fractions in (0, 1]; the action space has ``len(fractions) + 1`` actions."""

    fractions: tuple[float, ...]
    name: str = "custom"
    # True: ``fractions`` are multiples of the budget's uniform fraction (see :meth:`at_budget`)
    relative: bool = False

    def __post_init__(self) -> None:
        fractions = tuple(float(f) for f in self.fractions)
        object.__setattr__(self, "fractions", fractions)
        if not fractions:
            raise ValueError("a rank menu needs at least one fraction besides 'keep dense'; got none")
        if self.relative and any(not 0.0 < f for f in fractions):
            raise ValueError(f"relative menu multipliers must be > 0; got {fractions}")
        if not self.relative and any(not 0.0 < f <= 1.0 for f in fractions):
            raise ValueError(f"rank fractions must lie in (0, 1]; got {fractions}")
        if any(b <= a for a, b in zip(fractions, fractions[1:])):
            raise ValueError(f"rank fractions must be strictly ascending; got {fractions}")

    def at_budget(self, uniform_fraction: float) -> RankMenu:
        """The absolute menu of a relative one, for a budget whose uniform fraction is given.

        ``uniform_fraction`` is the common rank fraction at which every matrix alike just fits
        the budget (:func:`~shrinkml_env.compression.uniform_fraction_at_size`). Multiplier 1
        is then exactly that uniform compression, so the hand-picked baseline is one point of
        the space and every other point is a reallocation around it. Fractions above 1 are
        cut to 1 (and repeats dropped).
        """
        if not self.relative:
            return self
        if not 0.0 < uniform_fraction <= 1.0:
            raise ValueError(f"uniform_fraction must lie in (0, 1]; got {uniform_fraction}")
        absolute = sorted({min(1.0, m * uniform_fraction) for m in self.fractions})
        return RankMenu(tuple(absolute), f"{self.name}@{uniform_fraction:.4f}")

    @property
    def size(self) -> int:
        """Number of actions ``K`` (fractions plus "keep dense")."""
        return len(self.fractions) + 1

    @property
    def dense_action(self) -> int:
        return len(self.fractions)

    def fraction(self, action: int) -> float | None:
        """Rank fraction of ``action``, or None for "keep dense"."""
        if not 0 <= action < self.size:
            raise ValueError(f"action {action} outside the menu's [0, {self.size - 1}]")
        return None if action == self.dense_action else self.fractions[action]

    @classmethod
    def linear(cls, steps: int = 8, max_fraction: float = 0.5) -> RankMenu:
        """``steps`` evenly spaced fractions ``max_fraction/steps, …, max_fraction``."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1; got {steps}")
        return cls(tuple(max_fraction * (i + 1) / steps for i in range(steps)), f"linear{steps}")

    @classmethod
    def geometric(cls, steps: int = 6, min_fraction: float = 1 / 32, max_fraction: float = 0.5) -> RankMenu:
        """``steps`` fractions spaced by a constant ratio: finer where ranks are small."""
        if steps < 2 or not 0 < min_fraction < max_fraction:
            raise ValueError(
                f"need steps >= 2 and 0 < min_fraction < max_fraction; got {steps}, "
                f"{min_fraction}, {max_fraction}"
            )
        ratio = (max_fraction / min_fraction) ** (1 / (steps - 1))
        return cls(tuple(min_fraction * ratio**i for i in range(steps)), f"geometric{steps}")


DEFAULT_MENU = RankMenu.linear(8, 0.5)
MENUS: dict[str, RankMenu] = {
    "linear8": DEFAULT_MENU,
    "linear4": RankMenu.linear(4, 0.5),
    "linear16": RankMenu.linear(16, 0.5),
    "geometric6": RankMenu.geometric(6),
    # The naive space: the whole rank range, most of which cannot save anything.
    "full_range8": RankMenu.linear(8, 1.0),
    # Centred on the budget: multiples of the uniform fraction that just fits it, so the
    # uniform allocation is in the space and the agent searches reallocations around it.
    "budget7": RankMenu((0.5, 0.65, 0.8, 1.0, 1.25, 1.55, 2.0), "budget7", relative=True),
}


def make_menu(menu: str | RankMenu | tuple[float, ...] | list[float] | None) -> RankMenu:
    """A menu from a preset name, a tuple of fractions, or a menu (None: the default)."""
    if menu is None:
        return DEFAULT_MENU
    if isinstance(menu, RankMenu):
        return menu
    if isinstance(menu, str):
        if menu not in MENUS:
            raise ValueError(f"unknown rank menu {menu!r}; presets: {', '.join(MENUS)}")
        return MENUS[menu]
    return RankMenu(tuple(menu))
