"""Iterative compression on a tiny recogniser and the tiny corpus: rounds, resume, stopping, errors."""

import json
import math

import pytest
import torch

from agents.cli import main
from agents.config import SearchConfig
from agents.iterative import (
    ASRData,
    IterativeConfig,
    _stop_reason,
    menu_floor,
    relative_increase,
    run_iterative,
)
from asr.checkpoint import load_checkpoint, save_checkpoint
from asr.corpus import CorpusConfig, ensure_corpus
from asr.finetune import FinetuneConfig, factorised_ranks
from asr.manifest import read_manifest
from asr.text import CharTokenizer
from shrinkml_env.plan import CompressionPlan
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iterative")
    paths = ensure_corpus(CorpusConfig.tiny(), folder / "corpus", workers=1)
    split = {s: read_manifest(paths.manifest(s), check_audio=False).utterances for s in ("train", "dev", "test")}
    checkpoint = folder / "tiny.pt"
    save_checkpoint(checkpoint, tiny_model(0), CharTokenizer())
    data = ASRData(split["train"][:8], split["dev"][3:5], split["dev"][:3], split["test"][:2])
    return checkpoint, data


def _config(checkpoint, **kw):
    finetune = FinetuneConfig(updates=2, max_batch_seconds=12.0, max_batch_size=8, dev_utterances=2, warmup_updates=1)
    search = SearchConfig(agent="random", budget=0.6, evaluations=3, target=str(checkpoint))
    return IterativeConfig(**{**dict(search=search, target_size=0.01, finetune=finetune, max_rounds=2,
                                     budget_factor=0.5), **kw})


def test_two_rounds_are_recorded_reported_and_resumed_without_new_work(setup, tmp_path, monkeypatch):
    checkpoint, data = setup
    seen = []
    result = run_iterative(_config(checkpoint), tmp_path / "run", data, on_round=seen.append)
    assert result.stop_reason == "max_rounds" and [r["round"] for r in result.rounds] == [0, 1] == [r["round"] for r in seen]
    first, second = result.rounds
    floor = menu_floor(tiny_model(0), "linear8")
    assert first["budget"] == 0.6 and second["budget"] == pytest.approx(max(first["size_ratio"] * 0.5, floor))
    assert second["size_ratio"] < first["size_ratio"] <= 0.6
    assert all(second["ranks"][k] <= first["ranks"][k] for k in first["ranks"])  # ranks only go down
    for r in result.rounds:
        assert r["compression"] == pytest.approx(1 / r["size_ratio"]) and 0 <= r["test_wer"] <= 1.5
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines()]
    assert lines == result.rounds
    for k in (0, 1):
        assert {"start.pt", "search", "compressed.pt", "finetune"} <= {p.name for p in (run / f"round-{k}").iterdir()}
    assert (run / "round-1" / "search" / "report.md").is_file()
    # Round 0 (no rank cap) fine-tunes exactly what its (whitened) search exported, not plain SVD.
    searched = load_checkpoint(run / "round-0" / "search" / "model.pt")[0].state_dict()
    compressed = load_checkpoint(run / "round-0" / "compressed.pt")[0].state_dict()
    assert searched.keys() == compressed.keys() and all(torch.equal(compressed[k], v) for k, v in searched.items())
    final, _, _ = load_checkpoint(run / "model.pt")
    assert factorised_ranks(final) == second["ranks"]
    report = (run / "report.md").read_text()
    assert "| 0 | 0.600 |" in report and "| 1 | " in report and "Stopped: max_rounds" in report
    assert json.loads((run / "result.json").read_text())["final"]["round"] == 1

    calls = []
    monkeypatch.setattr(CompressionPlan, "evaluate", lambda self, ranks: calls.append(ranks))
    again = run_iterative(_config(checkpoint), run, data)
    assert again.rounds == result.rounds and not calls
    with pytest.raises(ValueError, match=r"other settings \(target_size: 0.01 != 0.02"):
        run_iterative(_config(checkpoint, target_size=0.02), run, data)


def test_stop_reasons():
    config = IterativeConfig(search=SearchConfig(budget=0.5, target="model.pt"), target_size=0.2, max_rounds=3)
    row = {"within_tolerance": True, "size_ratio": 0.3}
    assert _stop_reason(config, []) is None
    assert _stop_reason(config, [row]) is None
    assert _stop_reason(config, [row, {**row, "size_ratio": 0.2}]) == "target_reached"
    assert _stop_reason(config, [row, {**row, "within_tolerance": False}]) == "wer_tolerance"
    assert _stop_reason(config, [row] * 3) == "max_rounds"
    assert config.budget(None) == 0.5 and config.budget(0.4) == pytest.approx(0.28) and config.budget(0.25) == 0.2
    assert relative_increase(0.105, 0.1) == pytest.approx(0.05)
    assert relative_increase(0.0, 0.0) == 0.0 and relative_increase(0.1, 0.0) == math.inf


def test_menu_floor_is_the_smallest_uniform_size():
    floor = menu_floor(tiny_model(0), "linear8")
    assert 0.0 < floor < 0.1


def test_a_relative_menus_floor_moves_with_the_budget():
    # budget7's smallest entry is half the budget's uniform fraction: below the budget, never a stop
    model = tiny_model(0)
    at_half, at_fifth = menu_floor(model, "budget7", 0.5), menu_floor(model, "budget7", 0.2)
    assert at_fifth < at_half < 0.5 and at_fifth < 0.2


@pytest.mark.parametrize("kwargs, match", [
    (dict(search=SearchConfig(target="toy", budget=0.5)), "target 'toy' has no training data"),
    (dict(target_size=0.6), r"target_size must be in \(0, budget=0.5\]"),
    (dict(target_size=0.0), "target_size must be"),
    (dict(wer_tolerance=-0.1), "wer_tolerance must be a relative WER increase >= 0"),
    (dict(budget_factor=1.0), r"budget_factor must be in \(0, 1\); got 1.0"),
    (dict(max_rounds=0), "max_rounds must be an integer >= 1; got 0"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IterativeConfig(**{"search": SearchConfig(budget=0.5, target="model.pt"), "target_size": 0.2, **kwargs})


def test_cli_needs_a_target_size(capsys):
    assert main(["search", "--iterative", "--target", "model.pt", "--quiet"]) == 2
    assert "--iterative needs --target-size" in capsys.readouterr().err


def test_refuses_a_foreign_folder(setup, tmp_path):
    checkpoint, data = setup
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an iterative run directory"):
        run_iterative(_config(checkpoint), tmp_path, data)
