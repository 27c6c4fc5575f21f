"""TorchScript LSTM recurrences for the factorised modules (private).

Conventions shared with :mod:`shrinkml_env.compression.factorised`:

* Shape legend: T frames, D directions (1 or 2), B batch, H hidden size, r rank.
* Gate order is ``[i, f, o, g]`` (the stock order ``[i, f, g, o]`` with the
  last two blocks swapped) and the ``g`` pre-activations are **doubled**, so
  one ``sigmoid`` over all ``4H`` gates gives every gate:
  ``tanh(x) = 2 * sigmoid(2x) - 1``. That saves an activation and three
  slices per step; at batch 1 the per-step cost is dominated by op dispatch.
* Sequences are sorted by length, longest first, and the reverse direction's
  inputs are already reversed within each sequence's length, so at step ``t``
  both directions work on the first ``batch_sizes[t]`` sequences (the packed
  layout), and the recurrences of both directions run as one batched matmul.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Optional  # noqa: UP035 - TorchScript needs typing.Optional

import torch
from torch import Tensor

__all__ = ["scripted_recurrence"]


@functools.cache
def scripted_recurrence() -> Callable:
    """The TorchScript-compiled :func:`_lstm_recurrence`, compiled on first use.

    TorchScript is deprecated in favour of ``torch.compile``, but compiling this
    loop with Inductor unrolls it per sequence length and needs a C++ toolchain;
    the scripted loop needs neither and runs the same graph for every length.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(_lstm_recurrence)


def _lstm_recurrence(
    gates_x: Tensor,
    h: Tensor,
    c: Tensor,
    hh_first: Tensor,
    hh_second: Optional[Tensor],  # noqa: UP045 - TorchScript needs Optional
    batch_sizes: list[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the recurrence over precomputed input gates.

    Args:
        gates_x: ``(T, D, B, 4H)`` input projections plus both biases.
        h: ``(D, B, H)`` initial hidden state.
        c: ``(D, B, H)`` initial cell state.
        hh_first: ``(D, H, r)`` transposed right factor ``V^T`` when
            ``hh_second`` is given, else the dense transposed ``W_hh^T`` ``(D, H, 4H)``.
        hh_second: ``(D, r, 4H)`` transposed left factor ``U^T``, or None (dense).
        batch_sizes: Active sequences per step, non-increasing, ``len <= T``.

    Returns:
        ``out`` ``(T, D, B, H)`` (zeros at padded steps), final ``h`` and ``c`` ``(D, B, H)``.
    """
    batch = h.size(1)
    outs: list[Tensor] = []
    padding = torch.zeros(h.size(0), batch, h.size(2), dtype=h.dtype, device=h.device)
    # unbind once: indexing a list in the loop is cheaper than a select op per step.
    inputs = gates_x.unbind(0)
    for t in range(len(batch_sizes)):
        active = batch_sizes[t]
        if active == batch:
            h_prev = h
            c_prev = c
            g_x = inputs[t]
        else:
            h_prev = h.narrow(1, 0, active)
            c_prev = c.narrow(1, 0, active)
            g_x = inputs[t].narrow(1, 0, active)
        if hh_second is None:
            pre = torch.baddbmm(g_x, h_prev, hh_first)
        else:
            pre = torch.baddbmm(g_x, torch.bmm(h_prev, hh_first), hh_second)
        i, f, o, g = torch.sigmoid(pre).chunk(4, 2)
        # c = f*c + i*tanh(g) with tanh(g) = 2*sigmoid(2g) - 1 (g arrives doubled).
        c_new = torch.addcmul(f * c_prev - i, i, g, value=2.0)
        h_new = o * torch.tanh(c_new)
        if active == batch:
            h = h_new
            c = c_new
            outs.append(h_new)
        else:
            h = torch.cat([h_new, h.narrow(1, active, batch - active)], 1)
            c = torch.cat([c_new, c.narrow(1, active, batch - active)], 1)
            outs.append(torch.cat([h_new, padding.narrow(1, active, batch - active)], 1))
    for _ in range(gates_x.size(0) - len(batch_sizes)):
        outs.append(padding)
    return torch.stack(outs), h, c
