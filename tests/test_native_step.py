"""The decoder blocks and the encoder in C++ (csrc/decoder_blocks.h,
csrc/encoder_blocks.cpp, inference/native.py) against the Python loops of
inference/step.py and inference/functional.py that they replace: the same
operations in the same order, so the same floats, bit for bit, at every step
(log-probabilities and the self-attention cache), for every model variant of
test_engine.py, in float64 and float32, on torch's and on oneDNN's products,
and in int8 with each way of running the GLTs. Without the fused kernels the
engine keeps the Python loop. The fused attention (csrc/attend_one.cpp), which
both run, against einsum and softmax; the cache's table of rows against a
cache copied in the beams' order."""

import copy

import pytest
import torch
from test_engine import VARIANTS, fairseq_best, random_model

from delight_fairseq import fused
from delight_fairseq.inference import Engine
from delight_fairseq.inference import functional as fn
from delight_fairseq.inference.matmul import onednn_available, use_onednn
from delight_fairseq.inference.qlayers import GLT_MODES
from delight_fairseq.inference.quantize import quantize_engine
from delight_fairseq.inference.step import KeyValueCache

pytestmark = pytest.mark.skipif(
    fused.load() is None, reason="the fused CPU kernels could not be built here"
)

STEPS = 7


def run_steps(model, d, src, lengths, native: bool, matmul: str, glt, beam: int):
    """STEPS steps of the engine's decoder over random tokens: each step's
    log-probabilities and the cache at the end. ``glt``: quantize the engine
    with this GLT mode (None: float)."""
    engine = Engine(model, d, beam=beam, matmul=matmul)
    if glt is not None:
        quantize_engine(engine, glt=glt)
    engine.step.use_native = native
    like, padding = engine.begin_batch(src, lengths)
    rows = src.size(0) * beam
    engine.step.prepare(engine.vocab_size, STEPS, rows, like, engine.onednn)
    assert (engine.step._native is not None) == native
    engine.cache.reset(rows, STEPS, like)
    enc = engine.step.encoder_state(like, padding)
    gen = torch.Generator().manual_seed(0)
    out = []
    for step in range(STEPS):
        tokens = torch.randint(4, len(d), (rows,), generator=gen)
        out.append(engine.step(tokens, step, engine.cache, enc).clone())
    return out, engine.cache.kv.clone()


def configurations():
    """(dtype, matmul, the int8 engine's GLT mode or None)"""
    yield torch.float64, "torch", None
    yield torch.float32, "torch", None
    if onednn_available():
        yield torch.float32, "onednn", None
    for glt in GLT_MODES:  # int8 products; the GLTs' by this mode
        yield torch.float32, "auto", glt


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_native_blocks_give_the_python_loops_floats(variant, beam):
    model64, d, src, lengths = random_model(variant)
    for config in configurations():
        dtype, matmul, glt = config
        model = model64 if dtype == torch.float64 else copy.deepcopy(model64).float()
        with torch.no_grad():
            python, python_cache = run_steps(
                model, d, src, lengths, False, *config[1:], beam
            )
            native, native_cache = run_steps(
                model, d, src, lengths, True, *config[1:], beam
            )
        for step, (a, b) in enumerate(zip(python, native)):
            assert torch.equal(a, b), (config, step)
        assert torch.equal(python_cache, native_cache), config


def test_native_blocks_search_as_fairseq():
    """Through the whole search, with sentences leaving the batch."""
    model, d, src, lengths = random_model("heads")
    for beam in (5, 1):
        engine = Engine(model, d, beam=beam, max_len_b=15)
        ref, _ = fairseq_best(model, d, src, lengths, beam, 1.0, 0.0, 15, 1)
        assert engine.translate(src, lengths) == ref
        assert engine.step._native is not None


def test_python_loop_without_the_fused_kernels(monkeypatch):
    model, d, src, lengths = random_model("tied")
    monkeypatch.setenv("DELIGHT_FUSED_GLT", "0")
    engine = Engine(model, d, beam=2, max_len_b=5)
    engine.translate(src, lengths)
    assert engine.step.kernel is None and engine.step._native is None


def encoders(model, d, glt):
    """The float engine's encoder (fn.Encoder over the model) or the int8
    engine's, with this GLT mode."""
    if glt is None:
        return fn.Encoder(model.encoder)
    return quantize_engine(Engine(model, d), glt=glt).encode


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_native_encoder_gives_the_python_loops_floats(variant, monkeypatch):
    """csrc/encoder_blocks.cpp against functional.Encoder's Python loop, bit
    for bit, in the same configurations as the decoder's blocks."""
    model64, d, src, lengths = random_model(variant)
    for dtype, matmul, glt in configurations():
        model = model64 if dtype == torch.float64 else copy.deepcopy(model64).float()
        with torch.no_grad():
            encoder = encoders(model, d, glt)
            if matmul == "onednn":
                use_onednn(encoder)
            assert encoder.native(fn.glt_kernel(encoder.embed.scaled(src))) is not None
            native, padding = encoder(src, lengths)
            with monkeypatch.context() as patch:
                patch.setattr(fn.Encoder, "use_native", False)
                python, python_padding = encoder(src, lengths)
        assert torch.equal(native, python), (dtype, matmul, glt)
        assert torch.equal(padding, python_padding)


def reference_attention(q, keys, values, padding):
    """ATen's attention (functional.attend_heads) on q G x Q x H x D, keys
    and values G x H x S x D, padding G x S or None: G x Q x H D."""
    g, n, heads, depth = q.shape
    scores = torch.einsum("gqhd,ghsd->ghqs", q, keys)
    if padding is not None:
        scores = scores.masked_fill(padding[:, None, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.einsum("ghqs,ghsd->gqhd", probs, values).reshape(g, n, heads * depth)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("depth", [20, 40, 12])  # 12: the kernel's generic width
def test_attend_one_is_attention(dtype, depth):
    """csrc/attend_one.cpp against einsum and softmax: groups of several
    queries, padding, keys read through strides, and a table of rows."""
    attend_one = fused.load().attend_one
    gen = torch.Generator().manual_seed(depth)
    heads, length = 4, 9
    tol = dict(rtol=1e-5, atol=1e-5)  # the softmax in float32, summed in its own order

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    # a sentence's beams share its keys; padding at the start (left-padded)
    q, keys, values = randn(3, 5, heads, depth), randn(3, heads, length, depth), None
    values = randn(3, heads, length, depth)
    padding = torch.zeros(3, length, dtype=torch.bool)
    padding[1, :4] = True
    out = attend_one(q, keys, values, padding, None)
    torch.testing.assert_close(
        out, reference_attention(q, keys, values, padding), **tol
    )
    # keys in a cache's layout: rows x steps x 2 x heads D, read in place
    rows = 6
    cache = randn(rows, length + 3, 2, heads * depth)
    by_head = [
        cache[:, :length, j].unflatten(2, (heads, depth)).transpose(1, 2)
        for j in (0, 1)
    ]
    q = randn(rows, 1, heads, depth)
    out = attend_one(q, *by_head, None, None)
    expected = reference_attention(q, *(t.contiguous() for t in by_head), None)
    torch.testing.assert_close(out, expected, **tol)
    # a table: hypothesis r reads row index[r, t] at position t (5 of 6 rows)
    index = torch.randint(0, rows, (5, length), generator=gen)
    moved = [t[index, :, torch.arange(length)].transpose(1, 2) for t in by_head]
    out = attend_one(q[:5], *by_head, None, index)
    torch.testing.assert_close(out, reference_attention(q[:5], *moved, None), **tol)
    with pytest.raises(RuntimeError, match="index out of the keys' rows"):
        attend_one(q[:5], *by_head, None, index + rows)


def test_the_cache_table_is_a_reordered_cache():
    """KeyValueCache moves beams by its table of rows: what a step reads equals
    a cache whose rows were copied in the beams' order at every step."""
    gen = torch.Generator().manual_seed(0)
    blocks, head_dim, rows, steps = 2, 4, 6, 5
    cache = KeyValueCache(blocks, head_dim)
    like = torch.empty(0, dtype=torch.float64)
    cache.reset(rows, steps, like)
    copied = torch.zeros(rows, steps, blocks, 2, head_dim, dtype=torch.float64)
    n = rows
    for step in range(steps):
        new = torch.randn(n, blocks, 2, head_dim, generator=gen, dtype=torch.float64)
        cache.kv[:n, step] = new
        copied[:n, step] = new
        for block in range(blocks):
            keys, values = cache.past(block, step, n)
            assert torch.equal(keys, copied[:n, : step + 1, block, 0])
            assert torch.equal(values, copied[:n, : step + 1, block, 1])
        # beams move, and from step 2 on a hypothesis leaves
        n_next = n - (step >= 2)
        order = torch.randint(0, n, (n_next,), generator=gen)
        cache.reorder(order, step + 1)
        copied[:n_next, : step + 1] = copied[order, : step + 1].clone()
        n = n_next
