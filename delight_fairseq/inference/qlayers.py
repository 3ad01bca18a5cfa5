"""int8 counterparts of the functional parts (functional.py), and their state.

Weights are int8, symmetric (zero point 0, values in [-127, 127]), with one
float32 scale per output channel. An int8 matrix is used in one of two ways:

* ``"int8"``: fbgemm's dynamic kernel (``torch.ops.quantized.linear_dynamic``
  on prepacked weights): the activations are quantized to uint8 at each
  call over the call's own min and max (one scale for the tensor), the
  products are summed in int32 and rescaled to float32, the bias added;
* ``"dequant"``: kept as int8, dequantized at each call for a float32
  product (weight-only quantization; the activations stay float32).

A GLT may also be ``"auto"``: both forms, the int8 one for calls of at least
GLT_INT8_ROWS rows (where g small int8 products beat one float32 batched
product) and the dequantized one below.

The state functions turn a tree of these objects into plain values, lists,
dicts and tensors (what ``torch.load(weights_only=True)`` reads) and back;
packed weights are stored as their int8 matrices and packed again.
"""

import warnings
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.modules.sinusoidal_positional_embedding import (
    SinusoidalPositionalEmbedding,
)
from torch import Tensor

from . import functional as fn
from .functional import attributes

MODES = ("int8", "dequant")
GLT_MODES = ("int8", "dequant", "auto")
#: an "auto" GLT runs int8 from this many rows on (measured: quantize.py)
GLT_INT8_ROWS = 256

_Q = torch.ops.quantized


def default_reduce_range() -> bool:
    """fbgemm without VNNI adds pairs of uint8 x int8 products in int16,
    which can saturate unless the activations keep to 7 bits
    (``reduce_range``); with AVX-512 VNNI the sums are int32 and all 8 bits
    are safe."""
    vnni = getattr(torch.cpu, "_is_vnni_supported", None)
    avx512 = getattr(torch.cpu, "_is_avx512_supported", None)
    return not (vnni is not None and avx512 is not None and vnni() and avx512())


def quantize_tensor(weight: Tensor, dim: int) -> Tuple[Tensor, Tensor]:
    """int8 with one scale per slice across ``dim`` (the scales keep ``dim``
    with size 1): q = round(w / s), s = max |w| / 127 (1 for a zero slice)."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=dim, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(weight / scale).clamp_(-127, 127).to(torch.int8)
    return q, scale


def _float(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.detach().float()


def prepack(q: Tensor, scale: Tensor, bias: Optional[Tensor] = None):
    """fbgemm's packed weights of an out x in int8 matrix (scales: out x 1)."""
    rows = q.size(0)
    with warnings.catch_warnings():
        # quantized tensors are flagged as deprecated; the kernels take them
        warnings.simplefilter("ignore")
        qweight = torch._make_per_channel_quantized_tensor(
            q, scale.reshape(rows).double(), torch.zeros(rows, dtype=torch.long), 0
        )
        return _Q.linear_prepack(qweight, bias)


def unpack(packed) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """(int8 out x in, scales out x 1, bias) back from packed weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qweight, bias = _Q.linear_unpack(packed)
        scale = qweight.q_per_channel_scales().float().unsqueeze(1)
        return qweight.int_repr(), scale, bias


class QLinear:
    """A Linear on the dynamic int8 kernel; ... x in -> ... x out. The int8
    matrix is kept outside the packed weights only when it is shared (a
    look-up table tied to the output layer)."""

    __slots__ = ("packed", "reduce_range", "q", "scale", "bias")

    def __init__(self, q, scale, bias, reduce_range: bool, shared: bool = False):
        bias = _float(bias)
        self.packed = prepack(q, scale, bias)
        self.reduce_range = reduce_range
        self.q, self.scale, self.bias = (q, scale, bias) if shared else (None,) * 3

    def __call__(self, x: Tensor) -> Tensor:
        return _Q.linear_dynamic(x, self.packed, self.reduce_range)

    def get_state(self) -> dict:
        if self.q is not None:
            return dict(q=self.q, scale=self.scale, bias=self.bias, shared=True)
        q, scale, bias = unpack(self.packed)
        return dict(q=q, scale=scale, bias=bias, shared=False)

    @classmethod
    def from_state(cls, state: dict, reduce_range: bool) -> "QLinear":
        return cls(
            state["q"], state["scale"], state["bias"], reduce_range, state["shared"]
        )


class DequantLinear:
    """A Linear with int8 weights dequantized at each call."""

    __slots__ = ("q", "scale", "bias")

    def __init__(self, q, scale, bias):
        self.q, self.scale, self.bias = q, scale, _float(bias)

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.q * self.scale, self.bias)


def quantize_linear(weight: Tensor, bias: Optional[Tensor], mode: str, rr: bool):
    q, scale = quantize_tensor(weight, 1)
    if mode == "int8":
        return QLinear(q, scale, bias, rr)
    return DequantLinear(q, scale, bias)


class QLinearNormAct(fn.LinearNormAct):
    """LinearNormAct over an int8 product (``linear``, without the bias)."""

    __slots__ = ("linear",)

    def __call__(self, x: Tensor, kernel) -> Tensor:
        y = self.linear(x)
        n = self.norm
        if kernel is not None:
            return kernel.forward(
                y.unsqueeze(0), self.bias.unsqueeze(0), n.weight, n.bias, False
            )[0]
        return F.silu(n(y + self.bias))

    @classmethod
    def of(cls, layer: fn.LinearNormAct, mode: str, rr: bool) -> "QLinearNormAct":
        new = cls.__new__(cls)
        new.linear = quantize_linear(layer.weight, None, mode, rr)
        new.weight, new.bias, new.norm = None, _float(layer.bias), layer.norm
        return new


class QGroupLinear(fn.GroupLinear):
    """A GLT with int8 weights (g x in/g x out/g, one scale per group and
    output column): g dynamic int8 products (``packed``), one float32
    batched product over the dequantized weights (``q``, ``scale``), or
    either by the number of rows (``"auto"``)."""

    __slots__ = ("mode", "q", "scale", "packed", "reduce_range")

    def __call__(self, x: Tensor, kernel) -> Tensor:
        packed = self.packed
        if packed is not None and (self.q is None or x.size(1) >= GLT_INT8_ROWS):
            rr = self.reduce_range
            y = torch.stack(
                [_Q.linear_dynamic(x[i], p, rr) for i, p in enumerate(packed)]
            )
        else:
            y = torch.bmm(x, self.q * self.scale)
        return self.tail(y, kernel)

    def _set(self, q: Tensor, scale: Tensor, mode: str, rr: bool) -> None:
        self.mode, self.reduce_range, self.weight = mode, rr, None
        self.q, self.scale, self.packed = q, scale, None
        if mode != "dequant":
            # group i: x_i @ W_i, W_i in/g x out/g, is a Linear with W_i^T
            self.packed = [prepack(w.t().contiguous(), s.t()) for w, s in zip(q, scale)]
        if mode == "int8":
            self.q = self.scale = None

    @classmethod
    def of(cls, layer: fn.GroupLinear, mode: str, rr: bool) -> "QGroupLinear":
        new = cls.__new__(cls)
        for name in fn.GroupLinear.__slots__:
            value = getattr(layer, name)
            setattr(new, name, _float(value) if isinstance(value, Tensor) else value)
        new._set(*quantize_tensor(layer.weight, 1), mode, rr)
        return new

    def get_state(self) -> dict:
        state = {n: getattr(self, n) for n in fn.GroupLinear.__slots__ if n != "weight"}
        q, scale = self.q, self.scale
        if q is None:
            parts = [unpack(p) for p in self.packed]
            q = torch.stack([w.t() for w, _, _ in parts])
            scale = torch.stack([s.t() for _, s, _ in parts])
        return dict(state, mode=self.mode, q=q, scale=scale)

    @classmethod
    def from_state(cls, state: dict, reduce_range: bool) -> "QGroupLinear":
        new = cls.__new__(cls)
        state = dict(state)
        q, scale, mode = state.pop("q"), state.pop("scale"), state.pop("mode")
        for name, value in state.items():
            setattr(new, name, value)
        new._set(q, scale, mode, reduce_range)
        return new


class QEmbedding(fn.Embedding):
    """A DeLighTEmbedding whose table is int8 with one scale per row."""

    __slots__ = ("q", "row_scale")

    def lookup(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.q) * F.embedding(tokens, self.row_scale)


# -- quantizing a tree of functional parts in place -----------------------------------


def quantize_dextra(dextra: fn.DExTra, mode: str, glt_mode: str, rr: bool) -> None:
    dextra.input_layer = QLinearNormAct.of(dextra.input_layer, mode, rr)
    dextra.glts = [QGroupLinear.of(glt, glt_mode, rr) for glt in dextra.glts]
    dextra.output_layer = QLinearNormAct.of(dextra.output_layer, mode, rr)


def quantize_block(block, mode: str, glt_mode: str, rr: bool) -> None:
    """An EncoderBlock or a DecoderBlock: its DExTra and its Linears."""
    quantize_dextra(block.dextra, mode, glt_mode, rr)
    for name, value in list(vars(block).items()):
        if isinstance(value, fn.Linear):
            setattr(block, name, quantize_linear(value.weight, value.bias, mode, rr))


def quantize_embedding(
    embed: fn.Embedding, mode: str, glt_mode: str, rr: bool, tables: Dict
):
    """The embedding with an int8 table and its DExTra in ``mode`` (its GLTs
    in ``glt_mode``); ``tables`` maps a table already quantized (by id) to
    its int8 and row scales, so that a shared table is quantized once."""
    new = QEmbedding.__new__(QEmbedding)
    key = id(embed.table)
    if key not in tables:
        tables[key] = quantize_tensor(embed.table, 1)
    new.q, new.row_scale = tables[key]
    new.table, new.scale, new.dextra = None, embed.scale, embed.dextra
    quantize_dextra(new.dextra, mode, glt_mode, rr)
    return new


def to_float32(obj) -> None:
    """Every float tensor left in the tree (norms, biases, positions):
    float32, detached from the model."""
    for name in attributes(obj):
        value = getattr(obj, name, None)
        if isinstance(value, Tensor) and value.is_floating_point():
            setattr(obj, name, _float(value))
        elif isinstance(value, list):
            for item in value:
                to_float32(item)
        elif type(value).__name__ in CLASSES:
            to_float32(value)


# -- state ----------------------------------------------------------------------------

CLASSES = {
    cls.__name__: cls
    for cls in (
        fn.Norm,
        fn.Sublayer,
        fn.Linear,
        fn.LinearNormAct,
        fn.GroupLinear,
        fn.DExTra,
        fn.DecoderBlock,
        fn.DecoderWeights,
        fn.Positions,
        fn.Embedding,
        fn.EncoderBlock,
        fn.Encoder,
        QLinear,
        DequantLinear,
        QLinearNormAct,
        QGroupLinear,
        QEmbedding,
    )
}


def to_state(value):
    """A tree of parts as plain values, tensors, lists and dicts."""
    if value is None or isinstance(value, (bool, int, float, str, Tensor)):
        return value
    if isinstance(value, (list, tuple)):
        kind = "__list__" if isinstance(value, list) else "__tuple__"
        return {kind: [to_state(item) for item in value]}
    name = type(value).__name__
    if CLASSES.get(name) is not type(value):
        raise TypeError(f"a quantized engine holds a {name}; it cannot be saved")
    if isinstance(value, fn.Positions):  # the table is rebuilt
        attrs = dict(dim=value.dim, padding_idx=value.padding_idx)
        attrs["size"] = value.weights.size(0)
    elif hasattr(value, "get_state"):
        attrs = value.get_state()
    else:
        attrs = {n: getattr(value, n) for n in attributes(value) if hasattr(value, n)}
    return {"__class__": name, "attrs": {k: to_state(v) for k, v in attrs.items()}}


def from_state(state, reduce_range: bool):
    """The tree :func:`to_state` gave, with weights packed again."""
    if not isinstance(state, dict):
        return state
    if "__list__" in state or "__tuple__" in state:
        items = [from_state(item, reduce_range) for item in next(iter(state.values()))]
        return items if "__list__" in state else tuple(items)
    cls = CLASSES[state["__class__"]]
    attrs = {k: from_state(v, reduce_range) for k, v in state["attrs"].items()}
    if hasattr(cls, "from_state"):
        return cls.from_state(attrs, reduce_range)
    if cls is fn.Positions:  # the table the model's module had
        attrs["weights"] = SinusoidalPositionalEmbedding.get_embedding(
            attrs.pop("size"), attrs["dim"], attrs["padding_idx"]
        )
    obj = cls.__new__(cls)
    for name, value in attrs.items():
        setattr(obj, name, value)
    return obj


def weight_bytes_of(*parts) -> Dict[str, int]:
    """Bytes of the weights in these trees, each tensor once: ``int8``
    (matrices, packed or not), ``float32`` (scales, biases, norms) and
    ``packing`` (fbgemm's zero point and column offset, 8 bytes per output
    channel; the padding inside packed matrices is not counted). Positions
    are buffers, not weights."""
    seen = set()
    sizes = {"int8": 0, "float32": 0, "packing": 0}

    def add(t: Optional[Tensor]) -> None:
        if t is not None and (t.data_ptr(), t.numel(), t.dtype) not in seen:
            seen.add((t.data_ptr(), t.numel(), t.dtype))
            kind = "int8" if t.dtype == torch.int8 else "float32"
            sizes[kind] += t.numel() * t.element_size()

    def visit(value) -> None:
        if isinstance(value, Tensor):
            add(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif type(value).__name__ in CLASSES and not isinstance(value, fn.Positions):
            packed = getattr(value, "packed", None)
            for p in packed if isinstance(packed, list) else [packed]:
                if p is not None:  # a packed copy, whether or not q is kept
                    q, scale, bias = unpack(p)
                    sizes["int8"] += q.numel()
                    sizes["float32"] += scale.numel() * 4
                    sizes["packing"] += scale.numel() * 8
                    add(bias)  # once, if the part keeps it too
            for name in attributes(value):
                if name != "packed":
                    visit(getattr(value, name, None))

    visit(list(parts))
    sizes["total"] = sum(sizes.values())
    return sizes
