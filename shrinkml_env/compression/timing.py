"""Side-by-side latency measurement shared by the export report and the benchmark."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

__all__ = ["interleaved_medians_ms"]


def interleaved_medians_ms(
    candidates: Mapping[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 2
) -> dict[str, float]:
    """Median wall time of each candidate, measured interleaved, in inference mode.

    Each round runs every candidate once, in turn, so slow drifts of machine load
    hit all candidates alike.

    Args:
        candidates: Name -> zero-argument callable to time.
        repeats: Timed rounds (>= 1).
        warmup: Untimed rounds first (TorchScript profiles its first calls).

    Returns:
        Name -> median milliseconds.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for round_index in range(warmup + repeats):
            for name, fn in candidates.items():
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                if round_index >= warmup:
                    times[name].append(elapsed * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}
