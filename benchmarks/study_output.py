"""Summaries and outputs of the search studies: spreads over seeds, JSON, markdown, plots."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from agents.run_dir import atomic_write_bytes, atomic_write_text
from benchmarks.common import RESULTS, write_result

if TYPE_CHECKING:
    from benchmarks.search_study import StudySettings


def spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Median, min, max and quartiles of the values that are not None (``n`` of them)."""
    present = sorted(float(v) for v in values if v is not None)
    if not present:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None}
    if len(present) == 1:
        q1 = q3 = present[0]
    else:
        q1, _, q3 = statistics.quantiles(present, n=4, method="inclusive")
    return {"n": len(present), "median": statistics.median(present), "min": present[0], "max": present[-1],
            "q1": q1, "q3": q3}


def _padded(series: Sequence[float | None], length: int) -> list[float | None]:
    """A run that stopped early keeps its last best for the remaining evaluation counts."""
    series = list(series)[:length]
    last = series[-1] if series else None
    return series + [last] * (length - len(series))


def summarise(runs: Sequence[dict[str, Any]], evaluations: int) -> dict[str, Any]:
    """Per-arm spread over seeds: curves (per evaluation count) and final numbers.

    A curve point is given once every seed has a configuration within the budget (before
    that it is None), so a median never mixes seeds that found something with seeds that
    did not.
    """
    length = max([evaluations] + [len(r["curve"]["test_wer"]) for r in runs])
    curve: dict[str, list] = {"evaluations": list(range(1, length + 1))}
    for stat in ("median", "min", "max", "q1", "q3"):
        curve[stat] = []
    columns = [_padded(r["curve"]["test_wer"], length) for r in runs]
    for k in range(length):
        values = [c[k] for c in columns]
        point = spread(values) if all(v is not None for v in values) else spread([])
        for stat in ("median", "min", "max", "q1", "q3"):
            curve[stat].append(point[stat])
    bests = [r["best"] for r in runs]
    found = [b for b in bests if b is not None]
    summary = {
        "runs": len(runs),
        "runs_within_budget": len(found),
        "test_wer": spread([b["test_wer"] for b in found]),
        "search_wer": spread([b["search_wer"] for b in found]),
        "size_ratio": spread([b["size_ratio"] for b in found]),
        "found_at": spread([b["found_at"] for b in found]),
        "evaluations": spread([r["evaluations"] for r in runs]),
        "seconds": spread([r["seconds"] for r in runs]),
        "within_budget_share": spread([r["within_budget_share"] for r in runs]),
        "test_wer_curve": curve,
    }
    if runs and all("dev_pool" in r for r in runs):
        summary["dev_pool_wer"] = {count: spread([None if r["dev_pool"][count] is None else
                                                  r["dev_pool"][count]["dev_pool_wer"] for r in runs])
                                   for count in runs[0]["dev_pool"]}
    if all("reward_best" in r for r in runs) and runs:
        summary["reward_best"] = {k: spread([r["reward_best"][k] for r in runs])
                                  for k in ("reward", "size_ratio", "search_wer", "test_wer", "found_at")}
    return summary


def best_seen(arms: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Lowest search WER (ties: smaller) over every run of every arm, with its test WER."""
    found = [(run["best"], label) for label, arm in arms.items() for run in arm["runs"] if run["best"]]
    if not found:
        return None
    best, label = min(found, key=lambda item: (item[0]["search_wer"], item[0]["size_ratio"]))
    return {**best, "arm": label}


# -- output -------------------------------------------------------------------------------------
def output_path(name: str, output_dir: Path | None) -> Path:
    return (output_dir if output_dir is not None else RESULTS) / name


def write_output(name: str, payload: Any, output_dir: Path | None) -> Path:
    """``benchmarks/results/<name>`` through :func:`write_result`, or ``output_dir/<name>``."""
    if output_dir is None:
        return write_result(name, payload)
    path = Path(output_dir) / name
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def write_text(name: str, text: str, output_dir: Path | None) -> Path:
    path = output_path(name, output_dir)
    atomic_write_text(path, text)
    return path


def publish(stem: str, payload: Any, markdown: str, output_dir: Path | None) -> Path:
    """A benchmark's ending: ``<stem>.json`` and ``<stem>.md`` written (atomically), the table
    printed, then where the JSON went. Returns that path."""
    path = write_output(f"{stem}.json", payload, output_dir)
    write_text(f"{stem}.md", markdown, output_dir)
    print(markdown)
    print(f"wrote {path}")
    return path


def plot_curves(
    path: Path,
    arms: dict[str, dict[str, Any]],
    *,
    title: str,
    references: Sequence[tuple[str, float]] = (),
) -> None:
    """Test WER of the running best vs unique evaluations: median line, min–max band per arm."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.5, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    colors = [f"C{i}" for i in range(10)]
    for i, (label, arm) in enumerate(arms.items()):
        curve = arm["summary"]["test_wer_curve"]
        points = [(x, m, lo, hi) for x, m, lo, hi in zip(curve["evaluations"], curve["median"], curve["min"], curve["max"])
                  if m is not None]
        if not points:
            continue
        xs, med, low, high = (list(col) for col in zip(*points))
        color = colors[i % len(colors)]
        style = "-" if i < len(colors) else "--"
        ax.plot(xs, med, style, color=color, label=f"{label} (n={arm['summary']['runs']})", linewidth=1.5)
        ax.fill_between(xs, low, high, color=color, alpha=0.12, linewidth=0)
    for j, (label, value) in enumerate(references):
        ax.axhline(value, color="black", linestyle=[":", "--", "-."][j % 3], linewidth=1, label=label)
    ax.set_xlabel("unique search-subset evaluations")
    ax.set_ylabel("test WER of the best configuration within budget")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def spread_text(stats: dict[str, Any], digits: int = 4) -> str:
    """``median [min, max]`` for a markdown table."""
    if not stats or stats.get("median") is None:
        return "–"
    return f"{fmt(stats['median'], digits)} [{fmt(stats['min'], digits)}, {fmt(stats['max'], digits)}]"


def quick_note(settings: StudySettings) -> str:
    notes = []
    if settings.target == "toy":
        notes.append("**toy target** (machinery check: the numbers say nothing about speech)")
    if settings.search_utterances is not None:
        notes.append(f"search subset cut to its first {settings.search_utterances} utterances")
    return "; ".join(notes)


def set_threads(threads: int) -> None:
    if threads < 1:
        raise ValueError(f"--threads must be >= 1; got {threads}")
    torch.set_num_threads(threads)
