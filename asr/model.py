"""Attention-based encoder–decoder recogniser made of LSTM layers (Listen, Attend and Spell).

Shape legend: ``B`` batch size; ``T`` feature frames; ``T'`` encoder frames (after frame
stacking); ``F`` mel bins; ``U`` output tokens; ``V`` vocabulary size; ``H`` hidden size.

The encoder is frame stacking followed by one ``nn.LSTM`` module per bidirectional layer, and
the decoder a stack of ``nn.LSTMCell`` with location-aware (or plain additive) attention and
input feeding. Every LSTM is its own module so that compression can address it by name:
:meth:`ASRModel.compressible_layers` lists them in encoder-to-decoder order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from shrinkml_env.config_fields import check_known_fields

__all__ = ["ASRConfig", "ASRModel", "Attention", "build_model", "PRESETS"]

_ATTENTION_KINDS = ("location", "additive")


@dataclass(frozen=True)
class ASRConfig:
    """Every size of the recogniser; a checkpoint stores it so the model can be rebuilt."""

    vocab_size: int = 31  # output symbols incl. <blank>, <sos>, <eos>
    n_mels: int = 80  # frontend mel bins
    frame_stacking: int = 4  # consecutive frames concatenated: 10 ms hop -> 40 ms encoder steps
    encoder_layers: int = 4  # bidirectional LSTM layers
    encoder_hidden_size: int = 256  # per direction
    decoder_layers: int = 2  # stacked LSTMCells
    decoder_hidden_size: int = 320
    embedding_size: int = 64  # previous-token embedding fed to the decoder
    attention: str = "location"  # "location" (Chorowski et al. 2015) or "additive" (Bahdanau)
    attention_size: int = 128  # attention energy dimension
    attention_channels: int = 16  # location features: conv channels over previous weights
    attention_kernel: int = 15  # location features: conv width (odd)
    dropout: float = 0.15  # between encoder layers and on decoder outputs
    ctc_weight: float = 0.3  # share of the CTC loss in the joint training loss
    max_tokens_per_frame: float = 1.0  # decoding length cap per encoder frame: stops loops
    # Training runs the encoder on padded batches: oneDNN's fused kernel is about twice as
    # fast as packed sequences on CPU, and duration-sorted batches carry little padding.
    # Evaluation always packs, so results never depend on batch composition.
    pack_in_training: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"ASRConfig.{f.name} must be positive; got {value}")
        if self.attention not in _ATTENTION_KINDS:
            raise ValueError(
                f"ASRConfig.attention={self.attention!r}; accepted: {', '.join(_ATTENTION_KINDS)}"
            )
        if self.attention_kernel % 2 == 0:
            raise ValueError(f"attention_kernel must be odd; got {self.attention_kernel}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1]; got {self.ctc_weight}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")

    @property
    def encoder_output_size(self) -> int:
        return 2 * self.encoder_hidden_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ASRConfig:
        check_known_fields(cls, data, "ASRConfig")
        return cls(**data)


PRESETS: dict[str, ASRConfig] = {
    # For tests: seconds to build and train on a toy task.
    "tiny": ASRConfig(
        frame_stacking=3,
        encoder_layers=2,
        encoder_hidden_size=32,
        decoder_layers=2,
        decoder_hidden_size=48,
        embedding_size=16,
        attention_size=32,
        attention_channels=4,
        attention_kernel=5,
        dropout=0.0,
    ),
    # The shipped model: 4 bidirectional encoder layers + 2 decoder layers = 6 LSTM layers.
    # 40 ms encoder steps (25 per second) stay above the fastest speech in the default corpus
    # (230 words/min, about 20 characters/s) and cost a quarter less than 30 ms steps.
    "default": ASRConfig(),
    # Production-sized layers for timing benchmarks; never trained here.
    "large": ASRConfig(
        encoder_layers=5,
        encoder_hidden_size=1024,
        decoder_layers=2,
        decoder_hidden_size=1024,
        embedding_size=128,
        attention_size=512,
        attention_channels=32,
        attention_kernel=31,
    ),
}


def build_model(preset: str = "default", **overrides: Any) -> ASRModel:
    """Build an untrained model from a named preset, with optional field overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown ASR preset {preset!r}; accepted: {', '.join(PRESETS)}")
    return ASRModel(ASRConfig(**{**PRESETS[preset].to_dict(), **overrides}))


class Attention(nn.Module):
    """Additive attention, optionally location-aware (convolved previous weights)."""

    def __init__(self, config: ASRConfig) -> None:
        super().__init__()
        self.location_aware = config.attention == "location"
        self.key = nn.Linear(config.encoder_output_size, config.attention_size)
        self.query = nn.Linear(config.decoder_hidden_size, config.attention_size, bias=False)
        self.energy = nn.Linear(config.attention_size, 1, bias=False)
        if self.location_aware:
            self.location_conv = nn.Conv1d(
                1,
                config.attention_channels,
                config.attention_kernel,
                padding=config.attention_kernel // 2,
                bias=False,
            )
            self.location = nn.Linear(config.attention_channels, config.attention_size, bias=False)

    def project_keys(self, encoded: torch.Tensor) -> torch.Tensor:
        """Keys for every decoding step, computed once: ``(B, T', 2H) -> (B, A, T')``.

        Attention-size-major, the layout the location convolution produces, so that keys,
        location features and query add without transposes.
        """
        return self.key(encoded).transpose(1, 2).contiguous()

    def forward(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        query: torch.Tensor,
        previous: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One attention step.

        Args:
            keys: ``(B, A, T')`` from :meth:`project_keys`.
            values: ``(B, T', 2H)`` encoder outputs.
            mask: ``(B, T')`` True at valid frames.
            query: ``(B, H_dec)`` decoder state.
            previous: ``(B, T')`` previous attention weights.

        Returns:
            ``(context (B, 2H), weights (B, T'))``.
        """
        # Every (B, A, T') intermediate is updated in place where autograd allows: a fresh
        # tensor of that size per decoding step costs more in allocation than in arithmetic.
        query = self.query(query).unsqueeze(2)  # (B, A, 1)
        if self.location_aware:
            location = self.location_conv(previous.unsqueeze(1))  # (B, C, T')
            projection = self.location.weight.expand(location.shape[0], -1, -1)  # (B, A, C)
            scores = torch.bmm(projection, location).add_(keys).add_(query)
        else:
            scores = keys + query
        energies = torch.matmul(self.energy.weight, scores.tanh_()).squeeze(1)  # (B, T')
        energies = energies.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(energies.float(), dim=1)  # fp32 under bf16 autocast too
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)
        return context, weights


class ASRModel(nn.Module):
    """Listen-Attend-Spell recogniser with an optional CTC head on the encoder."""

    def __init__(self, config: ASRConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        encoder_input = c.n_mels * c.frame_stacking
        self.encoder = nn.ModuleList(
            nn.LSTM(
                encoder_input if i == 0 else c.encoder_output_size,
                c.encoder_hidden_size,
                batch_first=True,
                bidirectional=True,
            )
            for i in range(c.encoder_layers)
        )
        self.dropout = nn.Dropout(c.dropout)
        self.ctc_head = nn.Linear(c.encoder_output_size, c.vocab_size) if c.ctc_weight > 0 else None
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
        self.decoder = nn.ModuleList(
            nn.LSTMCell(
                c.embedding_size + c.encoder_output_size if i == 0 else c.decoder_hidden_size,
                c.decoder_hidden_size,
            )
            for i in range(c.decoder_layers)
        )
        self.attention = Attention(c)
        self.output_hidden = nn.Linear(c.decoder_hidden_size + c.encoder_output_size, c.decoder_hidden_size)
        self.output = nn.Linear(c.decoder_hidden_size, c.vocab_size)

    # -- compression hooks -------------------------------------------------------------
    def compressible_layers(self) -> list[str]:
        """Module paths of the LSTM layers, encoder first, in the order an episode visits them."""
        return [f"encoder.{i}" for i in range(len(self.encoder))] + [
            f"decoder.{i}" for i in range(len(self.decoder))
        ]

    # -- encoder -------------------------------------------------------------------------
    def encoder_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.div(frames, self.config.frame_stacking, rounding_mode="floor").clamp(min=1)

    def encode(self, features: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode normalised features.

        Args:
            features: ``(B, T, F)``.
            frames: ``(B,)`` valid frames.

        Returns:
            ``(encoded (B, T', 2H), encoder_frames (B,))``.
        """
        k = self.config.frame_stacking
        batch, time, n_mels = features.shape
        usable = max(time // k, 1) * k
        if usable > time:
            features = F.pad(features, (0, 0, 0, usable - time))
        x = features[:, :usable].reshape(batch, usable // k, n_mels * k)
        lengths = self.encoder_frames(frames).clamp(max=x.shape[1])
        lengths_cpu = lengths.cpu()
        pack = not self.training or self.config.pack_in_training
        mask = (torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
        for i, lstm in enumerate(self.encoder):
            if i > 0:
                x = self.dropout(x)
            if pack:
                packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
                out, _ = lstm(packed)
                x, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            else:
                x, _ = lstm(x)
                x = x * mask
        return x, lengths

    def ctc_log_probs(self, encoded: torch.Tensor) -> torch.Tensor:
        if self.ctc_head is None:
            raise ValueError("this model was built with ctc_weight=0 and has no CTC head")
        return torch.log_softmax(self.ctc_head(encoded).float(), dim=2)  # fp32 under bf16 autocast too

    # -- decoder -------------------------------------------------------------------------
    def initial_state(self, encoded: torch.Tensor, lengths: torch.Tensor) -> dict[str, Any]:
        batch, time, _ = encoded.shape
        zeros = encoded.new_zeros(batch, self.config.decoder_hidden_size)
        mask = torch.arange(time, device=encoded.device).unsqueeze(0) < lengths.unsqueeze(1)
        previous = mask.to(encoded.dtype) / lengths.clamp(min=1).unsqueeze(1).to(encoded.dtype)
        return {
            "cells": [(zeros, zeros) for _ in self.decoder],
            "context": encoded.new_zeros(batch, self.config.encoder_output_size),
            "weights": previous,
            "keys": self.attention.project_keys(encoded),
            "values": encoded,
            "mask": mask,
        }

    def decoder_step(self, tokens: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Advance the decoder by one token.

        Args:
            tokens: ``(B,)`` previous output tokens.
            state: from :meth:`initial_state` or the previous step.

        Returns:
            ``(logits (B, V), new_state)``.
        """
        state = self._advance(self.embedding(tokens), state)
        return self._emit(state["cells"][-1][0], state["context"]), state

    def _advance(self, embedded: torch.Tensor, state: dict[str, Any]) -> dict[str, Any]:
        """The recurrent part of a step: decoder cells, then attention on the top cell."""
        x = torch.cat([embedded, state["context"]], dim=1)
        cells = []
        for i, cell in enumerate(self.decoder):
            h, c = cell(x, state["cells"][i])
            cells.append((h, c))
            x = self.dropout(h) if i + 1 < len(self.decoder) else h
        context, weights = self.attention(state["keys"], state["values"], state["mask"], x, state["weights"])
        return {**state, "cells": cells, "context": context, "weights": weights}

    def _emit(self, top: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Output logits from the top decoder state and the attention context (any leading shape)."""
        hidden = torch.tanh(self.output_hidden(torch.cat([top, context], dim=-1)))
        return self.output(self.dropout(hidden))

    def forward(
        self, features: torch.Tensor, frames: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass.

        Only the recurrence runs step by step; the embeddings and the output layers run once
        over all steps as batched matrix products.

        Args:
            features: ``(B, T, F)`` normalised features.
            frames: ``(B,)`` valid frames.
            targets: ``(B, U)`` token ids starting with ``<sos>``; the decoder reads
                ``targets[:, :-1]`` and predicts ``targets[:, 1:]``.

        Returns:
            ``(logits (B, U-1, V), encoded (B, T', 2H), encoder_frames (B,))``.
        """
        encoded, lengths = self.encode(features, frames)
        state = self.initial_state(encoded, lengths)
        embedded = self.embedding(targets[:, :-1])
        tops, contexts = [], []
        for u in range(embedded.shape[1]):
            state = self._advance(embedded[:, u], state)
            tops.append(state["cells"][-1][0])
            contexts.append(state["context"])
        if not tops:
            empty = encoded.new_zeros(encoded.shape[0], 0, self.config.vocab_size)
            return empty, encoded, lengths
        logits = self._emit(torch.stack(tops, dim=1), torch.stack(contexts, dim=1))
        return logits, encoded, lengths

    def max_decode_steps(self, lengths: torch.Tensor) -> torch.Tensor:
        """Length cap for decoding: attention decoders can loop, so output is bounded."""
        return (lengths.to(torch.float32) * self.config.max_tokens_per_frame).ceil().long() + 2
