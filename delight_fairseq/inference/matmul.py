"""Which library runs the float32 engine's products on the CPU.

torch's CPU wheel sends ``F.linear`` and ``torch.mm`` in float32 to MKL. MKL
picks its fast code paths by the CPU's vendor: on an AMD EPYC with AVX-512
(2026-12-05) it runs a decoding step's products at about 100 GFLOP/s, where
oneDNN, which torch also carries, runs them 2.0-2.4x faster on the same
weights (``python benchmarks/profile_engine.py --delight CKPT --matmul``).
On other CPUs MKL may be the faster one. So the engine asks:

* ``"torch"``: ``F.linear`` / ``torch.mm``, the products as the model's
  modules (and so fairseq's beam search) compute them;
* ``"onednn"``: oneDNN's inner-product primitive over a copy of the weight
  in oneDNN's blocked layout (made once per weight and kept while the
  weight is unchanged). Its sums may be ordered differently: the floats
  can differ in the last bits from ``"torch"``'s;
* ``"auto"`` (the engine's default): ``"onednn"`` where it is available
  and, timed once per process on a product of a decoding step's size, at
  least AUTO_GAIN times as fast as ``"torch"``; else ``"torch"``.
"""

import time
import weakref
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional as fn

BACKENDS = ("auto", "torch", "onednn")
#: "auto" takes oneDNN from this speed-up on
AUTO_GAIN = 1.25
#: oneDNN's products run on a multiple of ROW_STEP rows, at most MAX_ROWS
#: at a time (onednn_linear)
ROW_STEP = 32
MAX_ROWS = 512
_PACKED: Dict[int, Tuple] = {}  # id(weight) -> (weakref, version, layout)
_AUTO: Optional[str] = None


def onednn_available() -> bool:
    """Whether this torch has oneDNN's float32 linear for the CPU."""
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return (
            torch.backends.mkldnn.is_available()
            and hasattr(ops, "_linear_pointwise")
            and hasattr(ops, "_reorder_linear_weight")
        )
    except (AttributeError, RuntimeError):
        return False


def packed(weight: Tensor) -> Tensor:
    """``weight`` (out x in, float32, CPU) in oneDNN's layout, made once and
    kept while the weight lives and is not modified in place."""
    key = id(weight)
    entry = _PACKED.get(key)
    if entry is None or entry[0]() is not weight or entry[1] != weight._version:
        with torch.no_grad():
            layout = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
        # forgotten with the weight (tensors compare by value, so by id)
        ref = weakref.ref(weight, lambda _, key=key: _PACKED.pop(key, None))
        entry = (ref, weight._version, layout)
        _PACKED[key] = entry
    return entry[2]


def onednn_linear(x: Tensor, layout: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``F.linear(x, weight, bias)`` on oneDNN, ``layout`` = packed(weight).

    oneDNN builds (and caches, up to 1,024) a primitive for each number of
    rows it meets, about 0.55 MB each whatever the weight's size (measured:
    200 row counts, 111-125 MB). So the rows go at most MAX_ROWS at a
    time, padded with zeros to a multiple of ROW_STEP (the padding's output
    rows are dropped): at most 16 row counts per product instead of
    thousands. 300 Multi30k sentences at beam 5 (2026-12-05) peaked at 673
    MB unpadded, 524 MB so, 460 MB on torch's products; the decoder alone
    on oneDNN, padded to 16, 32 and 64 rows: 581, 513 and 495 MB, at 1.27x
    torch's speed with 32 and 1.20x with 64."""
    width = x.size(-1)
    rows = x.numel() // width
    if rows % ROW_STEP == 0 and rows <= MAX_ROWS:
        return torch.ops.mkldnn._linear_pointwise(x, layout, bias, "none", [], "")
    flat = x.reshape(rows, width)
    parts = []
    for start in range(0, rows, MAX_ROWS):
        part = flat[start : start + MAX_ROWS]
        n = part.size(0)
        padded = -(-n // ROW_STEP) * ROW_STEP
        if padded != n:
            part = torch.cat([part, part.new_zeros(padded - n, width)])
        out = torch.ops.mkldnn._linear_pointwise(part, layout, bias, "none", [], "")
        parts.append(out[:n])
    out = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out.view(*x.shape[:-1], -1)


def check(backend: str) -> None:
    """A ValueError unless ``backend`` is one of BACKENDS."""
    if backend not in BACKENDS:
        raise ValueError(f"matmul is {backend!r}; choose one of {', '.join(BACKENDS)}")


def resolve(backend: str, like: Tensor) -> str:
    """``"torch"`` or ``"onednn"`` for products on tensors like ``like``."""
    check(backend)
    usable = (
        like.device.type == "cpu" and like.dtype == torch.float32 and onednn_available()
    )
    if backend == "onednn":
        if not usable:
            raise ValueError(
                "matmul='onednn' needs float32 on the CPU and a torch with oneDNN "
                f"(here: {like.dtype} on {like.device}, oneDNN "
                f"{'available' if onednn_available() else 'missing'}); use "
                "matmul='torch' or 'auto'"
            )
        return backend
    if backend == "torch" or not usable:
        return "torch"
    global _AUTO
    if _AUTO is None:
        _AUTO = "onednn" if speedup() >= AUTO_GAIN else "torch"
    return _AUTO


def speedup(rows: int = 320, width: int = 256, out: int = 1024) -> float:
    """oneDNN's speed over ``F.linear`` on one rows x width by width x out
    product (best of a few calls each, at torch's thread count)."""
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(rows, width, generator=gen)
        weight = torch.randn(out, width, generator=gen)
        layout = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        calls = (
            lambda: F.linear(x, weight),
            lambda: onednn_linear(x, layout, None),
        )
        best = []
        for call in calls:
            call()
            times = []
            for _ in range(5):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            best.append(min(times))
    return best[0] / max(best[1], 1e-9)


# -- the functional parts' products on oneDNN -----------------------------------------


class PackedLinear(fn.Linear):
    """A Linear on oneDNN, its weight also in oneDNN's layout (:func:`packed`)."""

    __slots__ = ("layout",)

    def __init__(self, linear: fn.Linear):
        self.weight, self.bias = linear.weight, linear.bias
        self.layout = packed(linear.weight)

    def __call__(self, x: Tensor) -> Tensor:
        return onednn_linear(x, self.layout, self.bias)


class PackedLinearNormAct(fn.LinearNormAct):
    """A LinearNormAct whose product runs on oneDNN."""

    __slots__ = ("layout",)

    def __init__(self, layer: fn.LinearNormAct):
        self.weight, self.bias, self.norm = layer.weight, layer.bias, layer.norm
        self.layout = packed(layer.weight)

    def __call__(self, x: Tensor, kernel) -> Tensor:
        if kernel is not None:
            y = onednn_linear(x, self.layout, None).unsqueeze(0)
            n = self.norm
            return kernel.forward(y, self.bias.unsqueeze(0), n.weight, n.bias, False)[0]
        return F.silu(self.norm(onednn_linear(x, self.layout, self.bias)))


_PACKED_CLASS = {fn.Linear: PackedLinear, fn.LinearNormAct: PackedLinearNormAct}
_CONTAINERS = (
    fn.DExTra,
    fn.DecoderBlock,
    fn.DecoderWeights,
    fn.Embedding,
    fn.EncoderBlock,
    fn.Encoder,
)


def use_onednn(obj) -> None:
    """In place: every float32 Linear and LinearNormAct in this tree of parts
    (a DecoderWeights, an Encoder, ...) runs its product on oneDNN."""
    for name in fn.attributes(obj):
        if hasattr(obj, name):
            value = getattr(obj, name)
            if isinstance(value, list):
                setattr(obj, name, [_onednn(item) for item in value])
            else:
                setattr(obj, name, _onednn(value))


def _onednn(value):
    cls = _PACKED_CLASS.get(type(value))
    if cls is not None:
        return cls(value)
    if isinstance(value, _CONTAINERS):
        use_onednn(value)
    return value
