"""The search loop in C++ (csrc/search.cpp) against the Python loop of
inference/search.py that it replaces: the same operations in the same order,
so the same best hypotheses, lengths and scores, bit for bit, for every model
variant and search setting of test_engine.py (which checks the engine, and so
this loop, against fairseq's SequenceGenerator), in float64, float32 and int8,
with the unk penalty, unnormalized scores and a beam that runs out of finite
candidates (the torch.topk fallback). Where the step does not run in C++ the
Python loop runs."""

import copy

import pytest
import torch
from test_engine import SETTINGS, VARIANTS, left_padded, random_model, random_sources

from delight_fairseq import fused
from delight_fairseq.inference import Engine, search
from delight_fairseq.inference.quantize import quantize_engine

from helpers import DROPOUT_OFF, TINY_SHAPE, build, make_dictionary

pytestmark = pytest.mark.skipif(
    fused.load() is None, reason="the fused CPU kernels could not be built here"
)


def best_of(engine, src, lengths, native: bool, monkeypatch) -> search.Best:
    """The engine's search over the batch, by the C++ loop or the Python one
    (which then must not run, or must run, as asked)."""
    engine.native_search = native
    with monkeypatch.context() as m, torch.no_grad():
        if native:

            def refuse(*args):
                raise AssertionError("the Python loop ran")

            m.setattr(search, "greedy", refuse)
            m.setattr(search, "beams", refuse)
        return search.search(engine, src, lengths)


def assert_same_best(engine, src, lengths, monkeypatch):
    python = best_of(engine, src, lengths, False, monkeypatch)
    native = best_of(engine, src, lengths, True, monkeypatch)
    assert torch.equal(native.tokens, python.tokens)
    assert torch.equal(native.length, python.length)
    assert torch.equal(native.score, python.score)
    return native


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_native_search_is_the_python_loop(variant, monkeypatch):
    model64, d, src, lengths = random_model(variant)
    for dtype in (torch.float64, torch.float32):
        model = model64 if dtype == torch.float64 else copy.deepcopy(model64).float()
        for beam, lenpen, a, b, min_len in SETTINGS:
            engine = Engine(
                model, d, beam=beam, lenpen=lenpen, max_len_a=a, max_len_b=b,
                min_len=min_len,
            )  # fmt: skip
            best = assert_same_best(engine, src, lengths, monkeypatch)
            assert engine.step.native_parts() is not None
            if b == 15:  # some sentences end early, and leave the batch
                assert best.length.min() < engine.max_len(src.size(1))


def test_native_search_options_and_int8(monkeypatch):
    """--unkpen, --unnormalized, and the int8 engine, at beams 1 and 5."""
    model, d, src, lengths = random_model("pre_norm_untied")
    model32 = copy.deepcopy(model).float()
    for beam in (1, 5):
        for kw in (dict(unk_penalty=-3.0), dict(normalize_scores=False)):
            engine = Engine(model, d, beam=beam, lenpen=0.5, max_len_b=15, **kw)
            best = assert_same_best(engine, src, lengths, monkeypatch)
            if "unk_penalty" in kw:  # a negative penalty favours unk
                assert (best.tokens == d.unk()).any()
        engine = Engine(model32, d, beam=beam, max_len_b=15)
        quantize_engine(engine)
        assert_same_best(engine, src, lengths, monkeypatch)


def test_native_search_when_candidates_tie(monkeypatch):
    """Beam 10 over 8 symbols (capped at 7): before min_len and at the length
    limit fewer than 2 x beam candidates are finite, the kernel reports the
    tie and the loop asks torch.topk, as Engine.candidates does."""
    torch.manual_seed(0)
    model = build("delight", src_vocab=8, **TINY_SHAPE, **DROPOUT_OFF).double().eval()
    d = make_dictionary(8)
    src, lengths = left_padded(random_sources(3, seed=2, vocab=8), d)
    for min_len in (1, 3):
        engine = Engine(model, d, beam=10, max_len_b=6, min_len=min_len)
        assert_same_best(engine, src, lengths, monkeypatch)


def test_python_loop_where_the_step_is_not_native(monkeypatch):
    """The Python blocks (DecoderStep.use_native = False) and a vocabulary
    too large for the token table have no C++ step: the engine, asked for
    the C++ search, runs the Python loop."""
    from delight_fairseq.inference import step

    model, d, src, lengths = random_model("tied")
    ran = []
    python_loop = search.beams
    monkeypatch.setattr(search, "beams", lambda *a: ran.append(a) or python_loop(*a))
    engine = Engine(model, d, beam=5, max_len_b=15)
    engine.step.use_native = False
    engine.translate(src, lengths)
    assert engine.native_search and engine.step.native_parts() is None
    assert len(ran) == 1
    monkeypatch.setattr(step, "MAX_TOKEN_TABLE", 0)
    engine = Engine(model, d, beam=5, max_len_b=15)
    engine.translate(src, lengths)
    assert engine.step._native is not None and engine.step.native_parts() is None
    assert len(ran) == 2
