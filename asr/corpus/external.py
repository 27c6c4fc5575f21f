"""What Festival and Flite share: reading back the wave file a synthesiser program wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile

__all__ = ["read_written_wave"]


def read_written_wave(
    program: str, done: subprocess.CompletedProcess, path: Path, text: str, sample_rate: int
) -> np.ndarray:
    """The mono float32 waveform ``program`` wrote to ``path`` for ``text``.

    Raises:
        RuntimeError: if the program failed, wrote nothing, or wrote audio at another rate
            or with more than one channel (the message carries the end of its stderr).
    """
    if done.returncode != 0 or not path.is_file():
        raise RuntimeError(
            f"{program} failed on {text!r} (exit {done.returncode}): {done.stderr.strip()[-500:]}"
        )
    samples, rate = soundfile.read(path, dtype="float32")
    if rate != sample_rate or samples.ndim != 1 or samples.size == 0:
        raise RuntimeError(
            f"{program} wrote {samples.shape} samples at {rate} Hz for {text!r}; expected mono "
            f"audio at {sample_rate} Hz"
        )
    return samples
