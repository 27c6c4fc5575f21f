"""End to end on a tiny model: describe -> SVD bank -> search model -> export -> save/load."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from shrinkml_env.compression import (
    FactorisedLinear,
    FactorisedLSTM,
    FactorisedLSTMCell,
    LatencyConfig,
    SearchModel,
    SVDBank,
    compressible_parameter_count,
    describe_layers,
    export_factorised,
    layer_report,
    load_factorised,
    ranks_from_layer_fractions,
    save_factorised,
)

PATHS = ["encoder.0", "encoder.1", "decoder", "head"]


class TinyRecogniser(nn.Module):
    """BiLSTM (packed) -> 2-layer LSTM -> LSTMCell loop -> Linear: every supported module."""

    def __init__(self, features: int = 6):
        super().__init__()
        self.encoder = nn.ModuleList([nn.LSTM(features, 8, batch_first=True, bidirectional=True),
                                      nn.LSTM(16, 6, num_layers=2, batch_first=True)])
        self.decoder = nn.LSTMCell(6, 10)
        self.head = nn.Linear(10, 12)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        for lstm in self.encoder:
            out, _ = lstm(out)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        state, logits = None, []
        for t in range(out.size(1)):
            state = self.decoder(out[:, t], state)
            logits.append(self.head(state[0]))
        return torch.stack(logits, 1)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = TinyRecogniser().eval()
    layers = describe_layers(model, PATHS)
    batch = (torch.randn(3, 9, 6), torch.tensor([9, 4, 6]))
    return model, layers, SVDBank.compute(model, layers), batch


def _run(model, batch):
    with torch.inference_mode():
        return model(*batch)


def test_layers_of_the_tiny_model(setup):
    _, layers, _, _ = setup
    assert [layer.key for layer in layers] == ["encoder.0", "encoder.1[0]", "encoder.1[1]",
                                               "decoder", "head"]


def test_full_rank_reproduces_the_model_and_leaves_it_stock(setup):
    model, layers, bank, batch = setup
    search = SearchModel(model, bank)
    full = {m.key: m.full_rank for m in bank.matrices}
    assert search.apply(full) == []  # already dense: nothing rebuilt
    assert torch.equal(_run(search.model, batch), _run(model, batch))
    exported = export_factorised(model, layers, full, bank)
    assert not any(isinstance(m, FactorisedLSTM) for m in exported.modules())
    assert torch.equal(_run(exported, batch), _run(model, batch))


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_exported_model_matches_search_model(setup, fraction):
    model, layers, bank, batch = setup
    ranks = ranks_from_layer_fractions(layers, [fraction] * len(layers))
    search = SearchModel(model, bank)
    search.apply(ranks)
    exported = export_factorised(model, layers, ranks, bank)
    assert isinstance(exported.encoder[0], FactorisedLSTM)
    assert isinstance(exported.encoder[1], FactorisedLSTM)
    assert isinstance(exported.decoder, FactorisedLSTMCell)
    assert isinstance(exported.head, FactorisedLinear)
    expected = _run(search.model, batch)
    assert not torch.allclose(expected, _run(model, batch), atol=1e-3)  # truncation did bite
    torch.testing.assert_close(_run(exported, batch), expected, rtol=1e-4, atol=1e-5)
    # Parameters really shrink by what the one counting function predicts.
    dense_total = sum(p.numel() for p in model.parameters())
    saved = compressible_parameter_count(bank.matrices) - compressible_parameter_count(
        bank.matrices, ranks)
    assert sum(p.numel() for p in exported.parameters()) == dense_total - saved


def test_search_model_rebuilds_only_what_changed_and_restores(setup):
    model, layers, bank, batch = setup
    original = {k: v.clone() for k, v in model.state_dict().items()}
    search = SearchModel(model, bank)
    assert search.apply({"encoder.0.weight_hh_l0": 2, "head.weight": 3}) == [
        "encoder.0.weight_hh_l0", "head.weight"]
    torch.testing.assert_close(search.model.head.weight.detach(), bank.reconstruct("head.weight", 3))
    assert search.apply({"encoder.0.weight_hh_l0": 2, "head.weight": 3}) == []
    # Unnamed matrices go back to dense; head: 12x10 has break-even 5.45, so 6 is dense.
    assert search.apply({"head.weight": 6}) == ["encoder.0.weight_hh_l0", "head.weight"]
    assert torch.equal(search.model.head.weight, model.head.weight)
    assert search.apply({"head.weight": 10}) == []  # dense to dense: nothing to rebuild
    assert search.ranks["head.weight"] == 10 and search.ranks["encoder.0.weight_hh_l0"] == 8
    search.apply({"decoder.weight_ih": 1})
    search.restore_dense()
    assert torch.equal(_run(search.model, batch), _run(model, batch))
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"rank 99 for matrix 'head\.weight' outside \[1, 10\]"):
        search.apply({"head.weight": 99})


def test_save_load_round_trip(setup, tmp_path):
    model, layers, bank, batch = setup
    ranks = ranks_from_layer_fractions(layers, [0.25, 0.5, 1.0, 0.5, 0.25])
    exported = export_factorised(model, layers, ranks, bank)
    path = tmp_path / "factorised.pt"
    save_factorised(path, exported, meta={"features": 6, "ranks": ranks})
    loaded, meta = load_factorised(path, lambda meta: TinyRecogniser(meta["features"]))
    assert meta["ranks"] == ranks
    assert isinstance(loaded.encoder[1], FactorisedLSTM) and loaded.encoder[1].ranks
    assert torch.equal(_run(loaded, batch), _run(exported, batch))
    assert sum(p.numel() for p in loaded.parameters()) == sum(
        p.numel() for p in exported.parameters())
    loaded_again, _ = load_factorised(path, TinyRecogniser)  # zero-argument builder works too
    assert torch.equal(_run(loaded_again, batch), _run(exported, batch))


def test_load_rejects_foreign_files_and_missing_modules(tmp_path, setup):
    model, layers, bank, _ = setup
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match="is not a 'shrinkml-factorised/1' checkpoint"):
        load_factorised(path, TinyRecogniser)
    save_factorised(path, export_factorised(model, layers, {"head.weight": 1}, bank))
    with pytest.raises(ValueError, match="unknown layer path 'head'"):
        load_factorised(path, lambda: nn.Sequential(nn.Linear(2, 2)))


def test_layer_report_rows(setup):
    model, layers, bank, _ = setup
    ranks = ranks_from_layer_fractions(layers, [0.25, 1.0, 0.5, 1.0, 0.25])
    exported = export_factorised(model, layers, ranks, bank)
    rows = layer_report(model, exported, layers, ranks,
                        latency=LatencyConfig(frames=4, repeats=1, warmup=0))
    assert [row.layer_key for row in rows] == [layer.key for layer in layers]
    assert rows[1].size_ratio == 1.0 and rows[1].factorised_matrices == 0
    assert rows[0].size_ratio < 0.5 and rows[0].factorised_matrices == 4
    assert all(row.dense_ms > 0 and row.factorised_ms > 0 and row.slower is not None for row in rows)
    assert rows[1].latency_scope == rows[2].latency_scope == "encoder.1"
    assert layer_report(model, exported, layers, ranks)[0].speedup is None
