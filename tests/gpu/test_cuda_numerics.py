"""The model on CUDA against the CPU in float64: forward and backward of a GLT, a
DExTra and a whole model, incremental decoding, the criterion on half-precision
logits, and the CUDA path's independence from the CPU kernel and its compiler."""

import copy

import pytest
import torch
import torch.nn.functional as F
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

from delight_fairseq import fused
from delight_fairseq.criterion import smoothed_cross_entropy
from delight_fairseq.dextra import DExTra
from delight_fairseq.group_linear import GroupLinear

from helpers import build

# float32 on the device against float64 on the CPU (TF32 off, see conftest.py)
FP32 = dict(rtol=1e-4, atol=2e-5)
# a whole model is 28 layers deep: float32 rounding accumulates over them
MODEL = dict(rtol=1e-3, atol=2e-4)
VOCAB = 60


def tiny_model():
    torch.manual_seed(0)
    return build(
        "delight",
        src_vocab=VOCAB,
        delight_emb_out_dim=64,
        delight_enc_layers=2,
        delight_dec_layers=2,
        delight_enc_min_depth=2,
        delight_enc_max_depth=4,
        delight_dec_min_depth=2,
        delight_dec_max_depth=4,
    ).eval()


def tokens(batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=g)


def outputs_and_grads(module, inputs, device, dtype):
    """The module's output and the gradients of a fixed random projection of it,
    with respect to its parameters and its floating-point inputs."""
    module = copy.deepcopy(module).to(device, dtype)
    xs = [
        x.to(device, dtype).requires_grad_() if x.is_floating_point() else x.to(device)
        for x in inputs
    ]
    out = module(*xs)
    out = out[0] if isinstance(out, tuple) else out
    g = torch.Generator().manual_seed(7)
    probe = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * probe.to(device, dtype)).sum().backward()
    grads = [x.grad for x in xs if x.is_floating_point()]
    grads += [p.grad for p in module.parameters()]
    return out, grads


def assert_device_matches_float64(module, inputs, device, tol=FP32):
    want, want_grads = outputs_and_grads(module, inputs, "cpu", torch.float64)
    got, got_grads = outputs_and_grads(module, inputs, device, torch.float32)
    torch.testing.assert_close(got.cpu().double(), want, **tol)
    assert len(got_grads) == len(want_grads)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a.cpu().double(), b, **tol)


@pytest.mark.parametrize("n_in, n_out, g", [(64, 128, 4), (96, 48, 8), (32, 64, 1)])
def test_glt_forward_backward(device, n_in, n_out, g):
    torch.manual_seed(1)
    glt = GroupLinear(n_in, n_out, g).eval()
    x = torch.randn(5, 3, n_in)
    assert_device_matches_float64(glt, [x], device)


def test_dextra_forward_backward(device):
    torch.manual_seed(2)
    dextra = DExTra(64, 32, 64, depth=6, width_mult=2.0, max_groups=4).eval()
    x = torch.randn(7, 3, 64)
    assert_device_matches_float64(dextra, [x], device)


def test_whole_model_forward_backward(device):
    model = tiny_model()
    src, prev = tokens(3, 7, 1), tokens(3, 6, 2)
    lengths = torch.full((3,), 7)
    assert_device_matches_float64(model, [src, lengths, prev], device, MODEL)


def test_incremental_decoding_equals_full_pass_after_reorder(device):
    from test_decoding import step_by_step

    model = tiny_model().to(device)
    src, prev = tokens(4, 5, 3).to(device), tokens(4, 6, 4).to(device)
    lengths = torch.full((4,), 5, device=device)
    order = torch.tensor([2, 0, 0, 3], device=device)  # beams die and duplicate
    with torch.no_grad():
        enc = model.encoder(src, src_lengths=lengths)
        plain, _ = step_by_step(model, prev, enc)
        full, _ = model.decoder(prev, enc)
        torch.testing.assert_close(plain, full, **FP32)
        inc, _ = step_by_step(model, prev, enc, reorder=(3, order))
        src2 = src.index_select(0, order)
        full2, _ = model.decoder(
            prev.index_select(0, order), model.encoder(src2, src_lengths=lengths)
        )
    torch.testing.assert_close(inc, full2, **FP32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_criterion_on_half_precision_logits(device, dtype):
    if device == "cpu" and dtype == torch.float16:
        pytest.skip("float16 logits are the GPU's case")
    g = torch.Generator().manual_seed(3)
    n, vocab, pad, eps = 64, 1000, 1, 0.1
    logits = (4 * torch.randn(n, vocab, generator=g)).to(dtype)
    target = torch.randint(4, vocab, (n,), generator=g)
    target[::5] = pad
    # the reference: fairseq's loss on the same (rounded) logits in float64
    ref = logits.double().requires_grad_()
    lprobs = F.log_softmax(ref, dim=-1)
    want_loss, want_nll = label_smoothed_nll_loss(
        lprobs, target.unsqueeze(-1), eps, ignore_index=pad
    )
    want_loss.backward()
    z = logits.to(device).requires_grad_()
    loss, nll = smoothed_cross_entropy(z, target.to(device), eps, pad)
    loss.backward()
    assert loss.dtype == torch.float32 and z.grad.dtype == dtype
    torch.testing.assert_close(loss.double().cpu(), want_loss, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(nll.double().cpu(), want_nll, rtol=1e-5, atol=1e-3)
    # the gradient is rounded to the logits' precision once
    step = 1e-3 if dtype == torch.float16 else 8e-3
    torch.testing.assert_close(
        z.grad.double().cpu(), ref.grad, rtol=step, atol=step * ref.grad.abs().max()
    )


def test_cuda_path_needs_neither_the_cpu_kernel_nor_a_compiler(device, monkeypatch):
    if device != "cuda":
        pytest.skip("about CUDA tensors")

    def no_build():
        raise AssertionError(
            "the CPU kernel was loaded (and a compiler called) for CUDA"
        )

    monkeypatch.setattr(fused, "load", no_build)
    model = tiny_model().cuda().train()
    # --delight-fast-dropout too: on CUDA tensors it is torch's dropout
    fused.set_fast_dropout(model, True)
    src, prev = tokens(3, 7, 1).cuda(), tokens(3, 6, 2).cuda()
    out, _ = model(src, torch.full((3,), 7, device="cuda"), prev)
    out.float().sum().backward()
    assert not fused.usable(out)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
