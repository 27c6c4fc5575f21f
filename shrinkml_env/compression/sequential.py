"""Sequential (error-propagation-aware) fitting of the factors, layer by layer.

Whitened SVD (:mod:`~shrinkml_env.compression.svd`) fits each matrix to the dense matrix's
outputs on the *dense* model's inputs. Once the layers below are compressed, a matrix sees
different inputs ``x̃`` than the ``x`` it was fitted on. ``sequential`` fits each matrix, in
the order of ``layers`` (encoder, then decoder), to what the dense layer computes on the dense
model's inputs, given the inputs the already-compressed model feeds it:

    minimise over rank-r ``A B``:  E‖W x − A B x̃‖²

This is reduced-rank regression, with a closed form: with ``C̃ = E[x̃ x̃ᵀ]`` (damped as in
``whitened``), ``S̃`` its Cholesky factor and ``M = W E[x x̃ᵀ] C̃⁻¹`` the unconstrained
least-squares map, the objective is ``const + ‖(M − A B) S̃‖²_F``, so the rank-r solution is
the truncated SVD of ``M S̃ = U Σ Vᵀ``: ``A B = U_r Σ_r · V_rᵀ S̃⁻¹``. Every rank is still a
prefix of one decomposition, exported models keep two factors per matrix (size and speed
unchanged), and with ``x̃ = x`` it is exactly ``whitened``. What differs from ``whitened`` is
that the fit depends on the ranks of the layers below, so it is done for one configuration
(:func:`fit_sequential`): searches score configurations with the whitened bank and refit
the ones they export.

How the inputs are paired: for each layer, one calibration pass of the dense model records
its input rows, and one pass of the partly compressed model (layers below refitted, this
layer and those above at their start-bank truncation) is paired with them row by row; so
``calibrate`` must feed both the same data in the same order (teacher forcing does). A
recurrent matrix's ``x̃`` are the compressed layer's own states (with its start-bank
factors), the closest the fit can get without iterating. Written here because PSVD-style
sequential fitting exists in no maintained library for LSTMs (the LLM tools, e.g. GPTQ's,
fit linear layers of transformers).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from shrinkml_env.compression.calibration import input_hooks
from shrinkml_env.compression.layers import LayerSpec, MatrixSpec, all_matrices, get_module
from shrinkml_env.compression.ranks import validate_ranks
from shrinkml_env.compression.search_model import SearchModel
from shrinkml_env.compression.size import keeps_dense
from shrinkml_env.compression.svd import SVDBank, _Decomposition, damped, whitened_svd

__all__ = ["fit_sequential"]


class _PairedMoments:
    """``Σ x̃ x̃ᵀ`` and ``Σ x x̃ᵀ`` per key, pairing a compressed pass's rows with the dense
    pass's rows recorded before it (same calls, same order)."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys
        self.dense: dict[str, deque[Tensor]] = defaultdict(deque)
        self.auto: dict[str, Tensor] = {}
        self.cross: dict[str, Tensor] = {}
        self.counts: dict[str, int] = defaultdict(int)

    def record(self, key: str, rows: Tensor) -> None:
        if key in self.keys:
            self.dense[key].append(rows.detach().reshape(-1, rows.shape[-1]).to("cpu", torch.float32))

    def pair(self, key: str, rows: Tensor) -> None:
        if key not in self.keys:
            return
        if not self.dense[key]:
            raise ValueError(
                f"the calibration run fed matrix {key!r} more often in the compressed model than in "
                "the dense one; sequential fitting needs calibrate() to feed both the same data in "
                "the same order (teacher forcing, no sampling)"
            )
        x = self.dense[key].popleft().double()
        x_tilde = rows.detach().reshape(-1, rows.shape[-1]).to("cpu", torch.float64)
        if x.shape != x_tilde.shape:
            raise ValueError(
                f"matrix {key!r} got inputs of shape {tuple(x_tilde.shape)} in the compressed model "
                f"but {tuple(x.shape)} in the dense one at the same call; calibrate() must feed both "
                "the same data in the same order"
            )
        keep = x.abs().sum(dim=1) > 0  # padding rows, as in input_moments
        x, x_tilde = x[keep], x_tilde[keep]
        if key in self.auto:
            self.auto[key] += x_tilde.T @ x_tilde
            self.cross[key] += x.T @ x_tilde
        else:
            self.auto[key] = x_tilde.T @ x_tilde
            self.cross[key] = x.T @ x_tilde
        self.counts[key] += x.shape[0]


def fit_sequential(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    ranks: Mapping[str, int],
    calibrate: Callable[[nn.Module], None],
    start: SVDBank,
) -> SVDBank:
    """Refit the factorised matrices of ``ranks`` layer by layer (see the module docstring).

    Args:
        model: The dense model (not modified).
        layers: From :func:`~shrinkml_env.compression.layers.describe_layers`; fitted in this
            order.
        ranks: Rank per matrix key (missing keys stay dense); only matrices below their
            break-even rank are refitted.
        calibrate: ``calibrate(model)`` runs a model over calibration data, the same data in
            the same order on every call.
        start: The bank whose truncations stand in for the layers not fitted yet (the
            ``whitened`` bank of ``model``).

    Returns:
        A bank (``method == "sequential"``) holding the refitted decompositions of the
        factorised matrices and ``start``'s for the others. Its slices at ``ranks`` are the
        sequential fit; other ranks of a refitted matrix are fits for the same inputs.

    Raises:
        ValueError: On unknown keys or ranks out of range, or a ``calibrate`` that feeds the
            dense and compressed models different inputs.
    """
    matrices = all_matrices(layers)
    resolved = validate_ranks(matrices, ranks)
    working = SearchModel(model, start)
    working.apply(resolved)
    decompositions: dict[str, _Decomposition] = {}
    by_module: dict[str, list[MatrixSpec]] = {}
    for spec in matrices:
        if not keeps_dense(spec.rows, spec.cols, resolved[spec.key]):
            by_module.setdefault(spec.module_path, []).append(spec)
    for path in dict.fromkeys(layer.module_path for layer in layers):
        specs = by_module.get(path)
        if not specs:
            continue
        paired = _PairedMoments({s.key for s in specs})
        with torch.no_grad():
            with input_hooks(model, [path], paired.record):
                calibrate(model)
            with input_hooks(working.model, [path], paired.pair):
                calibrate(working.model)
        if left := sorted(key for key, rows in paired.dense.items() if rows):
            raise ValueError(
                f"the calibration run fed matrix {left[0]!r} fewer times in the compressed model than in "
                "the dense one; sequential fitting needs calibrate() to feed both the same data in the "
                "same order (teacher forcing, no sampling)"
            )
        for spec in specs:
            if paired.counts[spec.key] == 0:
                raise ValueError(
                    f"the calibration run never fed matrix {spec.key!r}; the calibration function "
                    "must run every compressible layer of the model"
                )
            decomposition = _refit(start.original(spec.key), paired, spec.key)
            decompositions[spec.key] = decomposition
            rank = resolved[spec.key]
            param = getattr(get_module(working.model, path), spec.param_name)
            param.detach().copy_(decomposition.left[:, :rank] @ decomposition.right[:rank])
    return start.replaced(decompositions, "sequential")


def _refit(weight: Tensor, paired: _PairedMoments, key: str) -> _Decomposition:
    count = paired.counts[key]
    auto, cross = paired.auto[key] / count, paired.cross[key] / count
    # M = W E[x x̃ᵀ] C̃⁻¹, with C̃ damped as the SVD below damps it (C̃ is symmetric).
    least_squares = torch.linalg.solve(damped(auto), (weight.double() @ cross).T).T
    u, s, right = whitened_svd(least_squares, auto, torch.float32)
    return _Decomposition(
        dense=weight.clone(),
        left=(u * s).to(torch.float32).contiguous(),
        right=right.to(torch.float32).contiguous(),
        singular_values=s.to(torch.float32),
    )
