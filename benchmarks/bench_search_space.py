"""Search space (the paper's second study): rank menus of different size and spacing.

Each rank-menu preset (``shrinkml_env.search_space.MENUS``: linear menus of 4, 8 and 16
steps up to half rank, a geometric menu finer at small ranks, and the naive ``full_range8``
that spans the whole rank range) is searched at one budget by the same agents with equal
evaluations and several seeds. Per menu it also reports static facts of the space on the
target: actions per step, configurations in total, and the share of menu choices that
reach a matrix's break-even rank (where factorising cannot save anything, so the choice
silently keeps the matrix dense — most of the naive menu).

Writes ``search_space.json``, ``search_space.md`` and ``search_space.png`` to
``benchmarks/results`` (or ``--output-dir``; ``--result-name`` changes the stem, to keep a
second budget apart).

Run::

    python -m benchmarks.bench_search_space               # full: 100 evaluations, 3 seeds
    python -m benchmarks.bench_search_space --quick       # make bench
    python -m benchmarks.bench_search_space --target toy --quick --output-dir /tmp/b
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from agents.config import AGENTS, SearchConfig
from benchmarks.common import run_metadata
from benchmarks.search_study import (
    Arm,
    add_study_arguments,
    build_kit,
    parse_names,
    run_study,
    settings_from_args,
    target_identity,
)
from benchmarks.study_output import (
    fmt,
    output_path,
    plot_curves,
    publish,
    quick_note,
    set_threads,
    spread_text,
)
from shrinkml_env.env import menu_at_budget
from shrinkml_env.plan import CompressionPlan
from shrinkml_env.search_space import MENUS
from shrinkml_env.target import CompressionTarget

QUICK = {"evaluations": 8, "seeds": (0,), "test_utterances": 100, "search_utterances": 50, "jobs": 2}


def menu_facts(target: CompressionTarget, menu_name: str, budget: float, granularity: str = "layer") -> dict[str, Any]:
    """Static properties of one menu on ``target`` (a budget-relative menu as resolved for ``budget``)."""
    menu = menu_at_budget(MENUS[menu_name], target, budget)
    plan = CompressionPlan(target, menu, granularity)
    full = np.array([m.full_rank for m in plan.matrices])[:, None]
    choices = plan.rank_table[:, : menu.dense_action]  # "keep dense" itself excluded
    kept_dense = choices >= full
    smallest = float(plan.unit_params[:, 0].sum() / plan.dense_total)
    return {
        "fractions": list(menu.fractions),
        "actions_per_step": menu.size,
        "steps": plan.n_units,
        "configurations": float(menu.size) ** plan.n_units,
        "share_of_choices_at_or_above_break_even": float(kept_dense.mean()),
        "distinct_ranks_per_matrix": float(np.mean([len(set(row)) for row in plan.rank_table])),
        "smallest_size_ratio": smallest,
    }


def summary_markdown(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    stem = payload.get("plot", "search_space.png").rsplit(".", 1)[0]
    lines = [f"# Search space (`{stem}.json`)", ""]
    if payload.get("note"):
        lines += [f"Measured on: {payload['note']}.", ""]
    lines += [f"Budget {s['budget']}, agents {s['agents']}, {s['evaluations']} evaluations, seeds {s['seeds']}; "
              f"dense test WER {fmt(payload['baseline_test_wer'])}. Cells: median [min, max] over seeds.", "",
              "| menu | actions | useless choices (≥ break-even) | uniform test WER | agent | best test WER "
              "| size ratio | found at |",
              "|---|---|---|---|---|---|---|---|"]
    for menu, block in payload["menus"].items():
        facts = block["facts"]
        for agent, arm in block["arms"].items():
            m = arm["summary"]
            lines.append(f"| {menu} | {facts['actions_per_step']} | {facts['share_of_choices_at_or_above_break_even']:.0%} "
                         f"| {fmt(block['uniform']['test_wer'])} | {agent} | {spread_text(m['test_wer'])} | "
                         f"{spread_text(m['size_ratio'], 3)} | {spread_text(m['found_at'], 0)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_arguments(parser, evaluations=100, seeds="0,1,2")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--agents", default="ppo,random")
    parser.add_argument("--menus", default=",".join(MENUS), help="default: every preset")
    parser.add_argument("--result-name", default="search_space",
                        help="stem of the output files (e.g. search_space_budget0.5 to keep a second budget apart)")
    args = parser.parse_args(argv)
    if not args.result_name or "/" in args.result_name or args.result_name.endswith(".json"):
        parser.error(f"--result-name must be a bare file stem like 'search_space_budget0.5'; got {args.result_name!r}")
    set_threads(args.threads)
    settings = settings_from_args(parser, args, QUICK)
    agents, menus = parse_names(args.agents), parse_names(args.menus)
    for name, given, known in (("agents", agents, AGENTS), ("menus", menus, tuple(MENUS))):
        if set(given) - set(known):
            parser.error(f"unknown {name} {sorted(set(given) - set(known))}; accepted: {', '.join(known)}")
    kit = build_kit(settings)
    arms = [Arm(f"{menu}/{agent}", SearchConfig(agent=agent, budget=args.budget, rank_menu=menu,
                                                evaluations=settings.evaluations, target=settings.target,
                                                test_utterances=settings.test_utterances, score=settings.score),
                extras={"menu": menu, "agent": agent})
            for menu in menus for agent in agents]
    results = run_study("search-space", arms, settings, kit, log=lambda line: print(line, flush=True))
    baseline = next(run["baseline_test_wer"] for arm in results.values() for run in arm["runs"])
    blocks: dict[str, Any] = {}
    for menu in menus:
        mine = {label.split("/", 1)[1]: arm for label, arm in results.items() if arm["menu"] == menu}
        uniform = next(iter(mine.values()))["runs"][0]["uniform"]
        blocks[menu] = {"facts": menu_facts(kit.target, menu, args.budget), "uniform": uniform, "arms": mine}
    stem = args.result_name
    plot_curves(output_path(f"{stem}.png", args.output_dir), results,
                title=f"rank menus at budget {args.budget} (median, min-max over seeds)",
                references=[("dense model", baseline)])
    payload = {
        "meta": run_metadata(quick=args.quick),
        "note": quick_note(settings),
        "settings": {**settings.to_dict(), "budget": args.budget, "agents": list(agents), "menus": list(menus)},
        "test_description": kit.test_description,
        "target_identity": target_identity(kit.target),
        "baseline_test_wer": baseline,
        "plot": f"{stem}.png",
        "menus": blocks,
        "test_decodes": kit.test_error.decodes,
        "test_seconds": kit.test_error.seconds,
    }
    publish(stem, payload, summary_markdown(payload), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
