"""Shared helpers for benchmark scripts: run metadata, medians, atomic JSON results."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from shrinkml_env.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS", "apply_quick_defaults", "free_port", "parse_size_ratios", "run_metadata", "latency_workload_on_test",
           "write_result"]


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Machine, date, commit and thread facts that every results file carries."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **extra,
    }


def free_port() -> int:
    """A TCP port free on this machine now, for a local gloo process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_result(name: str, payload: Any, folder: Path = RESULTS) -> Path:
    """Write ``<folder>/<name>`` (default ``benchmarks/results``) as JSON, atomically."""
    path = Path(folder) / name
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def apply_quick_defaults(parser: Any, args: Any, quick: dict[str, Any]) -> None:
    """For ``--quick``: replace each option the user left at its default with its quick value."""
    for name, value in quick.items():
        if getattr(args, name) == parser.get_default(name):
            setattr(args, name, value)


def parse_size_ratios(parser: Any, text: str) -> list[float]:
    """``--sizes``: comma-separated size ratios in (0, 1]; a bad value is a parser error."""
    try:
        sizes = [float(s) for s in str(text).split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated size ratios, e.g. 0.5,0.3; got {text!r}")
    if any(not 0 < s <= 1 for s in sizes):
        parser.error(f"--sizes must lie in (0, 1]; got {sizes}")
    return sizes


def latency_workload_on_test(utterances: int, batch_size: int):
    """``workload(model)``: greedy decoding of the first ``utterances`` test utterances,
    ``batch_size`` at a time (the ASR target's latency workload, on test data)."""
    from asr.default import load_split
    from asr.target import GreedyInference
    from asr.text import CharTokenizer

    workload = GreedyInference(load_split("test")[:utterances], CharTokenizer())
    return lambda model: workload(model, batch_size)
