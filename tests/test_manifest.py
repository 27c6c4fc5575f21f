"""Tests for asr.manifest: round trips, relative paths and the report of bad lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.manifest import Utterance, read_manifest, write_manifest


def _wav(path: Path, seconds: float = 0.25, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.full(int(seconds * rate), 0.1, dtype=np.float32), rate)
    return path


def _lines(path: Path, *records: object) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


def test_round_trip_keeps_fields_and_writes_relative_paths(tmp_path) -> None:
    inside = _wav(tmp_path / "data" / "audio" / "one.wav")
    outside = _wav(tmp_path / "elsewhere" / "two.flac")
    manifest = tmp_path / "data" / "set.jsonl"
    utterances = [
        Utterance(
            "u1", str(inside), "Hello there!", 0.25, {"speaker": "s1", "voice": {"rate": 175}}
        ),
        Utterance("u2", str(outside), "it's 42", 0.25),
    ]
    assert write_manifest(manifest, utterances) == 2

    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert records[0]["audio_filepath"] == "audio/one.wav"
    assert records[1]["audio_filepath"] == str(outside)
    assert records[0]["speaker"] == "s1"

    read = read_manifest(manifest)
    assert read.skipped == []
    assert read.utterances == utterances
    assert read.utterances[1].normalised_text == "it's forty two"
    assert read.total_duration == pytest.approx(0.5)


def test_relative_paths_resolve_against_the_manifest_folder_and_ids_default_to_stem(
    tmp_path,
) -> None:
    audio = _wav(tmp_path / "clips" / "abc-001.wav")
    manifest = _lines(
        tmp_path / "m.jsonl",
        {"audio_filepath": "clips/abc-001.wav", "text": "hi", "duration": 0.25},
    )
    (utterance,) = read_manifest(manifest).utterances
    assert utterance.audio_filepath == str(audio)
    assert utterance.id == "abc-001"


def test_duration_is_read_from_the_header_when_missing(tmp_path) -> None:
    _wav(tmp_path / "a.wav", seconds=0.5)
    manifest = _lines(tmp_path / "m.jsonl", {"audio_filepath": "a.wav", "text": "hi"})
    assert read_manifest(manifest).utterances[0].duration == pytest.approx(0.5)
    skipped = read_manifest(manifest, check_audio=False).skipped
    assert "missing key 'duration'" in skipped[0].reason


def test_check_audio_false_does_not_open_files(tmp_path) -> None:
    manifest = _lines(
        tmp_path / "m.jsonl", {"audio_filepath": "gone.wav", "text": "hi", "duration": 1.0}
    )
    assert len(read_manifest(manifest, check_audio=False)) == 1
    assert len(read_manifest(manifest)) == 0


BAD_LINES = [
    ('{"audio_filepath": "a.wav", "text": ', "malformed JSON"),
    ('["a.wav", "hi"]', "expected a JSON object"),
    ({"audio_filepath": "a.wav", "duration": 0.25}, "missing key 'text'"),
    ({"text": "hi", "duration": 0.25}, "missing key 'audio_filepath'"),
    (
        {"audio_filepath": "missing.wav", "text": "hi", "duration": 0.25},
        r"missing\.wav' does not exist",
    ),
    ({"audio_filepath": "junk.wav", "text": "hi", "duration": 0.25}, r"junk\.wav' is unreadable"),
    ({"audio_filepath": "a.wav", "text": "?! --", "duration": 0.25}, "empty after normalisation"),
    (
        {"audio_filepath": "a.wav", "text": "hi", "duration": -1},
        "'duration' must be a positive number",
    ),
    ({"audio_filepath": "a.wav", "text": 7, "duration": 0.25}, "'text' must be a string"),
    (
        {"audio_filepath": "a.wav", "text": "hi", "duration": 0.25, "id": "good"},
        "duplicate id 'good'",
    ),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_LINES)
def test_bad_lines_are_skipped_with_line_numbers_or_raise_when_strict(
    tmp_path, bad, reason
) -> None:
    _wav(tmp_path / "a.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wave file" * 20)
    good = {"audio_filepath": "a.wav", "text": "fine", "duration": 0.25, "id": "good"}
    manifest = _lines(tmp_path / "m.jsonl", good, "", bad, dict(good, id="other"))

    read = read_manifest(manifest)
    assert [u.id for u in read.utterances] == ["good", "other"]
    (skipped,) = read.skipped
    assert skipped.line == 3 and skipped.file == str(manifest)
    assert re.search(reason, skipped.reason)

    with pytest.raises(ValueError, match=rf"m\.jsonl:3: .*{reason}"):
        read_manifest(manifest, strict=True)


def test_missing_manifest_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl' does not exist"):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_is_atomic_on_failure(tmp_path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("old\n")

    def broken():
        yield Utterance("a", str(tmp_path / "a.wav"), "hi", 1.0)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_manifest(manifest, broken())
    assert manifest.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]
