"""Retraining after compression: uniform + fine-tuning vs RL + fine-tuning vs iterative.

At equal final size (the size the iterative run ends at):

* ``iterative``: ``shrinkml search --iterative`` (search → fine-tune → search tighter …);
* ``rl_finetuned``: one search at that size with as many evaluations as all iterative rounds
  together, then as many fine-tuning updates as all rounds together;
* ``uniform_finetuned``: every matrix at the largest common rank fraction that fits that
  size, then the same fine-tuning;
* ``dense_finetuned``: the uncompressed model fine-tuned for the same updates, the control
  that tells a compression-specific gain from plain extra training of an undertrained model.

The arms can also run as separate processes (``--arm NAME --result PART.json``, e.g. side by
side on one GPU) and be combined with ``--merge``; the one-shot arms then take the target size
and the updates and evaluations of the planned rounds (every round landing on its budget), and
the merged file records each arm's size and updates so that any mismatch shows.

``compression`` is uncompressed compressible (LSTM-matrix) parameters ÷ compressed; WERs are
test WERs (greedy decoding). The aim: ``iterative`` at >= 5× with at most 5 % relative test-WER
increase over ``baseline_test_wer``.

Writes ``benchmarks/results/finetune.json`` (or ``--result``). ``--quick`` runs the whole
pipeline in about a minute on a tiny untrained model and the tiny corpus (machinery check
only; its numbers mean nothing) and writes into ``--out`` instead.

The committed ``finetune.json`` came from the four arms side by side on one H200 (its ``note``
and ``settings`` give the exact command); ``finetune_specaugment.json`` is the same with
SpecAugment during fine-tuning, the evidence for fine-tuning without it.

Usage::

    python -m benchmarks.bench_finetune --threads 2 [--agent ppo --budget 0.5 --target-size 0.2
        --evaluations 100 --finetune-updates 1000 --test-utterances 500]
    python -m benchmarks.bench_finetune --quick --threads 1
    python -m benchmarks.bench_finetune --arm iterative --result parts/iterative.json --device cuda …
    python -m benchmarks.bench_finetune --merge parts/*.json
"""

from __future__ import annotations

import argparse
import json
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
from asr.default import default_checkpoint  # noqa: E402
from asr.evaluate import evaluate_batches, on_device  # noqa: E402
from asr.features import LogMelFrontend  # noqa: E402
from asr.finetune import FinetuneConfig, finetune  # noqa: E402
from benchmarks.common import RESULTS, run_metadata, write_result  # noqa: E402
from shrinkml_env.compression import (  # noqa: E402
    all_matrices,
    describe_layers,
    export_factorised,
    uniform_ranks_at_size,
)

ARMS = ("iterative", "rl_finetuned", "uniform_finetuned", "dense_finetuned")


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
    budget_factor: float = 0.7
    max_rounds: int = 8
    rank_menu: str = "linear8"
    test_utterances: int | None = None
    seed: int = 0

    def search(self) -> SearchConfig:
        return SearchConfig(agent=self.agent, budget=self.budget, evaluations=self.evaluations, target=self.target,
                            rank_menu=self.rank_menu, test_utterances=self.test_utterances, seed=self.seed,
                            score="wer")  # measured so; its kits score WER

    def iterative(self) -> IterativeConfig:
        return IterativeConfig(search=self.search(), target_size=self.target_size, wer_tolerance=self.wer_tolerance,
                               finetune=self.finetune, budget_factor=self.budget_factor, max_rounds=self.max_rounds)

    def planned_rounds(self) -> int:
        """Rounds the iterative run takes when every round lands on its budget (its most, short of the tolerance)."""
        budget, rounds = self.budget, 1
        while budget > self.target_size * (1 + 1e-9) and rounds < self.max_rounds:
            budget, rounds = max(self.target_size, budget * self.budget_factor), rounds + 1
        return rounds


def run(config: BenchConfig, out: Path, data: ASRData) -> dict[str, Any]:
    """All four arms in one process: the one-shot arms at the size the iterative run ends at."""
    iterative = run_arm("iterative", config, out, data)
    arm = iterative["result"]
    size, updates, evaluations = arm["size_ratio"], arm["finetune_updates"], arm["evaluations"]
    parts = [iterative] + [run_arm(name, config, out, data, size=size, updates=updates, evaluations=evaluations,
                                   baseline=iterative["baseline_test_wer"]) for name in ARMS[1:]]
    return merge_arms(parts)


def run_arm(name: str, config: BenchConfig, out: Path, data: ASRData, *, size: float | None = None,
            updates: int | None = None, evaluations: int | None = None,
            baseline: float | None = None) -> dict[str, Any]:
    """One arm; the one-shot arms default to the target size and the planned rounds' updates and evaluations.

    Returns the arm's record with ``baseline_test_wer`` (the dense model's, decoded here unless
    ``baseline`` gives it: the single-process run passes the iterative arm's).
    """
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; choose one of {', '.join(ARMS)}")
    settings = {**asdict(config), "test_utterances_used": len(data.test)}
    if name == "iterative":
        result = run_iterative(config.iterative(), out / "iterative", data)
        if not result.rounds:
            raise RuntimeError(f"the iterative run finished no round (stop reason {result.stop_reason!r}): its first "
                               f"search found nothing within budget {config.budget}; raise --evaluations")
        final = result.final or result.rounds[-1]
        rounds = [r for r in result.rounds if r["round"] <= final["round"]]
        arm = {"compression": final["compression"], "test_wer": final["test_wer"], "size_ratio": final["size_ratio"],
               "finetune_updates": sum(r["finetune_updates"] for r in rounds),
               "evaluations": config.evaluations * len(rounds), "rounds": rounds, "stop_reason": result.stop_reason,
               "within_tolerance": result.final is not None}
        return {"arm": name, "baseline_test_wer": result.baseline_test_wer, "result": arm, "settings": settings}
    size = config.target_size if size is None else size
    updates = config.finetune.updates * config.planned_rounds() if updates is None else updates
    evaluations = config.evaluations * config.planned_rounds() if evaluations is None else evaluations
    start = default_checkpoint() if config.target == "default" else Path(config.target)
    dense, tokenizer, _ = load_checkpoint(start)
    test_batches = prepare_feature_batches(list(data.test), LogMelFrontend(), tokenizer)
    device = config.finetune.device
    if baseline is None:
        baseline = evaluate_batches(on_device(dense, device), tokenizer, test_batches).wer
    arm: dict[str, Any] = {}
    if name == "rl_finetuned":
        search = replace(config.search(), budget=size, evaluations=evaluations, target=str(start))
        found = run_search(search, out / "rl" / "search", search_kit(start, "one-shot", data, tokenizer, test_batches,
                                                                      device=device))
        if found.best is None:
            raise RuntimeError(f"the one-shot search found nothing within size {size}; raise --evaluations")
        model = load_checkpoint(RunDir(out / "rl" / "search").model_file)[0]
        arm.update(evaluations=evaluations, search_wer=found.best.search_wer)
    elif name == "uniform_finetuned":
        layers = describe_layers(dense, dense.compressible_layers())
        model = export_factorised(dense, layers, uniform_ranks_at_size(all_matrices(layers), size)[0])
    else:
        model = dense  # the control: is the gain compression-specific, or just more training?
    tuned = finetune(model, tokenizer, replace(config.finetune, epochs=None, updates=updates), data.train, data.dev,
                     data.test, out / name / "finetune", source=name)
    arm.update(compression=tuned.compression, test_wer=tuned.test_wer, test_wer_before_finetune=tuned.test_wer_before,
               size_ratio=1 / tuned.compression, finetune_updates=tuned.updates, ranks=tuned.ranks)
    return {"arm": name, "baseline_test_wer": baseline, "result": arm, "settings": settings}


def merge_arms(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One results object from the arms' records (run together, or as separate processes).

    Raises:
        ValueError: an arm missing or given twice, arms run with other settings, or on
            models with different dense test WERs.
    """
    by_arm: dict[str, dict[str, Any]] = {}
    for part in parts:
        if part.get("arm") not in ARMS:
            raise ValueError(f"not a bench_finetune arm record (arm {part.get('arm')!r}); expected one of {ARMS}")
        if part["arm"] in by_arm:
            raise ValueError(f"arm {part['arm']!r} given twice")
        by_arm[part["arm"]] = part
    missing = [a for a in ARMS if a not in by_arm]
    if missing:
        raise ValueError(f"arms missing: {', '.join(missing)}; run each with --arm NAME first")
    settings = by_arm["iterative"]["settings"]
    for part in by_arm.values():
        if part["settings"] != settings:
            diff = sorted(k for k in settings if part["settings"].get(k) != settings[k])
            raise ValueError(f"arm {part['arm']!r} ran with other settings ({', '.join(diff)}); rerun it with the same ones")
    baselines = {round(part["baseline_test_wer"], 9) for part in by_arm.values()}
    if len(baselines) != 1:
        raise ValueError(f"the arms scored different dense models (baseline test WERs {sorted(baselines)})")
    baseline = by_arm["iterative"]["baseline_test_wer"]
    arms = {name: dict(by_arm[name]["result"]) for name in ARMS}
    for arm in arms.values():
        arm["relative_test_wer_increase"] = (arm["test_wer"] - baseline) / baseline if baseline > 0 else None
    iterative = arms["iterative"]
    updates = {name: arm["finetune_updates"] for name, arm in arms.items()}
    return {
        "baseline_test_wer": baseline,
        **arms,
        "aim_met": iterative["within_tolerance"] and iterative["compression"] >= 5.0
        and (iterative["relative_test_wer_increase"] or 0) <= 0.05,
        "equal_updates": len(set(updates.values())) == 1,
        "settings": settings,
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
    p.add_argument("--budget-factor", type=float, default=d.budget_factor)
    p.add_argument("--max-rounds", type=int, default=d.max_rounds)
    p.add_argument("--rank-menu", default=d.rank_menu)
    p.add_argument("--test-utterances", type=int)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--specaugment", action="store_true", help="fine-tune with SpecAugment (default: without)")
    p.add_argument("--device", default="cpu", help="fine-tuning and test decoding (the searches run on the CPU)")
    p.add_argument("--arm", choices=ARMS, help="run one arm only and write its record to --result (the one-shot "
                   "arms at --target-size with the planned rounds' updates and evaluations)")
    p.add_argument("--merge", type=Path, nargs="+", metavar="ARM_JSON",
                   help="combine the four arms' records into one results file and exit")
    p.add_argument("--out", type=Path, default=Path("runs/bench-finetune"), help="run directories (resumable)")
    p.add_argument("--result", type=Path, help=f"results file (default: {RESULTS / 'finetune.json'})")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny untrained model + tiny corpus (machinery check)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.merge:
        parts = [json.loads(path.read_text(encoding="utf-8")) for path in args.merge]
        quick = any(part.get("meta", {}).get("quick") for part in parts)
        payload = {**merge_arms(parts), "meta": run_metadata(quick=quick, arms={p["arm"]: p.get("meta") for p in parts})}
        return _finish(payload, args.result, quick)
    if args.quick:
        workdir = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
        config, data = _quick(workdir)
        config = replace(config, finetune=replace(config.finetune, device=args.device))
        out, result_path = workdir / "runs", args.result or workdir / "finetune.json"
    else:
        finetune_config = FinetuneConfig(updates=args.finetune_updates, device=args.device,
                                         specaugment=args.specaugment)
        config = BenchConfig(target=args.target, agent=args.agent, budget=args.budget, target_size=args.target_size,
                             evaluations=args.evaluations, finetune=finetune_config, wer_tolerance=args.wer_tolerance,
                             budget_factor=args.budget_factor, max_rounds=args.max_rounds, rank_menu=args.rank_menu,
                             test_utterances=args.test_utterances, seed=args.seed)
        data, out, result_path = default_asr_data(args.test_utterances), args.out, args.result
    if args.arm:
        if result_path is None:
            p.error("--arm needs --result FILE for the arm's record (merge the four with --merge)")
        part = {**run_arm(args.arm, config, out, data), "meta": run_metadata(quick=args.quick)}
        write_result(result_path.name, part, result_path.parent)
        arm = part["result"]
        print(f"{args.arm:18s} {arm['compression']:6.2f}x  test WER {arm['test_wer']:.4f}; wrote {result_path}")
        return 0
    return _finish({**run(config, out, data), "meta": run_metadata(quick=args.quick)}, result_path, args.quick)


def _finish(payload: dict[str, Any], result_path: Path | None, quick: bool) -> int:
    if quick:
        payload["aim_met"] = None  # an untrained model's WERs say nothing about the aim
    if result_path is None:
        path = write_result("finetune.json", payload)
    else:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        path = write_result(result_path.name, payload, result_path.parent)
    for name in ARMS:
        arm = payload[name]
        print(f"{name:18s} {arm['compression']:6.2f}x  test WER {arm['test_wer']:.4f}  "
              f"({arm['finetune_updates']} updates)")
    print(f"baseline test WER {payload['baseline_test_wer']:.4f}; aim met: {payload['aim_met']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
