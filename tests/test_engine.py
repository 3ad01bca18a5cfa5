"""The lean beam-search engine (delight_fairseq.inference.Engine) against
fairseq's SequenceGenerator on the same model and inputs: the same best
hypothesis for every sentence, at beam 1 and beam 5, with length penalties,
truncating length limits, left-padded batches of different source lengths,
post-norm and pre-norm blocks, tied and untied output layers.

The engine runs the model's operations in the same order but on other batch
shapes (one row per sentence at step 0, the encoder's keys shared by the
beams, the vocabulary embedded at once), which may round differently in the
last bit. Exact equality is therefore checked on float64 models, whose
float32 log-probabilities then agree bit for bit in practice, so no near tie
can split the two searches; the trained models are also checked in float32.
"""

import random

import pytest
import torch
from fairseq.data import Dictionary, data_utils
from fairseq.sequence_generator import SequenceGenerator

from delight_fairseq.builder import build_model
from delight_fairseq.inference import Engine
from delight_fairseq.inference.matmul import onednn_available
from delight_fairseq.tools.synthetic import sentence_pair

from helpers import (
    DROPOUT_OFF,
    TINY_SHAPE,
    build,
    encode_words,
    make_dictionary,
    train_on_pairs,
)

VOCAB = 40
#: model variants: post-norm or pre-norm blocks, untied or tied output layer,
#: with or without the projection d_m -> map_dim before it, FFNs wider than d_m,
#: an encoder-decoder attention wider than the self-attention, attentions in heads
VARIANTS = {
    "post_norm_untied": {},
    "pre_norm_untied": dict(
        encoder_normalize_before=True, decoder_normalize_before=True
    ),
    "tied": dict(share_all_embeddings=True),
    "tied_no_projection": dict(share_all_embeddings=True, delight_emb_map_dim=32),
    "wide_ffn": dict(delight_enc_ffn_dim=96, delight_dec_ffn_dim=80),
    # an encoder-decoder attention wider than d_m (32), its self-attention d_m/2
    "wide_cross": dict(delight_enc_dec_attn_dim=48),
    # --delight-attention-heads: self-attention in 4 heads of 4, the 48-wide
    # encoder-decoder attention in 4 of 12
    "heads": dict(delight_attention_heads=4, delight_enc_dec_attn_dim=48),
}
#: (beam, lenpen, max_len_a, max_len_b, min_len)
SETTINGS = [
    (1, 1.0, 0.0, 15, 1),
    # beam 1 runs as greedy search (search.greedy): the same rules
    (1, 0.5, 0.0, 15, 2),
    (1, 2.0, 0.0, 3, 1),
    (1, 1.0, 0.5, 2, 1),
    (5, 1.0, 0.0, 15, 1),
    (5, 0.5, 0.0, 15, 2),
    (5, 2.0, 0.0, 15, 1),
    (3, 1.0, 0.0, 3, 1),  # max_len_b truncates
    (4, 1.0, 0.5, 2, 1),  # max_len_a: the limit follows the batch's width
]


# -- helpers -------------------------------------------------------------------


def fairseq_best(model, tgt_dict, src, lengths, beam, lenpen, a, b, min_len, **kw):
    gen = SequenceGenerator(
        [model],
        tgt_dict,
        beam_size=beam,
        len_penalty=lenpen,
        max_len_a=a,
        max_len_b=b,
        min_len=min_len,
        **kw,
    )
    sample = {"net_input": {"src_tokens": src, "src_lengths": lengths}}
    hypos = gen.generate([model], sample)
    return (
        [h[0]["tokens"][:-1].tolist() for h in hypos],
        torch.tensor([float(h[0]["score"]) for h in hypos]),
    )


def engine_best(model, tgt_dict, src, lengths, beam, lenpen, a, b, min_len, **kw):
    engine = Engine(
        model,
        tgt_dict,
        beam=beam,
        lenpen=lenpen,
        max_len_a=a,
        max_len_b=b,
        min_len=min_len,
        **kw,
    )
    out = engine.translate_with_scores(src, lengths)
    assert engine.translate(src, lengths) == [tokens for tokens, _ in out]
    return [tokens for tokens, _ in out], torch.tensor([s for _, s in out])


def assert_same_search(model, tgt_dict, src, lengths, setting, matmul=None, **kw):
    """The engine's best hypotheses and scores are fairseq's; returns them.
    ``matmul``: the engine's option (its default if None)."""
    ref, ref_scores = fairseq_best(model, tgt_dict, src, lengths, *setting, **kw)
    engine_kw = dict(kw) if matmul is None else dict(kw, matmul=matmul)
    got, got_scores = engine_best(model, tgt_dict, src, lengths, *setting, **engine_kw)
    assert got == ref
    torch.testing.assert_close(got_scores, ref_scores)
    return ref


def left_padded(sentences, d: Dictionary):
    """A batch as fairseq's translation task gives it: left-padded, each
    sentence ending in eos."""
    src = data_utils.collate_tokens(sentences, d.pad(), d.eos(), left_pad=True)
    return src, torch.tensor([s.numel() for s in sentences])


def random_sources(n, seed, vocab=VOCAB, shortest=2, longest=9):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(shortest, longest + 1, (1,), generator=g))
        words = torch.randint(4, vocab, (length,), generator=g)
        out.append(torch.cat([words, torch.tensor([2])]))  # 2: eos
    return out


def eos_prone(model, d: Dictionary, src, lengths):
    """Make an untrained model end sentences now and then (untrained, it runs
    every hypothesis to the length limit): point the eos row of the output
    layer towards the token greedy search picks most often, with the
    strength (found by bisection) at which greedy search starts to end
    sentences early."""
    dec = model.decoder
    weight = (
        dec.embed_tokens.table.weight
        if dec.output_projection is None
        else dec.output_projection.weight
    )
    greedy, _ = fairseq_best(model, d, src, lengths, 1, 1.0, 0.0, 15, 1)
    top = weight[torch.tensor([t for hyp in greedy for t in hyp]).bincount().argmax()]
    top = top.clone()

    def early(strength: float) -> int:
        with torch.no_grad():
            weight[d.eos()] = strength * top
        greedy, _ = fairseq_best(model, d, src, lengths, 1, 1.0, 0.0, 15, 1)
        return sum(len(h) < 15 for h in greedy)

    lo, hi = 0.0, 2.0
    assert early(hi) > 0
    for _ in range(8):
        mid = (lo + hi) / 2
        n_early = early(mid)
        if 0 < n_early < len(greedy):
            return
        lo, hi = (mid, hi) if n_early == 0 else (lo, mid)
    early(hi)


# -- untrained models (fast) ---------------------------------------------------

_random_models = {}


def random_model(variant):
    """A float64 untrained model of this variant, eos-prone, with its
    dictionary and a left-padded batch of 7 sources of 2 to 9 words."""
    if variant not in _random_models:
        torch.manual_seed(0)
        model = build(
            "delight", src_vocab=VOCAB, **TINY_SHAPE, **DROPOUT_OFF, **VARIANTS[variant]
        )
        model = model.double().eval()
        d = make_dictionary(VOCAB)
        src, lengths = left_padded(random_sources(7, seed=1), d)
        eos_prone(model, d, src, lengths)
        _random_models[variant] = (model, d, src, lengths)
    return _random_models[variant]


@pytest.mark.parametrize(
    "setting", SETTINGS, ids=lambda s: "beam{}-lp{}-a{}-b{}-min{}".format(*s)
)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_hypotheses_as_sequence_generator(variant, setting):
    model, d, src, lengths = random_model(variant)
    assert lengths.unique().numel() > 3  # the batch is left-padded
    hyps = assert_same_search(model, d, src, lengths, setting)
    _, _, a, b, _ = setting
    max_len = min(int(a * src.size(1) + b), model.max_decoder_positions() - 1)
    assert all(len(h) <= max_len for h in hyps)
    if b == 15:
        assert min(len(h) for h in hyps) < max_len  # some end early


def test_unk_penalty_and_unnormalized_scores():
    """fairseq-generate's --unkpen and --unnormalized, as keyword options,
    in beam search and in greedy search."""
    model, d, src, lengths = random_model("pre_norm_untied")
    for setting in ((5, 1.0, 0.0, 15, 1), (1, 1.0, 0.0, 15, 1)):
        hyps = assert_same_search(model, d, src, lengths, setting, unk_penalty=-3.0)
        assert any(d.unk() in h for h in hyps)  # a negative penalty favours unk
        assert_same_search(model, d, src, lengths, setting, unk_penalty=3.0)
        normalized = assert_same_search(model, d, src, lengths, setting)
        unnormalized = assert_same_search(
            model, d, src, lengths, setting, normalize_scores=False
        )
        if setting[0] > 1:
            # summed log-probabilities favour shorter hypotheses
            assert sum(map(len, unnormalized)) < sum(map(len, normalized))
        else:
            # greedy search finalizes one hypothesis per sentence: only its
            # score changes (assert_same_search compared the scores)
            assert unnormalized == normalized


def test_beam_capped_by_a_tiny_vocabulary():
    """Beam 10 over 8 symbols: fairseq caps the beam at V - 1 = 7, and the
    candidates run out of finite scores (pad, and eos before min_len)."""
    torch.manual_seed(0)
    model = build("delight", src_vocab=8, **TINY_SHAPE, **DROPOUT_OFF).double().eval()
    d = make_dictionary(8)
    src, lengths = left_padded(random_sources(3, seed=2, vocab=8), d)
    assert Engine(model, d, beam=10).beam == 7
    for setting in ((10, 1.0, 0.0, 6, 1), (10, 1.0, 0.0, 6, 3)):
        assert_same_search(model, d, src, lengths, setting)


def test_one_sentence_and_reuse_across_batches():
    """An engine keeps its caches between calls: a big batch, then a small
    one, then a wider one, each as a fresh engine and fairseq decode it."""
    model, d, _, _ = random_model("post_norm_untied")
    engine = Engine(model, d, beam=5, max_len_b=15)
    for n, seed, longest in ((7, 3, 9), (1, 4, 5), (3, 5, 14)):
        src, lengths = left_padded(random_sources(n, seed, longest=longest), d)
        ref, _ = fairseq_best(model, d, src, lengths, 5, 1.0, 0.0, 15, 1)
        assert engine.translate(src, lengths) == ref


def test_empty_batch_and_bad_limits():
    model, d, src, lengths = random_model("post_norm_untied")
    engine = Engine(model, d, beam=2)
    assert engine.translate(src[:0], lengths[:0]) == []
    with pytest.raises(ValueError, match="min_len"):
        Engine(model, d, max_len_b=2, min_len=3).translate(src, lengths)
    with pytest.raises(ValueError, match="beam"):
        Engine(model, d, beam=0)


def test_engine_decodes_in_eval_mode():
    model, d, src, lengths = random_model("post_norm_untied")
    model.train()
    try:
        Engine(model, d)
        assert not model.training
    finally:
        model.eval()


def test_max_len_follows_fairseq_rule():
    """max_len = min(int(a * S + b), max_decoder_positions - 1), S the padded
    width of the batch."""
    model, d, src, _ = random_model("post_norm_untied")
    width = src.size(1)
    assert Engine(model, d, max_len_a=1.5, max_len_b=3).max_len(width) == int(
        1.5 * width + 3
    )
    assert (
        Engine(model, d, max_len_b=10**6).max_len(width)
        == model.max_decoder_positions() - 1
    )


# -- trained models (50 small updates in-process: a few seconds) ------------------


def synthetic_pairs(n, seed):
    rng = random.Random(seed)
    return [sentence_pair(rng) for _ in range(n)]


def train_tiny(pairs, d: Dictionary, steps=50, **overrides):
    """A tiny DeLighT trained in-process on the synthetic task, briefly: it
    has learned enough that hypotheses end at different lengths, and little
    enough that beam search still differs from greedy search."""
    torch.manual_seed(0)
    model = build_model(
        "delight",
        d,
        None,
        **TINY_SHAPE,
        delight_emb_map_dim=32,
        **DROPOUT_OFF,
        **overrides,
    )
    return train_on_pairs(model, d, pairs, steps, batch_size=32)


@pytest.fixture(scope="module")
def synthetic():
    """The synthetic corpus's joined dictionary, its training pairs and a
    left-padded test batch of 40 sentences."""
    train = synthetic_pairs(2000, seed=1)
    d = Dictionary()
    for s, t in train:
        for w in f"{s} {t}".split():
            d.add_symbol(w)
    test = synthetic_pairs(40, seed=7)
    src, lengths = left_padded([encode_words(d, s) for s, _ in test], d)
    return d, train, src, lengths


TRAINED_SETTINGS = [
    (1, 1.0, 0.0, 30, 1),
    (5, 1.0, 0.0, 30, 1),
    (5, 0.6, 0.0, 30, 1),
    (5, 1.5, 0.0, 30, 3),
    (5, 1.0, 0.0, 6, 1),  # truncates the longer sentences
    (5, 1.0, 1.2, 0, 1),  # a limit that follows the batch's width
]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(share_all_embeddings=True),  # the presets' post-norm, tied layout
        dict(encoder_normalize_before=True, decoder_normalize_before=True),  # untied
    ],
    ids=["post_norm_tied", "pre_norm_untied"],
)
def test_trained_model_same_hypotheses_as_sequence_generator(synthetic, overrides):
    d, train, src, lengths = synthetic
    model = train_tiny(train, d, **overrides)
    results = {}
    # float32: the products through F.linear and through oneDNN where torch has it
    backends = ["torch", "onednn"] if onednn_available() else ["torch"]
    for dtype in (torch.float32, torch.float64):
        model = model.to(dtype)
        for setting in TRAINED_SETTINGS:
            if dtype == torch.float32 and setting[1:] != (1.0, 0.0, 30, 1):
                continue  # float32: the default settings at beams 1 and 5
            for matmul in backends if dtype == torch.float32 else [None]:
                results[dtype, setting] = assert_same_search(
                    model, d, src, lengths, setting, matmul
                )
    greedy = results[torch.float64, TRAINED_SETTINGS[0]]
    beam5 = results[torch.float64, TRAINED_SETTINGS[1]]
    assert max(len(h) for h in results[torch.float64, TRAINED_SETTINGS[4]]) == 6
    # a model half-way through learning: the search matters
    assert len({len(h) for h in beam5}) >= 3  # sentences end at different steps
    assert max(len(h) for h in beam5) < 30  # all end before the limit at beam 5
    assert sum(g != b for g, b in zip(greedy, beam5)) >= 3


def test_fallbacks_give_the_same_search(monkeypatch):
    """A vocabulary too large for the token-embedding table (embedded per
    step instead), and the eager GLT tails where the fused kernel is off."""
    from delight_fairseq import fused
    from delight_fairseq.inference import step

    model, d, src, lengths = random_model("tied")

    def same_search(beam: int) -> Engine:
        engine = Engine(model, d, beam=beam, max_len_b=15)
        ref, _ = fairseq_best(model, d, src, lengths, beam, 1.0, 0.0, 15, 1)
        assert engine.translate(src, lengths) == ref
        return engine

    monkeypatch.setattr(step, "MAX_TOKEN_TABLE", 0)
    for beam in (5, 1):  # beam search, and greedy search
        engine = same_search(beam)
        assert engine.step._token_table.numel() == 0
        # the fused kernel where the modules use it
        assert (engine.step.kernel is not None) == fused.usable(src.double())
    monkeypatch.setenv("DELIGHT_FUSED_GLT", "0")
    for beam in (5, 1):
        assert same_search(beam).step.kernel is None


@pytest.mark.parametrize("variant", ["post_norm_untied", "heads"])
def test_greedy_search_is_beam_search_at_beam_1(variant, monkeypatch):
    """At beam 1 the engine runs search.greedy, whose hypotheses and scores
    are those of the general loop (search.beams) at beam 1, sentence by
    sentence, as sentences end at different steps and leave the batch (the
    Python loops; test_native_search.py checks the C++ ones against them)."""
    from delight_fairseq.inference import search

    model, d, src, lengths = random_model(variant)
    for lenpen, min_len in ((1.0, 1), (0.5, 3)):
        engine = Engine(model, d, beam=1, lenpen=lenpen, max_len_b=15, min_len=min_len)
        engine.native_search = False
        greedy = engine.translate_with_scores(src, lengths)
        assert len({len(tokens) for tokens, _ in greedy}) >= 3
        with monkeypatch.context() as m:
            m.setattr(search, "greedy", search.beams)
            assert engine.translate_with_scores(src, lengths) == greedy
        with monkeypatch.context() as m:

            def refuse(*args):
                raise AssertionError("beam 1 ran the general loop")

            m.setattr(search, "beams", refuse)
            assert engine.translate_with_scores(src, lengths) == greedy
