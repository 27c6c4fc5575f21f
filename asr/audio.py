"""Reading, writing and resampling audio.

Waveforms are 1-D ``float32`` tensors of mono samples in ``[-1, 1]`` (shape ``(T,)``, T:
samples). Files are read and written with ``soundfile`` (WAV and FLAC); resampling is a
band-limited windowed-sinc (Kaiser window) polyphase filter written in torch, so neither
torchaudio nor scipy is needed. Measured against soxr (``benchmarks/results/resample.json``),
soxr is better on every figure, most at the top of the band; it is to replace this filter
with the next corpus version, since the switch changes the training audio.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import soundfile
import torch

from shrinkml_env.atomic import atomic_file

__all__ = ["SAMPLE_RATE", "load_audio", "resample", "save_audio"]

SAMPLE_RATE = 16000

# Zero crossings of the sinc on each side, the passband edge as a fraction of the lower
# Nyquist frequency, and the Kaiser window's beta: about 80 dB of stopband attenuation.
_FILTER_ZERO_CROSSINGS = 16
_ROLLOFF = 0.94
_KAISER_BETA = 8.6

_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


@functools.lru_cache(maxsize=16)
def _sinc_kernels(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """Polyphase filter bank for ``orig → new`` (both already divided by their gcd).

    Returns ``(kernels, width)``: kernels of shape ``(new, 1, 2 * width + orig)``, one per
    output phase, applied with stride ``orig`` to the input padded by ``width`` on the left.
    """
    cutoff = min(orig, new) * _ROLLOFF  # in cycles per ``max(orig, new)`` samples
    width = math.ceil(_FILTER_ZERO_CROSSINGS * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    phases = -torch.arange(new, dtype=torch.float64)[:, None] / new
    t = (phases + taps[None, :]) * cutoff  # time in units of the filter's zero crossings
    t = t.clamp(-_FILTER_ZERO_CROSSINGS, _FILTER_ZERO_CROSSINGS)
    window = torch.i0(_KAISER_BETA * torch.sqrt(1 - (t / _FILTER_ZERO_CROSSINGS) ** 2))
    window = window / torch.i0(torch.tensor(_KAISER_BETA, dtype=torch.float64))
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    kernels = sinc * window * (cutoff / orig)
    return kernels.to(torch.float32)[:, None, :], width


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Change the sample rate of a waveform with a windowed-sinc polyphase filter.

    Args:
        waveform: samples, shape ``(T,)`` or ``(C, T)`` (C: channels); any float dtype, or a
            numpy array.
        orig_rate: the waveform's sample rate in Hz.
        new_rate: the wanted sample rate in Hz.

    Returns:
        float32 tensor of shape ``(ceil(T * new_rate / orig_rate),)`` (or ``(C, ...)``).

    Raises:
        ValueError: if a rate is not a positive integer or the waveform has more than 2 dims.
    """
    for name, rate in (("orig_rate", orig_rate), ("new_rate", new_rate)):
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"{name} must be a positive integer number of Hz; got {rate!r}")
    waveform = torch.as_tensor(waveform, dtype=torch.float32)
    if waveform.dim() not in (1, 2):
        raise ValueError(
            f"resample takes a waveform of shape (T,) or (C, T); got shape {tuple(waveform.shape)}"
        )
    if orig_rate == new_rate:
        return waveform.clone()
    gcd = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // gcd, int(new_rate) // gcd
    kernels, width = _sinc_kernels(orig, new)
    batch = waveform.reshape(-1, waveform.shape[-1])
    length = batch.shape[-1]
    padded = torch.nn.functional.pad(batch[:, None, :], (width, width + orig))
    out = torch.nn.functional.conv1d(padded, kernels, stride=orig)  # (C, new, frames)
    out = out.transpose(1, 2).reshape(batch.shape[0], -1)
    out = out[:, : math.ceil(new * length / orig)]
    return out.reshape(*waveform.shape[:-1], out.shape[-1]).contiguous()


def load_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read a WAV or FLAC file as mono float32 at ``sample_rate``.

    Stereo is averaged to mono; a file at another rate is resampled.

    Args:
        path: the audio file.
        sample_rate: the rate of the returned samples in Hz.

    Returns:
        float32 tensor of shape ``(T,)`` with values in ``[-1, 1]``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if soundfile cannot read it or it holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {str(path)!r} does not exist")
    try:
        samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise ValueError(f"cannot read audio file {str(path)!r}: {e}") from e
    if samples.size == 0:
        raise ValueError(f"audio file {str(path)!r} holds no samples")
    mono = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
    if file_rate != sample_rate:
        mono = resample(mono, file_rate, sample_rate).clamp_(-1.0, 1.0)
    return mono


def save_audio(
    path: str | os.PathLike[str],
    waveform: torch.Tensor | np.ndarray,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Write a mono waveform as 16-bit PCM WAV or FLAC (by suffix), atomically.

    The file appears complete or not at all: it is written to a temporary file in the same
    folder and moved into place with ``os.replace``. Samples outside ``[-1, 1]`` are clipped.

    Args:
        path: destination ending in ``.wav`` or ``.flac``; its folder must exist.
        waveform: samples, shape ``(T,)``.
        sample_rate: sample rate in Hz.

    Raises:
        ValueError: for another suffix, a waveform that is not 1-D, or an empty one.
    """
    path = Path(path)
    file_format = _FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise ValueError(
            f"cannot save audio as {str(path)!r}: the suffix must be one of {sorted(_FORMATS)}"
        )
    samples = np.asarray(
        waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else waveform,
        dtype=np.float32,
    )
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(
            f"save_audio takes a non-empty mono waveform of shape (T,); got shape {samples.shape}"
        )
    with atomic_file(path, fsync=False) as f:
        soundfile.write(f, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format=file_format)
