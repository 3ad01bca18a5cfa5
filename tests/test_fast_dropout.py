"""--delight-fast-dropout: CPU dropout masks hashed from (index, seed) by the
fused kernel (delight_fairseq/csrc/dropout.cpp) instead of torch's bernoulli_.

The expectations are independent of the kernel: the binomial keep rate and its
spread, the independence of neighbours and of calls, dropout's own definition
(kept values scaled by 1 / (1 - p), the gradient masked the same way), and
torch's dropout wherever the kernel does not apply.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from delight_fairseq import fused

from helpers import TINY_SHAPE, build, train_namespace

pytestmark = pytest.mark.skipif(
    fused.load() is None, reason="the fused CPU kernels could not be built here"
)

N = 1 << 20


def masked(p, seed, x=None):
    x = torch.ones(N) if x is None else x
    return fused._module.counter_dropout(x, p, seed)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5])
def test_keep_rate_is_binomial_and_values_are_scaled(p):
    y = masked(p, seed=12345)
    kept = y != 0
    # the number kept is Binomial(N, 1 - p): within 5 standard deviations
    sd = math.sqrt(N * p * (1 - p))
    assert abs(kept.sum().item() - N * (1 - p)) < 5 * sd
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))


def test_neighbours_and_calls_are_independent():
    p = 0.3
    a = masked(p, seed=1) != 0
    b = masked(p, seed=2) != 0
    sd = math.sqrt(N * (1 - p) ** 2 * (1 - (1 - p) ** 2))
    # pairs kept together: (1 - p)^2 of them, for neighbours and across calls
    for both in (a[1:] & a[:-1], a & b, a[::2] & a[1::2]):
        n = both.numel()
        assert abs(both.sum().item() - n * (1 - p) ** 2) < 5 * sd * math.sqrt(n / N)
    # rows of a 2-D tensor are not copies of each other (high index bits mix in)
    rows = a.reshape(1024, 1024)
    assert (rows[0] == rows[1]).float().mean() < 0.7


def test_the_mask_depends_on_seed_index_and_p_only():
    x = torch.randn(N)
    y = masked(0.2, seed=99, x=x)
    torch.testing.assert_close(masked(0.2, seed=99, x=x), y, rtol=0, atol=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = masked(0.2, seed=99, x=x)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one_thread, y, rtol=0, atol=0)
    assert not torch.equal(masked(0.2, seed=100, x=x), y)
    # float64 draws the same mask
    y64 = masked(0.2, seed=99, x=x.double())
    assert torch.equal(y64 != 0, y != 0)


def test_a_nan_stays_nan_where_it_is_dropped():
    # torch multiplies by its mask, so a NaN input is never hidden by dropout
    y = masked(0.5, seed=4, x=torch.full((1000,), float("nan")))
    assert torch.isnan(y).all()


def test_gradient_is_masked_like_the_output():
    x = torch.randn(64, 33, requires_grad=True)
    grad = torch.randn(64, 33)
    torch.manual_seed(3)
    y = fused.dropout(x, 0.25, training=True, counter=True)
    y.backward(grad)
    kept = y.detach() != 0
    assert 0.6 < kept.float().mean() < 0.9
    torch.testing.assert_close(y.detach(), torch.where(kept, x.detach() / 0.75, 0.0))
    torch.testing.assert_close(x.grad, torch.where(kept, grad / 0.75, 0.0))
    # the mask follows torch's generator, as torch's dropout does
    torch.manual_seed(3)
    again = fused.dropout(x, 0.25, training=True, counter=True)
    assert torch.equal(again, y)


def test_torch_dropout_wherever_the_kernel_does_not_apply(monkeypatch):
    x = torch.randn(32, 16)
    for args in [(0.3, False, True), (0.0, True, True), (0.3, True, False)]:
        torch.manual_seed(0)
        got = fused.dropout(x, *args)
        torch.manual_seed(0)
        assert torch.equal(got, F.dropout(x, p=args[0], training=args[1]))
    torch.manual_seed(0)
    half = fused.dropout(x.bfloat16(), 0.3, True, True)
    torch.manual_seed(0)
    assert torch.equal(half, F.dropout(x.bfloat16(), p=0.3, training=True))
    monkeypatch.setenv("DELIGHT_FUSED_GLT", "0")
    torch.manual_seed(0)
    off = fused.dropout(x, 0.3, True, True)
    torch.manual_seed(0)
    assert torch.equal(off, F.dropout(x, p=0.3, training=True))


def tiny(**flags):
    torch.manual_seed(0)
    return build("delight", src_vocab=50, **TINY_SHAPE, **flags)


def test_the_flag_reaches_every_dropout_of_the_model(monkeypatch):
    """With the flag no dropout of the blocks, DExTra units, attention or FFN
    goes through torch's dropout; without it all of them do. Evaluation is
    the same function either way."""
    calls = []
    real = F.dropout

    def spy(x, p=0.5, training=True, inplace=False):
        if training and p > 0:
            calls.append(p)
        return real(x, p=p, training=training, inplace=inplace)

    monkeypatch.setattr(F, "dropout", spy)  # F is torch.nn.functional
    src = torch.randint(4, 50, (2, 5))
    prev = torch.randint(4, 50, (2, 4))
    lengths = torch.tensor([5, 5])

    plain, fast = tiny(), tiny(delight_fast_dropout=True)
    assert "fast CPU dropout" in fast.describe()
    assert not any(getattr(m, "fast_dropout", False) for m in plain.modules())
    flagged = [m for m in fast.modules() if hasattr(m, "fast_dropout")]
    assert flagged and all(m.fast_dropout for m in flagged)

    plain.train()
    plain(src, lengths, prev)
    assert calls  # the base architecture draws dropout everywhere
    calls.clear()
    fast.train()
    fast(src, lengths, prev)
    assert calls == []

    plain.eval()
    fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            fast(src, lengths, prev)[0], plain(src, lengths, prev)[0], rtol=0, atol=0
        )


def test_fairseq_parses_the_flag():
    args = train_namespace(["--arch", "delight", "--delight-fast-dropout"])
    assert args.delight_fast_dropout is True
    # off unless given (fairseq leaves an unset store_true flag out of the
    # namespace; the model's config then holds its default)
    plain = train_namespace(["--arch", "delight"])
    assert getattr(plain, "delight_fast_dropout", False) is False
