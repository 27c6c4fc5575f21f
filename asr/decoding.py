"""Greedy (batched) and beam-search decoding of the attention decoder, and CTC greedy.

Shape legend: ``B`` batch size; ``T`` feature frames; ``F`` mel bins; ``U`` output tokens.
Decoding is length-capped by :meth:`ASRModel.max_decode_steps`: an undertrained attention
decoder can repeat itself forever.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asr.model import ASRModel
from asr.text import CharTokenizer

__all__ = ["BeamConfig", "CTCBestPath", "beam_search", "ctc_greedy", "greedy_decode"]


@dataclass(frozen=True)
class CTCBestPath:
    """Decoding by the encoder's CTC head alone (:func:`ctc_greedy`): no attention decoder,
    no beam. What the encoder has learnt, without the decoder's language model."""


@torch.inference_mode()
def greedy_decode(model: ASRModel, features: torch.Tensor, frames: torch.Tensor) -> list[list[int]]:
    """Batched greedy decoding.

    Rows that have emitted ``<eos>`` (or reached their length cap) leave the batch, so the
    remaining steps only pay for the rows still decoding.

    Args:
        features: ``(B, T, F)`` normalised features.
        frames: ``(B,)`` valid frames.

    Returns:
        One token-id list per row, without ``<sos>``/``<eos>``.
    """
    tok = CharTokenizer
    encoded, lengths = model.encode(features, frames)
    state = model.initial_state(encoded, lengths)
    caps = model.max_decode_steps(lengths).to(features.device)
    batch = features.shape[0]
    tokens = torch.full((batch,), tok.sos_id, dtype=torch.long, device=features.device)
    rows = torch.arange(batch, device=features.device)  # which input row each batch row is
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []
    for step in range(int(caps.max())):
        logits, state = model.decoder_step(tokens, state)
        tokens = logits.argmax(dim=1).masked_fill(step >= caps[rows], tok.eos_id)
        steps.append((rows, tokens))
        going = tokens != tok.eos_id
        if not bool(going.any()):
            break
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            state, rows, tokens = _select(state, keep), rows[keep], tokens[keep]
    if not steps:
        return [[] for _ in range(batch)]
    table = torch.full((batch, len(steps)), tok.eos_id, dtype=torch.long, device=features.device)
    for step, (where, emitted) in enumerate(steps):
        table[where, step] = emitted
    return [row[: row.index(tok.eos_id)] if tok.eos_id in row else row for row in table.tolist()]


@torch.inference_mode()
def ctc_greedy(model: ASRModel, features: torch.Tensor, frames: torch.Tensor) -> list[list[int]]:
    """Best-path CTC decoding of the encoder's CTC head (collapse repeats, drop blanks)."""
    encoded, lengths = model.encode(features, frames)
    best = model.ctc_log_probs(encoded).argmax(dim=2)
    results = []
    for row, length in zip(best.tolist(), lengths.tolist()):
        out, previous = [], None
        for t in row[:length]:
            if t != previous and t != CharTokenizer.blank_id:
                out.append(t)
            previous = t
        results.append(out)
    return results


@dataclass(frozen=True)
class BeamConfig:
    """Beam search settings."""

    beam_size: int = 4  # hypotheses kept per step
    length_penalty: float = 0.6  # GNMT-style normalisation exponent; 0 disables it

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1; got {self.beam_size}")
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0; got {self.length_penalty}")


def _normalised(score: float, length: int, penalty: float) -> float:
    return score / (((5 + length) / 6) ** penalty)


def _select(state: dict, index: torch.Tensor) -> dict:
    """Reorder every per-hypothesis tensor of a decoder state along the batch axis."""
    out = {}
    for key, value in state.items():
        if key == "cells":
            out[key] = [(h[index], c[index]) for h, c in value]
        else:
            out[key] = value[index]
    return out


@torch.inference_mode()
def beam_search(
    model: ASRModel, features: torch.Tensor, frames: torch.Tensor, config: BeamConfig | None = None
) -> list[list[int]]:
    """Beam search, one utterance at a time, hypotheses of one utterance batched together."""
    config = config or BeamConfig()
    tok = CharTokenizer
    results: list[list[int]] = []
    encoded_all, lengths_all = model.encode(features, frames)
    for b in range(features.shape[0]):
        encoded, lengths = encoded_all[b : b + 1], lengths_all[b : b + 1]
        cap = int(model.max_decode_steps(lengths)[0])
        state = model.initial_state(encoded, lengths)
        hyps: list[tuple[list[int], float]] = [([], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(cap):
            last = torch.tensor([h[-1] if h else tok.sos_id for h, _ in hyps], dtype=torch.long)
            logits, state = model.decoder_step(last, state)
            log_probs = torch.log_softmax(logits, dim=1)
            scores = torch.tensor([s for _, s in hyps]).unsqueeze(1) + log_probs
            flat = scores.view(-1)
            top = torch.topk(flat, min(config.beam_size * 2, flat.numel()))
            vocab = log_probs.shape[1]
            keep_rows, new_hyps = [], []
            for score, index in zip(top.values.tolist(), top.indices.tolist()):
                row, token = divmod(index, vocab)
                if token == tok.eos_id:
                    finished.append((hyps[row][0], score))
                elif token not in (tok.sos_id, tok.blank_id):
                    keep_rows.append(row)
                    new_hyps.append((hyps[row][0] + [token], score))
                if len(new_hyps) == config.beam_size:
                    break
            best_finished = max(
                (_normalised(s, len(h) + 1, config.length_penalty) for h, s in finished),
                default=float("-inf"),
            )
            best_open = max(
                (_normalised(s, len(h) + 1, config.length_penalty) for h, s in new_hyps),
                default=float("-inf"),
            )
            if not new_hyps or (len(finished) >= config.beam_size and best_finished >= best_open):
                break
            hyps = new_hyps
            state = _select(state, torch.tensor(keep_rows, dtype=torch.long))
        pool = finished or hyps
        best = max(pool, key=lambda hs: _normalised(hs[1], len(hs[0]) + 1, config.length_penalty))
        results.append(best[0])
    return results
