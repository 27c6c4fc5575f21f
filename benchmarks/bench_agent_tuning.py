"""Hyperparameters of the recommended RL agent, tuned on the held-out dev pool, never on test.

Every combination of the ``--grid`` values (``--grid ent_coef=0.01,0.05 --grid
learning_rate=1e-3,3e-4``: four arms) is one arm: ``shrinkml search`` with the agent
(``NAME+warm`` for a warm start, as the default PPO runs) and those SB3 overrides, at one
budget, with the same number of unique search-subset evaluations and the same seeds.
``score`` may be a grid name too (``--grid score=wer,distill``): not an SB3 hyperparameter
but the search-subset score the env steers by (:data:`asr.scores.SCORES`), so the quieter
scores of ``bench_scores`` are chosen for the agent on the dev pool like its settings. The
seeds default to 100, 101, 102, apart from the search study's 0–4, so the study that reports
the tuned agent does not rerun the runs it was tuned on.

After each ``--dev-pool-at`` count, each run's best configuration within the budget is
decoded on the **dev pool** (600 dev utterances outside the search subset and the
calibration set; ``agents.targets.asr_dev_pool_scorer``). Nothing is decoded on test: the
study draws no test curve (``test_every=0``), and the searches it runs get a test scorer that
returns NaN, so their run directories quote no test WER either.

The chosen arm has the lowest mean, over the counts, of its median dev-pool WER over seeds
(ties: the lower mean over seeds and counts, then the grid order); an arm with a seed that
found nothing within the budget at some count is left out of the choice. The rule is fixed
before the runs, and the table lists every arm with what it spent: unique evaluations used
(converged agents stop proposing new allocations and end at the episode limit), the
evaluation that found the best, episodes and search seconds.

Writes ``agent_tuning.json`` and ``agent_tuning.md`` (``benchmarks/results`` or ``--output-dir``;
``--result-name`` another stem).

Run::

    python -m benchmarks.bench_agent_tuning --budget 0.3 --evaluations 300 --dev-pool-at 100,300 \\
        --grid ent_coef=0.01,0.05 --grid learning_rate=1e-3,3e-4 --runs-dir runs/tuning
    python -m benchmarks.bench_agent_tuning --budget 0.3 --grid ent_coef=0.01 --grid learning_rate=1e-3 \\
        --grid score=wer,distill --runs-dir runs/tuning --result-name agent_tuning_score
    python -m benchmarks.bench_agent_tuning --quick --output-dir /tmp/t      # machinery check
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import statistics
import sys
from dataclasses import replace
from typing import Any

from agents.config import RL_AGENTS, SearchConfig, check_score, parse_sb3_overrides
from agents.rl import algorithm_class, check_hyperparameters, hyperparameters
from benchmarks.bench_search import parse_agent
from benchmarks.common import run_metadata
from benchmarks.comparisons import complete_median
from benchmarks.search_study import (
    Arm,
    add_study_arguments,
    build_dev_error,
    build_kit,
    run_study,
    settings_from_args,
    target_identity,
)
from benchmarks.study_output import (
    fmt,
    publish,
    quick_note,
    set_threads,
    spread,
    spread_text,
)

SCORE = "score"  # the one grid name that is ShrinkML's, not SB3's

QUICK = {"evaluations": 12, "seeds": (100,), "test_utterances": 50, "search_utterances": 50,
         "dev_pool_at": (6, 12)}


def parse_grid(items: list[str]) -> list[tuple[str, list[Any]]]:
    """``["ent_coef=0.01,0.05"]`` to ``[("ent_coef", [0.01, 0.05])]`` (values as Python literals).

    Raises:
        ValueError: an item that is not NAME=V1,V2,..., or a name given twice.
    """
    grid: list[tuple[str, list[Any]]] = []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise ValueError(f"--grid {item!r} is not NAME=V1,V2,... (e.g. ent_coef=0.01,0.05)")
        values = [value for _, value in parse_sb3_overrides(f"{name}={v}" for v in text.split(","))]
        if name.strip() in dict(grid):
            raise ValueError(f"--grid names {name.strip()!r} twice; give all its values in one item")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"--grid {item!r} repeats a value; each value makes one arm")
        grid.append((name.strip(), values))
    return grid


def arm_label(overrides: dict[str, Any]) -> str:
    """``ent_coef=0.05 learning_rate=0.0003`` (``defaults`` for no overrides)."""
    return " ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"


def current_defaults(agent: str, warm: bool, base: SearchConfig) -> dict[str, Any]:
    """What ``shrinkml search`` gives ``agent`` unless told otherwise: ShrinkML's defaults,
    else SB3's own; names whose default scales with the episode length are left out."""
    config = replace(base, agent=agent, warm_start=warm)
    one, two = hyperparameters(config, steps=1), hyperparameters(config, steps=2)
    scaled = {k for k in one if one[k] != two.get(k)}
    sb3 = {k: p.default for k, p in inspect.signature(algorithm_class(agent).__init__).parameters.items()
           if p.default is not inspect.Parameter.empty}
    return {k: v for k, v in {**sb3, **one}.items() if k not in scaled}


def build_arms(agent: str, warm: bool, grid: list[tuple[str, list[Any]]], base: SearchConfig) -> list[Arm]:
    """One arm per grid point, in grid order; ``extras`` marks the agent's current defaults.

    ``score`` in the grid is not an SB3 hyperparameter but the search score the env steers by
    (:data:`asr.scores.SCORES`; ShrinkML's default :data:`agents.config.DEFAULT_SCORE`): it sets
    the arm's ``score``.
    """
    check_hyperparameters(agent, {name: values[0] for name, values in grid if name != SCORE})
    for value in dict(grid).get(SCORE, []):
        check_score(value, base.target)
    defaults = {**current_defaults(agent, warm, base), SCORE: SearchConfig().score}
    arms = []
    for point in itertools.product(*(values for _, values in grid)):
        overrides = dict(zip((name for name, _ in grid), point))
        current = all(k in defaults and defaults[k] == v for k, v in overrides.items())
        sb3 = tuple((k, v) for k, v in overrides.items() if k != SCORE)
        config = replace(base, agent=agent, warm_start=warm, sb3=sb3, score=overrides.get(SCORE, base.score))
        arms.append(Arm(arm_label(overrides), config, extras={"overrides": overrides, "current_default": current}))
    return arms


def choose(arms: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The arm with the lowest mean over counts of the median dev-pool WER (every seed present)."""
    scored = []
    for order, (label, arm) in enumerate(arms.items()):
        spreads = arm["summary"].get("dev_pool_wer", {})
        medians = [complete_median(s, arm["summary"]["runs"]) for s in spreads.values()]
        if not medians or None in medians:
            continue
        means = [statistics.fmean(r["dev_pool"][c]["dev_pool_wer"] for r in arm["runs"]) for c in spreads]
        scored.append((statistics.fmean(medians), statistics.fmean(means), order, label))
    if not scored:
        return None
    score, mean, _, label = min(scored)
    return {"arm": label, "overrides": arms[label]["overrides"], "score": score, "mean_over_seeds": mean,
            "rule": "lowest mean over the dev-pool counts of the median over seeds; ties: mean over seeds, "
                    "then grid order"}


def summary_markdown(payload: dict[str, Any]) -> str:
    """``agent_tuning.md``: one row per arm, the chosen one in bold."""
    s = payload["settings"]
    counts = [str(c) for c in s["dev_pool_at"]]
    agent = s["agent"]
    lines = [f"# Tuning {agent} on the dev pool", "",
             f"Budget {s['budget']}, {s['evaluations']} unique search-subset evaluations per run, seeds "
             f"{', '.join(map(str, s['seeds']))}; {payload['meta']['date']}, commit {payload['meta']['commit']}. "
             "Dev pool: 600 dev utterances outside the search subset and the calibration set "
             f"(dense {fmt(payload.get('dense_dev_pool_wer'))}). No test WER is read. "
             "Cells: median [min, max] over seeds.", ""]
    if payload.get("note"):
        lines += [f"Note: {payload['note']}.", ""]
    head = "| arm | " + " | ".join(f"dev pool at {c}" for c in counts) + \
        " | unique evaluations used | best found at | episodes | search s / evaluation |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    chosen = (payload.get("choice") or {}).get("arm")
    for label, arm in payload["arms"].items():
        m = arm["summary"]
        name = f"**{label}**" if label == chosen else label
        if arm.get("current_default"):
            name += " (current default)"
        runs = arm["runs"]
        per_eval = [r["search_seconds_per_evaluation"] for r in runs if r["search_seconds_per_evaluation"]]
        lines.append(f"| {name} | " + " | ".join(spread_text(m["dev_pool_wer"][c]) for c in counts)
                     + f" | {spread_text(m['evaluations'], 0)} | {spread_text(m['found_at'], 0)} | "
                     f"{spread_text(spread([r['episodes'] for r in runs]), 0)} | "
                     f"{fmt(statistics.median(per_eval), 2) if per_eval else '–'} |")
    choice = payload.get("choice")
    lines += ["", f"Chosen ({choice['rule']}): **{choice['arm']}**, {fmt(choice['score'])}." if choice
              else "No arm has every seed within the budget at every count: nothing chosen."]
    return "\n".join(lines) + "\n"


def _without_test(arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The study's rows less the NaN test fields every search result carries."""
    for arm in arms.values():
        for run in arm["runs"]:
            run.pop("baseline_test_wer", None)
            run["uniform"].pop("test_wer", None)
    return arms


def main(argv: list[str] | None = None) -> int:
    """Run the grid, choose, write ``agent_tuning.json`` / ``.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_arguments(parser, evaluations=300, seeds="100,101,102")
    parser.add_argument("--agent", default="ppo+warm", help="RL agent, NAME or NAME+warm (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--result-name", default="agent_tuning",
                        help="stem of the JSON and markdown written (default %(default)s; another keeps a "
                             "second grid apart, e.g. agent_tuning_score)")
    parser.add_argument("--grid", action="append", default=[],
                        help="NAME=V1,V2,... SB3 hyperparameter values (repeatable; arms: every combination)")
    args = parser.parse_args(argv)
    if not args.dev_pool_at and not args.quick:
        args.dev_pool_at = "100,300"
    try:
        agent, warm = parse_agent(args.agent)
        if agent not in RL_AGENTS:
            raise ValueError(f"--agent {args.agent!r} is not an RL agent; accepted: {', '.join(RL_AGENTS)} "
                             "(optionally NAME+warm)")
        grid = parse_grid(args.grid or ["ent_coef=0.01,0.05", "learning_rate=1e-3,3e-4"])
    except ValueError as e:
        parser.error(str(e))
    if args.target == "toy":
        parser.error("the dev pool is an ASR split; --target toy has none (use --quick on the default model)")
    if args.test_every != parser.get_default("test_every"):
        parser.error("--test-every: this study decodes nothing on test (it chooses on the dev pool)")
    set_threads(args.threads)
    try:
        settings = replace(settings_from_args(parser, args, QUICK), test_every=0)
        base = SearchConfig(budget=args.budget, evaluations=settings.evaluations, target=settings.target,
                            test_utterances=settings.test_utterances, score=settings.score)
        arms = build_arms(agent, warm, grid, base)
    except ValueError as e:
        parser.error(str(e))
    kit = build_kit(settings)  # test_every=0: its test scorer returns NaN and decodes nothing
    dev_error = build_dev_error(settings)
    results = run_study(f"tuning-{args.agent}-{args.budget}", arms, settings, kit, dev_error=dev_error,
                        mixed_scores=True, log=lambda line: print(line, flush=True))
    payload = {
        "meta": run_metadata(quick=args.quick),
        "note": quick_note(settings),
        "settings": {**settings.to_dict(), "agent": args.agent, "budget": args.budget,
                     "grid": [[n, v] for n, v in grid]},
        "target_identity": target_identity(kit.target),
        "dense_dev_pool_wer": dev_error(kit.target.model) if dev_error else None,
        "arms": _without_test(results),
    }
    payload["choice"] = choose(results)
    publish(args.result_name, payload, summary_markdown(payload), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
