"""Onset, level and voice variety of training speech."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from asr.corpus.variety import (
    VarietyConfig,
    draw_peak,
    draw_placement,
    place_speech,
    transform_voice,
    trim_silence,
)

RATE = 16000


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


def test_trim_silence_removes_leading_and_trailing_silence_only() -> None:
    speech = _tone(0.5)
    padded = np.concatenate([np.zeros(4000, np.float32), speech, 1e-6 * np.ones(2400, np.float32)])
    trimmed = trim_silence(padded, RATE)
    assert abs(trimmed.shape[0] - speech.shape[0]) <= 80  # one 5 ms frame either side
    assert trim_silence(np.zeros(1000, np.float32), RATE).shape[0] == 1000  # all silent: kept


def test_place_speech_pads_and_cuts() -> None:
    speech = _tone(0.4)
    out = place_speech(speech, 0.1, 0.0, RATE)
    assert out.shape[0] == speech.shape[0] + 1600 and not out[:1600].any()
    cut = place_speech(speech, -0.02, -0.01, RATE)
    assert cut.shape[0] == speech.shape[0] - 320 - 160
    np.testing.assert_array_equal(cut, speech[320:-160])
    # A cut never takes more than a quarter of the speech.
    assert place_speech(speech, -1.0, 0.0, RATE).shape[0] == speech.shape[0] - speech.shape[0] // 4


def test_placement_draws_follow_the_fractions() -> None:
    config = VarietyConfig(bare_onset_fraction=0.3, cut_fraction=0.1)
    rng = np.random.default_rng(0)
    onsets = np.array([draw_placement(config, rng)[0] for _ in range(4000)])
    assert np.mean(onsets == 0.0) == pytest.approx(0.3, abs=0.03)
    assert np.mean(onsets < 0.0) == pytest.approx(0.1, abs=0.02)
    assert onsets.min() >= -0.04 and onsets.max() <= 0.6
    peaks = np.array([draw_peak((0.03, 0.95), rng) for _ in range(2000)])
    assert 0.03 <= peaks.min() and peaks.max() <= 0.95
    assert np.median(peaks) == pytest.approx(np.sqrt(0.03 * 0.95), rel=0.15)  # log-uniform


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"voice_fraction": 1.5}, r"VarietyConfig.voice_fraction must be in \[0, 1\]; got 1.5"),
        ({"bare_onset_fraction": 0.95, "cut_fraction": 0.1}, r"must be <= 1"),
        ({"peak_range": (0.5, 0.1)}, r"VarietyConfig.peak_range must be \(min, max\)"),
    ],
)
def test_variety_config_rejects_bad_values(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        VarietyConfig(**changes)


@pytest.mark.skipif(importlib.util.find_spec("parselmouth") is None, reason="praat-parselmouth missing")
def test_voice_transformation_changes_the_voice_and_keeps_the_length() -> None:
    t = np.arange(int(0.6 * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 20)).astype(np.float32) * 0.1
    config = VarietyConfig(pitch_median_hz=(240.0, 240.0), pitch_range_factor=(1.0, 1.0))
    noisy = voiced + 0.05 * np.random.default_rng(1).standard_normal(voiced.shape).astype(np.float32)
    noisy[: RATE // 5] = 0.05 * np.random.default_rng(2).standard_normal(RATE // 5)  # voiceless
    out, description = transform_voice(noisy, RATE, config, np.random.default_rng(0))
    again, _ = transform_voice(noisy, RATE, config, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)  # Praat's own randomness is seeded too
    assert out.shape == voiced.shape and description.startswith("voice-f")
    # The fundamental moved from 120 Hz to about 240 Hz.
    spectrum = np.abs(np.fft.rfft(out[2000:-2000]))
    freqs = np.fft.rfftfreq(out[2000:-2000].shape[0], 1 / RATE)
    band = (freqs > 60) & (freqs < 400)
    assert 200 < freqs[band][np.argmax(spectrum[band])] < 280


@pytest.mark.skipif(importlib.util.find_spec("parselmouth") is None, reason="praat-parselmouth missing")
def test_speech_praat_cannot_transform_is_kept_as_it_is_with_the_same_draws() -> None:
    short = np.sin(np.arange(160) * 0.1).astype(np.float32)  # 10 ms: too short for a 60-Hz analysis
    rng, same = np.random.default_rng(3), np.random.default_rng(3)
    out, description = transform_voice(short, RATE, VarietyConfig(), rng)
    assert out is short and description == "none-praat-failed"
    transform_voice(np.zeros(RATE, np.float32), RATE, VarietyConfig(), same)
    assert rng.random() == same.random()  # what follows in the corpus draws the same numbers


@pytest.mark.skipif(importlib.util.find_spec("parselmouth") is None, reason="praat-parselmouth missing")
def test_a_praat_call_past_its_deadline_keeps_the_speech_with_the_same_draws(monkeypatch) -> None:
    import sys
    import time

    from asr.corpus import variety
    from asr.corpus.praat_process import PraatProcess

    # A helper that never answers: what Praat did on one utterance in 63,000, for minutes.
    monkeypatch.setattr(variety, "_praat", PraatProcess(0.3, [sys.executable, "-c", "import time; time.sleep(60)"]))
    speech = np.sin(np.arange(RATE) * 0.05).astype(np.float32)
    rng, same = np.random.default_rng(4), np.random.default_rng(4)
    started = time.monotonic()
    out, description = transform_voice(speech, RATE, VarietyConfig(), rng)
    assert time.monotonic() - started < 5
    assert out is speech and description == "none-praat-timeout"
    monkeypatch.setattr(variety, "_praat", None)  # the real helper from here on
    assert transform_voice(speech, RATE, VarietyConfig(), same)[1].startswith("voice-f")
    assert rng.random() == same.random()  # what follows in the corpus draws the same numbers
    variety.close_praat()


@pytest.mark.skipif(importlib.util.find_spec("parselmouth") is None, reason="praat-parselmouth missing")
def test_the_praat_helper_restarts_after_a_timeout_and_reports_a_dead_one() -> None:
    import sys

    from asr.corpus.praat_process import PraatProcess

    speech = np.sin(np.arange(4 * RATE) * 0.05).astype(np.float32)  # larger than a pipe's buffer
    helper = PraatProcess(deadline=1e-6)
    try:
        with pytest.raises(TimeoutError):
            helper.change_gender(speech, RATE, 1.1, 200.0, 1.0, 7)
        helper.deadline = 30.0
        out = helper.change_gender(speech, RATE, 1.1, 200.0, 1.0, 7)  # a new helper answers
        assert out is not None and abs(out.shape[0] - speech.shape[0]) <= 2
        assert helper.change_gender(speech[:160], RATE, 1.1, 200.0, 1.0, 7) is None  # Praat refuses
    finally:
        helper.close()
    with pytest.raises(RuntimeError, match="died without answering"):
        PraatProcess(5.0, [sys.executable, "-c", "pass"]).change_gender(speech, RATE, 1.1, 200.0, 1.0, 7)


@pytest.mark.skipif(importlib.util.find_spec("parselmouth") is None, reason="praat-parselmouth missing")
def test_the_praat_helper_answers_what_praat_gives_in_process_and_exits_when_its_input_closes() -> None:
    import parselmouth
    from parselmouth.praat import call, run

    from asr.corpus.praat_process import PraatProcess

    t = np.arange(int(1.5 * RATE)) / RATE
    speech = (0.1 * sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 15))).astype(np.float32)
    run("random_initializeWithSeedUnsafelyButPredictably (11)\n")
    here = call(parselmouth.Sound(speech.astype(np.float64), sampling_frequency=RATE),
                "Change gender", 60, 600, 1.1, 190.0, 0.8, 1.0)
    helper = PraatProcess(30.0)
    there = helper.change_gender(speech, RATE, 1.1, 190.0, 0.8, 11)
    np.testing.assert_array_equal(there, np.asarray(here.values[0], dtype=np.float32))
    process = helper._process
    process.stdin.close()  # what the helper sees when its worker exits
    assert process.wait(timeout=10) == 0
    helper.close()
