import math

import pytest
import torch

from asr.features import (
    FrontendConfig,
    LogMelFrontend,
    SpecAugmentConfig,
    hz_to_mel,
    mel_filterbank,
    normalise_utterances,
    spec_augment,
)


def test_shapes_and_frame_counts():
    frontend = LogMelFrontend()
    waves = torch.randn(2, 16000)
    feats, frames = frontend(waves, torch.tensor([16000, 8000]))
    assert feats.shape == (2, 101, 80)
    assert frames.tolist() == [101, 51]


def test_pure_tone_peaks_in_the_right_mel_bin():
    config = FrontendConfig()
    frontend = LogMelFrontend(config)
    t = torch.arange(16000) / 16000
    for freq in (300.0, 1000.0, 4000.0):
        feats, _ = frontend(torch.sin(2 * math.pi * freq * t).unsqueeze(0))
        peak_bin = int(feats[0, 50].argmax())
        mels = torch.linspace(float(hz_to_mel(0.0)), float(hz_to_mel(8000.0)), config.n_mels + 2)
        nearest = int((mels[1:-1] - hz_to_mel(freq)).abs().argmin())
        assert abs(peak_bin - nearest) <= 1, (freq, peak_bin, nearest)


def test_filterbank_triangles():
    fb = mel_filterbank(257, 0.0, 8000.0, 80, 16000)
    assert fb.shape == (257, 80)
    assert float(fb.max()) <= 1.0 + 1e-6
    assert bool((fb.sum(dim=0) > 0).all()), "every mel filter must cover some FFT bin"


def test_torchaudio_parity():
    torchaudio = pytest.importorskip("torchaudio")
    config = FrontendConfig()
    ours = mel_filterbank(config.n_fft // 2 + 1, 0.0, 8000.0, 80, 16000)
    theirs = torchaudio.functional.melscale_fbanks(
        config.n_fft // 2 + 1, 0.0, 8000.0, 80, 16000, norm=None, mel_scale="htk"
    )
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    wave = torch.randn(1, 8000)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=config.n_fft, win_length=config.win_length,
        hop_length=config.hop_length, n_mels=80, power=2.0, mel_scale="htk", norm=None,
    )(wave)
    feats, _ = LogMelFrontend(config)(wave)
    torch.testing.assert_close(feats, torch.log(mel + config.log_floor).transpose(1, 2), atol=1e-3, rtol=1e-3)


def test_normalisation_over_valid_frames_only():
    feats = torch.randn(2, 50, 8) * 3 + 5
    frames = torch.tensor([50, 20])
    out = normalise_utterances(feats, frames)
    torch.testing.assert_close(out[1, :20].mean(dim=0), torch.zeros(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1, :20].std(dim=0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    assert bool((out[1, 20:] == 0).all())


def test_spec_augment_masks_within_limits():
    config = SpecAugmentConfig(freq_masks=1, freq_width=10, time_masks=1, time_width=0.1)
    feats = torch.ones(4, 100, 80)
    out = spec_augment(feats, torch.tensor([100, 100, 50, 100]), config, torch.Generator().manual_seed(0))
    zero_bins = (out == 0).all(dim=1).sum(dim=1)
    assert bool((zero_bins <= 10).all())
    zero_frames = (out == 0).all(dim=2).sum(dim=1)
    assert bool((zero_frames <= 10).all())
    assert bool((feats == 1).all()), "the input must not be modified"


def test_config_errors():
    with pytest.raises(ValueError, match="exceeds n_fft=256"):
        FrontendConfig(n_fft=256, win_ms=25.0)
    with pytest.raises(ValueError, match="f_max"):
        FrontendConfig(f_max=9000.0)
    with pytest.raises(ValueError, match="time_width"):
        SpecAugmentConfig(time_width=1.5)
