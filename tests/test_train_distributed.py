"""Data-parallel training (asr.distributed): the parts' losses sum to the batch's, and two
gloo processes train to the same weights as one process."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from asr.checkpoint import load_checkpoint
from asr.data import load_batch
from asr.distributed import Shares, run_on_rank_zero, shard, shares, sum_gradients
from asr.features import LogMelFrontend, normalise_utterances
from asr.manifest import write_manifest
from asr.model import PRESETS, ASRModel
from asr.text import CharTokenizer
from asr.train import joint_loss, train
from benchmarks.common import free_port
from tests.test_train import _config, _utterances

# Packed sequences and no dropout: then a batch's loss does not depend on how it is split.
EXACT = dataclasses.replace(PRESETS["tiny"], dropout=0.0, pack_in_training=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _utterances(tmp_path_factory.mktemp("audio"), n=10)


def test_shards_cover_the_batch_once_and_shares_sum_to_one():
    items = list(range(7))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(x for p in parts for x in p) == items
    assert shard([5], 1, 2) == []  # a short batch can leave a process nothing
    counts = [4, 9, 2, 7, 1]
    got = [shares(counts, r, 2) for r in range(2)]
    assert got[0] == Shares(tokens=(4 + 2 + 1) / 23, utterances=3 / 5)
    assert sum(s.tokens for s in got) == pytest.approx(1.0)
    assert sum(s.utterances for s in got) == pytest.approx(1.0)


def test_parts_losses_and_gradients_sum_to_the_whole_batch(data):
    torch.manual_seed(0)
    model = ASRModel(EXACT).train()
    tokenizer, frontend = CharTokenizer(), LogMelFrontend()

    def loss_and_grads(utterances, part):
        batch = load_batch(utterances, tokenizer)
        features, frames = frontend(batch.waveforms, batch.samples)
        features = normalise_utterances(features, frames)
        model.zero_grad()
        loss, _ = joint_loss(model, features, frames, batch.targets, batch.target_lengths, 0.1,
                             shares=part)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    whole, whole_grads = loss_and_grads(data, None)
    counts = [len(tokenizer.encode(u.text)) + 1 for u in data]
    total, total_grads = 0.0, None
    for rank in range(3):
        loss, grads = loss_and_grads(shard(data, rank, 3), shares(counts, rank, 3))
        total += loss
        total_grads = grads if total_grads is None else [a + b for a, b in zip(total_grads, grads)]
    assert total == pytest.approx(whole, rel=1e-5)
    for a, b in zip(total_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _worker(rank, world, port, data, run_dir, stop_after_seconds, stop_at_update=None, model_config=EXACT,
            config=None):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        stop = stop_after_seconds if rank == 0 else None  # only rank 0's clock may count
        train(model_config, config or _config(specaugment=None), data, data, run_dir, stop_after_seconds=stop,
              stop_at_update=stop_at_update)
    finally:
        dist.destroy_process_group()


def _collectives_worker(rank, world, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        used, unused = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
        used.grad = torch.full((2,), float(rank + 1)) if rank == 0 else None  # rank 1's part was empty
        sums = sum_gradients([used, unused], [float(rank == 0), 0.5])
        chosen = run_on_rank_zero(lambda: f"made by rank {dist.get_rank()}")
        try:
            run_on_rank_zero(lambda: (_ for _ in ()).throw(ValueError("no such manifest: x.jsonl")))
            failure = None
        except ValueError as e:
            failure = str(e)
        torch.save({"used": used.grad, "unused": unused.grad, "sums": sums, "chosen": chosen,
                    "failure": failure}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_collectives_sum_gradients_and_values_and_share_rank_zeros_work(tmp_path):
    mp.spawn(_collectives_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt")
        torch.testing.assert_close(got["used"], torch.ones(2))  # rank 0's, plus zeros
        assert got["unused"] is None  # no process used it: the optimiser skips it
        assert got["sums"] == [1.0, 1.0]
        assert got["chosen"] == "made by rank 0"
        # Rank 0's error reaches rank 1 by name instead of a collective timeout.
        assert "no such manifest: x.jsonl" in got["failure"]


def test_two_processes_train_to_the_weights_of_one(data, tmp_path):
    config = _config(specaugment=None, nuclear_weight=5.0, nuclear_every=2)  # with its SVD steps too
    single = train(EXACT, config, data, data, tmp_path / "one")
    mp.spawn(_worker, args=(2, free_port(), data, tmp_path / "two", None, None, EXACT, config), nprocs=2, join=True)
    a, _, meta_a = load_checkpoint(single.last_checkpoint)
    b, _, meta_b = load_checkpoint(tmp_path / "two" / "last.pt")
    assert meta_a["updates"] == meta_b["updates"] == 6
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)
    history = [json.loads(line) for line in (tmp_path / "two" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2  # rank 0 alone evaluates and writes
    single_history = [json.loads(line) for line in (tmp_path / "one" / "history.jsonl").read_text().splitlines()]
    for mine, theirs in zip(history, single_history):  # the logged loss is the whole batch's
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-4)


def test_rank_zeros_clock_stops_every_process_at_the_same_update(data, tmp_path):
    # Rank 0 is out of time after its first update; rank 1's clock never is. Both must stop
    # there (a hang here would be rank 1 waiting in an all-reduce rank 0 never joins).
    mp.spawn(_worker, args=(2, free_port(), data, tmp_path / "run", 0.0), nprocs=2, join=True)
    _, _, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["updates"] == 1


def test_an_interrupted_two_process_run_resumes_to_the_uninterrupted_weights(data, tmp_path):
    # With dropout and SpecAugment every process draws random numbers; rank 1's draws are not
    # in last.pt, so they must depend only on where the run is, not on where it started.
    noisy = dataclasses.replace(EXACT, dropout=0.2)
    config = _config()
    assert config.specaugment is not None

    def run(run_dir, stop_at):
        mp.spawn(_worker, args=(2, free_port(), data, run_dir, None, stop_at, noisy, config), nprocs=2, join=True)

    run(tmp_path / "straight", None)
    run(tmp_path / "resumed", 3)
    _, _, meta = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert meta["updates"] == 3
    run(tmp_path / "resumed", None)
    a, _, meta_a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b, _, meta_b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert meta_a["updates"] == meta_b["updates"] == 6
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)


def _torchrun(*argv):
    """``shrinkml ARGV`` in two processes under torchrun (one core each), as a user runs it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(free_port()), "-m", "agents.cli", *argv, "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env,
                          cwd=Path(__file__).resolve().parent.parent)


def test_train_asr_under_torchrun(data, tmp_path):
    manifest = tmp_path / "tones.jsonl"
    write_manifest(manifest, data)
    done = _torchrun("train-asr", "--preset", "tiny", "--train-manifest", str(manifest), "--dev-manifest",
                     str(manifest), "--max-updates", "4", "--batch-seconds", "2", "--batch-size", "4",
                     "--warmup", "1", "--eval-every", "2", "--dev-utterances", "4", "--curriculum-updates", "0",
                     "--nuclear-weight", "3", "--nuclear-every", "2", "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("4 updates; best dev WER") == 1  # rank 0 alone reports
    _, _, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["updates"] == 4 and meta["processes"] == 2
    assert (meta["train_config"]["nuclear_weight"], meta["train_config"]["nuclear_every"]) == (3.0, 2)


def test_finetune_under_torchrun(data, tmp_path):
    from asr.checkpoint import save_factorised_asr
    from tests.test_finetune import _factorised

    manifest = tmp_path / "tones.jsonl"
    write_manifest(manifest, data)
    save_factorised_asr(tmp_path / "search" / "model.pt", _factorised()[1], CharTokenizer(), {"size_ratio": 0.3})
    done = _torchrun("finetune", str(tmp_path / "search"), "--updates", "3", "--out", str(tmp_path / "ft"),
                     "--train-manifest", str(manifest), "--dev-manifest", str(manifest), "--test-manifest",
                     str(manifest), "--dev-utterances", "2", "--batch-seconds", "2", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone decodes the test set and reports
    result = json.loads(lines[0])
    assert result["updates"] == 3 and result["test_wer"] is not None
    assert (tmp_path / "ft" / "model.pt").is_file()
