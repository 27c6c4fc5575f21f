"""The training recipe end to end on a handful of tone-coded utterances."""

import json
import math

import pytest
import torch

from asr.audio import save_audio
from asr.checkpoint import load_checkpoint
from asr.manifest import Utterance
from asr.model import PRESETS
from asr.train import TrainConfig, learning_rate, train

TONES = {"a": 300.0, "b": 700.0, "c": 1500.0, "d": 3000.0}


def _utterances(folder, n=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        text = "".join("abcd"[int(k)] for k in torch.randint(0, 4, (3,), generator=gen))
        t = torch.arange(1600) / 16000
        wave = torch.cat([0.3 * torch.sin(2 * math.pi * TONES[ch] * t) for ch in text])
        path = folder / f"u{i}.wav"
        save_audio(path, wave)
        out.append(Utterance(f"u{i}", str(path), text, wave.numel() / 16000))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    return _utterances(folder)


def _config(**kw):
    base = dict(max_updates=6, max_batch_seconds=2.0, max_batch_size=4, eval_every=3,
                dev_utterances=4, warmup_updates=2, curriculum_updates=2,
                curriculum_max_seconds=0.3, seed=3)
    return TrainConfig(**{**base, **kw})


def _assert_same_weights(path_a, path_b):
    a, _, _ = load_checkpoint(path_a)
    b, _, _ = load_checkpoint(path_b)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=name)


def test_resume_matches_uninterrupted_run(data, tmp_path):
    model_config = PRESETS["tiny"]
    straight = train(model_config, _config(), data, data, tmp_path / "a")
    train(model_config, _config(), data, data, tmp_path / "b", stop_at_update=4)
    resumed = train(model_config, _config(), data, data, tmp_path / "b")
    assert straight.updates == resumed.updates == 6
    a, _, meta_a = load_checkpoint(straight.last_checkpoint)
    b, _, meta_b = load_checkpoint(resumed.last_checkpoint)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=name)
    assert meta_a["updates"] == 6 and meta_a["train_config"]["max_updates"] == 6
    history = [json.loads(line) for line in (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
    assert [h["update"] for h in history] == [3, 6]
    assert all(0.0 <= h["dev_wer"] for h in history)
    assert straight.best_checkpoint.exists()


def test_resume_with_other_model_config_is_refused(data, tmp_path):
    train(PRESETS["tiny"], _config(), data, data, tmp_path, stop_at_update=3)
    other = PRESETS["tiny"].__class__(**{**PRESETS["tiny"].to_dict(), "encoder_hidden_size": 16})
    with pytest.raises(ValueError, match="different model config"):
        train(other, _config(), data, data, tmp_path)


def test_resume_with_another_training_set_is_refused(data, tmp_path):
    train(PRESETS["tiny"], _config(), data[:8], data, tmp_path, stop_at_update=3)
    with pytest.raises(ValueError, match=r"another training set \(8 utterances, sha256 \w+\) than the one "
                                         r"given now \(10 utterances"):
        train(PRESETS["tiny"], _config(), data[:10], data, tmp_path)
    assert train(PRESETS["tiny"], _config(), data[:8], data, tmp_path).updates == 6  # the same set resumes


def test_learning_rate_schedule():
    config = TrainConfig(max_updates=100, warmup_updates=10, decay_start=0.5, final_lr_fraction=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 30) == pytest.approx(1e-3)
    assert learning_rate(config, 99) == pytest.approx(1e-3 * (1 - 49 / 50 * 0.9))


def test_bad_inputs(data, tmp_path):
    with pytest.raises(ValueError, match="max_updates must be >= 1; got 0"):
        TrainConfig(max_updates=0)
    with pytest.raises(ValueError, match="checkpoint_minutes must be > 0 or None; got 0"):
        TrainConfig(checkpoint_minutes=0)
    with pytest.raises(ValueError, match="got 0 train"):
        train(PRESETS["tiny"], _config(), [], data, tmp_path)
    with pytest.raises(ValueError, match="vocab_size"):
        train(PRESETS["tiny"].__class__(vocab_size=40), _config(), data, data, tmp_path)


def test_device_is_checked_with_a_clear_error():
    with pytest.raises(ValueError, match="'tpu' is not a torch device|training runs on 'cpu' or 'cuda'"):
        TrainConfig(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch finds no CUDA GPU here; use 'cpu'"):
            TrainConfig(device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_saves_device_free_checkpoints(data, tmp_path):
    result = train(PRESETS["tiny"], _config(device="cuda"), data, data, tmp_path)
    model, _, meta = load_checkpoint(result.last_checkpoint)  # loads on the CPU
    assert next(model.parameters()).device.type == "cpu" and meta["updates"] == 6
    resumed = train(PRESETS["tiny"], _config(device="cpu", max_updates=8), data, data, tmp_path)
    assert resumed.updates == 8


def test_time_limit_stops_resumably(data, tmp_path):
    first = train(PRESETS["tiny"], _config(), data, data, tmp_path / "b", stop_after_seconds=0.0)
    assert first.updates == 1  # the deadline is checked after each update
    assert first.best_checkpoint.exists()  # and the stop is scored on dev like an evaluation point
    resumed = train(PRESETS["tiny"], _config(), data, data, tmp_path / "b")
    straight = train(PRESETS["tiny"], _config(), data, data, tmp_path / "a")
    assert resumed.updates == straight.updates == 6
    _assert_same_weights(straight.last_checkpoint, resumed.last_checkpoint)


def test_a_run_killed_between_evaluations_resumes_from_its_last_timed_save(data, tmp_path):
    class Killed(Exception):
        pass

    def kill_at_five(update, total, stats):
        if update == 5:
            raise Killed

    often = _config(checkpoint_minutes=1e-9)  # a timed save after every update
    with pytest.raises(Killed):
        train(PRESETS["tiny"], often, data, data, tmp_path / "b", progress=kill_at_five)
    _, _, meta = load_checkpoint(tmp_path / "b" / "last.pt")
    assert meta["updates"] == 5  # not 3, the last evaluation
    resumed = train(PRESETS["tiny"], often, data, data, tmp_path / "b")
    straight = train(PRESETS["tiny"], _config(), data, data, tmp_path / "a")
    assert resumed.updates == straight.updates == 6
    _assert_same_weights(straight.last_checkpoint, resumed.last_checkpoint)


def test_distillation_from_itself_costs_nothing_and_from_another_model_pulls_towards_it(data, tmp_path):
    from asr.model import ASRModel
    from asr.train import distillation_loss, joint_loss
    from tests.conftest import toy_batch

    torch.manual_seed(0)
    student, other = ASRModel(PRESETS["tiny"]).eval(), ASRModel(PRESETS["tiny"]).eval()
    features, frames, targets, lengths, _ = toy_batch(4, torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, _, _ = student(features, frames, targets)
    for temperature in (1.0, 2.0):
        assert float(distillation_loss(student, logits, features, frames, targets, temperature)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(other, logits, features, frames, targets)) > 1e-4
    # The mixed loss is (1 - w) reference + w distillation, and reports both parts.
    plain, _ = joint_loss(student, features, frames, targets, lengths, 0.0)
    mixed, stats = joint_loss(student, features, frames, targets, lengths, 0.0, other, 0.25)
    assert mixed.item() == pytest.approx(0.75 * plain.item() + 0.25 * stats["distill_loss"], rel=1e-5)
    # A short distilled run trains, and weight and teacher come together or not at all.
    result = train(PRESETS["tiny"], _config(distill_weight=0.5, max_updates=3), data, data, tmp_path / "d", teacher=other)
    assert result.updates == 3
    with pytest.raises(ValueError, match="distill_weight=0.5 needs a teacher model"):
        train(PRESETS["tiny"], _config(distill_weight=0.5), data, data, tmp_path / "e")
    with pytest.raises(ValueError, match="distill_weight must be in \\[0, 1\\]"):
        TrainConfig(distill_weight=1.5)


def test_bf16_training_keeps_fp32_weights_and_follows_the_fp32_run_closely(data, tmp_path):
    fp32 = train(PRESETS["tiny"], _config(), data, data, tmp_path / "a")
    bf16 = train(PRESETS["tiny"], _config(precision="bf16"), data, data, tmp_path / "b")
    a, _, _ = load_checkpoint(fp32.last_checkpoint)
    b, _, meta = load_checkpoint(bf16.last_checkpoint)
    assert meta["train_config"]["precision"] == "bf16"
    gaps = []
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert pb.dtype == torch.float32, name
        gaps.append(((pa - pb).norm() / pa.norm().clamp_min(1e-8)).item())
    assert 0.0 < max(gaps) < 0.05  # rounded differently, yet the same run
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")


def test_nuclear_norm_decay_lowers_the_lstm_matrices_nuclear_norm_and_is_logged(data, tmp_path):
    train(PRESETS["tiny"], _config(), data, data, tmp_path / "a")
    decayed = train(PRESETS["tiny"], _config(nuclear_weight=20.0, nuclear_every=2), data, data, tmp_path / "b")
    logged = [[json.loads(line)["nuclear_norm"] for line in (tmp_path / run / "history.jsonl").read_text().splitlines()]
              for run in ("a", "b")]
    assert len(logged[0]) == len(logged[1]) == 2
    assert logged[1][-1] < logged[0][-1]  # same data, seed and steps; only the decay differs
    _, _, meta = load_checkpoint(decayed.last_checkpoint)
    assert meta["train_config"]["nuclear_weight"] == 20.0
    for bad in (dict(nuclear_weight=-1.0), dict(nuclear_weight=math.inf)):
        with pytest.raises(ValueError, match="nuclear_weight must be a finite number >= 0"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="nuclear_every must be >= 1; got 0"):
        TrainConfig(nuclear_every=0)
