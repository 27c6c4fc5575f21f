"""bench_model on a tiny checkpoint and synthetic clips; bench_resample's measurements."""

from __future__ import annotations

import json

import numpy as np
import soundfile

from asr.checkpoint import save_checkpoint
from asr.manifest import Utterance
from asr.text import CharTokenizer
from benchmarks import bench_model, bench_resample
from tests.conftest import tiny_model


def test_bench_model_writes_every_split_and_checks_the_targets(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    clips = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(6000).astype(np.float32), 16000)
        clips.append(Utterance(f"u{i}", str(path), "a b", 0.375, {}))
    monkeypatch.setattr("asr.default.load_split", lambda split, progress=None: clips)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, tiny_model(), CharTokenizer())
    argv = ["--checkpoint", str(checkpoint), "--splits", "test", "trimmed", "--joint-splits", "trimmed",
            "--beam", "2", "--repeats", "1", "--threads", "1", "--output-dir", str(tmp_path)]
    assert bench_model.main(argv) == 0
    result = json.loads((tmp_path / "model.json").read_text())
    model = result["models"][0]
    assert set(model["greedy"]) == {"test", "trimmed"} and set(model["joint"]) == {"trimmed"}
    assert model["greedy"]["test"]["utterances"] == 3
    assert model["search_evaluation_seconds"]["greedy"] > 0
    # An untrained model meets no accuracy target; the check must be able to say so.
    assert model["targets_met"]["test_wer"] is False
    assert model["trimmed_over_test"] == round(
        model["greedy"]["trimmed"]["wer"] / model["greedy"]["test"]["wer"], 3
    )


def test_bench_resample_measures_our_resampler(tmp_path) -> None:
    assert bench_resample.main(["--repeats", "1", "--output-dir", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "resample.json").read_text())["results"]
    ours = {(r["from_hz"], r["to_hz"]): r for r in rows if r["resampler"] == "shrinkml"}
    assert set(ours) == set(bench_resample.CONVERSIONS)
    assert ours[(22050, 16000)]["aliasing_db"] < -60  # the filter's stopband holds
    assert ours[(22050, 16000)]["passband_error_db"] < -60
