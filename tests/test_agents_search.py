"""run_search on the toy target: run directory, resume, best within budget, export."""

import json
import subprocess
import sys

import pytest
import torch

from agents.cli import main
from agents.config import SearchConfig
from agents.run_dir import RunDir, RunDirInUse, read_jsonl
from agents.search import run_search
from agents.targets import load_toy_model, toy_search_target


class Interrupt(Exception):
    pass


def interrupt_after(n):
    def progress(state):
        if state.evaluations >= n:
            raise Interrupt

    return progress


def test_run_directory_holds_config_evaluations_result_model_plot_and_report(tmp_path):
    config = SearchConfig(agent="random", target="toy", budget=0.5, evaluations=6)
    kit = toy_search_target()
    result = run_search(config, tmp_path / "run", kit)
    run = RunDir(tmp_path / "run")
    names = {p.name for p in run.path.iterdir()}
    assert names == {"config.json", "evaluations.jsonl", "uniform_curve.json", "result.json", "model.pt",
                     "pareto.png", "report.md", ".lock"}
    assert run.config() == config
    rows, torn = read_jsonl(run.evaluations_file)
    assert len(rows) == 6 and not torn
    assert set(rows[0]) >= {"ranks", "search_wer", "size_ratio", "reward"}
    assert run.plot_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| **random** (best within budget)" in run.report_file.read_text()
    assert len(run.uniform_curve()) == 9
    # The best is the lowest search WER within the budget, ties to the smaller model.
    best = min((r for r in run.evaluations() if r.size_ratio <= 0.5), key=lambda r: (r.search_wer, r.size_ratio))
    assert result.best.ranks == best.ranks
    assert run.result()["best"] == result.summary()["best"]
    # The exported model is truly factorised and reproduces the reported test WER.
    model = load_toy_model(run.model_file)
    assert sum(p.numel() for p in model.parameters()) == result.best.model_params < result.dense_model_params
    assert kit.test_error(model) == pytest.approx(result.best.test_wer)
    # Uniform compression matched to the chosen size (never smaller) is in the result and report.
    matched = result.uniform_at_size
    assert result.best.size_ratio <= matched.size_ratio < result.best.size_ratio + 0.1
    assert "(same size)" in run.report_file.read_text()
    assert run.result()["uniform_at_size"]["test_wer"] == pytest.approx(matched.test_wer)


def test_summary_has_the_documented_shape(tmp_path):
    result = run_search(SearchConfig(agent="uniform", target="toy", budget=0.3, evaluations=3), tmp_path)
    summary = json.loads(json.dumps(result.summary()))
    assert set(summary) == {"agent", "budget", "evaluations", "best", "baseline", "run_dir"}
    assert set(summary["best"]) == {"ranks", "size_ratio", "search_wer", "test_wer"}
    assert set(summary["baseline"]) == {"test_wer"}
    assert (summary["agent"], summary["budget"], summary["evaluations"]) == ("uniform", 0.3, 1)
    # Uniform at the budget is the search's own uniform reference.
    assert result.best.ranks == result.uniform.ranks and result.best.size_ratio <= 0.3


@pytest.mark.parametrize("agent", ["ppo", "evolution", "greedy"])
def test_interrupted_search_resumes_without_decoding_anything_twice(tmp_path, decodes, agent):
    config = SearchConfig(agent=agent, target="toy", budget=0.5, evaluations=12)
    with pytest.raises(Interrupt):
        run_search(config, tmp_path / "run", progress=interrupt_after(5))
    assert len(decodes) == 5 == len(RunDir(tmp_path / "run").evaluations())
    result = run_search(config, tmp_path / "run")
    assert len(decodes) == 12 == len(set(decodes)) == result.evaluations
    assert result.new_evaluations == 7
    # Same seed, same replay: the resumed search is the uninterrupted one.
    uninterrupted = run_search(config, tmp_path / "whole")
    assert [r.ranks for r in RunDir(tmp_path / "whole").evaluations()] == [r.ranks for r in RunDir(tmp_path / "run").evaluations()]
    assert uninterrupted.best == result.best
    # Rerunning a finished search decodes nothing new.
    before = len(decodes)
    assert run_search(config, tmp_path / "run").new_evaluations == 0
    assert len(decodes) == before


def test_a_torn_last_line_is_dropped_on_resume(tmp_path, decodes):
    config = SearchConfig(agent="random", target="toy", budget=0.5, evaluations=4)
    with pytest.raises(Interrupt):
        run_search(config, tmp_path, progress=interrupt_after(3))
    with open(tmp_path / "evaluations.jsonl", "ab") as f:
        f.write(b'{"index": 3, "ranks": [1, 2')  # a crash mid-write
    result = run_search(config, tmp_path)
    assert result.evaluations == 4 and len(decodes) == 4
    assert [r.index for r in RunDir(tmp_path).evaluations()] == [0, 1, 2, 3]


def test_resuming_with_other_settings_or_into_a_foreign_folder_is_refused(tmp_path):
    config = SearchConfig(agent="random", target="toy", budget=0.5, evaluations=3)
    run_search(config, tmp_path / "run")
    with pytest.raises(ValueError, match=r"holds a search with other settings \(budget: 0.5 != 0.4\)"):
        run_search(SearchConfig(agent="random", target="toy", budget=0.4, evaluations=3), tmp_path / "run")
    with pytest.raises(ValueError, match=r"already holds 3 evaluations, more than evaluations=2"):
        run_search(SearchConfig(agent="random", target="toy", budget=0.5, evaluations=2), tmp_path / "run")
    more = run_search(SearchConfig(agent="random", target="toy", budget=0.5, evaluations=5), tmp_path / "run")
    assert (more.evaluations, more.new_evaluations) == (5, 2)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not a ShrinkML run directory"):
        run_search(config, tmp_path / "other")


def test_a_run_directory_another_process_is_searching_in_is_refused(tmp_path, capsys):
    config = SearchConfig(agent="random", target="toy", budget=0.5, evaluations=3)
    script = ("import sys, time\nfrom agents.run_dir import RunDir\n"
              "with RunDir(sys.argv[1]).lock():\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUse, match=rf"being written by another process \(pid {holder.pid}\)"):
            run_search(config, tmp_path / "run")
        assert {p.name for p in (tmp_path / "run").iterdir()} == {".lock"}  # nothing written beside it
        threads = torch.get_num_threads()
        assert main(["search", "--target", "toy", "--agent", "random", "--evaluations", "3", "--quiet",
                     "--threads", "1", "--out", str(tmp_path / "run")]) == 2  # said plainly, no traceback
        torch.set_num_threads(threads)
        assert "being written by another process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its process: the same folder is then searched as a fresh one.
    assert run_search(config, tmp_path / "run").evaluations == 3


def test_budget_the_menu_cannot_reach_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"below the smallest size ratio"):
        run_search(SearchConfig(agent="random", target="toy", budget=0.01, evaluations=3), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_target_scored_one_way_refuses_a_search_steered_another(tmp_path):
    from dataclasses import replace

    kit = toy_search_target()
    kit = replace(kit, target=replace(kit.target, score="distill"))  # as asr_target(score="distill") names it
    with pytest.raises(ValueError, match="target scores 'distill' but the config steers by 'wer'"):
        run_search(SearchConfig(target="toy", evaluations=2), tmp_path / "run", kit)
    assert not (tmp_path / "run").exists()  # refused before the folder is touched
