"""Rank assignments: validation and conversion from per-layer fractions.

A rank assignment is a ``dict`` from matrix key (see
:func:`~shrinkml_env.compression.layers.matrix_key`) to an integer rank in
``[1, min(m, n)]``. Matrices it does not name stay at full rank (dense).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from shrinkml_env.compression.layers import LayerSpec, MatrixSpec, all_matrices
from shrinkml_env.compression.size import size_ratio

__all__ = ["rank_for_fraction", "ranks_from_layer_fractions", "uniform_fraction_at_size", "uniform_ranks_at_size", "validate_ranks"]


def rank_for_fraction(matrix: MatrixSpec, fraction: float) -> int:
    """Rank ``round(fraction * min(m, n))``, at least 1.

    Raises:
        ValueError: If ``fraction`` is not in ``(0, 1]``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"rank fraction {fraction} for matrix {matrix.key!r} outside (0, 1]; "
            "give the fraction of min(m, n) to keep"
        )
    return max(1, min(matrix.full_rank, math.floor(fraction * matrix.full_rank + 0.5)))


def uniform_ranks_at_size(
    matrices: Sequence[MatrixSpec], size: float, *, at_least: bool = False
) -> tuple[dict[str, int], float]:
    """Uniform compression (one rank fraction for every matrix) matched to a size ratio.

    The paper's hand-picked comparison, at any fraction rather than only a menu's: with
    ``at_least=False`` the largest common fraction whose size ratio is at most ``size``; with
    ``at_least=True`` the smallest whose size ratio is at least ``size`` (the fair opponent
    for a searched configuration of that size: never fewer parameters than it).

    Returns:
        ``(ranks, size_ratio)``.

    Raises:
        ValueError: If ``size`` is not in ``(0, 1]`` or no uniform fraction reaches it.
    """
    matrices = tuple(matrices)
    fraction = uniform_fraction_at_size(matrices, size, at_least=at_least)
    ranks = {m.key: rank_for_fraction(m, fraction) for m in matrices}
    return ranks, size_ratio(matrices, ranks)


def uniform_fraction_at_size(matrices: Sequence[MatrixSpec], size: float, *, at_least: bool = False) -> float:
    """The common rank fraction behind :func:`uniform_ranks_at_size` (same arguments and errors)."""
    matrices = tuple(matrices)
    if not 0.0 < size <= 1.0:
        raise ValueError(f"size ratio {size} outside (0, 1]; give kept / dense compressible parameters")

    def ratio_at(fraction: float) -> float:
        return size_ratio(matrices, {m.key: rank_for_fraction(m, fraction) for m in matrices})

    # Size grows with the fraction in steps; bisect for the step's edge on the right side.
    low, high = 0.0, 1.0
    for _ in range(48):
        middle = (low + high) / 2
        fits = ratio_at(middle) < size if at_least else ratio_at(middle) <= size
        low, high = (middle, high) if fits else (low, middle)
    fraction = high if at_least else max(low, 1e-9)
    ratio = ratio_at(fraction)
    if (ratio < size) if at_least else (ratio > size):
        smallest = ratio_at(1e-9)
        raise ValueError(f"no uniform rank fraction gives a size ratio {'>=' if at_least else '<='} {size}; "
                         f"uniform sizes range from {smallest:.4f} to 1.0")
    return fraction


def ranks_from_layer_fractions(
    layers: Sequence[LayerSpec], fractions: Mapping[str, float] | Sequence[float]
) -> dict[str, int]:
    """Per-layer granularity: every matrix of a layer at the same rank fraction.

    Args:
        layers: Layers from :func:`~shrinkml_env.compression.layers.describe_layers`.
        fractions: One fraction in ``(0, 1]`` per layer, either in layer order or
            keyed by layer key (layers not named stay dense).

    Returns:
        Rank per matrix key.

    Raises:
        ValueError: On a wrong number of fractions, an unknown layer key or a
            fraction outside ``(0, 1]``.
    """
    if isinstance(fractions, Mapping):
        known = {layer.key for layer in layers}
        unknown = sorted(set(fractions) - known)
        if unknown:
            raise ValueError(f"unknown layer keys {unknown}; known layers: {sorted(known)}")
        pairs = [(layer, fractions[layer.key]) for layer in layers if layer.key in fractions]
    else:
        if len(fractions) != len(layers):
            raise ValueError(
                f"got {len(fractions)} rank fractions for {len(layers)} layers; give one per layer"
            )
        pairs = list(zip(layers, fractions, strict=True))
    return {m.key: rank_for_fraction(m, float(f)) for layer, f in pairs for m in layer.matrices}


def validate_ranks(
    matrices: Iterable[MatrixSpec] | Sequence[LayerSpec], ranks: Mapping[str, int]
) -> dict[str, int]:
    """Check a rank assignment and complete it with full ranks.

    Args:
        matrices: The compressible matrices (or layers, which are flattened).
        ranks: Rank per matrix key.

    Returns:
        A rank for every matrix (full rank where ``ranks`` names none).

    Raises:
        ValueError: On an unknown matrix key or a rank outside ``[1, min(m, n)]``.
        TypeError: On a rank that is not an integer.
    """
    items = tuple(matrices)
    specs = all_matrices(items) if items and isinstance(items[0], LayerSpec) else items
    by_key = {m.key: m for m in specs}
    unknown = sorted(set(ranks) - set(by_key))
    if unknown:
        raise ValueError(f"unknown matrix keys {unknown[:5]}; known matrices: {sorted(by_key)}")
    resolved = {}
    for key, spec in by_key.items():
        rank = ranks.get(key, spec.full_rank)
        if isinstance(rank, bool) or not isinstance(rank, int):
            # numpy integers are fine; floats are almost always a fraction passed by mistake.
            if hasattr(rank, "__index__") and not isinstance(rank, bool):
                rank = int(rank)
            else:
                raise TypeError(
                    f"rank for matrix {key!r} must be an int, got {rank!r}; "
                    "use ranks_from_layer_fractions for fractions"
                )
        if not 1 <= rank <= spec.full_rank:
            raise ValueError(f"rank {rank} for matrix {key!r} outside [1, {spec.full_rank}]")
        resolved[key] = rank
    return resolved
