"""Manifests for LibriSpeech splits in their standard layout.

A split folder (``LibriSpeech/test-clean``) holds ``<speaker>/<chapter>/`` folders, each
with ``<speaker>-<chapter>-<nnnn>.flac`` files and one ``<speaker>-<chapter>.trans.txt``
whose lines read ``103-1240-0000 CHAPTER ONE MISSUS RACHEL LYNDE …``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import soundfile

from asr.manifest import Utterance, write_manifest

__all__ = ["librispeech_to_manifest"]


def _utterances(split_dir: Path) -> Iterator[Utterance]:
    transcripts = sorted(split_dir.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise ValueError(
            f"no '<speaker>/<chapter>/<speaker>-<chapter>.trans.txt' under {str(split_dir)!r}; "
            "expected a LibriSpeech split folder such as LibriSpeech/test-clean"
        )
    for transcript in transcripts:
        speaker, chapter = transcript.parent.parent.name, transcript.parent.name
        with transcript.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                utterance_id, _, text = line.strip().partition(" ")
                audio = transcript.parent / f"{utterance_id}.flac"
                if not audio.is_file():
                    raise FileNotFoundError(
                        f"{transcript}:{number} names utterance {utterance_id!r} but {audio} "
                        "does not exist"
                    )
                info = soundfile.info(str(audio))
                yield Utterance(
                    id=utterance_id,
                    audio_filepath=str(audio),
                    text=text.strip(),
                    duration=info.frames / info.samplerate,
                    extra={"speaker": speaker, "chapter": chapter},
                )


def librispeech_to_manifest(
    split_dir: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> int:
    """Write a manifest of every utterance of a LibriSpeech split.

    Utterances are ordered by speaker, chapter and number; ids are LibriSpeech's
    (``"103-1240-0000"``), the transcript is kept as given (upper case), and each line
    records ``speaker`` and ``chapter``. Audio paths are absolute unless the manifest lies
    in a folder above the split.

    Args:
        split_dir: the split folder (``.../LibriSpeech/dev-clean``).
        out_path: the manifest to write (atomically); its folder is created if missing.

    Returns:
        The number of utterances written.

    Raises:
        ValueError: if ``split_dir`` holds no LibriSpeech transcripts.
        FileNotFoundError: if ``split_dir`` is missing or a transcript names a missing file.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"LibriSpeech split folder {str(split_dir)!r} does not exist")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_manifest(out_path, _utterances(split_dir.absolute()))
