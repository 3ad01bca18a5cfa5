"""The float32 engine's products on oneDNN (delight_fairseq/inference/matmul.py):
the same values as F.linear (rows padded to ROW_STEP or not), the packed weights
kept and renewed, the choice of library, a decoder's parts and the encoder on
oneDNN."""

import gc

import pytest
import torch
import torch.nn.functional as F

from delight_fairseq.inference import Engine, matmul
from delight_fairseq.inference import functional as fn

from helpers import DROPOUT_OFF, TINY_SHAPE, build, make_dictionary

needs_onednn = pytest.mark.skipif(
    not matmul.onednn_available(), reason="this torch has no oneDNN linear"
)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 24), (3, 7, 24), (1, 24), (64, 24), (1100, 24)])
def test_onednn_linear_gives_f_linear(shape, bias):
    torch.manual_seed(0)
    x, weight = torch.randn(shape), torch.randn(40, 24)
    b = torch.randn(40) if bias else None
    got = matmul.onednn_linear(x, matmul.packed(weight), b)
    torch.testing.assert_close(got, F.linear(x, weight, b), rtol=1e-5, atol=1e-5)
    # a strided input (a slice of a wider tensor)
    wide = torch.randn(6, 30)[:, :24]
    torch.testing.assert_close(
        matmul.onednn_linear(wide, matmul.packed(weight), b),
        F.linear(wide, weight, b),
        rtol=1e-5,
        atol=1e-5,
    )


@needs_onednn
def test_packed_weights_are_kept_renewed_and_forgotten():
    weight = torch.randn(16, 8)
    x = torch.randn(4, 8)
    layout = matmul.packed(weight)
    assert matmul.packed(weight) is layout  # made once
    with torch.no_grad():
        weight.mul_(2)  # an in-place change: packed again
    assert matmul.packed(weight) is not layout
    torch.testing.assert_close(
        matmul.onednn_linear(x, matmul.packed(weight), None), x @ weight.t()
    )
    key = id(weight)
    assert key in matmul._PACKED
    del weight, layout
    gc.collect()
    assert key not in matmul._PACKED  # forgotten with the weight


def test_resolve_checks_the_name_and_the_tensors(monkeypatch):
    like32, like64 = torch.zeros(1), torch.zeros(1, dtype=torch.float64)
    with pytest.raises(ValueError, match="matmul is 'mkl'; choose one of auto"):
        matmul.resolve("mkl", like32)
    assert matmul.resolve("torch", like32) == "torch"
    assert matmul.resolve("auto", like64) == "torch"  # oneDNN's path is float32
    with pytest.raises(ValueError, match="matmul='onednn' needs float32"):
        matmul.resolve("onednn", like64)
    if not matmul.onednn_available():
        assert matmul.resolve("auto", like32) == "torch"
        return
    assert matmul.resolve("onednn", like32) == "onednn"
    # "auto" measures once per process and keeps the answer
    for gain, want in [(matmul.AUTO_GAIN, "onednn"), (1.0, "torch")]:
        monkeypatch.setattr(matmul, "_AUTO", None)
        monkeypatch.setattr(matmul, "speedup", lambda gain=gain: gain)
        assert matmul.resolve("auto", like32) == want
        monkeypatch.setattr(matmul, "speedup", lambda: pytest.fail("measured twice"))
        assert matmul.resolve("auto", like32) == want


def test_engine_rejects_an_unknown_library():
    model = build("delight", src_vocab=12, **TINY_SHAPE, **DROPOUT_OFF)
    with pytest.raises(ValueError, match="matmul is 'blas'"):
        Engine(model, make_dictionary(12), matmul="blas")


@needs_onednn
def test_a_decoder_on_onednn_gives_the_same_products():
    """use_onednn turns every Linear and LinearNormAct of a decoder's parts
    into its oneDNN counterpart, which computes the same values (with the
    fused GLT kernel and without)."""
    from delight_fairseq import fused

    torch.manual_seed(0)
    model = build("delight", src_vocab=30, **TINY_SHAPE, **DROPOUT_OFF).eval()
    weights = fn.DecoderWeights(model.decoder)
    plain = fn.DecoderWeights(model.decoder)
    matmul.use_onednn(weights)
    block, ref = weights.blocks[0], plain.blocks[0]
    assert isinstance(block.fc1, matmul.PackedLinear)
    assert isinstance(block.dextra.input_layer, matmul.PackedLinearNormAct)
    assert isinstance(block.dextra.output_layer, matmul.PackedLinearNormAct)
    x = torch.randn(37, block.fc1.weight.size(1))
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(block.ffn(x), ref.ffn(x), **close)
    x = torch.randn(37, block.dextra.input_layer.weight.size(1))
    kernels = [None] + ([fused.load()] if fused.usable(x) else [])
    for kernel in kernels:
        got = block.dextra(x, kernel)
        torch.testing.assert_close(got, ref.dextra(x, kernel), **close)


@needs_onednn
def test_the_encoder_on_onednn_gives_the_models():
    """A float32 engine on oneDNN runs the encoder's functional counterpart
    with its products on oneDNN (long batches in slices of MAX_ROWS rows):
    the model's encoder output, to float32's precision."""
    torch.manual_seed(0)
    model = build("delight", src_vocab=30, **TINY_SHAPE, **DROPOUT_OFF).eval()
    src = torch.randint(4, 30, (9, 70))  # 630 rows: two slices
    src[0, :5] = 1  # left padding
    lengths = src.ne(1).sum(1)
    engine = Engine(model, make_dictionary(30), matmul="onednn")
    engine.onednn = True
    got, padding = engine.encode(src, lengths)
    out = model.encoder(src, src_lengths=lengths)
    assert torch.equal(padding, out["encoder_padding_mask"][0])
    torch.testing.assert_close(got, out["encoder_out"][0], rtol=1e-5, atol=1e-5)
