import pytest
import torch

from delight_fairseq.dextra import DExTra, mix_inputs
from delight_fairseq.scaling import dextra_params

from reference import naive_dextra, naive_mixer


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
