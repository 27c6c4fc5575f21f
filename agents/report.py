"""Reports of searches: a markdown summary and a Pareto plot per run, and run comparisons.

Plots are drawn on a bare :class:`matplotlib.figure.Figure` (the Agg canvas), so no global
pyplot state or display is involved, and written atomically.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.budget import EvaluationRecord
from agents.run_dir import RunDir, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from agents.search import SearchResult

__all__ = ["PlotSeries", "compare_runs", "pareto_front", "plot_pareto", "write_run_report"]


@dataclass(frozen=True)
class PlotSeries:
    """One run on a plot: its evaluated points and its chosen point (size ratio, search WER)."""

    label: str
    records: Sequence[EvaluationRecord]
    chosen: tuple[float, float] | None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (size, WER) that no other point beats on both, by ascending size."""
    front: list[tuple[float, float]] = []
    for size, wer in sorted(points):
        if not front or wer < front[-1][1]:
            front.append((size, wer))
    return front


def plot_pareto(
    path: Path,
    series: Sequence[PlotSeries],
    curve: Sequence[dict[str, Any]] | None,
    baseline_wer: float | None,
    budgets: Sequence[float] = (),
    title: str = "Search-subset WER vs size",
) -> None:
    """WER vs size: every evaluated point, each run's front and choice, the uniform curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
    for i, run in enumerate(series):
        color = colors[i % len(colors)]
        points = [(r.size_ratio, r.search_wer) for r in run.records]
        if points:
            ax.scatter(*zip(*points), s=10, alpha=0.35, color=color, label=f"{run.label}: evaluated")
            ax.step(*zip(*pareto_front(points)), where="post", color=color, alpha=0.8, linewidth=1)
        if run.chosen is not None:
            ax.scatter([run.chosen[0]], [run.chosen[1]], marker="*", s=220, color=color,
                       edgecolor="black", zorder=5, label=f"{run.label}: chosen")
    if curve:
        ax.plot([p["size_ratio"] for p in curve], [p["search_wer"] for p in curve], "k--o",
                markersize=4, linewidth=1, label="uniform rank fraction")
    if baseline_wer is not None:
        ax.axhline(baseline_wer, color="gray", linewidth=0.8, linestyle=":", label="dense model")
    for budget in sorted(set(budgets)):
        ax.axvline(budget, color="gray", linewidth=0.8, linestyle="-.")
    ax.set_xlabel("size ratio (compressible parameters after / before)")
    ax.set_ylabel("search-subset WER")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _row(name: str, size: float, params: int, search_wer: float, test_wer: float) -> str:
    return f"| {name} | {size:.3f} | {params:,d} | {search_wer:.4f} | {test_wer:.4f} |"


def write_run_report(
    run: RunDir,
    result: SearchResult,
    records: Sequence[EvaluationRecord],
    curve: Sequence[dict[str, Any]],
    test_description: str,
) -> None:
    """Write ``pareto.png`` and ``report.md`` of one finished search."""
    config = result.config
    chosen = None if result.best is None else (result.best.size_ratio, result.best.search_wer)
    plot_pareto(run.plot_file, [PlotSeries(config.agent, records, chosen)], curve,
                result.baseline_search_wer, [config.budget],
                title=f"{config.agent}, budget {config.budget}: WER vs size")
    lines = [
        f"# ShrinkML search: {config.agent}, budget {config.budget}",
        "",
        "| model | size ratio | parameters | search WER | test WER |",
        "|---|---:|---:|---:|---:|",
        _row("dense", 1.0, result.dense_model_params, result.baseline_search_wer, result.baseline_test_wer),
        _row(result.uniform.label, result.uniform.size_ratio, result.uniform.model_params,
             result.uniform.search_wer, result.uniform.test_wer),
    ]
    if result.best is not None:
        b, u = result.best, result.uniform_at_size
        if u is not None:
            lines.append(_row(u.label, u.size_ratio, u.model_params, u.search_wer, u.test_wer))
        lines.append(_row(f"**{config.agent}** (best within budget)", b.size_ratio, b.model_params, b.search_wer, b.test_wer))
    else:
        lines.append(f"| {config.agent} | no evaluated configuration fits the budget | | | |")
    lines += [
        "",
        f"* Evaluations: {result.evaluations} of {config.evaluations} ({result.new_evaluations} in the "
        f"last call); episodes {result.episodes}; cache hits in the last call {result.cache_hits}; "
        f"stopped: {result.stop_reason}.",
        f"* Size ratio counts compressible (LSTM/Linear) parameters; parameters count the whole model. "
        f"Test set: {test_description}.",
    ]
    if result.best is not None:
        lines.append(f"* Chosen ranks (plan order): `{list(result.best.ranks)}`; exported model: `model.pt`.")
    if result.latency is not None:
        t = result.latency
        lines.append(f"* Latency (batch {t['batch_size']}, this machine): predicted {t['predicted_ratio']:.3f} of "
                     f"the dense model, measured {t['measured_ratio']:.3f} ({t['exported_ms']:.1f} against "
                     f"{t['dense_ms']:.1f} ms on the latency workload, median of {t['repeats']} interleaved runs).")
    lines += [
        "",
        "![WER vs size](pareto.png)",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config.to_dict(), indent=2, sort_keys=True),
        "```",
        "",
    ]
    atomic_write_text(run.report_file, "\n".join(lines))


def compare_runs(run_dirs: Sequence[str | Path], plot_path: Path) -> str:
    """A markdown table comparing finished runs, and one plot of them all at ``plot_path``.

    Raises:
        FileNotFoundError: a folder is not a finished run directory.
    """
    if not run_dirs:
        raise ValueError("compare_runs needs at least one run directory; got none")
    header = [
        "| run | agent | budget | seed | evaluations | size ratio | search WER | test WER | uniform test WER | dense test WER |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows, series, budgets = [], [], []
    curve, baseline = None, None
    for path in run_dirs:
        run = RunDir(path)
        result = run.result()
        config = run.config()
        best = result.get("best_detail")
        label = f"{config.agent} s{config.seed} b{config.budget}"
        size, search, test = ("—",) * 3 if best is None else (
            f"{best['size_ratio']:.3f}", f"{best['search_wer']:.4f}", f"{best['test_wer']:.4f}")
        rows.append(
            f"| {run.path} | {config.agent} | {config.budget} | {config.seed} | {result['evaluations']} | "
            f"{size} | {search} | {test} | {result['uniform']['test_wer']:.4f} | {result['baseline_test_wer']:.4f} |"
        )
        chosen = None if best is None else (best["size_ratio"], best["search_wer"])
        series.append(PlotSeries(label, run.evaluations(), chosen))
        budgets.append(config.budget)
        curve = curve or run.uniform_curve()
        baseline = baseline if baseline is not None else result["baseline_search_wer"]
    plot_pareto(plot_path, series, curve, baseline, budgets, title="Runs compared: WER vs size")
    return "\n".join(header + rows) + "\n"
