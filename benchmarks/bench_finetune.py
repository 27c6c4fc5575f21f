"""Retraining after compression: uniform + fine-tuning vs RL + fine-tuning vs iterative.

At equal final size (the size the iterative run ends at):

* ``iterative``: ``shrinkml search --iterative`` (search → fine-tune → search tighter …);
* ``rl_finetuned``: one search at that size with as many evaluations as all iterative rounds
  together, then as many fine-tuning updates as all rounds together;
* ``uniform_finetuned``: every matrix at the largest common rank fraction that fits that
  size, then the same fine-tuning.

``compression`` is uncompressed compressible (LSTM-matrix) parameters ÷ compressed; WERs are
test WERs (greedy decoding). The aim: ``iterative`` at >= 5× with at most 5 % relative test-WER
increase over ``baseline_test_wer``.

Writes ``benchmarks/results/finetune.json`` (or ``--result``). ``--quick`` runs the whole
pipeline in about a minute on a tiny untrained model and the tiny corpus (machinery check
only; its numbers mean nothing) and writes into ``--out`` instead.

Usage::

    python -m benchmarks.bench_finetune --threads 2 [--agent ppo --budget 0.5 --target-size 0.2
        --evaluations 100 --finetune-updates 1000 --test-utterances 500]
    python -m benchmarks.bench_finetune --quick --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.config import SearchConfig  # noqa: E402
from agents.iterative import ASRData, IterativeConfig, default_asr_data, run_iterative, search_kit  # noqa: E402
from agents.run_dir import RunDir  # noqa: E402
from agents.search import run_search  # noqa: E402
from asr.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from asr.data import prepare_feature_batches  # noqa: E402
from asr.features import LogMelFrontend  # noqa: E402
from asr.finetune import FinetuneConfig, finetune  # noqa: E402
from benchmarks.common import RESULTS, run_metadata, write_result  # noqa: E402
from shrinkml_env.compression import (  # noqa: E402
    all_matrices,
    describe_layers,
    export_factorised,
    uniform_ranks_at_size,
)


@dataclass(frozen=True)
class BenchConfig:
    """What to compare; every arm gets the same fine-tuning updates in total."""

    target: str = "default"  # "default" or a dense ASR checkpoint
    agent: str = "ppo"
    budget: float = 0.5  # the iterative run's first budget
    target_size: float = 0.2  # 5x
    evaluations: int = 100  # per iterative round; the one-shot search gets all rounds' worth
    finetune: FinetuneConfig = FinetuneConfig(updates=1000)  # per iterative round
    wer_tolerance: float = 0.05
    max_rounds: int = 8
    test_utterances: int | None = None
    seed: int = 0


def run(config: BenchConfig, out: Path, data: ASRData) -> dict[str, Any]:
    search = SearchConfig(agent=config.agent, budget=config.budget, evaluations=config.evaluations,
                          target=config.target, test_utterances=config.test_utterances, seed=config.seed)
    iterative = run_iterative(
        IterativeConfig(search=search, target_size=config.target_size, wer_tolerance=config.wer_tolerance,
                        finetune=config.finetune, max_rounds=config.max_rounds),
        out / "iterative", data,
    )
    final = iterative.final or iterative.rounds[-1]
    rounds = [r for r in iterative.rounds if r["round"] <= final["round"]]
    size = final["size_ratio"]
    updates = sum(r["finetune_updates"] for r in rounds)
    equal_finetune = replace(config.finetune, epochs=None, updates=updates)

    start = out / "iterative" / "round-0" / "start.pt"  # the dense model the first round searched
    dense, tokenizer, _ = load_checkpoint(start)
    test_batches = prepare_feature_batches(list(data.test), LogMelFrontend(), tokenizer)
    one_shot = run_search(
        replace(search, budget=size, evaluations=config.evaluations * len(rounds), target=str(start)),
        out / "rl" / "search", search_kit(start, "one-shot", data, tokenizer, test_batches),
    )
    if one_shot.best is None:
        raise RuntimeError(f"the one-shot search found nothing within size {size}; raise --evaluations")
    rl_model = load_checkpoint(RunDir(out / "rl" / "search").model_file)[0]
    layers = describe_layers(dense, dense.compressible_layers())
    ranks, _ = uniform_ranks_at_size(all_matrices(layers), size)
    uniform_model = export_factorised(dense, layers, ranks)

    arms = {"iterative": {"compression": final["compression"], "test_wer": final["test_wer"],
                          "size_ratio": size, "finetune_updates": updates, "rounds": rounds,
                          "stop_reason": iterative.stop_reason}}
    for name, model in (("rl_finetuned", rl_model), ("uniform_finetuned", uniform_model)):
        tuned = finetune(model, tokenizer, equal_finetune, data.train, data.dev, data.test, out / name / "finetune",
                         source=name)
        arms[name] = {"compression": tuned.compression, "test_wer": tuned.test_wer,
                      "test_wer_before_finetune": tuned.test_wer_before, "size_ratio": 1 / tuned.compression,
                      "finetune_updates": tuned.updates, "ranks": tuned.ranks}
    baseline = iterative.baseline_test_wer
    for arm in arms.values():
        arm["relative_test_wer_increase"] = (arm["test_wer"] - baseline) / baseline if baseline > 0 else None
    return {
        "baseline_test_wer": baseline,
        "uniform_finetuned": arms["uniform_finetuned"],
        "rl_finetuned": arms["rl_finetuned"],
        "iterative": arms["iterative"],
        "aim_met": final["compression"] >= 5.0 and (arms["iterative"]["relative_test_wer_increase"] or 0) <= 0.05,
        "settings": {**asdict(config), "test_utterances_used": len(data.test)},
    }


def _quick(workdir: Path) -> tuple[BenchConfig, ASRData]:
    """A tiny untrained model and the tiny corpus: checks the machinery, measures nothing."""
    from asr.corpus import CorpusConfig, ensure_corpus
    from asr.manifest import read_manifest
    from asr.model import build_model
    from asr.text import CharTokenizer

    paths = ensure_corpus(CorpusConfig.tiny(), cache_dir=workdir / "corpus", workers=1)
    split = {s: read_manifest(paths.manifest(s), check_audio=False).utterances for s in ("train", "dev", "test")}
    torch.manual_seed(0)
    checkpoint = workdir / "tiny.pt"
    save_checkpoint(checkpoint, build_model("tiny"), CharTokenizer(), {"note": "untrained, for --quick"})
    data = ASRData(split["train"], split["dev"][3:], split["dev"][:3], split["test"])
    finetune_config = FinetuneConfig(updates=2, max_batch_seconds=12.0, max_batch_size=8, dev_utterances=3,
                                     warmup_updates=1)
    return BenchConfig(target=str(checkpoint), agent="random", budget=0.6, target_size=0.1, evaluations=4,
                       finetune=finetune_config, max_rounds=2), data


def main(argv: list[str] | None = None) -> int:
    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default=d.target)
    p.add_argument("--agent", default=d.agent)
    p.add_argument("--budget", type=float, default=d.budget)
    p.add_argument("--target-size", type=float, default=d.target_size)
    p.add_argument("--evaluations", type=int, default=d.evaluations)
    p.add_argument("--finetune-updates", type=int, default=d.finetune.updates)
    p.add_argument("--wer-tolerance", type=float, default=d.wer_tolerance)
    p.add_argument("--max-rounds", type=int, default=d.max_rounds)
    p.add_argument("--test-utterances", type=int)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=Path("runs/bench-finetune"), help="run directories (resumable)")
    p.add_argument("--result", type=Path, help=f"results file (default: {RESULTS / 'finetune.json'})")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny untrained model + tiny corpus (machinery check)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        workdir = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
        config, data = _quick(workdir)
        out, result_path = workdir / "runs", args.result or workdir / "finetune.json"
    else:
        config = BenchConfig(target=args.target, agent=args.agent, budget=args.budget, target_size=args.target_size,
                             evaluations=args.evaluations, finetune=FinetuneConfig(updates=args.finetune_updates),
                             wer_tolerance=args.wer_tolerance, max_rounds=args.max_rounds,
                             test_utterances=args.test_utterances, seed=args.seed)
        data, out, result_path = default_asr_data(args.test_utterances), args.out, args.result
    payload = {**run(config, out, data), "meta": run_metadata(quick=args.quick)}
    if args.quick:
        payload["aim_met"] = None  # an untrained model's WERs say nothing about the aim
    if result_path is None:
        path = write_result("finetune.json", payload)
    else:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        path = write_result(result_path.name, payload, result_path.parent)
    for name in ("uniform_finetuned", "rl_finetuned", "iterative"):
        arm = payload[name]
        print(f"{name:18s} {arm['compression']:6.2f}x  test WER {arm['test_wer']:.4f}")
    print(f"baseline test WER {payload['baseline_test_wer']:.4f}; aim met: {payload['aim_met']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
