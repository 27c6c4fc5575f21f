"""Time-boxed training: the schedule's length chosen from measured update times."""

import json

import pytest

from asr.checkpoint import load_checkpoint
from asr.model import PRESETS
from asr.timebox import TimeBox, plan_updates, train_in_minutes
from tests.test_train import _config, _utterances


def test_plan_fills_the_time_left_with_updates_and_evaluations():
    # 100 s left, 1 s per update, a 5 s evaluation every 10 updates and one at the end:
    # 95 s for n updates costing 1.5 s each -> 63 more.
    assert plan_updates(20, 1.0, 5.0, 100.0, eval_every=10) == 20 + 63
    assert plan_updates(20, 1.0, 0.0, 100.0, eval_every=10, margin=0.5) == 20 + 50
    assert plan_updates(20, 1.0, 5.0, 1.0, eval_every=10) == 21  # too little time: one more update


def test_bad_boxes_are_refused():
    with pytest.raises(ValueError, match="minutes must be > 0; got 0"):
        TimeBox(0)
    with pytest.raises(ValueError, match="timing_fraction must be in"):
        TimeBox(1, timing_fraction=1.0)
    with pytest.raises(ValueError, match="seconds_per_update must be > 0"):
        plan_updates(0, 0.0, 0.0, 10.0, eval_every=1)


def test_run_is_timed_then_resumed_with_the_fitted_schedule(tmp_path):
    data = _utterances(tmp_path, n=8)
    config = _config(max_updates=10_000, warmup_updates=1, curriculum_updates=0, eval_every=50)
    result, plan = train_in_minutes(PRESETS["tiny"], config, data, data, tmp_path / "run",
                                    TimeBox(minutes=0.05, timing_fraction=0.3))
    assert plan.timed_updates >= 1 and plan.seconds_per_update > 0
    assert plan.timed_updates < plan.max_updates != config.max_updates
    assert plan.timed_updates < result.updates <= plan.max_updates
    record = json.loads((tmp_path / "run" / "timebox.json").read_text())
    assert record["plan"]["max_updates"] == plan.max_updates and record["updates"] == result.updates
    _, _, meta = load_checkpoint(result.last_checkpoint)
    assert meta["train_config"]["max_updates"] == plan.max_updates  # the schedule it trained under
    with pytest.raises(ValueError, match="sets its own stop"):
        train_in_minutes(PRESETS["tiny"], config, data, data, tmp_path / "x", TimeBox(1), stop_at_update=3)


def _manifest(tmp_path, utterances, name="m.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"audio_filepath": u.audio_filepath, "text": u.text, "duration": u.duration})
                            + "\n" for u in utterances))
    return path


def test_train_asr_minutes_on_the_command_line(tmp_path, capsys):
    from agents.cli import main

    m = _manifest(tmp_path, _utterances(tmp_path, n=6))
    common = ["train-asr", "--preset", "tiny", "--train-manifest", str(m), "--dev-manifest", str(m),
              "--batch-seconds", "2", "--batch-size", "4", "--warmup", "1", "--curriculum-updates", "0",
              "--dev-utterances", "4", "--run-dir", str(tmp_path / "run")]
    assert main([*common, "--minutes", "1", "--stop-at", "3"]) == 2
    assert "--minutes sets its own stop" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one schedule length or the other
        main([*common, "--minutes", "1", "--max-updates", "5"])
    assert main([*common, "--minutes", "0.03"]) == 0
    record = json.loads((tmp_path / "run" / "timebox.json").read_text())
    assert record["updates"] > record["plan"]["timed_updates"] >= 1


def test_train_asr_trains_on_every_manifest_given_and_refuses_one_given_twice(tmp_path, capsys):
    from agents.cli import main

    data = _utterances(tmp_path, n=7)
    first, second = _manifest(tmp_path, data[:4], "a.jsonl"), _manifest(tmp_path, data[4:], "b.jsonl")
    common = ["train-asr", "--preset", "tiny", "--dev-manifest", str(first), "--batch-seconds", "2",
              "--batch-size", "4", "--warmup", "1", "--curriculum-updates", "0", "--dev-utterances", "2",
              "--max-updates", "2", "--run-dir", str(tmp_path / "run")]
    assert main([*common, "--train-manifest", str(first), "--train-manifest", str(tmp_path / "." / "a.jsonl")]) == 2
    assert "names a manifest twice" in capsys.readouterr().err
    assert main([*common, "--train-manifest", str(first), "--train-manifest", str(second)]) == 0
    _, _, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["train_manifests"] == [str(first), str(second)] and meta["train_utterances"] == 7
