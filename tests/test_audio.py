"""Tests for asr.audio: resampling accuracy, reading, writing and error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from asr.audio import SAMPLE_RATE, load_audio, resample, save_audio


def _sine(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def _peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("orig", "new"), [(22050, 16000), (16000, 22050), (48000, 16000), (8000, 16000)]
)
def test_resample_keeps_a_sine(orig: int, new: int) -> None:
    y = resample(_sine(440.0, orig), orig, new)
    assert y.dtype == torch.float32
    assert y.shape == (new,)
    middle = y[new // 10 : -new // 10].numpy()
    assert _peak_frequency(middle, new) == pytest.approx(440.0, abs=2.0)
    assert float(np.sqrt(np.mean(middle**2)) * math.sqrt(2)) == pytest.approx(0.5, rel=0.01)
    # Sample by sample against the ideal sine at the new rate.
    reference = _sine(440.0, new)[new // 10 : -new // 10].numpy()
    assert np.max(np.abs(middle - reference)) < 2e-3


def test_resample_removes_what_the_new_rate_cannot_hold() -> None:
    y = resample(_sine(10_000.0, 22050), 22050, 16000)
    assert float(y[200:-200].abs().max()) < 0.01  # would alias to 6 kHz at full amplitude


def test_resample_batches_channels_and_same_rate_copies() -> None:
    x = torch.randn(2, 1000)
    assert resample(x, 16000, 8000).shape == (2, 500)
    same = resample(x, 16000, 16000)
    assert torch.equal(same, x) and same is not x


@pytest.mark.parametrize("rate", [0, -16000, 22050.5])
def test_resample_rejects_bad_rates(rate: float) -> None:
    with pytest.raises(ValueError, match=r"orig_rate must be a positive integer"):
        resample(torch.zeros(10), rate, 16000)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_then_load_round_trip(tmp_path, suffix: str) -> None:
    x = _sine(300.0, SAMPLE_RATE, 0.5)
    path = tmp_path / f"a{suffix}"
    save_audio(path, x)
    y = load_audio(path)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.allclose(x, y, atol=1e-4)  # 16-bit quantisation
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_load_downmixes_stereo_and_resamples(tmp_path) -> None:
    left = _sine(440.0, 22050).numpy()
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, 22050, subtype="FLOAT")
    y = load_audio(path)
    assert y.shape == (16000,)
    assert float(y[2000:-2000].abs().max()) == pytest.approx(0.25, rel=0.01)


def test_save_clips_out_of_range_samples(tmp_path) -> None:
    save_audio(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], dtype=np.float32))
    y = load_audio(tmp_path / "loud.wav")
    assert float(y.abs().max()) <= 1.0


def test_load_missing_file_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.wav' does not exist"):
        load_audio(tmp_path / "nothere.wav")


def test_load_unreadable_file_names_it(tmp_path) -> None:
    path = tmp_path / "junk.flac"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match=r"cannot read audio file .*junk\.flac"):
        load_audio(path)


def test_load_empty_file_names_it(tmp_path) -> None:
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(ValueError, match=r"empty\.wav' holds no samples"):
        load_audio(path)


@pytest.mark.parametrize(
    ("name", "waveform", "message"),
    [
        ("a.mp3", np.zeros(10), r"suffix must be one of \['.flac', '.wav'\]"),
        ("a.wav", np.zeros((2, 10)), r"mono waveform of shape \(T,\); got shape \(2, 10\)"),
        ("a.wav", np.zeros(0), r"non-empty"),
    ],
)
def test_save_rejects_bad_input(tmp_path, name: str, waveform: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_audio(tmp_path / name, waveform)
