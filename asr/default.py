"""The embedded default: shipped checkpoint, its corpus splits and its search subset.

Each split of the default corpus is generated on its first use (see :mod:`asr.corpus`); the
shipped model was trained on its ``train`` and ``train_extra`` splits. :data:`NAMED_SPLITS`
is the corpus' splits and ``search``. The search subset is a list of ``dev`` utterance ids
chosen so that its WER ranks compressed models the way the full dev set does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from asr.corpus.config import SPLITS
from asr.manifest import Utterance, read_manifest

__all__ = [
    "DEFAULT_CHECKPOINT",
    "NAMED_SPLITS",
    "SEARCH_SUBSET",
    "default_checkpoint",
    "load_split",
    "load_training_data",
    "split_manifest",
    "training_manifests",
]

logger = logging.getLogger(__name__)

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_CHECKPOINT = PRETRAINED_DIR / "default.pt"
SEARCH_SUBSET = PRETRAINED_DIR / "search_subset.json"
NAMED_SPLITS = (*SPLITS, "search")


def default_checkpoint() -> Path:
    """Path of the shipped checkpoint.

    Raises:
        FileNotFoundError: if this installation has no shipped model (a source tree before
            the model was trained), saying how to train one.
    """
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"no shipped default model at {DEFAULT_CHECKPOINT}; train one with "
            "`shrinkml train-asr --preset default` and pass --checkpoint RUN_DIR/best.pt"
        )
    return DEFAULT_CHECKPOINT


def split_manifest(split: str, progress: Callable[[int, int], None] | None = None) -> Path:
    """Manifest of a default-corpus split, generating that split (only) on first use."""
    from asr.corpus import ensure_corpus

    if split not in SPLITS:
        raise ValueError(f"unknown corpus split {split!r}; accepted: {', '.join(SPLITS)}")
    return ensure_corpus(progress=progress, splits=(split,)).manifest(split)


def training_manifests(progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Manifests of the default corpus's training data, generating them on first use.

    ``train`` and ``train_extra`` (espeak-ng), and ``train_flite`` (a second synthesiser's
    voices) where Flite is installed or the split is already made; otherwise a warning is
    logged and the espeak-ng splits alone are used.
    """
    from asr.corpus import ensure_corpus
    from asr.corpus.config import FLITE_SPLITS
    from asr.corpus.flite import FLITE_INSTALL_HINT, flite_available

    espeak = ("train", "train_extra")
    paths = ensure_corpus(progress=progress, splits=espeak)
    splits = list(espeak)
    for split in FLITE_SPLITS:
        if paths.manifest(split).is_file() or flite_available():
            splits.append(split)
        else:
            logger.warning(
                "Flite is not installed: training without %s, on espeak-ng's voices only (%s)",
                split,
                FLITE_INSTALL_HINT,
            )
    paths = ensure_corpus(progress=progress, splits=splits)
    return [paths.manifest(split) for split in splits]


def load_training_data(progress: Callable[[int, int], None] | None = None) -> list[Utterance]:
    """Utterances of :func:`training_manifests`, in order."""
    return [
        u
        for path in training_manifests(progress)
        for u in read_manifest(path, check_audio=False).utterances
    ]


def search_subset_ids(path: Path = SEARCH_SUBSET) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"no search subset at {path}; choose one with `python -m benchmarks.bench_subset --write-subset`"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data["ids"])


def load_split(split: str, progress: Callable[[int, int], None] | None = None) -> list[Utterance]:
    """Utterances of a named split (one of :data:`NAMED_SPLITS`; ``search`` is the dev subset)."""
    if split not in NAMED_SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(NAMED_SPLITS)}")
    if split != "search":
        return read_manifest(split_manifest(split, progress), check_audio=False).utterances
    dev = {u.id: u for u in load_split("dev", progress)}
    ids = search_subset_ids()
    missing = [i for i in ids if i not in dev]
    if missing:
        raise ValueError(
            f"search subset names {len(missing)} ids absent from the dev split (first: "
            f"{missing[0]!r}); the corpus and the shipped subset disagree"
        )
    return [dev[i] for i in ids]
