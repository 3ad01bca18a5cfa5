"""The model's parts as plain functions over the model's own weights.

Each class here reads one module of a trained model (Linear, LinearNormAct,
GroupLinear, DExTra, a block's norms and projections, the embedding, the
sinusoidal positions, the encoder) into a few tensor references and runs
that module's eval-mode arithmetic: the same operations in the same order,
on the fused GLT kernel where the module would use it, without the per-call
costs of ``nn.Module`` (attribute look-ups, hooks, dropout no-ops, the
autograd Function wrapper around the kernel). Decoding one token per
hypothesis is hundreds of small operations per step, so those costs matter.

A plan holds references, not copies: build it again after the model moves
to another device or dtype (the engine builds one per batch). The
projections are callables (:class:`Linear`), so that
:mod:`.quantize` can put int8 ones in their place, and :mod:`.matmul`
oneDNN ones.
"""

from functools import partial
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.modules.sinusoidal_positional_embedding import (
    SinusoidalPositionalEmbedding,
)
from torch import Tensor

from .. import fused
from ..attention import merge_heads, split_heads
from ..dextra import mix_grouped
from ..group_linear import GroupLinear as _GroupLinearModule


def glt_kernel(like: Tensor):
    """The compiled GLT-tail kernel if the model's modules would use it on
    tensors like ``like`` (fused.usable), else None (eager operations)."""
    return fused.load() if fused.usable(like) else None


def attend(
    q: Tensor, keys: Tensor, values: Tensor, heads: int, padding: Optional[Tensor]
) -> Tensor:
    """Attention as attention.SingleHeadAttention computes it in eval mode:
    q: B x L x C (already scaled), keys and values: B x S x C, padding:
    B x 1 x S (True at padding) or None; split into ``heads`` heads
    (--delight-attention-heads, off the paper) when more than one. Returns
    B x L x C, the heads side by side."""
    q, keys, values = (split_heads(t, heads) for t in (q, keys, values))
    if padding is not None and heads > 1:
        padding = padding.repeat_interleave(heads, dim=0)
    return merge_heads(attend_heads(q, keys, values, padding), heads)


def attend_heads(
    q: Tensor, keys: Tensor, values: Tensor, padding: Optional[Tensor]
) -> Tensor:
    """:func:`attend` on heads already split: q (B x heads) x L x C/heads,
    keys and values (B x heads) x S x C/heads, padding (B x heads) x 1 x S
    or None; returns (B x heads) x L x C/heads."""
    scores = torch.bmm(q, keys.transpose(1, 2))
    if padding is not None:
        scores = scores.masked_fill(padding, float("-inf"))
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
    return torch.bmm(probs, values)


def light_ffn(fc1, fc2, x: Tensor) -> Tensor:
    """The light FFN, Linear -> swish -> Linear, with the swish in place on
    the first product's fresh output: the same floats, one allocation fewer
    (the encoder's FFN activations are its largest tensors; benchmarks/
    RESULTS.md has what that is worth)."""
    return fc2(F.silu(fc1(x), inplace=True))


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


class Linear:
    """An nn.Linear's weights; ... x in -> ... x out."""

    __slots__ = ("weight", "bias")

    def __init__(self, module):
        self.weight = module.weight
        self.bias = module.bias

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


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
        "groups",
        "out_features",
        "weight",
        "bias",
        "norm_weight",
        "norm_bias",
        "shuffle",
    )

    def __init__(self, module):
        self.groups = module.groups
        self.out_features = module.out_features
        self.weight = module.weight
        self.bias = module.bias
        self.norm_weight = module.norm_weight
        self.norm_bias = module.norm_bias
        self.shuffle = module.shuffle

    def tail(self, y: Tensor, kernel) -> Tensor:
        """bias + shuffle + group LayerNorm + swish of the products y (g x N
        x out/g): the fused kernel, or the module's eager ``_tail`` (which
        reads only the attributes this class shares with the module)."""
        if kernel is not None:
            return kernel.forward(
                y, self.bias, self.norm_weight, self.norm_bias, self.shuffle
            )[0]
        return _GroupLinearModule._tail(self, y + self.bias.unsqueeze(1))

    def __call__(self, x: Tensor, kernel) -> Tensor:
        if kernel is not None:
            return self.tail(torch.bmm(x, self.weight), kernel)
        y = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)
        return _GroupLinearModule._tail(self, y)


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

    heads = 1  # what an int8 engine saved before heads were read has

    def __init__(self, layer):
        self.dextra = DExTra(layer.dextra)
        sa, ea, ffn = layer.self_attn, layer.encoder_attn, layer.ffn
        self.self_attn_norm = Sublayer(layer.self_attn_norm)
        self.qkv = Linear(sa.qkv_proj)
        self.self_out = Linear(sa.out_proj)
        self.self_scaling = sa.scaling
        self.encoder_attn_norm = Sublayer(layer.encoder_attn_norm)
        self.q = Linear(ea.q_proj)
        self.kv = Linear(ea.kv_proj)
        self.encoder_out = Linear(ea.out_proj)
        self.encoder_scaling = ea.scaling
        self.heads = sa.heads  # both attentions' (--delight-attention-heads)
        self.ffn_norm = Sublayer(layer.ffn_norm)
        self.fc1 = Linear(ffn.fc1)
        self.fc2 = Linear(ffn.fc2)

    def ffn(self, x: Tensor) -> Tensor:
        return light_ffn(self.fc1, self.fc2, x)


class DecoderWeights:
    """Every block of a DeLighT decoder, and what follows the blocks."""

    def __init__(self, decoder):
        self.blocks = [DecoderBlock(layer) for layer in decoder.layers]
        self.final_norm: Optional[Norm] = (
            Norm(decoder.layer_norm) if decoder.layer_norm is not None else None
        )
        proj = decoder.project_out_dim
        self.project_out = None if proj is None else Linear(proj)
        # the output layer (bias-free): the look-up table (tied) or its own matrix
        self.output = (decoder.output_weight(), None)


# -- what the quantized engine runs instead of the modules -----------------------


class Positions:
    """fairseq's sinusoidal positions (SinusoidalPositionalEmbedding, the only
    kind DeLighT builds): B x T tokens -> B x T x d_m, padding at zero."""

    __slots__ = ("dim", "padding_idx", "weights")

    def __init__(self, module):
        if not isinstance(module, SinusoidalPositionalEmbedding):
            raise TypeError(
                f"expected sinusoidal positions, got {type(module).__name__}"
            )
        self.dim = module.embedding_dim
        self.padding_idx = module.padding_idx
        self.weights = module.weights

    def __call__(self, tokens: Tensor) -> Tensor:
        bsz, length = tokens.shape
        if self.padding_idx + 1 + length > self.weights.size(0):
            self.weights = SinusoidalPositionalEmbedding.get_embedding(
                self.padding_idx + 1 + length, self.dim, self.padding_idx
            ).to(self.weights)
        positions = utils.make_positions(tokens, self.padding_idx)
        return self.weights.index_select(0, positions.view(-1)).view(bsz, length, -1)


class Embedding:
    """A DeLighTEmbedding: look-up, scale, DExTra; B x T tokens -> B x T x d_m."""

    __slots__ = ("table", "scale", "dextra")

    def __init__(self, module):
        self.table = module.table.weight
        self.scale = module.embed_scale
        self.dextra = DExTra(module.dextra)

    def lookup(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.table)

    def scaled(self, tokens: Tensor) -> Tensor:
        """The look-up, scaled: B x T tokens -> B x T x d."""
        return self.lookup(tokens) * self.scale

    def __call__(self, tokens: Tensor) -> Tensor:
        x = self.scaled(tokens)
        x = self.dextra(x.reshape(-1, x.size(-1)), glt_kernel(x))
        return x.view(*tokens.shape, -1)


class EncoderBlock:
    """One encoder block (delight_layer.DeLighTEncoderLayer)."""

    heads = 1  # as DecoderBlock.heads

    def __init__(self, layer):
        self.dextra = DExTra(layer.dextra)
        self.self_attn_norm = Sublayer(layer.self_attn_norm)
        self.qkv = Linear(layer.self_attn.qkv_proj)
        self.self_out = Linear(layer.self_attn.out_proj)
        self.scaling = layer.self_attn.scaling
        self.heads = layer.self_attn.heads
        self.ffn_norm = Sublayer(layer.ffn_norm)
        self.fc1 = Linear(layer.ffn.fc1)
        self.fc2 = Linear(layer.ffn.fc2)

    def __call__(self, x: Tensor, padding: Optional[Tensor], kernel) -> Tensor:
        """x: S x B x d_m; padding: B x S, True at padding (None: none)."""
        length, bsz, d_m = x.shape
        residual = x
        h = self.dextra(self.self_attn_norm.pre(x).reshape(-1, d_m), kernel)
        q, k, v = self.qkv(h.view(length, bsz, -1)).chunk(3, dim=-1)
        q = q * self.scaling
        if kernel is not None:  # csrc/attend_one.cpp, a sentence's tokens a group
            by_head = partial(torch.Tensor.unflatten, dim=2, sizes=(self.heads, -1))
            q = by_head(q).transpose(0, 1)  # B x S x heads x D
            k, v = (by_head(t).permute(1, 2, 0, 3) for t in (k, v))
            h = kernel.attend_one(q, k, v, padding, None)
        else:
            mask = None if padding is None else padding.unsqueeze(1)
            qs, ks, vs = (t.transpose(0, 1) for t in (q, k, v))
            h = attend(qs, ks, vs, self.heads, mask)
        x = self.self_attn_norm.post(self.self_out(h.transpose(0, 1)), residual)

        norm = self.ffn_norm
        h = norm.pre(x)
        return norm.post(light_ffn(self.fc1, self.fc2, h), x)


class Encoder:
    """The DeLighT encoder (encoder.DeLighTEncoder.forward in eval mode)."""

    #: run in C++ where the fused extension applies (False: the Python loop)
    use_native = True

    def __init__(self, encoder):
        self.embed = Embedding(encoder.embed_tokens)
        self.positions = Positions(encoder.embed_positions)
        self.blocks = [EncoderBlock(layer) for layer in encoder.layers]
        self.final_norm: Optional[Norm] = (
            Norm(encoder.layer_norm) if encoder.layer_norm is not None else None
        )
        self.padding_idx = encoder.padding_idx

    def __call__(self, src_tokens: Tensor, src_lengths=None) -> Tuple[Tensor, Tensor]:
        """src_tokens: B x S -> (S x B x d_m, the B x S padding mask)."""
        padding = src_tokens.eq(self.padding_idx)
        mask = padding if bool(padding.any()) else None
        scaled = self.embed.scaled(src_tokens)
        positions = self.positions(src_tokens)
        kernel = glt_kernel(scaled)
        native = self.native(kernel)
        if native is not None:
            return native.forward(scaled, positions, mask), padding
        x = self.embed.dextra(scaled.reshape(-1, scaled.size(-1)), kernel)
        x = (x.view(*src_tokens.shape, -1) + positions).transpose(0, 1)
        for block in self.blocks:
            x = block(x, mask, kernel)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, padding

    def native(self, kernel):
        """This encoder in C++ (csrc/encoder_blocks.cpp, the same operations
        without the interpreter) for the fused ``kernel`` (glt_kernel's), or
        None where it does not apply (:func:`.native.encoder`; ``use_native``
        False: the Python loop). Built at each call, as the decoder's blocks
        are for each batch: the parts as they are now."""
        if not self.use_native:
            return None
        from . import native  # it builds on this module's classes

        return native.encoder(self, kernel)


# -- trees of parts ------------------------------------------------------------------


def attributes(obj):
    """An object's attribute names: its classes' slots, then its dict."""
    names = []
    for cls in type(obj).__mro__:
        for name in cls.__dict__.get("__slots__", ()):
            if name not in names:
                names.append(name)
    names += [name for name in getattr(obj, "__dict__", {}) if name not in names]
    return names
