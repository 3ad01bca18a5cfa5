"""The parts of a DeLighT model in NumPy, over the arrays ``delight-export``
wrote: LayerNorm, Linear, the DExTra's layers (Linear-LayerNorm-swish, the
GLTs with their shuffle and group LayerNorm, the mixer), a block's
sublayers, attention and the light FFN. The arithmetic is that of
``delight_fairseq/inference/functional.py`` (docs/architecture.md sections
5-7); the encoder and the decoder built from them are
:mod:`delight_lite.model`.
"""

from typing import Optional

import numpy as np


def swish(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), in place on ``x`` (a fresh array)."""
    with np.errstate(over="ignore"):  # exp(-x) -> inf: sigmoid 0, exact
        s = np.exp(-x)
    s += 1.0
    return np.divide(x, s, out=x)


class Norm:
    """LayerNorm over the last axis."""

    __slots__ = ("w", "b", "eps")

    def __init__(self, spec, arrays):
        self.w, self.b, self.eps = arrays[spec["w"]], arrays[spec["b"]], spec["eps"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        d = x - x.sum(axis=-1, keepdims=True) / n
        # the variance without a squared copy of d
        var = np.einsum("...i,...i->...", d, d)[..., None]
        var /= n
        var += self.eps
        d /= np.sqrt(var, out=var)
        d *= self.w
        d += self.b
        return d


class Linear:
    """x @ w (+ b), w stored input-major."""

    __slots__ = ("w", "b")

    def __init__(self, spec, arrays):
        self.w = arrays[spec["w"]]
        self.b = None if spec["b"] is None else arrays[spec["b"]]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.w
        if self.b is not None:
            y += self.b
        return y


class LinearNormAct:
    __slots__ = ("linear", "norm")

    def __init__(self, spec, arrays):
        self.linear = Linear(spec, arrays)
        self.norm = Norm(spec["norm"], arrays)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return swish(self.norm(self.linear(x)))


class GroupLinear:
    """g x N x in/g -> N x out: per-group products, bias, shuffle, group
    LayerNorm (eps 1e-5), swish."""

    __slots__ = ("groups", "out", "shuffle", "w", "b", "norm")

    def __init__(self, spec, arrays):
        self.groups, self.out, self.shuffle = (
            spec["groups"],
            spec["out"],
            spec["shuffle"],
        )
        self.w = arrays[spec["w"]]
        self.b = arrays[spec["b"]][:, None, :]
        self.norm = Norm(dict(w=spec["norm_w"], b=spec["norm_b"], eps=1e-5), arrays)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        g = self.groups
        y = np.matmul(x, self.w)
        y += self.b
        if self.shuffle:  # g x N x o -> N x o x g, read as N x g x o
            y = y.transpose(1, 2, 0).reshape(-1, g, self.out // g)
        else:
            y = y.transpose(1, 0, 2)
        return swish(self.norm(y)).reshape(-1, self.out)


class DExTra:
    __slots__ = ("proj", "input", "glts", "output")

    def __init__(self, spec, arrays):
        self.proj = spec["proj"]
        self.input = LinearNormAct(spec["input"], arrays)
        self.glts = [GroupLinear(s, arrays) for s in spec["glts"]]
        self.output = LinearNormAct(spec["output"], arrays)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """N x D_in -> N x D_o."""
        x = self.input(x)
        n = x.shape[0]
        y = x
        for i, glt in enumerate(self.glts):
            g = glt.groups
            xs = x.reshape(n, g, -1).transpose(1, 0, 2)
            if i == 0:
                grouped = np.ascontiguousarray(xs)
            else:  # the mixer: X's and Y's groups side by side
                grouped = np.concatenate(
                    [xs, y.reshape(n, g, -1).transpose(1, 0, 2)], -1
                )
            y = glt(grouped)
        return self.output(np.concatenate([x, y], axis=-1))


class Sublayer:
    __slots__ = ("before", "norm")

    def __init__(self, spec, arrays):
        self.before = spec["before"]
        self.norm = Norm(spec["norm"], arrays)

    def pre(self, x: np.ndarray) -> np.ndarray:
        return self.norm(x) if self.before else x

    def post(self, x: np.ndarray, residual: np.ndarray) -> np.ndarray:
        x += residual
        return x if self.before else self.norm(x)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Over the last axis, in place; -inf gives 0."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Over the last axis, in place."""
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return x


def heads_first(x: np.ndarray, heads: int) -> np.ndarray:
    """B x L x C -> B x heads x L x C/heads."""
    b, length, c = x.shape
    return x.reshape(b, length, heads, c // heads).transpose(0, 2, 1, 3)


def heads_last(x: np.ndarray) -> np.ndarray:
    """B x heads x L x C/heads -> B x L x C."""
    b, heads, length, c = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, length, heads * c)


def attend(q, keys, values, mask: Optional[np.ndarray]) -> np.ndarray:
    """... x L x C by ... x S x C keys and values; mask broadcast to ... x L x S
    (True at padding). The weights' softmax is float32, as the model's (a
    float64 model's is computed in float64 and rounded: see :func:`as_float32`)."""
    scores = np.matmul(q, np.swapaxes(keys, -1, -2))
    if mask is not None:
        scores[np.broadcast_to(mask, scores.shape)] = -np.inf
    probs = as_float32(softmax(scores))
    return np.matmul(probs.astype(values.dtype, copy=False), values)


def as_float32(x: np.ndarray) -> np.ndarray:
    """Where the model computes in float32 (the attention weights, the
    log-probabilities), a float64 model's values (the tests' models) are
    computed in float64 and rounded here to the nearest float32."""
    return x.astype(np.float32, copy=False)


#: rows of the encoder's DExTra and FFN at a time: their widest activations,
#: a few times d_m wide, then take a few MB instead of tens
ROWS = 512


#: rows of logits at a time in the decoder's output layer and log-softmax
OUTPUT_ROWS = 64


def by_rows(part, x: np.ndarray) -> np.ndarray:
    """``part`` (row-wise) on N x C, ROWS rows at a time."""
    if x.shape[0] <= ROWS:
        return part(x)
    return np.concatenate([part(x[i : i + ROWS]) for i in range(0, x.shape[0], ROWS)])


class Block:
    """An encoder or decoder block's weights."""

    def __init__(self, spec, arrays, decoder: bool):
        self.heads = spec["heads"]
        self.scaling = float(spec["scaling"])  # in the weights' dtype, as torch
        self.dextra = DExTra(spec["dextra"], arrays)
        self.self_attn_norm = Sublayer(spec["self_attn_norm"], arrays)
        self.qkv = Linear(spec["qkv"], arrays)
        self.self_out = Linear(spec["self_out"], arrays)
        self.ffn_norm = Sublayer(spec["ffn_norm"], arrays)
        self.fc1 = Linear(spec["fc1"], arrays)
        self.fc2 = Linear(spec["fc2"], arrays)
        if decoder:
            self.encoder_attn_norm = Sublayer(spec["encoder_attn_norm"], arrays)
            self.q = Linear(spec["q"], arrays)
            self.kv = Linear(spec["kv"], arrays)
            self.encoder_out = Linear(spec["encoder_out"], arrays)
            self.encoder_scaling = float(spec["encoder_scaling"])

    def self_qkv(self, x: np.ndarray) -> np.ndarray:
        """The self-attention's queries, keys and values of the block's input:
        (pre-norm) -> DExTra -> the projection."""
        return self.qkv(self.dextra(self.self_attn_norm.pre(x)))

    def ffn(self, x: np.ndarray) -> np.ndarray:
        return self.fc2(swish(self.fc1(x)))

    def ffn_part(self, x: np.ndarray) -> np.ndarray:
        norm = self.ffn_norm
        return norm.post(self.ffn(norm.pre(x)), x)
