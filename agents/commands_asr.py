"""``shrinkml train-asr``, ``shrinkml evaluate`` and ``shrinkml data …``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from asr.default import NAMED_SPLITS

__all__ = ["register"]


def _progress_bar(desc: str, unit: str = "it"):
    bar: dict[str, tqdm] = {}

    def update(done: int, total: int | None, stats: dict | None = None) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
        b = bar["bar"]
        if b.total != total:  # a time-boxed run sizes its schedule after timing the first updates
            b.total = total
        b.update(done - b.n)
        if stats:
            shown = {k: f"{v:.3g}" for k, v in stats.items() if k in ("loss", "dev_wer", "lr")}
            b.set_postfix(shown, refresh=False)
        if total is not None and done >= total:
            b.close()

    return update


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-asr", help="train (or resume) an LSTM attention recogniser")
    p.add_argument("--preset", default="default", help="model preset: tiny, default or large")
    p.add_argument("--run-dir", type=Path, default=Path("runs/asr-default"), help="checkpoints go here; an existing last.pt is resumed")
    p.add_argument("--train-manifest", type=Path, action="append",
                   help="training manifest; repeat it to train on several (default: the synthetic corpus' "
                        "train and train_extra splits, and its train_flite split where Flite is installed)")
    p.add_argument("--dev-manifest", type=Path, help="dev manifest (default: the synthetic corpus' dev split)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--max-updates", type=int, help="schedule length in updates (default: 20000)")
    length.add_argument("--minutes", type=float,
                        help="train for this long: time the first updates, then size the schedule so "
                             "the rate's decay ends on time (asr.timebox)")
    p.add_argument("--stop-at", type=int, help="stop (resumably) after this many updates")
    p.add_argument("--max-minutes", type=float, help="stop (resumably) after this much wall time")
    p.add_argument("--batch-seconds", type=float, default=320.0, help="padded audio seconds per batch")
    p.add_argument("--batch-size", type=int, default=48, help="utterances per batch at most (raise it with --batch-seconds on a GPU)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--decay-start", type=float, default=0.6,
                   help="fraction of --max-updates after which the rate decays linearly (default: %(default)s)")
    p.add_argument("--ctc-weight", type=float, help="override the preset's CTC loss weight")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="also save last.pt after this many wall minutes without a save, so a run killed "
                        "without warning loses at most that much; 0: only at evaluations (default: %(default)s)")
    p.add_argument("--dev-utterances", type=int, default=300, help="dev utterances decoded per evaluation")
    p.add_argument("--curriculum-updates", type=int, default=2000, help="early updates drawn from short utterances only")
    p.add_argument("--curriculum-seconds", type=float, default=3.0, help="longest utterance during the curriculum")
    p.add_argument("--no-specaugment", action="store_true", help="train without SpecAugment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (default: %(default)s)")
    add_precision_argument(p)
    p.add_argument("--nuclear-weight", type=float, default=0.0,
                   help="decoupled nuclear-norm decay of the LSTM matrices, for a model that loses less to "
                        "truncated SVD: each singular value is lowered by lr x this per update (asr.nuclear); "
                        "0: off (default: %(default)s)")
    p.add_argument("--nuclear-every", type=int, default=25,
                   help="updates between the nuclear-norm decay's SVD steps (default: %(default)s)")
    p.add_argument("--init-from", type=Path,
                   help="start a new run from this checkpoint's weights (same preset) instead of a random init")
    p.set_defaults(handler=_train_asr)

    p = sub.add_parser("evaluate", help="WER/CER of a checkpoint on a split or manifest")
    p.add_argument("--checkpoint", type=Path, help="ASR checkpoint (default: the shipped model)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--split", default="test", choices=NAMED_SPLITS)
    where.add_argument("--manifest", type=Path, help="any NeMo-style JSON-lines manifest")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--beam", type=int, default=0, help="beam size (0: greedy decoding)")
    p.add_argument("--ctc-weight", type=float, default=None,
                   help="with --beam: joint CTC/attention beam search with this CTC weight (e.g. 0.3)")
    p.add_argument("--ctc-only", action="store_true",
                   help="decode with the CTC head's best path alone (no attention decoder)")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_evaluate)

    p = sub.add_parser("package-model", help="store a checkpoint compactly (float16) for shipping")
    p.add_argument("checkpoint", type=Path, help="e.g. RUN_DIR/best.pt")
    p.add_argument("--out", type=Path, required=True, help="destination, e.g. asr/pretrained/default.pt")
    p.set_defaults(handler=_package_model)

    p = sub.add_parser("data", help="prepare speech data")
    data = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    s = data.add_parser("synth", help="generate the default synthetic corpus (offline, espeak-ng)")
    s.add_argument("--cache-dir", type=Path, help="where corpora are cached (default: $SHRINKML_CACHE or ~/.cache/shrinkml)")
    s.add_argument("--tiny", action="store_true", help="the tiny test corpus instead of the default")
    s.add_argument("--workers", type=int, help="synthesis processes (default: all cores)")
    s.add_argument("--splits", help="comma-separated splits to make, e.g. train,dev (default: all that can "
                                    "be made here)")
    s.set_defaults(handler=_synth)
    lib = data.add_parser("librispeech", help="manifest for a LibriSpeech split folder")
    lib.add_argument("path", type=Path, help="e.g. LibriSpeech/test-clean")
    lib.add_argument("--out", type=Path, required=True, help="manifest file to write")
    lib.set_defaults(handler=_librispeech)


# asr.train.PRECISIONS, spelt out so that the command line starts without importing torch
# (tests/test_agents_cli.py checks that the two agree)
PRECISION_CHOICES = ("fp32", "bf16")


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    """``--precision``, shared by ``train-asr`` and ``finetune``."""
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                   help="bf16: forward pass and loss under bfloat16 autocast, weights and optimiser in "
                        "fp32; 1.28x faster per update on this project's CPU "
                        "(benchmarks/results/train_precision.json) (default: %(default)s)")


def _train_asr(args: argparse.Namespace) -> int:
    from asr import distributed

    with distributed.process_group_from_environment(args.device) as (rank, world, device):
        return _train_asr_process(args, rank, world, device)


def _train_asr_process(args: argparse.Namespace, rank: int, world: int, device: str) -> int:
    """One process of a training run: the only one, or one of ``world`` under torchrun."""
    from asr import distributed
    from asr.default import split_manifest, training_manifests
    from asr.features import SpecAugmentConfig
    from asr.manifest import read_manifest
    from asr.model import PRESETS
    from asr.train import TrainConfig, train

    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; accepted: {', '.join(PRESETS)}")
    overrides = {} if args.ctc_weight is None else {"ctc_weight": args.ctc_weight}
    model_config = PRESETS[args.preset].__class__(**{**PRESETS[args.preset].to_dict(), **overrides})
    config = TrainConfig(
        max_updates=TrainConfig.max_updates if args.max_updates is None else args.max_updates,
        max_batch_seconds=args.batch_seconds,
        max_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_updates=args.warmup,
        decay_start=args.decay_start,
        eval_every=args.eval_every,
        checkpoint_minutes=args.checkpoint_minutes or None,
        precision=args.precision,
        nuclear_weight=args.nuclear_weight,
        nuclear_every=args.nuclear_every,
        dev_utterances=args.dev_utterances,
        curriculum_updates=args.curriculum_updates,
        curriculum_max_seconds=args.curriculum_seconds,
        specaugment=None if args.no_specaugment else SpecAugmentConfig(),
        seed=args.seed,
        threads=args.threads,
        device=device,
    )
    init_from = None
    if args.init_from is not None:
        from asr.checkpoint import load_checkpoint

        init_from = load_checkpoint(args.init_from)[0]
        if init_from.config != model_config:
            raise ValueError(f"--init-from {args.init_from} holds a model of another config than preset "
                             f"{args.preset!r}; give the preset (and --ctc-weight) it was trained with")
    # Rank 0 makes the default corpus if it is missing and chooses the data for every process.
    train_paths, dev_path = distributed.run_on_rank_zero(lambda: (
        args.train_manifest or training_manifests(_progress_bar("synthesising corpus", "utt")),
        args.dev_manifest or split_manifest("dev"),
    ))
    resolved = [path.resolve() for path in train_paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"--train-manifest names a manifest twice in {[str(p) for p in train_paths]}; "
                         "give each once (to weight one more, write a manifest that repeats its lines)")
    train_sets = [read_manifest(path, check_audio=False) for path in train_paths]
    dev_set = read_manifest(dev_path, check_audio=False)
    for m in (*train_sets, dev_set):
        if m.skipped:
            print(f"{m.path}: skipped {len(m.skipped)} bad lines (first: {m.skipped[0]})", file=sys.stderr)
    train_utterances = [u for m in train_sets for u in m.utterances]
    common = dict(
        progress=_progress_bar("training", "upd"),
        meta={"command": " ".join(sys.argv), "processes": world, "train_manifests": [str(p) for p in train_paths],
              "train_utterances": len(train_utterances),
              **({} if args.init_from is None else {"init_from": str(args.init_from)})},
        init_from=init_from,
    )
    if args.minutes is not None:
        if args.stop_at is not None or args.max_minutes is not None:
            raise ValueError("--minutes sets its own stop; drop --stop-at / --max-minutes")
        from asr.timebox import TimeBox, train_in_minutes

        result, plan = train_in_minutes(model_config, config, train_utterances, dev_set.utterances,
                                        args.run_dir, TimeBox(args.minutes), **common)
        if rank == 0:
            print(f"timed {plan.timed_updates} updates at {plan.seconds_per_update:.3f} s each; "
                  f"schedule: {plan.max_updates} updates (plan in {args.run_dir / 'timebox.json'})")
    else:
        result = train(
            model_config, config, train_utterances, dev_set.utterances, args.run_dir,
            stop_at_update=args.stop_at,
            stop_after_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
            **common,
        )
    if rank == 0:
        print(
            f"{result.updates} updates; best dev WER {result.best_dev_wer:.4f}; "
            f"best: {result.best_checkpoint}; last: {result.last_checkpoint}"
        )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_checkpoint
    from asr.data import prepare_feature_batches
    from asr.decoding import BeamConfig, CTCBestPath
    from asr.default import default_checkpoint, load_split
    from asr.evaluate import evaluate_batches
    from asr.features import LogMelFrontend
    from asr.joint_decoding import JointConfig
    from asr.manifest import read_manifest
    from asr.train import check_device

    checkpoint = args.checkpoint or default_checkpoint()
    model, tokenizer, _ = load_checkpoint(checkpoint, device=check_device(args.device))
    if args.manifest is not None:
        manifest = read_manifest(args.manifest)
        utterances, source = manifest.utterances, str(args.manifest)
    else:
        utterances, source = load_split(args.split, _progress_bar("synthesising corpus", "utt")), args.split
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1; got {args.limit}")
        utterances = utterances[: args.limit]
    if not utterances:
        raise ValueError(f"{source} holds no readable utterances")
    started = time.perf_counter()
    batches = prepare_feature_batches(utterances, LogMelFrontend(), tokenizer)
    feature_seconds = time.perf_counter() - started
    if args.ctc_only and (args.beam or args.ctc_weight is not None):
        raise ValueError("--ctc-only decodes the CTC head's best path, with no beam: drop --beam / --ctc-weight")
    if args.ctc_weight is not None and not args.beam:
        raise ValueError(f"--ctc-weight {args.ctc_weight} needs --beam N (N >= 1): it weighs the beam search")
    decoder: BeamConfig | JointConfig | CTCBestPath | None
    if args.ctc_only:
        decoder, decoding = CTCBestPath(), "ctc-best-path"
    elif args.beam and args.ctc_weight is not None:
        decoder = JointConfig(beam_size=args.beam, ctc_weight=args.ctc_weight)
        decoding = f"joint-beam{args.beam}-ctc{args.ctc_weight:g}"
    else:
        decoder = BeamConfig(beam_size=args.beam) if args.beam else None
        decoding = f"beam{args.beam}" if args.beam else "greedy"
    result = evaluate_batches(model, tokenizer, batches, decoder, _progress_bar("decoding", "utt"))
    report = {
        "checkpoint": str(checkpoint),
        "data": source,
        "decoding": decoding,
        "wer": result.wer,
        "cer": result.cer,
        "short_fraction": result.short_fraction(),
        "utterances": result.rates.utterances,
        "seconds": result.seconds,
        "feature_seconds": feature_seconds,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{source}: WER {result.wer:.4f}  CER {result.cer:.4f}  over {report['utterances']} "
            f"utterances; {report['short_fraction']:.1%} decoded to under half the reference's "
            f"words; decoding {result.seconds:.2f} s ({report['decoding']})"
        )
    return 0


def _package_model(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_checkpoint, save_checkpoint

    model, tokenizer, meta = load_checkpoint(args.checkpoint)
    save_checkpoint(args.out, model, tokenizer, {**meta, "packaged_from": str(args.checkpoint)}, half=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, float16)")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from asr.corpus import CorpusConfig, ensure_corpus

    config = CorpusConfig.tiny() if args.tiny else CorpusConfig()
    splits = None if args.splits is None else [name.strip() for name in args.splits.split(",")]
    paths = ensure_corpus(config, cache_dir=args.cache_dir, progress=_progress_bar("synthesising", "utt"),
                          workers=args.workers, splits=splits)
    print(paths.root)
    return 0


def _librispeech(args: argparse.Namespace) -> int:
    from asr.corpus import librispeech_to_manifest

    count = librispeech_to_manifest(args.path, args.out)
    print(f"wrote {count} utterances to {args.out}")
    return 0
