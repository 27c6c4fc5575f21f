"""Joint CTC/attention beam search: the CTC prefix scorer is exact, and decoding agrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asr.joint_decoding import (
    JointConfig,
    ctc_extend,
    ctc_final,
    ctc_initial,
    joint_beam_search,
    padded_ctc_log_probs,
)
from asr.text import CharTokenizer
from tests.conftest import tiny_model, toy_batch
from tests.test_model import _train_toy


def _chain_final(log_probs: np.ndarray, labels: list[int], blank: int, padding: int = 0) -> float:
    """Extend the empty hypothesis token by token, then score the whole utterance
    (``padding`` frames of garbage after it, which the padding must neutralise)."""
    frames = log_probs.shape[0]
    noise = np.log(np.full((padding, log_probs.shape[1]), 1.0 / log_probs.shape[1]))
    x = padded_ctc_log_probs(np.concatenate([log_probs, noise])[:, None], np.array([frames]), blank)
    r_n, r_b = ctc_initial(x, blank)
    rows, last = np.array([0]), np.array([-1])
    for label in labels:
        new_n, new_b, _ = ctc_extend(x, rows, r_n, r_b, last, np.array([[label]]), blank)
        r_n, r_b, last = new_n[:, :, 0], new_b[:, :, 0], np.array([label])
    return float(ctc_final(r_n, r_b)[0])


@pytest.mark.parametrize("labels", [[1], [1, 2], [2, 2], [1, 1, 2, 3], [3, 1, 3]])
def test_prefix_scorer_final_equals_ctc_likelihood(labels):
    gen = torch.Generator().manual_seed(len(labels))
    log_probs = torch.log_softmax(torch.randn(12, 5, generator=gen, dtype=torch.float64), dim=1)
    ours = _chain_final(log_probs.numpy(), labels, blank=0)
    padded = _chain_final(log_probs.numpy(), labels, blank=0, padding=5)
    loss = F.ctc_loss(
        log_probs[:, None], torch.tensor([labels]), torch.tensor([12]), torch.tensor([len(labels)]),
        blank=0, reduction="sum",
    )
    assert ours == pytest.approx(-float(loss), abs=1e-9)
    assert padded == pytest.approx(ours, abs=1e-9)  # frames past the end change nothing


def test_prefix_score_bounds_every_continuation():
    # The prefix probability of "a" is the sum over all transcripts starting with "a".
    gen = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(4, 3, generator=gen, dtype=torch.float64), dim=1).numpy()
    x = log_probs[:, None]
    r_n, r_b = ctc_initial(x, 0)
    _, _, prefix = ctc_extend(x, np.array([0]), r_n, r_b, np.array([-1]), np.array([[1]]), 0)
    tails = [[], [1], [2], [1, 2], [2, 1], [2, 2], [1, 2, 1], [2, 1, 2], [1, 2, 2], [2, 2, 1],
             [2, 1, 1], [2, 2, 2], [1, 1], [1, 1, 2], [1, 2, 1, 2], [2, 1, 2, 1], [1, 1, 1],
             [2, 2, 1, 1], [2, 1, 1, 2], [1, 1, 2, 2], [1, 2, 2, 1], [2, 2, 2, 1]]
    total = np.logaddexp.reduce([_chain_final(log_probs, [1, *tail], 0) for tail in tails])
    assert float(prefix[0, 0]) >= total - 1e-12
    # With 4 frames, transcripts longer than 4 cannot occur; the listed ones include every
    # string of length <= 3 over {1, 2} starting with 1, so the bound is tight up to the
    # length-4 ones left out.
    assert float(prefix[0, 0]) < total + 1.0


def test_joint_search_matches_greedy_on_learnt_toy_and_validates():
    model, _ = _train_toy()
    tok = CharTokenizer()
    feats, frames, _, _, texts = toy_batch(8, torch.Generator().manual_seed(123))
    joint = [tok.decode(x) for x in joint_beam_search(model, feats, frames, JointConfig(beam_size=3))]
    assert sum(j == t for j, t in zip(joint, texts)) >= 6, (joint, texts)
    ctc_only = joint_beam_search(model, feats, frames, JointConfig(beam_size=3, ctc_weight=1.0))
    assert sum(j == t for j, t in zip(map(tok.decode, ctc_only), texts)) >= 6
    with pytest.raises(ValueError, match=r"ctc_weight must be in \(0, 1\]; got 1.5"):
        JointConfig(ctc_weight=1.5)
    with pytest.raises(ValueError, match=r"got 0.0. For attention-only beam search use"):
        JointConfig(ctc_weight=0.0)


def test_joint_search_is_length_capped_on_untrained_model():
    model = tiny_model().eval()
    feats, frames, _, _, _ = toy_batch(3, torch.Generator().manual_seed(5))
    out = joint_beam_search(model, feats, frames, JointConfig(beam_size=2))
    caps = model.max_decode_steps(model.encoder_frames(frames))
    assert all(len(o) <= int(c) for o, c in zip(out, caps))


def test_joint_search_of_a_batch_equals_each_utterance_alone():
    model, _ = _train_toy()
    feats, frames, _, _, _ = toy_batch(5, torch.Generator().manual_seed(7))
    config = JointConfig(beam_size=3)
    together = joint_beam_search(model, feats, frames, config)
    alone = [joint_beam_search(model, feats[b : b + 1, : int(frames[b])], frames[b : b + 1], config)[0]
             for b in range(5)]
    assert together == alone
