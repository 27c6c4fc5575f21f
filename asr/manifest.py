"""NeMo-style JSON-lines manifests: one utterance per line.

A line looks like ``{"audio_filepath": "train/000001.flac", "text": "hello there",
"duration": 2.31, "id": "train-000001", "speaker": "103"}``. ``audio_filepath`` may be
relative: it resolves against the manifest's folder. ``duration`` (seconds) may be left out
when the audio is checked, which reads it from the file's header. ``id`` defaults to the
audio file's stem. Other keys are kept in :attr:`Utterance.extra`.

Reading is forgiving by default: a bad line (malformed JSON, a missing or ill-typed key, a
missing or unreadable audio file, text that normalises to nothing, a repeated id) is
skipped and reported in :attr:`Manifest.skipped`; ``strict=True`` raises on the first one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile

from asr.text import normalise_text
from shrinkml_env.atomic import atomic_file

__all__ = ["Manifest", "SkippedLine", "Utterance", "read_manifest", "write_manifest"]

_CORE_KEYS = ("audio_filepath", "text", "duration", "id")


@dataclass(frozen=True)
class Utterance:
    """One manifest line.

    Attributes:
        id: unique name of the utterance (defaults to the audio file's stem).
        audio_filepath: absolute path of the audio file once read from a manifest.
        text: the transcript as written in the manifest (not normalised).
        duration: length of the audio in seconds.
        extra: any other keys of the line (``"speaker"``, ``"voice"``, ``"words"`` …).
    """

    id: str
    audio_filepath: str
    text: str
    duration: float
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def normalised_text(self) -> str:
        """``normalise_text(text)``: what a model is trained and scored on."""
        return normalise_text(self.text)

    def to_record(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The JSON object of this utterance, its path relative to ``relative_to`` if inside."""
        path = Path(self.audio_filepath)
        if relative_to is not None and path.is_absolute():
            path = Path(os.path.normpath(path))
            try:
                path = path.relative_to(relative_to)
            except ValueError:
                pass  # outside the manifest's folder: stays absolute
        record = {
            "audio_filepath": path.as_posix(),
            "text": self.text,
            "duration": round(float(self.duration), 4),
            "id": self.id,
        }
        record.update((k, v) for k, v in self.extra.items() if k not in _CORE_KEYS)
        return record


@dataclass(frozen=True)
class SkippedLine:
    """A manifest line that was not read, and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Manifest:
    """The readable utterances of a manifest file and the lines that were skipped."""

    path: str
    utterances: list[Utterance]
    skipped: list[SkippedLine]

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    @property
    def total_duration(self) -> float:
        """Sum of the utterances' durations in seconds."""
        return float(sum(u.duration for u in self.utterances))


class _BadLine(Exception):
    """Why one line cannot be read (internal; becomes a SkippedLine or a ValueError)."""


def _parse_line(line: str, folder: Path, check_audio: bool) -> Utterance:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise _BadLine(f"malformed JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(record, dict):
        raise _BadLine(f"expected a JSON object; got {type(record).__name__}")
    for key in ("audio_filepath", "text"):
        if key not in record:
            raise _BadLine(f"missing key {key!r}")
        if not isinstance(record[key], str):
            raise _BadLine(f"{key!r} must be a string; got {record[key]!r}")
    if not normalise_text(record["text"]):
        raise _BadLine(f"text {record['text']!r} is empty after normalisation")
    path = Path(record["audio_filepath"])
    path = Path(os.path.normpath(path if path.is_absolute() else folder / path))
    duration = record.get("duration")
    if check_audio:
        if not path.is_file():
            raise _BadLine(f"audio file {str(path)!r} does not exist")
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError) as e:
            raise _BadLine(f"audio file {str(path)!r} is unreadable: {e}") from e
        if info.frames <= 0:
            raise _BadLine(f"audio file {str(path)!r} holds no samples")
        if duration is None:
            duration = info.frames / info.samplerate
    if duration is None:
        raise _BadLine(
            "missing key 'duration' (or read with check_audio=True to take it from the file)"
        )
    if (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not (math.isfinite(duration) and duration > 0)
    ):
        raise _BadLine(f"'duration' must be a positive number of seconds; got {duration!r}")
    utterance_id = record.get("id", path.stem)
    if not isinstance(utterance_id, str) or not utterance_id:
        raise _BadLine(f"'id' must be a non-empty string; got {utterance_id!r}")
    extra = {k: v for k, v in record.items() if k not in _CORE_KEYS}
    return Utterance(utterance_id, str(path), record["text"], float(duration), extra)


def read_manifest(
    path: str | os.PathLike[str], *, strict: bool = False, check_audio: bool = True
) -> Manifest:
    """Read a JSON-lines manifest.

    Args:
        path: the manifest file.
        strict: raise on the first bad line instead of skipping it.
        check_audio: check that each audio file exists and its header is readable (cheap:
            ``soundfile.info``, no decoding).

    Returns:
        A :class:`Manifest` with absolute audio paths, in file order; blank lines are ignored.

    Raises:
        FileNotFoundError: if the manifest does not exist.
        ValueError: with ``strict=True``, naming the manifest, the line number and the reason.
    """
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"manifest {str(path)!r} does not exist")
    utterances: list[Utterance] = []
    skipped: list[SkippedLine] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                utterance = _parse_line(line, path.parent, check_audio)
                if utterance.id in seen:
                    raise _BadLine(f"duplicate id {utterance.id!r}")
            except _BadLine as e:
                bad = SkippedLine(str(path), number, str(e))
                if strict:
                    raise ValueError(f"bad manifest line {bad}") from e
                skipped.append(bad)
                continue
            seen.add(utterance.id)
            utterances.append(utterance)
    return Manifest(str(path), utterances, skipped)


def write_manifest(path: str | os.PathLike[str], utterances: Iterable[Utterance]) -> int:
    """Write utterances as a JSON-lines manifest, atomically.

    Audio paths inside the manifest's folder are written relative to it, so the folder can
    be moved as a whole; others stay absolute. Relative paths of ``utterances`` are taken
    as relative to the manifest's folder.

    Args:
        path: the manifest file; its folder must exist.
        utterances: what to write, in order.

    Returns:
        The number of lines written.
    """
    path = Path(os.path.abspath(path))
    folder = path.parent
    count = 0
    with atomic_file(path, "w", encoding="utf-8") as f:
        for utterance in utterances:
            f.write(json.dumps(utterance.to_record(folder), ensure_ascii=False) + "\n")
            count += 1
    return count
