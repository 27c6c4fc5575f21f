"""``shrinkml finetune`` and ``shrinkml search --iterative``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_iterative_arguments", "finetune_config_from_args", "register", "run_iterative_command"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune an exported factorised model (ranks fixed, factors trained)")
    p.add_argument("source", type=Path, help="a run directory (its model.pt, or best.pt) or a checkpoint file")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--epochs", type=float, help="passes over the training set")
    length.add_argument("--updates", type=int, help="optimiser steps instead of epochs")
    p.add_argument("--out", type=Path, help="run directory (default: runs/finetune/SOURCE-…); rerunning on it resumes")
    p.add_argument("--train-manifest", type=Path, action="append",
                   help="training manifest; repeat it to train on several (default: the synthetic corpus' "
                        "training data: train, train_extra, train_flite)")
    p.add_argument("--dev-manifest", type=Path, help="dev manifest (default: the synthetic corpus' dev split)")
    p.add_argument("--test-manifest", type=Path, help="test manifest (default: the synthetic corpus' test split)")
    p.add_argument("--test-utterances", type=int, help="only the first N test utterances")
    p.add_argument("--stop-at", type=int, help="stop (resumably) after this many updates")
    p.add_argument("--seed", type=int, default=0, help="data order and augmentation seed")
    p.add_argument("--teacher", type=Path,
                   help="dense checkpoint to distil from with --distill-weight (default: the model the "
                        "source run searched: its target, or the shipped model)")
    add_finetune_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_finetune)


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """Optimisation options shared by ``finetune`` and ``search --iterative``."""
    from agents.commands_asr import add_precision_argument
    from asr.finetune import FinetuneConfig

    d = FinetuneConfig(updates=1)
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak fine-tuning learning rate")
    p.add_argument("--warmup", type=int, default=d.warmup_updates, help="warm-up updates")
    p.add_argument("--batch-seconds", type=float, default=d.max_batch_seconds, help="padded audio seconds per batch")
    p.add_argument("--eval-every", type=int, help="updates between dev evaluations (default: 5 per run)")
    p.add_argument("--dev-utterances", type=int, default=d.dev_utterances, help="dev utterances decoded per evaluation")
    p.add_argument("--specaugment", action="store_true",
                   help="fine-tune with SpecAugment (off by default: short fine-tuning of the shipped model, whose "
                        "training ended without it, does worse with it; benchmarks/results/finetune*.json)")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight,
                   help="weight of distillation from the dense model (KL of the next-token distributions) "
                        "beside the reference loss, in [0, 1] (default: %(default)s)")
    p.add_argument("--distill-temperature", type=float, default=d.distill_temperature,
                   help="softmax temperature of the distillation term (default: %(default)s)")
    if not any(a.dest == "precision" for a in p._actions):
        add_precision_argument(p)
    if not any(a.dest == "threads" for a in p._actions):
        p.add_argument("--threads", type=int, help="torch CPU threads")
    if not any(a.dest == "device" for a in p._actions):
        p.add_argument("--device", default=d.device, help="'cpu' or 'cuda' (default: %(default)s)")


def add_iterative_arguments(p: argparse.ArgumentParser) -> None:
    """``shrinkml search``'s iterative-compression options (``--budget`` is the first round's)."""
    g = p.add_argument_group("iterative compression (search → fine-tune → search tighter …)")
    g.add_argument("--iterative", action="store_true", help="alternate searches and fine-tuning")
    g.add_argument("--target-size", type=float, help="size ratio to reach (0.2 = 5x), at most --budget")
    g.add_argument("--wer-tolerance", type=float, default=0.05,
                   help="stop when the fine-tuned dev WER rises more than this, relative to the dense model")
    g.add_argument("--finetune-updates", type=int, default=1000, help="fine-tuning updates per round")
    g.add_argument("--budget-factor", type=float, default=0.7, help="next budget = this round's size x this")
    g.add_argument("--max-rounds", type=int, default=8, help="rounds at most")
    add_finetune_arguments(g)


def finetune_config_from_args(args: argparse.Namespace, *, updates: int | None = None):
    """The one place the command line becomes a :class:`~asr.finetune.FinetuneConfig`."""
    from asr.finetune import FinetuneConfig

    return FinetuneConfig(
        epochs=None if updates is not None else args.epochs,
        updates=updates if updates is not None else args.updates,
        learning_rate=args.lr,
        warmup_updates=args.warmup,
        max_batch_seconds=args.batch_seconds,
        eval_every=args.eval_every,
        dev_utterances=args.dev_utterances,
        specaugment=args.specaugment,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
        precision=args.precision,
    )


def _progress(desc: str):
    from agents.commands_asr import _progress_bar

    return _progress_bar(desc, "upd")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1; got {threads}")
        import torch

        torch.set_num_threads(threads)


def _utterances(manifest: Path | None, split: str):
    from asr.default import load_split
    from asr.manifest import read_manifest

    if manifest is None:
        return load_split(split)
    read = read_manifest(manifest, check_audio=False)
    if read.skipped:
        print(f"{manifest}: skipped {len(read.skipped)} bad lines (first: {read.skipped[0]})", file=sys.stderr)
    return read.utterances


def _training_utterances(manifests: list[Path] | None):
    """Every ``--train-manifest`` in order, or the default corpus' training data."""
    if not manifests:
        from asr.default import load_training_data

        return load_training_data()
    return [u for manifest in manifests for u in _utterances(manifest, "train")]


def _teacher(teacher: Path | None, source: Path):
    """The dense model to distil from: ``--teacher``, else the target of the search run that
    ``source`` is (``default`` or a checkpoint path), else the shipped model."""
    from asr.checkpoint import is_factorised, load_checkpoint
    from asr.default import default_checkpoint

    if teacher is None:
        config = source / "config.json" if source.is_dir() else None
        target = json.loads(config.read_text()).get("target", "default") if config and config.is_file() else "default"
        teacher = default_checkpoint() if target in ("default", "toy") else Path(target)
    model, _, _ = load_checkpoint(teacher)
    if is_factorised(model):
        raise ValueError(f"--teacher {teacher} is a factorised model; distil from a dense checkpoint")
    return model


def _finetune(args: argparse.Namespace) -> int:
    from asr import distributed

    with distributed.process_group_from_environment(args.device) as (rank, _, args.device):
        return _finetune_process(args, rank)


def _finetune_process(args: argparse.Namespace, rank: int) -> int:
    """One process of a fine-tuning run: the only one, or one of several under torchrun."""
    from asr import distributed
    from asr.checkpoint import load_checkpoint
    from asr.finetune import finetune, resolve_source

    config = finetune_config_from_args(args)
    _set_threads(args.threads)
    if args.test_utterances is not None and args.test_utterances < 1:
        raise ValueError(f"--test-utterances must be >= 1; got {args.test_utterances}")
    source = resolve_source(args.source)
    model, tokenizer, _ = load_checkpoint(source)
    name = args.source.name if args.source.is_dir() else source.stem
    length = f"{config.epochs:g}ep" if config.epochs is not None else f"{config.updates}upd"
    out = args.out or Path("runs/finetune") / f"{name}-{length}"
    # Rank 0 makes the default corpus if it is missing and chooses the data for every process.
    test, train_set, dev_set = distributed.run_on_rank_zero(lambda: (
        _utterances(args.test_manifest, "test")[: args.test_utterances],
        _training_utterances(args.train_manifest),
        _utterances(args.dev_manifest, "dev"),
    ))
    teacher = _teacher(args.teacher, args.source) if config.distill_weight > 0 else None
    result = finetune(
        model, tokenizer, config, train_set, dev_set, test, out, source=str(source), progress=None if args.json else _progress("fine-tuning"),
        stop_at_update=args.stop_at, teacher=teacher,
    )
    if rank > 0:
        return 0
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    if not result.finished:
        print(f"stopped after {result.updates} of {result.total_updates} updates; rerun to resume ({out})")
        return 0
    print(f"{result.compression:.2f}x fewer compressible parameters; test WER {result.test_wer_before:.4f} -> "
          f"{result.test_wer:.4f}; dev WER {result.dev_wer_before:.4f} -> {result.best_dev_wer:.4f}; "
          f"{result.updates} updates; model: {result.model_file}")
    return 0


def run_iterative_command(args: argparse.Namespace) -> int:
    """``shrinkml search --iterative``: the search options, plus the iterative ones."""
    from agents.commands_search import search_config_from_args, search_progress_bar
    from agents.iterative import IterativeConfig, run_iterative

    if args.target_size is None:
        raise ValueError("--iterative needs --target-size (the size ratio to reach, e.g. 0.2 for 5x)")
    search = search_config_from_args(args)
    config = IterativeConfig(
        search=search, target_size=args.target_size, wer_tolerance=args.wer_tolerance,
        finetune=finetune_config_from_args(args, updates=args.finetune_updates),
        budget_factor=args.budget_factor, max_rounds=args.max_rounds,
    )
    _set_threads(args.threads)
    out = args.out or Path("runs/search") / f"iterative-{search.agent}-t{config.target_size:g}-s{search.seed}"
    bars: dict[int, tuple] = {}

    def search_progress(k: int, progress) -> None:
        if k not in bars:
            bars[k] = search_progress_bar(search.evaluations)
        bars[k][0](progress)

    finetune_bars: dict[int, object] = {}

    def finetune_progress(k: int, update: int, total: int, stats: dict) -> None:
        if k in bars:
            bars.pop(k)[1]()
        finetune_bars.setdefault(k, _progress(f"round {k} fine-tuning"))(update, total, stats)

    def on_round(record: dict) -> None:
        print(f"round {record['round']}: size {record['size_ratio']:.3f} ({record['compression']:.2f}x), "
              f"dev WER {record['dev_wer']:.4f}, test WER {record['test_wer']:.4f}", file=sys.stderr)

    quiet = args.quiet or args.json
    try:
        result = run_iterative(config, out, search_progress=None if quiet else search_progress,
                               finetune_progress=None if quiet else finetune_progress, on_round=on_round)
    finally:
        for _, close in bars.values():
            close()
    if args.json:
        print(json.dumps({k: result.to_dict()[k] for k in ("run_dir", "stop_reason", "baseline_test_wer", "final")}))
        return 0
    print((out / "report.md").read_text(encoding="utf-8").split("\n## Config")[0])
    return 0
