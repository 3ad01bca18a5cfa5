"""The decoder's parts as plain functions over the model's own weights.

Each class here reads one module of a trained model (LinearNormAct,
GroupLinear, DExTra, a decoder block's norms and projections) into a few
tensor references and runs that module's eval-mode arithmetic: the same
operations in the same order, on the fused GLT kernel where the module would
use it, without the per-call costs of ``nn.Module`` (attribute look-ups,
hooks, dropout no-ops, the autograd Function wrapper around the kernel).
Decoding one token per hypothesis is hundreds of small operations per step,
so those costs matter.

A plan holds references, not copies: build it again after the model moves
to another device or dtype (the engine builds one per batch).
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import fused
from ..dextra import mix_grouped


def glt_kernel(like: Tensor):
    """The compiled GLT-tail kernel if the model's modules would use it on
    tensors like ``like`` (fused.usable), else None (eager operations)."""
    return fused.load() if fused.usable(like) else None


class Norm:
    """A LayerNorm's weights."""

    __slots__ = ("shape", "weight", "bias", "eps")

    def __init__(self, norm):
        self.shape = tuple(norm.normalized_shape)
        self.weight = norm.weight
        self.bias = norm.bias
        self.eps = norm.eps

    def __call__(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


class Sublayer:
    """A block part's residual and LayerNorm (delight_layer._Sublayer):
    normalize the input (pre-norm) or the residual sum (post-norm)."""

    __slots__ = ("norm", "before")

    def __init__(self, sublayer):
        self.norm = Norm(sublayer.layer_norm)
        self.before = bool(sublayer.normalize_before)

    def pre(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.before else x

    def post(self, x: Tensor, residual: Tensor) -> Tensor:
        x = residual + x
        return x if self.before else self.norm(x)


class LinearNormAct:
    """Linear -> LayerNorm -> swish (group_linear.LinearNormAct); N x in."""

    __slots__ = ("weight", "bias", "norm")

    def __init__(self, module):
        self.weight = module.linear.weight
        self.bias = module.linear.bias
        self.norm = Norm(module.layer_norm)

    def __call__(self, x: Tensor, kernel) -> Tensor:
        if kernel is not None:
            # the module's fused path: the product, then bias + LayerNorm +
            # swish as a one-group GLT tail without shuffle
            y = torch.mm(x, self.weight.t()).unsqueeze(0)
            n = self.norm
            return kernel.forward(y, self.bias.unsqueeze(0), n.weight, n.bias, False)[0]
        return F.silu(self.norm(F.linear(x, self.weight, self.bias)))


class GroupLinear:
    """A GLT (group_linear.GroupLinear.forward_grouped): g x N x in/g, group
    major, -> N x out."""

    __slots__ = (
        "module",
        "groups",
        "weight",
        "bias",
        "norm_weight",
        "norm_bias",
        "shuffle",
    )

    def __init__(self, module):
        self.module = module
        self.groups = module.groups
        self.weight = module.weight
        self.bias = module.bias
        self.norm_weight = module.norm_weight
        self.norm_bias = module.norm_bias
        self.shuffle = module.shuffle

    def __call__(self, x: Tensor, kernel) -> Tensor:
        if kernel is not None:
            y = torch.bmm(x, self.weight)
            return kernel.forward(
                y, self.bias, self.norm_weight, self.norm_bias, self.shuffle
            )[0]
        return self.module._tail(torch.baddbmm(self.bias.unsqueeze(1), x, self.weight))


class DExTra:
    """A DExTra unit (dextra.DExTra.forward) on N x D_in."""

    __slots__ = ("input_layer", "glts", "output_layer", "proj")

    def __init__(self, module):
        self.input_layer = LinearNormAct(module.input_layer)
        self.glts = [GroupLinear(layer) for layer in module.glt_layers]
        self.output_layer = LinearNormAct(module.output_layer)
        self.proj = module.proj_features

    def __call__(self, x: Tensor, kernel) -> Tensor:
        x = self.input_layer(x, kernel)
        y = x
        for i, glt in enumerate(self.glts):
            g = glt.groups
            if i == 0:
                grouped = x.reshape(-1, g, self.proj // g).transpose(0, 1).contiguous()
            else:
                grouped = mix_grouped(x, y, g)
            y = glt(grouped, kernel)
        return self.output_layer(torch.cat([x, y], dim=-1), kernel)


class DecoderBlock:
    """One decoder block's weights (delight_layer.DeLighTDecoderLayer)."""

    def __init__(self, layer):
        self.dextra = DExTra(layer.dextra)
        sa, ea, ffn = layer.self_attn, layer.encoder_attn, layer.ffn
        self.self_attn_norm = Sublayer(layer.self_attn_norm)
        self.qkv = (sa.qkv_proj.weight, sa.qkv_proj.bias)
        self.self_out = (sa.out_proj.weight, sa.out_proj.bias)
        self.self_scaling = sa.scaling
        self.encoder_attn_norm = Sublayer(layer.encoder_attn_norm)
        self.q = (ea.q_proj.weight, ea.q_proj.bias)
        self.kv = (ea.kv_proj.weight, ea.kv_proj.bias)
        self.encoder_out = (ea.out_proj.weight, ea.out_proj.bias)
        self.encoder_scaling = ea.scaling
        self.ffn_norm = Sublayer(layer.ffn_norm)
        self.fc1 = (ffn.fc1.weight, ffn.fc1.bias)
        self.fc2 = (ffn.fc2.weight, ffn.fc2.bias)

    def ffn(self, x: Tensor) -> Tensor:
        """The light FFN: Linear -> swish -> Linear."""
        return F.linear(F.silu(F.linear(x, *self.fc1)), *self.fc2)


class DecoderWeights:
    """Every block of a DeLighT decoder, and what follows the blocks."""

    def __init__(self, decoder):
        self.blocks = [DecoderBlock(layer) for layer in decoder.layers]
        self.final_norm: Optional[Norm] = (
            Norm(decoder.layer_norm) if decoder.layer_norm is not None else None
        )
        proj = decoder.project_out_dim
        self.project_out = None if proj is None else (proj.weight, proj.bias)
        out = decoder.output_projection
        # the output layer: the look-up table (tied) or its own matrix
        if out is None:
            self.output = (decoder.embed_tokens.table.weight, None)
        else:
            self.output = (out.weight, out.bias)
