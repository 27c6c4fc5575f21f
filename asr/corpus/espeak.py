"""Speech synthesis with libespeak-ng from the ``espeakng-loader`` wheel, driven through ctypes.

espeak-ng is GPL-3.0; this module is the only place that loads it, and only when called
(importing it costs nothing and needs no espeak). libespeak-ng keeps its state in
process-wide globals, so a process initialises it once (:func:`_library`) and synthesises one
utterance at a time; parallel synthesis uses one worker *process* per core.

A voice is an *accent* (an English language voice such as ``"en-us"``) plus a *variant*
(``"m1"``, ``"f3"``, ``"klatt"`` … from ``espeak-ng-data/voices/!v``), a speaking rate in
words per minute and a pitch on espeak's 0–100 scale.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ESPEAK_SAMPLE_RATE",
    "Voice",
    "english_accents",
    "espeak_version",
    "synthesize",
    "voice_variants",
]

ESPEAK_SAMPLE_RATE = 22050

# Enumerations from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK = 0

# Language voices under lang/gmw that are English writing systems rather than accents.
_NOT_ACCENTS = frozenset({"en-shaw"})

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Voice:
    """One espeak voice setting.

    Attributes:
        accent: English language voice, lower case (``"en-gb-scotland"``).
        variant: voice variant file name under ``voices/!v`` (``"m3"``), or ``""`` for none.
        rate: speaking rate in words per minute (espeak accepts 80–450).
        pitch: base pitch, 0–100 (espeak's default is 50).
    """

    accent: str
    variant: str
    rate: int = 175
    pitch: int = 50

    def __post_init__(self) -> None:
        if not 80 <= self.rate <= 450:
            raise ValueError(f"espeak rate must be in [80, 450] words per minute; got {self.rate}")
        if not 0 <= self.pitch <= 100:
            raise ValueError(f"espeak pitch must be in [0, 100]; got {self.pitch}")

    @property
    def name(self) -> str:
        """The name ``espeak_SetVoiceByName`` takes (``"en-us+m3"``)."""
        return f"{self.accent}+{self.variant}" if self.variant else self.accent


def _data_dir() -> Path:
    try:
        import espeakng_loader
    except ImportError as e:
        raise ImportError(
            "speech synthesis needs the optional 'espeakng-loader' package (GPL-3.0); install "
            "it with `pip install 'shrinkml[corpus]'`"
        ) from e
    return Path(espeakng_loader.get_data_path())


def english_accents() -> tuple[str, ...]:
    """English accents that espeak-ng's data directory offers, sorted (``"en"`` is British)."""
    accents = []
    for path in sorted((_data_dir() / "lang" / "gmw").glob("en*")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if parts[:1] == ["language"] and len(parts) >= 2:
                language = parts[1].lower()
                break
        else:
            language = path.name.lower()
        # espeak_SetVoiceByName knows voices by file name ("en" speaks en-gb).
        if language not in _NOT_ACCENTS:
            accents.append(path.name.lower())
    return tuple(sorted(set(accents)))


def voice_variants() -> tuple[str, ...]:
    """All voice variant names (files under ``voices/!v``) without spaces, sorted."""
    folder = _data_dir() / "voices" / "!v"
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_file() and " " not in p.name))


class _Espeak:
    """The process's initialised libespeak-ng and the buffer its callback fills."""

    def __init__(self) -> None:
        data_dir = _data_dir()
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_Info.restype = ctypes.c_char_p
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 500, str(data_dir.parent).encode(), 0
        )
        if rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(
                f"libespeak-ng at {espeakng_loader.get_library_path()} failed to initialise with "
                f"data {data_dir} (returned {rate}; expected sample rate {ESPEAK_SAMPLE_RATE})"
            )
        self.chunks: list[np.ndarray] = []
        self.lock = threading.Lock()
        # Kept on the instance: ctypes must not collect the callback while C holds it.
        self.callback = _SYNTH_CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, n_samples, events) -> int:
        if n_samples > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0


@functools.lru_cache(maxsize=1)
def _library() -> _Espeak:
    # One initialisation per process: libespeak-ng's state is global to the process.
    return _Espeak()


def espeak_version() -> str:
    """The loaded libespeak-ng's version string (part of the corpus cache key)."""
    return _library().lib.espeak_Info(None).decode()


def synthesize(text: str, voice: Voice, *, seed: int = 0) -> np.ndarray:
    """Speak ``text`` with ``voice``.

    Args:
        text: what to say (plain text, UTF-8).
        voice: accent, variant, rate and pitch.
        seed: seed of espeak's noise generator (breath, Klatt noise), so output is reproducible.

    Returns:
        int16 samples at :data:`ESPEAK_SAMPLE_RATE`, shape ``(n,)``.

    Raises:
        ValueError: if espeak does not know the voice or produces no audio.
    """
    espeak = _library()
    with espeak.lock:
        if espeak.lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
            raise ValueError(
                f"espeak-ng does not know voice {voice.name!r}; see english_accents() and "
                f"voice_variants() for the accents and variants it offers"
            )
        espeak.lib.espeak_SetParameter(_RATE, voice.rate, 0)
        espeak.lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
        espeak.lib.espeak_ng_SetRandSeed(seed)
        espeak.chunks = []
        data = text.encode("utf-8") + b"\0"
        status = espeak.lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        espeak.lib.espeak_Synchronize()
        chunks, espeak.chunks = espeak.chunks, []
    if status != _EE_OK or not chunks:
        raise ValueError(
            f"espeak-ng produced no audio for {text!r} with voice {voice.name!r} "
            f"(status {status}, pid {os.getpid()})"
        )
    return np.concatenate(chunks)
