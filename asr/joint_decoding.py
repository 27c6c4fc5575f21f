"""Joint CTC/attention beam search: decoding that cannot stop early or loop.

An attention decoder alone can end a transcript after a word (it emits ``<eos>`` when its
attention loses the speech, as on clips that start without silence) or repeat a phrase until
the length cap. The CTC head sees the whole utterance at once and has no such failure: the
CTC *prefix* probability of a hypothesis (Watanabe et al., "Hybrid CTC/attention
architecture for end-to-end speech recognition", 2017) is high only if the rest of the
audio can still be explained after it, and ``<eos>`` scores the probability that the whole
audio is explained. Every hypothesis is scored

    score = (1 - ctc_weight) · log p_att(y) + ctc_weight · log p_ctc-prefix(y) + bonus · |y|

Written here because no maintained library offers CTC prefix scoring over a custom torch
decoder without pulling in a whole toolkit (ESPnet, SpeechBrain); torchaudio's CTC decoder
scores CTC only, and is an optional extra here.

Shape legend: ``B`` batch size; ``T`` encoder frames; ``V`` output symbols; ``K`` live
hypotheses; ``C`` candidate tokens per hypothesis.
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

    beam_size: int = 4  # hypotheses kept per step
    ctc_weight: float = 0.3  # weight of the CTC prefix score (0: attention only, 1: CTC only)
    candidates: int = 6  # tokens per hypothesis scored by CTC, the attention's best ones
    length_bonus: float = 0.0  # added per output token (> 0 favours longer transcripts)

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1; got {self.beam_size}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1]; got {self.ctc_weight}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1; got {self.candidates}")


class _CTCPrefixScorer:
    """CTC prefix log-probabilities of growing hypotheses over one utterance's frames.

    Each hypothesis carries ``(r_n, r_b)``: the log-probabilities, for every frame t, that
    frames ``0..t`` emit exactly the hypothesis and end in a non-blank (``r_n``) or a blank
    (``r_b``). Extending by a token needs one pass over the frames.
    """

    def __init__(self, log_probs: np.ndarray, blank: int) -> None:
        self.x = log_probs  # (T, V)
        self.blank = blank
        self.frames = log_probs.shape[0]

    def initial(self) -> tuple[np.ndarray, np.ndarray, float]:
        """State of the empty hypothesis: ``(r_n (T,), r_b (T,), prefix score 0)``."""
        r_n = np.full(self.frames, _NEG)
        r_b = np.cumsum(self.x[:, self.blank])
        return r_n, r_b, 0.0

    def extend(
        self, r_n: np.ndarray, r_b: np.ndarray, last: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prefix scores of every hypothesis extended by each of its candidate tokens.

        Args:
            r_n, r_b: ``(T, K)`` states of the hypotheses.
            last: ``(K,)`` last token of each hypothesis (-1 for the empty one).
            tokens: ``(K, C)`` candidate tokens (not blank, not ``<eos>``).

        Returns:
            ``(new_r_n (T, K, C), new_r_b (T, K, C), prefix log-probability (K, C))``.
        """
        x = self.x[:, tokens]  # (T, K, C)
        total = np.logaddexp(r_n, r_b)[:, :, None]  # (T, K, 1)
        # A repeated token needs a blank between the two, so only r_b continues into it.
        phi = np.where(tokens[None] == last[None, :, None], r_b[:, :, None], total)
        new_n = np.full(x.shape, _NEG)
        new_b = np.full(x.shape, _NEG)
        new_n[0] = np.where(last[:, None] < 0, x[0], _NEG)
        blank = self.x[:, self.blank]
        for t in range(1, self.frames):
            new_n[t] = np.logaddexp(new_n[t - 1], phi[t - 1]) + x[t]
            new_b[t] = np.logaddexp(new_b[t - 1], new_n[t - 1]) + blank[t]
        prefix = np.logaddexp.reduce(np.concatenate([new_n[:1], phi[:-1] + x[1:]]), axis=0)
        return new_n, new_b, prefix

    @staticmethod
    def final(r_n: np.ndarray, r_b: np.ndarray) -> np.ndarray:
        """Log-probability that the whole utterance is exactly each hypothesis: ``(K,)``."""
        return np.logaddexp(r_n[-1], r_b[-1])


@torch.inference_mode()
def joint_beam_search(
    model: ASRModel, features: torch.Tensor, frames: torch.Tensor, config: JointConfig | None = None
) -> list[list[int]]:
    """Joint CTC/attention beam search, one utterance at a time, its hypotheses batched.

    Args:
        features: ``(B, T, F)`` normalised features.
        frames: ``(B,)`` valid frames.

    Returns:
        One token-id list per row, without ``<sos>``/``<eos>``.

    Raises:
        ValueError: if the model has no CTC head and ``ctc_weight`` > 0.
    """
    config = config or JointConfig()
    tok = CharTokenizer
    encoded_all, lengths_all = model.encode(features, frames)
    ctc_all = model.ctc_log_probs(encoded_all).double().cpu().numpy() if config.ctc_weight else None
    weight = config.ctc_weight
    results: list[list[int]] = []
    for b in range(features.shape[0]):
        length = int(lengths_all[b])
        encoded, lengths = encoded_all[b : b + 1, :length], lengths_all[b : b + 1]
        cap = int(model.max_decode_steps(lengths)[0])
        state = model.initial_state(encoded, lengths)
        scorer = _CTCPrefixScorer(ctc_all[b, :length], tok.blank_id) if ctc_all is not None else None
        if scorer is not None:
            r_n0, r_b0, _ = scorer.initial()
            r_n, r_b = r_n0[:, None], r_b0[:, None]
        # Per live hypothesis: tokens, attention log-prob, CTC prefix log-prob.
        hyps: list[tuple[list[int], float, float]] = [([], 0.0, 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(cap):
            last = torch.tensor([h[-1] if h else tok.sos_id for h, _, _ in hyps], dtype=torch.long)
            logits, state = model.decoder_step(last, state)
            att = torch.log_softmax(logits, dim=1).double().cpu().numpy()  # (K, V)
            att[:, [tok.sos_id, tok.blank_id]] = _NEG
            # End every hypothesis here: scored by how well it explains the whole audio.
            for k, (tokens, att_score, _) in enumerate(hyps):
                ctc_end = float(scorer.final(r_n[:, k : k + 1], r_b[:, k : k + 1])[0]) if scorer else 0.0
                joint = (1 - weight) * (att_score + att[k, tok.eos_id]) + weight * ctc_end
                finished.append((tokens, joint + config.length_bonus * len(tokens)))
            att[:, tok.eos_id] = _NEG
            candidates = np.argsort(-att, axis=1)[:, : config.candidates]  # (K, C)
            att_next = np.array([h[1] for h in hyps])[:, None] + np.take_along_axis(att, candidates, 1)
            if scorer is not None:
                last_np = np.array([h[-1] if h else -1 for h, _, _ in hyps])
                new_n, new_b, prefix = scorer.extend(r_n, r_b, last_np, candidates)
                ctc_next = prefix
            else:
                ctc_next = np.zeros_like(att_next)
            joint = (1 - weight) * att_next + weight * ctc_next
            order = np.argsort(-joint, axis=None)[: config.beam_size]
            rows, cols = np.unravel_index(order, joint.shape)
            new_hyps = [
                (hyps[r][0] + [int(candidates[r, c])], float(att_next[r, c]), float(ctc_next[r, c]))
                for r, c in zip(rows, cols)
            ]
            best_open = float(joint[rows[0], cols[0]]) + config.length_bonus * len(new_hyps[0][0])
            best_end = max(score for _, score in finished)
            # Scores only fall as hypotheses grow (bonus aside): stop once no live one can win.
            if config.length_bonus <= 0 and best_end >= best_open:
                break
            hyps = new_hyps
            state = _select(state, torch.as_tensor(rows, dtype=torch.long))
            if scorer is not None:
                r_n, r_b = new_n[:, rows, cols], new_b[:, rows, cols]
        else:
            for tokens, att_score, ctc_score in hyps:  # length cap reached
                finished.append((tokens, (1 - weight) * att_score + weight * ctc_score))
        results.append(max(finished, key=lambda item: item[1])[0])
    return results
