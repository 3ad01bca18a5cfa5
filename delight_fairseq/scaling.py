"""The arithmetic of DeLighT: pure functions over ints and floats.

Everything that decides a layer's shape lives here, so that the encoder, the
decoder and the embedding share one implementation, and so that the tests can
pin it against the published numbers (docs/architecture.md section 8) without
building a model.

Where the paper's prose and the authors' published code disagree, these follow
the code, since the code is what produced the published parameter counts
(docs/architecture.md section 10). Two details matter for exactness:

* widths and depths come from ``numpy.linspace`` truncated to integers, as the
  authors' code did with ``dtype=int``;
* block width multipliers are rounded to 3 decimals *as numpy floats*.
"""

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

#: A group never holds fewer than this many features of d_m (the group cap).
MIN_FEATURES_PER_GROUP = 32
#: Every DExTra width is rounded up to a multiple of this (and of its groups).
WIDTH_ALIGNMENT = 8


def group_cap(d_m: int) -> int:
    """Largest number of GLT groups for model width ``d_m``.

    2 ** ceil(log2(d_m / 32)): 4 at d_m 128, 8 at 256, 16 at 384 and 512, 32 at 640.
    """
    if d_m < MIN_FEATURES_PER_GROUP:
        raise ValueError(
            f"--delight-emb-out-dim (d_m) is {d_m}, but DeLighT needs d_m >= "
            f"{MIN_FEATURES_PER_GROUP} to derive its group cap; use a larger d_m, "
            "or set --delight-emb-max-groups, --delight-enc-max-groups and "
            "--delight-dec-max-groups explicitly"
        )
    # the authors' exact expression (integer division, then log base 2)
    return 2 ** math.ceil(math.log(d_m // MIN_FEATURES_PER_GROUP, 2))


def _floor_linspace(start: float, stop: float, num: int) -> List[int]:
    return [int(v) for v in np.floor(np.linspace(start, stop, num))]


def _mirror(first_half: List, n_layers: int) -> List:
    """Mirror the expansion half into the reduction half.

    For an odd number of layers the peak is not repeated.
    """
    reverse = first_half[::-1]
    if n_layers % 2 == 1:
        reverse = reverse[1:]
    return first_half + reverse


@dataclass(frozen=True)
class GLTSpec:
    """Shape of one group linear transformation inside a DExTra unit."""

    in_features: int
    out_features: int
    groups: int

    def as_tuple(self) -> Tuple[int, int, int]:
        return (self.in_features, self.out_features, self.groups)


def dextra_groups(n_layers: int, max_groups: int) -> List[int]:
    """Groups of the N GLT layers: 2, 4, 8, ... capped, then mirrored."""
    mid = int(math.ceil(n_layers / 2.0))
    expand = [min(2 ** (i + 1), max_groups) for i in range(mid)]
    return _mirror(expand, n_layers)


def dextra_plan(
    in_features: int,
    proj_features: int,
    out_features: int,
    n_layers: int,
    width_mult: float,
    max_groups: int,
) -> List[GLTSpec]:
    """The GLT layers of ``DExTra(D_in, P, D_o, N, w, g_max)``
    (docs/architecture.md section 3).

    Layer 1 reads the input layer's output X (size P). Every later layer reads
    the input mixer of X and the previous output, so its input is that output's
    width plus P. Layer N outputs exactly D_o.
    """
    mid = int(math.ceil(n_layers / 2.0))
    groups = dextra_groups(n_layers, max_groups)
    widths = _mirror(
        _floor_linspace(proj_features, in_features * width_mult, mid), n_layers
    )[:-1]

    outs = []
    for i, width in enumerate(widths):
        # a width is read by its own groups and, through the mixer, by the next
        # layer's groups: it must split evenly into both
        align = max(groups[i], groups[i + 1], WIDTH_ALIGNMENT)
        outs.append(int(math.ceil(width / align)) * align)
    outs.append(out_features)

    ins = [proj_features] + [o + proj_features for o in outs[:-1]]
    return [GLTSpec(i, o, g) for i, o, g in zip(ins, outs, groups)]


@dataclass(frozen=True)
class BlockSpec:
    """DExTra depth and width multiplier of one encoder or decoder block."""

    depth: int
    width_mult: float


def block_schedule(
    n_blocks: int,
    min_depth: int,
    max_depth: int,
    width_mult: float,
    scaling: str = "block",
) -> List[BlockSpec]:
    """Block-wise scaling (docs/architecture.md section 4).

    Depths grow linearly from N_min to N_max; width multipliers from w_m to
    w_m + N_max / N_min - 1. With uniform scaling, or N_min == N_max, every
    block gets N_min and w_m.
    """
    if scaling == "uniform" or min_depth == max_depth:
        return [BlockSpec(min_depth, float(width_mult)) for _ in range(n_blocks)]
    depths = _floor_linspace(min_depth, max_depth, n_blocks)
    depth_ratio = max_depth * 1.0 / min_depth
    mults = np.linspace(width_mult, width_mult + (depth_ratio - 1.0), n_blocks)
    # round the numpy float, as the reference code does
    return [BlockSpec(d, float(round(m, 3))) for d, m in zip(depths, mults)]


def scaled_dropout(base: float, reference_dim: float, d_m: int, cap: float) -> float:
    """Dropout that scales linearly with width (docs/architecture.md section 5).

    ``base`` at ``reference_dim``, proportionally less for narrower models,
    rounded to 2 decimals and clipped to [0, cap].
    """
    value = round(base / (reference_dim / d_m), 2)
    return min(max(value, 0.0), cap)


def glt_params(spec: GLTSpec) -> int:
    """Weights in*out/g, one bias per output, one LayerNorm pair of out/g."""
    g = spec.groups
    return (
        spec.in_features * spec.out_features // g
        + spec.out_features
        + 2 * (spec.out_features // g)
    )


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def dextra_params(
    in_features: int,
    proj_features: int,
    out_features: int,
    n_layers: int,
    width_mult: float,
    max_groups: int,
) -> int:
    """Parameters of a DExTra unit, from its plan alone (no module is built)."""
    plan = dextra_plan(
        in_features, proj_features, out_features, n_layers, width_mult, max_groups
    )
    # input and output layers: Linear + LayerNorm
    n = linear_params(in_features, proj_features) + 2 * proj_features
    n += linear_params(proj_features + out_features, out_features) + 2 * out_features
    return n + sum(glt_params(s) for s in plan)
