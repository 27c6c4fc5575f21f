"""Second moments of the inputs each compressible matrix sees, gathered on calibration data.

Activation-aware factorisation (``method="whitened"`` of :class:`~.svd.SVDBank`) truncates
``W S`` instead of ``W``, where ``S Sᵀ = E[x xᵀ]`` over the inputs ``x`` that multiply
``W`` when the model runs: the rank-``r`` result then minimises the error of the matrix's
*outputs* on that data, not of its entries. This module collects ``E[x xᵀ]`` per matrix
with forward hooks while a caller-supplied function runs the dense model on calibration
data. Written here because the libraries that do activation-aware SVD (for transformer
LLMs) hook linear layers only; the inputs of an LSTM's recurrent matrices are its own past
outputs, which they do not collect.

What each matrix's input is:

* ``weight_ih`` (and ``_reverse``) of an ``nn.LSTM`` layer: the layer's input sequence.
* ``weight_hh``: the direction's hidden states, taken from the layer's output (``h_1 … h_T``
  stand in for ``h_0 … h_{T-1}``; ``h_0`` is zero and adds nothing to the moment).
* ``nn.LSTMCell``: its input ``x`` and its previous hidden state ``h`` (zero when not given).
* ``nn.Linear``: its input.

Padding is excluded: packed sequences carry none, and rows of a padded tensor that are
exactly zero are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from shrinkml_env.compression.layers import LayerSpec, all_matrices, get_module

__all__ = ["Sink", "input_hooks", "input_moments"]


class _Moments:
    """Running ``Σ x xᵀ`` and row counts per matrix key, accumulated in float64."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, rows: Tensor) -> None:
        rows = rows.detach().reshape(-1, rows.shape[-1]).to("cpu", torch.float64)
        rows = rows[rows.abs().sum(dim=1) > 0]
        if rows.shape[0] == 0:
            return
        outer = rows.T @ rows
        if key in self.sums:
            self.sums[key] += outer
        else:
            self.sums[key] = outer
        self.counts[key] = self.counts.get(key, 0) + rows.shape[0]


def _rows(x: Tensor | PackedSequence) -> Tensor:
    return x.data if isinstance(x, PackedSequence) else x


Sink = Callable[[str, Tensor], None]
"""Receives ``(matrix key, rows of its input)`` for every forward call of a hooked module."""


def _lstm_hook(module_path: str, module: nn.LSTM, sink: Sink):
    if module.num_layers != 1:
        raise ValueError(
            f"activation-aware factorisation needs nn.LSTM modules of one layer each; "
            f"{module_path!r} has num_layers={module.num_layers}, whose inner layers' inputs "
            "cannot be observed. Use method 'plain' for this model."
        )
    hidden = module.proj_size or module.hidden_size
    directions = ("", "_reverse") if module.bidirectional else ("",)

    def hook(_module, args, output) -> None:
        x = _rows(args[0])
        out = _rows(output[0])
        for d, suffix in enumerate(directions):
            sink(f"{module_path}.weight_ih_l0{suffix}", x)
            sink(f"{module_path}.weight_hh_l0{suffix}", out[..., d * hidden : (d + 1) * hidden])

    return hook


def _cell_hook(module_path: str, sink: Sink):
    def hook(_module, args, _output) -> None:
        sink(f"{module_path}.weight_ih", args[0])
        if len(args) > 1 and args[1] is not None:
            sink(f"{module_path}.weight_hh", args[1][0])

    return hook


def _linear_hook(module_path: str, sink: Sink):
    def hook(_module, args, _output) -> None:
        sink(f"{module_path}.weight", args[0])

    return hook


@contextmanager
def input_hooks(model: nn.Module, module_paths: Sequence[str], sink: Sink) -> Iterator[None]:
    """Within the block, every forward call of the modules at ``module_paths`` (``nn.LSTM`` of
    one layer, ``nn.LSTMCell`` or ``nn.Linear``) hands each of its matrices' input rows to
    ``sink``; the hooks are removed on exit.

    Raises:
        ValueError: an ``nn.LSTM`` has more than one layer.
    """
    handles = []
    try:
        for path in dict.fromkeys(module_paths):
            module = get_module(model, path)
            if isinstance(module, nn.LSTM):
                hook = _lstm_hook(path, module, sink)
            elif isinstance(module, nn.LSTMCell):
                hook = _cell_hook(path, sink)
            else:
                hook = _linear_hook(path, sink)
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def input_moments(
    model: nn.Module, layers: Sequence[LayerSpec], run: Callable[[nn.Module], None]
) -> dict[str, Tensor]:
    """``E[x xᵀ]`` (float64, ``(n, n)``) of every matrix of ``layers``, while ``run(model)``
    feeds the model its calibration data.

    Raises:
        ValueError: ``run`` never reached a matrix (its input moment would be undefined), or
            an ``nn.LSTM`` has more than one layer.
    """
    moments = _Moments()
    with input_hooks(model, [layer.module_path for layer in layers], moments.add):
        with torch.no_grad():
            run(model)
    result = {}
    for spec in all_matrices(layers):
        if spec.key not in moments.counts:
            raise ValueError(
                f"the calibration run never fed matrix {spec.key!r}; the calibration function "
                "must run every compressible layer of the model"
            )
        result[spec.key] = moments.sums[spec.key] / moments.counts[spec.key]
    return result
