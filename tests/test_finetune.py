"""Fine-tuning factorised recognisers: gradients reach the factors, ranks stay, runs resume."""

import json

import pytest
import torch
from torch import nn

from agents.cli import main
from asr.checkpoint import load_checkpoint, save_factorised_asr
from asr.corpus import CorpusConfig, ensure_corpus
from asr.finetune import (
    FinetuneConfig,
    compressible_parameter_counts,
    densify,
    factorised_ranks,
    finetune,
    resolve_source,
)
from asr.manifest import read_manifest
from asr.text import CharTokenizer
from asr.train import TrainConfig, joint_loss, train
from shrinkml_env.compression import describe_layers, export_factorised, factorised_structure
from tests.conftest import tiny_model, toy_batch


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    paths = ensure_corpus(CorpusConfig.tiny(), tmp_path_factory.mktemp("corpus"), workers=1)
    return paths, {s: read_manifest(paths.manifest(s), check_audio=False).utterances for s in ("train", "dev", "test")}


def _factorised(fraction=4, seed=0):
    model = tiny_model(seed).eval()
    layers = describe_layers(model, model.compressible_layers())
    ranks = {m.key: max(1, m.full_rank // fraction) for layer in layers for m in layer.matrices}
    return model, export_factorised(model, layers, ranks)


def _config(**kw):
    return FinetuneConfig(**{**dict(updates=4, max_batch_seconds=12.0, max_batch_size=8, dev_utterances=2,
                                    warmup_updates=1, eval_every=2, learning_rate=1e-3), **kw})


def test_factor_gradients_match_the_chain_rule_through_the_scripted_recurrence():
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 8, bidirectional=True, batch_first=True)
    layers = describe_layers(lstm, [""])
    ranks = {"weight_ih_l0": 3, "weight_hh_l0": 2, "weight_hh_l0_reverse": 5}
    factorised = export_factorised(lstm, layers, ranks).train()
    twin = nn.LSTM(6, 8, bidirectional=True, batch_first=True)
    twin.load_state_dict(densify_state(factorised, lstm))
    x = torch.randn(3, 7, 6)
    weights = torch.randn(3, 7, 16)
    for _ in range(3):  # TorchScript's profiling executor specialises after the first calls
        factorised.zero_grad()
        twin.zero_grad()
        (factorised(x)[0] * weights).sum().backward()
        (twin(x)[0] * weights).sum().backward()
        for name in ranks:
            u, v = factorised.matrix(name)
            grad = getattr(twin, name).grad
            torch.testing.assert_close(u.grad, grad @ v.detach().T, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(v.grad, u.detach().T @ grad, atol=1e-5, rtol=1e-4)


def densify_state(factorised, stock):
    return {name: factorised.dense_matrix(name).detach() if name in factorised.ranks else getattr(factorised, name)
            for name, _ in stock.named_parameters()}


def test_training_a_factorised_model_lowers_its_loss_and_keeps_its_ranks():
    _, model = _factorised()
    model.train()
    structure = factorised_structure(model)
    features, frames, targets, lengths, _ = toy_batch(6, torch.Generator().manual_seed(1))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(12):
        loss, _ = joint_loss(model, features, frames, targets, lengths, 0.0)
        optimiser.zero_grad()
        loss.backward()
        if step == 0:
            factors = {n: p.grad for n, p in model.named_parameters() if n.endswith(("_u", "_v"))}
            assert len(factors) == 24 and all(g is not None and g.abs().sum() > 0 for g in factors.values())
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert factorised_structure(model) == structure


def test_densify_keeps_the_function_and_the_counts_measure_compression():
    dense, model = _factorised()
    features, frames, targets, _, _ = toy_batch(3, torch.Generator().manual_seed(2))
    back = densify(model)
    assert not factorised_structure(back)
    with torch.no_grad():
        torch.testing.assert_close(back(features, frames, targets)[0], model(features, frames, targets)[0],
                                   atol=1e-5, rtol=1e-4)
    now, full = compressible_parameter_counts(model)
    assert compressible_parameter_counts(dense) == (full, full) and now < full / 2.5
    ranks = factorised_ranks(model)
    assert ranks["encoder.0.weight_hh_l0"] == 32 // 4
    # The densified matrices have at most the factorised ranks.
    assert torch.linalg.matrix_rank(back.encoder[0].weight_hh_l0.detach()) <= 8


def test_finetune_writes_a_checkpoint_with_its_test_wer_and_resumes_exactly(corpus, tmp_path):
    _, split = corpus
    _, model = _factorised()
    args = (CharTokenizer(), _config(), split["train"][:8], split["dev"][:2], split["test"][:2])
    straight = finetune(model, *args, tmp_path / "a")
    partial = finetune(model, *args, tmp_path / "b", stop_at_update=3)
    assert not partial.finished and partial.updates == 3
    resumed = finetune(model, *args, tmp_path / "b")
    assert straight.finished and resumed.updates == straight.updates == 4
    a, _, meta = load_checkpoint(straight.model_file)
    b, _, _ = load_checkpoint(tmp_path / "b" / "last.pt")
    c, _, _ = load_checkpoint(tmp_path / "a" / "last.pt")
    for (name, pb), pc in zip(b.state_dict().items(), c.state_dict().values()):
        torch.testing.assert_close(pb, pc, msg=name)
    assert factorised_structure(a) == factorised_structure(model)  # ranks fixed
    assert meta["test_wer"] == straight.test_wer and 0.0 <= straight.test_wer
    assert straight.compression > 2.5
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["ranks"] == factorised_ranks(model) and result["updates"] == 4
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), model.state_dict().values()))


def test_cli_finetunes_a_search_run_directory(corpus, tmp_path, capsys):
    paths, _ = corpus
    _, model = _factorised()
    save_factorised_asr(tmp_path / "search" / "model.pt", model, CharTokenizer(), {"size_ratio": 0.3})
    code = main(["finetune", str(tmp_path / "search"), "--updates", "2", "--out", str(tmp_path / "ft"),
                 "--train-manifest", str(paths.manifest("train")), "--dev-manifest", str(paths.manifest("dev")),
                 "--test-manifest", str(paths.manifest("test")), "--test-utterances", "2", "--dev-utterances", "2",
                 "--batch-seconds", "12", "--warmup", "1", "--threads", "1", "--precision", "bf16", "--json"])
    assert code == 0
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["config"]["precision"] == "bf16"
    result = json.loads(capsys.readouterr().out)
    assert result["updates"] == 2 and result["test_wer"] is not None and result["compression"] > 2.5
    assert (tmp_path / "ft" / "model.pt").is_file() and (tmp_path / "ft" / "history.jsonl").is_file()


def test_cli_trains_on_every_train_manifest_given_in_order(corpus):
    from agents.commands_finetune import _training_utterances

    paths, _ = corpus
    train, dev = paths.manifest("train"), paths.manifest("dev")
    got = _training_utterances([train, dev])
    assert [u.id for u in got] == [u.id for u in read_manifest(train).utterances + read_manifest(dev).utterances]


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of epochs and updates"),
    (dict(epochs=1, updates=3), "exactly one of epochs and updates"),
    (dict(epochs=-1.0), "epochs must be a number > 0; got -1.0"),
    (dict(updates=0), "updates must be an integer >= 1 or None; got 0"),
    (dict(updates=5, learning_rate=0.0), "learning_rate"),
    (dict(updates=5, precision="fp16"), "precision must be one of"),
])
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FinetuneConfig(**kwargs)


def test_bad_sources_and_run_directories_are_refused(corpus, tmp_path):
    _, split = corpus
    with pytest.raises(FileNotFoundError, match="neither model.pt"):
        resolve_source(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor a run directory"):
        resolve_source(tmp_path / "missing.pt")
    _, model = _factorised()
    sets = (split["train"][:4], split["dev"][:2], split["test"][:2])
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a fine-tuning run directory"):
        finetune(model, CharTokenizer(), _config(), *sets, tmp_path / "foreign")
    finetune(model, CharTokenizer(), _config(), *sets, tmp_path / "run", stop_at_update=1)
    with pytest.raises(ValueError, match=r"other settings \(learning_rate: 0.001 != 0.002"):
        finetune(model, CharTokenizer(), _config(learning_rate=2e-3), *sets, tmp_path / "run")
    _, other = _factorised(fraction=2)
    with pytest.raises(ValueError, match="fine-tunes another model"):
        finetune(other, CharTokenizer(), _config(), *sets, tmp_path / "run")
    with pytest.raises(ValueError, match="needs test utterances"):
        finetune(model, CharTokenizer(), _config(), sets[0], sets[1], [], tmp_path / "empty")
    with pytest.raises(ValueError, match="other ranks"):  # train() itself checks the structure on resume
        train(model.config, TrainConfig(max_updates=2), *sets[:2], tmp_path / "run", init_from=other)
    with pytest.raises(ValueError, match="another model config"):
        wider = tiny_model(encoder_hidden_size=16)
        train(wider.config, TrainConfig(max_updates=2), *sets[:2], tmp_path / "x", init_from=model)


def test_nuclear_norm_decay_of_a_factorised_model_is_refused(corpus, tmp_path):
    _, split = corpus
    _, model = _factorised()
    config = TrainConfig(max_updates=1, nuclear_weight=1.0, max_batch_seconds=12.0, dev_utterances=1)
    with pytest.raises(ValueError, match="this model is factorised"):
        train(model.config, config, split["train"][:2], split["dev"][:1], tmp_path / "run", init_from=model)
    assert not (tmp_path / "run" / "last.pt").exists()
