"""The decoder blocks in C++ (csrc/decoder_step.cpp, inference/native.py)
against the Python loop of inference/step.py that they replace: the same
operations in the same order, so the same floats, bit for bit, at every step
(log-probabilities and the self-attention cache), for every model variant of
test_engine.py, in float64 and float32, on torch's and on oneDNN's products,
and in int8 with each way of running the GLTs. Without the fused kernels the
engine keeps the Python loop."""

import copy

import pytest
import torch
from test_engine import VARIANTS, fairseq_best, random_model

from delight_fairseq import fused
from delight_fairseq.inference import Engine
from delight_fairseq.inference.matmul import onednn_available
from delight_fairseq.inference.qlayers import GLT_MODES
from delight_fairseq.inference.quantize import quantize_engine

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
    return out, engine.cache.live.clone()


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
