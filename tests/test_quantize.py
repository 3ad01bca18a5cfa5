"""The int8 engine (delight_fairseq.inference.quantize) against the float32
one: per-step log-probabilities of the same prefixes within a stated
tolerance, the same best token at almost every step, beam search at beams
1 and 5; an exact save/load round trip; the size accounting.

Tolerances, on a tiny model (d_m = 32) trained briefly
(test_engine.train_tiny), fed the reference targets of 40 synthetic
sentences (325 steps): over the tokens whose float32 log-probability is
above LIKELY, the int8 log-probability differs by at most MAX_ABS_DIFF (on
average by at most MEAN_ABS_DIFF), and the best token is the same at a
share TOP1_AGREEMENT of the steps or more. Measured there, over every GLT
and encoder mode: max 0.19-0.27, mean 0.020-0.022, agreement 99.4-99.7%
with 8-bit activations (AVX-512 VNNI); max 0.28-0.39, mean 0.031-0.037,
agreement 98.2-99.1% with 7-bit ones (reduce_range, CPUs without VNNI).
The widths of real models average the rounding over more products: on the
Multi30k DeLighT (d_m = 192) the errors are smaller (see quantize.py).
"""

import copy
import io

import pytest
import torch
from test_engine import left_padded, random_model, synthetic_pairs, train_tiny

from delight_fairseq import fused
from delight_fairseq.inference import Engine, qlayers
from delight_fairseq.inference import functional as fn
from delight_fairseq.inference.quantize import (
    load_quantized,
    quantize_engine,
    save_quantized,
    weight_bytes,
)

from helpers import encode_words

LIKELY = -10.0
MAX_ABS_DIFF = 0.5
MEAN_ABS_DIFF = 0.05
TOP1_AGREEMENT = 0.97


@pytest.fixture(scope="module")
def trained():
    """A tiny post-norm tied model trained briefly on the synthetic task, its
    dictionary, a left-padded batch of 40 test sources and their targets
    with the bos (eos) in front, right-padded."""
    from fairseq.data import Dictionary, data_utils

    train = synthetic_pairs(2000, seed=1)
    d = Dictionary()
    for s, t in train:
        for w in f"{s} {t}".split():
            d.add_symbol(w)
    model = train_tiny(train, d, share_all_embeddings=True)
    test = synthetic_pairs(40, seed=7)
    src, lengths = left_padded([encode_words(d, s) for s, _ in test], d)
    targets = [encode_words(d, t) for _, t in test]
    prefix = data_utils.collate_tokens(
        targets, d.pad(), d.eos(), move_eos_to_beginning=True
    )
    return model, d, src, lengths, prefix


def step_log_probs(engine, src, lengths, prefix):
    """Teacher-forced decoder steps: B x T x V log-probabilities of the
    next token after each prefix (one hypothesis per sentence)."""
    with torch.no_grad():
        enc_out, padding = engine.encode(src, lengths)
        rows, steps = prefix.shape
        engine.step.prepare(engine.vocab_size, steps, rows, enc_out)
        engine.cache.reset(rows, steps, enc_out)
        enc = engine.step.encoder_state(enc_out, padding)
        return torch.stack(
            [
                engine.step(prefix[:, t], t, engine.cache, enc).clone()
                for t in range(steps)
            ],
            dim=1,
        )


def test_log_probs_close_to_float32(trained):
    model, d, src, lengths, prefix = trained
    ref = step_log_probs(Engine(model, d), src, lengths, prefix)
    got = step_log_probs(Engine(model, d, int8=True), src, lengths, prefix)
    real = prefix.ne(d.pad())  # steps fed a real token (or the bos)
    ref, got = ref[real], got[real]
    likely = ref > LIKELY
    diff = (got - ref).abs()[likely]
    assert diff.max() <= MAX_ABS_DIFF
    assert diff.mean() <= MEAN_ABS_DIFF
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean()
    assert agree >= TOP1_AGREEMENT
    assert not torch.equal(got, ref)  # the quantized arithmetic did run


@pytest.mark.parametrize("beam", [1, 5])
def test_beam_search_close_to_float32(trained, beam):
    model, d, src, lengths, _ = trained
    ref = Engine(model, d, beam=beam, max_len_b=30).translate_with_scores(src, lengths)
    engine = quantize_engine(Engine(model, d, beam=beam, max_len_b=30))
    got = engine.translate_with_scores(src, lengths)
    assert len(got) == len(ref)
    same = sum(g[0] == r[0] for g, r in zip(got, ref))
    assert same >= 0.8 * len(ref)
    for (g_tokens, g_score), (r_tokens, r_score) in zip(got, ref):
        assert len(g_tokens) <= 30
        if g_tokens == r_tokens:
            assert abs(g_score - r_score) <= 0.1


@pytest.mark.parametrize("glt", ["auto", "int8", "dequant"])
@pytest.mark.parametrize("variant", ["pre_norm_untied", "tied", "wide_cross", "heads"])
def test_modes_and_variants_decode(variant, glt):
    """float64 untrained models (decoded in float32), every GLT mode and
    both encoder modes, beams 1 and 5."""
    model, d, src, lengths = random_model(variant)
    for encoder in ("int8", "dequant"):
        for beam in (1, 5):
            engine = Engine(model, d, beam=beam, max_len_b=15)
            quantize_engine(engine, glt=glt, encoder=encoder)
            assert engine.int8["glt"] == glt
            hyps = engine.translate(src, lengths)
            assert len(hyps) == src.size(0)
            assert all(len(h) <= 15 and d.pad() not in h for h in hyps)
    assert next(model.parameters()).dtype == torch.float64  # left as it was


def test_auto_glt_switches_by_rows(trained, monkeypatch):
    """ "auto" is "dequant" below GLT_INT8_ROWS rows and "int8" from there on,
    bit for bit."""
    model, d, src, lengths, prefix = trained
    runs = {}
    for glt in ("int8", "dequant"):
        engine = quantize_engine(Engine(model, d), glt=glt, reduce_range=True)
        runs[glt] = step_log_probs(engine, src, lengths, prefix)
    auto = quantize_engine(Engine(model, d), glt="auto", reduce_range=True)
    monkeypatch.setattr(qlayers, "GLT_INT8_ROWS", 1)
    assert torch.equal(step_log_probs(auto, src, lengths, prefix), runs["int8"])
    monkeypatch.setattr(qlayers, "GLT_INT8_ROWS", 10**9)
    assert torch.equal(step_log_probs(auto, src, lengths, prefix), runs["dequant"])


def test_output_layer_in_slices(trained, monkeypatch):
    """The output layer runs OUTPUT_ROWS rows at a time: slices of 7 rows
    give log-probabilities as close as whole batches."""
    from delight_fairseq.inference import step

    model, d, src, lengths, prefix = trained
    whole = step_log_probs(Engine(model, d, int8=True), src, lengths, prefix)
    monkeypatch.setattr(step, "OUTPUT_ROWS", 7)
    sliced = step_log_probs(Engine(model, d, int8=True), src, lengths, prefix)
    assert sliced.shape == whole.shape
    likely = whole > LIKELY
    assert (sliced - whole).abs()[likely].max() <= MAX_ABS_DIFF


def test_save_and_load_give_identical_outputs(trained, tmp_path):
    model, d, src, lengths, prefix = trained
    engine = quantize_engine(Engine(model, d, beam=5, max_len_b=30))
    path = tmp_path / "engine.int8.pt"
    save_quantized(engine, path)
    loaded = load_quantized(path, beam=5, max_len_b=30)
    assert loaded.model is None and loaded.int8 == engine.int8
    assert loaded.translate_with_scores(src, lengths) == engine.translate_with_scores(
        src, lengths
    )
    assert torch.equal(
        step_log_probs(loaded, src, lengths, prefix),
        step_log_probs(engine, src, lengths, prefix),
    )
    greedy = load_quantized(path, beam=1, max_len_b=30, lenpen=0.5)
    assert greedy.beam == 1 and greedy.lenpen == 0.5
    assert greedy.translate(src, lengths)
    # plain tensors and values: loads with weights_only
    state = torch.load(path, weights_only=True)
    assert state["format"] == "delight-fairseq-int8-engine"


@pytest.mark.parametrize("variant", ["pre_norm_untied", "heads"])
def test_save_and_load_every_mode(tmp_path, variant):
    model, d, src, lengths = random_model(variant)
    for glt, encoder in (("int8", "int8"), ("dequant", "dequant"), ("auto", "int8")):
        engine = Engine(model, d, beam=3, max_len_b=10)
        quantize_engine(engine, glt=glt, encoder=encoder)
        save_quantized(engine, tmp_path / "e.pt")
        loaded = load_quantized(tmp_path / "e.pt", beam=3, max_len_b=10)
        assert loaded.translate_with_scores(
            src, lengths
        ) == engine.translate_with_scores(src, lengths)


def _state_dict_bytes(model) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(buf.getvalue())


@pytest.mark.parametrize("variant", ["pre_norm_untied", "tied"])
def test_size_accounting(variant, tmp_path):
    """glt="int8": every matrix (a parameter named *weight with 2 or 3
    dimensions) is int8 once, one float32 scale per output channel, the
    packed ones with 8 bytes of packing per channel; a tied table twice (the
    look-up's and the output layer's packed copy)."""
    model, d, src, lengths = random_model(variant)
    engine = quantize_engine(Engine(model, d), glt="int8", encoder="int8")
    unique = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        unique.setdefault(p.data_ptr(), (name, p))
    n_int8 = n_float = channels = packed_channels = 0
    for name, p in unique.values():
        if name.endswith("weight") and p.dim() >= 2:
            n_int8 += p.numel()
            out = p.size(0) if p.dim() == 2 else p.size(0) * p.size(2)
            channels += out
            if "table" not in name and not name.startswith("decoder.embed_tokens"):
                packed_channels += out
        else:
            n_float += p.numel()
    if model.decoder.output_projection is None:  # tied: the packed copy
        table = model.decoder.embed_tokens.table.weight
        n_int8 += table.numel()
        channels += table.size(0)
        packed_channels += table.size(0)
    sizes = weight_bytes(engine)
    assert sizes["int8"] == n_int8
    assert sizes["float32"] == 4 * (n_float + channels)
    assert sizes["packing"] == 8 * packed_channels
    assert sizes["total"] == sum(sizes[k] for k in ("int8", "float32", "packing"))
    # on disk: the int8 matrices once, their scales, the float32 rest
    path = tmp_path / "e.pt"
    save_quantized(engine, path)
    on_disk = path.stat().st_size
    n_params = sum(p.numel() for _, p in unique.values())
    assert on_disk < n_params + 4 * (n_float + channels) + 64_000
    assert on_disk < 0.5 * _state_dict_bytes(copy.deepcopy(model).float())


def test_functional_encoder_is_the_module(monkeypatch):
    """The encoder the quantized engine runs, over float weights, is the
    model's encoder: in float64 on ATen's operations (without the fused
    kernels), and in C++ with the fused attention, whose float32 softmax
    (as the module's) sums in another order than ATen's."""
    for variant in ("post_norm_untied", "pre_norm_untied", "heads"):
        model, _, src, lengths = random_model(variant)
        with torch.no_grad():
            ref = model.encoder(src, src_lengths=lengths)
            with monkeypatch.context() as patch:
                patch.setenv("DELIGHT_FUSED_GLT", "0")
                out, padding = fn.Encoder(model.encoder)(src, lengths)
            native, _ = fn.Encoder(model.encoder)(src, lengths)
        torch.testing.assert_close(out, ref["encoder_out"][0], rtol=1e-10, atol=1e-10)
        assert torch.equal(padding, ref["encoder_padding_mask"][0])
        if fused.load() is not None:
            assert not torch.equal(native, out)  # it ran the fused kernels
            torch.testing.assert_close(native, out, rtol=1e-5, atol=1e-6)


def test_errors_and_idempotence(tmp_path):
    model, d, src, lengths = random_model("post_norm_untied")
    engine = Engine(model, d)
    with pytest.raises(ValueError, match="not quantized"):
        save_quantized(engine, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="glt"):
        quantize_engine(engine, glt="int4")
    with pytest.raises(ValueError, match="encoder"):
        quantize_engine(engine, encoder="fp16")
    assert quantize_engine(engine) is engine
    step = engine.step
    assert quantize_engine(engine) is engine and engine.step is step
    torch.save({"model": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="not a quantized"):
        load_quantized(tmp_path / "ckpt.pt")
