"""Group linear transformation (GLT) and the plain layers DExTra is built from."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import fused


def Linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """nn.Linear with DeLighT's init: Xavier-uniform weights, zero bias."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class LinearNormAct(nn.Module):
    """Linear -> LayerNorm -> swish -> dropout: DExTra's input and output layers."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0):
        super().__init__()
        self.linear = Linear(in_features, out_features)
        self.layer_norm = nn.LayerNorm(out_features)
        self.dropout = dropout
        self.fast_dropout = False  # fused.set_fast_dropout

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting():
            if fused.usable(x):
                x = self._fused(x)
                return fused.dropout(x, self.dropout, self.training, self.fast_dropout)
        x = F.silu(self.layer_norm(self.linear(x)))
        return fused.dropout(x, self.dropout, self.training, self.fast_dropout)

    @torch.jit.unused
    def _fused(self, x: Tensor) -> Tensor:
        """The matmul, then bias + LayerNorm + swish in one pass each way: the
        GLT's fused tail with one group and no shuffle."""
        shape = list(x.shape[:-1]) + [self.linear.out_features]
        y = torch.mm(x.reshape(-1, x.size(-1)), self.linear.weight.t())
        y = fused.GLTTail.apply(
            y.unsqueeze(0),
            self.linear.bias.unsqueeze(0),
            self.layer_norm.weight,
            self.layer_norm.bias,
            False,
        )
        return y.reshape(shape)


class GroupLinear(nn.Module):
    """GLT(in, out, g) of docs/architecture.md section 2.

    The input's features split into ``g`` equal groups; each group has its own
    (in/g x out/g) weight. The output is optionally channel-shuffled, then
    normalized per group with one affine pair shared by all groups, passed
    through swish and dropout. With g = 1 this is Linear + LayerNorm + swish.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        groups: int,
        shuffle: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ValueError(
                f"GLT({in_features} -> {out_features}) cannot split into {groups} "
                "groups: both widths must be divisible by the group count"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.groups = groups
        # shuffling a single group is the identity
        self.shuffle = shuffle and groups > 1
        self.dropout = dropout
        self.fast_dropout = False  # fused.set_fast_dropout
        self.weight = nn.Parameter(
            torch.empty(groups, in_features // groups, out_features // groups)
        )
        self.bias = nn.Parameter(torch.zeros(groups, out_features // groups))
        self.norm_weight = nn.Parameter(torch.ones(out_features // groups))
        self.norm_bias = nn.Parameter(torch.zeros(out_features // groups))
        if groups == 1:
            # one group is the authors' plain Linear(in, out): Xavier's fans are
            # in and out, not those of a 1 x in x out tensor (3-7x smaller)
            nn.init.xavier_uniform_(self.weight.data[0])
        else:
            nn.init.xavier_uniform_(self.weight)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"groups={self.groups}, shuffle={self.shuffle}, dropout={self.dropout}"
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: ... x in -> ... x out."""
        shape = list(x.shape[:-1]) + [self.out_features]
        g = self.groups
        # ... x in -> g x N x in/g, contiguous: the batched matmul's backward
        # then runs on plain layouts instead of copying strided ones
        x = x.reshape(-1, g, self.in_features // g).transpose(0, 1).contiguous()
        return self.forward_grouped(x).reshape(shape)

    def forward_grouped(self, x: Tensor) -> Tensor:
        """x: g x N x in/g (group-major, as DExTra's mixer lays it out) -> N x out."""
        if not torch.jit.is_scripting():
            if fused.usable(x):
                y = self._fused(x)
                return fused.dropout(y, self.dropout, self.training, self.fast_dropout)
        y = self._tail(torch.baddbmm(self.bias.unsqueeze(1), x, self.weight))
        return fused.dropout(y, self.dropout, self.training, self.fast_dropout)

    @torch.jit.unused
    def _fused(self, x: Tensor) -> Tensor:
        """One batched matmul, then bias + shuffle + LayerNorm + swish in one
        pass each way (delight_fairseq/csrc/glt_tail.cpp)."""
        y = torch.bmm(x, self.weight)
        return fused.GLTTail.apply(
            y, self.bias, self.norm_weight, self.norm_bias, self.shuffle
        )

    def _tail(self, x: Tensor) -> Tensor:
        """Eager shuffle + group LayerNorm + swish: g x N x out/g -> N x out."""
        g = self.groups
        if self.shuffle:
            # g x N x out/g -> N x out/g x g, read back row-major as N x g x out/g
            x = x.permute(1, 2, 0).reshape(-1, g, self.out_features // g)
        else:
            x = x.transpose(0, 1)
        x = F.layer_norm(x, (self.out_features // g,), self.norm_weight, self.norm_bias)
        return F.silu(x).reshape(-1, self.out_features)
