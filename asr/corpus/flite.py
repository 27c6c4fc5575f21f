"""A second training synthesiser: Flite, run as a program, for the ``train_flite`` split.

espeak-ng's voices, even transformed in pitch and formants, are one family of sound, and a
model trained on them alone scores near WER 1 on another synthesiser (``cross_synth``).
Flite (Debian's ``flite``: CMU's small engine, with the statistical-parametric voices
``awb``, ``rms`` and ``slt``) speaks from recorded human voices through another signal
model, so it widens what training hears. It is Festival's small sibling: it shares the CMU
lexicon and text front end with the Festival that speaks ``cross_synth``; its ``kal``
voices, built from the same diphone recordings as ``cross_synth``'s voice, are refused here
so that no voice of the held-out split is ever heard in training.

One ``flite`` process per utterance (about 0.1 s for a 5 s sentence); nothing is imported.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.corpus.external import read_written_wave

__all__ = [
    "FLITE_INSTALL_HINT",
    "FLITE_VOICES",
    "FIXED_PITCH_VOICES",
    "FliteVoice",
    "flite_available",
    "flite_version",
    "synthesize_flite",
]

FLITE_INSTALL_HINT = "apt-get install flite"
# Flite's 16 kHz voices of recorded speakers; kal and kal16 (cross_synth's diphones) excluded.
FLITE_VOICES = ("awb", "rms", "slt")
# Voices that ignore the intonation target (measured: rms speaks at about 101 Hz whatever
# it is asked); their pitch varies only through the corpus's voice transformation.
FIXED_PITCH_VOICES = ("rms",)


@dataclass(frozen=True)
class FliteVoice:
    """A Flite voice with a speaking-rate stretch and an intonation target."""

    voice: str = "slt"
    stretch: float = 1.0  # duration_stretch: > 1 speaks slower
    pitch_mean_hz: float | None = None  # int_f0_target_mean; None: the voice's own

    def __post_init__(self) -> None:
        if self.voice not in FLITE_VOICES:
            raise ValueError(
                f"unknown or refused Flite voice {self.voice!r}; accepted: {', '.join(FLITE_VOICES)} "
                "(kal and kal16 share their recordings with the held-out cross_synth voice)"
            )
        if self.pitch_mean_hz is not None and self.voice in FIXED_PITCH_VOICES:
            raise ValueError(
                f"Flite voice {self.voice!r} ignores an intonation target; give pitch_mean_hz=None"
            )

    @property
    def name(self) -> str:
        return f"flite-{self.voice}"


def flite_available() -> bool:
    """True if the ``flite`` program is installed with every voice of :data:`FLITE_VOICES`."""
    if shutil.which("flite") is None:
        return False
    try:
        done = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):  # a broken install counts as none
        return False
    listed = set(done.stdout.replace(":", " ").split())
    return set(FLITE_VOICES) <= listed


def flite_version() -> str:
    """Flite's version line, or ``"missing"``."""
    if shutil.which("flite") is None:
        return "missing"
    try:
        done = subprocess.run(["flite", "--version"], capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):  # recorded in corpus.json; never fatal there
        return "unknown"
    lines = [line.strip() for line in done.stdout.splitlines() if "version" in line]
    return lines[0] if lines else "unknown"


def synthesize_flite(text: str, voice: FliteVoice, sample_rate: int) -> np.ndarray:
    """Speak ``text`` with ``voice``.

    Returns:
        A float32 waveform in ``[-1, 1]`` at ``sample_rate``.

    Raises:
        FileNotFoundError: if Flite is missing (saying what to install).
        RuntimeError: if Flite fails or writes audio at another rate.
    """
    if shutil.which("flite") is None:
        raise FileNotFoundError(
            f"Flite is not installed; the train_flite split needs it: {FLITE_INSTALL_HINT}"
        )
    settings = ["--setf", f"duration_stretch={voice.stretch:.4f}"]
    if voice.pitch_mean_hz is not None:
        settings += ["--setf", f"int_f0_target_mean={voice.pitch_mean_hz:.1f}"]
    with tempfile.TemporaryDirectory(prefix="shrinkml-flite-") as folder:
        path = Path(folder) / "speech.wav"
        done = subprocess.run(
            ["flite", "-voice", voice.voice, "-t", text, "-o", str(path), *settings],
            capture_output=True, text=True, check=False,
        )
        return read_written_wave("flite", done, path, text, sample_rate)
