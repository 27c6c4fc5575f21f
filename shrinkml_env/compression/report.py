"""Per-layer size and (optionally) latency of an exported factorised model.

A layer that got slower is shown, not hidden: every row carries both latencies
and ``slower``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from shrinkml_env.compression.layers import LayerSpec, get_module
from shrinkml_env.compression.ranks import validate_ranks
from shrinkml_env.compression.size import compressible_parameter_count, keeps_dense
from shrinkml_env.compression.timing import interleaved_medians_ms

__all__ = ["LatencyConfig", "LayerReportRow", "layer_report"]


@dataclass(frozen=True)
class LatencyConfig:
    """How :func:`layer_report` times each module.

    Attributes:
        batch: Sequences per call (1 = streaming-like latency).
        frames: Time steps per sequence (a cell is stepped this many times).
        repeats: Timed rounds; the median is reported.
        warmup: Untimed rounds first.
    """

    batch: int = 1
    frames: int = 300
    repeats: int = 5
    warmup: int = 2

    def __post_init__(self) -> None:
        for name in ("batch", "frames", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"LatencyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"LatencyConfig.warmup must be >= 0, got {self.warmup}")


@dataclass(frozen=True)
class LayerReportRow:
    """Size and latency of one layer, dense vs factorised.

    Latency is measured per module: the layers of one multi-layer ``nn.LSTM``
    share their module's numbers (``latency_scope`` says which module).
    """

    layer_key: str
    module_type: str
    ranks: dict[str, int]
    factorised_matrices: int
    dense_parameters: int
    parameters: int
    latency_scope: str
    dense_ms: float | None = None
    factorised_ms: float | None = None

    @property
    def size_ratio(self) -> float:
        return self.parameters / self.dense_parameters

    @property
    def speedup(self) -> float | None:
        """``dense_ms / factorised_ms`` (> 1 is faster), or None when not measured."""
        if self.dense_ms is None or self.factorised_ms is None:
            return None
        return self.dense_ms / self.factorised_ms

    @property
    def slower(self) -> bool | None:
        return None if self.speedup is None else self.speedup < 1.0


def layer_report(
    dense_model: nn.Module,
    factorised_model: nn.Module,
    layers: Sequence[LayerSpec],
    ranks: Mapping[str, int],
    *,
    latency: LatencyConfig | None = None,
) -> list[LayerReportRow]:
    """One row per layer: parameters before/after and, if asked, latency.

    Args:
        dense_model: The original model.
        factorised_model: ``export_factorised(dense_model, layers, ranks)``.
        layers: The layers that were ranked.
        ranks: The rank assignment used for the export.
        latency: Timing settings, or None to skip timing (it costs seconds).

    Returns:
        Rows in ``layers`` order.
    """
    resolved = validate_ranks(layers, ranks)
    timings: dict[str, dict[str, float]] = {}
    if latency is not None:
        for path in dict.fromkeys(layer.module_path for layer in layers):
            timings[path] = _time_module(
                get_module(dense_model, path), get_module(factorised_model, path), latency
            )
    rows = []
    for layer in layers:
        layer_ranks = {m.key: resolved[m.key] for m in layer.matrices}
        timing = timings.get(layer.module_path, {})
        rows.append(LayerReportRow(
            layer_key=layer.key,
            module_type=layer.module_type,
            ranks=layer_ranks,
            factorised_matrices=sum(not keeps_dense(m.rows, m.cols, layer_ranks[m.key])
                                    for m in layer.matrices),
            dense_parameters=compressible_parameter_count(layer.matrices),
            parameters=compressible_parameter_count(layer.matrices, layer_ranks),
            latency_scope=layer.module_path,
            dense_ms=timing.get("dense"),
            factorised_ms=timing.get("factorised"),
        ))
    return rows


def _time_module(dense: nn.Module, factorised: nn.Module, config: LatencyConfig) -> dict[str, float]:
    param = next(dense.parameters())
    device, dtype = param.device, param.dtype
    if isinstance(dense, nn.LSTM):
        shape = ((config.batch, config.frames) if dense.batch_first
                 else (config.frames, config.batch)) + (dense.input_size,)
        x = torch.randn(shape, device=device, dtype=dtype)
        candidates = {"dense": lambda: dense(x), "factorised": lambda: factorised(x)}
    elif isinstance(dense, nn.LSTMCell):
        x = torch.randn(config.batch, dense.input_size, device=device, dtype=dtype)

        def stepper(cell: nn.Module):
            def run() -> None:
                state = None
                for _ in range(config.frames):
                    state = cell(x, state)
            return run
        candidates = {"dense": stepper(dense), "factorised": stepper(factorised)}
    else:
        x = torch.randn(config.batch, config.frames, dense.in_features, device=device, dtype=dtype)
        candidates = {"dense": lambda: dense(x), "factorised": lambda: factorised(x)}
    return interleaved_medians_ms(candidates, repeats=config.repeats, warmup=config.warmup)
