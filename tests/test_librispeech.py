"""Tests for asr.corpus.librispeech on a tiny fixture in LibriSpeech's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.corpus.librispeech import librispeech_to_manifest
from asr.manifest import read_manifest

_TRANSCRIPTS = {
    ("103", "1240"): [
        "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED",
        "THAT HAD ITS SOURCE AWAY BACK",
    ],
    ("1034", "121119"): ["THE KING'S DAUGHTER"],
}


@pytest.fixture
def split_dir(tmp_path) -> Path:
    root = tmp_path / "LibriSpeech" / "dev-tiny"
    for (speaker, chapter), lines in _TRANSCRIPTS.items():
        folder = root / speaker / chapter
        folder.mkdir(parents=True)
        rows = []
        for n, text in enumerate(lines):
            utterance_id = f"{speaker}-{chapter}-{n:04d}"
            soundfile.write(folder / f"{utterance_id}.flac", np.full(1600 * (n + 1), 0.1), 16000)
            rows.append(f"{utterance_id} {text}\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(rows))
    return root


def test_librispeech_manifest_has_ids_speakers_text_and_durations(split_dir, tmp_path) -> None:
    out = tmp_path / "manifests" / "dev-tiny.jsonl"
    assert librispeech_to_manifest(split_dir, out) == 3
    manifest = read_manifest(out, strict=True)
    assert [u.id for u in manifest] == ["103-1240-0000", "103-1240-0001", "1034-121119-0000"]
    first = manifest.utterances[0]
    assert first.text == "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED"
    assert first.extra == {"speaker": "103", "chapter": "1240"}
    assert first.duration == pytest.approx(0.1)
    assert manifest.utterances[1].duration == pytest.approx(0.2)
    assert Path(first.audio_filepath) == split_dir / "103" / "1240" / "103-1240-0000.flac"
    assert manifest.utterances[2].normalised_text == "the king's daughter"


def test_transcript_naming_a_missing_file_is_an_error(split_dir, tmp_path) -> None:
    (split_dir / "103" / "1240" / "103-1240-0001.flac").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"103-1240\.trans\.txt:2 names utterance '103-1240-0001'"
    ):
        librispeech_to_manifest(split_dir, tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_folder_without_transcripts_is_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"expected a LibriSpeech split folder"):
        librispeech_to_manifest(tmp_path, tmp_path / "m.jsonl")
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        librispeech_to_manifest(tmp_path / "nope", tmp_path / "m.jsonl")
