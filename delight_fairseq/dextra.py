"""DExTra: the deep, light expand-then-reduce unit (docs/architecture.md section 3)."""

import torch
from torch import Tensor, nn

from .group_linear import GroupLinear, LinearNormAct
from .scaling import dextra_plan


def mix_inputs(x: Tensor, y: Tensor, groups: int) -> Tensor:
    """The input mixer: split X and Y into ``groups`` chunks each, concatenate
    chunk i of X with chunk i of Y, and flatten.

    This keeps every group of the next GLT connected to the unit's input X.
    """
    lead = list(x.shape[:-1])
    x = x.reshape(lead + [groups, -1])
    y = y.reshape(lead + [groups, -1])
    return torch.cat([x, y], dim=-1).reshape(lead + [-1])


def mix_grouped(x: Tensor, y: Tensor, groups: int) -> Tensor:
    """The mixer written straight into the next GLT's group-major layout:
    ``mix_inputs(x, y, g)`` viewed as N x g x (.) and transposed to g x N x (.),
    built with one copy. x: N x P, y: N x out."""
    x = x.reshape(x.size(0), groups, -1).transpose(0, 1)
    y = y.reshape(y.size(0), groups, -1).transpose(0, 1)
    return torch.cat([x, y], dim=-1)


class DExTra(nn.Module):
    """``DExTra(D_in, P, D_o, N, w, g_max)``.

    An input layer maps D_in to P (call it X), N GLT layers expand to
    ``w * D_in`` and reduce to D_o, each after the first reading the mix of X
    and the previous output, and an output layer maps [X, Y_N] to D_o.
    """

    def __init__(
        self,
        in_features: int,
        proj_features: int,
        out_features: int,
        depth: int,
        width_mult: float,
        max_groups: int,
        dropout: float = 0.0,
        shuffle: bool = True,
    ):
        super().__init__()
        self.in_features = in_features
        self.proj_features = proj_features
        self.out_features = out_features
        self.depth = depth
        self.width_mult = width_mult
        self.plan = dextra_plan(
            in_features, proj_features, out_features, depth, width_mult, max_groups
        )
        self.input_layer = LinearNormAct(in_features, proj_features, dropout)
        self.glt_layers = nn.ModuleList(
            GroupLinear(s.in_features, s.out_features, s.groups, shuffle, dropout)
            for s in self.plan
        )
        self.output_layer = LinearNormAct(
            proj_features + out_features, out_features, dropout
        )

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width_mult={self.width_mult}"

    def forward(self, x: Tensor) -> Tensor:
        """x: ... x D_in -> ... x D_o."""
        shape = list(x.shape[:-1]) + [self.out_features]
        x = self.input_layer(x).reshape(-1, self.proj_features)
        y = x
        for i, layer in enumerate(self.glt_layers):
            if i == 0:
                grouped = x.reshape(
                    -1, layer.groups, self.proj_features // layer.groups
                )
                grouped = grouped.transpose(0, 1).contiguous()
            else:
                grouped = mix_grouped(x, y, layer.groups)
            y = layer.forward_grouped(grouped)
        out = self.output_layer(torch.cat([x, y], dim=-1))
        return out.reshape(shape)
