"""The fused criterion against fairseq's label_smoothed_cross_entropy, on the
CPU kernel (csrc/cross_entropy.cpp) and on the eager path."""

import json
import subprocess
import sys

import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    label_smoothed_nll_loss,
)
from fairseq.logging import metrics

from delight_fairseq import fused
from delight_fairseq.criterion import (
    DeLighTLabelSmoothedCrossEntropy,
    _SmoothedCrossEntropy,
    chunked_cross_entropy,
    smoothed_cross_entropy,
)

from helpers import REPO, build


class Task:
    def __init__(self, dictionary):
        self.source_dictionary = self.target_dictionary = dictionary


def sample_for(model, batch=3, src_len=6, tgt_len=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    vocab = len(model.decoder.dictionary)
    pad = model.decoder.padding_idx
    target = torch.randint(4, vocab, (batch, tgt_len), generator=g)
    target[0, -2:] = pad  # a padded target row
    prev = torch.roll(target, 1, dims=1)
    prev[:, 0] = 2
    return {
        "net_input": {
            "src_tokens": torch.randint(4, vocab, (batch, src_len), generator=g),
            "src_lengths": torch.full((batch,), src_len),
            "prev_output_tokens": prev,
        },
        "target": target,
        "ntokens": int(target.ne(pad).sum()),
    }


def loss_and_grads(crit, model, sample):
    model.zero_grad()
    loss, size, log = crit(model, sample)
    loss.backward()
    return loss.detach(), size, log, [p.grad.clone() for p in model.parameters()]


def assert_same_as_fairseq(model, eps, prefix, chunk=0):
    task = Task(model.decoder.dictionary)
    sample = sample_for(model)
    ours = DeLighTLabelSmoothedCrossEntropy(
        task,
        False,
        eps,
        ignore_prefix_size=prefix,
        report_accuracy=True,
        loss_chunk_tokens=chunk,
    )
    ref = LabelSmoothedCrossEntropyCriterion(
        task, False, eps, ignore_prefix_size=prefix, report_accuracy=True
    )
    l1, s1, log1, g1 = loss_and_grads(ours, model, sample)
    l2, s2, log2, g2 = loss_and_grads(ref, model, sample)
    torch.testing.assert_close(l1, l2)
    assert s1 == s2
    torch.testing.assert_close(log1["nll_loss"], log2["nll_loss"])
    assert (log1["n_correct"], log1["total"]) == (log2["n_correct"], log2["total"])
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def tiny_delight(**overrides):
    torch.manual_seed(0)
    return build(
        "delight",
        src_vocab=80,
        delight_emb_out_dim=64,
        delight_enc_layers=2,
        delight_dec_layers=2,
        **overrides,
    ).eval()


@pytest.mark.parametrize("eps, prefix", [(0.1, 0), (0.0, 0), (0.2, 1)])
def test_loss_nll_and_gradients_equal_fairseq(eps, prefix):
    assert_same_as_fairseq(tiny_delight(), eps, prefix)


@pytest.mark.parametrize(
    "chunk, prefix, tied",
    [(1, 0, False), (4, 0, True), (7, 1, False), (1000, 0, True)],
)
def test_chunked_loss_equals_fairseq(chunk, prefix, tied):
    """--loss-chunk-tokens: the same loss, nll, accuracy and gradients as fairseq's
    criterion, for chunks of one token, uneven chunks and one chunk for all 15."""
    model = tiny_delight(share_decoder_input_output_embed=tied)
    assert_same_as_fairseq(model, 0.1, prefix, chunk)


def test_chunked_loss_on_fairseq_transformer():
    torch.manual_seed(0)
    model = build(
        "transformer",
        src_vocab=60,
        encoder_layers=1,
        decoder_layers=1,
        encoder_embed_dim=32,
        decoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        decoder_ffn_embed_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
    ).eval()
    assert_same_as_fairseq(model, 0.1, 0, chunk=4)


def test_chunked_loss_function_gradient_check():
    torch.manual_seed(0)
    features = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3, 1, 5, 1, 10, 0, 7])

    def f(x, w):
        loss, nll, _ = chunked_cross_entropy(x, w, target, 0.15, 1, 3)
        return loss + 0.3 * nll

    assert torch.autograd.gradcheck(f, (features, weight))


def test_chunked_loss_errors_name_the_flag():
    model = tiny_delight()
    task = Task(model.decoder.dictionary)
    with pytest.raises(ValueError, match="--loss-chunk-tokens is -1"):
        DeLighTLabelSmoothedCrossEntropy(task, False, 0.1, loss_chunk_tokens=-1)
    crit = DeLighTLabelSmoothedCrossEntropy(task, False, 0.1, loss_chunk_tokens=4)
    model.decoder.adaptive_softmax = torch.nn.Identity()  # as fairseq's adaptive one
    with pytest.raises(ValueError, match="--loss-chunk-tokens needs"):
        crit(model, sample_for(model))


def test_chunk_flag_reaches_the_criterion():
    from fairseq import options

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser,
        [
            str(REPO),  # any path: the task is not set up
            "--user-dir",
            str(REPO / "delight_fairseq"),
            "--arch",
            "delight",
            "--criterion",
            "delight_label_smoothed_cross_entropy",
            "--label-smoothing",
            "0.1",
            "--loss-chunk-tokens",
            "512",
        ],
    )
    model = tiny_delight()
    crit = DeLighTLabelSmoothedCrossEntropy.build_criterion(
        args, Task(model.decoder.dictionary)
    )
    assert crit.loss_chunk_tokens == 512 and crit.eps == 0.1


def test_fused_function_gradient_check():
    torch.manual_seed(0)
    logits = torch.randn(6, 11, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3, 1, 5, 1, 10, 0])

    def f(z):
        loss, nll = smoothed_cross_entropy(z, target, 0.15, 1)
        return loss + 0.3 * nll  # exercise both outputs' gradients

    assert torch.autograd.gradcheck(f, (logits,))
    want_loss, want_nll = label_smoothed_nll_loss(
        torch.log_softmax(logits, -1), target, 0.15, 1
    )
    got_loss, got_nll = smoothed_cross_entropy(logits, target, 0.15, 1)
    torch.testing.assert_close(got_loss, want_loss)
    torch.testing.assert_close(got_nll, want_nll)


def test_half_precision_logits():
    logits = torch.randn(5, 9).to(torch.bfloat16).requires_grad_()
    target = torch.tensor([2, 3, 4, 1, 8])
    loss, nll = smoothed_cross_entropy(logits, target, 0.1, 1)
    want, _ = label_smoothed_nll_loss(
        torch.log_softmax(logits.float(), -1), target, 0.1, 1
    )
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16


def test_logs_accuracy_by_default():
    model = build(
        "delight",
        src_vocab=40,
        delight_emb_out_dim=64,
        delight_enc_layers=1,
        delight_dec_layers=1,
    ).eval()
    task = Task(model.decoder.dictionary)
    from delight_fairseq.criterion import DeLighTLabelSmoothedCrossEntropyConfig

    assert DeLighTLabelSmoothedCrossEntropyConfig().report_accuracy
    crit = DeLighTLabelSmoothedCrossEntropy(task, False, 0.1, report_accuracy=True)
    _, _, log = crit(model, sample_for(model))
    with metrics.aggregate() as agg:
        DeLighTLabelSmoothedCrossEntropy.reduce_metrics([log])
        values = agg.get_smoothed_values()
    assert 0.0 <= values["accuracy"] <= 100.0
    assert {"loss", "nll_loss", "ppl"} <= set(values)


def test_saves_no_vocabulary_sized_tensor_of_its_own():
    logits = torch.randn(16, 300, requires_grad=True)
    target = torch.randint(0, 300, (16,))
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        smoothed_cross_entropy(logits, target, 0.1, 1)
    big = [t for t in saved if t.numel() >= logits.numel()]
    assert len(big) == 1 and big[0].data_ptr() == logits.data_ptr()


def test_peak_memory_below_fairseq_at_44k_vocabulary(tmp_path):
    out = tmp_path / "mem.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "criterion_memory.py"),
            "--vocab",
            "44000",
            "--tokens",
            "1024",
            "--time",
            "1",
            "--json",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert min(result[k + "_ms"] for k in ("fairseq", "delight", "delight_eager")) > 0
    one = result["logits_mib"]
    # ours: only the gradient (one N x V); fairseq: log-probs and more
    assert result["delight_peak_mib"] < 1.3 * one
    assert result["fairseq_peak_mib"] > 2.5 * one
    # chunked (8 chunks): the logits and their gradient of one chunk at a time
    assert result["chunked_peak_mib"] < 0.5 * one


needs_kernel = pytest.mark.skipif(
    fused.load() is None, reason="the fused CPU kernels could not be built here"
)


def awkward_logits(rows=41, vocab=1003):
    """Logits whose rows test the kernel's edges; vocab is no multiple of the
    vector width. Rows 0, 9, 10 are padding (index 1)."""
    g = torch.Generator().manual_seed(5)
    z = torch.randn(rows, vocab, generator=g) * 4
    z[3] *= 30  # exp overflows without the max shift
    z[4] -= 500  # far below zero: exp underflows without it
    z[5, 7] = z[5, 900] = z[5].max() + 1  # two equal maxima: the first counts
    target = torch.randint(2, vocab, (rows,), generator=g)
    target[[0, 9, 10]] = 1
    target[5], target[6] = 7, vocab - 1
    target[8] = z[8].argmax()
    return z, target


def oracle(z, target, eps):
    """fairseq's label_smoothed_nll_loss on float64 log-probs, their gradient
    for loss + 0.3 nll, and torch's arg-max accuracy."""
    z64 = z.detach().double().requires_grad_()
    loss, nll = label_smoothed_nll_loss(torch.log_softmax(z64, -1), target, eps, 1)
    (loss + 0.3 * nll).backward()
    correct = (z.argmax(-1).eq(target) & target.ne(1)).sum()
    return loss.detach(), nll.detach(), correct, z64.grad


def ours(z, target, eps):
    z = z.detach().clone().requires_grad_()
    loss, nll, correct = _SmoothedCrossEntropy.apply(z, target, eps, 1)
    (loss + 0.3 * nll).backward()
    return loss.detach(), nll.detach(), correct, z.grad


@needs_kernel
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_kernel_loss_accuracy_and_gradient_equal_fairseq(eps):
    z, target = awkward_logits()
    assert fused.usable(z)
    loss, nll, correct, grad = ours(z, target, eps)
    want_loss, want_nll, want_correct, want_grad = oracle(z, target, eps)
    assert torch.isfinite(loss) and loss > 0
    torch.testing.assert_close(loss.double(), want_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(nll.double(), want_nll, rtol=1e-5, atol=0)
    assert int(correct) == int(want_correct) >= 2  # rows 5 and 8 at least
    torch.testing.assert_close(grad.double(), want_grad, rtol=1e-4, atol=1e-6)
    assert not grad[[0, 9, 10]].any()  # padding gets no gradient


@needs_kernel
def test_kernel_and_eager_paths_agree(monkeypatch):
    z, target = awkward_logits(rows=64, vocab=6004)  # the Multi30k vocabulary
    fast = ours(z, target, 0.1)
    monkeypatch.setenv("DELIGHT_FUSED_GLT", "0")
    assert not fused.usable(z)
    eager = ours(z, target, 0.1)
    for a, b in zip(fast, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@needs_kernel
def test_kernel_follows_torch_on_nan_and_infinite_rows():
    z = torch.randn(5, 50)
    z[1, 20] = z[1, 30] = float("nan")
    z[3, 5] = z[3, 9] = float("inf")
    z[4] = float("-inf")
    target = torch.tensor([int(z[0].argmax()), 20, int(z[2].argmin()), 5, 7])
    with torch.no_grad():
        lse = fused.load().cross_entropy_forward(z, target, 1)[0]
        loss, _, correct = _SmoothedCrossEntropy.apply(z, target, 0.1, 1)
    torch.testing.assert_close(lse, torch.logsumexp(z, -1), equal_nan=True)
    assert not torch.isfinite(loss)  # as fairseq's: a bad logit is not hidden
    # torch's arg-max: the first NaN, the first of equal maxima
    assert int(correct) == int(z.argmax(-1).eq(target).sum()) == 3


@needs_kernel
def test_kernel_rejects_a_target_outside_the_vocabulary():
    with pytest.raises(RuntimeError, match="outside the vocabulary"):
        smoothed_cross_entropy(torch.randn(2, 9), torch.tensor([3, 9]), 0.1, 1)


@pytest.mark.parametrize("kernel", ["1", "0"])
def test_without_accuracy_the_loss_is_unchanged_and_correct_is_0(kernel, monkeypatch):
    # fairseq's criterion takes no arg-max unless --report-accuracy; nor does ours
    monkeypatch.setenv("DELIGHT_FUSED_GLT", kernel)
    z, target = awkward_logits()
    loss, nll, correct = _SmoothedCrossEntropy.apply(z, target, 0.1, 1, True)
    loss_, nll_, none = _SmoothedCrossEntropy.apply(z, target, 0.1, 1, False)
    assert torch.equal(loss, loss_) and torch.equal(nll, nll_)
    assert int(none) == 0 and int(correct) >= 2
