import pytest
import torch

from delight_fairseq.dextra import DExTra, mix_inputs
from delight_fairseq.scaling import dextra_params
from delight_fairseq.tools.naive import naive_dextra, naive_mixer


def test_mixer_matches_naive():
    x = torch.randn(5, 64)
    y = torch.randn(5, 176)
    torch.testing.assert_close(mix_inputs(x, y, 4), naive_mixer(x, y, 4))


def test_mixer_keeps_leading_dims():
    x = torch.randn(2, 3, 8)
    y = torch.randn(2, 3, 12)
    out = mix_inputs(x, y, 4)
    assert out.shape == (2, 3, 20)
    torch.testing.assert_close(out[1, 2], naive_mixer(x[1, 2:3], y[1, 2:3], 4)[0])


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize(
    "d_in, p, d_o, n, w, g",
    [(128, 64, 64, 8, 3.0, 4), (128, 64, 128, 4, 2.0, 4), (256, 128, 128, 5, 2.286, 8)],
)
def test_dextra_matches_naive_reference(d_in, p, d_o, n, w, g, shuffle):
    torch.manual_seed(0)
    unit = DExTra(d_in, p, d_o, n, w, g, shuffle=shuffle).double().eval()
    with torch.no_grad():
        for param in unit.parameters():
            param.add_(0.1 * torch.randn_like(param))
    x = torch.randn(6, d_in, dtype=torch.float64)
    torch.testing.assert_close(unit(x), naive_dextra(x, unit, shuffle))


def test_dextra_worked_example_layers():
    unit = DExTra(128, 64, 64, 8, 3.0, 4)
    got = [(m.in_features, m.out_features, m.groups) for m in unit.glt_layers]
    assert got[1] == (128, 176, 4) and got[-1] == (240, 64, 2)
    assert unit.input_layer.linear.weight.shape == (64, 128)
    assert unit.output_layer.linear.weight.shape == (64, 64 + 64)


@pytest.mark.parametrize(
    "args",
    [(128, 64, 128, 4, 2.0, 4), (640, 320, 320, 8, 3.0, 32), (96, 48, 48, 3, 1.5, 4)],
)
def test_dextra_module_params_equal_arithmetic(args):
    assert sum(p.numel() for p in DExTra(*args).parameters()) == dextra_params(*args)


def test_grouped_mixer_is_the_mixer_in_group_major_layout():
    from delight_fairseq.dextra import mix_grouped

    x, y = torch.randn(5, 64), torch.randn(5, 176)
    want = mix_inputs(x, y, 4).reshape(5, 4, -1).transpose(0, 1)
    got = mix_grouped(x, y, 4)
    torch.testing.assert_close(got, want)
    assert got.is_contiguous()


def test_dextra_gradients_match_naive_reference():
    torch.manual_seed(3)
    unit = DExTra(64, 32, 64, 5, 2.0, 4).double()
    with torch.no_grad():
        for param in unit.parameters():
            param.add_(0.1 * torch.randn_like(param))
    x = torch.randn(2, 3, 64, dtype=torch.float64, requires_grad=True)
    params = [x, *unit.parameters()]
    got = torch.autograd.grad((unit(x) ** 2).sum(), params)
    want = torch.autograd.grad(
        (naive_dextra(x.reshape(6, 64), unit) ** 2).sum(), params
    )
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
