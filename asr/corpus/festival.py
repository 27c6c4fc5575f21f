"""A second synthesiser for the ``cross_synth`` evaluation split: Festival, run as a program.

Festival (Debian's ``festival`` with the ``festvox-kallpc16k`` voice, a diphone voice of
American English) shares no code, voice or prosody model with espeak-ng, so a model that
only learnt espeak's sound scores badly on it; no training split ever uses it. It is found
on ``PATH`` and driven by one ``festival --batch`` process per list of utterances (a
process start costs 0.4 s; an utterance costs milliseconds), so nothing of it is imported.
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
    "FESTIVAL_INSTALL_HINT",
    "FestivalVoice",
    "festival_available",
    "festival_version",
    "synthesize_festival",
]

FESTIVAL_INSTALL_HINT = "apt-get install festival festvox-kallpc16k"
_VOICE_DIRS = (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices"))


@dataclass(frozen=True)
class FestivalVoice:
    """A Festival voice with a speaking-rate stretch and an intonation target."""

    voice: str = "kal_diphone"
    stretch: float = 1.0  # Duration_Stretch: > 1 speaks slower
    pitch_mean_hz: float = 105.0  # target F0 mean of the linear-regression intonation model
    pitch_std_hz: float = 14.0  # target F0 spread

    @property
    def name(self) -> str:
        return f"festival-{self.voice}"


def festival_available(voice: str = "kal_diphone") -> bool:
    """True if the ``festival`` program and ``voice`` are installed."""
    return shutil.which("festival") is not None and any(
        d.is_dir() and any(p.name == voice for p in d.glob("*/*")) for d in _VOICE_DIRS
    )


def festival_version() -> str:
    """Festival's version line, or ``"missing"``."""
    if shutil.which("festival") is None:
        return "missing"
    done = subprocess.run(["festival", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize_festival(
    texts: list[str], voices: list[FestivalVoice], sample_rate: int
) -> list[np.ndarray]:
    """Speak each text with its voice in one Festival process.

    Returns:
        float32 waveforms in ``[-1, 1]`` at ``sample_rate``, one per text.

    Raises:
        FileNotFoundError: if Festival or the voice is missing (saying what to install).
        RuntimeError: if Festival fails.
    """
    if len(texts) != len(voices):
        raise ValueError(f"need one voice per text; got {len(texts)} texts, {len(voices)} voices")
    missing = sorted({v.voice for v in voices if not festival_available(v.voice)})
    if missing:
        raise FileNotFoundError(
            f"Festival or its voice {missing[0]!r} is not installed; the cross_synth split "
            f"needs it: {FESTIVAL_INSTALL_HINT}"
        )
    with tempfile.TemporaryDirectory(prefix="shrinkml-festival-") as folder:
        lines = []
        for i, (text, voice) in enumerate(zip(texts, voices)):
            lines += [
                f"(voice_{voice.voice})",
                f"(Parameter.set 'Duration_Stretch {voice.stretch:.4f})",
                f"(set! int_lr_params '((target_f0_mean {voice.pitch_mean_hz:.1f}) "
                f"(target_f0_std {voice.pitch_std_hz:.1f}) (model_f0_mean 170) (model_f0_std 34)))",
                f"(set! u (utt.synth (Utterance Text {_quoted(text)})))",
                f"(utt.wave.resample u {sample_rate})",
                f"(utt.save.wave u {_quoted(str(Path(folder) / f'{i}.wav'))} 'riff)",
            ]
        script = Path(folder) / "speak.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        done = subprocess.run(
            ["festival", "--batch", str(script)], capture_output=True, text=True, check=False
        )
        return [
            read_written_wave("festival", done, Path(folder) / f"{i}.wav", text, sample_rate)
            for i, text in enumerate(texts)
        ]
