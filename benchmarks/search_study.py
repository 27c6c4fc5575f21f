"""Shared machinery of the three search studies: search quality, rewards, search space.

A *study* runs several *arms* (an agent with a reward, constraint, menu and budget), each
with several seeds, all at the same number of unique search-subset evaluations. For every
run it reads the order of evaluations from the run directory (``evaluations.jsonl``),
follows the running best configuration within the size budget (lowest search WER; ties:
smaller, then earlier, as :func:`agents.budget.best_within_budget`), and quotes the *test*
WER of that configuration after each evaluation. Test WER is computed only when the
running best changes, and memoised by the weights of the scored model across every run of
one invocation (so the dense baseline, uniform points and configurations two runs both
found are decoded once).

Per arm, the seeds are summarised by median, min, max and quartiles, both at each
evaluation count (curves) and at the end (what each run found, and at which evaluation).

Nothing here parses arguments except :func:`add_study_arguments` /
:func:`settings_from_args`, which the scripts share so that their options read alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from agents.budget import EvaluationRecord
from agents.config import SearchConfig, check_score
from agents.run_dir import FORMAT, RunDir
from agents.search import run_search
from agents.targets import SearchTarget, make_search_target, toy_search_target
from benchmarks.common import RESULTS
from benchmarks.study_output import fmt, summarise
from shrinkml_env.plan import Exporter

__all__ = ["Arm", "MemoisedTestError", "ScoreStore", "StudySettings", "add_study_arguments", "build_dev_error", "build_kit", "memo_store", "run_study", "running_best", "settings_from_args", "target_identity", "weights_fingerprint"]

_SIZE_TOLERANCE = 1e-9


# -- settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudySettings:
    """What every search of one study shares.

    Attributes:
        target: ``"toy"`` (machinery check, seconds), ``"default"`` (the shipped recogniser)
            or an ASR checkpoint path.
        evaluations: unique search-subset evaluations per run; the same for every arm.
        seeds: one run per arm and seed; spread is reported over them.
        test_utterances: test utterances decoded for each test WER (None: the whole split).
        search_utterances: use only the first N utterances of the shipped search subset
            (None: all of it); quick runs trade search noise for speed and say so.
        runs_dir: keep run directories here, and resume them on a rerun; None: a temporary
            folder, deleted at the end.
        jobs: searches run at once, each in its own process with one torch thread; the
            results are the same as with one job (each search is seeded and independent).
        test_every: score the running best on the test set after every ``test_every``-th
            evaluation (and after the last); curves have points only there. 1: after each.
            Test decodes can cost more than the search itself, so long studies thin them.
            0: never (a design study, which must choose on the dev pool without test beside it).
        dev_pool_at: evaluation counts at which each run's best within the budget is also
            decoded on the held-out dev pool (:func:`agents.targets.asr_dev_pool_scorer`),
            where the study's design choices (which agent to recommend) are made; ASR
            targets only. Empty: none.
        score: what the study's searches steer by on the search subset (one of
            :data:`asr.scores.SCORES`; ``"wer"``, the default, on the toy target), unless an
            arm's config names another (each score is its own target, built once). Test and
            dev-pool figures stay greedy WER whatever the score.
    """

    target: str = "default"
    evaluations: int = 100
    seeds: tuple[int, ...] = (0, 1, 2)
    test_utterances: int | None = 300
    search_utterances: int | None = None
    runs_dir: str | None = None
    jobs: int = 1
    test_every: int = 1
    dev_pool_at: tuple[int, ...] = ()
    score: str = "wer"

    def __post_init__(self) -> None:
        if self.evaluations < 1 or self.jobs < 1 or self.test_every < 0:
            raise ValueError(f"evaluations and jobs must be >= 1 and test_every >= 0; got {self.evaluations}, "
                             f"{self.jobs}, {self.test_every}")
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers; got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        for name in ("test_utterances", "search_utterances"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None; got {value}")
        if self.target == "toy" and self.search_utterances is not None:
            raise ValueError("search_utterances applies to ASR targets; the toy target has none")
        dev_at = tuple(sorted({int(k) for k in self.dev_pool_at}))
        if dev_at and (dev_at[0] < 1 or dev_at[-1] > self.evaluations):
            raise ValueError(f"dev_pool_at must lie in 1..evaluations ({self.evaluations}); got "
                             f"{list(self.dev_pool_at)}: give counts no larger than the evaluations per run")
        if dev_at and self.target == "toy":
            raise ValueError("dev_pool_at applies to ASR targets; the toy target has no dev pool")
        object.__setattr__(self, "dev_pool_at", dev_at)
        check_score(self.score, self.target)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        data["dev_pool_at"] = list(self.dev_pool_at)
        return data


@dataclass(frozen=True)
class Arm:
    """One line of a study: a label and the search it runs (its seed is set per run)."""

    label: str
    config: SearchConfig
    seeds: tuple[int, ...] | None = None  # None: the study's seeds
    extras: dict[str, Any] = field(default_factory=dict)  # written next to the arm's summary


def add_study_arguments(parser: argparse.ArgumentParser, *, evaluations: int, seeds: str) -> None:
    """The options every search study takes (the caller adds its own)."""
    parser.add_argument("--target", default="default", help="'toy', 'default' (shipped model) or an ASR checkpoint")
    parser.add_argument("--evaluations", type=int, default=evaluations, help="unique evaluations per run")
    parser.add_argument("--seeds", default=seeds, help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--test-utterances", type=count_or_all, default=300,
                        help="test utterances per test WER ('all': the whole split; default %(default)s)")
    parser.add_argument("--search-utterances", type=int, help="only the first N utterances of the search subset")
    parser.add_argument("--runs-dir", help="keep (and resume) run directories here; default: a temporary folder")
    parser.add_argument("--output-dir", type=Path, help=f"where results go (default: {RESULTS})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="searches at once, one process and one thread each (default 1)")
    parser.add_argument("--test-every", type=int, default=1,
                        help="score the running best on test after every N-th evaluation and the last (default 1)")
    parser.add_argument("--dev-pool-at", default="",
                        help="evaluation counts at which each run's best is also decoded on the held-out dev pool "
                             "(comma-separated, e.g. 100,300; default: none)")
    parser.add_argument("--score", default="wer",
                        help="what every search steers by on the search subset: wer, cer, loss or distill "
                             "(default %(default)s; test and dev-pool figures are greedy WER whatever it is)")
    parser.add_argument("--quick", action="store_true", help="the short version that `make bench` runs")


def settings_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       quick: dict[str, Any]) -> StudySettings:
    """Settings from the parsed options; ``--quick`` fills in ``quick`` where not given.

    ``quick`` keys are StudySettings fields; an option the user typed always wins, so quick
    values only replace the parser's defaults.
    """
    values = {
        "target": args.target,
        "evaluations": args.evaluations,
        "seeds": parse_ints(args.seeds),
        "test_utterances": args.test_utterances,
        "search_utterances": None if args.target == "toy" else args.search_utterances,
        "runs_dir": args.runs_dir,
        "jobs": args.jobs,
        "test_every": args.test_every,
        "dev_pool_at": parse_ints(args.dev_pool_at),
        "score": args.score,
    }
    if args.quick:
        for name, value in quick.items():
            if name == "search_utterances" and args.target == "toy":
                continue
            if getattr(args, name) == parser.get_default(name):
                values[name] = value
    return StudySettings(**values)


def count_or_all(text: str) -> int | None:
    """An argparse type: a positive count, or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all'; got {text!r}")
    return value


def parse_ints(text: str | Sequence[int]) -> tuple[int, ...]:
    if not isinstance(text, str):
        return tuple(int(x) for x in text)
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


# -- the target and its memoised test scorer -------------------------------------------------
class ScoreStore:
    """Scores a study keeps on disk: a folder of JSON-lines files, one per writer
    (``<pid>-<tag>.jsonl``), each line ``{"key": ..., **fields}``. :meth:`load` reads every
    file there, so a resumed study (or a later worker process) does not decode again what an
    earlier process scored; writers running side by side do not see each other's new lines.
    ``folder`` None: nothing is kept. A store belongs to one scorer (one model or test set, one
    dev pool): :func:`memo_store` names it so."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._file = None if folder is None else self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"

    def load(self) -> dict[str, dict[str, Any]]:
        """Every record kept so far, by key (a line cut short by a killed process is skipped)."""
        records: dict[str, dict[str, Any]] = {}
        for path in sorted(self.folder.glob("*.jsonl")) if self.folder is not None else ():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                    records[item.pop("key")] = item
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
        return records

    def add(self, key: str, **fields: Any) -> None:
        if self._file is None:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with open(self._file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, **fields}) + "\n")


class MemoisedTestError:
    """``test_error(model)``, memoised by the model's structure and weights.

    Each call hashes the state dict (tens of milliseconds for the shipped model) and decodes
    the test set only for weights it has not scored yet. Counts what it decoded. With
    ``store`` (a folder), scores are also kept there (:class:`ScoreStore`).
    """

    def __init__(self, test_error: Callable[[nn.Module], float], store: Path | None = None) -> None:
        self._test_error = test_error
        self._store = ScoreStore(store)
        self._known: dict[str, float] = {}
        for key, record in self._store.load().items():
            try:
                self._known[key] = float(record["error"])
            except (KeyError, TypeError, ValueError):
                continue  # not a score of this kind: decoded again
        self.decodes = 0
        self.seconds = 0.0

    def __call__(self, model: nn.Module) -> float:
        key = _weights_key(model)
        if key not in self._known:
            started = time.perf_counter()
            self._known[key] = float(self._test_error(model))
            self.seconds += time.perf_counter() - started
            self.decodes += 1
            self._store.add(key, error=self._known[key])
        return self._known[key]


def _weights_key(model: nn.Module) -> str:
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_kit(settings: StudySettings) -> SearchTarget:
    """The search target with a memoised test scorer (and, if asked, a shorter search subset).

    With ``settings.runs_dir`` the test scores are kept there too (see :class:`MemoisedTestError`).
    A study that never reads test (``test_every=0``) gets a scorer that returns NaN and decodes
    nothing, in every process it runs in.
    """
    if settings.target == "toy":
        kit = toy_search_target()
    else:
        kit = make_search_target(settings.target, test_utterances=settings.test_utterances, score=settings.score)
        if settings.search_utterances is not None:
            from asr.default import default_checkpoint, load_split
            from asr.target import asr_target

            path = default_checkpoint() if settings.target == "default" else Path(settings.target)
            subset = load_split("search")[: settings.search_utterances]
            kit = replace(kit, target=asr_target(path, subset, name=f"{kit.target.name}-search{len(subset)}",
                                                 score=settings.score))
    if not settings.test_every:
        return replace(kit, test_error=_no_test, test_description="none (a design study)")
    store = memo_store(settings.runs_dir, f"test-{settings.test_utterances or 'all'}", kit.test_error)
    return replace(kit, test_error=MemoisedTestError(kit.test_error, store))


def _no_test(model: Any) -> float:
    """The test scorer of a study that never reads test (``test_every=0``): NaN, nothing decoded."""
    return math.nan


def build_dev_error(settings: StudySettings) -> MemoisedTestError | None:
    """The dev-pool scorer of a study that asks for one (``dev_pool_at``), else None."""
    if not settings.dev_pool_at:
        return None
    from agents.targets import asr_dev_pool_scorer
    from asr.checkpoint import load_checkpoint
    from asr.default import default_checkpoint

    _, tokenizer, _ = load_checkpoint(default_checkpoint() if settings.target == "default" else settings.target)
    scorer = asr_dev_pool_scorer(tokenizer)
    return MemoisedTestError(scorer, memo_store(settings.runs_dir, "dev-pool", scorer))


# Bumped whenever what a kept score means changes (decoding, WER, export), so none is reused.
SCORES_FORMAT = 1


def memo_store(runs_dir: str | os.PathLike[str] | None, kind: str, scorer: object) -> Path | None:
    """Where a study under ``runs_dir`` keeps the scores of ``scorer``: named by ``kind``, the
    scorer's data fingerprint (test set or dev pool) and :data:`SCORES_FORMAT`; None without
    a runs folder."""
    if runs_dir is None:
        return None
    identity = getattr(scorer, "fingerprint", None) or "unnamed"
    return Path(runs_dir) / "scores" / f"{kind}-{identity}-v{SCORES_FORMAT}"


class _RankScorer:
    """Test (and dev-pool) WER of a rank vector: exported truly factorised by the search's
    factorisation method, as ``shrinkml search`` exports it, and scored (memoised)."""

    def __init__(self, kit: SearchTarget, dev_error: Callable[[nn.Module], float] | None = None) -> None:
        self.kit, self.dev_error = kit, dev_error
        self.exporter = Exporter(kit.target)

    def __call__(self, ranks: Sequence[int], factorisation: str) -> float:
        return self.kit.test_error(self.exporter.export(ranks, factorisation))

    def dev(self, ranks: Sequence[int], factorisation: str) -> float:
        if self.dev_error is None:
            raise ValueError("this study scores no dev pool (dev_pool_at is empty)")
        return self.dev_error(self.exporter.export(ranks, factorisation))


# -- one run ----------------------------------------------------------------------------------
def running_best(records: Sequence[EvaluationRecord], budget: float) -> list[EvaluationRecord | None]:
    """After each evaluation, the best record so far within ``budget`` (None: none fits yet)."""
    best: EvaluationRecord | None = None
    out: list[EvaluationRecord | None] = []
    for record in records:
        if record.size_ratio <= budget + _SIZE_TOLERANCE and (
            best is None or (record.search_wer, record.size_ratio) < (best.search_wer, best.size_ratio)
        ):
            best = record
        out.append(best)
    return out


def _run_name(arm: Arm, seed: int) -> str:
    text = json.dumps(replace(arm.config, seed=seed).to_dict(), sort_keys=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in arm.label)
    return f"{safe}-seed{seed}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def weights_fingerprint(model: Any) -> str:
    """The fingerprint a search target of ``model`` has (weights and compressible layers)."""
    from shrinkml_env.target import CompressionTarget

    return CompressionTarget(model=model, layers=model.compressible_layers(), evaluate=lambda _m: 0.0).fingerprint


def target_identity(target) -> dict[str, str]:
    """What a study's numbers were measured on: target name, weights and evaluation data."""
    return {"name": target.name, "fingerprint": target.fingerprint, "data_fingerprint": target.data_fingerprint}


def _seed_uniform_curve(run: RunDir, config: SearchConfig, kit: SearchTarget, curve: list[dict] | None) -> None:
    """Give a new run directory the uniform curve another run of this menu measured.

    ``run_search`` measures the uniform curve (every menu fraction, all layers alike) for
    every new run directory, outside the evaluation budget; on the shipped model that is
    ``menu size`` decodes per run. The curve depends only on target, menu and granularity,
    so a study measures it once and writes it, with the run's config, before the search.
    """
    if curve is None or run.config_file.exists():
        return
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_json(run.config_file, {"format": FORMAT, "config": config.to_dict(), "target": target_identity(kit.target)})
    run.write_json(run.curve_file, curve)


_WORKER_STATE: dict[str, tuple[SearchTarget, _RankScorer]] = {}


def _row_in_worker(arm: Arm, seed: int, settings: StudySettings, root: str,
                   curves: dict[tuple, list[dict]], reward_best: bool) -> dict[str, Any]:
    """One run, searched and scored in a pool process (target and SVDs built once per process)."""
    import torch

    settings = replace(settings, score=arm.config.score)  # each score is its own search target
    key = json.dumps(settings.to_dict(), sort_keys=True)
    if key not in _WORKER_STATE:
        torch.set_num_threads(1)
        kit = build_kit(settings)
        _WORKER_STATE[key] = (kit, _RankScorer(kit, build_dev_error(settings)))
    kit, scorer = _WORKER_STATE[key]
    return _run_one(arm, seed, kit, scorer, Path(root), dict(curves), reward_best, settings.test_every,
                    settings.dev_pool_at)


def _rows_in_parallel(runs: list[tuple[Arm, int]], settings: StudySettings, root: Path,
                      curves: dict[tuple, list[dict]], reward_best: bool) -> list[dict[str, Any]]:
    """Every run, ``settings.jobs`` at a time, each in its own process; rows in ``runs`` order.

    Searches are seeded and independent, so the rows are those a serial study gives; only
    test decodes that two runs share may be repeated (each process memoises its own).
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=settings.jobs, mp_context=context) as pool:
        futures = [pool.submit(_row_in_worker, arm, seed, settings, str(root), curves, reward_best)
                   for arm, seed in runs]
        return [future.result() for future in futures]


def _curve_key(config: SearchConfig) -> tuple:
    """What a uniform curve depends on: menu and granularity, the budget for a menu relative
    to it (whose fractions the budget sets), and the score its points are measured by."""
    from shrinkml_env.search_space import make_menu

    relative = make_menu(config.rank_menu).relative
    return config.rank_menu, config.granularity, config.budget if relative else None, config.score


def _run_one(arm: Arm, seed: int, kit: SearchTarget, scorer: _RankScorer, root: Path,
             curves: dict[tuple, list[dict]], reward_best: bool, test_every: int = 1,
             dev_pool_at: Sequence[int] = ()) -> dict[str, Any]:
    config = replace(arm.config, seed=seed)
    run = RunDir(root / _run_name(arm, seed))
    curve_key = _curve_key(config)
    _seed_uniform_curve(run, config, kit, curves.get(curve_key))
    stamps: list[float] = []
    started = time.perf_counter()
    result = run_search(config, run.path, kit,
                        progress=lambda p: stamps.append(time.perf_counter() - started) if p.evaluations else None)
    seconds = time.perf_counter() - started
    curves.setdefault(curve_key, run.uniform_curve())
    records = run.evaluations()
    bests = running_best(records, config.budget)
    last = len(bests) - 1
    method = config.factorisation
    test_wer = [None if best is None or not test_every or ((k + 1) % test_every and k != last
                                                           and k + 1 not in dev_pool_at)
                else scorer(best.ranks, method) for k, best in enumerate(bests)]
    final = bests[-1] if bests else None
    row: dict[str, Any] = {
        "seed": seed,
        "evaluations": len(records),
        "episodes": result.episodes,
        "cache_hits": result.cache_hits,
        "stop_reason": result.stop_reason,
        "resumed": result.new_evaluations < result.evaluations,
        "seconds": seconds,
        "search_seconds_per_evaluation": (stamps[-1] / len(stamps)) if stamps else None,
        "within_budget_share": (sum(r.size_ratio <= config.budget + _SIZE_TOLERANCE for r in records) / len(records)
                                if records else None),
        "curve": {
            "test_wer": test_wer,
            "search_wer": [None if b is None else b.search_wer for b in bests],
            "size_ratio": [None if b is None else b.size_ratio for b in bests],
        },
        "best": None if final is None else {
            "ranks": list(final.ranks), "size_ratio": final.size_ratio, "search_wer": final.search_wer,
            "test_wer": test_wer[-1], "found_at": final.index + 1,
        },
        "uniform": {k: result.uniform.to_dict()[k] for k in ("label", "size_ratio", "search_wer", "test_wer")},
        "baseline_test_wer": result.baseline_test_wer,
        "baseline_search_wer": result.baseline_search_wer,
    }
    if dev_pool_at:
        # A run that stopped early (uniform, greedy) keeps its last best, as in the curves.
        row["dev_pool"] = {}
        for count in dev_pool_at:
            best = bests[min(count, len(bests)) - 1] if bests else None
            row["dev_pool"][str(count)] = None if best is None else {
                "ranks": list(best.ranks), "size_ratio": best.size_ratio, "search_wer": best.search_wer,
                "dev_pool_wer": scorer.dev(best.ranks, method), "found_at": best.index + 1}
    if reward_best and records:
        top = max(records, key=lambda r: (r.reward, -r.index))
        row["reward_best"] = {"ranks": list(top.ranks), "reward": top.reward, "size_ratio": top.size_ratio,
                              "search_wer": top.search_wer, "test_wer": scorer(top.ranks, method), "found_at": top.index + 1}
    return row


@contextmanager
def _runs_root(settings: StudySettings, study: str) -> Iterator[Path]:
    if settings.runs_dir is not None:
        root = Path(settings.runs_dir) / study
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix=f"shrinkml-{study}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_study(
    study: str,
    arms: Sequence[Arm],
    settings: StudySettings,
    kit: SearchTarget,
    *,
    reward_best: bool = False,
    dev_error: Callable[[nn.Module], float] | None = None,
    mixed_scores: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, dict[str, Any]]:
    """Run every arm with every seed; returns ``{label: {"config", "runs", "summary"}}``.

    Args:
        study: names the runs folder.
        arms: what to run (labels must be unique).
        settings: shared settings (seeds, where runs go).
        kit: from :func:`build_kit` (its memoised test scorer is shared by all runs).
        reward_best: also score the configuration with the highest reward of each run (the
            agent's own objective, which need not be the best within the budget).
        dev_error: the dev-pool scorer, for a caller that also uses it (default: built here
            from ``settings`` when it names dev-pool counts).
        mixed_scores: arms may steer by another score than ``settings.score`` (each score
            then gets its own target, built once, sharing ``kit``'s test scorer); otherwise
            such an arm is refused, so a study cannot quietly search by another score than
            its settings say.
        log: receives one line per finished run.
    """
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"arm labels must be unique; got {labels}")
    for arm in arms:
        if arm.config.score != settings.score and not mixed_scores:
            raise ValueError(f"arm {arm.label!r} steers by score {arm.config.score!r} but the study scores "
                             f"{settings.score!r}; build its config with score=settings.score, or pass "
                             "mixed_scores=True")
    scorer = _RankScorer(kit, dev_error if dev_error is not None else build_dev_error(settings))
    kits = {settings.score: kit}

    def kit_for(arm: Arm) -> SearchTarget:
        """The arm's search target: ``kit`` for the study's score, else the same model and
        subset scored the arm's way, sharing ``kit``'s (memoised) test scorer."""
        score = arm.config.score
        if score not in kits:
            # test_every=0: no memo store of its own; the study's memoised test scorer goes in.
            kits[score] = replace(build_kit(replace(settings, score=score, test_every=0)),
                                  test_error=kit.test_error, test_description=kit.test_description)
        return kits[score]

    curves: dict[tuple, list[dict]] = {}
    out: dict[str, dict[str, Any]] = {}
    with _runs_root(settings, study) as root:
        everything = [(arm, seed) for arm in arms for seed in arm.seeds or settings.seeds]
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        if settings.jobs > 1:
            # The first run of each rank menu goes first, here: it measures the menu's uniform
            # curve, which every later run of that menu then reuses instead of re-measuring.
            firsts = {}
            for arm, seed in everything:
                firsts.setdefault(_curve_key(arm.config), (arm, seed))
            for arm, seed in firsts.values():
                rows[arm.label, seed] = _run_one(arm, seed, kit_for(arm), scorer, root, curves, reward_best,
                                                 settings.test_every, settings.dev_pool_at)
            rest = [(arm, seed) for arm, seed in everything if (arm.label, seed) not in rows]
            rows.update({(arm.label, seed): row for (arm, seed), row in
                         zip(rest, _rows_in_parallel(rest, settings, root, curves, reward_best))})
        for arm in arms:
            runs = []
            for seed in arm.seeds or settings.seeds:
                row = rows.get((arm.label, seed)) or _run_one(arm, seed, kit_for(arm), scorer, root, curves,
                                                              reward_best, settings.test_every, settings.dev_pool_at)
                best = row["best"]
                log(f"{study} {arm.label} seed {seed}: {row['evaluations']} evaluations, {row['seconds']:.1f} s, "
                    + ("nothing within budget" if best is None else
                       f"best size {best['size_ratio']:.3f} search {best['search_wer']:.4f} test {fmt(best['test_wer'])}"))
                runs.append(row)
            out[arm.label] = {"config": {**arm.config.to_dict(), "seed": None}, **arm.extras,
                              "summary": summarise(runs, arm.config.evaluations), "runs": runs}
    return out


# -- summaries ----------------------------------------------------------------------------------
