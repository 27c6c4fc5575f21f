"""Log-mel frontend, utterance normalisation and SpecAugment, written on ``torch.stft``.

Shape legend: ``B`` batch size; ``S`` audio samples; ``T`` feature frames; ``F`` mel bins.

The filterbank is the HTK mel scale with unnormalised triangles, the same as
``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``; the spectrogram is
the power spectrum of a centred, reflect-padded STFT with a periodic Hann window, the same as
``torchaudio.transforms.MelSpectrogram``. A test checks both against torchaudio wherever it is
importable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "FrontendConfig",
    "LogMelFrontend",
    "SpecAugmentConfig",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "normalise_utterances",
    "spec_augment",
]


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel settings; defaults are the usual 25 ms / 10 ms / 80-bin ASR frontend."""

    sample_rate: int = 16000  # Hz; audio is resampled to this on load
    n_mels: int = 80  # mel bins per frame
    win_ms: float = 25.0  # analysis window length
    hop_ms: float = 10.0  # frame shift
    n_fft: int = 512  # FFT size (window zero-padded up to it)
    f_min: float = 0.0  # lowest filter edge, Hz
    f_max: float | None = None  # highest filter edge, Hz; None means Nyquist
    log_floor: float = 1e-6  # added before the log so silence stays finite

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_mels <= 0:
            raise ValueError(
                f"sample_rate and n_mels must be positive; got {self.sample_rate}, {self.n_mels}"
            )
        if self.win_length > self.n_fft:
            raise ValueError(
                f"window of {self.win_ms} ms ({self.win_length} samples) exceeds n_fft={self.n_fft}"
            )
        top = self.f_max if self.f_max is not None else self.sample_rate / 2
        if not 0 <= self.f_min < top <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= {self.sample_rate / 2}; got f_min={self.f_min}, "
                f"f_max={self.f_max}"
            )

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 · log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor:
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int
) -> torch.Tensor:
    """Triangular HTK mel filters, shape ``(n_freqs, n_mels)``, peak height 1."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2)
    hz_points = mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]  # (n_mels + 1,)
    slopes = hz_points.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).to(torch.float32)


class LogMelFrontend(nn.Module):
    """Waveforms to log-mel features.

    Forward:
        waveforms: ``(B, S)`` float audio at ``config.sample_rate``.
        lengths: ``(B,)`` valid samples per row, or None when all rows are full.

    Returns:
        ``(features, frames)``: ``(B, T, F)`` log-mel features and ``(B,)`` valid frames.
    """

    def __init__(self, config: FrontendConfig | None = None) -> None:
        super().__init__()
        self.config = config or FrontendConfig()
        c = self.config
        f_max = c.f_max if c.f_max is not None else c.sample_rate / 2
        self.register_buffer(
            "window", torch.hann_window(c.win_length, periodic=True), persistent=False
        )
        self.register_buffer(
            "filterbank",
            mel_filterbank(c.n_fft // 2 + 1, c.f_min, f_max, c.n_mels, c.sample_rate),
            persistent=False,
        )

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames a centred STFT yields for ``lengths`` samples."""
        return lengths // self.config.hop_length + 1

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (batch, samples); got shape {tuple(waveforms.shape)}")
        c = self.config
        spec = torch.stft(
            waveforms,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, n_fft/2+1, T)
        mel = torch.matmul(power.transpose(1, 2), self.filterbank)  # (B, T, F)
        features = torch.log(mel + c.log_floor)
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long, device=waveforms.device)
        frames = torch.clamp(self.num_frames(lengths.to(torch.long)), max=features.shape[1])
        return features, frames


def normalise_utterances(features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-bin mean/variance normalisation over the valid frames.

    Args:
        features: ``(B, T, F)``.
        frames: ``(B,)`` valid frames per row; padded frames come back as zeros.
    """
    mask = (torch.arange(features.shape[1], device=features.device).unsqueeze(0) < frames.unsqueeze(1)).unsqueeze(2)
    count = frames.clamp(min=1).to(features.dtype).view(-1, 1, 1)
    mean = (features * mask).sum(dim=1, keepdim=True) / count
    var = (((features - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
    return (features - mean) / torch.sqrt(var + 1e-5) * mask


@dataclass(frozen=True)
class SpecAugmentConfig:
    """SpecAugment masks for training (Park et al. 2019, without time warping)."""

    freq_masks: int = 2  # frequency bands masked per utterance
    freq_width: int = 15  # widest frequency mask, in mel bins
    time_masks: int = 2  # time spans masked per utterance
    time_width: float = 0.05  # widest time mask, as a fraction of the utterance's frames

    def __post_init__(self) -> None:
        if min(self.freq_masks, self.freq_width, self.time_masks) < 0:
            raise ValueError(f"SpecAugment counts and widths must be >= 0; got {self}")
        if not 0.0 <= self.time_width < 1.0:
            raise ValueError(f"time_width must be in [0, 1); got {self.time_width}")


def spec_augment(
    features: torch.Tensor,
    frames: torch.Tensor,
    config: SpecAugmentConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return a copy of normalised ``(B, T, F)`` features with random bands set to zero."""
    out = features.clone()
    n_bins = features.shape[2]

    def randint(high: int) -> int:
        return int(torch.randint(0, max(high, 1), (1,), generator=generator))

    for b in range(features.shape[0]):
        valid = int(frames[b])
        for _ in range(config.freq_masks):
            width = randint(config.freq_width + 1)
            start = randint(n_bins - width + 1)
            out[b, :, start : start + width] = 0.0
        max_time = int(math.floor(config.time_width * valid))
        for _ in range(config.time_masks):
            width = randint(max_time + 1)
            start = randint(valid - width + 1)
            out[b, start : start + width, :] = 0.0
    return out
