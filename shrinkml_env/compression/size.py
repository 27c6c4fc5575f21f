"""The one place where parameters are counted and the size ratio is defined.

A matrix ``W`` of shape ``(m, n)`` factorised at rank ``r`` as ``U @ V``
(``U``: ``m x r``, ``V``: ``r x n``) holds ``r * (m + n)`` parameters instead
of ``m * n``. That is smaller only while ``r < m * n / (m + n)``, the
*break-even rank*; at or above it the matrix stays dense, so compression never
grows a layer.

``size_ratio`` = compressible parameters after compression / before. It is 1.0
when every matrix is dense. Biases (and every parameter outside the named
layers) are not compressible and are left out of both numerator and
denominator, so the ratio measures exactly what the rank choice controls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shrinkml_env.compression.layers import MatrixSpec

__all__ = [
    "break_even_rank",
    "compressible_parameter_count",
    "keeps_dense",
    "matrix_parameter_count",
    "size_ratio",
]


def break_even_rank(rows: int, cols: int) -> float:
    """``m * n / (m + n)``: factorising at a rank at or above this saves nothing."""
    return rows * cols / (rows + cols)


def keeps_dense(rows: int, cols: int, rank: int | None) -> bool:
    """Whether a ``rows x cols`` matrix at ``rank`` stays dense.

    ``None`` means full rank. Exact integer test of ``rank >= m*n/(m+n)``.
    """
    return rank is None or rank * (rows + cols) >= rows * cols


def matrix_parameter_count(rows: int, cols: int, rank: int | None = None) -> int:
    """Parameters of one ``rows x cols`` matrix kept at ``rank``.

    Args:
        rows: ``m``.
        cols: ``n``.
        rank: Rank ``r``, or ``None`` for dense.

    Returns:
        ``m * n`` when the matrix stays dense (see :func:`keeps_dense`),
        otherwise ``r * (m + n)``.

    Raises:
        ValueError: If ``rank`` is outside ``[1, min(m, n)]``.
    """
    if rank is not None and not 1 <= rank <= min(rows, cols):
        raise ValueError(f"rank {rank} for a {rows}x{cols} matrix outside [1, {min(rows, cols)}]")
    return rows * cols if keeps_dense(rows, cols, rank) else rank * (rows + cols)


def compressible_parameter_count(
    matrices: Iterable[MatrixSpec], ranks: Mapping[str, int] | None = None
) -> int:
    """Sum of :func:`matrix_parameter_count` over ``matrices``.

    Args:
        matrices: The compressible matrices.
        ranks: Rank per matrix key; matrices not named (or ``ranks=None``) are dense.
    """
    ranks = ranks or {}
    return sum(matrix_parameter_count(m.rows, m.cols, ranks.get(m.key)) for m in matrices)


def size_ratio(matrices: Iterable[MatrixSpec], ranks: Mapping[str, int]) -> float:
    """Compressible parameters after compression divided by before (1.0 = all dense)."""
    matrices = tuple(matrices)
    before = compressible_parameter_count(matrices)
    if before == 0:
        raise ValueError("size_ratio needs at least one matrix")
    return compressible_parameter_count(matrices, ranks) / before
