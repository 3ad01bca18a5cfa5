"""Incremental decoding, beam reordering and padding, against the full pass."""

import pytest
import torch

from helpers import build

VOCAB = 60


# the paper's single head, and four heads (--delight-attention-heads)
@pytest.fixture(scope="module", params=[1, 4], ids=["1 head", "4 heads"])
def model(request):
    torch.manual_seed(0)
    m = build(
        "delight",
        src_vocab=VOCAB,
        delight_attention_heads=request.param,
        delight_emb_out_dim=64,
        delight_enc_layers=3,
        delight_dec_layers=3,
        delight_enc_min_depth=2,
        delight_enc_max_depth=4,
        delight_dec_min_depth=2,
        delight_dec_max_depth=4,
    )
    return m.double().eval()


def tokens(batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=g)


def encode(model, src):
    lengths = torch.full((src.size(0),), src.size(1))
    return model.encoder(src, src_lengths=lengths)


def step_by_step(model, prev, encoder_out, reorder=None):
    """Decode prev one token at a time through the incremental state."""
    state = {}
    outs = []
    for t in range(prev.size(1)):
        if reorder is not None and t == reorder[0]:
            order = reorder[1]
            model.decoder.reorder_incremental_state_scripting(state, order)
            encoder_out = model.encoder.reorder_encoder_out(encoder_out, order)
            prev = prev.index_select(0, order)
            outs = [o.index_select(0, order) for o in outs]
        logits, extra = model.decoder(
            prev[:, : t + 1], encoder_out, incremental_state=state
        )
        outs.append(logits)
    return torch.cat(outs, dim=1), extra


def test_incremental_equals_full_forward(model):
    src, prev = tokens(3, 7, 1), tokens(3, 6, 2)
    enc = encode(model, src)
    full, full_extra = model.decoder(prev, enc)
    inc, inc_extra = step_by_step(model, prev, enc)
    torch.testing.assert_close(inc, full)
    # the cross-attention of the last step equals the full pass's last row
    torch.testing.assert_close(
        inc_extra["attn"][0][:, -1], full_extra["attn"][0][:, -1]
    )


def test_incremental_after_reorder_equals_full_forward(model):
    src, prev = tokens(4, 5, 3), tokens(4, 6, 4)
    enc = encode(model, src)
    order = torch.tensor([2, 0, 0, 3])  # beams die and duplicate
    inc, _ = step_by_step(model, prev, enc, reorder=(3, order))
    full, _ = model.decoder(
        prev.index_select(0, order), encode(model, src.index_select(0, order))
    )
    torch.testing.assert_close(inc, full)


def test_left_padded_source_gives_same_output(model):
    pad = model.encoder.padding_idx
    short, long_ = tokens(1, 4, 5), tokens(1, 7, 6)
    prev = tokens(2, 5, 7)
    padded = torch.cat([torch.full((1, 3), pad), short], dim=1)
    batch = torch.cat([padded, long_], dim=0)
    lengths = torch.tensor([4, 7])
    enc = model.encoder(batch, src_lengths=lengths)
    out, _ = model.decoder(prev, enc)
    alone, _ = model.decoder(prev[:1], encode(model, short))
    torch.testing.assert_close(out[:1], alone)
    # and the encoder states of the real tokens are unchanged by the padding
    torch.testing.assert_close(
        enc["encoder_out"][0][3:, :1], encode(model, short)["encoder_out"][0]
    )


def test_full_forward_is_causal(model):
    src, prev = tokens(2, 5, 8), tokens(2, 6, 9)
    enc = encode(model, src)
    a, _ = model.decoder(prev, enc)
    changed = prev.clone()
    changed[:, 4:] = 5
    b, _ = model.decoder(changed, enc)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_max_positions(model):
    assert model.max_positions() == (1024, 1024)
    small = build(
        "delight", src_vocab=VOCAB, max_source_positions=50, max_target_positions=40
    )
    assert small.max_positions() == (50, 40)


def test_training_uses_dropout_and_eval_is_deterministic():
    model = build(
        "delight_transformer_iwslt_de_en", src_vocab=VOCAB, delight_emb_out_dim=64
    )
    src, prev = tokens(2, 5, 10), tokens(2, 4, 11)
    lengths = torch.tensor([5, 5])
    model.train()
    torch.manual_seed(0)
    a, _ = model(src, lengths, prev)
    b, _ = model(src, lengths, prev)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(
        model(src, lengths, prev)[0], model(src, lengths, prev)[0]
    )


def test_sequence_generator_beam_search(model):
    """fairseq's own beam search runs on the model and is deterministic."""
    from fairseq.sequence_generator import SequenceGenerator

    from helpers import make_dictionary

    gen = SequenceGenerator([model], make_dictionary(VOCAB), beam_size=3, max_len_b=8)
    src = tokens(2, 6, 12)
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([6, 6])}}
    hyps = gen.generate([model], sample)
    again = gen.generate([model], sample)
    assert len(hyps) == 2 and len(hyps[0]) == 3
    assert [h["tokens"].tolist() for h in hyps[0]] == [
        h["tokens"].tolist() for h in again[0]
    ]
    # the best hypothesis' score is the mean log-probability of its tokens
    best = hyps[0][0]
    torch.testing.assert_close(
        best["score"], best["positional_scores"].mean() / 1.0, check_dtype=False
    )


def test_alignment_options_it_cannot_honour_are_refused(model):
    """One head, no full-context alignment: a clear error, never a silent no-op."""
    src = tokens(2, 5, seed=1)
    prev = tokens(2, 4, seed=2)
    lengths = torch.tensor([5, 5])
    with pytest.raises(ValueError, match="full-context alignment"):
        model.decoder(prev, model.encoder(src, lengths), full_context_alignment=True)
    with pytest.raises(ValueError, match="--alignment-heads is 4"):
        model.decoder(prev, model.encoder(src, lengths), alignment_heads=4)
    _, extra = model.decoder(prev, model.encoder(src, lengths), alignment_heads=1)
    assert extra["attn"][0].shape == (2, 4, 5)
