"""The README's headline: the dense model, uniform compression and ``shrinkml search``.

For each size budget and seed, the default search (``SearchConfig``'s defaults: agent,
score, rank menu, factorisation, evaluations) runs on the shipped model and reports its choice's WER on
the whole test split, beside uniform compression at the choice's size or just above (the
like-for-like opponent, same factorisation). Every exported model is then timed end to end
(batch-1 greedy decoding of the first ``--timing-utterances`` test utterances, interleaved
with the dense model), and its checkpoint size is written.

Writes ``headline.json``, ``headline.md`` (the table) and ``headline.png`` (test WER against
size; ``benchmarks/results`` or ``--output-dir``).

Run::

    python -m benchmarks.bench_headline                  # sizes 0.5 and 0.3, seeds 0-2
    python -m benchmarks.bench_headline --quick          # one seed, 20 evaluations
    python -m benchmarks.bench_headline --retime benchmarks/results/headline.json --repeats 5
                                                         # time the recorded models again
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from agents.config import SearchConfig
from agents.search import run_search
from agents.targets import make_search_target
from benchmarks.common import (
    apply_quick_defaults,
    latency_workload_on_test,
    parse_size_ratios,
    run_metadata,
)
from benchmarks.search_study import MemoisedTestError, parse_ints
from benchmarks.study_output import output_path, set_threads, write_output, write_text
from shrinkml_env.atomic import atomic_write_bytes
from shrinkml_env.compression.timing import interleaved_medians_ms
from shrinkml_env.env import ShrinkMLEnv

QUICK = {"seeds": "0", "evaluations": 20, "timing_utterances": 10, "repeats": 2}


def _megabytes(model: torch.nn.Module) -> float:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


def _timing_workload(kit, target: str, utterances: int):
    if target == "toy":
        return lambda model: kit.target.inference(model, 1)
    return latency_workload_on_test(utterances, 1)


def run(args) -> dict[str, Any]:
    # Whole test split, steered by the default search's score.
    kit = make_search_target(args.target, score=SearchConfig(target=args.target).score)
    kit.test_error = MemoisedTestError(kit.test_error)  # the dense model and shared opponents once
    dense = kit.target.model
    models: dict[str, torch.nn.Module] = {"dense": dense}
    rows: list[dict[str, Any]] = [{"method": "dense", "size_ratio": 1.0, "test_wer": None, "name": "dense"}]
    # Exports only: one plan (bank) of the searches' factorisation serves every size and seed.
    plan = ShrinkMLEnv(target=kit.target, budget=1.0, factorisation=SearchConfig().factorisation).plan
    for size in args.sizes:
        for seed in args.seeds:
            config = SearchConfig(budget=size, seed=seed, evaluations=args.evaluations, target=args.target)
            with tempfile.TemporaryDirectory() as tmp:
                result = run_search(config, Path(tmp) / "run", kit)
            if result.best is None:
                raise RuntimeError(f"the search at size {size}, seed {seed} found nothing within its budget")
            rows[0]["test_wer"] = result.baseline_test_wer
            name = f"search {size} seed {seed}"  # exported as the search exported it
            models[name] = plan.export(result.best.ranks).eval()
            rows.append({"method": "search", "name": name, "budget": size, "seed": seed,
                         "agent": config.agent, "warm_start": config.warm_started, "score": config.score,
                         "rank_menu": config.rank_menu,
                         "factorisation": config.factorisation, "evaluations": result.evaluations,
                         "ranks": list(result.best.ranks), "size_ratio": result.best.size_ratio,
                         "search_wer": result.best.search_wer, "test_wer": result.best.test_wer,
                         "uniform_at_size": {"size_ratio": result.uniform_at_size.size_ratio,
                                             "test_wer": result.uniform_at_size.test_wer,
                                             "ranks": list(result.uniform_at_size.ranks)},
                         "search_seconds": result.seconds})
            uniform_name = f"uniform {size} seed {seed}"
            ranks = result.uniform_at_size.ranks
            models[uniform_name] = plan.export(ranks).eval()
            rows.append({"method": "uniform", "name": uniform_name, "budget": size, "seed": seed,
                         "factorisation": config.factorisation, "ranks": list(ranks),
                         "size_ratio": result.uniform_at_size.size_ratio,
                         "test_wer": result.uniform_at_size.test_wer})
    _time_models(kit, args.target, args, models, rows)
    return {"rows": rows, "summary": _summary(rows, args.sizes)}


def _time_models(kit, target: str, args, models: dict[str, torch.nn.Module], rows: list[dict[str, Any]]) -> None:
    """Batch-1 timings of every model, interleaved with the dense one, into ``rows``."""
    timing = _timing_workload(kit, target, args.timing_utterances)
    measured = interleaved_medians_ms({n: (lambda m=m: timing(m)) for n, m in models.items()},
                                      repeats=args.repeats, warmup=1)
    for row in rows:
        row["batch1_ms"] = measured[row["name"]]
        row["speedup"] = measured["dense"] / measured[row["name"]]
        row["megabytes"] = _megabytes(models[row["name"]])


def retime(args) -> dict[str, Any]:
    """A finished headline's models exported again from their recorded ranks and timed anew.

    The searches and WERs are kept as they were; only the timing (the one figure a busy
    machine spoils) is measured again, with this call's ``--timing-utterances`` and
    ``--repeats``, and recorded in ``meta["retimed"]``.
    """
    payload = json.loads(args.retime.read_text(encoding="utf-8"))
    meta, rows = payload["meta"], payload["rows"]
    kit = make_search_target(meta["target"])
    plan = ShrinkMLEnv(target=kit.target, budget=1.0, factorisation=meta["factorisation"]).plan
    models = {row["name"]: kit.target.model if row["method"] == "dense" else plan.export(row["ranks"]).eval()
              for row in rows}
    _time_models(kit, meta["target"], args, models, rows)  # the recorded target, not --target
    meta["retimed"] = {**run_metadata(), "timing_utterances": args.timing_utterances, "repeats": args.repeats,
                       "previous": {"date": meta["date"], "timing_utterances": meta["timing_utterances"],
                                    "repeats": meta["repeats"]}}
    meta["timing_utterances"], meta["repeats"] = args.timing_utterances, args.repeats
    return {"meta": meta, "rows": rows, "summary": _summary(rows, meta["sizes"])}


def _summary(rows: list[dict[str, Any]], sizes) -> list[dict[str, Any]]:
    """One line per method and size: medians over seeds (the dense model once)."""
    out = []
    dense = rows[0]
    out.append({"method": "dense", "size": 1.0, "test_wer": dense["test_wer"], "size_ratio": 1.0,
                "megabytes": dense["megabytes"], "speedup": 1.0, "seeds": 1})
    for size in sizes:
        for method in ("uniform", "search"):
            group = [r for r in rows if r["method"] == method and r["budget"] == size]
            out.append({
                "method": method, "size": size, "seeds": len(group),
                "test_wer": statistics.median(r["test_wer"] for r in group),
                "test_wer_range": [min(r["test_wer"] for r in group), max(r["test_wer"] for r in group)],
                "size_ratio": statistics.median(r["size_ratio"] for r in group),
                "megabytes": statistics.median(r["megabytes"] for r in group),
                "speedup": statistics.median(r["speedup"] for r in group),
            })
    return out


def markdown(payload: dict[str, Any]) -> str:
    meta = payload["meta"]
    lines = [
        "| model | test WER | LSTM size | checkpoint | batch-1 speed |",
        "|---|---|---|---|---|",
    ]
    for s in payload["summary"]:
        label = "dense" if s["method"] == "dense" else (
            f"uniform ranks, size {s['size']}" if s["method"] == "uniform" else f"ShrinkML search, size {s['size']}")
        spread = "" if s["seeds"] == 1 else f" ({s['test_wer_range'][0]:.3f}–{s['test_wer_range'][1]:.3f})"
        lines.append(f"| {label} | {s['test_wer']:.3f}{spread} | {s['size_ratio']:.2f} | "
                     f"{s['megabytes']:.1f} MB | {s['speedup']:.2f}× |")
    lines.append("")
    lines.append(
        f"Whole test split ({meta['test_utterances'] or 'toy'} utterances), greedy decoding; search: "
        f"`shrinkml search` defaults ({meta['agent']}{', warm start' if meta.get('warm_start') else ''}, "
        f"steered by {meta.get('score', 'wer')}, "
        f"{meta['evaluations']} evaluations, "
        f"{meta['factorisation']} SVD), "
        + (f"seed {meta['seeds'][0]}" if len(meta["seeds"]) == 1 else f"median over seeds {meta['seeds']} with their range")
        + "; uniform "
        "ranks at each search result's size or just above. Speed: batch-1 greedy decoding of "
        f"{meta['timing_utterances']} test utterances against the dense model, {meta['threads']} "
        "threads, interleaved. LSTM size: compressible parameters after / before."
    )
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.8), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    rows = payload["rows"]
    ax.axhline(rows[0]["test_wer"], color="gray", linestyle=":", label="dense")
    for method, style in (("uniform", dict(color="tab:gray", marker="s")),
                          ("search", dict(color="tab:blue", marker="*", s=120))):
        points = [(r["size_ratio"], r["test_wer"]) for r in rows if r["method"] == method]
        ax.scatter(*zip(*points), label="uniform ranks" if method == "uniform" else "ShrinkML search",
                   edgecolor="black", linewidth=0.5, **style)
    ax.set_xlabel("LSTM size ratio (after / before)")
    ax.set_ylabel("test WER (greedy)")
    ax.set_title("Compressing the shipped recogniser without retraining")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="default", help="'default' (the shipped model) or 'toy' (plumbing check)")
    p.add_argument("--sizes", default="0.5,0.3", help="size budgets (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--evaluations", type=int, default=SearchConfig.evaluations)
    p.add_argument("--timing-utterances", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output-dir", type=Path)
    p.add_argument("--retime", type=Path, metavar="HEADLINE_JSON",
                   help="time a finished headline's models again (searches and WERs kept as recorded)")
    args = p.parse_args(argv)
    if args.quick:
        apply_quick_defaults(p, args, QUICK)
    args.sizes = parse_size_ratios(p, args.sizes)
    args.seeds = parse_ints(args.seeds)
    set_threads(args.threads)
    if args.retime is not None:
        _write(retime(args), args.output_dir)
        return 0
    started = time.perf_counter()
    defaults = SearchConfig(target=args.target)
    if args.target == "toy":
        test_utterances = None
    else:
        from asr.default import load_split

        test_utterances = len(load_split("test"))
    payload = {"meta": run_metadata(benchmark="headline", sizes=args.sizes, seeds=list(args.seeds),
                                    agent=defaults.agent, warm_start=defaults.warm_started, score=defaults.score,
                                    evaluations=args.evaluations,
                                    factorisation=defaults.factorisation, rank_menu=defaults.rank_menu,
                                    target=args.target, test_utterances=test_utterances,
                                    timing_utterances=args.timing_utterances, repeats=args.repeats)}
    payload.update(run(args))
    payload["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    _write(payload, args.output_dir)
    return 0


def _write(payload: dict[str, Any], output_dir: Path | None) -> None:
    write_output("headline.json", payload, output_dir)
    write_text("headline.md", markdown(payload), output_dir)
    plot(payload, output_path("headline.png", output_dir))
    print(markdown(payload))


if __name__ == "__main__":
    sys.exit(main())
