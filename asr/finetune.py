"""Fine-tuning a compressed recogniser: the factors are trained, the ranks stay fixed.

An exported factorised model (``shrinkml search``'s ``model.pt``) is trained with the
``train-asr`` recipe (:func:`asr.train.train`: joint loss, Adam, dev evaluations, best-on-dev
kept, resumable from ``last.pt``) at a fine-tuning learning rate, without the short-utterance
curriculum. The run directory holds::

    config.json     format, FinetuneConfig, where the model came from and its fingerprint
    before.json     the starting model's dev and test WER
    last.pt         resumable state (factorised weights, optimiser, data order)
    best.pt         the weights with the lowest dev WER
    history.jsonl   one line per dev evaluation
    model.pt        best.pt with its test WER, ranks and size in ``meta``
    result.json     WERs before and after, size, updates

Rerunning on the same directory with the same settings and source resumes.

:func:`densify` writes a factorised model's effective weights ``W = U @ V`` back into the
stock architecture, so it can be searched (and factorised) again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from asr import distributed
from asr.checkpoint import load_checkpoint, save_model
from asr.data import duration_batches, prepare_feature_batches
from asr.evaluate import evaluate_batches, on_device
from asr.features import LogMelFrontend
from asr.manifest import Utterance
from asr.model import ASRModel
from asr.text import CharTokenizer
from asr.train import TrainConfig, train
from shrinkml_env.config_fields import check_known_fields

__all__ = [
    "FORMAT",
    "FinetuneConfig",
    "FinetuneResult",
    "compressible_parameter_counts",
    "densify",
    "factorised_ranks",
    "finetune",
    "model_fingerprint",
    "resolve_source",
]

FORMAT = "shrinkml-finetune/1"
# how the arithmetic runs, not what is trained: a run may resume under other settings
_MAY_CHANGE_ON_RESUME = ("threads", "precision")


@dataclass(frozen=True)
class FinetuneConfig:
    """How long and how fast to fine-tune; exactly one of ``epochs`` and ``updates``."""

    epochs: float | None = None  # passes over the training set (fractions allowed)
    updates: int | None = None  # or a fixed number of optimiser steps
    learning_rate: float = 3e-4  # a third of train-asr's peak: the start is already trained
    warmup_updates: int = 50  # short warm-up: Adam's moments start from zero
    final_lr_fraction: float = 0.05  # linear decay from the end of warm-up to this fraction
    max_batch_seconds: float = 320.0  # padded audio per batch, as in train-asr
    max_batch_size: int = 48
    eval_every: int | None = None  # updates between dev evaluations; None: 5 per run
    dev_utterances: int = 300  # dev utterances decoded per evaluation
    # SpecAugment off: on the shipped model (whose training ended without it) 240-270 updates with
    # it left every arm worse than without (benchmarks/results/finetune_specaugment.json)
    specaugment: bool = False
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    device: str = "cpu"  # "cuda" fine-tunes on a GPU
    # Distillation from the dense model (finetune(..., teacher=...)): the weight of
    # T² · KL(teacher ‖ student) beside the reference loss; 0: reference loss only.
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    # "bf16": forward pass under bfloat16 autocast, as train-asr's --precision (asr.train.PRECISIONS)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.updates is None):
            raise ValueError(
                f"give exactly one of epochs and updates; got epochs={self.epochs!r}, updates={self.updates!r}"
            )
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float))
            or not math.isfinite(self.epochs) or self.epochs <= 0
        ):
            raise ValueError(f"epochs must be a number > 0; got {self.epochs!r}")
        for name in ("updates", "eval_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"FinetuneConfig.{name} must be an integer >= 1 or None; got {value!r}")
        if self.warmup_updates < 0:
            raise ValueError(f"warmup_updates must be >= 0; got {self.warmup_updates}")
        self.train_config(1)  # TrainConfig validates the rest and names the bad field

    def total_updates(self, batches_per_epoch: int) -> int:
        """Optimiser steps of the whole run."""
        if self.updates is not None:
            return self.updates
        return max(1, math.ceil(self.epochs * batches_per_epoch))

    def train_config(self, max_updates: int) -> TrainConfig:
        """The :class:`~asr.train.TrainConfig` of a run of ``max_updates`` steps."""
        from asr.features import SpecAugmentConfig

        return TrainConfig(
            max_updates=max_updates,
            max_batch_seconds=self.max_batch_seconds,
            max_batch_size=self.max_batch_size,
            learning_rate=self.learning_rate,
            warmup_updates=self.warmup_updates,
            decay_start=0.0,
            final_lr_fraction=self.final_lr_fraction,
            specaugment=SpecAugmentConfig() if self.specaugment else None,
            curriculum_updates=0,
            eval_every=self.eval_every or max(1, math.ceil(max_updates / 5)),
            dev_utterances=self.dev_utterances,
            seed=self.seed,
            threads=self.threads,
            device=self.device,
            distill_weight=self.distill_weight,
            distill_temperature=self.distill_temperature,
            precision=self.precision,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        check_known_fields(cls, data, "FinetuneConfig")
        return cls(**data)


@dataclass(frozen=True)
class FinetuneResult:
    """A fine-tuning run's outcome (``result.json``); WERs are fractions.

    ``test_wer`` and ``model_file`` are None while the run is unfinished
    (``stop_at_update``).
    """

    run_dir: Path
    updates: int
    total_updates: int
    dev_wer_before: float
    best_dev_wer: float
    test_wer_before: float
    test_wer: float | None
    compressible_parameters: int
    dense_compressible_parameters: int
    ranks: dict[str, int]
    model_file: Path | None
    seconds: float

    @property
    def finished(self) -> bool:
        return self.test_wer is not None

    @property
    def compression(self) -> float:
        """Uncompressed compressible parameters ÷ compressed."""
        return self.dense_compressible_parameters / self.compressible_parameters

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(run_dir=str(self.run_dir), model_file=None if self.model_file is None else str(self.model_file),
                    size_ratio=1.0 / self.compression, compression=self.compression)
        return data


def resolve_source(path: str | os.PathLike[str]) -> Path:
    """The model file named by a checkpoint path or a run directory.

    A directory means its ``model.pt`` (a search's export or a fine-tuning result), else its
    ``best.pt`` (a training run).

    Raises:
        FileNotFoundError: nothing usable at ``path``.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.pt", "best.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(
            f"{str(path)!r} holds neither model.pt (a finished search or fine-tuning run) nor best.pt "
            "(a training run); pass a checkpoint file or a finished run directory"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is neither a checkpoint file nor a run directory")
    return path


def compressible_parameter_counts(model: ASRModel) -> tuple[int, int]:
    """``(now, dense)`` parameters of the LSTM weight matrices (biases excluded).

    A factorised matrix counts ``r * (m + n)`` now and ``m * n`` dense; the ratio is the
    search's size ratio.
    """
    from shrinkml_env.compression.factorised import FactorisedModule

    now = dense = 0
    for path in model.compressible_layers():
        module = model.get_submodule(path)
        ranks = module.ranks if isinstance(module, FactorisedModule) else {}
        for name, param in module.named_parameters(recurse=False):
            if not name.startswith("weight"):
                continue
            now += param.numel()
            base, _, part = name.rpartition("_")
            if base not in ranks:
                dense += param.numel()
            elif part == "u":
                dense += param.shape[0] * getattr(module, f"{base}_v").shape[1]
    return now, dense


def factorised_ranks(model: ASRModel) -> dict[str, int]:
    """Rank of every factorised matrix, by matrix key (``"encoder.0.weight_ih_l0"``)."""
    from shrinkml_env.compression import factorised_structure

    return {f"{path}.{name}": rank for path, record in factorised_structure(model).items()
            for name, rank in record["config"]["ranks"].items()}


def densify(model: ASRModel) -> ASRModel:
    """A stock (dense-architecture) copy of ``model`` holding its effective weights ``U @ V``.

    Returns a dense model unchanged in function (up to float rounding) that
    :func:`~shrinkml_env.compression.describe_layers` and the search can work on; its
    matrices have at most the factorised ranks.
    """
    from shrinkml_env.compression import factorised_structure

    dense = ASRModel(model.config)
    structure = factorised_structure(model)
    state = {k: v for k, v in model.state_dict().items()
             if not any(k.startswith(f"{path}.") for path in structure)}
    for path in structure:
        module = model.get_submodule(path)
        for name, _ in dense.get_submodule(path).named_parameters(recurse=False):
            value = module.dense_matrix(name) if name in module.ranks else getattr(module, name)
            state[f"{path}.{name}"] = value.detach()
    dense.load_state_dict(state, strict=True)
    return dense.to(next(model.parameters()).device).train(model.training)


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of every weight (and their names), to tell one starting model from another."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def finetune(
    model: ASRModel,
    tokenizer: CharTokenizer,
    config: FinetuneConfig,
    train_set: Sequence[Utterance],
    dev_set: Sequence[Utterance],
    test_set: Sequence[Utterance],
    run_dir: str | os.PathLike[str],
    *,
    source: str = "",
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    stop_at_update: int | None = None,
    teacher: ASRModel | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` (factorised or dense; it is not modified) and score it on ``test_set``.

    Args:
        model: the starting recogniser.
        tokenizer: its tokenizer.
        config: how long and how fast.
        train_set: training utterances.
        dev_set: development utterances (best-on-dev selection; the first
            ``config.dev_utterances``).
        test_set: test utterances, decoded before and after.
        run_dir: the run directory; an existing one with the same settings and source resumes.
        source: where ``model`` came from, for the record.
        progress: called after each update with ``(update, total_updates, stats)``.
        stop_at_update: return after this many updates, resumably (``test_wer`` is None).
        teacher: the dense model to distil from; required when ``config.distill_weight > 0``.

    Returns:
        A :class:`FinetuneResult`, also written to ``run_dir/result.json`` once finished.

    Raises:
        ValueError: an empty split, or ``run_dir`` holds a run with other settings or
            another starting model.
    """
    if not isinstance(model, ASRModel):
        raise TypeError(f"finetune takes an ASRModel; got {type(model).__name__}")
    for name, split in (("train", train_set), ("dev", dev_set), ("test", test_set)):
        if not split:
            raise ValueError(f"fine-tuning needs {name} utterances; got none")
    started = time.perf_counter()
    run_dir = Path(run_dir)
    # Under torchrun (asr.distributed) every process trains; rank 0 alone decodes and writes.
    rank, _ = distributed.rank_and_world()
    durations = [u.duration for u in train_set]
    per_epoch = len(duration_batches(durations, config.max_batch_seconds, config.max_batch_size, shuffle=False))
    total = config.total_updates(per_epoch)
    if rank == 0:
        _prepare_run_dir(run_dir, config, model, source)
        test_batches = prepare_feature_batches(list(test_set), LogMelFrontend(), tokenizer)
        before = _read_json(run_dir / "before.json")
        if before is None:
            dev_batches = prepare_feature_batches(list(dev_set)[: config.dev_utterances], LogMelFrontend(), tokenizer)
            moved = on_device(model, config.device)
            before = {"dev_wer": evaluate_batches(moved, tokenizer, dev_batches).wer,
                      "test_wer": evaluate_batches(moved, tokenizer, test_batches).wer}
            del moved
            _write_json(run_dir / "before.json", before)
    distributed.barrier()
    if rank > 0:
        before = _read_json(run_dir / "before.json")
    outcome = train(
        model.config, config.train_config(total), train_set, dev_set, run_dir,
        tokenizer=tokenizer, progress=progress, init_from=model, stop_at_update=stop_at_update,
        meta={"finetune_source": source}, teacher=teacher,
    )
    now, dense = compressible_parameter_counts(model)
    result = FinetuneResult(
        run_dir=run_dir, updates=outcome.updates, total_updates=total, dev_wer_before=before["dev_wer"],
        best_dev_wer=outcome.best_dev_wer, test_wer_before=before["test_wer"], test_wer=None,
        compressible_parameters=now, dense_compressible_parameters=dense, ranks=factorised_ranks(model),
        model_file=None, seconds=time.perf_counter() - started,
    )
    if outcome.updates < total or rank > 0:
        return result
    best, _, meta = load_checkpoint(outcome.best_checkpoint)
    test_wer = evaluate_batches(on_device(best, config.device), tokenizer, test_batches).wer
    model_file = run_dir / "model.pt"
    result = replace(result, test_wer=test_wer, model_file=model_file)
    keep = {k: v for k, v in meta.items() if k not in ("asr_config", "tokenizer")}
    save_model(model_file, best, tokenizer, {**keep, **_jsonable(result.to_dict()), "finetune_config": config.to_dict()})
    _write_json(run_dir / "result.json", {**result.to_dict(), "config": config.to_dict(), "source": source})
    return result


def _prepare_run_dir(run_dir: Path, config: FinetuneConfig, model: ASRModel, source: str) -> None:
    identity = {"format": FORMAT, "config": config.to_dict(), "source": source,
                "fingerprint": model_fingerprint(model)}
    stored = _read_json(run_dir / "config.json")
    if stored is not None:
        if stored.get("format") != FORMAT:
            raise ValueError(f"{run_dir / 'config.json'} is not a fine-tuning config (format {stored.get('format')!r})")
        mine = {k: v for k, v in config.to_dict().items() if k not in _MAY_CHANGE_ON_RESUME}
        theirs = {k: v for k, v in stored["config"].items() if k not in _MAY_CHANGE_ON_RESUME}
        changed = [f"{k}: {theirs.get(k)!r} != {v!r}" for k, v in mine.items() if theirs.get(k) != v]
        if changed:
            raise ValueError(f"run directory {str(run_dir)!r} holds a fine-tuning run with other settings "
                             f"({'; '.join(changed)}); rerun with the same settings to resume, or choose another --out")
        if stored.get("fingerprint") != identity["fingerprint"]:
            raise ValueError(f"run directory {str(run_dir)!r} fine-tunes another model ({stored.get('source')!r}); "
                             "choose another --out")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"{str(run_dir)!r} exists and is not a fine-tuning run directory (no config.json); "
                         "choose an empty or new folder for --out")
    _write_json(run_dir / "config.json", identity)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data))


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the run directory is damaged") from e


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
