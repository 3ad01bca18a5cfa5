"""The decoder blocks of a step, and the encoder, in C++
(csrc/decoder_blocks.h, csrc/encoder_blocks.cpp).

:class:`~delight_fairseq.inference.step.DecoderStep` runs each step's blocks
as about 30 small operations per block, and :class:`~.functional.Encoder`
its blocks as about 40. :func:`blocks` and :func:`encoder` hand the same
weights (references, no copies) to the compiled extension, which runs the
same ATen operations in the same order, so its floats are those of the
Python loops (tests/test_native_step.py compares them bit for bit).

It applies where the fused GLT kernel does (a CPU tensor in float32 or
float64, the extension built), to every kind of product the engine makes:
torch's (:class:`~.functional.Linear`), oneDNN's (:mod:`.matmul`) and the
int8 engine's (:mod:`.qlayers`). ``DecoderStep.use_native = False`` keeps the
Python loop (benchmarks/profile_engine.py's ``Python blocks`` variants).
"""

from types import SimpleNamespace

from . import functional as fn
from . import matmul
from . import qlayers as ql


class Unsupported(Exception):
    """A part the C++ blocks do not know (a product of another kind)."""


def blocks(weights: fn.DecoderWeights, head_dim: int, kernel, output, output_rows: int):
    """The C++ counterpart of ``weights.blocks`` and of what follows them
    (DecoderStep.finish) for ``kernel`` (the fused extension, or None), or
    None where it does not apply. ``output``: the output layer, a product
    of a kind :func:`_linear` knows; ``output_rows``: the rows it takes at a
    time, or 0 for one product into the step's logits buffer (a float
    Linear)."""
    if kernel is None or not hasattr(kernel, "NativeDecoderBlocks"):
        return None
    try:
        native = [_block(kernel, block) for block in weights.blocks]
        head = kernel.NativeHead(
            None if weights.final_norm is None else _norm(kernel, weights.final_norm),
            None
            if weights.project_out is None
            else _linear(kernel, weights.project_out),
            _linear(kernel, output),
            output_rows,
        )
    except Unsupported:
        return None
    return kernel.NativeDecoderBlocks(native, head_dim, head)


def encoder(encoder: fn.Encoder, kernel):
    """The C++ counterpart of ``encoder`` after its look-up (the embedding's
    DExTra, the positions, the blocks, the final LayerNorm) for ``kernel``,
    or None where it does not apply."""
    if kernel is None or not hasattr(kernel, "NativeEncoderBlocks"):
        return None
    try:
        blocks = [
            kernel.NativeEncoderBlock(
                _dextra(kernel, block.dextra),
                _sublayer(kernel, block.self_attn_norm),
                _sublayer(kernel, block.ffn_norm),
                _linear(kernel, block.qkv),
                _linear(kernel, block.self_out),
                _linear(kernel, block.fc1),
                _linear(kernel, block.fc2),
                float(block.scaling),
                int(block.heads),
            )
            for block in encoder.blocks
        ]
        final = encoder.final_norm
        return kernel.NativeEncoderBlocks(
            _dextra(kernel, encoder.embed.dextra),
            blocks,
            None if final is None else _norm(kernel, final),
        )
    except Unsupported:
        return None


def _linear(kernel, linear, bias_free: bool = False):
    """A product, of a kind the C++ Linear runs (``bias_free``: a
    LinearNormAct's, whose bias comes after the product)."""
    kind = type(linear)
    if kind in (fn.Linear, fn.LinearNormAct):
        return kernel.NativeLinear.torch(linear.weight, _bias(linear, bias_free))
    if kind in (matmul.PackedLinear, matmul.PackedLinearNormAct):
        return kernel.NativeLinear.onednn(
            linear.weight,
            _bias(linear, bias_free),
            linear.layout,
            matmul.ROW_STEP,
            matmul.MAX_ROWS,
        )
    if kind is ql.QLinear:
        return kernel.NativeLinear.int8(linear.packed, linear.reduce_range)
    if kind is ql.DequantLinear:
        return kernel.NativeLinear.dequant(linear.q, linear.scale, linear.bias)
    raise Unsupported(kind.__name__)


def _bias(linear, bias_free: bool):
    return None if bias_free else linear.bias


def _linear_norm_act(kernel, layer):
    if type(layer) is ql.QLinearNormAct:
        product = _linear(kernel, layer.linear)  # built without the bias
    elif type(layer) in (fn.LinearNormAct, matmul.PackedLinearNormAct):
        product = _linear(kernel, layer, bias_free=True)
    else:
        raise Unsupported(type(layer).__name__)
    norm = layer.norm
    return kernel.NativeLinearNormAct(product, layer.bias, norm.weight, norm.bias)


def _glt(kernel, glt):
    if type(glt) is fn.GroupLinear:
        int8 = dict(packed=[], reduce_range=False, min_int8_rows=0, q=None, scale=None)
    elif type(glt) is ql.QGroupLinear:
        int8 = dict(
            packed=list(glt.packed or []),
            reduce_range=glt.reduce_range,
            min_int8_rows=ql.GLT_INT8_ROWS,
            q=glt.q,
            scale=glt.scale,
        )
    else:
        raise Unsupported(type(glt).__name__)
    return kernel.NativeGroupLinear(
        glt.groups,
        glt.weight,
        glt.bias,
        glt.norm_weight,
        glt.norm_bias,
        bool(glt.shuffle),
        **int8,
    )


def _dextra(kernel, dextra: fn.DExTra):
    return kernel.NativeDExTra(
        _linear_norm_act(kernel, dextra.input_layer),
        [_glt(kernel, glt) for glt in dextra.glts],
        _linear_norm_act(kernel, dextra.output_layer),
        dextra.proj,
    )


def _sublayer(kernel, sublayer: fn.Sublayer):
    norm = sublayer.norm
    if len(norm.shape) != 1 or norm.weight is None or norm.bias is None:
        raise Unsupported(f"a LayerNorm over {norm.shape} without its affine pair")
    return kernel.NativeSublayer(
        norm.shape[0], norm.weight, norm.bias, norm.eps, sublayer.before
    )


def _norm(kernel, norm: fn.Norm):
    """A LayerNorm alone, as a Sublayer's norm."""
    return _sublayer(kernel, SimpleNamespace(norm=norm, before=True))


def _block(kernel, block: fn.DecoderBlock):
    return kernel.NativeBlock(
        _dextra(kernel, block.dextra),
        _sublayer(kernel, block.self_attn_norm),
        _sublayer(kernel, block.encoder_attn_norm),
        _sublayer(kernel, block.ffn_norm),
        _linear(kernel, block.qkv),
        _linear(kernel, block.self_out),
        _linear(kernel, block.q),
        _linear(kernel, block.encoder_out),
        _linear(kernel, block.fc1),
        _linear(kernel, block.fc2),
        float(block.self_scaling),
        float(block.encoder_scaling),
        int(block.heads),
    )
