"""Training recipe: joint attention + CTC loss, Adam with warm-up and late linear decay.

A run directory holds ``last.pt`` (everything needed to resume: weights, optimiser, data order
position, random state), ``best.pt`` (the weights with the lowest dev WER so far) and
``history.jsonl`` (one line per dev evaluation). Calling :func:`train` again on the same
directory resumes from ``last.pt``; with the same seed the result is the same as an
uninterrupted run.

A factorised model (from ``shrinkml search``'s export) trains the same way when passed as
``init_from``: its factors are the parameters, its ranks stay fixed, and ``last.pt`` /
``best.pt`` are factorised checkpoints (``last.pt`` with the optimiser and data-order state),
so a resumed run rebuilds the factorised structure from ``last.pt`` alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from asr import distributed
from asr.audio import SAMPLE_RATE
from asr.checkpoint import is_factorised, load_checkpoint, read_checkpoint, save_model
from asr.data import Batch, duration_batches, load_batch, prepare_feature_batches
from asr.distributed import Shares
from asr.evaluate import evaluate_batches
from asr.features import LogMelFrontend, SpecAugmentConfig, normalise_utterances, spec_augment
from asr.manifest import Utterance
from asr.model import ASRConfig, ASRModel
from asr.nuclear import nuclear_norm, soft_threshold
from asr.text import CharTokenizer

__all__ = ["PRECISIONS", "TrainConfig", "TrainResult", "check_device", "learning_rate", "train", "training_set_fingerprint"]


PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the run's model config is stored beside it in every checkpoint."""

    max_updates: int = 20000  # optimiser steps in the whole run
    max_batch_seconds: float = 320.0  # padded audio per batch: bounds memory and step time
    max_batch_size: int = 48  # utterances per batch at most
    learning_rate: float = 1e-3  # Adam peak learning rate
    warmup_updates: int = 500  # linear warm-up from 0: stabilises the attention's start
    decay_start: float = 0.6  # fraction of max_updates after which the rate decays linearly
    final_lr_fraction: float = 0.05  # learning rate at the last update, relative to the peak
    grad_clip: float = 5.0  # global gradient-norm clip
    label_smoothing: float = 0.1  # on the attention decoder's cross-entropy
    specaugment: SpecAugmentConfig | None = field(default_factory=SpecAugmentConfig)
    curriculum_updates: int = 2000  # early updates drawn only from short utterances
    curriculum_max_seconds: float = 3.0  # what counts as short during the curriculum
    eval_every: int = 1000  # updates between dev evaluations (and checkpoints)
    # Wall minutes between extra saves of last.pt, so that a run killed without warning (a
    # preempted machine, a session's end) loses at most this much; None: only at evaluations.
    checkpoint_minutes: float | None = 10.0
    dev_utterances: int = 300  # dev utterances decoded at each evaluation
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    device: str = "cpu"  # "cuda" (or "cuda:N") trains on a GPU; checkpoints are device-free
    # "bf16": the model's forward pass (a distillation teacher's too) runs under bfloat16
    # autocast; weights, gradients, the optimiser, features, softmaxes, losses and dev
    # evaluations stay fp32. Cost and effect on the CPU: benchmarks/results/train_precision.json.
    precision: str = "fp32"
    # Knowledge distillation from a teacher model (train(..., teacher=...)): the loss is
    # (1 - w) · joint loss + w · T² · KL(teacher ‖ student) of the next-token distributions
    # along the reference prefixes, at temperature T. 0: no teacher.
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    # Decoupled nuclear-norm decay of the LSTM matrices (asr.nuclear), for a model that loses
    # less to truncated SVD: every nuclear_every updates each singular value is lowered by
    # lr · nuclear_weight · nuclear_every. 0: off.
    nuclear_weight: float = 0.0
    nuclear_every: int = 25

    def __post_init__(self) -> None:
        check_device(self.device)
        if not (math.isfinite(self.nuclear_weight) and self.nuclear_weight >= 0.0):
            raise ValueError(f"nuclear_weight must be a finite number >= 0; got {self.nuclear_weight!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        if not 0.0 <= self.distill_weight <= 1.0 or not self.distill_temperature > 0:
            raise ValueError(
                f"distill_weight must be in [0, 1] and distill_temperature > 0; got "
                f"{self.distill_weight}, {self.distill_temperature}"
            )
        for name in ("max_updates", "max_batch_size", "eval_every", "dev_utterances", "nuclear_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.max_batch_seconds <= 0:
            raise ValueError(
                f"learning_rate and max_batch_seconds must be > 0; got {self.learning_rate}, "
                f"{self.max_batch_seconds}"
            )
        if self.checkpoint_minutes is not None and not self.checkpoint_minutes > 0:
            raise ValueError(f"checkpoint_minutes must be > 0 or None; got {self.checkpoint_minutes}")
        if not 0.0 <= self.decay_start <= 1.0 or not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(
                f"decay_start and final_lr_fraction must be in [0, 1]; got {self.decay_start}, "
                f"{self.final_lr_fraction}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """Where a run stands when :func:`train` returns."""

    updates: int
    best_dev_wer: float
    best_checkpoint: Path
    last_checkpoint: Path
    seconds: float  # wall time of this call (not of earlier, resumed-from calls)


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, or a ValueError saying what is accepted and available."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'") from e
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: training runs on 'cpu' or 'cuda' devices")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch finds no CUDA GPU here; use 'cpu'")
    return parsed


def learning_rate(config: TrainConfig, update: int) -> float:
    """Learning rate at ``update`` (0-based): warm-up, plateau, linear decay."""
    peak = config.learning_rate
    if update < config.warmup_updates:
        return peak * (update + 1) / config.warmup_updates
    start = config.decay_start * config.max_updates
    if update < start:
        return peak
    progress = min((update - start) / max(config.max_updates - start, 1), 1.0)
    return peak * (1.0 - progress * (1.0 - config.final_lr_fraction))


def joint_loss(
    model: ASRModel,
    features: torch.Tensor,
    frames: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    label_smoothing: float,
    teacher: ASRModel | None = None,
    distill_weight: float = 0.0,
    temperature: float = 1.0,
    shares: Shares | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``(1 - w) · attention CE + w · CTC`` with ``w = model.config.ctc_weight``; with a
    ``teacher`` and ``distill_weight`` ``d > 0``: ``(1 - d) ·`` that ``+ d · T² ·
    KL(teacher ‖ model)`` per reference token (temperature ``T``).

    ``shares``: this process's part of a batch split over processes (:mod:`asr.distributed`);
    the per-token terms are scaled by its token share and CTC by its utterance share, so the
    processes' losses sum to the whole batch's (the returned loss is scaled; the per-term
    stats are this part's own, unscaled).
    """
    logits, encoded, lengths = model(features, frames, targets)
    loss, stats = _reference_loss(model, logits, encoded, lengths, targets, target_lengths, label_smoothing,
                                  shares)
    if teacher is None or distill_weight == 0:
        return loss, stats
    distill = distillation_loss(teacher, logits, features, frames, targets, temperature)
    stats["distill_loss"] = distill.item()
    if shares is not None:
        distill = distill * shares.tokens
    return (1 - distill_weight) * loss + distill_weight * distill, stats


def _reference_loss(
    model: ASRModel,
    logits: torch.Tensor,
    encoded: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    label_smoothing: float,
    shares: Shares | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    gold = targets[:, 1:]
    attention = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        gold.reshape(-1),
        ignore_index=CharTokenizer.blank_id,
        label_smoothing=label_smoothing,
    )
    weight = model.config.ctc_weight
    stats = {"attention_loss": attention.item()}
    if shares is not None:
        attention = attention * shares.tokens
    if weight == 0:
        return attention, stats
    log_probs = model.ctc_log_probs(encoded).transpose(0, 1)  # (T', B, V)
    ctc_targets = torch.cat([targets[i, 1 : 1 + n] for i, n in enumerate(target_lengths.tolist())])
    ctc = F.ctc_loss(
        log_probs,
        ctc_targets,
        lengths,
        target_lengths,
        blank=CharTokenizer.blank_id,
        reduction="mean",
        zero_infinity=True,
    )
    stats["ctc_loss"] = ctc.item()
    if shares is not None:
        ctc = ctc * shares.utterances
    return (1 - weight) * attention + weight * ctc, stats


def distillation_loss(
    teacher: ASRModel,
    logits: torch.Tensor,
    features: torch.Tensor,
    frames: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``T² · KL(p_teacher ‖ p_student)`` at temperature ``T``, mean over reference tokens
    (padding excluded); the teacher runs in eval mode without gradients."""
    with torch.no_grad():
        teacher_logits, _, _ = teacher(features, frames, targets)
    mask = targets[:, 1:] != CharTokenizer.blank_id
    student = torch.log_softmax(logits[mask].float() / temperature, dim=-1)  # fp32 under bf16 autocast
    target = torch.log_softmax(teacher_logits[mask].float() / temperature, dim=-1)
    kl = F.kl_div(student, target, log_target=True, reduction="batchmean")
    return kl * temperature**2


def _epoch_batches(
    utterances: Sequence[Utterance], config: TrainConfig, epoch: int, short_only: bool
) -> list[list[int]]:
    durations = [u.duration for u in utterances]
    pool = [i for i, d in enumerate(durations) if not short_only or d <= config.curriculum_max_seconds]
    if not pool:
        pool = list(range(len(durations)))
    batches = duration_batches(
        [durations[i] for i in pool],
        config.max_batch_seconds,
        config.max_batch_size,
        shuffle=True,
        seed=config.seed * 100003 + epoch * 2 + int(short_only),
    )
    return [[pool[j] for j in b] for b in batches]


def _start_from(model: ASRModel, init_from: ASRModel) -> ASRModel:
    """``model`` with ``init_from``'s weights; a factorised ``init_from`` is copied whole."""
    if not is_factorised(init_from):
        model.load_state_dict(init_from.state_dict())
        return model
    if init_from.config != model.config:
        raise ValueError(
            f"init_from was built with another model config than model_config; pass "
            f"model_config=init_from.config.\n init_from: {init_from.config}\n given: {model.config}"
        )
    return copy.deepcopy(init_from)


def _resume_factorised(
    path: Path, model_config: ASRConfig, model: ASRModel
) -> tuple[ASRModel, dict[str, Any]]:
    """The factorised model saved in ``last.pt`` and the file's raw entries (optimiser...)."""
    from shrinkml_env.compression import factorised_structure

    resumed, _, meta = load_checkpoint(path)
    if meta["asr_config"] != model_config.to_dict():
        raise ValueError(
            f"{path} was trained with a different model config; use a new run directory or the "
            f"same config.\n saved: {meta['asr_config']}\n given: {model_config.to_dict()}"
        )
    saved, given = factorised_structure(resumed), factorised_structure(model)
    if given and saved != given:
        raise ValueError(f"{path} holds a factorised model with other ranks than the one given; "
                         "use a new run directory or start from the same model")
    return resumed, torch.load(path, map_location="cpu", weights_only=True)


def training_set_fingerprint(train_set: Sequence[Utterance]) -> str:
    """``"N utterances, sha256 …"`` over the audio file names and texts, in order.

    A resumed run checks it: another set would silently change the data order and mix. File
    names rather than paths, so a corpus moved to another folder still resumes.
    """
    digest = hashlib.sha256()
    for u in train_set:
        digest.update(f"{Path(u.audio_filepath).name}\t{u.text}\n".encode())
    return f"{len(train_set)} utterances, sha256 {digest.hexdigest()[:12]}"


def train(
    model_config: ASRConfig,
    config: TrainConfig,
    train_set: Sequence[Utterance],
    dev_set: Sequence[Utterance],
    run_dir: str | os.PathLike[str],
    *,
    tokenizer: CharTokenizer | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    meta: dict[str, Any] | None = None,
    init_from: ASRModel | None = None,
    stop_at_update: int | None = None,
    stop_after_seconds: float | None = None,
    teacher: ASRModel | None = None,
) -> TrainResult:
    """Train (or resume training) a recogniser.

    Args:
        model_config: architecture; must match ``last.pt`` when resuming.
        config: optimisation settings.
        train_set: training utterances.
        dev_set: development utterances; the first ``config.dev_utterances`` are decoded.
        run_dir: where checkpoints go; an existing ``last.pt`` there is resumed.
        tokenizer: defaults to :class:`CharTokenizer`.
        progress: called after each update with ``(update, max_updates, stats)``.
        meta: facts written into every checkpoint (command line, corpus key...).
        init_from: start from these weights instead of a fresh initialisation; a factorised
            model (same ``model_config``) is trained as it is, factors and fixed ranks.
        stop_at_update: return (after saving ``last.pt``) once this many updates are done,
            leaving the run resumable; the schedule still follows ``config.max_updates``.
        stop_after_seconds: likewise, at the first update that ends after this much wall time
            (a time-boxed session: the run resumes where it stopped); that update is
            evaluated on dev like an evaluation point, so ``best.pt`` covers the last stretch.
        teacher: the model to distil from when ``config.distill_weight > 0`` (e.g. the dense
            model a factorised one was cut from); never trained, run in eval mode.

    Returns:
        A :class:`TrainResult`.
    """
    if not train_set or not dev_set:
        raise ValueError(
            f"training needs utterances in both sets; got {len(train_set)} train, {len(dev_set)} dev"
        )
    if (config.distill_weight > 0) != (teacher is not None):
        raise ValueError(
            f"distill_weight={config.distill_weight} needs a teacher model and a teacher needs "
            "distill_weight > 0; pass both or neither"
        )
    started = time.perf_counter()
    rank, world = distributed.rank_and_world()
    tokenizer = tokenizer or CharTokenizer()
    if model_config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"model vocab_size={model_config.vocab_size} but the tokenizer has "
            f"{tokenizer.vocab_size} symbols; set ASRConfig.vocab_size={tokenizer.vocab_size}"
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    torch.manual_seed(config.seed)
    model = ASRModel(model_config)
    if init_from is not None:
        model = _start_from(model, init_from)
    update, epoch, position, best_wer = 0, 0, 0, math.inf
    payload = read_checkpoint(last_path, accept_factorised=True) if last_path.exists() else None
    if payload is None and last_path.exists():
        model, payload = _resume_factorised(last_path, model_config, model)
    elif payload is not None:
        if payload["config"] != model_config.to_dict():
            raise ValueError(
                f"{last_path} was trained with a different model config; use a new run "
                f"directory or the same config.\n saved: {payload['config']}\n given: "
                f"{model_config.to_dict()}"
            )
        if is_factorised(model):
            raise ValueError(f"{last_path} holds a dense model, but the model to train is factorised; "
                             "use a new run directory")
        model.load_state_dict(payload["state_dict"])
    dense = not is_factorised(model)
    if config.nuclear_weight > 0 and not dense:
        raise ValueError(f"nuclear_weight={config.nuclear_weight} decays a dense model's LSTM matrices; "
                         "this model is factorised (its ranks are already fixed): use nuclear_weight=0")
    device = check_device(config.device)
    model = model.to(device)
    if world > 1:
        distributed.broadcast_parameters(model)
    if teacher is not None:
        teacher = copy.deepcopy(teacher).to(device).eval().requires_grad_(False)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    data_fingerprint = training_set_fingerprint(train_set)
    if payload is not None:
        state = payload["train_state"]
        if state.get("train_set", data_fingerprint) != data_fingerprint:
            raise ValueError(
                f"{last_path} was trained on another training set ({state['train_set']}) than the "
                f"one given now ({data_fingerprint}); resume with the same manifests (with the "
                "default corpus: the same splits, e.g. train_flite needs Flite), or start a new "
                "run directory with --init-from"
            )
        optimiser.load_state_dict(payload["optimiser"])
        update, epoch, position = state["update"], state["epoch"], state["position"]
        best_wer = state["best_dev_wer"]
        torch.set_rng_state(payload["rng_state"])
        if device.type == "cuda" and payload.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(payload["cuda_rng_state"], device)
        resumed_generator_state = payload["augment_rng_state"]
    else:
        resumed_generator_state = None
    frontend = LogMelFrontend().to(device)
    # Rank 0 alone evaluates and writes (asr.distributed); the others only train.
    dev_batches = prepare_feature_batches(list(dev_set)[: config.dev_utterances], frontend, tokenizer) if rank == 0 else []
    generator = torch.Generator().manual_seed(config.seed)
    if resumed_generator_state is not None:
        generator.set_state(resumed_generator_state)
    base_meta = {"train_config": config.to_dict(), "sample_rate": SAMPLE_RATE, **(meta or {})}

    def load(indices: list[int]) -> Batch | None:
        mine = distributed.shard(indices, rank, world)
        return load_batch([train_set[i] for i in mine], tokenizer) if mine else None

    def batch_shares(indices: list[int]) -> Shares | None:
        if world == 1:
            return None
        return distributed.shares([len(tokenizer.encode(train_set[i].text)) + 1 for i in indices], rank, world)

    def save(kind: str, dev_wer: float) -> None:
        nonlocal last_saved
        info = {**base_meta, "updates": update, "dev_wer": dev_wer, "best_dev_wer": best_wer}
        if kind == "best":
            save_model(best_path, model, tokenizer, info)
            return
        save_model(
            last_path,
            model,
            tokenizer,
            info,
            extra={
                "optimiser": optimiser.state_dict(),
                "train_state": {"update": update, "epoch": epoch, "position": position,
                                "best_dev_wer": best_wer, "train_set": data_fingerprint},
                "rng_state": torch.get_rng_state(),
                "cuda_rng_state": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "augment_rng_state": generator.get_state(),
            },
        )
        last_saved = time.perf_counter()

    end = config.max_updates if stop_at_update is None else min(stop_at_update, config.max_updates)
    deadline = math.inf if stop_after_seconds is None else started + stop_after_seconds
    save_interval = math.inf if config.checkpoint_minutes is None else 60.0 * config.checkpoint_minutes
    last_saved = time.perf_counter()
    model.train()
    # One loader thread decodes audio ahead of the update (soundfile releases the GIL), so a
    # GPU is not left waiting on the CPU; the batch order is the same as without it.
    with ThreadPoolExecutor(max_workers=1) as loader:
        while update < end:
            short = update < config.curriculum_updates
            batches = _epoch_batches(train_set, config, epoch, short)
            upcoming = loader.submit(load, batches[position])
            while update < end:
                batch = upcoming.result()
                part = batch_shares(batches[position])
                if position + 1 < len(batches):  # read the next batch while this one trains
                    upcoming = loader.submit(load, batches[position + 1])
                if rank > 0:
                    # Its own dropout and augmentation draws, seeded afresh at every update: only
                    # rank 0's random state is in last.pt, so a resumed run draws as an unbroken one.
                    rank_seed = (config.seed * 1_000_003 + rank) * 1_000_003 + update
                    torch.manual_seed(rank_seed)
                    generator.manual_seed(rank_seed)
                lr = learning_rate(config, update)
                for group in optimiser.param_groups:
                    group["lr"] = lr
                optimiser.zero_grad(set_to_none=True)
                stats: dict[str, float] = {}
                if batch is not None:  # None: a short batch left this process nothing
                    features, frames = frontend(batch.waveforms.to(device), batch.samples.to(device))
                    features = normalise_utterances(features, frames)
                    if config.specaugment is not None:
                        features = spec_augment(features, frames, config.specaugment, generator)
                    with torch.autocast(device.type, torch.bfloat16, enabled=config.precision == "bf16"):
                        loss, stats = joint_loss(
                            model, features, frames, batch.targets.to(device), batch.target_lengths.to(device),
                            config.label_smoothing, teacher, config.distill_weight, config.distill_temperature,
                            part,
                        )
                    loss.backward()
                    stats["loss"] = loss.item()
                if world > 1:  # sum the parts' gradients and losses; rank 0's clock decides for all
                    part_loss = stats.get("loss", 0.0)  # already scaled by this part's share
                    flag, whole_loss = distributed.sum_gradients(
                        model.parameters(), [float(rank == 0 and time.perf_counter() >= deadline), part_loss])
                    time_up = flag > 0
                    stats["loss"] = whole_loss
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimiser.step()
                update += 1
                if config.nuclear_weight > 0 and update % config.nuclear_every == 0:
                    soft_threshold(model, lr * config.nuclear_weight * config.nuclear_every)
                    if world > 1:  # the same step on every rank; rank 0's result, to the bit
                        distributed.broadcast_parameters(model)
                position += 1
                if world == 1:
                    time_up = time.perf_counter() >= deadline
                stats.update(grad_norm=grad_norm.item(), lr=lr)
                # An epoch ends with its batches, or early when the short-utterance curriculum
                # ends; the position saved below then already points at the next epoch, so a
                # resumed run draws the same batches as an uninterrupted one.
                epoch_ended = position >= len(batches) or (short and update >= config.curriculum_updates)
                if epoch_ended:
                    epoch, position = epoch + 1, 0
                out_of_time = time_up and update < end
                if out_of_time:
                    end = update  # stop here, resumably, and score what the last stretch gave
                evaluate_now = update % config.eval_every == 0 or update == config.max_updates or out_of_time
                if rank > 0:
                    if epoch_ended:
                        break
                    continue
                if not evaluate_now and (
                        (update == end and update < config.max_updates)  # interrupted: keep the place
                        or time.perf_counter() - last_saved >= save_interval):
                    save("last", math.nan)
                if evaluate_now:
                    result = evaluate_batches(model, tokenizer, dev_batches)
                    stats.update(dev_wer=result.wer, dev_cer=result.cer)
                    if dense:
                        stats["nuclear_norm"] = nuclear_norm(model)
                    if result.wer < best_wer:
                        best_wer = result.wer
                        save("best", result.wer)
                    save("last", result.wer)
                    with open(run_dir / "history.jsonl", "a", encoding="utf-8") as f:
                        f.write(json.dumps({"update": update, "epoch": epoch, **stats}) + "\n")
                if progress is not None:
                    progress(update, config.max_updates, stats)
                if epoch_ended:
                    break
    return TrainResult(
        updates=update,
        best_dev_wer=best_wer,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        seconds=time.perf_counter() - started,
    )
