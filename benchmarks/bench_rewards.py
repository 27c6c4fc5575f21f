"""Reward functions and constraint modes (the paper's first study): one agent, every reward.

The same agent searches at one budget with each registered reward
(``shrinkml_env.rewards.reward_names()``) under each constraint mode (``clamp``, ``mask``,
``punish``), with equal evaluations and several seeds. For each pair it reports

* what the search returns: the best configuration within the budget (size, search and test
  WER) and at which evaluation it was first found ("how fast");
* what the agent itself aims at: the configuration with the highest reward (a reward such
  as ``accuracy_guaranteed`` aims at a WER bound, not at the budget), its size and test WER;
* the share of evaluations that landed within the budget (``punish`` lets the agent go over).

``mask`` only differs from ``clamp`` for an agent that reads action masks, so the ``mask``
arms use ``--mask-agent`` (MaskablePPO by default, the masking twin of PPO).

Writes ``rewards.json``, ``rewards.md`` and ``rewards.png`` to ``benchmarks/results`` (or
``--output-dir``).

Run::

    python -m benchmarks.bench_rewards                    # full: 100 evaluations, 3 seeds
    python -m benchmarks.bench_rewards --quick            # make bench
    python -m benchmarks.bench_rewards --target toy --quick --output-dir /tmp/b
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agents.config import SearchConfig
from benchmarks.common import run_metadata
from benchmarks.search_study import (
    Arm,
    add_study_arguments,
    build_kit,
    parse_names,
    run_study,
    settings_from_args,
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
from shrinkml_env.env import CONSTRAINTS
from shrinkml_env.rewards import reward_names

QUICK = {"evaluations": 8, "seeds": (0,), "test_utterances": 100, "search_utterances": 50, "jobs": 2}


def build_arms(settings, budget: float, agent: str, mask_agent: str, rewards, constraints) -> list[Arm]:
    arms = []
    for constraint in constraints:
        who = mask_agent if constraint == "mask" else agent
        for reward in rewards:
            config = SearchConfig(agent=who, budget=budget, reward=reward, constraint=constraint,
                                  evaluations=settings.evaluations, target=settings.target,
                                  test_utterances=settings.test_utterances, score=settings.score)
            arms.append(Arm(f"{reward}/{constraint}", config, extras={"reward": reward, "constraint": constraint,
                                                                     "agent": who}))
    return arms


def summary_markdown(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    lines = ["# Reward functions and constraints (`rewards.json`)", ""]
    if payload.get("note"):
        lines += [f"Measured on: {payload['note']}.", ""]
    lines += [f"Agent {s['agent']} (mask arms: {s['mask_agent']}), budget {s['budget']}, {s['evaluations']} "
              f"evaluations, seeds {s['seeds']}; dense test WER {fmt(payload['baseline_test_wer'])}. "
              "Cells: median [min, max] over seeds.", "",
              "| reward/constraint | best-in-budget test WER | size ratio | found at | in-budget share "
              "| highest-reward size | highest-reward test WER |",
              "|---|---|---|---|---|---|---|"]
    for label, arm in payload["arms"].items():
        m = arm["summary"]
        top = m.get("reward_best", {})
        lines.append(f"| {label} | {spread_text(m['test_wer'])} | {spread_text(m['size_ratio'], 3)} | "
                     f"{spread_text(m['found_at'], 0)} | {spread_text(m['within_budget_share'], 2)} | "
                     f"{spread_text(top.get('size_ratio', {}), 3)} | {spread_text(top.get('test_wer', {}))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_arguments(parser, evaluations=100, seeds="0,1,2")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--agent", default="ppo")
    parser.add_argument("--mask-agent", default="maskable_ppo")
    parser.add_argument("--rewards", default=",".join(reward_names()), help="default: every registered reward")
    parser.add_argument("--constraints", default=",".join(CONSTRAINTS))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    settings = settings_from_args(parser, args, QUICK)
    rewards, constraints = parse_names(args.rewards), parse_names(args.constraints)
    kit = build_kit(settings)
    arms = run_study("rewards", build_arms(settings, args.budget, args.agent, args.mask_agent, rewards, constraints),
                     settings, kit, reward_best=True, log=lambda line: print(line, flush=True))
    baseline = next(run["baseline_test_wer"] for arm in arms.values() for run in arm["runs"])
    plot_curves(output_path("rewards.png", args.output_dir), arms,
                title=f"rewards x constraints at budget {args.budget} (median, min-max over seeds)",
                references=[("dense model", baseline)])
    payload = {
        "meta": run_metadata(quick=args.quick),
        "note": quick_note(settings),
        "settings": {**settings.to_dict(), "budget": args.budget, "agent": args.agent, "mask_agent": args.mask_agent,
                     "rewards": list(rewards), "constraints": list(constraints)},
        "test_description": kit.test_description,
        "baseline_test_wer": baseline,
        "plot": "rewards.png",
        "arms": arms,
        "test_decodes": kit.test_error.decodes,
        "test_seconds": kit.test_error.seconds,
    }
    publish("rewards", payload, summary_markdown(payload), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
