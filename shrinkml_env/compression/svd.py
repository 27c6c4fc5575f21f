"""A bank of precomputed SVDs: every rank choice is a slice, never a new SVD.

Precision: the SVD is computed in float32 by default. The weights are float32,
float32 ``gesdd`` reconstructs them to ~1e-6 relative error (far below any
truncation that saves space), and it is about twice as fast as float64 (on 2
CPU cores ~0.6 s against ~1.1 s for 5.6M LSTM weights), which keeps the
precompute well inside its 2 s budget for a 6-8M-parameter model. Pass
``dtype=torch.float64`` for a more accurate spectrum; the stored factors are
float32 either way. A full-rank (or at-or-above-break-even) choice never uses
the SVD: it returns the original weight bit for bit.

Methods (``FACTORISATIONS``):

* ``plain``: truncated SVD of ``W``; minimises ``‖W − W_r‖_F``.
* ``whitened``: activation-aware (as SVD-LLM and ASVD do for transformers): with
  ``C = E[x xᵀ]`` the second moment of the matrix's inputs on calibration data
  (:func:`~shrinkml_env.compression.calibration.input_moments`) and ``S`` its Cholesky
  factor (``C = S Sᵀ``, damped by ``1e-4 · mean(diag C)``), truncate ``W S = U Σ Vᵀ`` and
  keep ``U_r Σ_r`` and ``V_rᵀ S⁻¹``. That minimises ``E‖(W − W_r) x‖²`` over the data:
  the error of what the matrix *outputs*. Every rank is still a prefix slice of one
  decomposition, and exported models have the same two factors per matrix, so size and
  speed do not change; singular values and truncation errors are those of ``W S``.
* ``sequential``: each matrix fitted to the dense layer's outputs given the inputs of the
  already-compressed layers below it. That depends on the ranks below, so it is not one
  bank for every configuration: :func:`~shrinkml_env.compression.sequential.fit_sequential`
  fits one configuration, starting from the ``whitened`` bank that searches score with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from shrinkml_env.compression.layers import LayerSpec, MatrixSpec, all_matrices, get_module
from shrinkml_env.compression.size import keeps_dense

__all__ = ["FACTORISATIONS", "SVDBank"]

FACTORISATIONS = ("plain", "whitened", "sequential")
_BANK_METHODS = ("plain", "whitened")
_DAMPING = 1e-4


@dataclass(frozen=True)
class _Decomposition:
    dense: Tensor  # (m, n) original weight, float32
    left: Tensor  # (m, k) U * S, k = min(m, n)
    right: Tensor  # (k, n) Vh
    singular_values: Tensor  # (k,) descending


class SVDBank:
    """Precomputed SVDs of a model's compressible matrices.

    Build with :meth:`compute`. Memory: about three copies of the compressible
    weights (original, ``U * S`` and ``Vh``).
    """

    method = "plain"

    def __init__(self, matrices: Sequence[MatrixSpec], decompositions: dict[str, _Decomposition]):
        self.matrices: tuple[MatrixSpec, ...] = tuple(matrices)
        self._specs = {m.key: m for m in self.matrices}
        self._decompositions = decompositions

    @classmethod
    def compute(
        cls,
        model: nn.Module,
        layers: Sequence[LayerSpec],
        *,
        dtype: torch.dtype = torch.float32,
        method: str = "plain",
        moments: Mapping[str, Tensor] | None = None,
    ) -> SVDBank:
        """SVD every matrix of ``layers`` once.

        Args:
            model: The dense model.
            layers: From :func:`~shrinkml_env.compression.layers.describe_layers`.
            dtype: ``torch.float32`` (default, fast) or ``torch.float64`` for the SVD.
            method: ``"plain"`` or ``"whitened"`` (see the module docstring).
            moments: ``whitened`` only: input second moment ``(n, n)`` per matrix key, from
                :func:`~shrinkml_env.compression.calibration.input_moments`.

        Raises:
            ValueError: If ``dtype`` is not a float type of 32 or 64 bits, a matrix's
                shape in ``model`` differs from its spec, the method is unknown, or
                ``whitened`` lacks a matrix's moment (or ``plain`` is given moments).
        """
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if method == "sequential":
            raise ValueError(
                "method 'sequential' depends on the ranks of the layers below each matrix, so it is "
                "fitted per configuration: compute the 'whitened' bank and pass it to "
                "shrinkml_env.compression.sequential.fit_sequential"
            )
        if method not in _BANK_METHODS:
            raise ValueError(f"unknown factorisation method {method!r}; accepted: {', '.join(FACTORISATIONS)}")
        if (method == "whitened") != (moments is not None):
            raise ValueError(
                "method 'whitened' needs the input moments of calibration data (moments=...), "
                "and 'plain' takes none"
            )
        matrices = all_matrices(layers)
        decompositions = {}
        with torch.no_grad():
            for spec in matrices:
                weight = _weight(model, spec).detach().to("cpu", torch.float32)
                if method == "plain":
                    u, s, vh = torch.linalg.svd(weight.to(dtype), full_matrices=False)
                    right = vh
                else:
                    u, s, right = whitened_svd(weight, _moment(moments, spec), dtype)
                decompositions[spec.key] = _Decomposition(
                    dense=weight.clone(),
                    left=(u * s).to(torch.float32).contiguous(),
                    right=right.to(torch.float32).contiguous(),
                    singular_values=s.to(torch.float32),
                )
        bank = cls(matrices, decompositions)
        bank.method = method
        return bank

    def __contains__(self, key: object) -> bool:
        return key in self._decompositions

    def spec(self, key: str) -> MatrixSpec:
        """The :class:`MatrixSpec` of a matrix key."""
        self._get(key)
        return self._specs[key]

    def singular_values(self, key: str) -> Tensor:
        """Singular values of a matrix, descending. Shape ``(min(m, n),)``."""
        return self._get(key).singular_values

    def truncation_error(self, key: str, rank: int) -> float:
        """Frobenius error of the rank-``rank`` truncation: ``sqrt(sum of dropped sigma^2)``."""
        s = self._get(key).singular_values
        self._check_rank(key, rank, s.numel())
        return float(s[rank:].double().square().sum().sqrt())

    def reconstruct(self, key: str, rank: int, out: Tensor | None = None) -> Tensor:
        """The matrix as the search-time model holds it at ``rank``.

        Args:
            key: Matrix key.
            rank: Rank in ``[1, min(m, n)]``. At or above the break-even rank the
                original dense weight is returned (compression never grows a layer).
            out: Optional ``(m, n)`` float32 CPU tensor to write into (no allocation).

        Returns:
            ``(m, n)`` tensor: ``U_r diag(S_r) Vh_r``, or the original weight.
        """
        d = self._get(key)
        m, n = d.dense.shape
        self._check_rank(key, rank, min(m, n))
        if keeps_dense(m, n, rank):
            return d.dense.clone() if out is None else out.copy_(d.dense)
        return torch.matmul(d.left[:, :rank], d.right[:rank], out=out)

    def factors(self, key: str, rank: int) -> tuple[Tensor, Tensor]:
        """Balanced factors ``(U_r sqrt(S_r), sqrt(S_r) Vh_r)`` of shapes ``(m, r)``, ``(r, n)``.

        Splitting the singular values evenly gives both factors the same scale,
        which keeps fine-tuning after compression well conditioned.

        Raises:
            ValueError: If ``rank`` keeps the matrix dense (nothing to factorise)
                or is outside ``[1, min(m, n)]``.
        """
        d = self._get(key)
        m, n = d.dense.shape
        self._check_rank(key, rank, min(m, n))
        if keeps_dense(m, n, rank):
            raise ValueError(
                f"rank {rank} for matrix {key!r} is at or above the break-even rank "
                f"{m * n / (m + n):.1f}; the matrix stays dense and has no factors"
            )
        root = d.singular_values[:rank].sqrt()
        # left = U*S, so U*sqrt(S) = left / sqrt(S); guard exact zeros in S.
        safe = torch.where(root > 0, root, torch.ones_like(root))
        left = torch.where(root > 0, d.left[:, :rank] / safe, torch.zeros_like(d.left[:, :rank]))
        return left.contiguous(), (d.right[:rank] * root[:, None]).contiguous()

    def original(self, key: str) -> Tensor:
        """The original dense weight (not a copy; do not modify). Shape ``(m, n)``."""
        return self._get(key).dense

    def replaced(self, decompositions: Mapping[str, _Decomposition], method: str) -> SVDBank:
        """A bank of the same matrices with ``decompositions`` in place of this bank's for
        their keys (the others shared, not copied), labelled ``method``."""
        unknown = sorted(set(decompositions) - set(self._decompositions))
        if unknown:
            raise ValueError(f"matrices {unknown} are not in the SVD bank; known: {sorted(self._decompositions)}")
        bank = SVDBank(self.matrices, {**self._decompositions, **decompositions})
        bank.method = method
        return bank

    def _get(self, key: str) -> _Decomposition:
        try:
            return self._decompositions[key]
        except KeyError as e:
            raise ValueError(
                f"matrix {key!r} is not in the SVD bank; known: {sorted(self._decompositions)}"
            ) from e

    @staticmethod
    def _check_rank(key: str, rank: int, full: int) -> None:
        if not 1 <= rank <= full:
            raise ValueError(f"rank {rank} for matrix {key!r} outside [1, {full}]")


def _moment(moments: Mapping[str, Tensor], spec: MatrixSpec) -> Tensor:
    try:
        moment = moments[spec.key]
    except KeyError as e:
        raise ValueError(f"no input moment for matrix {spec.key!r}; the calibration run must cover it") from e
    if tuple(moment.shape) != (spec.cols, spec.cols):
        raise ValueError(
            f"the input moment of {spec.key!r} is {tuple(moment.shape)}; the matrix takes "
            f"{spec.cols} inputs, so it must be ({spec.cols}, {spec.cols})"
        )
    return moment


def damped(moment: Tensor) -> Tensor:
    """``moment`` (float64) plus ``1e-4 · mean(diag)`` on the diagonal, so it is invertible."""
    c = moment.to(torch.float64)
    return c + _DAMPING * float(c.diagonal().mean().clamp(min=1e-12)) * torch.eye(c.shape[0], dtype=c.dtype)


def whitened_svd(weight: Tensor, moment: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """``U, Σ, Vᵀ S⁻¹`` with ``W S = U Σ Vᵀ`` and ``S Sᵀ`` the damped input moment."""
    root = torch.linalg.cholesky(damped(moment))
    u, s, vh = torch.linalg.svd((weight.to(torch.float64) @ root).to(dtype), full_matrices=False)
    # Vᵀ S⁻¹: solve X S = Vᵀ, i.e. Sᵀ Xᵀ = V (S lower triangular, so Sᵀ is upper).
    right = torch.linalg.solve_triangular(root.T, vh.to(torch.float64).T, upper=True).T
    return u, s, right


def _weight(model: nn.Module, spec: MatrixSpec) -> Tensor:
    weight = getattr(get_module(model, spec.module_path), spec.param_name)
    if tuple(weight.shape) != spec.shape:
        raise ValueError(
            f"matrix {spec.key!r} has shape {tuple(weight.shape)} in the model but "
            f"{spec.shape} in its spec; describe the layers of this model again"
        )
    return weight
