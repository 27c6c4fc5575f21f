import pytest
import torch

from asr.decoding import BeamConfig, beam_search, ctc_greedy, greedy_decode
from asr.model import PRESETS, ASRConfig, build_model
from asr.text import CharTokenizer
from asr.train import joint_loss
from tests.conftest import tiny_model, toy_batch


def test_presets_have_enough_compressible_layers():
    default = build_model("default")
    assert len(default.compressible_layers()) >= 6
    assert PRESETS["default"].encoder_layers >= 4 and PRESETS["default"].decoder_layers >= 2
    assert PRESETS["large"].encoder_hidden_size == 1024
    for path in default.compressible_layers():
        assert isinstance(default.get_submodule(path), (torch.nn.LSTM, torch.nn.LSTMCell))


def test_forward_shapes_and_padding_mask():
    model = tiny_model().eval()
    feats, frames, targets, _, _ = toy_batch(3, torch.Generator().manual_seed(1))
    logits, encoded, lengths = model(feats, frames, targets)
    assert logits.shape == (3, targets.shape[1] - 1, model.config.vocab_size)
    assert encoded.shape[:2] == (3, feats.shape[1] // model.config.frame_stacking)
    assert lengths.tolist() == (frames // 3).tolist()
    # Padded encoder frames are exactly zero, and padding does not change a row's encoding.
    short = int(lengths.argmin())
    assert bool((encoded[short, lengths[short]:] == 0).all())
    alone, _ = model.encode(feats[short : short + 1, : int(frames[short])], frames[short : short + 1])
    torch.testing.assert_close(alone[0], encoded[short, : lengths[short]], atol=1e-5, rtol=1e-4)


def test_attention_ignores_padded_frames():
    model = tiny_model().eval()
    feats, frames, targets, _, _ = toy_batch(2, torch.Generator().manual_seed(2))
    with torch.no_grad():
        encoded, lengths = model.encode(feats, frames)
        state = model.initial_state(encoded, lengths)
        _, state = model.decoder_step(targets[:, 0], state)
    for b in range(2):
        assert float(state["weights"][b, lengths[b]:].sum()) == 0.0
        assert abs(float(state["weights"][b].sum()) - 1.0) < 1e-5


def test_teacher_forcing_matches_step_by_step_decoding():
    # forward() batches the embeddings and output layers over all steps; decoder_step()
    # runs them one step at a time. Both must give the same logits.
    model = tiny_model().eval()
    feats, frames, targets, _, _ = toy_batch(3, torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, encoded, lengths = model(feats, frames, targets)
        state = model.initial_state(encoded, lengths)
        steps = []
        for u in range(targets.shape[1] - 1):
            step_logits, state = model.decoder_step(targets[:, u], state)
            steps.append(step_logits)
    torch.testing.assert_close(logits, torch.stack(steps, dim=1), atol=1e-5, rtol=1e-5)


def test_location_attention_matches_its_definition():
    # Energies e_t = v . tanh(K h_t + W q + U (F * a_prev)_t), written out directly.
    model = tiny_model().eval()
    att = model.attention
    gen = torch.Generator().manual_seed(4)
    batch, time, enc = 2, 9, model.config.encoder_output_size
    values = torch.randn(batch, time, enc, generator=gen)
    query = torch.randn(batch, model.config.decoder_hidden_size, generator=gen)
    previous = torch.softmax(torch.randn(batch, time, generator=gen), dim=1)
    mask = torch.ones(batch, time, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        context, weights = att(att.project_keys(values), values, mask, query, previous)
        location = att.location(att.location_conv(previous.unsqueeze(1)).transpose(1, 2))
        scores = att.key(values) + att.query(query).unsqueeze(1) + location
        energies = att.energy(torch.tanh(scores)).squeeze(2).masked_fill(~mask, float("-inf"))
        expected = torch.softmax(energies, dim=1)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(context, torch.bmm(expected.unsqueeze(1), values).squeeze(1))


def test_config_errors():
    with pytest.raises(ValueError, match="attention='dot'"):
        ASRConfig(attention="dot")
    with pytest.raises(ValueError, match="encoder_layers must be positive; got 0"):
        ASRConfig(encoder_layers=0)
    with pytest.raises(ValueError, match="unknown ASR preset 'huge'"):
        build_model("huge")
    with pytest.raises(ValueError, match="unknown ASRConfig fields"):
        ASRConfig.from_dict({"bogus": 1})


def _train_toy(steps: int = 150, seed: int = 0):
    model = tiny_model(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        feats, frames, targets, target_lengths, _ = toy_batch(16, gen)
        loss, _ = joint_loss(model, feats, frames, targets, target_lengths, label_smoothing=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


@pytest.fixture(scope="module")
def trained_toy():
    return _train_toy()


def test_training_reduces_loss(trained_toy):
    _, losses = trained_toy
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert end < 0.3 * start, (start, end)


def test_greedy_beam_and_ctc_agree_on_easy_case(trained_toy):
    model, _ = trained_toy
    tok = CharTokenizer()
    feats, frames, _, _, texts = toy_batch(8, torch.Generator().manual_seed(123))
    greedy = [tok.decode(x) for x in greedy_decode(model, feats, frames)]
    beam = [tok.decode(x) for x in beam_search(model, feats, frames, BeamConfig(beam_size=3))]
    assert greedy == beam
    assert sum(g == t for g, t in zip(greedy, texts)) >= 6, (greedy, texts)
    ctc = [tok.decode(x) for x in ctc_greedy(model, feats, frames)]
    assert len(ctc) == 8


def test_greedy_decoding_is_length_capped():
    model = tiny_model().eval()
    feats, frames, _, _, _ = toy_batch(4, torch.Generator().manual_seed(5))
    out = greedy_decode(model, feats, frames)
    caps = model.max_decode_steps(model.encoder_frames(frames))
    assert all(len(o) <= int(c) for o, c in zip(out, caps))
