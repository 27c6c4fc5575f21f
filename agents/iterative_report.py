"""``report.md`` of an iterative-compression run: size and WERs per round."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.iterative import IterativeResult

__all__ = ["iterative_report"]


def iterative_report(result: IterativeResult) -> str:
    """``report.md``: size and WERs per round, the dense model and the final choice."""
    c = result.config
    lines = [
        f"# ShrinkML iterative compression: {c.search.agent}, target size {c.target_size:g}",
        "",
        "| round | budget | size ratio | compression | search WER | test WER compressed | dev WER | test WER |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| dense | | 1.000 | 1.00× | | | {result.baseline_dev_wer:.4f} | {result.baseline_test_wer:.4f} |",
    ]
    for r in result.rounds:
        mark = "" if r["within_tolerance"] else " (over tolerance)"
        lines.append(
            f"| {r['round']}{mark} | {r['budget']:.3f} | {r['size_ratio']:.3f} | {r['compression']:.2f}× | "
            f"{r['search_wer']:.4f} | {r['test_wer_compressed']:.4f} | {r['dev_wer']:.4f} | {r['test_wer']:.4f} |"
        )
    final = result.final
    lines += [
        "",
        f"* Stopped: {result.stop_reason}. WER tolerance: {c.wer_tolerance:.1%} relative on dev WER "
        "(the test WER is reported, never used to decide).",
        "* Final model: " + ("none (no round stayed within the tolerance)" if final is None else
                             f"round {final['round']}, {final['compression']:.2f}× fewer compressible "
                             f"parameters, test WER {final['test_wer']:.4f} (`model.pt`)."),
        f"* Each round: {c.search.evaluations} search evaluations, then {c.finetune.updates or c.finetune.epochs} "
        f"fine-tuning {'updates' if c.finetune.updates else 'epochs'}; later rounds search the previous round's "
        "fine-tuned model, densified, with ranks capped by the previous ranks.",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(c.to_dict(), indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
