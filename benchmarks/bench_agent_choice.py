"""Which agent should ``shrinkml search`` default to? Chosen on a held-out dev pool, not on test.

Each agent searches at each size and seed with ``shrinkml search``'s other defaults (or, with
``--reuse headline.json``, the configurations a ``bench_headline`` run of one agent chose are
taken from it), and its choices and uniform ranks at the same sizes (or just above) are
decoded on a **dev pool**: dev
utterances that are neither in the search subset (what the agents optimised) nor in the
calibration set (what the whitened factors were fitted on). The default is the agent with the
lowest dev-pool WER, averaged over sizes of each size's median over seeds. Test WER (whole
split, or ``--test-utterances``) is written beside it for the README, never used to choose.

Agents are named as ``shrinkml search --agent`` takes them; ``NAME+warm`` is an RL agent with
``--warm-start``. ``--reuse`` also takes an earlier ``agent_choice.json`` (same pool, sizes and
evaluations): its rows are kept as they are, so new agents join an earlier comparison.

Writes ``agent_choice.json`` (``benchmarks/results`` or ``--output-dir``).

Run::

    python -m benchmarks.bench_agent_choice                                   # ppo and greedy, 3 seeds
    python -m benchmarks.bench_agent_choice --reuse ppo_headline.json --agents greedy --seeds 0
    python -m benchmarks.bench_agent_choice --reuse agent_choice.json --agents ppo+warm,tpe
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.config import SearchConfig
from agents.search import run_search
from agents.targets import dev_pool_utterances, make_search_target
from benchmarks.common import parse_size_ratios, run_metadata
from benchmarks.search_study import MemoisedTestError, parse_ints, parse_names
from benchmarks.study_output import set_threads, write_output
from shrinkml_env.env import ShrinkMLEnv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", default="ppo,greedy", help="agents searched here (default: %(default)s)")
    p.add_argument("--sizes", default="0.5,0.3", help="size budgets (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the agents searched here")
    p.add_argument("--evaluations", type=int, default=SearchConfig.evaluations)
    p.add_argument("--reuse", type=Path, help="a headline.json whose agent's configurations (and uniform opponents) "
                   "are reused, or an agent_choice.json whose rows are kept")
    p.add_argument("--test-utterances", type=int, help="test utterances for the reported test WER (default: all)")
    p.add_argument("--pool-start", type=int, default=600)
    p.add_argument("--pool", type=int, default=600)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output-dir", type=Path)
    args = p.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    from asr.calibration import check_calibration
    from asr.data import prepare_feature_batches
    from asr.evaluate import evaluate_batches
    from asr.features import LogMelFrontend
    from asr.text import CharTokenizer

    sizes = parse_size_ratios(p, args.sizes)
    kit = make_search_target("default", test_utterances=args.test_utterances)
    kit.test_error = MemoisedTestError(kit.test_error)
    target = kit.target
    pool = dev_pool_utterances(args.pool_start, args.pool)
    check_calibration(target.calibrate.utterances, dev_pool=pool)
    tokenizer = CharTokenizer()
    batches = prepare_feature_batches(pool, LogMelFrontend(), tokenizer)
    rows: list[dict[str, Any]] = []
    if args.reuse is not None:
        reused = json.loads(args.reuse.read_text())
        if reused["meta"]["evaluations"] != args.evaluations or reused["meta"]["sizes"] != sizes:
            p.error(f"--reuse {args.reuse} ran {reused['meta']['evaluations']} evaluations at sizes "
                    f"{reused['meta']['sizes']}; this run: {args.evaluations} at {sizes}")
        if "chosen" in reused and reused["meta"]["pool"] != [args.pool_start, args.pool_start + args.pool]:
            p.error(f"--reuse {args.reuse} scored the dev pool {reused['meta']['pool']}; this run: "
                    f"{[args.pool_start, args.pool_start + args.pool]}")
        if "chosen" in reused:  # an earlier agent_choice.json: its rows as they are
            rows.extend({**row, "from": row.get("from", args.reuse.name)} for row in reused["rows"])
        else:  # a headline.json: its searched configurations and their uniform opponents
            for row in reused["rows"]:
                if row["method"] in ("search", "uniform"):
                    rows.append({"agent": row.get("agent", "uniform") if row["method"] == "search" else "uniform",
                                 "budget": row["budget"], "seed": row["seed"], "ranks": row["ranks"],
                                 "size_ratio": row["size_ratio"], "test_wer": row["test_wer"],
                                 "factorisation": row["factorisation"], "from": str(args.reuse.name)})
    for agent in parse_names(args.agents):
        name, _, variant = agent.partition("+")
        if variant not in ("", "warm"):
            p.error(f"agent {agent!r}: the only variant is NAME+warm (an RL agent with --warm-start)")
        for size in sizes:
            for seed in parse_ints(args.seeds):
                config = SearchConfig(agent=name, budget=size, seed=seed, target="default",
                                      evaluations=args.evaluations, warm_start=variant == "warm",
                                      test_utterances=args.test_utterances, score="wer")
                with tempfile.TemporaryDirectory() as tmp:
                    result = run_search(config, Path(tmp) / "run", kit)
                rows.append({"agent": agent, "budget": size, "seed": seed, "ranks": list(result.best.ranks),
                             "size_ratio": result.best.size_ratio, "test_wer": result.best.test_wer,
                             "factorisation": config.factorisation})
                if args.reuse is None:
                    u = result.uniform_at_size
                    rows.append({"agent": "uniform", "budget": size, "seed": seed, "ranks": list(u.ranks),
                                 "size_ratio": u.size_ratio, "test_wer": u.test_wer,
                                 "factorisation": config.factorisation, "opponent_of": agent})
    envs = {}
    for row in rows:
        if "dev_pool_wer" in row:  # kept from an earlier agent_choice.json (same pool)
            continue
        method = row["factorisation"]
        if method not in envs:
            envs[method] = ShrinkMLEnv(target=target, budget=1.0, factorisation=method)
        plan = envs[method].plan
        model = plan.export(row["ranks"]).eval()
        row["dev_pool_wer"] = evaluate_batches(model, tokenizer, batches).wer
    dense_pool = evaluate_batches(target.model, tokenizer, batches).wer
    summary: dict[str, dict[str, Any]] = {}
    for agent in sorted({r["agent"] for r in rows}):
        per_size = {}
        for size in sizes:
            group = [r for r in rows if r["agent"] == agent and r["budget"] == size]
            per_size[str(size)] = {"dev_pool_wer": statistics.median(r["dev_pool_wer"] for r in group),
                                   "test_wer": statistics.median(r["test_wer"] for r in group),
                                   "size_ratio": statistics.median(r["size_ratio"] for r in group),
                                   "seeds": len(group)}
        summary[agent] = {"sizes": per_size,
                          "mean_dev_pool_wer": statistics.mean(v["dev_pool_wer"] for v in per_size.values())}
    searched = {a: s for a, s in summary.items() if a != "uniform"}
    chosen = min(searched, key=lambda a: searched[a]["mean_dev_pool_wer"])
    payload = {
        "meta": run_metadata(benchmark="agent_choice", sizes=sizes, pool=[args.pool_start, args.pool_start + args.pool],
                             pool_utterances=len(pool), evaluations=args.evaluations,
                             agents=list(parse_names(args.agents)), seeds=list(parse_ints(args.seeds)),
                             reuse=None if args.reuse is None else args.reuse.name,
                             test_utterances=args.test_utterances,
                             seconds=round(time.perf_counter() - started, 1)),
        "dense_dev_pool_wer": dense_pool,
        "rows": rows,
        "summary": summary,
        "chosen": chosen,
    }
    path = write_output("agent_choice.json", payload, args.output_dir)
    for agent, s in summary.items():
        print(agent, {k: (round(v["dev_pool_wer"], 4), round(v["test_wer"], 4)) for k, v in s["sizes"].items()},
              round(s["mean_dev_pool_wer"], 4))
    print(f"chosen on the dev pool: {chosen}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
