import pytest
import torch

from asr.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_factorised_asr
from asr.text import CharTokenizer
from shrinkml_env.compression import describe_layers, export_factorised
from tests.conftest import tiny_model, toy_batch


@pytest.fixture
def saved(tmp_path):
    model = tiny_model(seed=4).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, CharTokenizer(), {"updates": 7})
    return model, path


def _outputs(model):
    feats, frames, targets, _, _ = toy_batch(3, torch.Generator().manual_seed(9))
    with torch.no_grad():
        return model(feats, frames, targets)[0]


def test_round_trip(saved):
    model, path = saved
    loaded, tokenizer, meta = load_checkpoint(path)
    assert loaded.config == model.config and tokenizer == CharTokenizer()
    assert meta == {"updates": 7}
    torch.testing.assert_close(_outputs(loaded), _outputs(model))


def test_half_precision_storage_is_smaller_and_close(saved, tmp_path):
    model, path = saved
    half = tmp_path / "half.pt"
    save_checkpoint(half, model, CharTokenizer(), half=True)
    assert half.stat().st_size < 0.7 * path.stat().st_size
    loaded, _, _ = load_checkpoint(half)
    torch.testing.assert_close(_outputs(loaded), _outputs(model), atol=2e-2, rtol=2e-2)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt' does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.pt' could not be read: the file is truncated"):
        load_checkpoint(cut)


def test_foreign_file(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(CheckpointError, match="not a ShrinkML ASR checkpoint"):
        load_checkpoint(other)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(text)


def test_newer_format_and_inconsistent_weights(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(newer)
    broken = tmp_path / "broken.pt"
    state = dict(payload["state_dict"])
    state.pop(next(iter(state)))
    torch.save({**payload, "state_dict": state}, broken)
    with pytest.raises(CheckpointError, match="is inconsistent"):
        load_checkpoint(broken)


def test_factorised_asr_round_trip(saved, tmp_path):
    model, _ = saved
    layers = describe_layers(model, model.compressible_layers())
    ranks = {m.key: max(1, m.full_rank // 4) for layer in layers for m in layer.matrices}
    exported = export_factorised(model, layers, ranks)
    path = tmp_path / "factorised.pt"
    save_factorised_asr(path, exported, CharTokenizer(), {"size_ratio": 0.3})
    loaded, tokenizer, meta = load_checkpoint(path)
    assert meta["size_ratio"] == 0.3 and tokenizer == CharTokenizer()
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(_outputs(loaded), _outputs(exported), atol=1e-5, rtol=1e-4)
