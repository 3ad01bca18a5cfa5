import pytest
import torch

from delight_fairseq.group_linear import GroupLinear
from delight_fairseq.scaling import GLTSpec, glt_params
from delight_fairseq.tools.naive import naive_glt, naive_layer_norm, swish


def randomise(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize(
    "n_in, n_out, g",
    [(64, 64, 2), (128, 176, 4), (240, 280, 4), (96, 48, 8), (16, 32, 1)],
)
def test_glt_matches_naive_reference(n_in, n_out, g, shuffle):
    glt = randomise(GroupLinear(n_in, n_out, g, shuffle=shuffle)).eval()
    x = torch.randn(3, 5, n_in, dtype=torch.float64)
    glt.double()
    got = glt(x)
    want = naive_glt(
        x.reshape(-1, n_in),
        glt.weight,
        glt.bias,
        glt.norm_weight,
        glt.norm_bias,
        shuffle,
    ).reshape(3, 5, n_out)
    torch.testing.assert_close(got, want)


def test_glt_gradients_match_naive_reference():
    glt = randomise(GroupLinear(48, 96, 4)).double()
    x = torch.randn(7, 48, dtype=torch.float64, requires_grad=True)
    params = [x, glt.weight, glt.bias, glt.norm_weight, glt.norm_bias]
    grads = torch.autograd.grad((glt(x) ** 2).sum(), params)
    want = torch.autograd.grad(
        (naive_glt(x, glt.weight, glt.bias, glt.norm_weight, glt.norm_bias) ** 2).sum(),
        params,
    )
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b)


def test_shuffle_is_a_channel_shuffle():
    # with identity weights per group and no norm effect, shuffling 2 groups of
    # 3 features interleaves them: [a0 a1 a2 | b0 b1 b2] -> [a0 b0 a1 | b1 a2 b2]
    g, out_g = 2, 3
    y = torch.arange(6.0).view(1, 6)
    shuffled = y.view(1, g, out_g).permute(0, 2, 1).reshape(1, 6)
    assert shuffled.tolist() == [[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]]


def test_single_group_is_linear_norm_swish():
    glt = randomise(GroupLinear(10, 6, 1)).double()
    x = torch.randn(4, 10, dtype=torch.float64)
    y = x @ glt.weight[0] + glt.bias[0]
    want = swish(naive_layer_norm(y, glt.norm_weight, glt.norm_bias))
    torch.testing.assert_close(glt(x), want)


@pytest.mark.parametrize("n_in, n_out, g", [(64, 64, 2), (448, 384, 4), (128, 32, 1)])
def test_glt_parameter_count(n_in, n_out, g):
    # docs/architecture.md section 2: in*out/g + out + 2*out/g
    glt = GroupLinear(n_in, n_out, g)
    assert (
        sum(p.numel() for p in glt.parameters())
        == n_in * n_out // g + n_out + 2 * n_out // g
    )
    assert (
        glt_params(GLTSpec(n_in, n_out, g))
        == n_in * n_out // g + n_out + 2 * n_out // g
    )


def test_glt_init():
    glt = GroupLinear(64, 128, 4)
    assert torch.all(glt.bias == 0)
    # Xavier-uniform over the g x in/g x out/g tensor, as the reference code
    # initialised it: fan_in = in/g * out/g, fan_out = g * out/g
    bound = (6 / (16 * 32 + 4 * 32)) ** 0.5
    assert 0.9 * bound < glt.weight.abs().max() <= bound


def test_glt_rejects_indivisible_groups():
    with pytest.raises(ValueError, match="divisible"):
        GroupLinear(30, 64, 4)


def test_glt_dropout_only_in_training():
    glt = GroupLinear(16, 16, 2, dropout=0.5)
    x = torch.randn(50, 16)
    glt.eval()
    torch.testing.assert_close(glt(x), glt(x))
    glt.train()
    assert (glt(x) == 0).float().mean() > 0.3
