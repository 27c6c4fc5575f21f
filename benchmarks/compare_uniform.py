"""Every agent's final configurations in a ``search.json`` against uniform compression.

``bench_search --compare`` sets one agent's choices against uniform compression at equal or
larger size while the study runs; this script does the same afterwards, for any agents,
from the saved ``search.json`` (no search is repeated): each run's final configuration and
the uniform configuration at equal or larger size are exported truly factorised, decoded on
the test split (all of it by default) and compared with a paired bootstrap interval over
test utterances. Decodes are memoised, so configurations several runs share (a
deterministic baseline, a common uniform opponent) are decoded once.

Also reads a ``search_space.json`` (one group per rank menu). Writes ``<input>_vs_uniform.json``
and ``.md`` (``search_vs_uniform.json`` for a ``search.json``) beside the input (or to
``--output-dir``).

Run::

    python -m benchmarks.compare_uniform --search-json benchmarks/results/search.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import run_metadata
from benchmarks.comparisons import UniformComparison, compare_with_uniform
from benchmarks.search_study import count_or_all, parse_floats, parse_names, weights_fingerprint
from benchmarks.study_output import publish, set_threads


def study_groups(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Arms by group: per budget for a ``search.json``; per rank menu (``"budget/menu"``) for
    a ``search_space.json``, whose menus all ran at one budget."""
    if "menus" in data:
        budget = data["settings"]["budget"]
        return {f"{budget}/{menu}": block["arms"] for menu, block in data["menus"].items()}
    return {budget: block["arms"] for budget, block in data["budgets"].items()}


def summary_markdown(payload: dict[str, Any]) -> str:
    lines = ["# Final configurations against uniform compression at equal or larger size", "",
             f"Test set: {payload['test_utterances'] or 'all'} test utterances; difference = agent − uniform "
             "(negative: the agent's choice is better), 95 % paired bootstrap interval.", ""]
    for budget, agents in payload["budgets"].items():
        lines += [f"## Budget {budget}", "", "| agent | median difference | seeds better | better beyond interval | "
                  "differences [intervals] |", "|---|---|---|---|---|"]
        for agent, c in agents.items():
            cells = "; ".join(f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]" for r in c["runs"])
            lines.append(f"| {agent} | {c['median_difference']:+.4f} | {c['seeds_better']}/{c['seeds']} | "
                         f"{c['seeds_better_beyond_interval']}/{c['seeds']} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search-json", type=Path, required=True, help="a bench_search result")
    parser.add_argument("--agents", default="", help="comma-separated (default: every arm in the file)")
    parser.add_argument("--budgets", default="", help="comma-separated (default: every budget in the file)")
    parser.add_argument("--test-utterances", type=count_or_all, default=None, help="a count or 'all' (default)")
    parser.add_argument("--output-dir", type=Path, help="default: the folder of --search-json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if not args.search_json.is_file():
        parser.error(f"--search-json {args.search_json} does not exist; give a search.json that bench_search wrote")
    data = json.loads(args.search_json.read_text(encoding="utf-8"))
    groups = study_groups(data)
    budgets = [b for b in groups if not args.budgets or float(b.split("/")[0]) in parse_floats(args.budgets)]
    if not budgets:
        parser.error(f"--budgets {args.budgets!r} matches none of the file's budgets {list(groups)}")
    target = data["settings"]["target"]
    if target == "toy":
        parser.error("the toy target has no test split; this comparison needs an ASR target")
    compare = UniformComparison.on_test_set(target, args.test_utterances)
    measured_on = (data.get("target_identity") or {}).get("fingerprint")
    if measured_on is not None and measured_on != (holds := weights_fingerprint(compare.model)):
        parser.error(f"{args.search_json} was searched on another model (fingerprint {measured_on}) than "
                     f"target {target!r} holds now ({holds}); rerun bench_search on it")
    payload: dict[str, Any] = {"meta": run_metadata(), "search_json": str(args.search_json),
                               "search_meta": data.get("meta"), "test_utterances": args.test_utterances, "budgets": {}}
    for budget in budgets:
        arms = {k: v for k, v in groups[budget].items() if k != "reference"}
        agents = parse_names(args.agents) or tuple(arms)
        payload["budgets"][budget] = compare_with_uniform(arms, agents, compare)
    output_dir = args.output_dir or args.search_json.parent
    stem = f"{args.search_json.stem}_vs_uniform"
    publish(stem, payload, summary_markdown(payload), output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
