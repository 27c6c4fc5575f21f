"""Generate the synthetic corpus into a cache folder, once per split: :func:`ensure_corpus`.

Layout of a corpus (``<cache>/<key>``)::

    corpus.json               config, library and data versions, statistics of the finished splits
    train.jsonl dev.jsonl test.jsonl …   manifests (see asr.manifest), one per split
    train/train-000000.flac … 16 kHz mono 16-bit audio
    .train.lock …             one lock file per split, held while the split is generated

The key names the generator version and a hash of the config and library versions, so a
changed config never reuses an old corpus. Splits are generated on demand, each on its
own: its audio is written into a hidden temporary folder, renamed into place when
complete, and its manifest is written last, so a split counts as finished exactly when its
manifest exists. A split that a run left unfinished is cleared and redone by the next run
that needs it; a lock per split keeps two processes from generating the same one.

Reproducibility: libespeak-ng carries state from one utterance to the next inside a
process, so each fixed-size task of utterances is synthesised by a fresh worker process
(``maxtasksperchild=1``, forked from a clean fork server). The audio therefore depends on
the config and library versions only, not on the number of workers or their scheduling.
Sentences, voices and tasks are always planned for the whole corpus; a task that spans two
splits speaks the utterances of an ungenerated split before a wanted one (discarding them),
so a split has the same bytes whichever splits are generated with it. As with any
multiprocessing code that does not fork, a script that calls :func:`ensure_corpus` at top
level must do so under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr.corpus.config import (
    FESTIVAL_SPLITS,
    FLITE_SPLITS,
    NATURAL_SPLITS,
    SPLITS,
    TRAINING_SPLITS,
    CorpusConfig,
)
from asr.corpus.espeak import Voice, english_accents, voice_variants
from asr.corpus.festival import (
    FESTIVAL_INSTALL_HINT,
    FestivalVoice,
    festival_available,
    festival_version,
)
from asr.corpus.flite import (
    FIXED_PITCH_VOICES,
    FLITE_INSTALL_HINT,
    FLITE_VOICES,
    FliteVoice,
    flite_available,
    flite_version,
)
from asr.corpus.natural import (
    WORDNET_INSTALL_HINT,
    natural_sentences,
    wordnet_available,
    wordnet_fingerprint,
)
from asr.corpus.render import Item, Task, record, render
from asr.corpus.sentences import SentenceGenerator
from asr.manifest import write_manifest

__all__ = ["CorpusPaths", "default_cache_dir", "ensure_corpus"]

logger = logging.getLogger(__name__)

# Bump when the generator's output changes for the same config.
GENERATOR_VERSION = "v2"
# Utterances per worker task. Part of the output's definition (espeak state runs through a
# task), so changing it changes the audio: keep it fixed, and bump GENERATOR_VERSION if not.
_TASK_SIZE = 200
_INFO_FILE = "corpus.json"


@dataclass(frozen=True)
class CorpusPaths:
    """Where a generated corpus lies."""

    root: Path

    def manifest(self, split: str) -> Path:
        """The manifest of ``split`` (one of ``"train"``, ``"dev"``, ``"test"``, ``"unseen"``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        return self.root / f"{split}.jsonl"

    @property
    def manifests(self) -> dict[str, Path]:
        """Manifest path of every split."""
        return {split: self.manifest(split) for split in SPLITS}

    @property
    def train(self) -> Path:
        return self.manifest("train")

    @property
    def dev(self) -> Path:
        return self.manifest("dev")

    @property
    def test(self) -> Path:
        return self.manifest("test")

    @property
    def unseen(self) -> Path:
        return self.manifest("unseen")

    def info(self) -> dict[str, Any]:
        """The corpus's ``corpus.json``: config, versions, sizes and generation time."""
        return json.loads((self.root / _INFO_FILE).read_text(encoding="utf-8"))


def default_cache_dir() -> Path:
    """``$SHRINKML_CACHE/corpus`` if the variable is set, else ``~/.cache/shrinkml/corpus``."""
    base = os.environ.get("SHRINKML_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "shrinkml") / "corpus"


def _library_versions() -> dict[str, str]:
    versions = {"generator": GENERATOR_VERSION}
    for package in ("espeakng-loader", "wordfreq", "praat-parselmouth"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "missing"
    return versions


def corpus_key(config: CorpusConfig) -> str:
    """Folder name of the corpus ``config`` describes (generator version + content hash)."""
    versions = _library_versions()
    if config.natural_train_fraction > 0:  # training sentences come from the installed WordNet
        versions["wordnet"] = wordnet_fingerprint()
    blob = json.dumps({"config": asdict(config), "versions": versions}, sort_keys=True)
    return f"{GENERATOR_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _check_voices(config: CorpusConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training accents and variants; raises if a held-out name is unknown or nothing is left."""
    accents, variants = english_accents(), voice_variants()
    for kind, held, offered in (
        ("unseen_accents", config.unseen_accents, accents),
        ("unseen_variants", config.unseen_variants, variants),
    ):
        unknown = sorted(set(held) - set(offered))
        if unknown:
            raise ValueError(f"{kind} names {unknown}, which espeak-ng lacks; it offers {offered}")
    train_accents = tuple(a for a in accents if a not in config.unseen_accents)
    train_variants = tuple(v for v in variants if v not in config.unseen_variants)
    if not train_accents or not train_variants:
        raise ValueError(
            f"holding out {config.unseen_accents} and {config.unseen_variants} leaves no training "
            f"voice; espeak-ng offers accents {accents}"
        )
    return train_accents, train_variants


def _plan(config: CorpusConfig) -> list[Item]:
    """Every utterance of every split, with text, voice and seeds; deterministic."""
    train_accents, train_variants = _check_voices(config)
    sentences = SentenceGenerator(
        seed=config.seed,
        vocabulary_size=config.vocabulary_size,
        min_words=config.min_words,
        max_words=config.max_words,
        free_sequence_fraction=config.free_sequence_fraction,
        frequency_exponent=config.frequency_exponent,
    ).distinct_sentences()
    rng = np.random.default_rng([config.seed, 1])
    natural = _natural_pools(config)
    natural_eval, natural_train = iter(natural.get("eval", ())), iter(natural.get("train", ()))
    # Its own stream, so that choosing WordNet sentences for training moves no voice.
    natural_choice = np.random.default_rng([config.seed, 2])
    items: list[Item] = []
    for split_index, split in enumerate(SPLITS):
        for i in range(config.utterances(split)):
            held_out = ""
            accents, variants = train_accents, train_variants
            if split == "unseen":
                # Cycle through the kinds of novelty that the config holds out.
                kinds = ["accent"] * bool(config.unseen_accents) + ["variant"] * bool(
                    config.unseen_variants
                )
                kinds += ["both"] * (len(kinds) == 2)
                held_out = kinds[i % len(kinds)]
                if held_out in ("accent", "both"):
                    accents = config.unseen_accents
                if held_out in ("variant", "both"):
                    variants = config.unseen_variants
            voice: Voice | FestivalVoice | FliteVoice = Voice(
                accent=accents[int(rng.integers(len(accents)))],
                variant=variants[int(rng.integers(len(variants)))],
                rate=int(rng.integers(config.rate_range[0], config.rate_range[1] + 1)),
                pitch=int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
            )
            if split in FESTIVAL_SPLITS:
                voice = FestivalVoice(
                    stretch=round(float(rng.uniform(*config.festival_stretch)), 3),
                    pitch_mean_hz=round(float(rng.uniform(*config.festival_pitch_hz)), 1),
                )
            elif split in FLITE_SPLITS:
                name = FLITE_VOICES[int(rng.integers(len(FLITE_VOICES)))]
                stretch = round(float(rng.uniform(*config.flite_stretch)), 3)
                pitch = round(float(rng.uniform(*config.flite_pitch_hz)), 1)
                voice = FliteVoice(name, stretch, None if name in FIXED_PITCH_VOICES else pitch)
            augmented = split in TRAINING_SPLITS and rng.random() < config.augmentation.fraction
            seed = int(np.random.SeedSequence([config.seed, split_index, i]).generate_state(1)[0])
            if split in NATURAL_SPLITS:
                if not natural:
                    continue  # WordNet is not installed: the split cannot be made here
                text = next(natural_eval)
            else:
                # Drawn even when replaced, so the other splits keep their sentences.
                text = next(sentences)
                if (
                    split in TRAINING_SPLITS
                    and config.natural_train_fraction > 0
                    and natural_choice.random() < config.natural_train_fraction
                ):
                    text = next(natural_train, "")
                    if not text:
                        raise ValueError(
                            f"natural_train_fraction={config.natural_train_fraction} needs more "
                            f"WordNet sentences than the {len(natural['train'])} of its training "
                            f"pool; lower the fraction or the number of training utterances"
                        )
            items.append(Item(f"{split}-{i:06d}", split, text, voice, held_out, augmented, seed))
    return items


def _natural_pools(config: CorpusConfig) -> dict[str, list[str]]:
    """WordNet's two sentence pools, ``"train"`` and ``"eval"``, or {} where WordNet is not
    installed and training needs none of it."""
    if not wordnet_available():
        if config.natural_train_fraction > 0:
            raise FileNotFoundError(
                f"natural_train_fraction={config.natural_train_fraction} takes training "
                f"sentences from WordNet, which is not installed here: {WORDNET_INSTALL_HINT}"
            )
        return {}
    pools = {
        pool: natural_sentences(pool, config.seed, config.min_words, config.max_words)
        for pool in ("train", "eval")
    }
    wanted = sum(config.utterances(split) for split in NATURAL_SPLITS)
    if wanted > len(pools["eval"]):
        raise ValueError(
            f"natural_utterances={wanted} asks for more than the {len(pools['eval'])} WordNet "
            f"sentences of {config.min_words}-{config.max_words} words kept for evaluation; "
            f"ask for at most that many"
        )
    return pools


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _missing_program(split: str) -> tuple[str, str, str] | None:
    """``(program, what the split needs of it, install hint)`` if ``split`` needs a program
    (Festival, Flite) or data (WordNet) not installed here."""
    if split in FESTIVAL_SPLITS and not festival_available():
        return "Festival", "is spoken by Festival", FESTIVAL_INSTALL_HINT
    if split in FLITE_SPLITS and not flite_available():
        return "Flite", "is spoken by Flite", FLITE_INSTALL_HINT
    if split in NATURAL_SPLITS and not wordnet_available():
        return "WordNet", "takes its sentences from WordNet", WORDNET_INSTALL_HINT
    return None


def _requested_splits(splits: Sequence[str] | None) -> tuple[str, ...]:
    """``splits`` checked and put in :data:`SPLITS` order (the order their locks are taken);
    None means all of them."""
    if splits is None:
        return SPLITS
    if isinstance(splits, str):
        raise TypeError(
            f"splits must be a sequence of split names, not a string; got {splits!r}: "
            f"pass ({splits!r},)"
        )
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(
            f"unknown split {unknown[0]!r} in splits={tuple(splits)!r}; accepted: "
            f"{', '.join(SPLITS)} (or None for all)"
        )
    if not splits:
        raise ValueError(f"splits is empty; name some of {', '.join(SPLITS)}, or None for all")
    return tuple(split for split in SPLITS if split in splits)


def _makeable(missing: Sequence[str], named: bool) -> list[str]:
    """The ``missing`` splits whose synthesiser (or sentence source) is installed here.

    A split spoken by Festival or Flite, or made of WordNet's sentences, where that is not
    installed is skipped with a warning when the caller asked for every split (``named``
    false), and raises, saying what to install, when the caller named it. Splits already
    made need nothing installed.
    """
    makeable = []
    for split in missing:
        program = _missing_program(split)
        if program is None:
            makeable.append(split)
        elif named:
            raise FileNotFoundError(
                f"split {split!r} {program[1]}, which is not installed here: {program[2]}"
            )
        else:
            logger.warning("%s is not installed: skipping %s (%s)", program[0], split, program[2])
    return makeable


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (released by the kernel if the process dies)."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to release %s", path)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _remove_dead_runs(cache_dir: Path, key: str) -> None:
    # Whole-corpus temporary folders left by interrupted runs of the generator before it
    # worked per split.
    for stale in cache_dir.glob(f".{key}.tmp-*"):
        try:
            os.kill(int(stale.name.rsplit("-", 2)[-2]), 0)
        except (ProcessLookupError, ValueError, OverflowError):
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


def _clear_unfinished(root: Path, split: str) -> None:
    """Remove what an interrupted run left of ``split`` (its lock must be held)."""
    for leftover in (*root.glob(f".{split}.tmp-*"), *root.glob(f".{split}.jsonl.*"), root / split):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink(missing_ok=True)


def ensure_corpus(
    config: CorpusConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    splits: Sequence[str] | None = None,
) -> CorpusPaths:
    """Return the corpus ``config`` describes, generating the requested splits not yet cached.

    Each split is generated once and has the same content whichever splits are asked for
    with it, so asking for ``("test",)`` and later for all gives the corpus a single call
    would have made.

    Args:
        config: what to generate; ``CorpusConfig()`` (the default corpus) if None.
        cache_dir: folder holding corpora; :func:`default_cache_dir` if None.
        progress: called as ``progress(done, total)`` in utterances while generating.
        workers: synthesis processes; the number of usable CPU cores if None.
        splits: the splits needed, from :data:`SPLITS`; all of them if None, less those
            needing a program or data not installed here (skipped with a warning).

    Returns:
        The corpus's paths; the manifests of the requested splits exist and are complete
        (others may not exist yet).

    Raises:
        ValueError: if ``splits`` names an unknown split or none, ``workers`` < 1, or the
            config names voices espeak-ng lacks.
        TypeError: if ``splits`` is a string rather than a sequence of names.
        ImportError: if the ``corpus`` extra (espeakng-loader, wordfreq, praat-parselmouth)
            is missing.
        FileNotFoundError: if ``splits`` names ``cross_synth`` while it is not made yet and
            Festival is not installed, ``train_flite`` likewise without Flite, or
            ``natural`` without WordNet (or the config takes training sentences from
            WordNet and it is not installed).
    """
    config = CorpusConfig() if config is None else config
    requested = _requested_splits(splits)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = corpus_key(config)
    paths = CorpusPaths(cache / key)
    missing = _makeable(
        [split for split in requested if not paths.manifest(split).is_file()], splits is not None
    )
    if not missing:
        return paths
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")

    paths.root.mkdir(parents=True, exist_ok=True)
    _remove_dead_runs(cache, key)
    with contextlib.ExitStack() as locks:
        # Taken in SPLITS order by every process, so two never wait on each other.
        for split in missing:
            locks.enter_context(_locked(paths.root / f".{split}.lock"))
        # Another process may have finished some while this one waited.
        missing = [split for split in missing if not paths.manifest(split).is_file()]
        if missing:
            _generate(config, paths, missing, progress, workers)
    return paths


def _generate(
    config: CorpusConfig,
    paths: CorpusPaths,
    splits: Sequence[str],
    progress: Callable[[int, int], None] | None,
    workers: int,
) -> None:
    """Generate ``splits`` into ``paths.root``; their locks must be held."""
    started = time.perf_counter()
    root = paths.root
    items = _plan(config)
    wanted = [item for item in items if item.split in splits]
    folders = {
        split: str(root / f".{split}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}") for split in splits
    }
    # Tasks are cut from the whole corpus's plan, as in a full generation; each keeps the
    # utterances up to its last wanted one, for espeak's state.
    tasks = []
    for start in range(0, len(items), _TASK_SIZE):
        chunk = items[start : start + _TASK_SIZE]
        last = max((i for i, item in enumerate(chunk) if item.split in splits), default=-1)
        if last >= 0:
            tasks.append(
                Task(folders, config, tuple(chunk[: last + 1]))
            )
    # A fork server that has imported this module (and the caller's main module, so workers
    # need not re-import it) but never run espeak: each task's fresh worker forks from it
    # cheaply and starts from a clean espeak state.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__])
    rendered: dict[str, tuple[float, dict]] = {}
    left = {split: config.utterances(split) for split in splits}
    try:
        for split in splits:
            _clear_unfinished(root, split)
            os.mkdir(folders[split])
        if progress is not None:
            progress(0, len(wanted))
        with context.Pool(processes=min(workers, len(tasks)), maxtasksperchild=1) as pool:
            for results in pool.imap(render, tasks):
                for uid, duration, details in results:
                    rendered[uid] = (duration, details)
                    left[uid.rsplit("-", 1)[0]] -= 1
                if progress is not None:
                    progress(len(rendered), len(wanted))
                for split in [split for split, count in left.items() if count == 0]:
                    del left[split]
                    _finish_split(config, paths, split, Path(folders[split]), wanted, rendered)
                    _write_info(config, paths, time.perf_counter() - started, split)
                    started = time.perf_counter()
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
    logger.info("corpus %s: generated %s", root, ", ".join(splits))


def _finish_split(
    config: CorpusConfig,
    paths: CorpusPaths,
    split: str,
    folder: Path,
    items: Sequence[Item],
    rendered: Mapping[str, tuple[float, dict]],
) -> None:
    """Move a split's finished audio into place, then write its manifest (the last step)."""
    os.rename(folder, paths.root / split)
    write_manifest(
        paths.manifest(split),
        (
            record(item, paths.root, config.audio_format, *rendered[item.id])
            for item in items
            if item.split == split
        ),
    )


def _write_info(config: CorpusConfig, paths: CorpusPaths, seconds: float, finished: str) -> None:
    """Rewrite ``corpus.json`` for the finished splits, adding ``seconds`` of generation and,
    if ``finished`` (the split just made) took sentences from WordNet, the fingerprint of the
    WordNet files it used (kept for that split whatever is installed later)."""
    info_path = paths.root / _INFO_FILE
    with _locked(paths.root / f".{_INFO_FILE}.lock"):
        previous = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        wordnet = previous.get("wordnet")
        wordnet = dict(wordnet) if isinstance(wordnet, dict) else {}
        if finished in NATURAL_SPLITS or (
            finished in TRAINING_SPLITS and config.natural_train_fraction > 0
        ):
            wordnet[finished] = wordnet_fingerprint()
        stats, disk_bytes = {}, 0
        for split in SPLITS:
            manifest = paths.manifest(split)
            if not manifest.is_file():
                continue
            with manifest.open(encoding="utf-8") as f:
                records = [json.loads(line) for line in f]
            stats[split] = {
                "utterances": len(records),
                "hours": round(sum(r["duration"] for r in records) / 3600, 3),
                "words": sum(r["words"] for r in records),
            }
            disk_bytes += manifest.stat().st_size + _folder_bytes(paths.root / split)
        info = {
            "key": paths.root.name,
            "config": asdict(config),
            "versions": _library_versions(),
            "festival": festival_version(),
            "flite": flite_version(),
            "wordnet": wordnet,
            "splits": stats,
            "disk_megabytes": round(disk_bytes / 1e6, 1),
            "generation_seconds": round(previous.get("generation_seconds", 0.0) + seconds, 1),
        }
        tmp = info_path.with_name(f".{_INFO_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, info_path)
