"""Training for compressibility: a decoupled nuclear-norm decay of the LSTM matrices.

Truncated SVD after training throws away the tail of each matrix's spectrum. On the shipped
model that tail is heavy — rank n/4 keeps only 69–79 % of every LSTM matrix's squared
singular values — so compressing it costs a lot of WER, and more as it trains longer
(``benchmarks/results/compressibility.json``). Penalising the nuclear norm (the sum of the
singular values, the convex stand-in for rank) while training pushes that tail towards zero,
so the same truncation later loses less; trace-norm-regularised LSTM acoustic models
compressed to a third of their size with little loss (Prabhavalkar et al., ICASSP 2016;
Kliegl et al., 2017).

The penalty is applied as its proximal step, singular-value soft-thresholding
``W ← U · max(Σ − τ, 0) · Vᵀ``, every few updates rather than as a gradient: a subgradient
needs an SVD of all twenty matrices per update (0.7 s on one core for the default model,
against a 2.3-s update), the proximal step only every ``every`` updates. The step size
follows the learning rate, ``τ = lr · weight · every``, so that ``weight`` reads like
AdamW's decoupled weight decay: per update it moves each singular value by at most
``lr · weight``, whatever the scale of the loss's gradients.

Written here rather than taken from a library: it is a few lines of ``torch.linalg.svd``, and
the proximal-operator libraries (e.g. pyproximal) work on NumPy arrays, not on a torch model's
parameters in place.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["lstm_matrices", "nuclear_norm", "soft_threshold"]


def lstm_matrices(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The input and recurrent matrices of a dense model's compressible LSTM layers, by
    ``state_dict`` name: exactly those ``shrinkml search`` factorises, in episode order."""
    # Imported here, as asr.checkpoint.is_factorised does: asr's modules load without the env package.
    from shrinkml_env.compression.layers import all_matrices, describe_layers

    matrices = all_matrices(describe_layers(model, model.compressible_layers()))
    return [(m.key, model.get_parameter(m.key)) for m in matrices]


@torch.no_grad()
def nuclear_norm(model: nn.Module) -> float:
    """The sum of the nuclear norms of :func:`lstm_matrices`."""
    return sum(float(torch.linalg.svdvals(p.float()).sum()) for _, p in lstm_matrices(model))


@torch.no_grad()
def soft_threshold(model: nn.Module, tau: float) -> None:
    """The proximal step of ``tau · Σ ‖W‖_*``: every singular value of every LSTM matrix
    lowered by ``tau`` and clipped at zero, the singular vectors kept, in place."""
    if not tau >= 0.0:
        raise ValueError(f"tau must be >= 0; got {tau!r}")
    if tau == 0.0:
        return
    for _, parameter in lstm_matrices(model):
        u, s, vh = torch.linalg.svd(parameter.float(), full_matrices=False)
        parameter.copy_((u * (s - tau).clamp(min=0.0)) @ vh)
