"""A search's run directory: its config, every evaluation, its result, model, plot and report.

Layout::

    config.json          format, SearchConfig, target name and fingerprints
    evaluations.jsonl    one EvaluationRecord per line, in the order they were paid for
    uniform_curve.json   every uniform rank fraction's size and search WER (for comparison)
    result.json          best configuration within the budget, its test WER, baselines
    model.pt             the best configuration, exported truly factorised
    pareto.png           WER vs size of every evaluated point, the uniform curve, the choice
    report.md            a human-readable summary
    .lock                held (flock) by the process searching here, if any

While a search writes it, the folder holds ``.lock``, locked (``flock``) by that process: a
second process given the same folder is refused at once instead of interleaving its
evaluations with the first's (the lock goes with the process, even when it is killed).

Whole files are written to a temporary file and renamed over the target. The evaluation log
is appended one line per evaluation with a single write and an fsync; a line torn by a crash
can only be the last one, and it is dropped (and the file rewritten whole) on resume, so a
rerun of the same command continues where the interrupted one stopped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agents.budget import EvaluationRecord
from agents.config import SearchConfig
from shrinkml_env.atomic import atomic_write_bytes, atomic_write_text
from shrinkml_env.target import CompressionTarget

__all__ = ["FORMAT", "RunDir", "RunDirInUse", "append_jsonl", "atomic_write_bytes", "atomic_write_text", "read_jsonl"]

FORMAT = "shrinkml-search/1"
LOCK_NAME = ".lock"
logger = logging.getLogger(__name__)


def append_jsonl(path: str | os.PathLike[str], obj: dict[str, Any]) -> None:
    """Append one JSON line with a single ``write`` followed by ``fsync``."""
    line = (json.dumps(obj, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bool]:
    """Objects of a JSON-lines file, and whether a torn last line was dropped.

    Raises:
        ValueError: a line other than the last is not JSON (the file was edited or damaged).
    """
    lines = Path(path).read_bytes().decode("utf-8", errors="replace").split("\n")
    objects, torn = [], False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: the write was cut short
                torn = True
                continue
            raise ValueError(f"{path}: line {number} is not JSON ({e}); the log is damaged") from e
    return objects, torn


class RunDirInUse(RuntimeError):
    """Another live process is writing the run directory."""


class RunDir:
    """Paths and readers/writers of one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    config_file = property(lambda self: self.path / "config.json")
    evaluations_file = property(lambda self: self.path / "evaluations.jsonl")
    curve_file = property(lambda self: self.path / "uniform_curve.json")
    result_file = property(lambda self: self.path / "result.json")
    model_file = property(lambda self: self.path / "model.pt")
    plot_file = property(lambda self: self.path / "pareto.png")
    report_file = property(lambda self: self.path / "report.md")

    lock_file = property(lambda self: self.path / LOCK_NAME)

    # -- starting or resuming ---------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process while the block runs (creates the folder).

        Raises:
            RunDirInUse: another live process holds it.
        """
        try:
            import fcntl
        except ImportError:  # no flock (Windows): run unlocked, as before
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise RunDirInUse(
                    f"run directory {str(self.path)!r} is being written by another process (pid {holder}); "
                    "wait for it to finish and rerun to resume, or choose another --out"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def prepare(self, config: SearchConfig, target: CompressionTarget) -> list[EvaluationRecord]:
        """Create the run, or check that it can be resumed; returns what it already knows.

        Raises:
            ValueError: the folder holds a search with other settings or another target, or a
                damaged log.
        """
        identity = {
            "name": target.name,
            "fingerprint": target.fingerprint,
            "data_fingerprint": target.data_fingerprint,
        }
        if self.config_file.is_file():
            stored = self.read_json(self.config_file)
            if stored.get("format") != FORMAT:
                raise ValueError(f"{self.config_file} is not a ShrinkML search config (format {stored.get('format')!r})")
            previous = SearchConfig.from_dict(stored["config"])
            differences = config.differences(previous)
            if differences:
                raise ValueError(
                    f"run directory {str(self.path)!r} holds a search with other settings "
                    f"({'; '.join(differences)}); rerun with the same settings to resume, or "
                    "choose another --out"
                )
            if stored.get("target") != identity:
                raise ValueError(
                    f"run directory {str(self.path)!r} searched target {stored.get('target')!r}, "
                    f"not {identity!r} (the model or its search data changed); choose another --out"
                )
        elif self.path.exists() and any(p.name != LOCK_NAME for p in self.path.iterdir()):
            raise ValueError(
                f"{str(self.path)!r} exists and is not a ShrinkML run directory (no config.json); "
                "choose an empty or new folder for --out"
            )
        records = self._restore()
        if len(records) > config.evaluations:
            raise ValueError(
                f"run directory {str(self.path)!r} already holds {len(records)} evaluations, more "
                f"than evaluations={config.evaluations}; ask for at least {len(records)}"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_json(self.config_file, {"format": FORMAT, "config": config.to_dict(), "target": identity})
        return records

    def _restore(self) -> list[EvaluationRecord]:
        if not self.evaluations_file.is_file():
            return []
        rows, torn = read_jsonl(self.evaluations_file)
        records = [EvaluationRecord.from_dict(row) for row in rows]
        indices = [r.index for r in records]
        if indices != list(range(len(records))) or len({r.ranks for r in records}) != len(records):
            raise ValueError(
                f"{self.evaluations_file} is not a consecutive log of unique evaluations "
                f"(indices {indices[:5]}…); it was edited or mixed with another run"
            )
        if torn:
            logger.warning("%s: dropped a line torn by an interruption", self.evaluations_file)
            self.rewrite_evaluations(records)
        return records

    # -- writing ----------------------------------------------------------------------------
    def append_evaluation(self, record: EvaluationRecord) -> None:
        append_jsonl(self.evaluations_file, record.to_dict())

    def rewrite_evaluations(self, records: Sequence[EvaluationRecord]) -> None:
        atomic_write_text(self.evaluations_file, "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in records))

    @staticmethod
    def write_json(path: Path, data: Any) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    @staticmethod
    def read_json(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{path} does not exist; is this a finished ShrinkML run directory?") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e

    # -- reading a finished run ------------------------------------------------------------
    def config(self) -> SearchConfig:
        return SearchConfig.from_dict(self.read_json(self.config_file)["config"])

    def evaluations(self) -> list[EvaluationRecord]:
        if not self.evaluations_file.is_file():
            return []
        return [EvaluationRecord.from_dict(row) for row in read_jsonl(self.evaluations_file)[0]]

    def result(self) -> dict[str, Any]:
        return self.read_json(self.result_file)

    def uniform_curve(self) -> list[dict[str, Any]] | None:
        return self.read_json(self.curve_file) if self.curve_file.is_file() else None
