"""Search quality: best test WER within the budget vs unique evaluations, for every agent.

Every agent and baseline (``agents.config.AGENTS``) searches at each budget with the same
number of unique search-subset evaluations and several seeds. After each evaluation the
running best within the budget (by search WER) is scored on the test set; the curves give
median and min–max over seeds, one plot per budget. A long regularised-evolution run
(``--reference-factor`` times the evaluations) serves as the best-known reference.

Writes ``search.json``, ``search.md`` and ``search_budget<B>.png`` to ``benchmarks/results``
(or ``--output-dir``). ``best_known`` in the JSON (per budget: the lowest search WER seen in
any run) is what ``bench_inference.py`` exports and times.

Run::

    python -m benchmarks.bench_search                     # full: 100 evaluations, 3 seeds
    python -m benchmarks.bench_search --quick             # make bench
    python -m benchmarks.bench_search --target toy --quick --output-dir /tmp/b   # machinery check
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from agents.config import AGENTS, SearchConfig
from benchmarks.common import run_metadata
from benchmarks.search_study import (
    Arm,
    add_study_arguments,
    build_kit,
    parse_floats,
    parse_names,
    run_study,
    settings_from_args,
)
from benchmarks.study_output import (
    best_seen,
    fmt,
    output_path,
    plot_curves,
    quick_note,
    set_threads,
    spread_text,
    write_output,
    write_text,
)

QUICK = {"evaluations": 8, "seeds": (0, 1), "test_utterances": 100, "search_utterances": 50}
QUICK_REFERENCE_FACTOR = 3


def arms_for(budget: float, agents: tuple[str, ...], settings, reference_factor: int, reference_seed: int) -> list[Arm]:
    base = SearchConfig(budget=budget, evaluations=settings.evaluations, target=settings.target,
                        test_utterances=settings.test_utterances)
    arms = [Arm(agent, replace(base, agent=agent)) for agent in agents]
    if reference_factor > 0:
        arms.append(Arm("reference", replace(base, agent="evolution", evaluations=settings.evaluations * reference_factor),
                        seeds=(reference_seed,), extras={"role": f"long evolution ({reference_factor}x evaluations)"}))
    return arms


def summary_markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    lines = ["# Search quality (`search.json`)", ""]
    note = payload.get("note")
    if note:
        lines += [f"Measured on: {note}.", ""]
    lines += [f"{settings['evaluations']} unique evaluations per run, seeds {settings['seeds']}; "
              f"test set: {payload['test_description']}. Cells: median [min, max] over seeds.", ""]
    for budget, block in payload["budgets"].items():
        lines += [f"## Budget {budget}", "",
                  f"Dense test WER {fmt(block['baseline_test_wer'])}; plot `{block['plot']}`.", "",
                  "| agent | best test WER | search WER | size ratio | found at evaluation | seconds/run |",
                  "|---|---|---|---|---|---|"]
        for label, arm in block["arms"].items():
            s = arm["summary"]
            lines.append(f"| {label} | {spread_text(s['test_wer'])} | {spread_text(s['search_wer'])} | "
                         f"{spread_text(s['size_ratio'], 3)} | {spread_text(s['found_at'], 0)} | "
                         f"{spread_text(s['seconds'], 1)} |")
        ranked = sorted(((a["summary"]["test_wer"]["median"], label) for label, a in block["arms"].items()
                         if label != "reference" and a["summary"]["test_wer"]["median"] is not None))
        if ranked:
            lines += ["", "Lowest median test WER at equal evaluations: "
                      + ", ".join(f"{label} {fmt(value)}" for value, label in ranked[:3])
                      + f"; highest: {ranked[-1][1]} {fmt(ranked[-1][0])}."]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_arguments(parser, evaluations=100, seeds="0,1,2")
    parser.add_argument("--budgets", default="0.5,0.4,0.3")
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated (default: all)")
    parser.add_argument("--reference-factor", type=int, default=5,
                        help="the reference evolution run gets this many times the evaluations (0: none)")
    parser.add_argument("--reference-seed", type=int, default=0)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    settings = settings_from_args(parser, args, QUICK)
    reference_factor = args.reference_factor
    if args.quick and reference_factor == parser.get_default("reference_factor"):
        reference_factor = QUICK_REFERENCE_FACTOR
    budgets, agents = parse_floats(args.budgets), parse_names(args.agents)
    unknown = sorted(set(agents) - set(AGENTS))
    if unknown:
        parser.error(f"unknown agents {unknown}; accepted: {', '.join(AGENTS)}")

    kit = build_kit(settings)
    payload: dict[str, Any] = {
        "meta": run_metadata(quick=args.quick),
        "note": quick_note(settings),
        "settings": {**settings.to_dict(), "budgets": list(budgets), "agents": list(agents),
                     "reference_factor": reference_factor, "reference_seed": args.reference_seed},
        "test_description": kit.test_description,
        "budgets": {},
        "best_known": {},
    }
    for budget in budgets:
        arms = run_study(f"search-{budget}", arms_for(budget, agents, settings, reference_factor, args.reference_seed),
                         settings, kit, log=lambda line: print(line, flush=True))
        baseline = next(run["baseline_test_wer"] for arm in arms.values() for run in arm["runs"])
        plot_name = f"search_budget{budget}.png"
        reference = arms.get("reference")
        ref_best = reference["runs"][0]["best"] if reference else None
        lines = [("dense model", baseline)]
        if ref_best is not None:
            lines.append((f"reference: long evolution ({ref_best['test_wer']:.4f})", ref_best["test_wer"]))
        plot_curves(output_path(plot_name, args.output_dir), {k: v for k, v in arms.items() if k != "reference"},
                    title=f"budget {budget}: median and min-max over seeds", references=lines)
        seen = best_seen(arms)
        payload["budgets"][str(budget)] = {"baseline_test_wer": baseline, "plot": plot_name, "arms": arms,
                                           "reference": ref_best, "best_seen": seen}
        payload["best_known"][str(budget)] = seen
    payload["test_decodes"] = kit.test_error.decodes
    payload["test_seconds"] = kit.test_error.seconds
    path = write_output("search.json", payload, args.output_dir)
    write_text("search.md", summary_markdown(payload), args.output_dir)
    print(summary_markdown(payload))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
