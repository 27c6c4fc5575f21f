"""Waveform augmentations for synthetic training audio (numpy in, numpy out).

Every function takes a mono float32 waveform of shape ``(T,)`` and, where it draws random
numbers, an explicit ``numpy.random.Generator`` so results are reproducible.
:func:`augment` chains them by a :class:`AugmentConfig` and returns a short description
of what it did (``"speed1.1+reverb0.35+noise15dB-pink"``) for the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.audio import resample

__all__ = [
    "AugmentConfig",
    "add_noise",
    "apply_response",
    "augment",
    "band_limit",
    "coloured_noise",
    "reverberate",
    "room_response",
    "speed_perturb",
]

_NOISE_COLOURS = ("white", "pink", "brown")


@dataclass(frozen=True)
class AugmentConfig:
    """How training audio is perturbed; each augmented utterance gets a random subset."""

    # Share of training utterances that are augmented; the rest stay clean.
    fraction: float = 0.6
    # Speed factors (tempo and pitch change together, as in Kaldi's speed perturbation).
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    # Chance that an augmented utterance is speed-perturbed.
    speed_probability: float = 0.4
    # Signal-to-noise ratios in dB for additive noise.
    noise_snr_db: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 30.0)
    # Chance of additive noise (white, pink or brown).
    noise_probability: float = 0.7
    # Range of reverberation times (RT60, seconds) of the synthetic room response.
    reverb_seconds: tuple[float, float] = (0.15, 0.6)
    # Chance of reverberation.
    reverb_probability: float = 0.3
    # Chance of a telephone-like band limit (300–3,400 Hz).
    band_limit_probability: float = 0.15

    def __post_init__(self) -> None:
        for name in (
            "fraction",
            "speed_probability",
            "noise_probability",
            "reverb_probability",
            "band_limit_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1]; got {value}")
        if not self.speed_factors or any(not 0.5 <= f <= 2.0 for f in self.speed_factors):
            raise ValueError(
                "AugmentConfig.speed_factors must be non-empty, each in [0.5, 2]; "
                f"got {self.speed_factors}"
            )
        if not self.noise_snr_db:
            raise ValueError("AugmentConfig.noise_snr_db must hold at least one SNR")
        low, high = self.reverb_seconds
        if not 0.0 < low <= high <= 2.0:
            raise ValueError(
                "AugmentConfig.reverb_seconds must satisfy 0 < low <= high <= 2; "
                f"got {self.reverb_seconds}"
            )


def speed_perturb(waveform: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``factor`` times faster (shorter and higher), by resampling.

    Raises:
        ValueError: if ``factor`` is outside ``[0.5, 2]``.
    """
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor must be in [0.5, 2]; got {factor}")
    # Read the samples as if recorded at factor × rate, then bring them back to rate.
    return resample(waveform, round(sample_rate * factor), sample_rate).numpy()


def coloured_noise(length: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown).

    Shaped in the frequency domain, the method of the ``colorednoise`` package; against it:
    ``benchmarks/results/noise.json``.

    Raises:
        ValueError: for an unknown colour.
    """
    if colour not in _NOISE_COLOURS:
        raise ValueError(f"noise colour must be one of {_NOISE_COLOURS}; got {colour!r}")
    white = rng.standard_normal(length)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0
    exponent = 0.5 if colour == "pink" else 1.0  # amplitude ∝ f^-1/2 (pink) or f^-1 (brown)
    return np.fft.irfft(spectrum / freqs**exponent, n=length)


def add_noise(
    waveform: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white"
) -> np.ndarray:
    """Add stationary noise at a signal-to-noise ratio measured over the whole waveform.

    Raises:
        ValueError: for an unknown colour.
    """
    noise = coloured_noise(waveform.shape[0], colour, rng)
    signal_power = float(np.mean(waveform.astype(np.float64) ** 2)) or 1e-10
    noise *= np.sqrt(signal_power / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (waveform + noise).astype(np.float32)


def room_response(rt60: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path, then exponentially decaying noise.

    The tail's amplitude falls by 60 dB over ``rt60`` seconds and starts after 2 ms; its energy
    against the direct path's is fixed by ``rt60`` (about -16 dB direct-to-reverberant at 0.4 s).
    """
    length = max(int(rt60 * sample_rate), 1)
    t = np.arange(length) / sample_rate
    response = rng.standard_normal(length) * 10 ** (-3 * t / rt60) * 0.3
    response[: int(0.002 * sample_rate)] = 0.0
    response[0] = 1.0
    return response


def apply_response(waveform: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Convolve with a room response whose direct path is at index 0, keeping the waveform's
    length and its peak level."""
    n = waveform.shape[0] + response.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(waveform, size) * np.fft.rfft(response, size), size)[
        : waveform.shape[0]
    ]
    peak = np.max(np.abs(wet)) or 1.0
    return (wet * (np.max(np.abs(waveform)) / peak)).astype(np.float32)


def reverberate(
    waveform: np.ndarray, rt60: float, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Convolve with a :func:`room_response` of reverberation time ``rt60`` seconds."""
    return apply_response(waveform, room_response(rt60, rng, sample_rate))


def band_limit(
    waveform: np.ndarray, sample_rate: int, low_hz: float = 300.0, high_hz: float = 3400.0
) -> np.ndarray:
    """Keep ``low_hz``–``high_hz`` with smooth (raised-cosine, one octave) band edges."""
    spectrum = np.fft.rfft(waveform)
    freqs = np.fft.rfftfreq(waveform.shape[0], 1.0 / sample_rate)
    with np.errstate(divide="ignore"):
        octaves_low = np.log2(np.maximum(freqs, 1e-3) / low_hz)
        octaves_high = np.log2(high_hz / np.maximum(freqs, 1e-3))
    gain = np.clip(octaves_low + 1, 0, 1) * np.clip(octaves_high + 1, 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spectrum * gain, n=waveform.shape[0]).astype(np.float32)


def augment(
    waveform: np.ndarray, config: AugmentConfig, rng: np.random.Generator, sample_rate: int
) -> tuple[np.ndarray, str]:
    """Apply a random subset of the augmentations (at least one).

    Returns:
        ``(waveform, description)``; the description joins the applied steps with ``+``.
    """
    steps = {
        "speed": rng.random() < config.speed_probability,
        "reverb": rng.random() < config.reverb_probability,
        "band": rng.random() < config.band_limit_probability,
        "noise": rng.random() < config.noise_probability,
    }
    if not any(steps.values()):
        steps["noise"] = True
    applied: list[str] = []
    if steps["speed"]:
        factor = float(rng.choice(config.speed_factors))
        waveform = speed_perturb(waveform, factor, sample_rate)
        applied.append(f"speed{factor:g}")
    if steps["reverb"]:
        rt60 = float(rng.uniform(*config.reverb_seconds))
        waveform = reverberate(waveform, rt60, rng, sample_rate)
        applied.append(f"reverb{rt60:.2f}")
    if steps["band"]:
        waveform = band_limit(waveform, sample_rate)
        applied.append("band300-3400")
    if steps["noise"]:
        snr = float(rng.choice(config.noise_snr_db))
        colour = _NOISE_COLOURS[int(rng.integers(len(_NOISE_COLOURS)))]
        waveform = add_noise(waveform, snr, rng, colour)
        applied.append(f"noise{snr:g}dB-{colour}")
    return waveform, "+".join(applied)
