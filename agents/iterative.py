"""Iterative compression: search, fine-tune, search again on the fine-tuned model, tighter.

Round ``k`` searches ranks for its start model under budget ``b_k``, exports the best
configuration truly factorised and fine-tunes it (:func:`asr.finetune.finetune`). The next
round starts from that fine-tuned model *densified* (``W = U @ V`` written back into stock
LSTMs, :func:`asr.finetune.densify`), so its SVDs decompose the effective weights, and every
exported rank is capped by the previous round's rank: a densified matrix has no more rank
than that, so the cap loses nothing and ranks only go down.

Budgets: ``b_0 = search.budget``, ``b_{k+1} = max(target_size, size_k * budget_factor)``.
The rounds stop when

1. the fine-tuned size ratio reaches ``target_size`` (``"target_reached"``);
2. the fine-tuned dev WER exceeds the dense model's by more than ``wer_tolerance``
   (relative; ``"wer_tolerance"``); the final model is then the previous round's;
3. ``max_rounds`` rounds are done (``"max_rounds"``);
4. no evaluated configuration fits a round's budget (``"nothing_within_budget"``);
5. the rank menu cannot go below the previous size (``"menu_floor"``): a budget under the
   smallest size the menu reaches is raised to it.

The tolerance is judged on dev WER; test WER is only reported, never used to decide.

Run directory::

    iterative.json         format, IterativeConfig, the dense model's dev and test WER
    rounds.jsonl           one record per finished round
    round-K/start.pt       the round's start model, dense (round 0: the target)
    round-K/search/        the round's search run directory
    round-K/compressed.pt  the chosen (capped) ranks, exported factorised
    round-K/finetune/      the fine-tuning run directory (its model.pt is the round's model)
    model.pt               the final model: the last round within the tolerance
    result.json, report.md

Rerunning the same command resumes: finished rounds are read back, an unfinished round's
search and fine-tuning resume from their own run directories.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.budget import SearchProgress
from agents.config import SearchConfig
from agents.iterative_report import iterative_report
from agents.run_dir import RunDir, append_jsonl, atomic_write_text, read_jsonl
from agents.search import run_search
from agents.targets import SearchTarget
from asr.checkpoint import is_factorised, load_checkpoint, save_checkpoint, save_factorised_asr
from asr.data import prepare_feature_batches
from asr.evaluate import evaluate_batches, on_device
from asr.features import LogMelFrontend
from asr.finetune import (
    FinetuneConfig,
    compressible_parameter_counts,
    densify,
    factorised_ranks,
    finetune,
)
from asr.manifest import Utterance
from asr.model import ASRModel
from shrinkml_env.compression import describe_layers, export_factorised
from shrinkml_env.plan import export_bank

__all__ = ["ASRData", "FORMAT", "IterativeConfig", "IterativeResult", "default_asr_data", "menu_floor",
           "relative_increase", "run_iterative", "search_kit"]

FORMAT = "shrinkml-iterative/1"
STOP_REASONS = ("target_reached", "wer_tolerance", "max_rounds", "nothing_within_budget", "menu_floor")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IterativeConfig:
    """Iterative compression settings.

    Attributes:
        search: each round's search; its ``budget`` is the first round's budget, its
            ``target`` the model to compress (``"default"`` or an ASR checkpoint).
        target_size: size ratio to reach (compressible parameters after ÷ before), in (0, 1],
            at most ``search.budget``; 0.2 is 5× compression.
        wer_tolerance: largest accepted relative increase of the fine-tuned dev WER over the
            dense model's (0.05: 5 %).
        finetune: fine-tuning of each round (``FinetuneConfig(updates=N)``).
        budget_factor: each round's budget is the previous size times this, in (0, 1).
        max_rounds: rounds at most.
    """

    search: SearchConfig
    target_size: float
    wer_tolerance: float = 0.05
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(updates=1000))
    budget_factor: float = 0.7
    max_rounds: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.search, SearchConfig):
            raise TypeError(f"search must be a SearchConfig; got {type(self.search).__name__}")
        if not isinstance(self.finetune, FinetuneConfig):
            raise TypeError(f"finetune must be a FinetuneConfig; got {type(self.finetune).__name__}")
        if self.search.target == "toy":
            raise ValueError("iterative compression fine-tunes a speech recogniser; target 'toy' has no "
                             "training data: use --target default or an ASR checkpoint")
        size = self.target_size
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0.0 < size <= self.search.budget:
            raise ValueError(f"target_size must be in (0, budget={self.search.budget}] (the first round's "
                             f"budget); got {size!r}")
        if not isinstance(self.wer_tolerance, (int, float)) or not 0.0 <= self.wer_tolerance < math.inf:
            raise ValueError(f"wer_tolerance must be a relative WER increase >= 0 (0.05 = 5 %); got {self.wer_tolerance!r}")
        if not isinstance(self.budget_factor, (int, float)) or not 0.0 < self.budget_factor < 1.0:
            raise ValueError(f"budget_factor must be in (0, 1); got {self.budget_factor!r}")
        if isinstance(self.max_rounds, bool) or not isinstance(self.max_rounds, int) or self.max_rounds < 1:
            raise ValueError(f"max_rounds must be an integer >= 1; got {self.max_rounds!r}")

    def budget(self, previous_size: float | None) -> float:
        """A round's budget, given the previous round's size ratio (None: first round)."""
        if previous_size is None:
            return self.search.budget
        return max(self.target_size, previous_size * self.budget_factor)

    def to_dict(self) -> dict[str, Any]:
        return {"search": self.search.to_dict(), "target_size": self.target_size,
                "wer_tolerance": self.wer_tolerance, "finetune": self.finetune.to_dict(),
                "budget_factor": self.budget_factor, "max_rounds": self.max_rounds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IterativeConfig:
        return cls(**{**data, "search": SearchConfig.from_dict(data["search"]),
                      "finetune": FinetuneConfig.from_dict(data["finetune"])})


@dataclass(frozen=True)
class ASRData:
    """The splits an iterative run uses: fine-tuning (train, dev), search subset, test, and
    calibration utterances for activation-aware factorisation (empty: the last 200 of dev)."""

    train: Sequence[Utterance]
    dev: Sequence[Utterance]
    search: Sequence[Utterance]
    test: Sequence[Utterance]
    calibration: Sequence[Utterance] = ()


def default_asr_data(test_utterances: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> ASRData:
    """The default corpus' splits and the shipped search subset (generated on first use).

    Training data: ``train``, ``train_extra`` and, where made, ``train_flite`` (:func:`asr.default.training_manifests`).
    """
    from asr.calibration import default_calibration
    from asr.default import load_split, load_training_data

    test = load_split("test", progress)
    return ASRData(load_training_data(progress), load_split("dev", progress), load_split("search", progress),
                   test if test_utterances is None else test[:test_utterances], default_calibration())


@dataclass(frozen=True)
class IterativeResult:
    """All rounds of an iterative run (``result.json``)."""

    config: IterativeConfig
    run_dir: Path
    rounds: list[dict[str, Any]]
    stop_reason: str
    baseline_dev_wer: float
    baseline_test_wer: float
    final: dict[str, Any] | None  # the last round within the tolerance
    model_file: Path | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "run_dir": str(self.run_dir), "rounds": self.rounds,
                "stop_reason": self.stop_reason, "baseline_dev_wer": self.baseline_dev_wer,
                "baseline_test_wer": self.baseline_test_wer, "final": self.final,
                "model_file": None if self.model_file is None else str(self.model_file), "seconds": self.seconds}


def run_iterative(
    config: IterativeConfig,
    run_dir: str | os.PathLike[str],
    data: ASRData | None = None,
    *,
    search_progress: Callable[[int, SearchProgress], None] | None = None,
    finetune_progress: Callable[[int, int, int, dict[str, float]], None] | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> IterativeResult:
    """Alternate search and fine-tuning until the target size or the WER tolerance.

    Args:
        config: the settings.
        run_dir: the run directory; an existing one with the same settings resumes.
        data: the splits (default: :func:`default_asr_data`).
        search_progress: ``(round, progress)`` after each new search evaluation.
        finetune_progress: ``(round, update, total, stats)`` after each fine-tuning update.
        on_round: called with each newly finished round's record.

    Returns:
        The result, also written to ``run_dir/result.json`` with ``report.md``.

    Raises:
        ValueError: ``run_dir`` holds another run, or a setting does not fit the target.
    """
    started = time.perf_counter()
    data = data or default_asr_data(config.search.test_utterances)
    run = RunDir(run_dir)
    source, tokenizer = _load_source(config.search.target)
    test_batches = prepare_feature_batches(list(data.test), LogMelFrontend(), tokenizer)
    baseline = _prepare(run, config, source, tokenizer, data, test_batches)
    rounds_file = run.path / "rounds.jsonl"
    records = read_jsonl(rounds_file)[0] if rounds_file.is_file() else []
    reason = _stop_reason(config, records)
    while reason is None:
        k = len(records)
        previous = source if k == 0 else load_checkpoint(run.path / f"round-{k - 1}" / "finetune" / "model.pt")[0]
        record, reason = _run_round(config, run.path / f"round-{k}", k, previous, tokenizer, data, test_batches,
                                    baseline["dev_wer"], search_progress, finetune_progress)
        if record is None:
            break
        append_jsonl(rounds_file, record)
        records.append(record)
        if on_round is not None:
            on_round(record)
        reason = _stop_reason(config, records)
    accepted = [r for r in records if r["within_tolerance"]]
    final = accepted[-1] if accepted else None
    model_file = None
    if final is None:
        logger.warning("no round stayed within the WER tolerance %s; no final model", config.wer_tolerance)
    else:
        model_file = run.path / "model.pt"
        shutil.copyfile(run.path / f"round-{final['round']}" / "finetune" / "model.pt", model_file)
    result = IterativeResult(config, run.path, records, reason, baseline["dev_wer"], baseline["test_wer"],
                             final, model_file, time.perf_counter() - started)
    RunDir.write_json(run.path / "result.json", result.to_dict())
    atomic_write_text(run.path / "report.md", iterative_report(result))
    return result


def relative_increase(wer: float, baseline: float) -> float:
    """``(wer - baseline) / baseline``; with a zero baseline, 0 for no errors, else infinite."""
    if baseline > 0:
        return (wer - baseline) / baseline
    return 0.0 if wer <= 0 else math.inf


def _stop_reason(config: IterativeConfig, records: Sequence[dict[str, Any]]) -> str | None:
    if not records:
        return None
    last = records[-1]
    if not last["within_tolerance"]:
        return "wer_tolerance"
    if last["size_ratio"] <= config.target_size * (1 + 1e-9):
        return "target_reached"
    if len(records) >= config.max_rounds:
        return "max_rounds"
    return None


def _load_source(target: str) -> tuple[ASRModel, Any]:
    from asr.default import default_checkpoint

    path = default_checkpoint() if target == "default" else Path(target)
    model, tokenizer, _ = load_checkpoint(path)
    return model, tokenizer


def _prepare(run: RunDir, config: IterativeConfig, source: ASRModel, tokenizer: Any, data: ASRData,
             test_batches: list) -> dict[str, float]:
    """Create or check ``iterative.json``; returns the dense model's dev and test WER."""
    path = run.path / "iterative.json"
    if path.is_file():
        stored = RunDir.read_json(path)
        if stored.get("format") != FORMAT:
            raise ValueError(f"{path} is not an iterative-compression config (format {stored.get('format')!r})")
        changed = _differences(IterativeConfig.from_dict(stored["config"]), config)
        if changed:
            raise ValueError(f"run directory {str(run.path)!r} holds an iterative run with other settings "
                             f"({'; '.join(changed)}); rerun with the same settings to resume, or choose another --out")
        return stored["baseline"]
    if run.path.exists() and any(run.path.iterdir()):
        raise ValueError(f"{str(run.path)!r} exists and is not an iterative run directory (no iterative.json); "
                         "choose an empty or new folder for --out")
    dense = densify(source) if is_factorised(source) else source
    dev_batches = prepare_feature_batches(list(data.dev)[: config.finetune.dev_utterances], LogMelFrontend(), tokenizer)
    dense = on_device(dense, config.finetune.device)
    baseline = {"dev_wer": evaluate_batches(dense, tokenizer, dev_batches).wer,
                "test_wer": evaluate_batches(dense, tokenizer, test_batches).wer}
    run.path.mkdir(parents=True, exist_ok=True)
    RunDir.write_json(path, {"format": FORMAT, "config": config.to_dict(), "baseline": baseline})
    return baseline


def _differences(stored: IterativeConfig, given: IterativeConfig) -> list[str]:
    changed = given.search.differences(stored.search)
    mine, theirs = given.to_dict(), stored.to_dict()
    for name in ("target_size", "wer_tolerance", "budget_factor"):
        if mine[name] != theirs[name]:
            changed.append(f"{name}: {theirs[name]!r} != {mine[name]!r}")
    ft_mine = {k: v for k, v in mine["finetune"].items() if k != "threads"}
    ft_theirs = {k: v for k, v in theirs["finetune"].items() if k != "threads"}
    if ft_mine != ft_theirs:
        changed.append(f"finetune: {ft_theirs!r} != {ft_mine!r}")
    return changed  # max_rounds may change: a resumed run goes on, or stops, accordingly


def _run_round(config: IterativeConfig, round_dir: Path, k: int, previous: ASRModel, tokenizer: Any,
               data: ASRData, test_batches: list, baseline_dev_wer: float,
               search_progress: Callable | None, finetune_progress: Callable | None
               ) -> tuple[dict[str, Any] | None, str | None]:
    """Search, export with capped ranks, fine-tune: ``(record, None)``, or ``(None, stop reason)``."""
    started = time.perf_counter()
    cap = factorised_ranks(previous)
    start_path = round_dir / "start.pt"
    if not start_path.is_file():
        save_checkpoint(start_path, densify(previous) if cap else previous, tokenizer,
                        {"iterative_round": k, "rank_cap": cap})
    start, _, _ = load_checkpoint(start_path)
    previous_size = None if k == 0 else _size_ratio(previous)
    floor = menu_floor(start, config.search.rank_menu, config.budget(previous_size))
    if previous_size is not None and floor >= previous_size:
        logger.warning("round %d: the rank menu cannot go below %.4f, the previous size %.4f", k, floor, previous_size)
        return None, "menu_floor"
    budget = max(config.budget(previous_size), floor)
    kit = search_kit(start_path, f"round-{k}", data, tokenizer, test_batches, device=config.finetune.device,
                     score=config.search.score)
    search = run_search(replace(config.search, budget=budget, target=str(start_path)), round_dir / "search", kit,
                        progress=None if search_progress is None else (lambda p: search_progress(k, p)))
    if search.best is None:
        return None, "nothing_within_budget"
    chosen = load_checkpoint(RunDir(round_dir / "search").model_file)[2]["ranks"]
    ranks = {key: min(rank, cap.get(key, rank)) for key, rank in chosen.items()}
    # Exported by the search's factorisation method (whitened or sequential factors, not plain
    # SVD), at the ranks capped by the previous round's.
    layers = describe_layers(start, start.compressible_layers())
    bank = export_bank(kit.target, layers, ranks, config.search.factorisation)
    compressed = export_factorised(start, layers, ranks, bank)
    compressed_path = round_dir / "compressed.pt"
    save_factorised_asr(compressed_path, compressed, tokenizer, {"iterative_round": k, "ranks": ranks})
    tuned = finetune(
        compressed, tokenizer, config.finetune, data.train, data.dev, data.test, round_dir / "finetune",
        source=str(compressed_path),
        progress=None if finetune_progress is None else (lambda u, t, s: finetune_progress(k, u, t, s)),
        # Distillation (when configured) from this round's dense starting point.
        teacher=start if config.finetune.distill_weight > 0 else None,
    )
    increase = relative_increase(tuned.best_dev_wer, baseline_dev_wer)
    return {
        "round": k,
        "budget": budget,
        "search_dir": str(round_dir / "search"),
        "search_wer": search.best.search_wer,
        "ranks": factorised_ranks(compressed),
        "size_ratio": 1.0 / tuned.compression,
        "compression": tuned.compression,
        "dev_wer_compressed": tuned.dev_wer_before,
        "test_wer_compressed": tuned.test_wer_before,
        "dev_wer": tuned.best_dev_wer,
        "test_wer": tuned.test_wer,
        "dev_wer_increase": increase,
        "within_tolerance": increase <= config.wer_tolerance,
        "finetune_updates": tuned.updates,
        "model_file": str(tuned.model_file),
        "seconds": time.perf_counter() - started,
    }, None


def menu_floor(model: ASRModel, rank_menu: str, budget: float = 1.0) -> float:
    """Smallest size ratio ``rank_menu`` reaches on the dense ``model`` (every matrix at its smallest fraction).

    A budget-relative menu (``budget7``) is resolved at ``budget`` first, so its floor moves with it.
    """
    from shrinkml_env.compression import (
        all_matrices,
        compressible_parameter_count,
        rank_for_fraction,
    )
    from shrinkml_env.env import menu_for_matrices
    from shrinkml_env.search_space import make_menu

    matrices = all_matrices(describe_layers(model, model.compressible_layers()))
    menu = menu_for_matrices(make_menu(rank_menu), matrices, budget)
    smallest = menu.fractions[0]
    ranks = {m.key: rank_for_fraction(m, smallest) for m in matrices}
    return compressible_parameter_count(matrices, ranks) / compressible_parameter_count(matrices)


def _size_ratio(model: ASRModel) -> float:
    now, dense = compressible_parameter_counts(model)
    return now / dense


def search_kit(start: Path, name: str, data: ASRData, tokenizer: Any, test_batches: list,
               device: str = "cpu", score: str = "wer") -> SearchTarget:
    """The dense ASR checkpoint ``start`` as a search target: search subset, calibration and
    test set from ``data``, steered by ``score``.

    The search evaluates on the CPU; the test WER of what it finds is decoded on ``device``.
    """
    from asr.target import asr_target

    def test_error(model) -> float:
        return evaluate_batches(on_device(model, device), tokenizer, test_batches).wer

    def save(out: Path, model, meta: dict[str, Any]) -> None:
        save_factorised_asr(out, model, tokenizer, meta)

    from asr.calibration import DEFAULT_CALIBRATION_UTTERANCES, check_calibration

    # Calibration for activation-aware factorisation: the given set, else the last dev
    # utterances (dev, never the search subset or test; both checked).
    calibration = list(data.calibration) or list(data.dev)[-DEFAULT_CALIBRATION_UTTERANCES:]
    check_calibration(calibration, test=data.test)
    target = asr_target(start, data.search, name=name, score=score, calibration=calibration)
    return SearchTarget(target, test_error, save, f"{len(data.test)} test utterances")
