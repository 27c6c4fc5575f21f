"""What a search needs from its target beyond the env: a held-out test score and a writer.

The env scores configurations on the *search subset*; every reported result quotes the
*test* error of the exported, truly factorised model, measured on data the search never saw.
A :class:`SearchTarget` bundles the env's target with that test scorer and a function that
saves an exported model. :func:`make_search_target` builds one from ``SearchConfig.target``:
``"toy"`` (a second noisy copy of the toy task serves as its test set), ``"default"`` (the
shipped recogniser, scored on the default corpus' test split) or an ASR checkpoint path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from shrinkml_env.target import CompressionTarget, ToyModel, toy_error, toy_target

__all__ = ["SearchTarget", "asr_dev_pool_scorer", "asr_search_target", "asr_test_scorer", "dev_pool_utterances", "make_search_target", "toy_search_target"]


@dataclass
class SearchTarget:
    """A compression target with its test scorer.

    Attributes:
        target: what the env compresses and scores on the search subset.
        test_error: ``test_error(model) -> error`` on the held-out test set; takes the dense
            model and exported factorised ones.
        save_model: ``save_model(path, exported_model, meta)`` writes an exported model
            that ``shrinkml evaluate`` (ASR) or :func:`load_factorised` (any) reads back.
        test_description: what the test set is, for reports.
    """

    target: CompressionTarget
    test_error: Callable[[nn.Module], float]
    save_model: Callable[[Path, nn.Module, dict[str, Any]], None]
    test_description: str


def make_search_target(
    target: str, *, test_utterances: int | None = None, device: str = "cpu", score: str = "wer"
) -> SearchTarget:
    """The search target named by ``SearchConfig.target``, steered by ``score`` (ASR only)."""
    if target == "toy":
        if score != "wer":
            raise ValueError(f"score {score!r} needs a speech recogniser; the toy target scores 'wer' only")
        return toy_search_target()
    return asr_search_target(
        None if target == "default" else target, test_utterances=test_utterances, device=device, score=score
    )


def toy_search_target(seed: int = 0) -> SearchTarget:
    """The toy target; its test set is a fresh draw of the same task (other inputs, noise)."""
    from shrinkml_env.compression import save_factorised

    target = toy_target(seed)

    def save(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
        save_factorised(path, model, {**meta, "model": "ToyModel"})

    return SearchTarget(target, toy_error(target.model, 1_000_003 + seed), save, "toy task, fresh noisy draw of 256")


def load_toy_model(path: str | os.PathLike[str]) -> nn.Module:
    """Read back a toy model written by the toy target's ``save_model``."""
    from shrinkml_env.compression import load_factorised

    return load_factorised(path, ToyModel).model


def asr_search_target(
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    test_utterances: int | None = None,
    device: str = "cpu",
    score: str = "wer",
) -> SearchTarget:
    """An ASR checkpoint (None: the shipped model) searched on the search subset by ``score``
    (:data:`asr.scores.SCORES`).

    The test error is greedy-decoding WER, whatever the search score, on the default corpus' test split (its first
    ``test_utterances``, or all of it), prepared on first use.
    """
    from asr.checkpoint import load_checkpoint, save_factorised_asr
    from asr.default import default_checkpoint
    from asr.target import asr_target

    path = default_checkpoint() if checkpoint is None else Path(checkpoint)
    target = asr_target(path, device=device, name="default" if checkpoint is None else None, score=score)
    _, tokenizer, _ = load_checkpoint(path)

    def save(out: Path, model: nn.Module, meta: dict[str, Any]) -> None:
        save_factorised_asr(out, model, tokenizer, meta)

    if target.calibrate is not None:  # calibration must never touch the test split
        from asr.calibration import check_calibration
        from asr.default import load_split

        check_calibration(target.calibrate.utterances, test=load_split("test"))
    scorer = asr_test_scorer(tokenizer, test_utterances)
    limit = "all" if test_utterances is None else f"first {test_utterances}"
    return SearchTarget(target, scorer, save, f"default corpus test split ({limit} utterances)")


def asr_test_scorer(tokenizer: Any, test_utterances: int | None = None) -> _ASRTestError:
    """Greedy decoding of the default corpus' test split (its first ``test_utterances``)."""
    return _ASRTestError(tokenizer, test_utterances)


def asr_dev_pool_scorer(tokenizer: Any, start: int = 600, count: int = 600) -> _ASRTestError:
    """Greedy decoding of a **dev pool**: dev utterances ``start..start+count`` of the default
    corpus that are not in the search subset. Agents never see it (they search on the
    subset) and calibration never touches it (checked on first use), so design choices made
    on it are held out; test stays for the final tables."""
    return _ASRTestError(tokenizer, None, pool=(start, count))


def dev_pool_utterances(start: int = 600, count: int = 600) -> list:
    """The dev pool of :func:`asr_dev_pool_scorer`."""
    from asr.default import load_split

    search_ids = {u.id for u in load_split("search")}
    return [u for u in load_split("dev")[start : start + count] if u.id not in search_ids]


class _ASRTestError:
    """Greedy WER on the test split (or a dev pool); features are prepared once, on the first call.

    :meth:`evaluate` returns the whole :class:`~asr.evaluate.Evaluation` (transcripts, and so
    per-utterance errors for paired comparisons); calling the object returns its WER.
    """

    def __init__(self, tokenizer: Any, limit: int | None, pool: tuple[int, int] | None = None) -> None:
        self.tokenizer, self.limit, self.pool = tokenizer, limit, pool
        self._loaded: list | None = None
        self._batches: list | None = None

    def _utterances(self) -> list:
        """What is decoded, loaded (and a dev pool checked against calibration) once."""
        if self._loaded is not None:
            return self._loaded
        from asr.default import load_split

        if self.pool is None:
            utterances = load_split("test")
            self._loaded = utterances if self.limit is None else utterances[: self.limit]
            return self._loaded
        from asr.calibration import check_calibration, default_calibration

        pool = dev_pool_utterances(*self.pool)
        check_calibration(default_calibration(), dev_pool=pool)
        self._loaded = pool
        return pool

    @property
    def fingerprint(self) -> str:
        """What is decoded: a hash of the utterances' ids and transcripts (16 hex digits), so
        scores kept on disk are never reused for another test set or dev pool."""
        import hashlib

        digest = hashlib.sha256(b"greedy-wer")
        for u in self._utterances():
            digest.update(f"{u.id}\t{u.text}\n".encode())
        return digest.hexdigest()[:16]

    def evaluate(self, model: nn.Module) -> Any:
        from asr.data import prepare_feature_batches
        from asr.evaluate import evaluate_batches
        from asr.features import LogMelFrontend

        if self._batches is None:
            self._batches = list(prepare_feature_batches(self._utterances(), LogMelFrontend(), self.tokenizer))
        return evaluate_batches(model, self.tokenizer, self._batches)

    def __call__(self, model: nn.Module) -> float:
        return self.evaluate(model).wer
