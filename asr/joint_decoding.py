"""Joint CTC/attention beam search: decoding that cannot stop early or loop.

An attention decoder alone can end a transcript after a word (it emits ``<eos>`` when its
attention loses the speech, as on clips that start without silence) or repeat a phrase until
the length cap. The CTC head sees the whole utterance at once and has no such failure: the
CTC *prefix* probability of a hypothesis (Watanabe et al., "Hybrid CTC/attention
architecture for end-to-end speech recognition", 2017) is high only if the rest of the
audio can still be explained after it, and ``<eos>`` scores the probability that the whole
audio is explained. Every hypothesis is scored

    score = (1 - ctc_weight) · log p_att(y) + ctc_weight · log p_ctc-prefix(y) + bonus · |y|

The whole batch is searched at once: the hypotheses of every utterance are rows of one
decoder batch, and one pass over the frames extends the CTC prefix scores of all of them
(frames past an utterance's end are padded so that they change nothing), so the cost per
step is a handful of array operations per frame, not per frame and utterance.

Written here because no maintained library offers CTC prefix scoring over a custom torch
decoder without pulling in a whole toolkit (ESPnet, SpeechBrain); torchaudio's CTC decoder
scores CTC only, and is an optional extra here.

Shape legend: ``B`` batch size; ``T`` encoder frames; ``V`` output symbols; ``N`` live
hypotheses of the whole batch; ``C`` candidate tokens per hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asr.decoding import _select
from asr.model import ASRModel
from asr.text import CharTokenizer

__all__ = ["JointConfig", "joint_beam_search"]

_NEG = -1e30


@dataclass(frozen=True)
class JointConfig:
    """Joint CTC/attention beam search settings."""

    beam_size: int = 4  # hypotheses kept per utterance and step
    ctc_weight: float = 0.3  # weight of the CTC prefix score, in (0, 1]; chosen on dev
    candidates: int = 6  # tokens per hypothesis scored by CTC: the attention's best ones
    length_bonus: float = 0.0  # added per output token (> 0 favours longer transcripts)

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1; got {self.beam_size}")
        if not 0.0 < self.ctc_weight <= 1.0:
            # Without CTC nothing controls the length: unnormalised attention scores favour
            # ending early (on dev, 85 % of transcripts came out under half length).
            raise ValueError(
                f"ctc_weight must be in (0, 1]; got {self.ctc_weight}. For attention-only beam "
                "search use asr.decoding.BeamConfig (length-normalised; --beam N without --ctc-weight)"
            )
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1; got {self.candidates}")


def padded_ctc_log_probs(log_probs: np.ndarray, lengths: np.ndarray, blank: int) -> np.ndarray:
    """``(T, B, V)`` CTC log-probabilities whose frames past each length emit blank surely.

    A blank with probability one after the end leaves every prefix score and every
    whole-utterance score as it was at the last real frame.
    """
    out = log_probs.copy()
    for b, length in enumerate(lengths):
        out[length:, b, :] = _NEG
        out[length:, b, blank] = 0.0
    return out


def ctc_initial(x: np.ndarray, blank: int) -> tuple[np.ndarray, np.ndarray]:
    """States ``(r_n, r_b)``, each ``(T, B)``, of the empty hypothesis of each utterance.

    ``r_n[t]`` / ``r_b[t]``: log-probability that frames ``0..t`` emit exactly the hypothesis
    and end in a non-blank / a blank.
    """
    return np.full(x.shape[:2], _NEG), np.cumsum(x[:, :, blank], axis=0)


def ctc_extend(
    x: np.ndarray,
    rows: np.ndarray,
    r_n: np.ndarray,
    r_b: np.ndarray,
    last: np.ndarray,
    tokens: np.ndarray,
    blank: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CTC prefix scores of every hypothesis extended by each of its candidate tokens.

    Args:
        x: ``(T, B, V)`` padded CTC log-probabilities (:func:`padded_ctc_log_probs`).
        rows: ``(N,)`` utterance of each hypothesis.
        r_n, r_b: ``(T, N)`` states of the hypotheses.
        last: ``(N,)`` last token of each hypothesis (-1 for the empty one).
        tokens: ``(N, C)`` candidate tokens (not blank, not ``<eos>``).

    Returns:
        ``(new_r_n (T, N, C), new_r_b (T, N, C), prefix log-probability (N, C))``.
    """
    xc = x[:, rows[:, None], tokens]  # (T, N, C)
    x_blank = x[:, rows, blank][:, :, None]  # (T, N, 1)
    total = np.logaddexp(r_n, r_b)[:, :, None]
    # A repeated token needs a blank between the two, so only r_b continues into it.
    phi = np.where(tokens[None] == last[None, :, None], r_b[:, :, None], total)
    new_n = np.empty(xc.shape)
    new_b = np.empty(xc.shape)
    new_n[0] = np.where(last[:, None] < 0, xc[0], _NEG)
    new_b[0] = _NEG
    for t in range(1, xc.shape[0]):
        new_n[t] = np.logaddexp(new_n[t - 1], phi[t - 1]) + xc[t]
        new_b[t] = np.logaddexp(new_b[t - 1], new_n[t - 1]) + x_blank[t]
    prefix = np.logaddexp.reduce(np.concatenate([new_n[:1], phi[:-1] + xc[1:]]), axis=0)
    return new_n, new_b, prefix


def ctc_final(r_n: np.ndarray, r_b: np.ndarray) -> np.ndarray:
    """Log-probability that each whole utterance is exactly its hypothesis: ``(N,)``."""
    return np.logaddexp(r_n[-1], r_b[-1])


@torch.inference_mode()
def joint_beam_search(
    model: ASRModel, features: torch.Tensor, frames: torch.Tensor, config: JointConfig | None = None
) -> list[list[int]]:
    """Joint CTC/attention beam search of a batch, all hypotheses of all utterances at once.

    Args:
        features: ``(B, T, F)`` normalised features.
        frames: ``(B,)`` valid frames.

    Returns:
        One token-id list per row, without ``<sos>``/``<eos>``.

    Raises:
        ValueError: if the model has no CTC head.
    """
    config = config or JointConfig()
    tok = CharTokenizer
    weight, bonus = config.ctc_weight, config.length_bonus
    encoded, lengths = model.encode(features, frames)
    batch = encoded.shape[0]
    caps = model.max_decode_steps(lengths).tolist()
    raw = model.ctc_log_probs(encoded).double().cpu().numpy().transpose(1, 0, 2)
    x = padded_ctc_log_probs(raw, lengths.cpu().numpy(), tok.blank_id)
    r_n, r_b = ctc_initial(x, tok.blank_id)
    state = model.initial_state(encoded, lengths)
    # The live hypotheses, one row each: utterance, tokens, attention and CTC log-probs.
    rows = np.arange(batch)
    hyps: list[list[int]] = [[] for _ in range(batch)]
    att_score = np.zeros(batch)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    step = 0
    while rows.size:
        last = torch.tensor([h[-1] if h else tok.sos_id for h in hyps], dtype=torch.long, device=encoded.device)
        logits, state = model.decoder_step(last, state)
        att = torch.log_softmax(logits, dim=1).double().cpu().numpy()  # (N, V)
        att[:, [tok.sos_id, tok.blank_id]] = _NEG
        # Ending every hypothesis here, scored by how well it explains the whole audio.
        end = (1 - weight) * (att_score + att[:, tok.eos_id]) + weight * ctc_final(r_n, r_b)
        end = end + bonus * np.array([len(h) for h in hyps])
        for n, utterance in enumerate(rows):
            finished[utterance].append((float(end[n]), hyps[n]))
        att[:, tok.eos_id] = _NEG
        candidates = np.argsort(-att, axis=1)[:, : config.candidates]  # (N, C)
        att_next = att_score[:, None] + np.take_along_axis(att, candidates, 1)
        last_np = np.array([h[-1] if h else -1 for h in hyps])
        new_n, new_b, prefix = ctc_extend(x, rows, r_n, r_b, last_np, candidates, tok.blank_id)
        joint = (1 - weight) * att_next + weight * prefix
        step += 1
        keep_parent, keep_cand = [], []
        for utterance in np.unique(rows):
            mine = np.flatnonzero(rows == utterance)
            scores = joint[mine]
            order = np.argsort(-scores, axis=None)[: config.beam_size]
            parents, cands = np.unravel_index(order, scores.shape)
            best_open = float(scores[parents[0], cands[0]]) + bonus * (len(hyps[mine[0]]) + 1)
            best_end = max(score for score, _ in finished[utterance])
            # Scores only fall as hypotheses grow (bonus aside): stop once no live one can win.
            if (bonus <= 0 and best_end >= best_open) or step >= caps[utterance]:
                if step >= caps[utterance]:  # length cap: the live ones end here as they are
                    for p, c in zip(parents, cands):
                        tokens = [*hyps[mine[p]], int(candidates[mine[p], c])]
                        finished[utterance].append((float(scores[p, c]), tokens))
                continue
            keep_parent.extend(mine[parents])
            keep_cand.extend(cands)
        parent, cand = np.array(keep_parent, dtype=int), np.array(keep_cand, dtype=int)
        hyps = [[*hyps[p], int(candidates[p, c])] for p, c in zip(parent, cand)]
        att_score = att_next[parent, cand]
        rows = rows[parent]
        if rows.size:
            state = _select(state, torch.as_tensor(parent, dtype=torch.long, device=encoded.device))
            r_n, r_b = new_n[:, parent, cand], new_b[:, parent, cand]
    return [max(options, key=lambda item: item[0])[1] for options in finished]
