"""``shrinkml evaluate``: decoders, the collapse figure, and its bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from agents.cli import main
from asr.checkpoint import save_checkpoint
from asr.data import FeatureBatch
from asr.decoding import CTCBestPath, ctc_greedy, greedy_decode
from asr.evaluate import Evaluation, decode_batches
from asr.metrics import error_rates
from asr.text import CharTokenizer
from tests.conftest import tiny_model


def test_short_fraction_counts_collapsed_transcripts() -> None:
    refs = ("one two three four", "five six", "seven eight nine ten")
    hyps = ("one two three four", "", "seven")
    evaluation = Evaluation(error_rates(list(refs), list(hyps)), 0.0, ("a", "b", "c"), refs, hyps)
    assert evaluation.short_fraction() == pytest.approx(2 / 3)


@pytest.fixture
def manifest_and_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(8000 + 1000 * i).astype(np.float32), 16000)
        lines.append(json.dumps({"audio_filepath": str(path), "text": "a b", "duration": 0.5}))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, tiny_model(), CharTokenizer())
    return manifest, checkpoint


@pytest.mark.parametrize(
    ("decoder", "label"),
    [([], "greedy"), (["--beam", "2"], "beam2"), (["--beam", "2", "--ctc-weight", "0.3"], "joint-beam2-ctc0.3"),
     (["--ctc-only"], "ctc-best-path")],
)
def test_evaluate_reports_wer_and_collapses_for_each_decoder(manifest_and_checkpoint, capsys, decoder, label):
    manifest, checkpoint = manifest_and_checkpoint
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--json", *decoder]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["decoding"] == label and report["utterances"] == 3
    assert 0.0 <= report["short_fraction"] <= 1.0 and report["wer"] >= 0.0


def test_evaluate_refuses_a_ctc_weight_without_a_beam(manifest_and_checkpoint, capsys):
    manifest, checkpoint = manifest_and_checkpoint
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--ctc-weight", "0.3"]
    assert main(argv) == 2
    assert "--ctc-weight 0.3 needs --beam N" in capsys.readouterr().err


def test_evaluate_refuses_ctc_only_with_a_beam(manifest_and_checkpoint, capsys):
    manifest, checkpoint = manifest_and_checkpoint
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--ctc-only", "--beam", "2"]
    assert main(argv) == 2
    assert "--ctc-only decodes the CTC head's best path" in capsys.readouterr().err


def test_decode_batches_ctc_best_path_is_the_ctc_heads_output_not_the_decoders() -> None:
    model, tokenizer = tiny_model(seed=3).eval(), CharTokenizer()
    features = torch.randn(3, 40, model.config.n_mels, generator=torch.Generator().manual_seed(0))
    frames = torch.tensor([40, 31, 22])
    batch = FeatureBatch(features, frames, ["a", "b", "c"], ["x", "y", "z"], torch.zeros(3, 1, dtype=torch.long))
    ctc = [tokenizer.decode(ids) for ids in ctc_greedy(model, features, frames)]
    attention = [tokenizer.decode(ids) for ids in greedy_decode(model, features, frames)]
    assert ctc != attention  # so the check below can tell the two apart
    assert decode_batches(model, tokenizer, [batch], CTCBestPath()) == ctc
    assert decode_batches(model, tokenizer, [batch]) == attention
