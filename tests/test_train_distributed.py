"""Data-parallel training (asr.distributed): the parts' losses sum to the batch's, and two
gloo processes train to the same weights as one process."""

import dataclasses
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from asr.checkpoint import load_checkpoint
from asr.data import load_batch
from asr.distributed import Shares, shard, shares
from asr.features import LogMelFrontend, normalise_utterances
from asr.model import PRESETS, ASRModel
from asr.text import CharTokenizer
from asr.train import joint_loss, train
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


def _worker(rank, world, port, data, run_dir, stop_after_seconds):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        stop = stop_after_seconds if rank == 0 else None  # only rank 0's clock may count
        train(EXACT, _config(specaugment=None), data, data, run_dir, stop_after_seconds=stop)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_to_the_weights_of_one(data, tmp_path):
    single = train(EXACT, _config(specaugment=None), data, data, tmp_path / "one")
    mp.spawn(_worker, args=(2, _free_port(), data, tmp_path / "two", None), nprocs=2, join=True)
    a, _, meta_a = load_checkpoint(single.last_checkpoint)
    b, _, meta_b = load_checkpoint(tmp_path / "two" / "last.pt")
    assert meta_a["updates"] == meta_b["updates"] == 6
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)
    history = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2  # rank 0 alone evaluates and writes


def test_rank_zeros_clock_stops_every_process_at_the_same_update(data, tmp_path):
    # Rank 0 is out of time after its first update; rank 1's clock never is. Both must stop
    # there (a hang here would be rank 1 waiting in an all-reduce rank 0 never joins).
    mp.spawn(_worker, args=(2, _free_port(), data, tmp_path / "run", 0.0), nprocs=2, join=True)
    _, _, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["updates"] == 1
