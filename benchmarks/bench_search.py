"""Search quality: best test WER within the budget vs unique evaluations, for every agent.

Every agent and baseline (``agents.config.AGENTS``) searches at each budget with the same
number of unique search-subset evaluations and several seeds. After each evaluation the
running best within the budget (by search WER) is scored on the test set; the curves give
median and min–max over seeds, one plot per budget. A long regularised-evolution run
(``--reference-factor`` times the evaluations) serves as the best-known reference.

Agents are named as ``shrinkml search --agent`` takes them, or ``NAME+warm`` for an RL agent
warm-started from the sensitivity scan (``--warm-start``), and ``AGENT:SCORE`` for an agent
steered by another search-subset score than the study's ``--score`` (``ppo+warm:distill``;
``--score`` in ``shrinkml search``); such an arm's search-subset column is in its own score.
Agents that draw nothing at random (uniform, greedy) run once, with the first seed, and stand
for every seed. Every configuration is exported by the search's factorisation method
(whitened by default), as ``shrinkml search`` exports it.

For the agents named by ``--compare`` (default: PPO), each seed's final configuration is set
against uniform compression at equal or larger size (the smallest common rank fraction whose
size is at least the configuration's), and against the same seed's final configuration of the
best baseline (the non-RL agent with the lowest median test WER), on the test set
(``--compare-test-utterances``, all by default): the WER difference with a paired bootstrap
interval over test utterances.

With ``--dev-pool-at 100,300`` each run's best within the budget after 100 and 300
evaluations is also decoded on the **dev pool** (600 dev utterances outside the search subset
and the calibration set), and ``choice`` names the agent with the lowest dev-pool WER (mean
over budgets of the median over seeds) at each count: that is how ``shrinkml search``'s
default agent is chosen, never on test. With ``--runs-dir`` the test and dev-pool scores are
kept there too, so an interrupted study resumes without decoding anything twice.

Writes ``search.json``, ``search.md`` and ``search_budget<B>.png`` to ``benchmarks/results``
(or ``--output-dir``). ``best_known`` in the JSON (per budget: the lowest search-subset score
seen in any run steered by the study's ``--score``) is what ``bench_inference.py`` exports and
times. Budgets that an existing ``search.json`` there measured with the same settings are kept
(``--no-keep-budgets``: not), so a long study can run one budget per invocation and still end in one file. The reference
costs five agents' runs, so it too can run apart (``--agents '' --reference-factor 5``, on
another machine) and join the study afterwards with ``--add-reference`` (same model, data
and settings checked).

Run::

    python -m benchmarks.bench_search                     # full: 100 evaluations, 3 seeds
    python -m benchmarks.bench_search --budgets 0.3 --evaluations 300 --seeds 0,1,2,3,4 \
        --agents uniform,ppo+warm,greedy,random,tpe,cmaes --compare ppo+warm --dev-pool-at 100,300 \
        --test-every 100 --jobs 2 --threads 2 --runs-dir runs/study       # the issue-16 study, one budget
    python -m benchmarks.bench_search --quick             # make bench
    python -m benchmarks.bench_search --target toy --quick --output-dir /tmp/b   # machinery check
    python -m benchmarks.bench_search --agents '' --budgets 0.3 --output-dir /tmp/ref   # reference only
    python -m benchmarks.bench_search --add-reference /tmp/ref/search.json           # ... joins search.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from agents.config import AGENTS, WARM_START_AGENTS, SearchConfig
from benchmarks.common import run_metadata
from benchmarks.comparisons import (
    UniformComparison,
    choose_agent,
    compare_with_best_baseline,
    compare_with_uniform,
)
from benchmarks.search_study import (
    Arm,
    add_study_arguments,
    build_kit,
    count_or_all,
    parse_floats,
    parse_names,
    run_study,
    settings_from_args,
    target_identity,
)
from benchmarks.study_output import (
    best_seen,
    fmt,
    output_path,
    plot_curves,
    publish,
    quick_note,
    set_threads,
    spread_text,
    write_output,
    write_text,
)

QUICK = {"evaluations": 8, "seeds": (0, 1), "test_utterances": 100, "search_utterances": 50, "jobs": 2}
QUICK_REFERENCE_FACTOR = 3


# How configurations are exported before they are scored; a study scored otherwise (plain SVD
# whatever the search's method, before 2026-12-06) neither merges with nor joins this one.
EXPORT = "search-factorisation"

# Agents whose search draws nothing at random: one run stands for every seed.
DETERMINISTIC = ("uniform", "greedy")


def parse_agent(label: str) -> tuple[str, bool]:
    """``NAME`` or ``NAME+warm`` (an RL agent warm-started from the sensitivity scan)."""
    name, _, variant = label.partition("+")
    if name not in AGENTS or variant not in ("", "warm") or (variant and name not in WARM_START_AGENTS):
        raise ValueError(f"unknown agent {label!r}; accepted: {', '.join(AGENTS)}, or NAME+warm for "
                         f"{', '.join(WARM_START_AGENTS)} (warm-started from the sensitivity scan)")
    return name, variant == "warm"


def parse_arm(label: str) -> tuple[str, bool, str | None]:
    """``AGENT`` or ``AGENT:SCORE`` (the agent steered by another search-subset score, one of
    :data:`asr.scores.SCORES`); returns name, warm start and the score (None: the study's)."""
    from asr.scores import SCORES

    agent, sep, score = label.partition(":")
    name, warm = parse_agent(agent)
    if sep and score not in SCORES:
        raise ValueError(f"agent {label!r}: unknown score {score!r}; accepted: AGENT:{', AGENT:'.join(SCORES)}")
    return name, warm, score if sep else None


def arms_for(budget: float, agents: tuple[str, ...], settings, reference_factor: int, reference_seed: int) -> list[Arm]:
    base = SearchConfig(budget=budget, evaluations=settings.evaluations, target=settings.target,
                        test_utterances=settings.test_utterances, score=settings.score)
    arms = []
    for label in agents:
        name, warm, score = parse_arm(label)
        arms.append(Arm(label, replace(base, agent=name, warm_start=warm, score=score or base.score),
                        seeds=settings.seeds[:1] if name in DETERMINISTIC else None))
    if reference_factor > 0:
        arms.append(Arm("reference", replace(base, agent="evolution", evaluations=settings.evaluations * reference_factor),
                        seeds=(reference_seed,), extras={"role": f"long evolution ({reference_factor}x evaluations)"}))
    return arms


# Settings added since some search.json files were written, with the value such a file
# measured with: the default of that time, which a later change of today's default must
# not rewrite (as SearchConfig.from_dict reads old run directories).
_NEW_SETTING_DEFAULTS = {"score": "wer"}


def _settings(payload: dict[str, Any]) -> dict[str, Any]:
    """A study file's settings, with the defaults of settings added since it was written."""
    return {**_NEW_SETTING_DEFAULTS, **payload.get("settings", {})}


def merge_earlier(payload: dict[str, Any], earlier: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the budgets an earlier ``search.json`` measured with the same settings.

    A long study can then run one budget per invocation (each writing its results as soon
    as it ends) and still leave one file. Budgets measured now replace earlier ones; each
    budget block keeps the ``meta`` (date, commit, load) of the run that measured it. With
    any other setting different, or another model or search subset (``target_identity``),
    nothing is kept.
    """
    if not earlier:
        return payload
    same = {k: v for k, v in _settings(earlier).items() if k != "budgets"} == \
        {k: v for k, v in payload["settings"].items() if k != "budgets"}
    if (not same or earlier.get("test_description") != payload["test_description"]
            or earlier.get("target_identity") != payload.get("target_identity")):
        return payload  # another model, subset or test set: budgets measured on it do not mix
    budgets = {b: block for b, block in earlier["budgets"].items() if b not in payload["budgets"]}
    best_known = {b: v for b, v in earlier.get("best_known", {}).items() if b in budgets}
    merged = {**payload, "budgets": {**budgets, **payload["budgets"]},
              "best_known": {**best_known, **payload["best_known"]}}
    order = sorted(merged["budgets"], key=float, reverse=True)
    merged["budgets"] = {b: merged["budgets"][b] for b in order}
    merged["settings"] = {**payload["settings"], "budgets": [float(b) for b in order]}
    for key in ("test_decodes", "test_seconds"):
        merged[key] = None
    return merged


def plot_budget(budget: str, block: dict[str, Any], output_dir: Path | None) -> None:
    """One budget's curves (the reference run is a horizontal line, not a curve)."""
    lines = [("dense model", block["baseline_test_wer"])]
    ref_best = block.get("reference")
    if ref_best is not None:
        lines.append((f"reference: long evolution ({ref_best['test_wer']:.4f})", ref_best["test_wer"]))
    plot_curves(output_path(block["plot"], output_dir), {k: v for k, v in block["arms"].items() if k != "reference"},
                title=f"budget {budget}: median and min-max over seeds", references=lines)


# What a reference run measured elsewhere must share with the study it joins.
_REFERENCE_SETTINGS = ("target", "evaluations", "test_utterances", "search_utterances", "test_every", "export",
                       "score")


def same_score(arms: dict[str, Any], score: str) -> dict[str, Any]:
    """The arms steered by ``score``: search-subset scores compare only within one score."""
    return {label: arm for label, arm in arms.items()
            if arm["config"].get("score", _NEW_SETTING_DEFAULTS["score"]) == score}


def add_reference(payload: dict[str, Any], source: dict[str, Any], origin: str = "") -> list[str]:
    """Put the long-evolution reference runs of ``source`` into the study ``payload``.

    The reference costs ``reference_factor`` times an agent's evaluations, so it can run as its
    own invocation (``--agents ''``, on another machine) and join the study afterwards. It
    joins only a study of the same model, search subset and test set, and the same
    evaluations, test utterances and test cadence; each budget it brings must be in
    ``payload``. Each budget's ``best_seen`` (and ``best_known``) is recomputed with the
    reference among the runs. Changes ``payload`` in place; returns the budgets added.
    """
    name = origin or "results"
    pairs = [(k, _settings(source).get(k), _settings(payload).get(k)) for k in _REFERENCE_SETTINGS]
    pairs += [(k, source.get(k), payload.get(k)) for k in ("test_description", "target_identity")]
    mismatched = [f"{k} ({theirs!r} against the study's {ours!r})" for k, theirs, ours in pairs if theirs != ours]
    if mismatched:
        raise ValueError(f"reference {name} differ from the study in {'; '.join(mismatched)}; "
                         "run the reference with the study's settings on the same model and data")
    added = [b for b, block in source.get("budgets", {}).items() if "reference" in block["arms"]]
    if not added:
        raise ValueError(f"{name} hold no reference run; make one with --reference-factor N")
    missing = [b for b in added if b not in payload["budgets"]]
    if missing:
        raise ValueError(f"the study has no budget {', '.join(missing)} for the reference of {name}; "
                         f"its budgets are {', '.join(payload['budgets'])}")
    factor = source["settings"]["reference_factor"]
    if payload["settings"].get("reference_factor") not in (0, factor):
        raise ValueError(f"the study's reference runs got {payload['settings']['reference_factor']}x evaluations, "
                         f"those of {name} {factor}x; one study has one reference length")
    payload["settings"] = {**payload["settings"], "reference_factor": factor,
                           "reference_seed": source["settings"]["reference_seed"]}
    for budget in added:
        block, joined = payload["budgets"][budget], source["budgets"][budget]
        block["arms"] = {**{k: v for k, v in block["arms"].items() if k != "reference"},
                         "reference": joined["arms"]["reference"]}
        block["reference"] = joined["reference"]
        block["reference_meta"] = {**joined["meta"], "source": origin}
        block["best_seen"] = best_seen(same_score(block["arms"], _settings(payload)["score"]))
        payload.setdefault("best_known", {})[budget] = block["best_seen"]
    return added


def _curve_at(summary: dict[str, Any], count: int) -> dict[str, Any]:
    """Median, min and max over seeds of the running best's test WER after ``count`` evaluations."""
    curve = summary["test_wer_curve"]
    k = min(count, len(curve["evaluations"])) - 1
    return {stat: curve[stat][k] for stat in ("median", "min", "max")}


def _paired_table(heading: str, comparison: dict[str, Any], column: str, opponent: str,
                  prefix: str | None = None) -> list[str]:
    """Markdown lines of one paired comparison: a row per seed, then the tally. The
    opponent's fields are ``<prefix>_size_ratio`` and ``<prefix>_test_wer`` (prefix: ``column``)."""
    prefix = prefix or column
    lines = ["", heading, "", f"| seed | size | {column} size | test WER | {column} test WER | difference [interval] |",
             "|---|---|---|---|---|---|"]
    for r in comparison["runs"]:
        lines.append(f"| {r['seed']} | {r['size_ratio']:.3f} | {r[f'{prefix}_size_ratio']:.3f} | "
                     f"{fmt(r['test_wer'])} | {fmt(r[f'{prefix}_test_wer'])} | "
                     f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] |")
    lines.append(f"\nMedian difference {comparison['median_difference']:+.4f}; lower than {opponent} in "
                 f"{comparison['seeds_better']} of {comparison['seeds']} seeds "
                 f"({comparison['seeds_better_beyond_interval']} with the whole interval below zero).")
    return lines


def summary_markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    lines = ["# Search quality (`search.json`)", ""]
    note = payload.get("note")
    if note:
        lines += [f"Measured on: {note}.", ""]
    lines += [f"{settings['evaluations']} unique evaluations per run, seeds {settings['seeds']}; "
              f"test set: {payload['test_description']}. Cells: median [min, max] over seeds.", ""]
    counts = settings.get("dev_pool_at") or []
    if settings.get("export") == EXPORT:
        lines += ["Deterministic agents (uniform, greedy) run once (`runs`).", ""]
    else:
        lines += ["Configurations were exported by plain SVD whatever the search's method.", ""]
    if counts:
        lines += ["The dev pool (dev utterances 600–1200 outside the search subset; neither searched nor "
                  "calibrated on) is where the recommended agent is chosen; test WER is reported, never used "
                  "to choose.", ""]
    for count, choice in (payload.get("choice") or {}).items():
        ranking = ", ".join(f"{label} {fmt(v)}" for label, v in choice["mean_dev_pool_wer"].items())
        lines += [f"**Recommended at {count} evaluations (dev pool, mean over budgets {', '.join(choice['budgets'])} "
                  f"of the median over seeds): {choice['chosen']}.** {ranking}.", ""]
    study_score = _settings(payload)["score"]
    lines += [f"Search score: the running best's on the search subset, {study_score}"
              + (" (greedy WER)" if study_score == "wer" else "")
              + "; an arm named AGENT:SCORE steered by SCORE, and its column is in that score.", ""]
    for budget, block in payload["budgets"].items():
        lines += [f"## Budget {budget}", "",
                  f"Dense test WER {fmt(block['baseline_test_wer'])}; plot `{block['plot']}`.", "",
                  "| agent | runs | best test WER | " + "".join(f"test WER at {k} | dev-pool WER at {k} | " for k in counts)
                  + "search score | size ratio | found at evaluation | seconds/run |",
                  "|---|---|---|" + "---|---|" * len(counts) + "---|---|---|---|"]
        for label, arm in block["arms"].items():
            s = arm["summary"]
            at = "".join(f"{spread_text(_curve_at(s, k))} | {spread_text(s.get('dev_pool_wer', {}).get(str(k), {}))} | "
                         for k in counts)
            lines.append(f"| {label} | {s['runs']} | {spread_text(s['test_wer'])} | {at}{spread_text(s['search_wer'])} | "
                         f"{spread_text(s['size_ratio'], 3)} | {spread_text(s['found_at'], 0)} | "
                         f"{spread_text(s['seconds'], 1)} |")
        joined = block.get("reference_meta")
        if joined:
            lines += ["", f"The reference ({settings['reference_factor']}x evaluations, seed {settings['reference_seed']}) "
                      f"ran as its own invocation: {joined.get('machine')}, {joined.get('cpu_count')} CPUs, "
                      f"{joined.get('threads')} threads, {joined.get('date')}, commit {joined.get('commit')}."]
        ranked = sorted(((a["summary"]["test_wer"]["median"], label) for label, a in block["arms"].items()
                         if label != "reference" and a["summary"]["test_wer"]["median"] is not None))
        if ranked:
            lines += ["", "Lowest median test WER at equal evaluations: "
                      + ", ".join(f"{label} {fmt(value)}" for value, label in ranked[:3])
                      + f"; highest: {ranked[-1][1]} {fmt(ranked[-1][0])}."]
        for agent, c in (block.get("versus_uniform") or {}).items():
            lines += _paired_table(f"{agent} against uniform compression at equal or larger size (test set, "
                                   f"{c['runs'][0]['utterances']} utterances; interval: paired bootstrap, "
                                   f"{c['runs'][0]['confidence']:.0%}):", c, "uniform", "uniform")
        for agent, c in (block.get("versus_best_baseline") or {}).items():
            unpaired = f"; seeds without a partner: {c['unpaired_seeds']}" if c["unpaired_seeds"] else ""
            lines += _paired_table(f"{agent} against the best baseline, {c['baseline']} (lowest median WER of the "
                                   f"baselines on the {c['baseline_chosen_on']}), same seed (test set, "
                                   f"{c['runs'][0]['utterances']} utterances, paired bootstrap "
                                   f"{c['runs'][0]['confidence']:.0%}{unpaired}):", c, "baseline", c["baseline"],
                                   prefix="other")
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
    parser.add_argument("--compare", default="ppo",
                        help="agents whose results are set against uniform at equal size, with a bootstrap "
                             "interval (comma-separated; '' for none; ASR targets only)")
    parser.add_argument("--compare-test-utterances", type=count_or_all, default=None,
                        help="test utterances for that comparison ('all', the default, or a count)")
    parser.add_argument("--keep-budgets", action=argparse.BooleanOptionalAction, default=True,
                        help="keep the other budgets of an existing search.json measured with the same settings "
                             "(default; --no-keep-budgets overwrites it)")
    parser.add_argument("--add-reference", nargs="+", type=Path, metavar="SEARCH_JSON",
                        help="instead of searching: put the reference runs of these search.json files (made with "
                             "--agents '' --reference-factor N) into the search.json of --output-dir")
    args = parser.parse_args(argv)
    if args.add_reference:
        return add_reference_files(args.add_reference, args.output_dir)
    set_threads(args.threads)
    settings = settings_from_args(parser, args, QUICK)
    reference_factor = args.reference_factor
    if args.quick and reference_factor == parser.get_default("reference_factor"):
        reference_factor = QUICK_REFERENCE_FACTOR
    budgets, agents = parse_floats(args.budgets), parse_names(args.agents)
    for label in agents:
        try:
            parse_arm(label)
        except ValueError as e:
            parser.error(str(e))

    kit = build_kit(settings)
    compare_agents = tuple(a for a in parse_names(args.compare) if a in agents)
    if args.quick and args.compare_test_utterances is None:
        args.compare_test_utterances = settings.test_utterances
    compare = (UniformComparison.on_test_set(settings.target, args.compare_test_utterances, settings.runs_dir)
               if compare_agents and settings.target != "toy" else None)
    payload: dict[str, Any] = {
        "meta": run_metadata(quick=args.quick),
        "note": quick_note(settings),
        "settings": {**settings.to_dict(), "budgets": list(budgets), "agents": list(agents), "export": EXPORT,
                     "reference_factor": reference_factor, "reference_seed": args.reference_seed},
        "test_description": kit.test_description,
        "target_identity": target_identity(kit.target),
        "budgets": {},
        "best_known": {},
    }
    for budget in budgets:
        arms = run_study(f"search-{budget}", arms_for(budget, agents, settings, reference_factor, args.reference_seed),
                         settings, kit, mixed_scores=True, log=lambda line: print(line, flush=True))
        baseline = next(run["baseline_test_wer"] for arm in arms.values() for run in arm["runs"])
        reference = arms.get("reference")
        seen = best_seen(same_score(arms, settings.score))
        payload["budgets"][str(budget)] = {"meta": run_metadata(quick=args.quick), "baseline_test_wer": baseline,
                                           "plot": f"search_budget{budget}.png", "arms": arms,
                                           "reference": reference["runs"][0]["best"] if reference else None,
                                           "best_seen": seen}
        plot_budget(str(budget), payload["budgets"][str(budget)], args.output_dir)
        if compare is not None:
            block = payload["budgets"][str(budget)]
            block["versus_uniform"] = compare_with_uniform(arms, compare_agents, compare)
            block["versus_best_baseline"] = {a: c for a in compare_agents
                                             if (c := compare_with_best_baseline(arms, a, compare)) is not None}
        payload["best_known"][str(budget)] = seen
    # Counted in this process only: with --jobs the pool processes decode (and count) their own.
    payload["test_decodes"] = kit.test_error.decodes if settings.jobs == 1 else None
    payload["test_seconds"] = kit.test_error.seconds if settings.jobs == 1 else None
    earlier_path = output_path("search.json", args.output_dir)
    if args.keep_budgets and earlier_path.exists():
        earlier = json.loads(earlier_path.read_text(encoding="utf-8"))
        payload = merge_earlier(payload, earlier)
        dropped = sorted(set(earlier.get("budgets", {})) - set(payload["budgets"]), key=float)
        if dropped:
            print(f"{earlier_path}: budgets {', '.join(dropped)} were measured with other settings, another "
                  "model or another test set, and are replaced by this run's (--no-keep-budgets says so up front)")
    payload["choice"] = choose_agent(payload)
    publish("search", payload, summary_markdown(payload), args.output_dir)
    return 0


def add_reference_files(sources: list[Path], output_dir: Path | None) -> int:
    path = output_path("search.json", output_dir)
    if not path.exists():
        raise SystemExit(f"no study at {path} to add a reference to; run the study first (or name --output-dir)")
    payload = json.loads(path.read_text(encoding="utf-8"))
    for source in sources:
        try:
            added = add_reference(payload, json.loads(source.read_text(encoding="utf-8")), str(source))
        except (OSError, ValueError) as e:
            raise SystemExit(f"cannot add the reference of {source}: {e}") from e
        for budget in added:
            plot_budget(budget, payload["budgets"][budget], output_dir)
        print(f"{source}: reference added at budget {', '.join(added)}")
    write_output("search.json", payload, output_dir)
    write_text("search.md", summary_markdown(payload), output_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
