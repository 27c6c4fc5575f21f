"""Variety of onset, level and voice for synthetic training speech (numpy in, numpy out).

A synthesiser always starts and ends its audio the same way, so a model trained on it
learns that speech follows silence: the generator-v1 model decoded nothing for 38–47 % of
clips whose speech starts at the first sample. This module removes the synthesiser's own
silence (:func:`trim_silence`), then places the speech with varied silence, none at all, or
a few milliseconds cut off (:func:`place_speech`), and draws levels over a wide log range.

Voices beyond espeak's variants come from Praat's "Change gender" (through the maintained
``praat-parselmouth`` bindings): a PSOLA pitch change plus a formant (vocal-tract length)
shift, about 100× faster than real time. It is imported only when a voice is transformed.
Each call runs in a helper process killed past a deadline
(:mod:`asr.corpus.praat_process`): Praat once never returned.

Every function that draws random numbers takes an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.corpus.praat_process import PraatProcess

__all__ = ["VarietyConfig", "close_praat", "draw_peak", "draw_placement", "place_speech", "transform_voice", "trim_silence"]

# Seconds one "Change gender" may take; a typical utterance takes tens of milliseconds.
PRAAT_DEADLINE = 30.0
# This process's Praat helper, started on the first transformation.
_praat: PraatProcess | None = None


@dataclass(frozen=True)
class VarietyConfig:
    """How training utterances vary in onset, offset, level and voice (evaluation splits
    other than ``trimmed`` keep the fixed padding of :class:`CorpusConfig`)."""

    # Share of training utterances with no silence at all before the speech (VAD-trimmed clips).
    bare_onset_fraction: float = 0.3
    # Share with no silence after the speech.
    bare_offset_fraction: float = 0.3
    # Share whose speech is cut at the start (or, independently, at the end) by a few ms.
    cut_fraction: float = 0.1
    # How much speech a cut removes, seconds.
    cut_seconds: tuple[float, float] = (0.005, 0.04)
    # Silence before/after the speech otherwise, seconds (uniform).
    padding_seconds: tuple[float, float] = (0.02, 0.6)
    # Peak level range, drawn log-uniformly: quiet recordings as well as loud ones.
    peak_range: tuple[float, float] = (0.03, 0.95)
    # Share of training utterances whose voice is transformed (pitch and formants).
    voice_fraction: float = 0.5
    # Formant shift ratio (> 1: shorter vocal tract, as in women and children).
    formant_ratio: tuple[float, float] = (0.85, 1.2)
    # New median pitch in Hz (espeak's variants span roughly 80–200 Hz).
    pitch_median_hz: tuple[float, float] = (75.0, 300.0)
    # Factor on the pitch range (intonation depth).
    pitch_range_factor: tuple[float, float] = (0.5, 1.6)

    def __post_init__(self) -> None:
        for name in ("bare_onset_fraction", "bare_offset_fraction", "cut_fraction", "voice_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"VarietyConfig.{name} must be in [0, 1]; got {value}")
        if self.bare_onset_fraction + self.cut_fraction > 1 or (
            self.bare_offset_fraction + self.cut_fraction > 1
        ):
            raise ValueError(
                "VarietyConfig: bare_onset_fraction (or bare_offset_fraction) + cut_fraction "
                f"must be <= 1; got {self.bare_onset_fraction}, {self.bare_offset_fraction}, "
                f"{self.cut_fraction}"
            )
        for name, low, high in (
            ("cut_seconds", 0.0, 0.2),
            ("padding_seconds", 0.0, 5.0),
            ("peak_range", 1e-3, 1.0),
            ("formant_ratio", 0.5, 2.0),
            ("pitch_median_hz", 40.0, 600.0),
            ("pitch_range_factor", 0.0, 4.0),
        ):
            value = getattr(self, name)
            if len(value) != 2 or not low <= value[0] <= value[1] <= high:
                raise ValueError(
                    f"VarietyConfig.{name} must be (min, max) with {low} <= min <= max <= "
                    f"{high}; got {value!r}"
                )


def trim_silence(
    waveform: np.ndarray, sample_rate: int, threshold_db: float = -45.0, frame_seconds: float = 0.005
) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``threshold_db`` below the loudest frame.

    Args:
        waveform: ``(T,)`` samples.

    Returns:
        The speech between the first and the last loud frame (the whole waveform if it is
        silent throughout).
    """
    frame = max(int(frame_seconds * sample_rate), 1)
    frames = waveform.shape[0] // frame
    if frames == 0:
        return waveform
    energy = np.mean(waveform[: frames * frame].astype(np.float64).reshape(frames, frame) ** 2, 1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 10))
    if loud.size == 0 or energy.max() == 0:
        return waveform
    return waveform[loud[0] * frame : min((loud[-1] + 1) * frame, waveform.shape[0])]


def draw_placement(config: VarietyConfig, rng: np.random.Generator) -> tuple[float, float]:
    """Seconds of silence before and after the speech; negative means speech cut off."""

    def one_side(bare_fraction: float) -> float:
        u = rng.random()
        if u < bare_fraction:
            return 0.0
        if u < bare_fraction + config.cut_fraction:
            return -float(rng.uniform(*config.cut_seconds))
        return float(rng.uniform(*config.padding_seconds))

    return one_side(config.bare_onset_fraction), one_side(config.bare_offset_fraction)


def place_speech(
    speech: np.ndarray, before: float, after: float, sample_rate: int
) -> np.ndarray:
    """Pad (positive seconds) or cut (negative seconds) each end of ``speech``.

    A cut never removes more than a quarter of the speech.
    """
    limit = speech.shape[0] // 4
    start = min(int(-before * sample_rate), limit) if before < 0 else 0
    stop = speech.shape[0] - (min(int(-after * sample_rate), limit) if after < 0 else 0)
    pad = (int(max(before, 0.0) * sample_rate), int(max(after, 0.0) * sample_rate))
    return np.pad(speech[start:stop], pad)


def transform_voice(
    speech: np.ndarray, sample_rate: int, config: VarietyConfig, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """A new voice from ``speech``: Praat's "Change gender" with random pitch and formants.

    Returns:
        ``(waveform, description)``, e.g. ``"voice-f1.12-p210-r0.8"``; the waveform has the
        same length (the duration factor is 1). Where Praat cannot transform the speech
        (too short to analyse, or a pitch contour it cannot resynthesise: a few in 10,000
        utterances), ``speech`` itself and ``"none-praat-failed"``; where it runs past
        :data:`PRAAT_DEADLINE` seconds (one in 63,000), ``speech`` and
        ``"none-praat-timeout"``. The random draws are the same either way, so the rest of
        the corpus does not move.

    Raises:
        ImportError: if ``praat-parselmouth`` (the ``corpus`` extra) is missing.
        RuntimeError: if the helper process running Praat died (a crash in Praat).
    """
    import parselmouth  # noqa: F401 -- the helper needs it: say so here, where it is missing

    global _praat
    formant = float(rng.uniform(*config.formant_ratio))
    pitch = float(np.exp(rng.uniform(*np.log(config.pitch_median_hz))))
    depth = float(rng.uniform(*config.pitch_range_factor))
    praat_seed = int(rng.integers(1, 2**31))
    if _praat is None:
        _praat = PraatProcess(PRAAT_DEADLINE)
    try:
        out = _praat.change_gender(speech, sample_rate, formant, pitch, depth, praat_seed)
    except TimeoutError:
        return speech, "none-praat-timeout"
    if out is None:
        return speech, "none-praat-failed"
    if out.shape[0] != speech.shape[0]:  # Praat may round the duration by a sample or two
        out = np.pad(out, (0, max(speech.shape[0] - out.shape[0], 0)))[: speech.shape[0]]
    return out, f"voice-f{formant:.2f}-p{pitch:.0f}-r{depth:.1f}"


def close_praat() -> None:
    """Stop this process's Praat helper, if one runs (a later transformation starts another)."""
    global _praat
    if _praat is not None:
        _praat.close()
        _praat = None


def draw_peak(peak_range: tuple[float, float], rng: np.random.Generator) -> float:
    """A peak level drawn log-uniformly from ``peak_range``."""
    return float(np.exp(rng.uniform(np.log(peak_range[0]), np.log(peak_range[1]))))
