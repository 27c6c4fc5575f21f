"""``shrinkml search / export / report`` end to end on the toy target."""

import json

import pytest
import torch

from agents.cli import main
from agents.targets import load_toy_model


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the commands below set --threads 1


def search(run_dir, *extra):
    return main(["search", "--target", "toy", "--budget", "0.5", "--evaluations", "4", "--threads", "1",
                 "--quiet", "--out", str(run_dir), *extra])


def test_search_json_export_and_report(tmp_path, capsys):
    assert search(tmp_path / "ppo", "--agent", "ppo", "--sb3", "n_epochs=2", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"agent", "budget", "evaluations", "best", "baseline", "run_dir"}
    assert (summary["agent"], summary["evaluations"], summary["run_dir"]) == ("ppo", 4, str(tmp_path / "ppo"))
    assert json.loads((tmp_path / "ppo" / "config.json").read_text())["config"]["sb3"] == {"n_epochs": 2}

    assert search(tmp_path / "random", "--agent", "random") == 0
    table = capsys.readouterr().out
    assert "dense" in table and "uniform" in table and "random" in table

    assert main(["export", str(tmp_path / "ppo"), "--out", str(tmp_path / "model.pt")]) == 0
    assert sum(p.numel() for p in load_toy_model(tmp_path / "model.pt").parameters()) < 28_808

    plot = tmp_path / "cmp.png"
    assert main(["report", str(tmp_path / "ppo"), str(tmp_path / "random"), "--plot", str(plot),
                 "--out", str(tmp_path / "cmp.md")]) == 0
    out = capsys.readouterr().out
    assert out.count("| ppo |") == 1 and out.count("| random |") == 1
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "sac"], "unknown agent 'sac'"),
        (["--evaluations", "0"], "evaluations must be an integer >= 1; got 0"),
        (["--budget", "1.5"], r"budget must be a size ratio in (0, 1]; got 1.5"),
        (["--agent", "ppo", "--sb3", "gamma"], "is not NAME=VALUE"),
        (["--agent", "ppo", "--sb3", "nonsense=1"], "ppo takes no hyperparameter(s) ['nonsense']"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path, capsys, args, message):
    assert search(tmp_path / "run", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_export_of_an_unfinished_run_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m.pt")]) == 2
    assert "is not a finished run directory" in capsys.readouterr().err


def test_demo_runs_a_ppo_search_and_prints_the_comparison_table(tmp_path, capsys):
    assert main(["demo", "--target", "toy", "--evaluations", "4", "--threads", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for row in ("dense (shipped)", "uniform", "ShrinkML PPO search", "rank menu linear8", "whitened factorisation",
                "search WER"):
        assert row in out
    assert (tmp_path / "model.pt").is_file()
    config = json.loads((tmp_path / "config.json").read_text())["config"]
    # The demo is the default search: its menu; WER is the score on the toy target (no distill there).
    assert (config["rank_menu"], config["score"], config["warm_start"]) == ("linear8", "wer", None)


def test_the_command_line_offers_exactly_the_trainers_precisions():
    from agents.commands_asr import PRECISION_CHOICES
    from asr.train import PRECISIONS

    assert PRECISION_CHOICES == PRECISIONS
