"""The engine's fused beam candidates (delight_fairseq/csrc/beam_topk.cpp)
against what they replace, fairseq's nan-to-(-inf), addition of the beams'
scores and torch.topk over each sentence's beams x V values; and its report
of ties, where torch.topk's order is unspecified and the engine asks it."""

import pytest
import torch
from test_engine import VOCAB, fairseq_best, left_padded, random_sources

from delight_fairseq import fused
from delight_fairseq.inference import Engine

from helpers import DROPOUT_OFF, TINY_SHAPE, build, make_dictionary

needs_kernel = pytest.mark.skipif(
    fused.load() is None, reason="the fused CPU kernels could not be built here"
)
INF = float("-inf")


def scores_of(lprobs, cum, n):
    """fairseq's scores of each sentence's candidates, n x (beams x V), in
    eager ops: NaN -> -inf, then the beams' scores added."""
    x = torch.nan_to_num(lprobs, nan=INF, posinf=float("inf"), neginf=INF)
    if cum.numel():
        x = x.view(n, -1, x.size(1)) + cum.view(n, -1, 1)
    return x.reshape(n, -1)


def reference(lprobs, cum, n, k):
    """fairseq's BeamSearch.step candidates, in eager ops."""
    return torch.topk(scores_of(lprobs, cum, n), k)


def case(seed, n, beams, vocab, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    lprobs = torch.log_softmax(torch.randn(n * beams, vocab, generator=g) * 4, -1)
    cum = (torch.randn(n * beams, generator=g) * 5).clamp(max=0) if seed % 2 else None
    if seed % 3 == 0:
        lprobs[torch.rand(lprobs.shape, generator=g) < 0.2] = INF
    if seed % 5 == 0:
        lprobs[torch.rand(lprobs.shape, generator=g) < 0.05] = float("nan")
    if cum is None:
        cum = torch.empty(0)
    elif seed % 7 == 0:
        cum[0] = INF  # a beam that can no longer win
    return lprobs.to(dtype), cum.to(dtype)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "n, beams, vocab",
    [(1, 1, 5), (3, 5, 40), (2, 4, 63), (4, 5, 64), (5, 3, 130), (64, 5, 6008)],
)
def test_candidates_are_fairseqs(n, beams, vocab, dtype):
    """The same scores as eager ops, bit for bit, with NaN as -inf, blocks of
    64 and ragged tails; where no tie is reported, the same indices too."""
    module = fused.load()
    untied = 0
    for seed in range(12):
        lprobs, cum = case(seed, n, beams, vocab, dtype)
        k = min(2 * beams, beams * vocab - 1)
        values, indices, tied = module.beam_candidates(lprobs, cum, n, k)
        ref_values, ref_indices = reference(lprobs, cum, n, k)
        assert torch.equal(values, ref_values)
        assert torch.equal(scores_of(lprobs, cum, n).gather(1, indices), values)
        # descending; equal values in the order of their flat index
        later = values[:, 1:]
        assert bool((values[:, :-1] >= later).all())
        same = values[:, :-1] == later
        assert bool((indices[:, :-1][same] < indices[:, 1:][same]).all())
        if not tied:
            untied += 1
            assert torch.equal(indices, ref_indices)
    assert untied >= 4  # random scores rarely tie: the kernel's answer is used


@needs_kernel
def test_ties_are_reported():
    """A tie inside the k best or across their boundary is reported (torch
    may order or choose those values otherwise); a tie below is not."""
    module = fused.load()

    def tied(row, k):
        lprobs = torch.tensor([row], dtype=torch.float32)
        return module.beam_candidates(lprobs, torch.empty(0), 1, k)[2]

    spread = [-float(i) for i in range(100)]
    assert not tied(spread, 4)
    inside = list(spread)
    inside[70] = -1.0  # equals the second best, far away in another block
    assert tied(inside, 4)
    boundary = list(spread)
    boundary[90] = -3.0  # equals the 4th best, which it would replace
    assert tied(boundary, 4)
    assert not tied(boundary, 3)
    assert tied(boundary, 5)  # both inside
    below = list(spread)
    below[95] = -50.0
    assert not tied(below, 4)
    # fewer finite scores than k: the -inf ones tie (the step at max_len)
    few = [0.0, -1.0] + [INF] * 98
    assert tied(few, 4) and not tied(few, 2)
    # a NaN counts as -inf
    assert tied([0.0, float("nan"), INF], 2)
    # a tie made by the beams' scores: -2 + 0 = -1 + -1
    lprobs = torch.tensor([[-2.0, -9.0], [-1.0, -9.0]])
    cum = torch.tensor([0.0, -1.0])
    assert module.beam_candidates(lprobs, cum, 1, 1)[2]


@needs_kernel
def test_bad_arguments_name_the_problem():
    module = fused.load()
    with pytest.raises(RuntimeError, match="split evenly"):
        module.beam_candidates(torch.zeros(5, 4), torch.empty(0), 2, 2)
    with pytest.raises(RuntimeError, match="k must be"):
        module.beam_candidates(torch.zeros(2, 4), torch.empty(0), 2, 5)
    with pytest.raises(RuntimeError, match="one score per row"):
        module.beam_candidates(torch.zeros(2, 4), torch.zeros(3), 1, 2)


@needs_kernel
def test_engine_takes_the_kernels_candidates_and_torchs_on_ties():
    """Decoding a model uses the kernel's answer at most steps and torch's
    where it reports a tie, and gives fairseq's hypotheses either way. (The
    eos-prone models of test_engine.py tie eos with another token at every
    step, so there torch decides throughout.) This watches the Python loop's
    Engine.candidates; the C++ loop (csrc/search.cpp) decides the same way
    and gives the Python loop's results (test_native_search.py)."""
    torch.manual_seed(0)
    model = build("delight", src_vocab=VOCAB, **TINY_SHAPE, **DROPOUT_OFF)
    model = model.double().eval()
    d = make_dictionary(VOCAB)
    src, lengths = left_padded(random_sources(7, seed=1), d)
    engine = Engine(model, d, beam=5, max_len_b=15)
    engine.native_search = False
    reports = []

    class Spy:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getattr__(self, name):
            return getattr(self.kernel, name)

        def beam_candidates(self, *args):
            out = self.kernel.beam_candidates(*args)
            reports.append(out[2])
            return out

    prepare = engine.step.prepare

    def spied_prepare(*args):
        prepare(*args)
        engine.step.kernel = Spy(engine.step.kernel)

    engine.step.prepare = spied_prepare
    setting = (5, 1.0, 0.0, 15, 1)
    assert (
        engine.translate(src, lengths)
        == fairseq_best(model, d, src, lengths, *setting)[0]
    )
    # untrained, every hypothesis runs to the limit: 15 steps, then the one
    # where only eos may follow, which ties at -inf, so torch decides there
    assert reports == [False] * 15 + [True]
