"""Shared fixtures: a toy speech-like task that tiny models learn in seconds."""

from __future__ import annotations

import pytest
import torch

from asr.model import ASRModel, build_model
from asr.text import CharTokenizer
from shrinkml_env.plan import CompressionPlan
from shrinkml_env.target import toy_target

# Tiny models run fastest on one thread, and CI's two cores may be shared: extra intra-op
# threads only spin against each other.
torch.set_num_threads(1)

TOY_LETTERS = "abcd"
FRAMES_PER_CHAR = 6


def toy_batch(
    n: int, generator: torch.Generator, n_mels: int = 80
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Feature sequences in which each character is a distinct band of bins held for 6 frames.

    Returns ``(features (B, T, F), frames (B,), targets (B, U), target_lengths (B,), texts)``.
    """
    tok = CharTokenizer()
    texts = []
    for _ in range(n):
        length = int(torch.randint(2, 6, (1,), generator=generator))
        idx = torch.randint(0, len(TOY_LETTERS), (length,), generator=generator).tolist()
        texts.append("".join(TOY_LETTERS[i] for i in idx))
    frames = torch.tensor([len(t) * FRAMES_PER_CHAR for t in texts])
    features = 0.1 * torch.randn(n, int(frames.max()), n_mels, generator=generator)
    for b, text in enumerate(texts):
        for k, ch in enumerate(text):
            band = TOY_LETTERS.index(ch) * (n_mels // len(TOY_LETTERS))
            rows = slice(k * FRAMES_PER_CHAR, (k + 1) * FRAMES_PER_CHAR)
            features[b, rows, band : band + n_mels // len(TOY_LETTERS)] += 1.0
        features[b, int(frames[b]) :] = 0.0
    ids = [tok.encode(t) for t in texts]
    targets = torch.zeros(n, max(map(len, ids)) + 2, dtype=torch.long)
    for b, t in enumerate(ids):
        targets[b, : len(t) + 2] = torch.tensor([tok.sos_id, *t, tok.eos_id])
    return features, frames, targets, torch.tensor([len(t) for t in ids]), texts


def tiny_model(seed: int = 0, **overrides) -> ASRModel:
    torch.manual_seed(seed)
    return build_model("tiny", **overrides)


@pytest.fixture(scope="module")
def target():
    """The env's millisecond toy compression target."""
    return toy_target()


@pytest.fixture
def decodes(monkeypatch):
    """Counts every decode of the search data, whichever env asks for it."""
    calls = []
    original = CompressionPlan.evaluate

    def counting(self, ranks):
        calls.append(tuple(ranks))
        return original(self, ranks)

    monkeypatch.setattr(CompressionPlan, "evaluate", counting)
    return calls
